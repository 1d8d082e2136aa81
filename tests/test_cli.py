"""The ``evidence`` command: verify over a real store, one-line errors, documented commands."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from conftest import bundle_writer
from soc2_evidence.archive.run import SourceOutcome, archive_run
from soc2_evidence.cli import main
from soc2_evidence.core.evidence import RunContext

RUN = RunContext("evidence_config_snapshot", "scheduled__2026-11-25", datetime(2026, 11, 25, 2, tzinfo=UTC))


def archive_one(store, tmp_path):
    writer = bundle_writer(tmp_path / "staging", RUN, family="config", source="repo", kind="config_repo")
    writer.add_json("commit.json", {"commit": "abc"})
    return archive_run(
        store,
        family="config",
        run=RUN,
        bundles=[writer.finish()],
        sources=[SourceOutcome("repo", "config_repo", "archived")],
        retention_days=400,
        validation={"status": "passed", "failures": []},
        now=lambda: RUN.logical_date + timedelta(hours=1),
    )


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_verify_passes_on_an_intact_archive(s3_store, tmp_path):
    archive_one(s3_store, tmp_path)
    result = invoke("verify", "--store", s3_store.url, "--until", "2026-11-25")
    assert result.exit_code == 0, result.output
    assert "1 re-hashed" in result.output
    assert result.output.rstrip().endswith("OK: archive verified, every night passed")


def test_verify_exit_code_2_is_an_intact_archive_with_nights_missing(s3_store, tmp_path):
    archive_one(s3_store, tmp_path)
    result = invoke("verify", "--store", s3_store.url, "--until", "2026-11-26")
    assert result.exit_code == 2, result.output
    assert "ERROR      calendar: config/2026/11/26: no committed run for this night" in result.output
    assert result.output.rstrip().endswith(
        "INCOMPLETE: archive intact, but nights are missing or failed (1 problem(s))"
    )


def test_verify_fails_and_says_why(s3_store, s3_client, lock_bucket, tmp_path):
    archived = archive_one(s3_store, tmp_path)
    s3_client.delete_object(Bucket=lock_bucket, Key=f"evidence/{archived.manifest['items'][0]['key']}")
    result = invoke("verify", "--store", s3_store.url, "--since", "2026-11-24", "--until", "2026-11-25")
    assert result.exit_code == 1
    assert "ERROR      versions: config/2026/11/25/" in result.output and "delete marker" in result.output
    assert "ERROR      calendar: config/2026/11/24: no committed run for this night" in result.output
    assert "FAILED: 2 problem(s), integrity not proven" in result.output


def test_verify_json_report(s3_store, tmp_path):
    archive_one(s3_store, tmp_path)
    result = invoke("verify", "--store", s3_store.url, "--json", "--family", "config", "--until", "2026-11-25")
    report = json.loads(result.output)
    assert report["ok"] is True and report["exit_code"] == result.exit_code == 0
    assert report["calendar"] == {"config": {"2026-11-25": "passed"}}


def test_verify_reads_the_store_from_the_environment(s3_store, tmp_path, monkeypatch):
    archive_one(s3_store, tmp_path)
    monkeypatch.setenv("EVIDENCE_STORE", s3_store.url)
    assert invoke("verify", "--until", "2026-11-25").exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--store", "ftp://x/y"], "Error: store URL 'ftp://x/y': unknown scheme 'ftp'", id="scheme"),
        pytest.param(["--store", "s3://no-such-bucket-here"], "bucket no-such-bucket-here: cannot list", id="bucket"),
        pytest.param(
            ["--store", "file:///tmp", "--since", "2026-02-01", "--until", "2026-01-01"],
            "--since is after --until",
            id="period",
        ),
        pytest.param(["--store", "file:///tmp", "--since", "yesterday"], "Invalid value for '--since'", id="date"),
    ],
)
def test_bad_input_is_one_clear_line(aws_env, args, message):
    result = CliRunner().invoke(main, ["verify", *args])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_verify_of_an_empty_or_misspelt_prefix_fails(s3_store, tmp_path):
    """Nothing verified proves nothing: a typo in the prefix must not read as a clean archive."""
    archive_one(s3_store, tmp_path)
    misspelt = s3_store.url.rsplit("/", 1)[0] + "/evidnce"
    result = invoke("verify", "--store", misspelt, "--until", "2026-11-25")
    assert result.exit_code == 1
    assert (
        f"ERROR      manifests: {misspelt}: found no committed manifests under {misspelt} (until 2026-11-25); "
        "check the bucket and prefix of the store URL, and the period"
    ) in result.output
    assert result.output.rstrip().endswith("FAILED: 1 problem(s), integrity not proven")


@pytest.fixture
def one_try_s3(monkeypatch):
    """S3 clients that do not retry: what botocore gives up with after ten tries (~30 s here) comes at once."""
    from botocore.config import Config

    from soc2_evidence.core import credentials

    one_try = Config(retries={"mode": "standard", "total_max_attempts": 1})
    monkeypatch.setattr(credentials, "aws_client_config", lambda: one_try)


def test_verify_against_a_closed_port_is_one_line(aws_env, one_try_s3, monkeypatch):
    with socket.socket() as probe:  # free a moment ago: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", closed)
    result = CliRunner().invoke(main, ["verify", "--store", "s3://soc2-evidence/evidence"])
    assert result.exit_code == 1
    assert result.output == (
        "Error: bucket soc2-evidence: cannot list versions: cannot reach the S3 endpoint (Could not connect to the "
        f'endpoint URL: "{closed}/soc2-evidence?versions&prefix=evidence%2F&encoding-type=url"); check the network '
        "and AWS_ENDPOINT_URL_S3\n"
    )


def test_verify_without_credentials_is_one_line(aws_env, one_try_s3, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = CliRunner().invoke(main, ["verify", "--store", "s3://soc2-evidence/evidence"])
    assert result.exit_code == 1
    assert result.output == (
        "Error: bucket soc2-evidence: cannot list versions: no AWS credentials found; set AWS_PROFILE or "
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY\n"
    )


def test_every_command_is_documented_with_an_example():
    for name, command in main.commands.items():
        assert command.help, f"evidence {name} has no help text"
        assert "Example:" in command.help, f"evidence {name} help has no Example block"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"evidence {name} {param.opts[0]} has no help"


def test_console_script_is_installed_beside_the_interpreter():
    script = Path(sys.executable).parent / "evidence"
    assert script.exists(), "make's .venv bootstrap installs the `evidence` console script"
    result = subprocess.run([str(script), "verify", "--help"], capture_output=True, text=True, check=True)
    assert "Example:" in result.stdout
