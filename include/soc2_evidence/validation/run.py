"""Validate a run's staged evidence: data quality (the run fails) apart from control exceptions (findings).

Checks only read staged evidence and the archive's own manifests, never a source. The proof,
Great Expectations results, findings, applied exceptions, the calendar and a Data Docs site,
is staged as one more bundle and archived beside the evidence it checks.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from soc2_evidence.archive.stores.base import EvidenceStore
from soc2_evidence.core.datasets import Dataset, load_records, to_frame
from soc2_evidence.core.evidence import RunContext, canonical_json, utc_now
from soc2_evidence.core.hashing import digest_bytes
from soc2_evidence.core.redaction import Redactor
from soc2_evidence.core.staging import Bundle, BundleWriter
from soc2_evidence.validation import calendar, drift
from soc2_evidence.validation.controls import AcceptedException, ControlMap, apply_exceptions

log = logging.getLogger(__name__)

VALIDATION_SOURCE = "validation"
VALIDATOR_VERSION = "1.0.0"


@dataclass(frozen=True)
class ValidationSettings:
    control_map: ControlMap
    register: list[AcceptedException]
    freshness_hours: int
    calendar_days: int
    today: date


class KindChecks(Protocol):
    """What validation needs of a source kind: its datasets and their control checks (a collector module is one)."""

    DATASETS: tuple[Dataset, ...]

    def control_expectations(self, dataset: Dataset) -> list[Any]: ...


def validate_run(
    bundles: list[Bundle],
    run: RunContext,
    *,
    family: str,
    sources: list[str],
    store: EvidenceStore,
    settings: ValidationSettings,
    staging_root: Path,
    checks_of: Callable[[str], KindChecks],
    try_number: int = 1,
    now: Callable[[], datetime] = utc_now,
) -> Bundle:
    """Validate every dataset of every bundle and the calendar; return the staged validation bundle.

    ``checks_of`` gives a bundle's kind its datasets and control checks. Orchestration passes
    the collector registry, so validation judges what collectors declare without importing them.
    ``now`` stamps the validation's own items (the calendar's freshness is checked against it).
    """
    from soc2_evidence.validation.gx import Validator

    writer = BundleWriter(
        staging_root,
        family=family,
        source=VALIDATION_SOURCE,
        kind=VALIDATION_SOURCE,
        run=run,
        try_number=try_number,
        collector=__name__,
        collector_version=VALIDATOR_VERSION,
        redactor=Redactor(),
        now=now,
    )
    project = writer.directory.parent / f"gx-try-{try_number}"
    shutil.rmtree(project, ignore_errors=True)  # scratch from an interrupted try: suites would clash
    judgement = _Judgement(
        validator=Validator(project),
        control_map=settings.control_map,
        parameters=freshness_window(run.logical_date, settings.freshness_hours),
    )
    history = drift.History(store, run.dag_id)
    for bundle in bundles:
        kind = checks_of(bundle.kind)
        judgement.check_bundle(bundle, kind)
        writer.add_json(
            f"drift/{bundle.source}.json",
            history.source_drift(bundle, kind.DATASETS),
            description="What changed since the source's previous committed snapshot",
        )
    nights = calendar.evidence_calendar(store, family, run.dag_id, sources, run.night, settings.calendar_days)
    calendar_item = writer.add_jsonl(calendar.CALENDAR.item, nights, description=calendar.CALENDAR.description)
    judgement.check(
        VALIDATION_SOURCE,
        calendar.CALENDAR,
        nights,
        calendar_item.collected_at,
        len(nights),
        calendar.control_expectations(calendar.CALENDAR),
    )
    apply_exceptions(judgement.findings, settings.register, settings.today)
    summary = judgement.summary()
    _stage_proof(writer, judgement, summary, settings)
    writer.report_total(calendar.CALENDAR.total, len(nights))
    log.info(
        "validation %s: %d data-quality failure(s), %d open and %d accepted finding(s)",
        summary["status"],
        len(judgement.failures),
        summary["findings"]["open"],
        summary["findings"]["accepted"],
    )
    return writer.finish()


@dataclass
class _Judgement:
    """Everything one validation run concludes, gathered across bundles before anything is decided.

    Like auditree's checks, every failure and finding is collected instead of stopping at the
    first, so one run's summary lists them all.
    """

    validator: Any
    control_map: ControlMap
    parameters: dict[str, Any]
    failures: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    datasets: list[dict[str, Any]] = field(default_factory=list)
    item_status: dict[tuple[str, str], str] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)

    def fail(self, source: str, dataset: str, item: str, check: str, detail: str) -> None:
        """A data-quality failure: the run's outcome becomes failed."""
        self.failures.append({"source": source, "dataset": dataset, "item": item, "check": check, "detail": detail})

    def check_bundle(self, bundle: Bundle, kind: KindChecks) -> None:
        """A source's items must parse, and every dataset its kind declares must be present, complete and valid.

        An item that failed an earlier check is not validated further: its records cannot be trusted.
        """
        self._check_well_formed(bundle)
        items = {staged.item.name: staged for staged in bundle.items}
        for dataset in kind.DATASETS:
            staged = items.get(dataset.item)
            if staged is None:
                self.fail(
                    bundle.source,
                    dataset.name,
                    dataset.item,
                    f"{dataset.name}.present",
                    "the collector did not produce this item",
                )
                continue
            if self.item_status[(bundle.source, dataset.item)] == "failed":
                continue
            total = bundle.reported_totals.get(dataset.total) if dataset.total else None
            if dataset.total and total is None:
                self.item_status[(bundle.source, dataset.item)] = "failed"
                self.fail(
                    bundle.source,
                    dataset.name,
                    dataset.item,
                    f"{dataset.name}.completeness",
                    "the source reported no total",
                )
                continue
            records = load_records(dataset, staged.path)
            self.check(
                bundle.source, dataset, records, staged.item.collected_at, total, kind.control_expectations(dataset)
            )

    def _check_well_formed(self, bundle: Bundle) -> None:
        """Every item starts passed; one whose JSON does not parse fails before its datasets are looked at."""
        for staged in bundle.items:
            self.item_status[(bundle.source, staged.item.name)] = "passed"
            problem = _malformed(staged.path, staged.item.media_type)
            if problem:
                self.item_status[(bundle.source, staged.item.name)] = "failed"
                self.fail(bundle.source, "", staged.item.name, "well_formed", problem)

    def check(
        self, source: str, dataset: Dataset, records: list[dict], collected_at: str, total: int | None, controls
    ) -> None:
        """Run one dataset's suite: quality failures fail the item, control failures become findings.

        The dataset's existence expectation runs with its control checks, so an empty dataset that
        must not be empty is a finding rather than a pass.
        """
        from soc2_evidence.validation.gx import Target, existence_expectations

        if dataset.existence is None:
            self.fail(
                source,
                dataset.name,
                dataset.item,
                f"{dataset.name}.existence",
                "the dataset declares no position on emptiness (core.datasets.must_exist or may_be_empty), "
                "so an empty one cannot be judged",
            )
            return
        target = Target(
            source=source,
            dataset=dataset,
            frame=to_frame(dataset, records, collected_at),
            parameters={**self.parameters, "reported_total": total},
            controls=[*existence_expectations(dataset), *controls],
        )
        checks, raw = self.validator.validate(target)
        self.results.append({"source": source, "dataset": dataset.name, "checkpoint": raw})
        quality_failed = [result for result in checks if result.kind == "quality" and not result.success]
        for result in quality_failed:
            self.fail(source, dataset.name, dataset.item, result.check, result.detail)
        dataset_findings = [
            _finding(source, dataset, result, records, row, self.control_map)
            for result in checks
            if result.kind == "control" and not result.success
            for row in result.unexpected_rows or [None]
        ]
        self.findings.extend(dataset_findings)
        self.datasets.append(
            {
                "source": source,
                "dataset": dataset.name,
                "rows": len(records),
                "quality": "failed" if quality_failed else "passed",
                "findings": len(dataset_findings),
            }
        )
        if quality_failed or (source, dataset.item) not in self.item_status:
            self.item_status[(source, dataset.item)] = "failed" if quality_failed else "passed"

    def summary(self) -> dict[str, Any]:
        """The outcome the manifest records: status, failures, finding counts, criteria, exceptions, item status."""
        by_status = Counter(finding["status"] for finding in self.findings)
        controls = sorted(
            {criterion for entry in self.datasets for criterion in self.control_map.for_dataset(entry["dataset"])}
            | set(self.control_map.quality)
        )
        findings = self.findings
        return {
            "status": "failed" if self.failures else "passed",
            "failures": self.failures,
            "findings": {"open": by_status["open"], "accepted": by_status["accepted"]},
            "datasets": self.datasets,
            "controls": controls,
            "exceptions": {
                "applied": sorted({f["exception"]["id"] for f in findings if f["status"] == "accepted"}),
                "expired": sorted(
                    {f["exception"]["id"] for f in findings if f["exception"] and f["exception"]["state"] == "expired"}
                ),
            },
            "item_status": [[source, name, status] for (source, name), status in sorted(self.item_status.items())],
        }


