"""S3 Object Lock store: every object in COMPLIANCE mode, checksummed, never overwritten.

The endpoint comes from boto3's own configuration (``AWS_ENDPOINT_URL_S3``) or a connection
(:mod:`soc2_evidence.core.credentials`), so the same code runs against AWS, MinIO and a local test server.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError

from soc2_evidence.archive.stores.base import EvidenceStore, ObjectHead, ObjectInfo, StoredObject
from soc2_evidence.core.buckets import BucketPrefix
from soc2_evidence.core.credentials import Credentials
from soc2_evidence.core.errors import ObjectExistsError, StoreConfigError, describe
from soc2_evidence.core.hashing import digest_bytes

LOCK_MODE = "COMPLIANCE"
MULTIPART_THRESHOLD = 16 * 1024 * 1024
PART_SIZE = 16 * 1024 * 1024
_EXISTS_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}


def default_client_factory() -> Any:
    """An S3 client from boto3's standard chain, with the pipeline's one AWS client configuration."""
    return Credentials().aws_session(None).client("s3")


class S3ObjectLockStore(BucketPrefix, EvidenceStore):
    scheme = "s3"
    immutable = True

    def __init__(
        self, bucket: str, prefix: str = "", client_factory: Callable[[], Any] = default_client_factory
    ) -> None:
        super().__init__(bucket, prefix, client_factory)

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
        try:
            response = self.client.put_object(
                Bucket=self.bucket_name,
                Key=self._key(key),
                Body=data,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=digest.checksum_sha256,
                IfNoneMatch="*",
                **self._lock_args(retain_until),
            )
        except (ClientError, BotoCoreError) as error:
            raise self._write_error(key, error) from error
        return StoredObject(key=key, sha256=sha256, size=digest.size, version_id=response.get("VersionId"))

    def put_file(self, key: str, path: Path, sha256: str, retain_until: datetime) -> StoredObject:
        if path.stat().st_size <= MULTIPART_THRESHOLD:
            return self.put_bytes(key, path.read_bytes(), sha256, retain_until)
        return self._put_multipart(key, path, sha256, retain_until)

    def _put_multipart(self, key: str, path: Path, sha256: str, retain_until: datetime) -> StoredObject:
        """Upload in parts, hashing the whole file and each part in the same read."""
        full_key = self._key(key)
        upload = self.client.create_multipart_upload(
            Bucket=self.bucket_name, Key=full_key, ChecksumAlgorithm="SHA256", **self._lock_args(retain_until)
        )
        upload_id = upload["UploadId"]
        whole = hashlib.sha256()
        parts = []
        size = 0
        try:
            with open(path, "rb") as stream:
                while chunk := stream.read(PART_SIZE):
                    whole.update(chunk)
                    size += len(chunk)
                    part_checksum = base64.b64encode(hashlib.sha256(chunk).digest()).decode("ascii")
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
        except BaseException as error:
            self.client.abort_multipart_upload(Bucket=self.bucket_name, Key=full_key, UploadId=upload_id)
            if isinstance(error, ClientError | BotoCoreError):
                raise self._write_error(key, error) from error
            raise
        version_id = response.get("VersionId")
        # Some S3-compatible servers (moto among them) drop the lock headers of a multipart upload;
        # setting the same retention again is a no-op on AWS and closes that gap elsewhere.
        self.client.put_object_retention(
            Bucket=self.bucket_name,
            Key=full_key,
            VersionId=version_id,
            Retention={"Mode": LOCK_MODE, "RetainUntilDate": retain_until},
        )
        return StoredObject(key=key, sha256=sha256, size=size, version_id=version_id)

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        strip = len(self.prefix) + 1 if self.prefix else 0
        with self._failing_closed(f"bucket {self.bucket_name}: cannot list"):
            for page in paginator.paginate(
                Bucket=self.bucket_name, Prefix=self._key(prefix) if prefix else self._key("")
            ):
                for entry in page.get("Contents", []):
                    yield ObjectInfo(key=entry["Key"][strip:], size=entry["Size"])

    def open(self, key: str) -> BinaryIO:
        with self._failing_closed(f"{self.url}/{key}: cannot read"):
            return self.client.get_object(Bucket=self.bucket_name, Key=self._key(key))["Body"]

    def head(self, key: str) -> ObjectHead:
        # head_object, not get_object_retention: the latter is broken in moto's server mode.
        with self._failing_closed(f"{self.url}/{key}: cannot read its lock"):
            response = self.client.head_object(Bucket=self.bucket_name, Key=self._key(key))
        return ObjectHead(
            version_id=response.get("VersionId"),
            lock_mode=response.get("ObjectLockMode"),
            retain_until=response.get("ObjectLockRetainUntilDate"),
        )

    @staticmethod
    def _lock_args(retain_until: datetime) -> dict[str, Any]:
        return {"ObjectLockMode": LOCK_MODE, "ObjectLockRetainUntilDate": retain_until}

    def _write_error(self, key: str, error: ClientError | BotoCoreError) -> Exception:
        if _code(error) in _EXISTS_CODES:
            return ObjectExistsError(f"{self.url}/{key} already exists; evidence is never overwritten")
        return StoreConfigError(f"{self.url}/{key}: write failed: {_problem(error)}")

    @contextlib.contextmanager
    def _failing_closed(self, where: str) -> Iterator[None]:
        """S3 and botocore errors as one StoreConfigError line, ``where: problem``, the cause chained."""
        try:
            yield
        except (ClientError, BotoCoreError) as error:
            raise StoreConfigError(f"{where}: {_problem(error)}") from error


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
