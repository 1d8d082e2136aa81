"""DAG integrity and policy, then the nightly DAG run for real with ``dag.test()`` on SQLite metadata."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from conftest import ROOT, make_repo, write_pipeline_config
from soc2_evidence.archive.run import latest_link
from soc2_evidence.archive.stores import open_store
from soc2_evidence.archive.verify import verify_store
from soc2_evidence.demo.run import failure_lines
from soc2_evidence.orchestration import tags

CANARY_PASSWORD = "Canary-Passw0rd-7781"
CANARY_AWS_SECRET = "Zq9vCanaryCanaryCanaryCanaryCanary0AWSk1"


@pytest.fixture(scope="module")
def dag_bag():
    from airflow.dag_processing.dagbag import DagBag

    started = time.perf_counter()
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    print(f"DagBag parse of dags/: {(time.perf_counter() - started) * 1000:.0f} ms for {len(bag.dags)} DAG(s)")
    return bag


def test_every_dag_file_imports_without_error(dag_bag):
    assert not dag_bag.import_errors, "\n".join(f"{path}: {error}" for path, error in dag_bag.import_errors.items())
    assert dag_bag.dags, "no DAGs found in dags/"


def test_dag_policy(dag_bag):
    problems = []
    for dag_id, dag in dag_bag.dags.items():
        if tags.PROJECT not in dag.tags or not any(tag.startswith("family:") for tag in dag.tags):
            problems.append(f"DAG: {dag_id}: tags {sorted(dag.tags)} lack `{tags.PROJECT}` or a `family:` tag")
        if tags.TRIAGE_DATA_TEAM not in dag.tags:
            problems.append(f"DAG: {dag_id}: no triage tag")
        if not (dag.doc_md and "Runbook" in dag.doc_md):
            problems.append(f"DAG: {dag_id}: doc_md has no runbook")
        if dag.catchup:
            problems.append(f"DAG: {dag_id}: catchup must be off")
        for task in dag.tasks:
            if task.owner in ("", "airflow"):
                problems.append(f"DAG: {dag_id}: task {task.task_id} has no owner")
            if not task.on_failure_callback:
                problems.append(f"DAG: {dag_id}: task {task.task_id} has no failure callback")
            # Extraction and the archive (whose every write is idempotent) retry transient errors; nothing else does.
            retrying = task.task_id.endswith(("extract", "archive"))
            if retrying and not (task.retries >= 1 and task.retry_exponential_backoff):
                problems.append(f"DAG: {dag_id}: task {task.task_id} must retry with backoff")
            if not retrying and task.retries:
                problems.append(f"DAG: {dag_id}: only extract and archive retry; {task.task_id} has {task.retries}")
    assert not problems, "\n".join(problems)


def test_config_snapshot_dag_shape(dag_bag):
    dag = dag_bag.dags["evidence_config_snapshot"]
    assert set(dag.task_ids) == {
        "list_sources",
        "extract",
        "validate_and_archive.validate",
        "validate_and_archive.archive",
    }
    archive_task = dag.get_task("validate_and_archive.archive")
    assert archive_task.trigger_rule == "all_done"
    assert [outlet.name for outlet in archive_task.outlets] == ["soc2_evidence_config"]
    assert "sources" in dag.params


def write_config(tmp_path, store_url: str, sources: list[dict]) -> str:
    validation = {"controls_file": str(ROOT / "include" / "config" / "controls.yaml"), "freshness_hours": 36}
    return str(
        write_pipeline_config(tmp_path, sources, store_url=store_url, validation=validation, exceptions_stub=True)
    )


@pytest.fixture
def config_repo(tmp_path):
    return make_repo(
        tmp_path / "repo",
        {
            "app/settings.yaml": f"db:\n  password: {CANARY_PASSWORD}\naws_secret_access_key: {CANARY_AWS_SECRET}\n",
            "app/feature.yaml": "require_mfa: true\n",
        },
    )


NIGHT = datetime(2026, 11, 25, 2, tzinfo=UTC)


def run_dag(dag_bag, monkeypatch, config_path: str, logical_date: datetime, collected_at: datetime | None = None):
    """``dag.test`` of the config DAG, its tasks on a clock stopped at ``collected_at`` (by default an
    hour after the logical date, as the nightly run collects)."""
    from soc2_evidence.orchestration import tasks

    now = collected_at or logical_date + timedelta(hours=1)
    monkeypatch.setattr(tasks, "clock", lambda: lambda: now)
    monkeypatch.setenv("EVIDENCE_CONFIG", config_path)
    monkeypatch.setenv("AIRFLOW_VAR_SOC2_EVIDENCE_REDACTION_SECRET", "test-redaction-key")
    dag = dag_bag.dags["evidence_config_snapshot"]
    return dag.test(logical_date=logical_date)


def xcom_values(run_id: str) -> list[str]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter(XComModel.run_id == run_id).all()
        return [json.dumps(row.value) for row in rows]


def test_nightly_run_archives_and_verifies(
    airflow_db, dag_bag, aws_env, lock_bucket, config_repo, tmp_path, monkeypatch, capfd
):
    store_url = f"s3://{lock_bucket}/evidence"
    sources = [{"name": "app-config", "kind": "config_repo", "family": "config", "repo": str(config_repo)}]
    findings = []
    monkeypatch.setattr("soc2_evidence.orchestration.alerts._notifiers", [findings.append])
    dag_run = run_dag(dag_bag, monkeypatch, write_config(tmp_path, store_url, sources), NIGHT)

    assert dag_run.state == "success"  # a control exception is a finding, not a failure
    store = open_store(store_url)
    link = latest_link(store, "evidence_config_snapshot")
    manifest = json.loads(store.read_bytes(link["manifest_key"]))
    assert manifest["outcome"] == "passed"
    assert manifest["run"]["run_id"] == dag_run.run_id
    assert manifest["validation"]["status"] == "passed"
    assert manifest["validation"]["findings"] == {"open": 1, "accepted": 0}
    assert manifest["controls"] == ["CC2.1", "CC4.1", "CC6.1", "CC7.2", "CC8.1"]
    assert [alert["kind"] for alert in findings] == ["findings"]
    folder = link["manifest_key"].rsplit("/", 1)[0]
    [finding] = [json.loads(line) for line in store.read_bytes(f"{folder}/validation/findings.jsonl").splitlines()]
    assert finding["check"] == "config_repo.files.nothing_to_redact"
    assert finding["record_key"] == {"path": "app/settings.yaml"}
    assert finding["controls"] == ["CC6.1"] and finding["status"] == "open"
    assert any(item["key"] == f"{folder}/validation/data-docs/index.html" for item in manifest["items"])
    assert {item["name"] for item in manifest["items"] if item["source"] == "app-config"} == {
        "commit.json",
        "files.json",
        "files/app/settings.yaml",
        "files/app/feature.yaml",
    }
    statuses = {(item["source"], item["name"]): item["validation"] for item in manifest["items"]}
    assert {status for (source, _), status in statuses.items() if source == "app-config"} == {"passed"}
    assert statuses[("validation", "calendar.jsonl")] == "passed"
    assert statuses[("validation", "summary.json")] == "not_validated"  # the proof itself is not re-checked
    assert verify_store(store, until=NIGHT.date()).ok

    everything = b"".join(store.read_bytes(info.key) for info in store.list_objects())
    xcoms = "".join(xcom_values(dag_run.run_id))
    task_logs = "".join(capfd.readouterr())
    assert "validate_and_archive.archive" in task_logs  # the logs were captured
    for canary in (CANARY_PASSWORD, CANARY_AWS_SECRET):
        assert canary.encode() not in everything
        assert canary not in xcoms
        assert canary not in task_logs


@pytest.fixture
def webhook(monkeypatch):
    """A chat-style webhook on loopback, wired up as the soc2_evidence_alerts connection."""
    import http.server
    import threading

    received = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    monkeypatch.setenv("AIRFLOW_CONN_SOC2_EVIDENCE_ALERTS", json.dumps({"conn_type": "http", "host": url}))
    yield received
    server.shutdown()


def test_a_failing_source_fails_alone_and_the_rest_is_archived(
    airflow_db, dag_bag, aws_env, lock_bucket, config_repo, tmp_path, monkeypatch, webhook, capfd
):
    """A missing repository (permanent) fails at once; an unreachable git server (transient) is retried."""
    store_url = f"s3://{lock_bucket}/evidence"
    missing = tmp_path / "no-such-repo"
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    sources = [
        {"name": "app-config", "kind": "config_repo", "family": "config", "repo": str(config_repo)},
        {"name": "gone", "kind": "config_repo", "family": "config", "repo": str(missing)},
        {"name": "offline", "kind": "config_repo", "family": "config", "repo": "http://127.0.0.1:1/config.git"},
    ]
    extract_task = dag_bag.dags["evidence_config_snapshot"].get_task("extract")
    monkeypatch.setattr(extract_task, "retries", 1)  # one retry proves retrying; backoff waits are not the test
    monkeypatch.setattr(extract_task, "retry_delay", timedelta(0))
    dag_run = run_dag(dag_bag, monkeypatch, write_config(tmp_path, store_url, sources), NIGHT)

    assert dag_run.state == "failed"
    extract_tries = {ti.map_index: ti.try_number for ti in dag_run.get_task_instances() if ti.task_id == "extract"}
    assert extract_tries == {0: 1, 1: 1, 2: 2}  # only the transient failure was retried
    store = open_store(store_url)
    manifest = json.loads(store.read_bytes(latest_link(store, "evidence_config_snapshot")["manifest_key"]))
    assert manifest["outcome"] == "failed"
    assert manifest["failures"]["sources"] == ["gone", "offline"]
    sources_by_name = {source["name"]: source for source in manifest["sources"]}
    assert {name: source["status"] for name, source in sources_by_name.items()} == {
        "app-config": "archived",
        "gone": "extraction_failed",
        "offline": "extraction_failed",
        "validation": "archived",
    }
    assert sources_by_name["gone"]["error"] == f"source gone: repository {missing} does not exist or is not a directory"
    assert sources_by_name["offline"]["error"].startswith(
        "source offline: git clone of the repository URL failed: fatal: unable to access"
    )
    assert manifest["validation"]["failures"] == []  # what was collected is valid; the run failed on the gap
    assert {item["source"] for item in manifest["items"]} == {"app-config", "validation"}
    assert verify_store(store, until=NIGHT.date()).ok  # intact evidence of a failed night
    failures = [alert for alert in webhook if alert["kind"] == "task_failure"]
    extract_alert = next(alert for alert in failures if alert["task_id"] == "extract" and alert["source"] == "gone")
    assert "[gone]" in extract_alert["text"] and "does not exist" in extract_alert["text"]
    assert any(alert["task_id"] == "validate_and_archive.archive" for alert in failures)
    log = tmp_path / "airflow.log"  # what `make demo` reads back from `airflow dags test`
    log.write_text("".join(capfd.readouterr()))
    assert f"source gone: repository {missing} does not exist or is not a directory" in failure_lines(log)
    assert not any(line.startswith("source offline") for line in failure_lines(log))  # transient: not failed for good


def test_a_data_quality_failure_archives_the_evidence_marked_failed_and_fails_the_task(
    airflow_db, dag_bag, aws_env, lock_bucket, config_repo, tmp_path, monkeypatch
):
    """Evidence collected today cannot prove a night months ago: the freshness expectation fails."""
    store_url = f"s3://{lock_bucket}/evidence"
    sources = [{"name": "app-config", "kind": "config_repo", "family": "config", "repo": str(config_repo)}]
    dag_run = run_dag(
        dag_bag,
        monkeypatch,
        write_config(tmp_path, store_url, sources),
        datetime(2026, 1, 5, tzinfo=UTC),
        collected_at=NIGHT,  # ten months later
    )

    assert dag_run.state == "failed"
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states["validate_and_archive.validate"] == "success"
    assert states["validate_and_archive.archive"] == "failed"
    store = open_store(store_url)
    manifest = json.loads(store.read_bytes(latest_link(store, "evidence_config_snapshot")["manifest_key"]))
    assert manifest["outcome"] == "failed"
    assert manifest["validation"]["status"] == "failed"
    checks = {failure["check"] for failure in manifest["validation"]["failures"]}
    assert checks == {"config_repo.commit.freshness", "config_repo.files.freshness"}
    failed_items = {item["name"] for item in manifest["items"] if item["validation"] == "failed"}
    assert failed_items == {"commit.json", "files.json"}
    report = verify_store(store, until=date(2026, 1, 5))
    assert report.exit_code == 2 and report.calendar == {"config": {"2026-01-05": "failed"}}  # intact, marked failed


def test_a_broken_configuration_is_every_dags_import_error_naming_the_problem(tmp_path, monkeypatch):
    """A typo must not leave the DAGs running on default schedules: the DAG files refuse to load."""
    from airflow.dag_processing.dagbag import DagBag

    broken = write_config(tmp_path, "s3://bucket/evidence", [])
    text = Path(broken).read_text().replace('"config_snapshot": null', '"config_snapshots": "15 1 * * *"')
    Path(broken).write_text(text)
    monkeypatch.setenv("EVIDENCE_CONFIG", broken)
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert sorted(Path(path).name for path in bag.import_errors) == [
        "backup_test.py",
        "config_snapshot.py",
        "tickets.py",
    ]
    for error in bag.import_errors.values():
        assert "schedules.config_snapshots: unknown key 'config_snapshots'; did you mean 'config_snapshot'?" in error
    assert not bag.dags


def test_the_schedules_come_from_the_configuration(tmp_path, monkeypatch, config_repo):
    from airflow.dag_processing.dagbag import DagBag

    path = write_config(
        tmp_path, "s3://bucket/evidence", [{"name": "app", "kind": "config_repo", "repo": str(config_repo)}]
    )
    document = json.loads(Path(path).read_text())
    document["schedules"]["config_snapshot"] = "15 1 * * *"
    Path(path).write_text(json.dumps(document))
    monkeypatch.setenv("EVIDENCE_CONFIG", path)
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors
    assert bag.dags["evidence_config_snapshot"].schedule == "15 1 * * *"
    assert bag.dags["evidence_tickets"].schedule is None
