"""S3 Object Lock store: every object in COMPLIANCE mode, checksummed, never overwritten.

The endpoint comes from boto3's own configuration (``AWS_ENDPOINT_URL_S3``) or a connection
(:mod:`soc2_evidence.core.credentials`), so the same code runs against AWS, MinIO and a local test server.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from http.client import IncompleteRead
from pathlib import Path
from typing import Any, BinaryIO

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    IncompleteReadError,
    NoCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from urllib3.exceptions import ProtocolError
from urllib3.exceptions import ReadTimeoutError as Urllib3ReadTimeoutError

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
from soc2_evidence.core.errors import ObjectExistsError, StoreConfigError, StoreUnavailableError, describe
from soc2_evidence.core.hashing import digest_bytes

LOCK_MODE = "COMPLIANCE"
MULTIPART_THRESHOLD = 16 * 1024 * 1024
PART_SIZE = 16 * 1024 * 1024
_EXISTS_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
}
CUT_RESPONSE_TRIES = 10
LOCK_SLACK = timedelta(seconds=1)  # stores keep retain-until dates to the second or the millisecond

log = logging.getLogger(__name__)


def default_client_factory() -> Any:
    """An S3 client from boto3's standard chain, with the pipeline's one AWS client configuration."""
    return Credentials().aws_session(None).client("s3")


class S3ObjectLockStore(BucketPrefix, EvidenceStore):
    scheme = "s3"
    immutable = True
    transient_read_errors = (
        IncompleteReadError,
        ResponseStreamingError,
        ReadTimeoutError,
        ConnectionClosedError,
        BotoConnectionError,
        ProtocolError,
        Urllib3ReadTimeoutError,
        IncompleteRead,
        ConnectionError,
    )

    def __init__(
        self, bucket: str, prefix: str = "", client_factory: Callable[[], Any] = default_client_factory
    ) -> None:
        super().__init__(bucket, prefix, lambda: retrying_cut_responses(client_factory()))

    def check_writable(self, retention_days: int) -> None:
        """Refuse to write unless versioning is Enabled and Object Lock is enabled on the bucket."""
        with self._failing_closed(f"bucket {self.bucket_name}"):
            versioning = self.client.get_bucket_versioning(Bucket=self.bucket_name)
        if versioning.get("Status") != "Enabled":
            state = versioning.get("Status", "never enabled")
            raise StoreConfigError(f"bucket {self.bucket_name}: versioning is {state}, must be Enabled")
        try:
            with self._failing_closed(f"bucket {self.bucket_name}"):
                lock = self.client.get_object_lock_configuration(Bucket=self.bucket_name)
        except StoreConfigError as error:
            if _code(error.__cause__) == "ObjectLockConfigurationNotFoundError":
                raise StoreConfigError(f"bucket {self.bucket_name}: Object Lock is not enabled") from error
            raise
        if lock.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") != "Enabled":
            raise StoreConfigError(f"bucket {self.bucket_name}: Object Lock is not enabled")

    def put_bytes(self, key: str, data: bytes, sha256: str, retain_until: datetime) -> StoredObject:
        digest = digest_bytes(data)
        if digest.sha256 != sha256:
            raise ValueError(f"{self.url}/{key}: content hashes to {digest.sha256}, expected {sha256}")
        with self._writing(key) as reported:
            response = self.client.put_object(
                Bucket=self.bucket_name,
                Key=self._key(key),
                Body=data,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=digest.checksum_sha256,
                IfNoneMatch="*",
                **self._lock_args(retain_until),
            )
            reported.append(response.get("VersionId"))
        return self._confirm(key, sha256, digest.size, digest.checksum_sha256, retain_until, reported)

    def put_file(self, key: str, path: Path, sha256: str, retain_until: datetime) -> StoredObject:
        if path.stat().st_size <= MULTIPART_THRESHOLD:
            return self.put_bytes(key, path.read_bytes(), sha256, retain_until)
        return self._put_multipart(key, path, sha256, retain_until)

    def _put_multipart(self, key: str, path: Path, sha256: str, retain_until: datetime) -> StoredObject:
        """Upload in parts, hashing the whole file and each part in the same read.

        The object's checksum is then S3's composite one: the SHA-256 of the parts' digests. The
        same file in the same part size always gives the same composite, so a retried or repeated
        upload is confirmed like a single PUT.
        """
        full_key = self._key(key)
        with self._failing_closed(f"{self.url}/{key}: cannot start an upload"):
            upload = self.client.create_multipart_upload(
                Bucket=self.bucket_name, Key=full_key, ChecksumAlgorithm="SHA256", **self._lock_args(retain_until)
            )
        upload_id = upload["UploadId"]
        whole = hashlib.sha256()
        part_digests = []
        parts = []
        size = 0
        reported: list[str | None] = []
        try:
            with open(path, "rb") as stream, self._writing(key) as reported:
                while chunk := stream.read(PART_SIZE):
                    whole.update(chunk)
                    size += len(chunk)
                    part_digests.append(hashlib.sha256(chunk).digest())
                    part_checksum = base64.b64encode(part_digests[-1]).decode("ascii")
                    number = len(parts) + 1
                    response = self.client.upload_part(
                        Bucket=self.bucket_name,
                        Key=full_key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=chunk,
                        ChecksumAlgorithm="SHA256",
                        ChecksumSHA256=part_checksum,
                    )
                    parts.append({"ETag": response["ETag"], "PartNumber": number, "ChecksumSHA256": part_checksum})
                if whole.hexdigest() != sha256:
                    raise ValueError(f"{self.url}/{key}: {path} hashes to {whole.hexdigest()}, expected {sha256}")
                response = self.client.complete_multipart_upload(
                    Bucket=self.bucket_name,
                    Key=full_key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    IfNoneMatch="*",
                )
                reported.append(response.get("VersionId"))
        except BaseException:
            with contextlib.suppress(ClientError, BotoCoreError):
                self.client.abort_multipart_upload(Bucket=self.bucket_name, Key=full_key, UploadId=upload_id)
            raise
        composite = base64.b64encode(hashlib.sha256(b"".join(part_digests)).digest()).decode("ascii")
        stored = self._confirm(key, sha256, size, composite, retain_until, reported, relock=True)
        return stored

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        strip = len(self.prefix) + 1 if self.prefix else 0
        with self._failing_closed(f"bucket {self.bucket_name}: cannot list"):
            for page in paginator.paginate(Bucket=self.bucket_name, Prefix=self._key(prefix)):
                for entry in page.get("Contents", []):
                    yield ObjectInfo(key=entry["Key"][strip:], size=entry["Size"])

    def list_versions(self, prefix: str = "") -> Iterator[ObjectVersion]:
        paginator = self.client.get_paginator("list_object_versions")
        strip = len(self.prefix) + 1 if self.prefix else 0
        with self._failing_closed(f"bucket {self.bucket_name}: cannot list versions"):
            for page in paginator.paginate(Bucket=self.bucket_name, Prefix=self._key(prefix)):
                found = [
                    ObjectVersion(
                        entry["Key"][strip:],
                        entry.get("VersionId"),
                        entry.get("IsLatest", False),
                        False,
                        entry.get("Size", 0),
                    )
                    for entry in page.get("Versions", [])
                ] + [
                    ObjectVersion(entry["Key"][strip:], entry.get("VersionId"), entry.get("IsLatest", False), True, 0)
                    for entry in page.get("DeleteMarkers", [])
                ]
                yield from sorted(found, key=lambda version: version.key)

    def open(self, key: str, version_id: str | None = None) -> BinaryIO:
        with self._failing_closed(f"{self.url}/{key}: cannot read"):
            return self.client.get_object(Bucket=self.bucket_name, Key=self._key(key), **_version(version_id))["Body"]

    def head(self, key: str, version_id: str | None = None) -> ObjectHead:
        # head_object, not get_object_retention: the latter is broken in moto's server mode.
        with self._failing_closed(f"{self.url}/{key}: cannot read its lock"):
            response = self.client.head_object(
                Bucket=self.bucket_name, Key=self._key(key), ChecksumMode="ENABLED", **_version(version_id)
            )
        return ObjectHead(
            version_id=response.get("VersionId"),
            lock_mode=response.get("ObjectLockMode"),
            retain_until=response.get("ObjectLockRetainUntilDate"),
            checksum_sha256=response.get("ChecksumSHA256"),
            size=response.get("ContentLength"),
        )

    def pending_uploads(self, older_than: datetime, *, abort: bool) -> list[PendingUpload]:
        paginator = self.client.get_paginator("list_multipart_uploads")
        strip = len(self.prefix) + 1 if self.prefix else 0
        found = []
        with self._failing_closed(f"bucket {self.bucket_name}: cannot list multipart uploads"):
            for page in paginator.paginate(Bucket=self.bucket_name, Prefix=self._key("")):
                for upload in page.get("Uploads", []):
                    initiated = upload.get("Initiated")
                    if initiated is None or initiated < older_than:
                        found.append(upload)
        pending = []
        for upload in found:
            aborted = False
            if abort:
                try:
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket_name, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    aborted = True
                except (ClientError, BotoCoreError) as error:
                    log.warning(
                        "%s/%s: cannot abort a stale upload: %s", self.url, upload["Key"][strip:], describe(error)
                    )
            pending.append(PendingUpload(upload["Key"][strip:], upload["UploadId"], upload.get("Initiated"), aborted))
        return pending

    @contextlib.contextmanager
    def _writing(self, key: str) -> Iterator[list[str | None]]:
        """Run a conditional write; a refusal because the key exists is left for :meth:`_confirm` to judge.

        The list it yields receives the version id the response reported, when there was a response.
        """
        reported: list[str | None] = []
        try:
            yield reported
        except (ClientError, BotoCoreError) as error:
            if _code(error) not in _EXISTS_CODES:
                raise self._write_error(key, error) from error
            log.info("%s/%s: the key exists (a retried write, or a conflict); reading it back", self.url, key)

    def _confirm(
        self,
        key: str,
        sha256: str,
        size: int,
        checksum: str,
        retain_until: datetime,
        reported: list[str | None],
        *,
        relock: bool = False,
    ) -> StoredObject:
        """Ask the store, by version, whether ``key`` holds our bytes, locked; return its confirmed version.

        The reported version id is tried first. When there is none, or the store does not know it (a
        response cut short), or the write was refused because the key exists, the key's versions are
        listed: exactly one version with our checksum is ours, anything else is a conflict.
        """
        head = None
        version_id = reported[0] if reported else None
        if version_id:
            try:
                head = self.head(key, version_id)
            except StoreConfigError:
                log.warning(
                    "%s/%s: the store does not know version %r; listing the key's versions", self.url, key, version_id
                )
        if head is None:
            versions = [version for version in self.list_versions(key) if version.key == key]
            if len(versions) != 1 or versions[0].delete_marker:
                raise ObjectExistsError(
                    f"{self.url}/{key}: the key has {len(versions)} versions or delete markers, expected only ours; "
                    "evidence is never overwritten"
                )
            head = self.head(key, versions[0].version_id)
        if (head.checksum_sha256 or "").split("-")[0] != checksum:
            raise ObjectExistsError(
                f"{self.url}/{key} already holds other content (checksum {head.checksum_sha256 or 'none'}, "
                f"ours {checksum}); evidence is never overwritten"
            )
        if relock:
            # Some S3-compatible servers (moto among them) drop the lock headers of a multipart upload;
            # setting the same retention again is a no-op on AWS and closes that gap elsewhere.
            with self._failing_closed(f"{self.url}/{key}: cannot set its retention"):
                self.client.put_object_retention(
                    Bucket=self.bucket_name,
                    Key=self._key(key),
                    VersionId=head.version_id,
                    Retention={"Mode": LOCK_MODE, "RetainUntilDate": retain_until},
                )
            head = self.head(key, head.version_id)
        if head.lock_mode != LOCK_MODE or head.retain_until is None or head.retain_until < retain_until - LOCK_SLACK:
            raise StoreConfigError(
                f"{self.url}/{key}: stored but locked {head.lock_mode or 'not at all'} until {head.retain_until}, "
                f"not {LOCK_MODE} until {retain_until:%Y-%m-%d %H:%M:%S}"
            )
        return StoredObject(key=key, sha256=sha256, size=size, version_id=head.version_id)

    @staticmethod
    def _lock_args(retain_until: datetime) -> dict[str, Any]:
        return {"ObjectLockMode": LOCK_MODE, "ObjectLockRetainUntilDate": retain_until}

    def _write_error(self, key: str, error: ClientError | BotoCoreError) -> Exception:
        return _store_error(f"{self.url}/{key}: write failed", error)

    @contextlib.contextmanager
    def _failing_closed(self, where: str) -> Iterator[None]:
        """S3 and botocore errors as one line, ``where: problem``, the cause chained: transient when the
        store was unreachable, throttling or failing (after botocore's own retries), else permanent."""
        try:
            yield
        except (ClientError, BotoCoreError) as error:
            raise _store_error(where, error) from error


def retrying_cut_responses(client: Any) -> Any:
    """Make ``client`` retry a 200 response that was cut short in its headers.

    S3 always sends a Content-Length (or chunks). A response whose headers stop early still parses
    as a 200: a PUT then reports a truncated version id, a listing reports nothing, a GET reports an
    empty object. botocore retries only what it sees fail, so this hook tells it these failed too;
    the retried request is safe, since every write is conditional and confirmed.
    """
    client.meta.events.register_first("needs-retry.s3", _retry_if_cut)
    return client


def _retry_if_cut(response: Any = None, attempts: int = 0, **_: Any) -> float | None:
    if response is None or attempts >= CUT_RESPONSE_TRIES:
        return None
    http_response = response[0]
    headers = {name.lower() for name in http_response.headers}
    if http_response.status_code == 200 and not headers & {"content-length", "transfer-encoding"}:
        log.info("an S3 response was cut short (no Content-Length); retrying (attempt %s)", attempts)
        return 0.05 * attempts
    return None


def _store_error(where: str, error: ClientError | BotoCoreError) -> Exception:
    message = f"{where}: {_problem(error)}"
    status = (getattr(error, "response", None) or {}).get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    if isinstance(error, BotoConnectionError | ConnectionClosedError | ReadTimeoutError | ResponseStreamingError):
        return StoreUnavailableError(message)
    if _code(error) in _TRANSIENT_CODES or status >= 500:
        return StoreUnavailableError(message)
    return StoreConfigError(message)


def _version(version_id: str | None) -> dict[str, str]:
    return {"VersionId": version_id} if version_id else {}


def _code(error: BaseException | None) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _problem(error: ClientError | BotoCoreError) -> str:
    """What went wrong and, where it is ours to fix, what to check; otherwise the one-line description."""
    code = _code(error)
    if code in ("NoSuchBucket", "404"):
        return "bucket does not exist"
    if code in ("AccessDenied", "403"):
        return "access denied"
    if isinstance(error, NoCredentialsError):
        return "no AWS credentials found; set AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    if isinstance(error, BotoConnectionError):
        return f"cannot reach the S3 endpoint ({describe(error)}); check the network and AWS_ENDPOINT_URL_S3"
    return describe(error)
