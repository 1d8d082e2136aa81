"""A ``file://`` store for development: refuses overwrites and makes files read-only, but is not WORM."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from soc2_evidence.archive.stores.base import (
    EvidenceStore,
    ObjectHead,
    ObjectInfo,
    ObjectVersion,
    PendingUpload,
    StoredObject,
)
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
            if self.digest(key).sha256 == sha256:  # written before (a retried or repeated write): ours
                return StoredObject(key=key, sha256=sha256, size=len(data), version_id=None)
            raise ObjectExistsError(
                f"store {self.url}: {key} already holds other content; evidence is never overwritten"
            ) from error
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        path.chmod(0o444)
        return StoredObject(key=key, sha256=sha256, size=len(data), version_id=None)

    def put_file(self, key: str, path: Path, sha256: str, retain_until: datetime) -> StoredObject:
        return self.put_bytes(key, path.read_bytes(), sha256, retain_until)

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every entry that is not a directory, in key order: symbolic links (to files or directories,
        never followed), FIFOs and sockets too, so a verification reports them rather than passing
        over them; only regular files can be read (:meth:`open`)."""
        if not self.root.exists():
            return
        found = []
        for directory, subdirectories, files in os.walk(self.root, followlinks=False):
            base = Path(directory)
            linked = [name for name in subdirectories if (base / name).is_symlink()]
            for name in [*files, *linked]:
                path = base / name
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append(ObjectInfo(key=key, size=path.lstat().st_size))
        yield from sorted(found, key=lambda info: info.key)

    def list_versions(self, prefix: str = "") -> Iterator[ObjectVersion]:
        """A directory keeps one version of each file: the current one."""
        for info in self.list_objects(prefix):
            yield ObjectVersion(info.key, None, True, False, info.size)

    def open(self, key: str, version_id: str | None = None) -> BinaryIO:
        """A regular file's content; anything else (a symbolic link, a FIFO) is refused, never followed or waited on."""
        path = self._path(key)
        try:
            mode = path.lstat().st_mode
        except OSError as error:
            raise StoreConfigError(f"store {self.url}: {key}: {error.strerror}") from error
        if not stat.S_ISREG(mode):
            kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
            raise StoreConfigError(f"store {self.url}: {key} is {kind}; evidence is only ever a regular file")
        return open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb")

    def head(self, key: str, version_id: str | None = None) -> ObjectHead:
        digest = self.digest(key)
        return ObjectHead(None, None, None, checksum_sha256=digest.checksum_sha256, size=digest.size)

    def pending_uploads(self, older_than: datetime, *, abort: bool) -> list[PendingUpload]:
        return []  # files are written whole: nothing is left half uploaded

    def _path(self, key: str) -> Path:
        """The key's path, its last part unresolved (so a link is seen as a link); no key leaves the root."""
        path = (self.root / key).parent.resolve() / Path(key).name
        if not path.is_relative_to(self.root.resolve()):
            raise StoreConfigError(f"store {self.url}: key {key!r} escapes the store root")
        return path
