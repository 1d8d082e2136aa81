"""Archive and verify end to end against a moto server over HTTP (and the local dev store).

moto gaps named here: it allows shortening COMPLIANCE retention and does not verify checksums,
so ``verify`` must re-hash every object and compare every lock by itself; both are tested.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from conftest import bundle_writer, collected_after
from soc2_evidence.archive import run as archive_module
from soc2_evidence.archive.run import SourceOutcome, archive_run, chain_keys, latest_link, read_link
from soc2_evidence.archive.stores import open_store
from soc2_evidence.archive.verify import NIGHT_DUE_HOURS, verify_store
from soc2_evidence.core.errors import ObjectExistsError, StoreConfigError
from soc2_evidence.core.redaction import Redactor

SOURCE = SourceOutcome("repo-a", "config_repo", "archived")


def stage(tmp_path, run, source="repo-a", content=None):
    writer = bundle_writer(
        tmp_path / "staging", run, family="config", source=source, kind="config_repo", redactor=Redactor(b"k")
    )
    writer.add_json("commit.json", content or {"commit": "abc", "night": run.night.isoformat()})
    writer.add_text("files/app.yaml", "service: payments\npassword: hunter2\n")
    return writer.finish()


PASSED = {"status": "passed", "failures": [], "controls": ["CC8.1"]}


def archive(store, tmp_path, run, content=None):
    """Stage and archive one night, collected and committed an hour after its logical date."""
    bundle = stage(tmp_path, run, content=content)
    return archive_run(
        store,
        family="config",
        run=run,
        bundles=[bundle],
        sources=[SOURCE],
        retention_days=400,
        validation=PASSED,
        now=collected_after(run),
    )


def verify(store, last_night: date = date(2026, 11, 25), **scope):
    """verify_store by a clock that reads just after ``last_night`` is complete: the verifier's today is fixed."""
    complete = datetime.combine(last_night, datetime.min.time(), UTC) + timedelta(hours=NIGHT_DUE_HOURS, minutes=1)
    return verify_store(store, now=lambda: complete, **scope)


def night(run, day: int):
    logical = datetime(2026, 11, day, 2, tzinfo=UTC)
    return replace(run, run_id=f"scheduled__2026-11-{day:02d}T02:00:00+00:00", logical_date=logical)


def errors(report, check=None):
    return [problem for problem in report.errors if check is None or problem.check == check]


def put_raw(s3_client, bucket, key, body):
    """Write a new version the way someone with plain PutObject rights could (not through the store)."""
    s3_client.put_object(
        Bucket=bucket,
        Key=f"evidence/{key}",
        Body=body,
        ChecksumAlgorithm="SHA256",
        ChecksumSHA256=base64.b64encode(hashlib.sha256(body).digest()).decode(),
    )


def test_manifest_lists_every_item_with_hash_version_and_status(s3_store, tmp_path, run_context):
    archived = archive(s3_store, tmp_path, run_context)

    manifest = json.loads(s3_store.read_bytes(archived.manifest_key))
    assert archived.manifest_key == ("config/2026/11/25/scheduled__2026-11-25T02_00_00_00_00/attempt-001/manifest.json")
    assert manifest["chain"] == {"dag_id": run_context.dag_id, "after_sequence": 0}
    link = latest_link(s3_store, run_context.dag_id)
    assert (archived.sequence, link["sequence"], link["previous_link_sha256"]) == (1, 1, None)
    assert link["manifest_key"] == archived.manifest_key and link["manifest_sha256"] == archived.manifest_sha256
    assert link["manifest_version_id"] == s3_store.head(archived.manifest_key).version_id
    assert manifest["outcome"] == "passed"
    assert manifest["controls"] == ["CC8.1"]
    assert manifest["store"] == {"url": s3_store.url, "immutable": True, "retention_days": 400, "stale_uploads": []}
    assert manifest["run"]["dag_id"] == run_context.dag_id
    keys = sorted(item["key"] for item in manifest["items"])
    assert keys == [
        "config/2026/11/25/scheduled__2026-11-25T02_00_00_00_00/attempt-001/repo-a/commit.json",
        "config/2026/11/25/scheduled__2026-11-25T02_00_00_00_00/attempt-001/repo-a/files/app.yaml",
    ]
    for item in manifest["items"]:
        data = s3_store.read_bytes(item["key"])
        assert hashlib.sha256(data).hexdigest() == item["sha256"]
        assert len(data) == item["size"]
        assert item["version_id"] == s3_store.head(item["key"]).version_id
        assert item["validation"] == "not_validated"  # this test validates nothing item by item
        assert item["run"]["run_id"] == run_context.run_id
        assert item["collector"] == "tests" and item["code_revision"]
    assert b"hunter2" not in s3_store.read_bytes(keys[1])


