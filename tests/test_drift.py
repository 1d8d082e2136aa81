"""Drift: the plain comparison, and two archived nights of a config repository in a file:// store."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import git, make_repo, write_pipeline_config
from soc2_evidence.collectors import load_config
from soc2_evidence.core.evidence import RunContext
from soc2_evidence.core.staging import Bundle
from soc2_evidence.orchestration.pipeline import archive_bundles, extract_source, validate_staged
from soc2_evidence.validation.drift import drift

ROOT = Path(__file__).resolve().parents[1]


# --- the plain function ------------------------------------------------------------------------------------------


def test_added_removed_and_changed_records():
    previous = [
        {"path": "a.yaml", "blob": "1", "size": 4},
        {"path": "b.yaml", "blob": "2", "size": 4},
        {"path": "c.yaml", "blob": "3", "size": 4},
    ]
    current = [
        {"path": "d.yaml", "blob": "9", "size": 1},
        {"path": "b.yaml", "blob": "5", "size": 6},
        {"path": "c.yaml", "blob": "3", "size": 4},
    ]
    assert drift(previous, current, ("path",)) == {
        "added": [{"path": "d.yaml", "blob": "9", "size": 1}],
        "removed": [{"path": "a.yaml", "blob": "1", "size": 4}],
        "changed": [{"key": {"path": "b.yaml"}, "fields": {"blob": ["2", "5"], "size": [4, 6]}}],
    }


def test_no_change_is_empty_and_order_does_not_matter():
    records = [{"role": name, "login": True} for name in ("b", "a", "c")]
    assert drift(records, list(reversed(records)), ("role",)) == {"added": [], "removed": [], "changed": []}


def test_compound_key_and_a_column_present_on_one_side_only():
    previous = [{"role": "r", "member": "m", "grantor": "g", "admin_option": False}]
    current = [
        {"role": "r", "member": "m", "grantor": "g", "admin_option": True, "inherit": True},
        {"role": "r", "member": "n", "grantor": "g", "admin_option": False},
    ]
    result = drift(previous, current, ("role", "member", "grantor"))
    assert result["changed"] == [
        {
            "key": {"role": "r", "member": "m", "grantor": "g"},
            "fields": {"admin_option": [False, True], "inherit": [None, True]},
        }
    ]
    assert [record["member"] for record in result["added"]] == ["n"]
    assert result["removed"] == []


def test_output_is_sorted_by_key_whatever_the_input_order():
    current = [{"k": key} for key in ("z", "a", "m")]
    assert [record["k"] for record in drift([], current, ("k",))["added"]] == ["a", "m", "z"]
    assert [record["k"] for record in drift(current, [], ("k",))["removed"]] == ["a", "m", "z"]


# --- two archived nights ----------------------------------------------------------------------------------------


@pytest.fixture
def config(tmp_path, monkeypatch):
    for name in ("EVIDENCE_STORE", "EVIDENCE_CONFIG", "EVIDENCE_STAGING"):
        monkeypatch.delenv(name, raising=False)
    repo = make_repo(tmp_path / "repo", {"a.yaml": "a: 1\n", "b.yaml": "b: 1\n", "c.yaml": "c: 1\n"})
    path = write_pipeline_config(
        tmp_path,
        [{"name": "repo", "kind": "config_repo", "family": "config", "repo": str(repo)}],
        validation={
            "controls_file": str(ROOT / "include" / "config" / "controls.yaml"),
            "exceptions_file": str(ROOT / "include" / "config" / "exceptions.yaml"),
        },
    )
    return load_config(path), repo


def night(config, logical_date: datetime):
    """One nightly run through the pipeline's own steps, on a clock an hour after ``logical_date``;
    returns the drift item and the archived run."""
    run = RunContext("evidence_config_snapshot", f"scheduled__{logical_date.isoformat()}", logical_date)
    clock = lambda: logical_date + timedelta(hours=1)  # noqa: E731
    staged = extract_source(config, "repo", run, now=clock)
    validation = validate_staged(config, family="config", run=run, bundle_dirs=[staged["bundle"]], now=clock)
    assert validation["status"] == "passed", validation["failures"]
    archived = archive_bundles(
        config,
        family="config",
        run=run,
        bundle_dirs=[staged["bundle"]],
        validation_dir=validation["bundle"],
        now=clock,
    )
    bundle = Bundle.load(validation["bundle"])
    item = next(staged for staged in bundle.items if staged.item.name == "drift/repo.json")
    return json.loads(item.path.read_bytes()), archived


@pytest.mark.parametrize(
    ("second_night", "first_folder"),
    [
        (datetime(2026, 11, 25, 2, tzinfo=UTC), "config/2026/11/24/"),
        (datetime(2027, 1, 1, 2, tzinfo=UTC), "config/2026/12/31/"),  # the previous night is last year's
        (datetime(2028, 3, 1, 2, tzinfo=UTC), "config/2028/02/29/"),  # ... the leap day
    ],
    ids=["mid-month", "new-year", "after-leap-day"],
)
def test_second_night_lists_what_changed_in_the_repository(config, second_night, first_folder):
    config, repo = config
    now = second_night
    first, archived = night(config, now - timedelta(days=1))
    assert archived.manifest_key.startswith(first_folder)
    assert first == {"source": "repo", "kind": "config_repo", "baseline": True, "previous": None, "datasets": {}}

    old_commit = git(repo, "rev-parse", "HEAD").strip()
    old_blob = git(repo, "rev-parse", "HEAD:b.yaml").strip()
    (repo / "b.yaml").write_text("b: 2\n")
    (repo / "a.yaml").unlink()
    (repo / "d.yaml").write_text("d: 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "change b, drop a, add d")
    new_commit = git(repo, "rev-parse", "HEAD").strip()

    second, _ = night(config, now)
    assert second["baseline"] is False
    assert second["previous"] == {
        "manifest": archived.manifest_key,
        "run_id": archived.manifest["run"]["run_id"],
        "logical_date": archived.manifest["run"]["logical_date"],
    }
    files = second["datasets"]["config_repo.files"]
    assert [record["path"] for record in files["added"]] == ["d.yaml"]
    assert [record["path"] for record in files["removed"]] == ["a.yaml"]
    new_blob = git(repo, "rev-parse", "HEAD:b.yaml").strip()
    sha256s = [
        hashlib.sha256(git(repo, "cat-file", "blob", blob).encode()).hexdigest() for blob in (old_blob, new_blob)
    ]
    assert files["changed"] == [
        {"key": {"path": "b.yaml"}, "fields": {"blob": [old_blob, new_blob], "sha256": sha256s}}
    ]
    commit = second["datasets"]["config_repo.commit"]
    assert [record["commit"] for record in commit["removed"]] == [old_commit]
    assert [record["commit"] for record in commit["added"]] == [new_commit]

    # Unchanged since: no drift, compared with the second night's manifest.
    third, _ = night(config, now + timedelta(minutes=1))
    assert third["datasets"]["config_repo.files"] == {"added": [], "removed": [], "changed": []}
    assert third["datasets"]["config_repo.commit"] == {"added": [], "removed": [], "changed": []}
    assert third["previous"]["manifest"] != archived.manifest_key
