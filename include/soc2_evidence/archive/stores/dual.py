"""Two stores as one: every object written to both, complete only when both hold it.

For records kept apart from the original (SEC 17a-4(f) style): S3 Object Lock and a locked
GCS bucket, or two S3 buckets in different accounts. Reads come from the first store.
"""

from __future__ import annotations

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
from soc2_evidence.core.hashing import Digest


class DualStore(EvidenceStore):
    def __init__(self, primary: EvidenceStore, secondary: EvidenceStore) -> None:
        self.primary, self.secondary = primary, secondary
        self.copies = (primary, secondary)
        self.url = f"{primary.url},{secondary.url}"

    @property
    def immutable(self) -> bool:  # type: ignore[override]
        return all(copy.immutable for copy in self.copies)

    def check_writable(self, retention_days: int) -> None:
        for copy in self.copies:
            copy.check_writable(retention_days)

    def put_bytes(self, key: str, data: bytes, sha256: str, retain_until: datetime) -> StoredObject:
        return self._both([copy.put_bytes(key, data, sha256, retain_until) for copy in self.copies])

    def put_file(self, key: str, path: Path, sha256: str, retain_until: datetime) -> StoredObject:
        return self._both([copy.put_file(key, path, sha256, retain_until) for copy in self.copies])

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.primary.list_objects(prefix)

    def list_versions(self, prefix: str = "") -> Iterator[ObjectVersion]:
        return self.primary.list_versions(prefix)

    def open(self, key: str, version_id: str | None = None) -> BinaryIO:
        """Version ids are the primary's: each copy numbers its versions its own way."""
        return self.primary.open(key, version_id)

    def head(self, key: str, version_id: str | None = None) -> ObjectHead:
        return self.primary.head(key, version_id)

    def read_bytes(self, key: str, version_id: str | None = None) -> bytes:
        return self.primary.read_bytes(key, version_id)

    def digest(self, key: str, version_id: str | None = None) -> Digest:
        return self.primary.digest(key, version_id)

    def pending_uploads(self, older_than: datetime, *, abort: bool) -> list[PendingUpload]:
        return [upload for copy in self.copies for upload in copy.pending_uploads(older_than, abort=abort)]

    def _both(self, stored: list[StoredObject]) -> StoredObject:
        first = stored[0]
        copies = tuple(
            {"store": copy.url, "version_id": each.version_id} for copy, each in zip(self.copies, stored, strict=True)
        )
        return StoredObject(
            key=first.key, sha256=first.sha256, size=first.size, version_id=first.version_id, copies=copies
        )
