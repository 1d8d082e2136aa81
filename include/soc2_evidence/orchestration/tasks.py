"""The Airflow side: thin tasks over :mod:`soc2_evidence.orchestration.pipeline`, shared by every evidence DAG.

Only ``airflow.sdk`` is imported at module level; the pipeline, boto3 and the collectors
are imported inside the tasks, so DAG files stay cheap to parse.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, Param, TaskGroup, TriggerRule, get_current_context, task

from soc2_evidence.orchestration.alerts import on_task_failure
from soc2_evidence.orchestration.failures import airflow_edge
from soc2_evidence.orchestration.tags import dag_tags

# Transient failures of extract and archive retry with backoff; permanent ones fail at once.
TRANSIENT_RETRIES = 3
TRANSIENT_RETRY_DELAY = timedelta(seconds=30)
TRANSIENT_BACKOFF = 2.0
TRANSIENT_MAX_RETRY_DELAY = timedelta(minutes=10)
REDACTION_SECRET_ENV = "EVIDENCE_REDACTION_SECRET"  # noqa: S105 - the variable's name, not a secret


START_DATE = datetime(2026, 1, 1, tzinfo=UTC)


def nightly_dag_settings(family: str) -> dict[str, Any]:
    """What every evidence DAG shares: one run at a time, no catch-up, tags, owner, alerts.

    Retries are off by default: ``extract`` retries, since collection is what transient errors
    break and repeating it is safe, and so does ``archive``, whose every write is idempotent (a
    retry completes the same attempt, or finds it committed). Every task body runs in
    ``airflow_edge``: a permanent error fails at once with one line, a transient one retries (see
    ``orchestration.failures``).
    """
    return {
        "start_date": START_DATE,
        "catchup": False,
        "max_active_runs": 1,
        "tags": dag_tags(family),
        "default_args": {"owner": "data-team", "retries": 0, "on_failure_callback": on_task_failure},
    }


def dag_schedule(dag_key: str) -> str | None:
    """The DAG's schedule from the configuration, which is checked whole at parse time.

    A broken file raises here, so Airflow shows it as the DAG's import error, naming every problem;
    a DAG never falls back to a default schedule. A passed check is remembered under
    ``$AIRFLOW_HOME`` for the same file, code and overrides (see :mod:`parse_check`).
    """
    from soc2_evidence.core.config import config_path
    from soc2_evidence.orchestration.parse_check import checked_schedules

    home = Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")
    return checked_schedules(config_path(), home / "soc2-evidence" / "parse-check.json")[dag_key]


def sources_param() -> Param:
    return Param([], type="array", description="Only these sources (default: all configured)")


def evidence_asset(family: str) -> Asset:
    """The Asset a family's archive task updates; downstream DAGs (reports, calendars) schedule on it."""
    return Asset(f"soc2_evidence_{family}")


def run_context(context: dict[str, Any]):
    from soc2_evidence.core.evidence import RunContext

    dag_run = context["dag_run"]
    return RunContext(
        dag_id=dag_run.dag_id,
        run_id=dag_run.run_id,
        logical_date=dag_run.logical_date or dag_run.run_after,
        data_interval_start=dag_run.data_interval_start,
        data_interval_end=dag_run.data_interval_end,
    )


def clock():
    """The clock the tasks collect, validate and archive by: the real one. DAG tests replace this
    function to run a night on an injected clock."""
    from soc2_evidence.core.evidence import utc_now

    return utc_now


def _redaction_key(variable: str) -> bytes | None:
    from airflow.sdk import Variable

    secret = Variable.get(variable, default=None) or os.environ.get(REDACTION_SECRET_ENV)
    return secret.encode("utf-8") if secret else None


@task
def list_sources(family: str) -> list[str]:
    """The configured sources of ``family``, or the subset named in the ``sources`` param."""
    from soc2_evidence.collectors import load_config
    from soc2_evidence.core.errors import ConfigError

    with airflow_edge(f"{family} sources"):
        config = load_config()
        names = [source.name for source in config.sources_of(family)]
        if not names:
            raise ConfigError(f"{config.path}: no source has family {family}; a night without sources proves nothing")
        wanted = get_current_context()["params"].get("sources") or names
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            raise ConfigError(f"{config.path}: no {family} source named {', '.join(unknown)}")
        return [name for name in names if name in wanted]


