"""Staged evidence: what a collector produced, on disk, before validation and archiving.

A collector writes its items through a :class:`BundleWriter`, which redacts, canonicalises
and hashes as it writes. The bundle is only readable once ``bundle.json`` exists, so a
collector that dies half way leaves nothing that could be archived as complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from soc2_evidence.core.evidence import EvidenceItem, RunContext, canonical_json, code_revision, rfc3339, utc_now
from soc2_evidence.core.hashing import digest_bytes, digest_file
from soc2_evidence.core.redaction import Redactor, may_hold_secret

BUNDLE_FILE = "bundle.json"
FAILURE_FILE = "failure.json"
_JSONL_BUFFER = 1 << 20  # a write call per MiB, not per 8 KiB: populations run to millions of lines


def safe_segment(value: str) -> str:
    """A run id as a path segment: Airflow run ids contain ':' and '+'."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", value)


def bundle_dir(staging_root: Path, run: RunContext, source: str, try_number: int) -> Path:
    return staging_root / safe_segment(run.dag_id) / safe_segment(run.run_id) / source / f"try-{try_number}"


def record_failure(staging_root: Path, run: RunContext, source: str, reason: str) -> None:
    """Keep why ``source`` was not collected in this run, for the manifest: the task log is not evidence.

    ``reason`` must already be one secret-free line (``core.errors.describe``). A later try that
    succeeds stages a bundle, and the reason is then never read.
    """
    path = bundle_dir(staging_root, run, source, 0).parent / FAILURE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"reason": reason}), encoding="utf-8")


def failure_reason(staging_root: Path, run: RunContext, source: str) -> str | None:
    """The reason :func:`record_failure` kept for ``source`` in this run, or None."""
    try:
        return json.loads((bundle_dir(staging_root, run, source, 0).parent / FAILURE_FILE).read_text("utf-8"))["reason"]
    except (FileNotFoundError, ValueError, KeyError):
        return None


@dataclass(frozen=True)
class StagedItem:
    item: EvidenceItem
    path: Path


