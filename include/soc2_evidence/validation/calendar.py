"""The evidence calendar: per source and night, whether a complete, valid run was archived.

Missing nights become explicit gap records, archived with every run and checked as a control
(auditree flags abandoned evidence only after 30 days; this flags a gap the next night).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from soc2_evidence.archive.layout import attempt_folder_of
from soc2_evidence.archive.run import NOT_SELECTED, committed_manifests
from soc2_evidence.archive.stores.base import EvidenceStore
from soc2_evidence.core.datasets import Dataset, may_be_empty
from soc2_evidence.core.evidence import parse_rfc3339

STATUSES = ("passed", "failed", "missing")
CALENDAR = Dataset(
    name="calendar.nights",
    existence=may_be_empty(
        "A window of zero days has no night to judge; a missing night is a gap record, not an absence"
    ),
    item="calendar.jsonl",
    key=("night", "source"),
    columns={"night": "string", "source": "string", "status": "string", "manifests": "array"},
    required=("status", "manifests"),
    value_sets={"status": STATUSES},
    total="calendar",
    description="Per source and night before this run: passed, failed or missing (a gap)",
)


def control_expectations(dataset: Dataset) -> list[Any]:
    from soc2_evidence.validation.gx import control, expectations

    return [
        control(
            expectations.ExpectColumnValuesToBeInSet,
            dataset,
            "evidence_every_night",
            "Every source has complete, valid evidence for every night",
            column="status",
            value_set=["passed"],
        )
    ]


def evidence_calendar(
    store: EvidenceStore, family: str, dag_id: str, sources: list[str], night: date, days: int
) -> list[dict]:
    """Calendar records for the ``days`` nights before ``night``, from the committed runs of ``dag_id``.

    A source's calendar starts at the first night in the window where it has a committed run,
    so a new deployment or a newly added source does not report gaps from before it existed.
    Runs are found by walking the DAG's chain back from its newest link until the links were
    committed before the window opened (a run is committed on or after its night), so a manifest
    that no link commits never counts, and the walk does not grow with the archive's age.
    """
    nights = [night - timedelta(days=offset) for offset in range(days, 0, -1)]
    window = set(nights)
    seen: dict[tuple[date, str], list[tuple[str, str]]] = {}
    for key, manifest in committed_manifests(store, dag_id):
        if parse_rfc3339(manifest["committed_at"]).date() < nights[0]:
            break
        folder = attempt_folder_of(key)
        if folder is None or folder.family != family or folder.night not in window:
            continue
        for source, status in _source_outcomes(manifest).items():
            seen.setdefault((folder.night, source), []).append((key, status))
    records = []
    for source in sources:
        started = False
        for each in nights:
            outcomes = seen.get((each, source), [])
            started = started or bool(outcomes)
            if not started:
                continue
            statuses = [status for _, status in outcomes]
            status = "passed" if "passed" in statuses else "failed" if statuses else "missing"
            records.append(
                {
                    "night": each.isoformat(),
                    "source": source,
                    "status": status,
                    "manifests": sorted(key for key, _ in outcomes),
                }
            )
    return records


def _source_outcomes(manifest: dict[str, Any]) -> dict[str, str]:
    failed_items = {item["source"] for item in manifest.get("items", []) if item.get("validation") == "failed"}
    return {
        source["name"]: "passed"
        if source.get("status") == "archived" and source["name"] not in failed_items
        else "failed"
        for source in manifest.get("sources", [])
        if source.get("kind") != "validation" and source.get("status") != NOT_SELECTED
    }