@task(
    retries=TRANSIENT_RETRIES,
    retry_delay=TRANSIENT_RETRY_DELAY,
    retry_exponential_backoff=TRANSIENT_BACKOFF,
    max_retry_delay=TRANSIENT_MAX_RETRY_DELAY,
    map_index_template="{{ source_name }}",
)
def extract(source_name: str) -> dict[str, Any]:
    """Collect one source into staging. Safe to retry: each try stages afresh and archives nothing."""
    from soc2_evidence.collectors import load_config
    from soc2_evidence.orchestration.connections import AirflowCredentials
    from soc2_evidence.orchestration.pipeline import extract_source

    context = get_current_context()
    with airflow_edge(f"source {source_name}"):
        config = load_config()
        return extract_source(
            config,
            source_name,
            run_context(context),
            try_number=context["ti"].try_number,
            redaction_key=_redaction_key(config.redaction_secret_variable),
            credentials=AirflowCredentials(),
            params=context["params"],
            now=clock(),
        )


def validate_and_archive(family: str, staged) -> TaskGroup:
    """Validate what was staged, then archive it all, pass or fail: the one tail every family shares.

    Both tasks run even when some extractions failed (``all_done``). What was collected is
    archived, missing sources are named in the manifest, and a data-quality failure fails the
    archive task after the evidence is stored. Control exceptions are findings: they are
    archived and notified, and the run succeeds.
    """
    with TaskGroup(group_id="validate_and_archive") as group:

        @task(trigger_rule=TriggerRule.ALL_DONE)
        def validate(staged_summaries) -> dict[str, Any]:
            from soc2_evidence.collectors import load_config
            from soc2_evidence.orchestration.connections import AirflowCredentials
            from soc2_evidence.orchestration.pipeline import validate_staged

            context = get_current_context()
            with airflow_edge(f"{family} validation"):
                return validate_staged(
                    load_config(),
                    family=family,
                    run=run_context(context),
                    bundle_dirs=[summary["bundle"] for summary in staged_summaries],
                    try_number=context["ti"].try_number,
                    selected=context["params"].get("sources") or None,
                    credentials=AirflowCredentials(),
                    now=clock(),
                )

        @task(
            trigger_rule=TriggerRule.ALL_DONE,
            retries=TRANSIENT_RETRIES,
            retry_delay=TRANSIENT_RETRY_DELAY,
            retry_exponential_backoff=TRANSIENT_BACKOFF,
            max_retry_delay=TRANSIENT_MAX_RETRY_DELAY,
            outlets=[evidence_asset(family)],
        )
        def archive(staged_summaries) -> dict[str, Any]:
            from soc2_evidence.collectors import load_config
            from soc2_evidence.core.errors import DataQualityError
            from soc2_evidence.orchestration.alerts import notify_findings
            from soc2_evidence.orchestration.connections import AirflowCredentials
            from soc2_evidence.orchestration.pipeline import archive_bundles

            context = get_current_context()
            with airflow_edge(f"{family} archive"):
                # Pulled, not passed: if validation crashed, the evidence is still archived (marked not validated).
                validation = context["ti"].xcom_pull(task_ids=f"{group.group_id}.validate")
                config = load_config()
                archived = archive_bundles(
                    config,
                    family=family,
                    run=run_context(context),
                    bundle_dirs=[summary["bundle"] for summary in staged_summaries],
                    validation_dir=validation["bundle"] if validation else None,
                    selected=context["params"].get("sources") or None,
                    credentials=AirflowCredentials(),
                    now=clock(),
                )
                location = f"{config.store_url}/{archived.manifest_key}"
                if archived.adopted:
                    logging.getLogger(__name__).info(
                        "%s was already archived by another try of this task; committed once", location
                    )
                result = {
                    "manifest": location,
                    "manifest_sha256": archived.manifest_sha256,
                    "outcome": archived.outcome,
                }
                summary = archived.manifest["validation"]
                if summary.get("findings", {}).get("open"):
                    notify_findings({"dag_id": context["dag_run"].dag_id, "manifest": location, **summary["findings"]})
                if archived.outcome == "failed":
                    missing = archived.manifest["failures"]["sources"] or "none"
                    checks = len(summary.get("failures", []))
                    raise DataQualityError(
                        f"run archived as FAILED at {location}: sources not collected: {missing}; "
                        f"validation {summary.get('status')}: {checks} data-quality failure(s)"
                    )
                return result

        validate(staged) >> archive(staged)
    return group
