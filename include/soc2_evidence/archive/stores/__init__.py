"""Evidence stores, chosen by URL scheme."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from soc2_evidence.archive.stores.base import EvidenceStore, ObjectHead, ObjectInfo, StoredObject
from soc2_evidence.core.credentials import Credentials
from soc2_evidence.core.errors import StoreConfigError

__all__ = ["EvidenceStore", "ObjectHead", "ObjectInfo", "StoredObject", "open_store"]

SCHEMES = ("s3", "gs", "file")


def open_store(
    url: str,
    aws_conn_id: str | None = None,
    gcp_conn_id: str | None = None,
    *,
    credentials: Credentials | None = None,
) -> EvidenceStore:
    """Open ``s3://bucket/prefix``, ``gs://bucket/prefix`` or ``file:///path``; two URLs joined by a comma
    make a dual store that writes every object to both.

    Clients come from ``credentials`` (default: the standard chains, outside Airflow), with the
    connection ids given; the client is made on first use.
    """
    credentials = credentials or Credentials()
    if "," in url:
        from soc2_evidence.archive.stores.dual import DualStore

        urls = [part.strip() for part in url.split(",")]
        if len(urls) != 2 or not all(urls):
            raise StoreConfigError(f"store URL {url!r}: a dual store is exactly two URLs joined by a comma")
        return DualStore(*(open_store(part, aws_conn_id, gcp_conn_id, credentials=credentials) for part in urls))
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        from soc2_evidence.archive.stores.s3 import S3ObjectLockStore

        if not parsed.netloc:
            raise StoreConfigError(f"store URL {url!r}: no bucket name")
        return S3ObjectLockStore(
            parsed.netloc, parsed.path, client_factory=lambda: credentials.aws_session(aws_conn_id).client("s3")
        )
    if parsed.scheme == "gs":
        from soc2_evidence.archive.stores.gcs import GCSRetentionStore

        if not parsed.netloc:
            raise StoreConfigError(f"store URL {url!r}: no bucket name")
        return GCSRetentionStore(parsed.netloc, parsed.path, client_factory=lambda: credentials.gcs_client(gcp_conn_id))
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise StoreConfigError(f"store URL {url!r}: file URLs must be local (file:///path)")
        return _local(Path(unquote(parsed.path)))
    raise StoreConfigError(
        f"store URL {url!r}: unknown scheme {parsed.scheme or '(none)'!r}; use one of {', '.join(SCHEMES)}"
    )


def _local(root: Path) -> EvidenceStore:
    from soc2_evidence.archive.stores.local import LocalStore

    return LocalStore(root)
