"""Where evidence lives in a store, readable without our tools.

    <family>/<YYYY>/<MM>/<DD>/<run id>/attempt-<NNN>/manifest.json
    <family>/<YYYY>/<MM>/<DD>/<run id>/attempt-<NNN>/<source>/<name>
    _chain/<dag id>/<sequence>.json

One run is one folder with one manifest; its sources sit below it. A re-run of the same
night writes the next attempt and never touches an earlier one. ``_chain`` holds one
small link per manifest, in commit order, so the previous manifest of a DAG is found
without listing the whole bucket and two concurrent runs cannot both claim the same place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from soc2_evidence.core.evidence import RunContext
from soc2_evidence.core.staging import safe_segment

MANIFEST_NAME = "manifest.json"
CHAIN_PREFIX = "_chain"
_ATTEMPT = re.compile(r"^attempt-(\d{3,})$")
_RUN_FOLDER = re.compile(
    r"^(?P<family>[a-z]+)/(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/(?P<run>[^/]+)/attempt-(?P<attempt>\d{3,})/"
)


def night_path(night: date) -> str:
    """``YYYY/MM/DD``, zero-padded for every year (``strftime('%Y')`` does not pad years before 1000)."""
    return f"{night.year:04d}/{night.month:02d}/{night.day:02d}"


def run_prefix(family: str, run: RunContext) -> str:
    return f"{family}/{night_path(run.night)}/{safe_segment(run.run_id)}"


def attempt_prefix(family: str, run: RunContext, attempt: int) -> str:
    return f"{run_prefix(family, run)}/attempt-{attempt:03d}"


def attempt_number(segment: str) -> int | None:
    match = _ATTEMPT.match(segment)
    return int(match.group(1)) if match else None


def chain_prefix(dag_id: str) -> str:
    return f"{CHAIN_PREFIX}/{safe_segment(dag_id)}/"


def chain_key(dag_id: str, sequence: int) -> str:
    return f"{chain_prefix(dag_id)}{sequence:010d}.json"


@dataclass(frozen=True)
class AttemptFolder:
    """The run attempt a key belongs to, parsed back from the key."""

    family: str
    night: date
    run_segment: str
    attempt: int

    @property
    def prefix(self) -> str:
        return f"{self.family}/{night_path(self.night)}/{self.run_segment}/attempt-{self.attempt:03d}/"


def attempt_folder_of(key: str) -> AttemptFolder | None:
    match = _RUN_FOLDER.match(key)
    if not match:
        return None
    try:
        night = date(int(match["y"]), int(match["m"]), int(match["d"]))
    except ValueError:
        return None
    return AttemptFolder(match["family"], night, match["run"], int(match["attempt"]))
