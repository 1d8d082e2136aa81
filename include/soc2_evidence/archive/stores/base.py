"""The interface every evidence store implements: append-only writes, listing, reading, retention."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO


@dataclass(frozen=True)
class StoredObject:
    """Where one object landed: its key and the store's version id for it (each copy's, for a dual store)."""

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
class ObjectHead:
    """An object's current version and the lock it carries, as the store reports them."""

    version_id: str | None
    lock_mode: str | None
    retain_until: datetime | None


class EvidenceStore(ABC):
    """An append-only place for evidence. Keys are relative to the store's URL."""

    url: str
    immutable: bool

    @abstractmethod
    def check_writable(self, retention_days: int) -> None:
        """Fail closed: raise StoreConfigError unless the store can hold evidence for ``retention_days``."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, sha256: str, retain_until: datetime) -> StoredObject:
        """Write a new object; raise ObjectExistsError rather than replace one."""

    @abstractmethod
    def put_file(self, key: str, path: Path, sha256: str, retain_until: datetime) -> StoredObject:
        """Write a file, re-hashing it on the way; raise if it no longer matches ``sha256``."""

    @abstractmethod
    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under ``prefix``, in key order."""

    @abstractmethod
    def open(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A binary stream of the object's current content."""

    @abstractmethod
    def head(self, key: str) -> ObjectHead:
        """The object's current version id, lock mode and retain-until date."""

    def read_bytes(self, key: str) -> bytes:
        with self.open(key) as stream:
            return stream.read()
