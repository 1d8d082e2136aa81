"""The evidence calendar: per source and night, whether a complete, valid run was archived.

Missing nights become explicit gap records, archived with every run and checked as a control
(auditree flags abandoned evidence only after 30 days; this flags a gap the next night).
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

from soc2_evidence.archive.layout import MANIFEST_NAME
from soc2_evidence.archive.stores.base import EvidenceStore
from soc2_evidence.core.datasets import Dataset, may_be_empty

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


def evidence_calendar(store: EvidenceStore, family: str, sources: list[str], night: date, days: int) -> list[dict]:
    """Calendar records for the ``days`` nights before ``night``.

    A source's calendar starts at the first night in the window where it has a committed run,
    so a new deployment or a newly added source does not report gaps from before it existed.
    """
    nights = [night - timedelta(days=offset) for offset in range(days, 0, -1)]
    seen: dict[tuple[date, str], list[tuple[str, str]]] = {}
    for each in nights:
        for info in store.list_objects(f"{family}/{each:%Y/%m/%d}/"):
            if not info.key.endswith("/" + MANIFEST_NAME):
                continue
            manifest = json.loads(store.read_bytes(info.key))
            for source, status in _source_outcomes(manifest).items():
                seen.setdefault((each, source), []).append((info.key, status))
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
                    "manifests": [key for key, _ in outcomes],
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
        if source.get("kind") != "validation"
    }
