"""``make demo``'s own path: embedded S3 with Object Lock, Airflow on SQLite, verify; twice in a row."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from conftest import ROOT
from soc2_evidence.demo.run import failure_lines, manifest_problems


def run_demo(*args: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "EVIDENCE_", "AIRFLOW"))}
    return subprocess.run(
        [sys.executable, "-m", "soc2_evidence.demo", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_demo_runs_end_to_end_and_again():
    for _ in range(2):  # the second run must work on the state the first left behind
        result = run_demo()
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        assert "start an S3 API with Object Lock on loopback" in out
        for dag_id in ("evidence_config_snapshot", "evidence_tickets", "evidence_backup_test"):
            assert f"run {dag_id} for " in out
        assert out.count("outcome passed") == 3
        assert "source demo-shop-config: archived" in out and "source demo-aws: archived" in out
        assert re.search(r"restore test shop: passed, RTO [0-9.]+ s \(target 900 s\), RPO [0-9.]+ s", out)
        assert re.search(r"findings [1-9][0-9]* open", out)  # the sample data's planted violations
        assert "result     OK: archive verified" in out
        assert "Verification: OK" in out
        assert "Manifest:     s3://soc2-evidence-demo/evidence/config/" in out
        endpoint = re.search(r"aws --endpoint-url (http://127\.0\.0\.1:\d+) ", out).group(1)
        # It stopped what it started: the embedded S3 server no longer answers.
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(endpoint, timeout=2)  # noqa: S310 - loopback http URL


def test_demo_with_a_dual_s3_and_gcs_copy_verifies_both():
    result = run_demo("--dual")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "start a GCS API on loopback for the second copy" in out
    assert "Store:        s3://soc2-evidence-demo/evidence + gs://soc2-evidence-demo/evidence" in out
    # The emulator holds no lock: verify says so for that copy, and fails on nothing else.
    assert "ERROR      immutability: gs://soc2-evidence-demo/evidence: gs://soc2-evidence-demo/evidence" in out
    assert "verify fails only because the GCS emulator copy cannot lock objects" in out
    assert "Verification: OK" in out


def test_a_bad_configuration_file_is_one_line_and_starts_nothing(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("store:\n  url: s3://b/p\n sources: [\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "EVIDENCE_", "AIRFLOW"))}
    result = subprocess.run(
        [sys.executable, "-m", "soc2_evidence.demo"],
        cwd=ROOT,
        env={**env, "EVIDENCE_CONFIG": str(config)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout.startswith(f"Error: {config}")
    assert len(result.stdout.splitlines()) == 1, result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert "start an S3 API" not in result.stdout


def test_a_failed_night_is_explained_by_its_manifest():
    manifest = {
        "outcome": "failed",
        "sources": [
            {"name": "repo", "status": "archived"},
            {"name": "jira", "status": "extraction_failed", "error": "source jira: GET /x (page 1): HTTP 404"},
            {"name": "old", "status": "extraction_failed"},
        ],
        "validation": {"failures": [{"source": "repo", "item": "commit.json", "check": "fresh", "detail": "old"}]},
    }
    assert manifest_problems(manifest) == [
        "source jira: extraction_failed: source jira: GET /x (page 1): HTTP 404",
        "source old: extraction_failed: no reason recorded",
        "validation: 1 data-quality failure(s), listed above",
    ]
    assert manifest_problems({"outcome": "passed", "sources": [{"name": "repo", "status": "archived"}]}) == []


def test_failure_lines_are_the_fail_exceptions_of_this_run_only(tmp_path):
    log = tmp_path / "airflow.log"
    log.write_text("airflow.sdk.exceptions.AirflowFailException: source old: from an earlier run\n")
    start = log.stat().st_size
    with open(log, "a") as stream:
        stream.write(
            "INFO noise\nairflow.sdk.exceptions.AirflowFailException: config archive: bucket b: access denied\n"
        )
        stream.write("[error] AirflowFailException: config archive: bucket b: access denied\n")
    assert failure_lines(log, start) == ["config archive: bucket b: access denied"]
