"""The S3 Object Lock store against a moto server over HTTP.

Gaps of moto 5.2.5 (measured), named where they matter:
- it does not enforce retention shortening (put_object_retention to an earlier date succeeds);
- it does not verify ChecksumSHA256 against the body;
- it drops the lock headers of multipart uploads (the store re-applies the retention);
- it reports a multipart upload's composite checksum without AWS's "-<parts>" suffix;
- get_object_retention is broken in server mode, so the store reads locks with head_object.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from soc2_evidence.archive.stores import open_store
from soc2_evidence.archive.stores import s3 as s3_module
from soc2_evidence.core.errors import ObjectExistsError, StoreConfigError
from soc2_evidence.core.hashing import digest_bytes
from soc2_evidence.demo.local_services import create_object_lock_bucket

RETAIN = datetime(2030, 1, 1, tzinfo=UTC)


def test_every_write_carries_compliance_lock_and_sha256_checksum(s3_store, s3_client, lock_bucket):
    data = b'{"evidence":true}\n'
    stored = s3_store.put_bytes("config/x.json", data, digest_bytes(data).sha256, RETAIN)

    head = s3_client.head_object(Bucket=lock_bucket, Key="evidence/config/x.json", ChecksumMode="ENABLED")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] == RETAIN
    assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert head["VersionId"] == stored.version_id


def test_locked_object_cannot_be_deleted(s3_store, s3_client, lock_bucket):
    data = b"locked\n"
    stored = s3_store.put_bytes("a.txt", data, digest_bytes(data).sha256, RETAIN)
    with pytest.raises(ClientError, match="AccessDenied"):
        s3_client.delete_object(Bucket=lock_bucket, Key="evidence/a.txt", VersionId=stored.version_id)


def test_never_overwrites(s3_store):
    data = b"first\n"
    s3_store.put_bytes("a.txt", data, digest_bytes(data).sha256, RETAIN)
    other = b"second\n"
    with pytest.raises(ObjectExistsError, match=r"a\.txt already holds other content .*evidence is never overwritten"):
        s3_store.put_bytes("a.txt", other, digest_bytes(other).sha256, RETAIN)
    assert s3_store.read_bytes("a.txt") == data


def test_writing_the_same_bytes_again_is_confirmed_not_a_conflict(s3_store):
    """A PUT whose response was lost is sent again and answered 412: the bytes are ours, so it is done."""
    data = b"first\n"
    first = s3_store.put_bytes("a.txt", data, digest_bytes(data).sha256, RETAIN)
    again = s3_store.put_bytes("a.txt", data, digest_bytes(data).sha256, RETAIN)
    assert again.version_id == first.version_id == s3_store.head("a.txt").version_id
    assert len([version for version in s3_store.list_versions("a.txt")]) == 1


def test_refuses_content_that_does_not_match_its_hash(s3_store):
    with pytest.raises(ValueError, match=r"expected 0+"):
        s3_store.put_bytes("a.txt", b"data", "0" * 64, RETAIN)


def test_multipart_upload_is_locked_checksummed_and_never_overwrites(
    s3_store, s3_client, lock_bucket, tmp_path, monkeypatch
):
    monkeypatch.setattr(s3_module, "MULTIPART_THRESHOLD", 6 * 1024 * 1024)
    monkeypatch.setattr(s3_module, "PART_SIZE", 5 * 1024 * 1024)
    path = tmp_path / "big.bin"
    path.write_bytes(bytes(range(256)) * (48 * 1024))  # 12 MiB: three parts
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()

    stored = s3_store.put_file("big.bin", path, sha256, RETAIN)

    head = s3_client.head_object(Bucket=lock_bucket, Key="evidence/big.bin", ChecksumMode="ENABLED")
    assert head["ContentLength"] == stored.size == path.stat().st_size
    # moto drops multipart lock headers; the store's follow-up put_object_retention restores the lock.
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] == RETAIN
    # A composite checksum: SHA-256 of the three part digests (AWS appends "-3"; moto omits the suffix).
    parts = [path.read_bytes()[start : start + 5 * 1024 * 1024] for start in range(0, stored.size, 5 * 1024 * 1024)]
    composite = hashlib.sha256(b"".join(hashlib.sha256(part).digest() for part in parts)).digest()
    assert head["ChecksumSHA256"].split("-")[0] == base64.b64encode(composite).decode()
    assert hashlib.sha256(s3_store.read_bytes("big.bin")).hexdigest() == sha256
    assert s3_store.put_file("big.bin", path, sha256, RETAIN).version_id == head["VersionId"]  # same bytes: confirmed
    other = tmp_path / "other.bin"
    other.write_bytes(b"y" * len(path.read_bytes()))
    with pytest.raises(ObjectExistsError):
        s3_store.put_file("big.bin", other, hashlib.sha256(other.read_bytes()).hexdigest(), RETAIN)


def test_multipart_refuses_a_file_changed_since_staging(s3_store, tmp_path, monkeypatch):
    monkeypatch.setattr(s3_module, "MULTIPART_THRESHOLD", 1024)
    path = tmp_path / "changed.bin"
    path.write_bytes(b"x" * 6 * 1024 * 1024)
    with pytest.raises(ValueError, match=r"changed\.bin hashes to"):
        s3_store.put_file("changed.bin", path, "0" * 64, RETAIN)
    assert not list(s3_store.list_objects("changed.bin"))


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        pytest.param("plain", "bucket {bucket}: versioning is never enabled, must be Enabled", id="no-versioning"),
        pytest.param("versioned", "bucket {bucket}: Object Lock is not enabled", id="versioning-without-lock"),
        pytest.param("missing", "bucket {bucket}: bucket does not exist", id="missing-bucket"),
    ],
)
def test_fails_closed_before_the_first_write(s3_client, setup, message):
    bucket = f"closed-{setup}-{id(message) % 100000}"
    if setup != "missing":
        s3_client.create_bucket(Bucket=bucket)
    if setup == "versioned":
        s3_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    store = open_store(f"s3://{bucket}/evidence")
    with pytest.raises(StoreConfigError, match=message.format(bucket=bucket)):
        store.check_writable(400)


def test_lock_bucket_passes_the_check(s3_store):
    s3_store.check_writable(400)


def test_endpoint_comes_from_boto3_standard_configuration(aws_env, s3_store):
    assert s3_store.client.meta.endpoint_url == aws_env
    assert s3_store.client.meta.config.retries["mode"] == "adaptive"


def test_listing_is_relative_to_the_prefix_and_paginates(s3_client, aws_env):
    bucket = "listing-pages"
    create_object_lock_bucket(s3_client, bucket)
    store = open_store(f"s3://{bucket}/deep/prefix")
    for number in range(1005):  # more than one list_objects_v2 page
        data = f"{number}\n".encode()
        s3_client.put_object(Bucket=bucket, Key=f"deep/prefix/k/{number:05d}", Body=data)
    keys = [info.key for info in store.list_objects("k/")]
    assert len(keys) == 1005
    assert keys[0] == "k/00000"


def test_moto_gap_retention_shortening_is_not_enforced(s3_store, s3_client, lock_bucket):
    """Real S3 refuses to shorten COMPLIANCE retention; moto allows it. verify catches the result."""
    data = b"x\n"
    stored = s3_store.put_bytes("short.txt", data, digest_bytes(data).sha256, RETAIN)
    s3_client.put_object_retention(
        Bucket=lock_bucket,
        Key="evidence/short.txt",
        VersionId=stored.version_id,
        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": RETAIN - timedelta(days=365)},
    )
    assert s3_store.head("short.txt").retain_until == RETAIN - timedelta(days=365)


def test_moto_gap_checksums_are_not_verified(s3_client, lock_bucket):
    """Real S3 rejects a body that does not match ChecksumSHA256; moto stores it, so verify re-hashes itself."""
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    s3_client.put_object(
        Bucket=lock_bucket,
        Key="evidence/unverified.txt",
        Body=b"body",
        ChecksumAlgorithm="SHA256",
        ChecksumSHA256=wrong,
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=RETAIN,
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param("ftp://host/x", "unknown scheme 'ftp'", id="unknown-scheme"),
        pytest.param("bucket/prefix", "unknown scheme '\\(none\\)'", id="no-scheme"),
        pytest.param("s3:///prefix", "no bucket name", id="no-bucket"),
        pytest.param("file://remote-host/x", "file URLs must be local", id="remote-file"),
    ],
)
def test_bad_store_urls(url, message):
    with pytest.raises(StoreConfigError, match=message):
        open_store(url)