def test_rerun_writes_a_new_attempt_chained_to_the_first(s3_store, tmp_path, run_context):
    first = archive(s3_store, tmp_path, run_context)
    first_versions = {item["key"]: item["version_id"] for item in first.manifest["items"]}

    second = archive(s3_store, tmp_path, run_context, content={"commit": "def"})  # collected again, changed

    assert (first.attempt, second.attempt) == (1, 2)
    first_link, second_link = (read_link(s3_store, key) for key in chain_keys(s3_store, run_context.dag_id))
    assert second_link.body["previous_link_sha256"] == first_link.sha256
    assert (second.sequence, second.manifest["chain"]["after_sequence"]) == (2, 1)
    for key, version in first_versions.items():
        assert s3_store.head(key).version_id == version  # untouched
    assert verify(s3_store).ok


def test_clean_archive_verifies(s3_store, tmp_path, run_context):
    for day in (23, 24, 25):
        archive(s3_store, tmp_path, night(run_context, day))
    report = verify(s3_store, since=date(2026, 11, 23), until=date(2026, 11, 25))
    assert report.ok, report.errors
    assert report.manifests == 3
    assert report.objects_checked == 6
    assert report.calendar == {"config": {"2026-11-23": "passed", "2026-11-24": "passed", "2026-11-25": "passed"}}
    assert report.chains == {run_context.dag_id: 3}


def test_verify_detects_a_flipped_byte(s3_store, s3_client, lock_bucket, tmp_path, run_context):
    archived = archive(s3_store, tmp_path, run_context)
    item = archived.manifest["items"][0]
    data = bytearray(s3_store.read_bytes(item["key"]))
    data[3] ^= 0x01
    put_raw(s3_client, lock_bucket, item["key"], bytes(data))

    report = verify(s3_store)

    # The locked original is still there and still verifies; the rewrite on top of it is the finding.
    assert [(problem.check, problem.key) for problem in report.errors] == [("versions", item["key"])]


def test_verify_detects_a_missing_object(s3_store, s3_client, lock_bucket, tmp_path, run_context):
    archived = archive(s3_store, tmp_path, run_context)
    item = archived.manifest["items"][1]
    # Object Lock allows a delete marker (no version id); the locked version survives underneath.
    s3_client.delete_object(Bucket=lock_bucket, Key=f"evidence/{item['key']}")

    report = verify(s3_store)

    assert [(problem.check, problem.key) for problem in report.errors] == [("versions", item["key"])]
    assert "delete marker" in report.errors[0].detail


def test_verify_detects_a_manifest_removed_from_the_middle_of_the_chain(
    s3_store, s3_client, lock_bucket, tmp_path, run_context
):
    middle = [archive(s3_store, tmp_path, night(run_context, day)) for day in (23, 24, 25)][1]
    s3_client.delete_object(Bucket=lock_bucket, Key=f"evidence/{middle.manifest_key}")

    report = verify(s3_store, since=date(2026, 11, 23), until=date(2026, 11, 25))

    assert [(p.check, p.key) for p in report.errors] == [("versions", middle.manifest_key)]


def test_verify_detects_an_edited_manifest(s3_store, s3_client, lock_bucket, tmp_path, run_context):
    runs = [archive(s3_store, tmp_path, night(run_context, day)) for day in (24, 25)]
    manifest = json.loads(s3_store.read_bytes(runs[0].manifest_key))
    manifest["outcome"] = "passed"
    manifest["items"] = manifest["items"][:1]  # hide an item
    put_raw(s3_client, lock_bucket, runs[0].manifest_key, json.dumps(manifest).encode())

    report = verify(s3_store)

    assert [(p.check, p.key) for p in report.errors] == [("versions", runs[0].manifest_key)]


def test_verify_detects_a_missing_night(s3_store, tmp_path, run_context):
    for day in (22, 23, 25):
        archive(s3_store, tmp_path, night(run_context, day))

    report = verify(s3_store, since=date(2026, 11, 21), until=date(2026, 11, 26))

    assert [p.key for p in errors(report, "calendar")] == [
        "config/2026/11/21",
        "config/2026/11/24",
        "config/2026/11/26",
    ]
    assert report.calendar["config"]["2026-11-24"] == "missing"
    assert report.calendar["config"]["2026-11-25"] == "passed"


def test_verify_detects_added_objects(s3_store, s3_client, lock_bucket, tmp_path, run_context):
    archived = archive(s3_store, tmp_path, run_context)
    folder = archived.manifest_key.rsplit("/", 1)[0]
    put_raw(s3_client, lock_bucket, f"{folder}/repo-a/planted.json", b"{}\n")
    put_raw(s3_client, lock_bucket, "stray.txt", b"stray\n")

    report = verify(s3_store)

    assert sorted(p.key for p in errors(report, "unreferenced")) == [f"{folder}/repo-a/planted.json", "stray.txt"]
    # Keys outside the layout are checked whatever the period.
    scoped = verify(s3_store, since=date(2026, 11, 25), until=date(2026, 11, 25), family="config")
    assert [p.key for p in errors(scoped, "unreferenced")] == [f"{folder}/repo-a/planted.json", "stray.txt"]


