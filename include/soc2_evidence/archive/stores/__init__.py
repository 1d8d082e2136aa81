"""Evidence stores, chosen by URL scheme."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from soc2_evidence.archive.stores.base import EvidenceStore, ObjectHead, ObjectInfo, StoredObject
from soc2_evidence.core.errors import StoreConfigError

__all__ = ["EvidenceStore", "ObjectHead", "ObjectInfo", "StoredObject", "open_store"]

SCHEMES = ("s3", "gs", "file")


def open_store(url: str, aws_conn_id: str | None = None, gcp_conn_id: str | None = None) -> EvidenceStore:
    """Open ``s3://bucket/prefix``, ``gs://bucket/prefix`` or ``file:///path``; two URLs joined by a comma
    make a dual store that writes every object to both. Connection ids take credentials from Airflow."""
    if "," in url:
        from soc2_evidence.archive.stores.dual import DualStore

        urls = [part.strip() for part in url.split(",")]
        if len(urls) != 2 or not all(urls):
            raise StoreConfigError(f"store URL {url!r}: a dual store is exactly two URLs joined by a comma")
        return DualStore(*(open_store(part, aws_conn_id, gcp_conn_id) for part in urls))
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        from soc2_evidence.archive.stores.s3 import S3ObjectLockStore

        if not parsed.netloc:
            raise StoreConfigError(f"store URL {url!r}: no bucket name")
        if aws_conn_id:
            return S3ObjectLockStore(parsed.netloc, parsed.path, client_factory=_airflow_client(aws_conn_id))
        return S3ObjectLockStore(parsed.netloc, parsed.path)
    if parsed.scheme == "gs":
        from soc2_evidence.archive.stores.gcs import GCSRetentionStore

        if not parsed.netloc:
            raise StoreConfigError(f"store URL {url!r}: no bucket name")
        if gcp_conn_id:
            return GCSRetentionStore(parsed.netloc, parsed.path, client_factory=_google_client(gcp_conn_id))
        return GCSRetentionStore(parsed.netloc, parsed.path)
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


def _google_client(gcp_conn_id: str):
    """A storage client from an Airflow google_cloud_platform connection's key, without the Google provider."""

    def factory():
        import json

        from airflow.sdk import BaseHook
        from google.cloud import storage
        from google.oauth2 import service_account

        extra = BaseHook.get_connection(gcp_conn_id).extra_dejson
        key = extra.get("keyfile_dict") or extra.get("extra__google_cloud_platform__keyfile_dict")
        path = extra.get("key_path") or extra.get("extra__google_cloud_platform__key_path")
        if key:
            info = json.loads(key) if isinstance(key, str) else key
            credentials = service_account.Credentials.from_service_account_info(info)
        elif path:
            credentials = service_account.Credentials.from_service_account_file(path)
        else:
            raise StoreConfigError(f"connection {gcp_conn_id!r}: extra has neither keyfile_dict nor key_path")
        return storage.Client(project=extra.get("project") or credentials.project_id, credentials=credentials)

    return factory


def _airflow_client(aws_conn_id: str):
    def factory():
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from soc2_evidence.archive.stores.s3 import CLIENT_CONFIG

        return S3Hook(aws_conn_id=aws_conn_id, config=CLIENT_CONFIG).get_conn()

    return factory
