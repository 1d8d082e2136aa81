"""The evidence model: what one archived item is, and the run it belongs to.

Identical content gives identical bytes and hash: JSON evidence is written in one
canonical form (sorted keys, UTF-8, no insignificant white space, newline-terminated).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from soc2_evidence import __version__
from soc2_evidence.core.errors import EncodingError

FAMILIES = ("config", "backup", "tickets")
_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9._-]+)*")


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` to the one byte form every JSON evidence item uses.

    What JSON cannot hold raises :class:`EncodingError` (a permanent error, and a ValueError): NaN and
    Infinity (Python would write them as bare tokens, which are not JSON), a naive time, and nesting
    deeper than the interpreter can walk (about 1,000 levels; parsers refuse such payloads first).
    A value of only strings, integers, booleans, None, UTC datetimes, lists and string-keyed dicts
    (every ticket record, most API resources) is written by msgspec, several times faster and byte
    for byte the same; floats, other datetimes and sets take the json module's path, where
    msgspec's forms differ (``1e16`` for ``1e+16``, NaN as null, offsets kept, sets unsorted).
    """
    try:
        if _is_plain(value):
            return _PLAIN_ENCODER.encode(value) + b"\n"
        text = json.dumps(
            value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_json_default
        )
    except ValueError as error:
        raise EncodingError(f"not JSON evidence: {error}") from error
    except RecursionError as error:
        raise EncodingError("not JSON evidence: nested deeper than about 1,000 levels") from error
    return (text + "\n").encode("utf-8")


_PLAIN_ENCODER = msgspec.json.Encoder(order="sorted")
_PLAIN_SCALARS = frozenset({str, int, bool, type(None)})


def _is_plain(value: Any) -> bool:
    """Whether msgspec writes ``value`` as the json module does: exact str/int/bool/None (no subclasses),
    datetimes in UTC (both write RFC 3339 with ``Z``), lists, tuples and str-keyed dicts of those.

    Loops rather than ``all()``: this runs on every record of every population.
    """
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or (type(item) not in _PLAIN_SCALARS and not _is_plain(item)):
                return False
        return True
    if kind is list or kind is tuple:
        for item in value:  # noqa: SIM110 - faster than all() over a generator
            if type(item) not in _PLAIN_SCALARS and not _is_plain(item):
                return False
        return True
    if kind is datetime:
        return value.tzinfo is UTC
    return kind in _PLAIN_SCALARS


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, bytes):
        raise TypeError("bytes are not JSON evidence; store them as a raw item")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def rfc3339(moment: datetime) -> str:
    """UTC, RFC 3339, ``Z`` suffix, microseconds only when present."""
    if moment.tzinfo is not UTC:
        if moment.tzinfo is None:
            raise ValueError(f"naive datetime {moment!r}: evidence times must be timezone-aware")
        moment = moment.astimezone(UTC)
    # isoformat is the same text (microseconds only when present), several times faster than strftime.
    return moment.isoformat()[:-6] + "Z"


def parse_rfc3339(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def retain_until(start: datetime, days: int) -> datetime:
    """``start`` plus the retention, rounded up: Object Lock dates have whole-second precision."""
    moment = start + timedelta(days=days)
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


def utc_now() -> datetime:
    return datetime.now(UTC)


def check_name(kind: str, value: str) -> str:
    """Names become key segments: refuse anything an auditor's file system would mangle.

    A file system collapses a ``.`` segment (``a/./b`` is ``a/b``), so it is refused like ``..``.
    """
    if not _NAME_PATTERN.fullmatch(value) or ".." in value or "." in value.split("/"):
        raise ValueError(f"invalid {kind} {value!r}: use letters, digits, '.', '_', '-' (and '/' between parts)")
    return value


@functools.cache
def code_revision() -> str:
    """The pipeline code's revision: ``EVIDENCE_CODE_REVISION``, else the git commit, else the version."""
    if revision := os.environ.get("EVIDENCE_CODE_REVISION"):
        return revision
    try:
        result = subprocess.run(
            ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        result = None
    if result is not None and result.returncode == 0:
        return result.stdout.strip()
    return f"soc2-evidence {__version__}"


@dataclass(frozen=True)
class RunContext:
    """Which Airflow run (or CLI run) produced the evidence."""

    dag_id: str
    run_id: str
    logical_date: datetime
    data_interval_start: datetime | None = None
    data_interval_end: datetime | None = None

    @property
    def night(self) -> date:
        """The night this run evidences: the UTC date of its logical date."""
        return self.logical_date.astimezone(UTC).date()

    def to_dict(self) -> dict[str, Any]:
        return {
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "logical_date": rfc3339(self.logical_date),
            "data_interval": {
                "start": rfc3339(self.data_interval_start) if self.data_interval_start else None,
                "end": rfc3339(self.data_interval_end) if self.data_interval_end else None,
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunContext:
        interval = data.get("data_interval") or {}
        return cls(
            dag_id=data["dag_id"],
            run_id=data["run_id"],
            logical_date=parse_rfc3339(data["logical_date"]),
            data_interval_start=parse_rfc3339(interval["start"]) if interval.get("start") else None,
            data_interval_end=parse_rfc3339(interval["end"]) if interval.get("end") else None,
        )


@dataclass(frozen=True)
class EvidenceItem:
    """One archived piece of evidence and everything needed to trust it later."""

    family: str
    source: str
    name: str
    media_type: str
    sha256: str
    size: int
    collected_at: str
    collector: str
    collector_version: str
    code_revision: str
    try_number: int
    run: RunContext
    description: str = ""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown evidence family {self.family!r}; expected one of {', '.join(FAMILIES)}")
        check_name("source name", self.source)
        check_name("evidence name", self.name)

    def to_dict(self) -> dict[str, Any]:
        data = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        data["run"] = self.run.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvidenceItem:
        fields = {field.name for field in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key in fields}
        values["run"] = RunContext.from_dict(data["run"])
        return cls(**values)