def test_verify_detects_shortened_retention(s3_store, s3_client, lock_bucket, tmp_path, run_context):
    """moto lets retention be shortened (real S3 does not); verify compares every lock with the policy."""
    archived = archive(s3_store, tmp_path, run_context)
    item = archived.manifest["items"][0]
    s3_client.put_object_retention(
        Bucket=lock_bucket,
        Key=f"evidence/{item['key']}",
        VersionId=item["version_id"],
        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": run_context.logical_date + timedelta(days=30)},
    )

    report = verify(s3_store)

    assert [p.key for p in errors(report, "retention")] == [item["key"]]
    assert verify(s3_store, retention_days=400 * 3).errors  # a stricter policy than the archive's


def test_every_object_is_locked_for_the_policy(s3_store, s3_client, lock_bucket, tmp_path, run_context):
    """Items, manifest and chain link: collected and committed 2026-11-25T03:00Z, locked 400 days on."""
    archive(s3_store, tmp_path, run_context)
    for entry in s3_client.list_objects_v2(Bucket=lock_bucket)["Contents"]:
        head = s3_client.head_object(Bucket=lock_bucket, Key=entry["Key"])
        assert head["ObjectLockMode"] == "COMPLIANCE", entry["Key"]
        assert head["ObjectLockRetainUntilDate"] == datetime(2027, 12, 30, 3, tzinfo=UTC), entry["Key"]


def test_interrupted_archive_leaves_an_uncommitted_attempt_and_the_night_missing(
    s3_store, tmp_path, run_context, monkeypatch
):
    real_put_file = type(s3_store).put_file
    calls = []

    def failing_put_file(self, key, path, sha256, retain_until):
        calls.append(key)
        if len(calls) == 2:
            raise ConnectionError("network cut")
        return real_put_file(self, key, path, sha256, retain_until)

    monkeypatch.setattr(archive_module, "UPLOAD_THREADS", 1)
    monkeypatch.setattr(type(s3_store), "put_file", failing_put_file)
    with pytest.raises(ConnectionError):
        archive(s3_store, tmp_path, run_context)
    monkeypatch.undo()

    assert latest_link(s3_store, run_context.dag_id) is None
    report = verify(s3_store, since=run_context.night, until=run_context.night)
    assert [p.check for p in report.warnings if p.check == "uncommitted_attempt"] == ["uncommitted_attempt"]
    assert [p.check for p in report.errors] == ["calendar", "manifests"]  # nothing committed: nothing proven

    retried = archive(s3_store, tmp_path, run_context)  # the retry is safe: it completes the same attempt
    assert retried.attempt == 1 and not retried.adopted
    report = verify(s3_store, since=run_context.night, until=run_context.night)
    assert report.ok and not report.warnings


def test_archiving_the_same_run_again_commits_it_once(s3_store, tmp_path, run_context):
    """A second archive of the same staged bytes (a retried task whose first try did commit) adopts the commit."""
    first = archive(s3_store, tmp_path, run_context)
    again = archive(s3_store, tmp_path, run_context)
    assert (again.adopted, again.attempt, again.sequence, again.manifest_key) == (True, 1, 1, first.manifest_key)
    assert len(chain_keys(s3_store, run_context.dag_id)) == 1
    assert verify(s3_store).exit_code == 0


def test_data_quality_failure_is_archived_and_marked_failed(s3_store, tmp_path, run_context):
    bundle = stage(tmp_path, run_context)
    archived = archive_run(
        s3_store,
        family="config",
        run=run_context,
        bundles=[bundle],
        sources=[SOURCE, SourceOutcome("repo-b", "config_repo", "extraction_failed", "git clone failed")],
        retention_days=400,
        item_status={("repo-a", "commit.json"): "failed", ("repo-a", "files/app.yaml"): "passed"},
        validation={"status": "failed", "failures": [{"source": "repo-a", "item": "commit.json", "check": "x"}]},
    )
    assert archived.outcome == "failed"
    manifest = archived.manifest
    assert manifest["failures"]["sources"] == ["repo-b"]
    assert [item["validation"] for item in manifest["items"]] == ["failed", "passed"]
    assert {source["name"]: source["status"] for source in manifest["sources"]} == {
        "repo-a": "archived",
        "repo-b": "extraction_failed",
    }
    report = verify(s3_store)
    assert report.ok and report.exit_code == 2  # intact, but the night did not pass
    assert report.calendar["config"] == {"2026-11-25": "failed"}
    assert [p.check for p in report.warnings] == ["calendar"]


