"""The interface every evidence store implements: append-only, confirmed writes; versioned reads; retention.

A write is done only when it is *confirmed*: the store is asked, by version, for the object's
checksum and lock, and they are ours. That one rule makes every write idempotent. A write whose
response was lost, retried by the client and answered "already exists" is accepted once the
object's checksum proves it is the bytes we sent; anything else under the key is a real conflict.
It also means a version id that reaches a manifest is one the store has just answered for, never a
value parsed from a response that was cut short.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, TypeVar

from soc2_evidence.core.errors import StoreUnavailableError, describe
from soc2_evidence.core.hashing import Digest, digest_stream

READ_TRIES = 4
READ_BACKOFF_SECONDS = 0.5

T = TypeVar("T")


@dataclass(frozen=True)
class StoredObject:
    """Where one object landed: its key and the store's confirmed version id (each copy's, for a dual store)."""

    key: str
    sha256: str
    size: int
    version_id: str | None
    copies: tuple[dict[str, str | None], ...] = ()


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


@dataclass(frozen=True)
class ObjectVersion:
    """One version of a key, or a delete marker, as a versioned listing reports it."""

    key: str
    version_id: str | None
    is_latest: bool
    delete_marker: bool
    size: int


@dataclass(frozen=True)
class ObjectHead:
    """One version of an object as the store reports it: its id, lock and SHA-256 checksum (base64), if known."""

    version_id: str | None
    lock_mode: str | None
    retain_until: datetime | None
    checksum_sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class PendingUpload:
    """A multipart upload that was started and never completed or aborted (a killed archive leaves one)."""

    key: str
    upload_id: str
    initiated: datetime | None
    aborted: bool


class EvidenceStore(ABC):
    """An append-only place for evidence. Keys are relative to the store's URL."""

    url: str
    immutable: bool
    #: errors of a streaming read that a fresh read may not meet again (a response cut short, a reset)
    transient_read_errors: tuple[type[BaseException], ...] = ()
    sleep: Callable[[float], None] = staticmethod(time.sleep)

    @abstractmethod
    def check_writable(self, retention_days: int) -> None:
        """Fail closed: raise StoreConfigError unless the store can hold evidence for ``retention_days``."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, sha256: str, retain_until: datetime) -> StoredObject:
        """Write a new object and confirm it; raise ObjectExistsError if the key holds other content."""

    @abstractmethod
    def put_file(self, key: str, path: Path, sha256: str, retain_until: datetime) -> StoredObject:
        """Write a file, re-hashing it on the way; raise if it no longer matches ``sha256``."""

    @abstractmethod
    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under ``prefix`` (its current version), in key order."""

    @abstractmethod
    def list_versions(self, prefix: str = "") -> Iterator[ObjectVersion]:
        """Every version and delete marker under ``prefix``, in key order, each key's newest first."""

    @abstractmethod
    def open(self, key: str, version_id: str | None = None) -> AbstractContextManager[BinaryIO]:
        """A binary stream of one version of the object (default: the current one)."""

    @abstractmethod
    def head(self, key: str, version_id: str | None = None) -> ObjectHead:
        """One version of the object (default: the current one): id, lock and checksum."""

    @abstractmethod
    def pending_uploads(self, older_than: datetime, *, abort: bool) -> list[PendingUpload]:
        """Multipart uploads under the store's prefix started before ``older_than``; aborted when ``abort``."""

    def read_bytes(self, key: str, version_id: str | None = None) -> bytes:
        return self._reading(key, version_id, lambda stream: stream.read())

    def digest(self, key: str, version_id: str | None = None) -> Digest:
        """SHA-256 of one version of the object, streamed, never held in memory."""
        return self._reading(key, version_id, digest_stream)

    def _reading(self, key: str, version_id: str | None, consume: Callable[[BinaryIO], T]) -> T:
        """Read and consume a stream, starting over when it breaks off: a GET is safe to repeat."""
        for attempt in range(1, READ_TRIES + 1):
            try:
                with self.open(key, version_id) as stream:
                    return consume(stream)
            except self.transient_read_errors as error:
                if attempt == READ_TRIES:
                    raise StoreUnavailableError(
                        f"{self.url}/{key}: reading failed {READ_TRIES} times: {describe(error)}"
                    ) from error
                self.sleep(READ_BACKOFF_SECONDS * 2 ** (attempt - 1))
        raise AssertionError("unreachable")
