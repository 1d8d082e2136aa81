"""The Airflow side: thin tasks over :mod:`soc2_evidence.pipeline`, shared by every evidence DAG.

Only ``airflow.sdk`` is imported at module level; the pipeline, boto3 and the collectors
are imported inside the tasks, so DAG files stay cheap to parse.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from airflow.sdk import Asset, TaskGroup, TriggerRule, get_current_context, task

EXTRACT_RETRIES = 3
EXTRACT_RETRY_DELAY = timedelta(seconds=30)
EXTRACT_BACKOFF = 2.0
EXTRACT_MAX_RETRY_DELAY = timedelta(minutes=10)
REDACTION_SECRET_ENV = "EVIDENCE_REDACTION_SECRET"  # noqa: S105 - the variable's name, not a secret


def evidence_asset(family: str) -> Asset:
    """The Asset a family's archive task updates; downstream DAGs (reports, calendars) schedule on it."""
    return Asset(f"soc2_evidence_{family}")


def run_context(context: dict[str, Any]):
    from soc2_evidence.evidence import RunContext

    dag_run = context["dag_run"]
    return RunContext(
        dag_id=dag_run.dag_id,
        run_id=dag_run.run_id,
        logical_date=dag_run.logical_date or dag_run.run_after,
        data_interval_start=dag_run.data_interval_start,
        data_interval_end=dag_run.data_interval_end,
    )


def _redaction_key(variable: str) -> bytes | None:
    from airflow.sdk import Variable

    secret = Variable.get(variable, default=None) or os.environ.get(REDACTION_SECRET_ENV)
    return secret.encode("utf-8") if secret else None


def _get_connection(conn_id: str):
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id)


@task
def list_sources(family: str) -> list[str]:
    """The configured sources of ``family``, or the subset named in the ``sources`` param."""
    from soc2_evidence.config import load_config
    from soc2_evidence.exceptions import ConfigError

    config = load_config()
    names = [source.name for source in config.sources_of(family)]
    wanted = get_current_context()["params"].get("sources") or names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise ConfigError(f"{config.path}: no {family} source named {', '.join(unknown)}")
    return [name for name in names if name in wanted]


@task(
    retries=EXTRACT_RETRIES,
    retry_delay=EXTRACT_RETRY_DELAY,
    retry_exponential_backoff=EXTRACT_BACKOFF,
    max_retry_delay=EXTRACT_MAX_RETRY_DELAY,
    map_index_template="{{ source_name }}",
)
def extract(source_name: str) -> dict[str, Any]:
    """Collect one source into staging. Safe to retry: each try stages afresh and archives nothing."""
    from soc2_evidence.config import load_config
    from soc2_evidence.pipeline import extract_source

    context = get_current_context()
    config = load_config()
    return extract_source(
        config,
        source_name,
        run_context(context),
        try_number=context["ti"].try_number,
        redaction_key=_redaction_key(config.redaction_secret_variable),
        get_connection=_get_connection,
    )


def validate_and_archive(family: str, staged) -> TaskGroup:
    """Validate what was staged, then archive it all, pass or fail: the one tail every family shares.

    Both tasks run even when some extractions failed (``all_done``): what was collected is
    archived, the missing sources are named in the manifest, and the archive task fails.
    """
    with TaskGroup(group_id="validate_and_archive") as group:

        @task(trigger_rule=TriggerRule.ALL_DONE)
        def validate(staged_summaries) -> dict[str, Any]:
            from soc2_evidence.pipeline import validate_bundles
            from soc2_evidence.staging import Bundle

            bundles = [Bundle.load(summary["bundle"]) for summary in staged_summaries]
            report = validate_bundles(bundles)
            return {
                "status": report.status,
                "failures": report.failures,
                "item_status": [
                    [source, name, status] for (source, name), status in sorted(report.item_status.items())
                ],
            }

        @task(trigger_rule=TriggerRule.ALL_DONE, retries=0, outlets=[evidence_asset(family)])
        def archive(staged_summaries, validation: dict[str, Any]) -> dict[str, Any]:
            from soc2_evidence.config import load_config
            from soc2_evidence.exceptions import DataQualityError
            from soc2_evidence.pipeline import ValidationReport, archive_bundles

            report = ValidationReport(
                item_status={(source, name): status for source, name, status in validation["item_status"]},
                failures=validation["failures"],
            )
            config = load_config()
            archived = archive_bundles(
                config,
                family=family,
                run=run_context(get_current_context()),
                bundle_dirs=[summary["bundle"] for summary in staged_summaries],
                report=report,
            )
            result = {
                "store": config.store_url,
                "manifest_key": archived.manifest_key,
                "manifest_sha256": archived.manifest_sha256,
                "attempt": archived.attempt,
                "outcome": archived.outcome,
            }
            if archived.outcome != "passed":
                failures = archived.manifest["failures"]
                raise DataQualityError(
                    f"run archived as FAILED at {config.store_url}/{archived.manifest_key}: "
                    f"sources not collected: {failures['sources'] or 'none'}; "
                    f"items failing validation: {len(failures['items'])}"
                )
            return result

        archive(staged, validate(staged))
    return group
