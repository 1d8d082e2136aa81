"""The nightly steps as plain functions: extract one source, validate, archive a run.

Airflow tasks are thin wrappers around these, and tests and the CLI call them directly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from soc2_evidence.archive import ArchivedRun, SourceOutcome, archive_run
from soc2_evidence.collectors import CollectContext, collector_for
from soc2_evidence.config import PipelineConfig, SourceConfig
from soc2_evidence.evidence import RunContext
from soc2_evidence.exceptions import ConfigError
from soc2_evidence.redaction import Redactor
from soc2_evidence.staging import Bundle, BundleWriter
from soc2_evidence.stores import open_store

log = logging.getLogger(__name__)


def find_source(config: PipelineConfig, name: str) -> SourceConfig:
    for source in config.sources:
        if source.name == name:
            return source
    raise ConfigError(f"{config.path}: no source named {name!r}")


def extract_source(
    config: PipelineConfig,
    source_name: str,
    run: RunContext,
    *,
    try_number: int = 1,
    redaction_key: bytes | None = None,
    get_connection: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """Collect one source into staging; return a summary small and secret-free enough for XCom."""
    source = find_source(config, source_name)
    collector = collector_for(source.kind)
    writer = BundleWriter(
        config.staging_dir,
        family=source.family,
        source=source.name,
        kind=source.kind,
        run=run,
        try_number=try_number,
        collector=f"{collector.__name__}",
        collector_version=collector.VERSION,
        redactor=Redactor(redaction_key),
    )
    context = CollectContext(resolve_path=config.resolve_path, get_connection=get_connection or _no_connections)
    collector.collect(source, writer, context)
    bundle = writer.finish()
    log.info("source %s: staged %d items (%s)", source.name, len(bundle.items), bundle.redactions or "no redactions")
    return bundle.summary()


@dataclass
class ValidationReport:
    """Per-item status plus the failures behind any ``failed``."""

    item_status: dict[tuple[str, str], str] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "failed" if self.failures else "passed"

    def fail(self, source: str, name: str, check: str, detail: str) -> None:
        self.item_status[(source, name)] = "failed"
        self.failures.append({"source": source, "item": name, "check": check, "detail": detail})

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "failures": self.failures}


def validate_bundles(bundles: list[Bundle]) -> ValidationReport:
    """Data-quality checks every evidence item must pass: well-formed and as complete as its source said."""
    report = ValidationReport()
    for bundle in bundles:
        for staged in bundle.items:
            item = staged.item
            report.item_status[(item.source, item.name)] = "passed"
            if item.media_type == "application/json":
                _check_json(report, item.source, item.name, staged.path.read_bytes(), lines=False)
            elif item.media_type == "application/x-ndjson":
                _check_json(report, item.source, item.name, staged.path.read_bytes(), lines=True)
        if not bundle.items:
            report.fail(bundle.source, "", "not_empty", "the source produced no evidence items")
    return report


def archive_bundles(
    config: PipelineConfig,
    *,
    family: str,
    run: RunContext,
    bundle_dirs: list[str],
    report: ValidationReport,
    aws_conn_id: str | None = None,
) -> ArchivedRun:
    """Archive what was staged; configured sources with no bundle are recorded as failed."""
    bundles = [Bundle.load(path) for path in bundle_dirs]
    staged_sources = {bundle.source for bundle in bundles}
    outcomes = [
        SourceOutcome(source.name, source.kind, "archived")
        if source.name in staged_sources
        else SourceOutcome(source.name, source.kind, "extraction_failed", "extraction did not finish; see its task log")
        for source in config.sources_of(family)
    ]
    store = open_store(config.store_url, aws_conn_id=aws_conn_id or config.aws_conn_id)
    return archive_run(
        store,
        family=family,
        run=run,
        bundles=bundles,
        sources=outcomes,
        retention_days=config.retention_days,
        item_status=report.item_status,
        validation=report.to_dict(),
    )


def _check_json(report: ValidationReport, source: str, name: str, data: bytes, *, lines: bool) -> None:
    try:
        if lines:
            for number, line in enumerate(data.splitlines(), start=1):
                try:
                    json.loads(line)
                except ValueError as error:
                    raise ValueError(f"line {number}: {error}") from error
        else:
            json.loads(data)
    except ValueError as error:
        report.fail(source, name, "well_formed_json", str(error))


def _no_connections(conn_id: str) -> Any:
    raise ConfigError(f"connection {conn_id!r} requested outside Airflow; set AIRFLOW_CONN_{conn_id.upper()}")
