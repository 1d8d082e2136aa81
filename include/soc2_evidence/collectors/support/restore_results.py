"""The restore-result dataset: one record per restore test (or backup check), whichever tool ran it.

Our own restore tests (``pg_restore``) and results ingested from other tools (``backup_results``)
write the same shape, so one set of checks reads both: what was restored, how old the backup
was (RPO), how long the restore took (RTO), which checks passed, and the outcome.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from soc2_evidence.core.datasets import Dataset, must_exist
from soc2_evidence.core.evidence import rfc3339

OUTCOMES = ("passed", "failed")
CHECK_STATUSES = ("passed", "failed", "skipped")
# restore: a backup was restored and verified; backup_info: a backup tool's report on its backups.
TEST_TYPES = ("restore", "backup_info")
PHASES = ("backup", "download", "restore", "verify")
COLUMNS = {
    "test_id": "string",
    "database": "string",
    "tool": "string",
    "test_type": "string",
    "backup_key": "string",
    "backup_sha256": "string",
    "backup_at": "string",
    "tested_at": "string",
    "restore_started_at": "string",
    "restore_finished_at": "string",
    "phases": "object",
    "rto_seconds": "number",
    "rto_target_seconds": "number",
    "rto_met": "boolean",
    "rpo_seconds": "number",
    "rpo_target_seconds": "number",
    "rpo_met": "boolean",
    "checks": "array",
    "checks_failed": "integer",
    "outcome": "string",
    "error": "string",
}


def results_dataset(kind: str, description: str) -> Dataset:
    return Dataset(
        name=f"{kind}.results",
        item="results.jsonl",
        key=("test_id",),
        columns=COLUMNS,
        required=("database", "tool", "test_type", "tested_at", "phases", "checks", "checks_failed", "outcome"),
        value_sets={"outcome": OUTCOMES, "test_type": TEST_TYPES},
        description=description,
        existence=must_exist("exists", "At least one restore test result exists: no result means no backup was tested"),
    )


def check(name: str, status: str, detail: str = "") -> dict[str, str]:
    """One verification step of a test: ``passed``, ``failed`` or ``skipped`` (with why)."""
    if status not in CHECK_STATUSES:
        raise ValueError(f"check {name}: status {status!r} is not one of {', '.join(CHECK_STATUSES)}")
    return {"name": name, "status": status, "detail": detail}


def within(value: float | None, target: float | None) -> bool | None:
    """Whether a measured RTO or RPO meets its target; None when either is unknown."""
    if value is None or target is None:
        return None
    return value <= target


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def result_record(
    *,
    test_id: str,
    database: str | None,
    tool: str,
    test_type: str,
    tested_at: datetime | str | None,
    checks: list[dict[str, str]],
    backup_key: str | None = None,
    backup_sha256: str | None = None,
    backup_at: datetime | str | None = None,
    restore_started_at: datetime | str | None = None,
    restore_finished_at: datetime | str | None = None,
    phases: dict[str, float | None] | None = None,
    rto_seconds: float | None = None,
    rto_target_seconds: float | None = None,
    rpo_seconds: float | None = None,
    rpo_target_seconds: float | None = None,
    rpo_met: bool | None = None,
    outcome: str | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """A complete record: every column present, the derived ones (met, failed count, outcome) computed.

    A test with a failed check, an error or no checks at all has failed, whatever a tool says;
    otherwise the tool's own outcome (if any) stands, so an unknown one shows up as malformed.
    ``rpo_met`` may be given where no age can be measured but the target is missed (no backup at all).
    """
    failed = sum(1 for entry in checks if entry.get("status") == "failed")
    if failed or error or not checks:
        outcome = "failed"
    return {
        "test_id": test_id,
        "database": database,
        "tool": tool,
        "test_type": test_type,
        "backup_key": backup_key,
        "backup_sha256": backup_sha256,
        "backup_at": _time(backup_at),
        "tested_at": _time(tested_at),
        "restore_started_at": _time(restore_started_at),
        "restore_finished_at": _time(restore_finished_at),
        "phases": {phase: (phases or {}).get(phase) for phase in PHASES},
        "rto_seconds": rto_seconds,
        "rto_target_seconds": rto_target_seconds,
        "rto_met": within(rto_seconds, rto_target_seconds),
        "rpo_seconds": rpo_seconds,
        "rpo_target_seconds": rpo_target_seconds,
        "rpo_met": within(rpo_seconds, rpo_target_seconds) if rpo_met is None else rpo_met,
        "checks": checks,
        "checks_failed": failed,
        "outcome": outcome or "passed",
        "error": error,
    }


def _time(value: datetime | str | None) -> str | None:
    return rfc3339(value) if isinstance(value, datetime) else value


def control_expectations(dataset: Dataset) -> list[Any]:
    """Findings on restore results: a failed test, an RTO over target, an RPO over target.

    An unknown RTO or RPO (no target, or nothing restored to time) is no finding here; a failed
    restore is already one, and a missing backup is recorded as an RPO missed.
    """
    from soc2_evidence.validation.gx import control, expectations

    in_set = expectations.ExpectColumnValuesToBeInSet
    return [
        control(
            in_set,
            dataset,
            "restore_succeeded",
            "Every restore test restored the backup and every verification passed",
            column="outcome",
            value_set=["passed"],
        ),
        control(
            in_set,
            dataset,
            "rto_within_target",
            "The restore took no longer than the recovery time objective (RTO)",
            column="rto_met",
            value_set=[True],
        ),
        control(
            in_set,
            dataset,
            "rpo_within_target",
            "The newest backup was no older than the recovery point objective (RPO)",
            column="rpo_met",
            value_set=[True],
        ),
    ]
