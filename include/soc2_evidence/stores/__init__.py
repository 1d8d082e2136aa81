"""Evidence stores, chosen by URL scheme."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from soc2_evidence.exceptions import StoreConfigError
from soc2_evidence.stores.base import EvidenceStore, ObjectHead, ObjectInfo, StoredObject

__all__ = ["EvidenceStore", "ObjectHead", "ObjectInfo", "StoredObject", "open_store"]

SCHEMES = ("s3", "file")


def open_store(url: str, aws_conn_id: str | None = None) -> EvidenceStore:
    """Open ``s3://bucket/prefix`` or ``file:///path``; ``aws_conn_id`` takes credentials from Airflow."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        from soc2_evidence.stores.s3 import S3ObjectLockStore

        if not parsed.netloc:
            raise StoreConfigError(f"store URL {url!r}: no bucket name")
        if aws_conn_id:
            return S3ObjectLockStore(parsed.netloc, parsed.path, client_factory=_airflow_client(aws_conn_id))
        return S3ObjectLockStore(parsed.netloc, parsed.path)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise StoreConfigError(f"store URL {url!r}: file URLs must be local (file:///path)")
        return _local(Path(unquote(parsed.path)))
    raise StoreConfigError(
        f"store URL {url!r}: unknown scheme {parsed.scheme or '(none)'!r}; use one of {', '.join(SCHEMES)}"
    )


def _local(root: Path) -> EvidenceStore:
    from soc2_evidence.stores.local import LocalStore

    return LocalStore(root)


def _airflow_client(aws_conn_id: str):
    def factory():
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from soc2_evidence.stores.s3 import CLIENT_CONFIG

        return S3Hook(aws_conn_id=aws_conn_id, config=CLIENT_CONFIG).get_conn()

    return factory
