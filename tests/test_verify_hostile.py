"""``evidence verify`` on hostile store content: every case is a reported problem, never a traceback.

Built in a file store (a downloaded copy, or a development store), where anything can be planted:
manifests and links of the wrong shape or type, symbolic links, FIFOs, a directory link that loops,
nights at the ends of the calendar, and a period that cannot be laid out.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, date, datetime, timedelta

import pytest
from click.testing import CliRunner

from conftest import commit_night
from soc2_evidence.archive.run import chain_keys
from soc2_evidence.archive.stores import open_store
from soc2_evidence.archive.verify import MAX_CALENDAR_DAYS, verify_store
from soc2_evidence.cli import main

NIGHT = "2026-11-25"
CLOCK = datetime(2026, 11, 25, 13, tzinfo=UTC)


@pytest.fixture
def archived(tmp_path):
    """A file store holding one committed night, and its root."""
    root = tmp_path / "store"
    store = open_store(root.as_uri())
    committed = commit_night(store, tmp_path / "staging", NIGHT, {"repo": "archived"})
    return store, root, committed


def verify(store, **scope):
    return verify_store(store, is_copy=True, now=lambda: CLOCK, **scope)


def replace_file(path, content: bytes) -> None:
    path.chmod(0o644)
    path.write_bytes(content)


@pytest.mark.parametrize("content", [b"[]", b'"x"', b"null", b"{", b"[" * 10_000, b'{"items": "x"}'])
def test_a_manifest_of_the_wrong_shape_is_a_problem(archived, content):
    store, root, committed = archived
    replace_file(root / committed.manifest_key, content)
    report = verify(store)
    assert report.exit_code == 1
    assert any(problem.key == committed.manifest_key for problem in report.errors), report.errors


@pytest.mark.parametrize(
    "change",
    [
        {"sequence": "1"},
        {"sequence": None},
        {"manifest_key": 7},
        {"manifest_key": "../../etc/passwd"},
        {"manifest_sha256": ["x"]},
        {"schema": None},
        {"previous_link_sha256": {"a": 1}},
    ],
)
def test_a_link_of_the_wrong_type_is_a_problem(archived, change):
    store, root, committed = archived
    replace_file(
        root / committed.link_key,
        json.dumps({**json.loads((root / committed.link_key).read_bytes()), **change}).encode(),
    )
    report = verify(store)
    assert report.exit_code == 1
    assert any(problem.key == committed.link_key for problem in report.errors), report.errors
    if change == {"sequence": "1"}:
        [problem] = [p for p in report.errors if p.key == committed.link_key]
        assert "'1'" in problem.detail  # a string is named as one, not shown as if it were the number


@pytest.mark.parametrize("content", [b"[]", b"null", b"\xff\xfe"])
def test_a_link_that_is_not_an_object_is_a_problem(archived, content):
    store, root, committed = archived
    replace_file(root / committed.link_key, content)
    assert any(problem.key == committed.link_key for problem in verify(store).errors)


def test_symlinks_fifos_and_loops_are_reported_not_followed(archived, tmp_path):
    store, root, committed = archived
    item = root / committed.manifest["items"][0]["key"]
    outside = tmp_path / "outside.json"
    outside.write_bytes(item.read_bytes())
    item.chmod(0o644)
    item.unlink()
    item.symlink_to(outside)  # same bytes, but not the archived file
    folder = root / committed.manifest_key.rsplit("/", 1)[0]
    os.mkfifo(folder / "pipe")
    (root / "config" / "loop").symlink_to(root / "config")

    report = verify(store)

    keys = {problem.key: problem.detail for problem in report.errors}
    assert "symbolic link" in keys[committed.manifest["items"][0]["key"]]
    assert committed.manifest_key.rsplit("/", 1)[0] + "/pipe" in keys
    assert "config/loop" in keys


def test_a_manifest_that_is_a_symlink_is_not_read_through(archived, tmp_path):
    store, root, committed = archived
    manifest = root / committed.manifest_key
    copy = tmp_path / "manifest.json"
    copy.write_bytes(manifest.read_bytes())
    manifest.chmod(0o644)
    manifest.unlink()
    manifest.symlink_to(copy)
    report = verify(store)
    assert any(p.key == committed.manifest_key and "symbolic link" in p.detail for p in report.errors)


def test_a_night_in_the_far_past_is_a_refused_period(tmp_path):
    root = tmp_path / "store"
    store = open_store(root.as_uri())
    commit_night(store, tmp_path / "staging", "0001-01-03", {"repo": "archived"})
    commit_night(store, tmp_path / "staging", NIGHT, {"repo": "archived"})
    report = verify(store)
    assert report.exit_code == 1
    assert [problem.check for problem in report.errors if problem.check == "period"] == ["period"]
    assert not report.calendar  # nothing laid out: 739,000 nights are not walked


def test_a_committed_night_that_has_not_happened_is_an_error(archived):
    """A run for 9999-12-31 cannot be archived (its retention would overflow), so it is planted: a copy of a
    real manifest in a far-future folder, committed by a well-formed link."""
    store, root, committed = archived
    forged = committed.manifest_key.replace("config/2026/11/25/", "config/9999/12/31/")
    (root / forged).parent.mkdir(parents=True)
    (root / forged).write_bytes((root / committed.manifest_key).read_bytes())
    link = json.loads((root / committed.link_key).read_bytes())
    second = {
        **link,
        "sequence": 2,
        "manifest_key": forged,
        "previous_link_sha256": hashlib.sha256((root / committed.link_key).read_bytes()).hexdigest(),
    }
    (root / committed.link_key).with_name("0000000002.json").write_bytes(json.dumps(second).encode())
    report = verify(store)
    assert any(problem.key == forged and "has not happened yet" in problem.detail for problem in report.errors)
    assert report.exit_code == 1


def test_a_period_that_cannot_be_laid_out_is_refused_with_the_reason(archived):
    store, _, _ = archived
    report = verify(store, since=date(2026, 1, 1), until=date(9999, 12, 31))
    assert [problem.check for problem in report.errors if problem.check == "period"] == ["period"]
    assert f"longer than {MAX_CALENDAR_DAYS} nights" in report.errors[-1].detail or any(
        f"longer than {MAX_CALENDAR_DAYS} nights" in problem.detail for problem in report.errors
    )


def test_the_cli_never_prints_a_traceback_on_hostile_content(archived):
    store, root, committed = archived
    replace_file(root / committed.manifest_key, b"[]")
    replace_file(root / chain_keys(store, "evidence_config_snapshot")[0], b'{"sequence": "1"}')
    result = CliRunner().invoke(main, ["verify", "--store", store.url, "--copy", "--until", "9999-12-31"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_the_calendar_of_a_committed_far_past_night_is_bounded(tmp_path):
    """A night 10,000 years back does not lay out 3.6 million nights: it is one refused period."""
    root = tmp_path / "store"
    store = open_store(root.as_uri())
    commit_night(store, tmp_path / "staging", "0001-01-02", {"repo": "archived"})
    report = verify(store, until=date(2026, 11, 25))
    assert sum(len(days) for days in report.calendar.values()) == 0
    assert any(problem.check == "period" for problem in report.errors)
    assert timedelta(days=MAX_CALENDAR_DAYS) < date(2026, 11, 25) - date(1, 1, 2)
