"""The parse-time configuration check remembers only passed checks, and only for the same inputs."""

from __future__ import annotations

import json

import pytest

from conftest import write_pipeline_config
from soc2_evidence.core.errors import ConfigError
from soc2_evidence.orchestration import parse_check


@pytest.fixture
def loads(monkeypatch):
    """Counts the full checks (each imports every collector and walks the file)."""
    from soc2_evidence import collectors

    calls = []
    real = collectors.load_config

    def counting(path=None):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(collectors, "load_config", counting)
    return calls


def test_a_passed_check_is_remembered_for_the_same_file(tmp_path, loads):
    config = write_pipeline_config(tmp_path, [])
    memory = tmp_path / "home" / "parse-check.json"
    first = parse_check.checked_schedules(config, memory)
    assert first == {"config_snapshot": None, "tickets": None, "backup_test": None}
    assert parse_check.checked_schedules(config, memory) == first
    assert len(loads) == 1
    assert json.loads(memory.read_text())["schedules"] == first


def test_a_changed_file_or_override_is_checked_again(tmp_path, monkeypatch, loads):
    config = write_pipeline_config(tmp_path, [])
    memory = tmp_path / "parse-check.json"
    parse_check.checked_schedules(config, memory)
    document = json.loads(config.read_text())
    document["schedules"]["tickets"] = None
    document["retention_days"] = 500
    config.write_text(json.dumps(document))
    parse_check.checked_schedules(config, memory)
    monkeypatch.setenv("EVIDENCE_STORE", "s3://other/prefix")
    parse_check.checked_schedules(config, memory)
    assert len(loads) == 3


def test_a_failed_check_is_never_remembered(tmp_path, loads):
    config = write_pipeline_config(tmp_path, [])
    config.write_text(config.read_text().replace('"schedules"', '"schedule"'))
    memory = tmp_path / "parse-check.json"
    for _ in range(2):
        with pytest.raises(ConfigError, match="unknown key 'schedule'; did you mean 'schedules'"):
            parse_check.checked_schedules(config, memory)
    assert len(loads) == 2
    assert not memory.exists()


def test_a_memory_that_cannot_be_written_only_costs_speed(tmp_path, loads):
    config = write_pipeline_config(tmp_path, [])
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    memory = blocked / "parse-check.json"
    assert parse_check.checked_schedules(config, memory) == parse_check.checked_schedules(config, memory)
    assert len(loads) == 2


def test_a_forged_or_torn_memory_is_not_trusted(tmp_path, loads):
    config = write_pipeline_config(tmp_path, [])
    memory = tmp_path / "parse-check.json"
    for content in ('{"fingerprint": "0", "schedules": {"tickets": "* * * * *"}}', '{"fingerpr', "[]"):
        memory.write_text(content)
        assert parse_check.checked_schedules(config, memory)["tickets"] is None
    assert len(loads) == 3
