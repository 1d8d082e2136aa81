"""GCS store with retention: a locked bucket retention policy, or Object Retention Lock per object.

Every upload is ``if_generation_match=0`` (never overwrite) and carries its MD5 and CRC32C,
which GCS verifies; the object's generation is recorded as its version. Credentials come
from the standard Google configuration, or from a key given by a connection
(:mod:`soc2_evidence.core.credentials`).

A storage emulator (``STORAGE_EMULATOR_HOST``) can hold no lock. Against one the store still
makes every call, but reports itself as not immutable, so manifests and ``verify`` say so.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from soc2_evidence.archive.stores.base import (
    EvidenceStore,
    ObjectHead,
    ObjectInfo,
    ObjectVersion,
    PendingUpload,
    StoredObject,
)
from soc2_evidence.core.buckets import BucketPrefix
from soc2_evidence.core.credentials import Credentials
from soc2_evidence.core.errors import ObjectExistsError, StoreConfigError, StoreUnavailableError
from soc2_evidence.core.hashing import digest_bytes

LOCKED = "COMPLIANCE"  # what a locked GCS retention means, in the S3 vocabulary verify speaks
BUCKET_LOCK, OBJECT_LOCK, EMULATOR = "bucket_lock", "object_lock", "emulator"

log = logging.getLogger(__name__)


def default_client_factory() -> Any:
    """A client from Google's standard chain (anonymous against an emulator)."""
    return Credentials().gcs_client()


def retention_mode(bucket: dict[str, Any], retention_days: int) -> str:
    """How a bucket (a GCS JSON API bucket resource) holds evidence, or StoreConfigError saying why it cannot."""
    name = bucket.get("name", "?")
    policy = bucket.get("retentionPolicy") or {}
    if policy:
        period = int(policy.get("retentionPeriod", 0))
        if not policy.get("isLocked"):
            raise StoreConfigError(
                f"bucket {name}: retention policy is not locked (lock it, or enable Object Retention Lock)"
            )
        if period < retention_days * 86400:
            raise StoreConfigError(
                f"bucket {name}: locked retention policy is {period // 86400} days, "
                f"the configuration needs {retention_days}"
            )
        return BUCKET_LOCK
    if (bucket.get("objectRetention") or {}).get("mode") == "Enabled":
        return OBJECT_LOCK
    raise StoreConfigError(f"bucket {name}: no locked retention policy and Object Retention Lock is not enabled")