def _stage_proof(
    writer: BundleWriter, judgement: _Judgement, summary: dict[str, Any], settings: ValidationSettings
) -> None:
    """Stage what an auditor needs to re-check the judgement: findings, the register as applied, the raw
    Great Expectations results, the summary, and the Data Docs site."""
    writer.add_jsonl(
        "findings.jsonl",
        judgement.findings,
        description="Control exceptions: failing records and the check that caught them",
    )
    writer.add_json(
        "exceptions.json",
        {"today": settings.today.isoformat(), "register": [exception.to_dict() for exception in settings.register]},
        description="The accepted-exceptions register as applied to this run",
    )
    writer.add_json("results.json", judgement.results, description="Great Expectations checkpoint results")
    writer.add_json("summary.json", summary, description="Validation outcome, findings and criteria of this run")
    docs_dir = judgement.validator.finish_docs()
    for path in sorted(docs_dir.rglob("*")):
        if path.is_file():
            media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            writer.add_file(f"data-docs/{path.relative_to(docs_dir).as_posix()}", path, media_type)


def freshness_window(logical_date: datetime, hours: int) -> dict[str, datetime]:
    """The freshness expectation's bounds: evidence of a night is collected within ``hours`` of it."""
    return {
        "fresh_after": logical_date - timedelta(hours=hours),
        "fresh_before": logical_date + timedelta(hours=hours),
    }