def test_concurrent_commit_takes_the_next_chain_position(s3_store, tmp_path, run_context, monkeypatch):
    first = archive(s3_store, tmp_path, run_context)
    views = []
    real_chain_keys = archive_module.chain_keys

    def stale_on_the_first_claim(store, dag_id):
        """The first claim sees the chain as it was before ``first`` committed, as a racing run would."""
        views.append(dag_id)
        return [] if len(views) == 2 else real_chain_keys(store, dag_id)

    monkeypatch.setattr(archive_module, "chain_keys", stale_on_the_first_claim)
    second = archive(s3_store, tmp_path, night(run_context, 26))
    monkeypatch.undo()

    assert len(views) == 3  # the manifest's floor, the lost claim of place 1, the claim of place 2
    assert second.sequence == 2 and not second.adopted
    assert latest_link(s3_store, run_context.dag_id)["manifest_key"] == second.manifest_key
    assert first.sequence == 1
    assert verify(s3_store, last_night=date(2026, 11, 26), since=date(2026, 11, 25), until=date(2026, 11, 25)).ok


def test_a_run_whose_validation_did_not_run_is_archived_as_failed(s3_store, tmp_path, run_context):
    archived = archive_run(
        s3_store,
        family="config",
        run=run_context,
        bundles=[stage(tmp_path, run_context)],
        sources=[SOURCE],
        retention_days=400,
    )
    assert archived.outcome == "failed"
    assert archived.manifest["validation"] == {"status": "not_run"}
    assert len(archived.manifest["items"]) == 2  # nothing dropped


def test_local_store_is_refused_unless_marked_not_immutable(tmp_path, run_context):
    store = open_store((tmp_path / "store").as_uri())
    with pytest.raises(StoreConfigError, match=r"cannot lock objects.*store\.immutable: false"):
        archive(store, tmp_path, run_context)
    assert not list(store.list_objects())

    archived = archive_run(
        store,
        family="config",
        run=run_context,
        bundles=[stage(tmp_path, run_context)],
        sources=[SOURCE],
        retention_days=400,
        validation=PASSED,
        allow_mutable_store=True,
        now=collected_after(run_context),
    )
    assert archived.manifest["store"]["immutable"] is False  # what verify then fails on
    path = tmp_path / "store" / archived.manifest_key
    assert not path.stat().st_mode & 0o222  # read-only
    with pytest.raises(ObjectExistsError):
        store.put_bytes(archived.manifest_key, b"x", hashlib.sha256(b"x").hexdigest(), run_context.logical_date)

    report = verify(store)
    assert [p.check for p in report.errors] == ["immutability", "immutability"] and report.exit_code == 1

    item = tmp_path / "store" / archived.manifest["items"][0]["key"]
    item.chmod(0o644)
    item.write_bytes(item.read_bytes().replace(b"abc", b"abd"))
    assert [p.check for p in verify(store).errors] == ["immutability", "hash", "immutability"]


def test_a_downloaded_copy_verifies_with_copy_and_says_what_it_cannot_check(s3_store, tmp_path, run_context):
    archive(s3_store, tmp_path, run_context)
    copy = tmp_path / "downloaded"
    for info in s3_store.list_objects():
        (copy / info.key).parent.mkdir(parents=True, exist_ok=True)
        (copy / info.key).write_bytes(s3_store.read_bytes(info.key))
    store = open_store(copy.as_uri())

    assert [p.check for p in verify(store).errors] == ["immutability"]  # without --copy: a store that cannot lock
    report = verify(store, is_copy=True)
    assert report.exit_code == 0, report.errors
    assert [(p.check, p.detail) for p in report.warnings] == [
        ("immutability", "a copy: its locks and versions cannot be checked here")
    ]
    (copy / chain_keys(s3_store, run_context.dag_id)[0]).write_text("{}")  # a copy is still checked byte by byte
    assert verify(store, is_copy=True).exit_code == 1


def test_a_run_of_some_sources_is_partial_never_passed(s3_store, tmp_path, run_context):
    archived = archive_run(
        s3_store,
        family="config",
        run=run_context,
        bundles=[stage(tmp_path, run_context)],
        sources=[SOURCE, SourceOutcome("repo-b", "config_repo", "not_selected", "not in this run's sources param")],
        retention_days=400,
        validation=PASSED,
        now=collected_after(run_context),
    )
    assert archived.outcome == "partial" and archived.manifest["failures"]["sources"] == []
    report = verify(s3_store)
    assert report.calendar["config"] == {"2026-11-25": "failed"} and report.exit_code == 2