@dataclass(frozen=True)
class Bundle:
    """A finished, staged bundle of one source's evidence for one run."""

    directory: Path
    family: str
    source: str
    kind: str
    run: RunContext
    items: tuple[StagedItem, ...]
    redactions: dict[str, int]
    reported_totals: dict[str, int]

    @classmethod
    def load(cls, directory: str | Path) -> Bundle:
        directory = Path(directory)
        try:
            data = json.loads((directory / BUNDLE_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{directory}: no {BUNDLE_FILE}; the collector did not finish") from error
        items = tuple(
            StagedItem(EvidenceItem.from_dict(entry), directory / "items" / entry["name"]) for entry in data["items"]
        )
        return cls(
            directory=directory,
            family=data["family"],
            source=data["source"],
            kind=data["kind"],
            run=RunContext.from_dict(data["run"]),
            items=items,
            redactions=data.get("redactions", {}),
            reported_totals=data.get("reported_totals", {}),
        )

    def summary(self) -> dict[str, Any]:
        """What goes over XCom: paths, names and hashes, never content."""
        return {
            "bundle": str(self.directory),
            "source": self.source,
            "family": self.family,
            "items": [
                {"name": staged.item.name, "sha256": staged.item.sha256, "size": staged.item.size}
                for staged in self.items
            ],
            "redactions": self.redactions,
        }


class BundleWriter:
    """Writes one source's evidence items into a staging directory, redacted and hashed."""

    def __init__(
        self,
        staging_root: Path,
        *,
        family: str,
        source: str,
        kind: str,
        run: RunContext,
        try_number: int,
        collector: str,
        collector_version: str,
        redactor: Redactor,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self.directory = bundle_dir(staging_root, run, source, try_number)
        if self.directory.exists():
            # A previous try of the same task died mid-write: its staging is scratch, never evidence.
            shutil.rmtree(self.directory)
        (self.directory / "items").mkdir(parents=True)
        self.family, self.source, self.kind, self.run = family, source, kind, run
        self.try_number = try_number
        self.collector, self.collector_version = collector, collector_version
        self.redactor = redactor
        self.now = now  # each item's collected_at, and so its retain-until date; tests inject a clock
        self.reported_totals: dict[str, int] = {}
        self._items: list[StagedItem] = []
        self._names: set[str] = set()  # a set, not a scan of the items: a repository stages 10,000 files

    def add_json(self, name: str, value: Any, description: str = "") -> EvidenceItem:
        data = canonical_json(self.redactor.redact_value(value))
        return self._write(name, data, "application/json", description)

    def add_text(self, name: str, text: str, media_type: str = "text/plain", description: str = "") -> EvidenceItem:
        return self._write(name, self.redactor.redact_text(text).encode("utf-8"), media_type, description)

    def add_document(self, name: str, text: str, *, path: str, description: str = "") -> EvidenceItem:
        """A collected file's text, redacted by its format (``path`` and content say which), structured first.

        Raises :class:`UnscannableContent`, writing nothing, when the file cannot be redacted with
        confidence: the caller lists it, with the reason, instead of archiving it.
        """
        return self._write(name, self.redactor.redact_document(path, text).encode("utf-8"), "text/plain", description)

    def add_file(
        self, name: str, source: Path, media_type: str = "application/octet-stream", description: str = ""
    ) -> EvidenceItem:
        """Copy a generated file as is. Only for files the pipeline made itself (reports, Data Docs):
        collected content always goes through a redacting ``add_*``."""
        path = self._path(name)
        shutil.copyfile(source, path)
        return self._record(name, path, media_type, description)

    def add_jsonl(self, name: str, records: Iterable[Any], description: str = "") -> EvidenceItem:
        """Stream records to JSON Lines: memory stays flat however many records there are."""
        path = self._path(name)
        with open(path, "wb", buffering=_JSONL_BUFFER) as stream:
            for record in records:
                stream.write(self._redacted_json(record))
        return self._record(name, path, "application/x-ndjson", description)

    def _redacted_json(self, value: Any) -> bytes:
        """``canonical_json(redact_value(value))``; a value whose JSON cannot hold a secret skips the walk."""
        try:
            data = canonical_json(value)
        except (TypeError, ValueError):  # e.g. bytes or NaN under a secret key: redaction replaces them
            data = None
        if data is None or may_hold_secret(data.decode("utf-8")):
            data = canonical_json(self.redactor.redact_value(value))
        return data

    def report_total(self, dataset: str, total: int) -> None:
        """The count the source itself reported, for completeness checks."""
        self.reported_totals[dataset] = total

    def finish(self) -> Bundle:
        manifest = {
            "family": self.family,
            "source": self.source,
            "kind": self.kind,
            "run": self.run.to_dict(),
            "items": [staged.item.to_dict() for staged in self._items],
            "redactions": dict(sorted(self.redactor.counts.items())),
            "reported_totals": self.reported_totals,
        }
        temporary = self.directory / (BUNDLE_FILE + ".tmp")
        temporary.write_bytes(canonical_json(manifest))
        os.replace(temporary, self.directory / BUNDLE_FILE)
        return Bundle.load(self.directory)

    def _path(self, name: str) -> Path:
        if name in self._names:
            raise ValueError(f"source {self.source!r}: evidence name {name!r} written twice")
        self._names.add(name)
        path = self.directory / "items" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _write(self, name: str, data: bytes, media_type: str, description: str) -> EvidenceItem:
        path = self._path(name)
        path.write_bytes(data)
        return self._record(name, path, media_type, description, digest_bytes(data))

    def _record(self, name: str, path: Path, media_type: str, description: str, digest=None) -> EvidenceItem:
        digest = digest or digest_file(path)
        item = EvidenceItem(
            family=self.family,
            source=self.source,
            name=name,
            media_type=media_type,
            sha256=digest.sha256,
            size=digest.size,
            collected_at=rfc3339(self.now()),
            collector=self.collector,
            collector_version=self.collector_version,
            code_revision=code_revision(),
            try_number=self.try_number,
            run=self.run,
            description=description,
        )
        self._items.append(StagedItem(item, path))
        return item
