"""A ``file://`` store for development: refuses overwrites and makes files read-only, but is not WORM."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from soc2_evidence.archive.stores.base import EvidenceStore, ObjectHead, ObjectInfo, StoredObject
from soc2_evidence.core.errors import ObjectExistsError, StoreConfigError
from soc2_evidence.core.hashing import digest_bytes


class LocalStore(EvidenceStore):
    immutable = False

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = root.as_uri()

    def check_writable(self, retention_days: int) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreConfigError(f"store {self.url}: cannot create directory: {error.strerror}") from error
        if not os.access(self.root, os.W_OK):
            raise StoreConfigError(f"store {self.url}: directory is not writable")

    def put_bytes(self, key: str, data: bytes, sha256: str, retain_until: datetime) -> StoredObject:
        digest = digest_bytes(data)
        if digest.sha256 != sha256:
            raise ValueError(f"store {self.url}: {key}: content hashes to {digest.sha256}, expected {sha256}")
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError as error:
            raise ObjectExistsError(f"store {self.url}: {key} already exists; evidence is never overwritten") from error
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        path.chmod(0o444)
        return StoredObject(key=key, sha256=sha256, size=len(data), version_id=None)

    def put_file(self, key: str, path: Path, sha256: str, retain_until: datetime) -> StoredObject:
        return self.put_bytes(key, path.read_bytes(), sha256, retain_until)

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if not self.root.exists():
            return
        found = []
        for path in self.root.rglob("*"):
            if path.is_file():
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append(ObjectInfo(key=key, size=path.stat().st_size))
        yield from sorted(found, key=lambda info: info.key)

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    def head(self, key: str) -> ObjectHead:
        return ObjectHead(version_id=None, lock_mode=None, retain_until=None)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"store {self.url}: key {key!r} escapes the store root")
        return path