class GCSRetentionStore(BucketPrefix, EvidenceStore):
    scheme = "gs"

    def __init__(
        self, bucket: str, prefix: str = "", client_factory: Callable[[], Any] = default_client_factory
    ) -> None:
        super().__init__(bucket, prefix, client_factory)
        self._bucket: Any = None
        self._mode: str | None = None

    @property
    def bucket(self) -> Any:
        if self._bucket is None:
            from google.api_core import exceptions

            try:
                self._bucket = self.client.get_bucket(self.bucket_name)
            except exceptions.NotFound as error:
                raise StoreConfigError(f"bucket {self.bucket_name}: bucket does not exist") from error
            except exceptions.GoogleAPIError as error:
                raise StoreConfigError(f"bucket {self.bucket_name}: {error}") from error
        return self._bucket

    @property
    def immutable(self) -> bool:  # type: ignore[override]
        return self._mode != EMULATOR if self._mode else not os.environ.get("STORAGE_EMULATOR_HOST")

    def check_writable(self, retention_days: int) -> None:
        bucket = self.bucket  # a missing or unreachable bucket fails here, emulator or not
        try:
            self._mode = retention_mode(bucket._properties, retention_days)
        except StoreConfigError:
            if not os.environ.get("STORAGE_EMULATOR_HOST"):
                raise
            # The emulator returns no retention fields at all; say so rather than pretend.
            self._mode = EMULATOR

    def put_bytes(self, key: str, data: bytes, sha256: str, retain_until: datetime) -> StoredObject:
        from google.api_core import exceptions

        digest = digest_bytes(data)
        if digest.sha256 != sha256:
            raise ValueError(f"{self.url}/{key}: content hashes to {digest.sha256}, expected {sha256}")
        blob = self.bucket.blob(self._key(key))
        blob.md5_hash = base64.b64encode(hashlib.md5(data).digest()).decode("ascii")  # noqa: S324 - GCS's own check
        blob.crc32c = _crc32c(data)
        if self._mode in (OBJECT_LOCK, EMULATOR):
            blob.retention.mode = "Locked"
            blob.retention.retain_until_time = retain_until
        generation = None
        try:
            blob.upload_from_string(data, if_generation_match=0)
            generation = blob.generation
        except exceptions.PreconditionFailed:
            log.info("%s/%s: the key exists (a retried write, or a conflict); reading it back", self.url, key)
        except exceptions.GoogleAPIError as error:
            raise _store_error(f"{self.url}/{key}: write failed", error) from error
        return self._confirm(key, sha256, digest.size, blob.md5_hash, generation)

    def _confirm(self, key: str, sha256: str, size: int, md5: str, generation: int | None) -> StoredObject:
        """Ask GCS for the object (by generation, when the upload reported one): its MD5 must be ours."""
        stored = self.bucket.get_blob(self._key(key), generation=generation) if generation else None
        if stored is None:
            stored = self.bucket.get_blob(self._key(key))
        if stored is None or stored.md5_hash != md5:
            raise ObjectExistsError(
                f"{self.url}/{key} already holds other content (MD5 {getattr(stored, 'md5_hash', None)}, ours {md5}); "
                "evidence is never overwritten"
            )
        return StoredObject(key=key, sha256=sha256, size=size, version_id=str(stored.generation))

    def put_file(self, key: str, path: Path, sha256: str, retain_until: datetime) -> StoredObject:
        return self.put_bytes(key, path.read_bytes(), sha256, retain_until)

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        for blob in self.bucket.client.list_blobs(
            self.bucket_name, prefix=self._key(prefix) if prefix else self._key("")
        ):
            yield ObjectInfo(key=blob.name[strip:], size=int(blob.size or 0))

    def list_versions(self, prefix: str = "") -> Iterator[ObjectVersion]:
        """Every generation; GCS has no delete markers: a deleted live object leaves only noncurrent ones."""
        strip = len(self.prefix) + 1 if self.prefix else 0
        blobs = self.bucket.client.list_blobs(self.bucket_name, prefix=self._key(prefix), versions=True)
        for blob in sorted(blobs, key=lambda blob: (blob.name, -(blob.generation or 0))):
            yield ObjectVersion(
                blob.name[strip:], str(blob.generation), blob.time_deleted is None, False, int(blob.size or 0)
            )

    def open(self, key: str, version_id: str | None = None) -> BinaryIO:
        return self.bucket.blob(self._key(key), generation=int(version_id) if version_id else None).open("rb")

    def pending_uploads(self, older_than: datetime, *, abort: bool) -> list[PendingUpload]:
        return []  # objects are uploaded in one request; GCS lists no resumable sessions to report

    def head(self, key: str, version_id: str | None = None) -> ObjectHead:
        blob = self.bucket.get_blob(self._key(key), generation=int(version_id) if version_id else None)
        if blob is None:
            return ObjectHead(version_id=None, lock_mode=None, retain_until=None)
        retention = blob._properties.get("retention") or {}
        if retention.get("mode") == "Locked" and self._mode != EMULATOR:
            return ObjectHead(str(blob.generation), LOCKED, blob.retention.retain_until_time)
        if blob.retention_expiration_time and (self.bucket.retention_policy_locked or False):
            return ObjectHead(str(blob.generation), LOCKED, blob.retention_expiration_time)
        return ObjectHead(str(blob.generation), None, None)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key


def _crc32c(data: bytes) -> str:
    import google_crc32c

    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode("ascii")


def _store_error(where: str, error: Exception) -> Exception:
    """Transient when GCS was failing or throttling (after the client's retries), else permanent."""
    code = getattr(error, "code", None)
    if isinstance(code, int) and (code >= 500 or code in (408, 429)):
        return StoreUnavailableError(f"{where}: {error}")
    return StoreConfigError(f"{where}: {error}")
