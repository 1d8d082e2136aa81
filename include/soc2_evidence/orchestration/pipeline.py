"""The nightly steps as plain functions: extract one source, validate, archive a run.

Airflow tasks are thin wrappers around these, and tests and the CLI call them directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from soc2_evidence.archive.run import (
    NOT_SELECTED,
    ArchivedRun,
    SourceOutcome,
    archive_run,
    committed_manifests,
    passed_items,
)
from soc2_evidence.archive.stores import open_store
from soc2_evidence.archive.stores.base import EvidenceStore
from soc2_evidence.collectors import CollectContext, collector_for
from soc2_evidence.core.config import PipelineConfig, SourceConfig
from soc2_evidence.core.credentials import Credentials
from soc2_evidence.core.errors import CollectorError, ConfigError, EvidenceError, describe
from soc2_evidence.core.evidence import RunContext, utc_now
from soc2_evidence.core.hashing import digest_bytes
from soc2_evidence.core.redaction import Redactor
from soc2_evidence.core.staging import Bundle, BundleWriter, failure_reason, record_failure
from soc2_evidence.validation.run import VALIDATION_SOURCE, summary_of

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
    credentials: Credentials | None = None,
    params: Mapping[str, Any] | None = None,
    now: Callable[[], datetime] = utc_now,
) -> dict[str, Any]:
    """Collect one source into staging; return a summary small and secret-free enough for XCom.

    ``credentials`` resolve the connection ids of the source and the store (default: the
    standard chains, outside Airflow; the Airflow tasks pass Airflow's). ``now`` is the clock the
    collector and the writer read (windows, ages, collected_at); tests inject one. When it fails
    with one of our errors, its one-line description is kept in staging (:func:`record_failure`)
    so the run's manifest can say why the source is missing.
    """
    try:
        return _extract(config, source_name, run, try_number, redaction_key, credentials or Credentials(), params, now)
    except EvidenceError as error:
        record_failure(config.staging_dir, run, source_name, describe(error))
        raise


def _extract(config, source_name, run, try_number, redaction_key, credentials, params, now) -> dict[str, Any]:
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
        now=now,
    )
    context = CollectContext(
        resolve_path=config.resolve_path,
        credentials=credentials,
        params=dict(params or {}),
        last_committed_item=lambda name: last_committed_item(
            open_store(config.store_url, aws_conn_id=config.aws_conn_id, credentials=credentials),
            run.dag_id,
            source.name,
            name,
        ),
        now=now,
    )
    collector.collect(source, writer, context)
    bundle = writer.finish()
    log.info("source %s: staged %d items (%s)", source.name, len(bundle.items), bundle.redactions or "no redactions")
    return bundle.summary()


def last_committed_item(store: EvidenceStore, dag_id: str, source: str, name: str) -> bytes | None:
    """Item ``name`` of ``source`` from the newest committed run of ``dag_id`` that holds it with every
    item of the source passed, walking the manifest chain back; None when no run does.

    Reading what is committed (not what was staged) is what makes a watermark advance only after
    the archive holds the evidence: a failed or unarchived run is skipped. The content is checked
    against the manifest's hash.
    """
    for _, manifest in committed_manifests(store, dag_id):
        wanted = next((item for item in passed_items(manifest, source) or [] if item.get("name") == name), None)
        if wanted:
            data = store.read_bytes(wanted["key"])
            if digest_bytes(data).sha256 != wanted["sha256"]:
                raise CollectorError(f"source {source}: {wanted['key']} does not match its manifest's hash")
            return data
    return None


def validate_staged(
    config: PipelineConfig,
    *,
    family: str,
    run: RunContext,
    bundle_dirs: list[str],
    try_number: int = 1,
    aws_conn_id: str | None = None,
    credentials: Credentials | None = None,
    selected: list[str] | None = None,
    now: Callable[[], datetime] = utc_now,
) -> dict[str, Any]:
    """Validate what was staged; return the validation bundle's path and summary (secret-free, for XCom).

    ``selected`` is a manual run's ``sources`` param: only those sources are expected.
    ``now`` decides which exceptions have expired and stamps the validation's items.
    """
    from soc2_evidence.validation.controls import load_control_map, load_exceptions
    from soc2_evidence.validation.run import ValidationSettings, today_utc, validate_run

    settings = ValidationSettings(
        control_map=load_control_map(config.controls_path),
        register=load_exceptions(config.exceptions_path),
        freshness_hours=config.freshness_hours,
        calendar_days=config.calendar_days,
        today=today_utc(now),
    )
    bundle = validate_run(
        [Bundle.load(path) for path in bundle_dirs],
        run,
        family=family,
        sources=[source.name for source in config.sources_of(family) if not selected or source.name in selected],
        store=open_store(config.store_url, aws_conn_id=aws_conn_id or config.aws_conn_id, credentials=credentials),
        settings=settings,
        staging_root=config.staging_dir,
        checks_of=collector_for,
        try_number=try_number,
        now=now,
    )
    summary = summary_of(bundle)
    return {
        "bundle": str(bundle.directory),
        **{key: summary[key] for key in ("status", "findings", "controls")},
        "failures": summary["failures"],
    }


def archive_bundles(
    config: PipelineConfig,
    *,
    family: str,
    run: RunContext,
    bundle_dirs: list[str],
    validation_dir: str | None,
    aws_conn_id: str | None = None,
    credentials: Credentials | None = None,
    selected: list[str] | None = None,
    now: Callable[[], datetime] = utc_now,
) -> ArchivedRun:
    """Archive what was staged, with its validation; sources with no bundle are recorded as failed.

    With no validation bundle (the validate task failed) everything is still archived, marked
    not validated, and the run's outcome is failed. A bundle whose staging was lost or damaged
    after extraction (a missing file, a size that changed) loses only its source: that source is
    archived as failed, with the reason and the staging path, and the others as usual.
    """
    bundles: list[Bundle] = []
    lost: dict[str, str] = {}
    for path in bundle_dirs:
        bundle, reason = _load_staged(path)
        if bundle is None:
            lost[Path(path).parent.name] = reason
        else:
            bundles.append(bundle)
    summary = None
    if validation_dir:
        validation, reason = _load_staged(validation_dir)
        if validation is None:
            log.warning("validation staging is unusable, archiving without it: %s", reason)
        else:
            summary = summary_of(validation)
            bundles.append(validation)
    staged_sources = {bundle.source for bundle in bundles}
    outcomes = []
    for source in config.sources_of(family):
        if selected and source.name not in selected:
            outcomes.append(SourceOutcome(source.name, source.kind, NOT_SELECTED, "not in this run's sources param"))
        elif source.name in staged_sources:
            outcomes.append(SourceOutcome(source.name, source.kind, "archived"))
        elif source.name in lost:
            outcomes.append(SourceOutcome(source.name, source.kind, "staging_lost", lost[source.name]))
        else:
            outcomes.append(
                SourceOutcome(source.name, source.kind, "extraction_failed", _why_missing(config, run, source.name))
            )
    if summary is not None:
        outcomes.append(SourceOutcome(VALIDATION_SOURCE, VALIDATION_SOURCE, "archived"))
    store = open_store(config.store_url, aws_conn_id=aws_conn_id or config.aws_conn_id, credentials=credentials)
    return archive_run(
        store,
        family=family,
        run=run,
        bundles=bundles,
        sources=outcomes,
        retention_days=config.retention_days,
        item_status={(source, name): status for source, name, status in summary["item_status"]} if summary else {},
        validation={key: value for key, value in summary.items() if key != "item_status"} if summary else None,
        allow_mutable_store=not config.store_immutable,
        abort_stale_uploads=config.abort_stale_uploads,
        now=now,
    )


def _load_staged(path: str) -> tuple[Bundle | None, str]:
    """The bundle at ``path`` with every item file present at its recorded size; else None and why not."""
    try:
        bundle = Bundle.load(path)
    except (OSError, ValueError, KeyError, TypeError) as error:
        return (
            None,
            f"staging {path} is unreadable ({describe(error)}); the source's evidence was lost after extraction",
        )
    for staged in bundle.items:
        try:
            size = staged.path.stat().st_size
        except OSError:
            return None, f"staging {path} lost {staged.item.name}; the source's evidence was lost after extraction"
        if size != staged.item.size:
            return None, (
                f"staging {path}: {staged.item.name} is {size} bytes, {staged.item.size} were staged; "
                "the source's evidence was changed after extraction"
            )
    return bundle, ""


def _why_missing(config: PipelineConfig, run: RunContext, source: str) -> str:
    """The failed extraction's own one line, else (it was killed, or crashed on a bug) where to look."""
    return failure_reason(config.staging_dir, run, source) or "extraction did not finish; see its task log"