def _finding(
    source: str, dataset: Dataset, result, records: list[dict], row: int | None, control_map: ControlMap
) -> dict[str, Any]:
    """One failing record (or, for a table-level check, the table) and the check that caught it."""
    record = records[row] if row is not None and row < len(records) else {}
    record_key = {column: record.get(column) for column in dataset.key} if record else {}
    # What an owner acts on: the resource (record_key), the setting in effect, the value expected,
    # the criteria and the remediation. A table-level check (existence) judges the row count.
    setting = {column: record.get(column) for column in result.columns} if record else {"rows": len(records)}
    finding = {
        "source": source,
        "dataset": dataset.name,
        "check": result.check,
        "description": result.description,
        "controls": list(control_map.for_check(result.check)),
        "record_key": record_key,
        "setting": setting,
        "expected": result.expected,
        "remediation": result.remediation,
        "record": record,
        "detail": result.detail,
    }
    finding["id"] = digest_bytes(canonical_json([source, result.check, record_key])).sha256[:16]
    return finding


def _malformed(path: Path, media_type: str) -> str | None:
    """Why a JSON or JSON Lines item does not parse, or None."""
    try:
        if media_type == "application/json":
            json.loads(path.read_bytes())
        elif media_type == "application/x-ndjson":
            with open(path, "rb") as stream:
                for number, line in enumerate(stream, start=1):
                    try:
                        json.loads(line)
                    except ValueError as error:
                        return f"line {number}: {error}"
    except ValueError as error:
        return str(error)
    return None


def summary_of(bundle: Bundle) -> dict[str, Any]:
    staged = next(staged for staged in bundle.items if staged.item.name == "summary.json")
    return json.loads(staged.path.read_bytes())


def today_utc(now: Callable[[], datetime] = utc_now) -> date:
    """Today's UTC date by ``now`` (the real clock unless a test injects one): exceptions expire by it."""
    return now().astimezone(UTC).date()
