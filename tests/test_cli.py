"""The ``evidence`` command: verify over a real store, one-line errors, documented commands."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
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
    )


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_verify_passes_on_an_intact_archive(s3_store, tmp_path):
    archive_one(s3_store, tmp_path)
    result = invoke("verify", "--store", s3_store.url)
    assert result.exit_code == 0, result.output
    assert "1 re-hashed" in result.output
    assert result.output.rstrip().endswith("OK: archive verified")


def test_verify_fails_and_says_why(s3_store, s3_client, lock_bucket, tmp_path):
    archived = archive_one(s3_store, tmp_path)
    s3_client.delete_object(Bucket=lock_bucket, Key=f"evidence/{archived.manifest['items'][0]['key']}")
    result = invoke("verify", "--store", s3_store.url, "--since", "2026-11-24", "--until", "2026-11-25")
    assert result.exit_code == 1
    assert "ERROR      missing: config/2026/11/25/" in result.output
    assert "ERROR      calendar: config/2026/11/24: no complete run for this night" in result.output
    assert "FAILED: 2 problem(s)" in result.output


def test_verify_json_report(s3_store, tmp_path):
    archive_one(s3_store, tmp_path)
    result = invoke("verify", "--store", s3_store.url, "--json", "--family", "config")
    report = json.loads(result.output)
    assert report["ok"] is True
    assert report["calendar"] == {"config": {"2026-11-25": "passed"}}


def test_verify_reads_the_store_from_the_environment(s3_store, tmp_path, monkeypatch):
    archive_one(s3_store, tmp_path)
    monkeypatch.setenv("EVIDENCE_STORE", s3_store.url)
    assert invoke("verify").exit_code == 0


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
