"""Where backups and backup-tool results live: a local directory, an S3 prefix or a GCS prefix.

One small interface for the three, so finding the newest dump, reading the manifest beside it,
downloading, uploading and listing result files are written once. Listings stream: a prefix
with a million objects costs the memory of one page.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from soc2_evidence.collectors.support.gcp import gcp_error, gcp_failures
from soc2_evidence.core.buckets import BucketPrefix
from soc2_evidence.core.credentials import Credentials
from soc2_evidence.core.errors import CollectorError

SCHEMES = ("s3", "gs", "file")


@dataclass(frozen=True)
class BackupObject:
    """One file at a location: its name relative to the location, full URL, size and modification time."""

    name: str
    url: str
    size: int
    modified: datetime


class BackupLocation:
    """A directory-like place holding files; names are relative to it and use '/'."""

    url: str

    def iter_objects(self) -> Iterator[BackupObject]:
        raise NotImplementedError

    def read_bytes(self, name: str, limit: int) -> bytes | None:
        """The content of ``name``, or None when it does not exist; refuses more than ``limit`` bytes."""
        raise NotImplementedError

    def download(self, name: str, path: Path) -> None:
        raise NotImplementedError

    def put_file(self, path: Path, name: str) -> str:
        """Store a local file (moved when local) as ``name``; return its URL."""
        raise NotImplementedError

    def local_path(self, name: str) -> Path | None:
        """The file itself, when the location is a local directory (nothing to download)."""
        return None


def open_location(
    url: str,
    *,
    resolve_path: Callable[[str], Path] | None = None,
    credentials: Credentials | None = None,
    aws_conn_id: str | None = None,
) -> BackupLocation:
    """``s3://bucket/prefix``, ``gs://bucket/prefix``, ``file:///dir`` or a directory path.

    Bucket clients come from ``credentials`` (default: the standard chains), S3 ones with ``aws_conn_id``.
    """
    parsed = urlparse(url)
    credentials = credentials or Credentials()
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise CollectorError(f"location {url!r}: no bucket name")
        return S3Location(parsed.netloc, parsed.path, lambda: credentials.aws_session(aws_conn_id).client("s3"))
    if parsed.scheme == "gs":
        if not parsed.netloc:
            raise CollectorError(f"location {url!r}: no bucket name")
        return GCSLocation(parsed.netloc, parsed.path, credentials.gcs_client)
    if parsed.scheme == "file":
        return LocalLocation(Path(parsed.path))
    if parsed.scheme:
        raise CollectorError(f"location {url!r}: unknown scheme {parsed.scheme!r}; use one of {', '.join(SCHEMES)}")
    return LocalLocation(resolve_path(url) if resolve_path else Path(url).resolve())


class LocalLocation(BackupLocation):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def iter_objects(self) -> Iterator[BackupObject]:
        if not self.root.is_dir():
            raise CollectorError(f"location {self.root}: not a directory")
        for directory, _, files in os.walk(self.root):
            for file in sorted(files):
                path = Path(directory) / file
                try:
                    stat = path.stat()
                except FileNotFoundError:  # removed while listing (a backup task rotating old dumps)
                    continue
                yield BackupObject(
                    name=path.relative_to(self.root).as_posix(),
                    url=str(path),
                    size=stat.st_size,
                    modified=datetime.fromtimestamp(stat.st_mtime, UTC),
                )

    def read_bytes(self, name: str, limit: int) -> bytes | None:
        path = self.root / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return None
        _check_limit(self.url, name, size, limit)
        return path.read_bytes()

    def download(self, name: str, path: Path) -> None:
        shutil.copyfile(self.root / name, path)

    def put_file(self, path: Path, name: str) -> str:
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")  # never matches a dump pattern until complete
        shutil.move(path, partial)
        os.replace(partial, target)
        return str(target)

    def local_path(self, name: str) -> Path | None:
        return self.root / name


class S3Location(BucketPrefix, BackupLocation):
    """An S3 prefix; ``client_factory`` makes its client on first use (see :func:`open_location`)."""

    scheme = "s3"

    def iter_objects(self) -> Iterator[BackupObject]:
        from botocore.exceptions import BotoCoreError, ClientError

        from soc2_evidence.collectors.support.aws import aws_error

        start = f"{self.prefix}/" if self.prefix else ""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket_name, Prefix=start)
        page_number = 0
        try:
            for page_number, page in enumerate(pages, start=1):  # noqa: B007 - named in the error below
                for entry in page.get("Contents", []):
                    yield BackupObject(
                        name=entry["Key"][len(start) :],
                        url=f"s3://{self.bucket_name}/{entry['Key']}",
                        size=entry["Size"],
                        modified=entry["LastModified"].astimezone(UTC),
                    )
        except (BotoCoreError, ClientError) as error:
            raise aws_error(f"location {self.url}: ListObjectsV2 page {page_number + 1} failed", error) from error

    def read_bytes(self, name: str, limit: int) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        from soc2_evidence.collectors.support.aws import aws_error

        try:
            response = self.client.get_object(Bucket=self.bucket_name, Key=self._key(name))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise aws_error(f"location {self.url}: GetObject {name} failed", error) from error
        except BotoCoreError as error:
            raise aws_error(f"location {self.url}: GetObject {name} failed", error) from error
        _check_limit(self.url, name, response["ContentLength"], limit)
        return response["Body"].read()

    def download(self, name: str, path: Path) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        from soc2_evidence.collectors.support.aws import aws_error

        try:
            self.client.download_file(self.bucket_name, self._key(name), str(path))
        except (BotoCoreError, ClientError) as error:
            raise aws_error(f"location {self.url}: download of {name} failed", error) from error

    def put_file(self, path: Path, name: str) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        from soc2_evidence.collectors.support.aws import aws_error

        try:
            self.client.upload_file(str(path), self.bucket_name, self._key(name))
        except (BotoCoreError, ClientError) as error:
            raise aws_error(f"location {self.url}: upload of {name} failed", error) from error
        return f"s3://{self.bucket_name}/{self._key(name)}"


class GCSLocation(BucketPrefix, BackupLocation):
    """A GCS prefix; ``client_factory`` makes its client on first use (see :func:`open_location`)."""

    scheme = "gs"

    @property
    def bucket(self) -> Any:
        return self.client.bucket(self.bucket_name)

    def iter_objects(self) -> Iterator[BackupObject]:
        start = f"{self.prefix}/" if self.prefix else ""
        try:
            for blob in self.bucket.client.list_blobs(self.bucket_name, prefix=start):
                yield BackupObject(
                    name=blob.name[len(start) :],
                    url=f"gs://{self.bucket_name}/{blob.name}",
                    size=int(blob.size or 0),
                    modified=blob.updated.astimezone(UTC),
                )
        except gcp_failures() as error:
            raise gcp_error(f"location {self.url}: listing objects failed", error) from error

    def read_bytes(self, name: str, limit: int) -> bytes | None:
        from google.api_core.exceptions import NotFound

        try:
            blob = self.bucket.get_blob(self._key(name))
            if blob is None:
                return None
            _check_limit(self.url, name, int(blob.size or 0), limit)
            return blob.download_as_bytes()
        except NotFound:
            return None
        except gcp_failures() as error:
            raise gcp_error(f"location {self.url}: reading {name} failed", error) from error

    def download(self, name: str, path: Path) -> None:
        try:
            self.bucket.blob(self._key(name)).download_to_filename(str(path))
        except gcp_failures() as error:
            raise gcp_error(f"location {self.url}: download of {name} failed", error) from error

    def put_file(self, path: Path, name: str) -> str:
        try:
            self.bucket.blob(self._key(name)).upload_from_filename(str(path))
        except gcp_failures() as error:
            raise gcp_error(f"location {self.url}: upload of {name} failed", error) from error
        return f"gs://{self.bucket_name}/{self._key(name)}"


def _check_limit(url: str, name: str, size: int, limit: int) -> None:
    if size > limit:
        raise CollectorError(f"location {url}: {name} is {size} bytes, more than the {limit} allowed")
