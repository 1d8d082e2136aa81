"""The GCS retention store and the dual S3 + GCS copy, against gcp-storage-emulator and moto over HTTP.

Gaps of gcp-storage-emulator (measured), named where they matter:
- it enforces no retention policy, bucket lock, hold or object retention, and returns none of
  those fields, so the fail-closed decision is tested on recorded GCS JSON API bucket resources
  and the store reports an emulator bucket as not immutable;
- it ignores ``if_generation_match``: the test checks the store sends ``ifGenerationMatch=0``;
- it does verify MD5 and CRC32C, so a wrong checksum is refused as on GCS.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from google.api_core import exceptions as google_exceptions

from conftest import bundle_writer
from soc2_evidence.archive.run import SourceOutcome, archive_run, latest_link
from soc2_evidence.archive.stores import open_store
from soc2_evidence.archive.stores.gcs import BUCKET_LOCK, OBJECT_LOCK, retention_mode
from soc2_evidence.archive.verify import verify_store
from soc2_evidence.core.errors import StoreConfigError
from soc2_evidence.core.hashing import digest_bytes

RETAIN = datetime(2030, 1, 1, tzinfo=UTC)
DAYS = 400

# Bucket resources as the GCS JSON API documents them (storage#bucket), trimmed to what matters.
LOCKED_POLICY = {
    "kind": "storage#bucket",
    "name": "evidence",
    "retentionPolicy": {
        "retentionPeriod": str(DAYS * 86400),
        "effectiveTime": "2026-01-01T00:00:00Z",
        "isLocked": True,
    },
}
OBJECT_RETENTION = {"kind": "storage#bucket", "name": "evidence", "objectRetention": {"mode": "Enabled"}}


@pytest.mark.parametrize(
    ("bucket", "expected"),
    [
        pytest.param(LOCKED_POLICY, BUCKET_LOCK, id="locked-policy"),
        pytest.param(OBJECT_RETENTION, OBJECT_LOCK, id="object-retention-lock"),
    ],
)
def test_retention_modes_that_hold_evidence(bucket, expected):
    assert retention_mode(bucket, DAYS) == expected


@pytest.mark.parametrize(
    ("bucket", "message"),
    [
        pytest.param(
            {**LOCKED_POLICY, "retentionPolicy": {**LOCKED_POLICY["retentionPolicy"], "isLocked": False}},
            "bucket evidence: retention policy is not locked",
            id="unlocked-policy",
        ),
        pytest.param(
            {**LOCKED_POLICY, "retentionPolicy": {"retentionPeriod": str(30 * 86400), "isLocked": True}},
            "locked retention policy is 30 days, the configuration needs 400",
            id="too-short",
        ),
        pytest.param(
            {"kind": "storage#bucket", "name": "evidence"},
            "bucket evidence: no locked retention policy and Object Retention Lock is not enabled",
            id="no-retention",
        ),
        pytest.param(
            {"kind": "storage#bucket", "name": "evidence", "objectRetention": {"mode": "Disabled"}},
            "Object Retention Lock is not enabled",
            id="object-retention-off",
        ),
    ],
)
def test_fails_closed_on_buckets_that_cannot_hold_evidence(bucket, message):
    with pytest.raises(StoreConfigError, match=message):
        retention_mode(bucket, DAYS)


def test_fails_closed_outside_an_emulator(gcs_bucket, monkeypatch):
    store = open_store(f"gs://{gcs_bucket}/evidence")
    store.bucket  # noqa: B018 - resolve the client while the emulator variable is set
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    with pytest.raises(StoreConfigError, match=f"bucket {gcs_bucket}: no locked retention policy"):
        store.check_writable(DAYS)


def test_emulator_bucket_is_written_but_reported_as_not_immutable(gcs_bucket):
    store = open_store(f"gs://{gcs_bucket}/evidence")
    store.check_writable(DAYS)
    assert store.immutable is False


def test_missing_bucket_is_named(gcs_endpoint, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint)
    with pytest.raises(StoreConfigError, match="bucket no-such-bucket: bucket does not exist"):
        open_store("gs://no-such-bucket/x").check_writable(DAYS)


def test_upload_sends_generation_precondition_md5_and_crc32c(gcs_bucket):
    store = open_store(f"gs://{gcs_bucket}/evidence")
    store.check_writable(DAYS)
    requests_seen = []
    store.bucket.client._http.hooks["response"].append(lambda response, **_: requests_seen.append(response.request))
    data = b'{"evidence":true}\n'

    stored = store.put_bytes("config/a.json", data, digest_bytes(data).sha256, RETAIN)

    [upload] = [request for request in requests_seen if "/upload/" in request.url]
    assert "ifGenerationMatch=0" in upload.url  # the emulator ignores it; real GCS refuses an overwrite
    metadata = json.loads(upload.body.split(b"\r\n\r\n", 2)[1].split(b"\r\n--", 1)[0])
    assert metadata["md5Hash"] and metadata["crc32c"]
    assert metadata["retention"]["mode"] == "Locked"  # sent, though the emulator holds no lock
    blob = store.bucket.get_blob("evidence/config/a.json")
    assert stored.version_id == str(blob.generation)
    assert store.read_bytes("config/a.json") == data


def test_emulator_verifies_md5(gcs_bucket):
    """The one integrity check the emulator does enforce: a body that does not match its MD5 is refused."""
    store = open_store(f"gs://{gcs_bucket}/evidence")
    blob = store.bucket.blob("evidence/bad.json")
    blob.md5_hash = "1B2M2Y8AsgTpgAmY7PhCfg=="  # MD5 of the empty string
    with pytest.raises(google_exceptions.BadRequest):
        blob.upload_from_string(b"not empty")


def stage(tmp_path, run):
    writer = bundle_writer(tmp_path / "staging", run, family="config", source="repo", kind="config_repo")
    writer.add_json("commit.json", {"commit": "abc"})
    writer.add_text("files/app.yaml", "mfa: true\n")
    return writer.finish()


def archive(store, tmp_path, run):
    return archive_run(
        store,
        family="config",
        run=run,
        bundles=[stage(tmp_path, run)],
        sources=[SourceOutcome("repo", "config_repo", "archived")],
        retention_days=DAYS,
        validation={"status": "passed", "failures": []},
        allow_mutable_store=True,  # the emulator holds no lock: the gap this module names
        now=lambda: run.logical_date + timedelta(hours=1),
    )


def test_dual_write_lists_both_copies_and_verifies_on_both(lock_bucket, gcs_bucket, tmp_path, run_context):
    dual = open_store(f"s3://{lock_bucket}/evidence,gs://{gcs_bucket}/evidence")
    archived = archive(dual, tmp_path, run_context)

    for item in archived.manifest["items"]:
        stores = [copy["store"] for copy in item["copies"]]
        assert stores == [f"s3://{lock_bucket}/evidence", f"gs://{gcs_bucket}/evidence"]
        assert all(copy["version_id"] for copy in item["copies"])
    for copy in dual.copies:  # the manifest and its chain link are in both
        assert latest_link(copy, run_context.dag_id)["manifest_key"] == archived.manifest_key
        assert hashlib.sha256(copy.read_bytes(archived.manifest_key)).hexdigest() == archived.manifest_sha256

    report = verify_store(dual, until=run_context.night)
    assert report.objects_checked == 4  # two items, re-hashed in each copy
    # The emulator copy holds no lock, so the manifests say the store is mutable: that is all that fails.
    assert {p.check for p in report.errors} == {"immutability"}, report.errors


def test_a_failure_of_either_copy_leaves_the_run_uncommitted(
    lock_bucket, gcs_bucket, tmp_path, run_context, monkeypatch
):
    dual = open_store(f"s3://{lock_bucket}/evidence,gs://{gcs_bucket}/evidence")
    secondary = dual.secondary
    real = type(secondary).put_file

    def failing(self, key, path, sha256, retain_until):
        if key.endswith("files/app.yaml"):
            raise StoreConfigError(f"{self.url}/{key}: write failed: 503 backend unavailable")
        return real(self, key, path, sha256, retain_until)

    monkeypatch.setattr(type(secondary), "put_file", failing)
    with pytest.raises(StoreConfigError, match="503 backend unavailable"):
        archive(dual, tmp_path, run_context)

    for copy in dual.copies:
        assert latest_link(copy, run_context.dag_id) is None  # nothing marked complete in either
    report = verify_store(dual, since=run_context.night, until=run_context.night)
    assert not report.ok
    assert any(p.check == "calendar" for p in report.errors)


def test_verify_reports_disagreement_between_copies(lock_bucket, gcs_bucket, tmp_path, run_context):
    dual = open_store(f"s3://{lock_bucket}/evidence,gs://{gcs_bucket}/evidence")
    archived = archive(dual, tmp_path, run_context)
    item = archived.manifest["items"][0]["key"]
    # The emulator lets an object be replaced (real GCS with a lock would not): tamper with one copy.
    dual.secondary.bucket.blob(f"evidence/{item}").upload_from_string(b'{"commit":"abcd"}\n')

    report = verify_store(dual, until=run_context.night)

    assert not report.ok
    assert any(p.check == "hash" and p.key == f"{dual.secondary.url}: {item}" for p in report.errors)
    assert any(p.check == "copies" and p.key == item for p in report.errors)
