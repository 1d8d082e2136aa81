"""Credentials, built in one place: a connection id becomes a connection's fields, a boto3 session or a GCS client.

Collectors and stores receive a :class:`Credentials` object and never look connections up
themselves, so nothing below orchestration imports Airflow. This standard implementation runs
anywhere: with no connection named it uses boto3's standard chain (``AWS_PROFILE``,
``AWS_ENDPOINT_URL_S3``, ...) and Google's default credentials; connections come from the
function it is given (none by default, outside Airflow). Inside Airflow,
:class:`soc2_evidence.orchestration.connections.AirflowCredentials` looks connections up in
Airflow and opens AWS ones through the amazon provider's hook, so ``role_arn``,
``endpoint_url`` and ``service_config`` in a connection's extra keep working.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from soc2_evidence.core.errors import ConfigError


@functools.cache
def aws_client_config() -> Any:
    """One botocore configuration for every AWS client: adaptive retries ride out throttling, and a pool
    as large as the collectors' and the store's thread pools keeps connections reused. Built on first use:
    DAG files import this module at parse time, and botocore takes longer to import than they may."""
    from botocore.config import Config

    return Config(retries={"mode": "adaptive", "max_attempts": 10}, max_pool_connections=32)


GCP_CONNECTION_TYPE = "google_cloud_platform"


class Connection(Protocol):
    """What is read of a connection: Airflow's ``Connection`` fields, as far as collectors and stores use them."""

    conn_type: str | None
    host: str | None
    login: str | None
    password: str | None
    port: int | None
    schema: str | None
    extra_dejson: dict[str, Any]


@dataclass(frozen=True)
class AwsSession:
    """A boto3 session and the endpoints its connection names.

    ``service_endpoints`` are per-service endpoints (an Airflow connection's ``service_config``),
    which win over ``endpoint_url``; with neither, boto3 picks the endpoint (``AWS_ENDPOINT_URL*``).
    """

    session: Any
    endpoint_url: str | None = None
    service_endpoints: Mapping[str, str] = field(default_factory=dict)

    def client(self, service: str, region: str | None = None) -> Any:
        """A client for ``service`` (in ``region``, default the session's) with the one client configuration."""
        return self.session.client(
            service,
            region_name=region,
            endpoint_url=self.service_endpoints.get(service, self.endpoint_url),
            config=aws_client_config(),
        )

    def with_session(self, session: Any) -> AwsSession:
        """The same endpoints on another session (one assumed from this one's credentials)."""
        return AwsSession(session, self.endpoint_url, self.service_endpoints)


class Credentials:
    """Connections, AWS sessions and Google clients for collectors and stores, without Airflow.

    ``get_connection`` returns a connection by id (tests pass fakes); without one, asking for a
    connection is a ConfigError naming the environment variable Airflow would read it from.
    """

    def __init__(self, get_connection: Callable[[str], Connection] | None = None) -> None:
        self._get_connection = get_connection

    def connection(self, conn_id: str) -> Connection:
        if self._get_connection is None:
            raise ConfigError(f"connection {conn_id!r} requested outside Airflow; set AIRFLOW_CONN_{conn_id.upper()}")
        return self._get_connection(conn_id)

    def aws_session(self, conn_id: str | None, region: str | None = None) -> AwsSession:
        """boto3's standard chain, or a connection's keys: login is the access key id, password the secret,
        extra may hold ``aws_session_token``, ``region_name`` and ``endpoint_url``."""
        import boto3

        if not conn_id:
            return AwsSession(boto3.session.Session(region_name=region))
        connection = self.connection(conn_id)
        extra = connection.extra_dejson or {}
        session = boto3.session.Session(
            aws_access_key_id=connection.login or None,
            aws_secret_access_key=connection.password or None,
            aws_session_token=extra.get("aws_session_token"),
            region_name=region or extra.get("region_name"),
        )
        return AwsSession(session, extra.get("endpoint_url"))

    def google_credentials(
        self, conn_id: str, resolve_path: Callable[[str], Path] = Path
    ) -> tuple[Any | None, str | None]:
        """A ``google_cloud_platform`` connection's service account credentials and project, without the Google
        provider package; (None, project) when its extra names no key, so Google's standard chain applies.

        A connection of another type is a ConfigError; an unusable key raises what google-auth or ``json``
        raise (ValueError, OSError, GoogleAuthError), for the caller to name.
        """
        connection = self.connection(conn_id)
        if connection.conn_type != GCP_CONNECTION_TYPE:
            raise ConfigError(
                f"connection {conn_id!r} is of type {connection.conn_type!r}, expected {GCP_CONNECTION_TYPE!r}"
            )
        extra = connection.extra_dejson or {}
        credentials = service_account_credentials(extra, resolve_path)
        return credentials, _gcp_extra(extra, "project") or getattr(credentials, "project_id", None)

    def gcs_client(self, conn_id: str | None = None, project: str | None = None) -> Any:
        """A Cloud Storage client: a connection's key, else Google's standard chain; anonymous against an emulator
        (``STORAGE_EMULATOR_HOST``), which takes no real credentials."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        credentials = None
        if conn_id:
            credentials, key_project = self.google_credentials(conn_id)
            project = project or key_project
        if os.environ.get("STORAGE_EMULATOR_HOST"):
            credentials = AnonymousCredentials()
        if project is None:  # an explicit None means "no project" to the client; leave it to find one
            return storage.Client(credentials=credentials)
        return storage.Client(project=project, credentials=credentials)


def service_account_credentials(extra: Mapping[str, Any], resolve_path: Callable[[str], Path] = Path) -> Any | None:
    """Service account credentials from a connection's extra, without the Google provider package.

    Both extra spellings are read: ``keyfile_dict`` and the older ``extra__google_cloud_platform__keyfile_dict``.
    None when the extra names no key, so Google's standard credential chain applies.
    """
    from google.oauth2 import service_account

    keyfile = _gcp_extra(extra, "keyfile_dict")
    key_path = _gcp_extra(extra, "key_path")
    if keyfile:
        info = json.loads(keyfile) if isinstance(keyfile, str) else keyfile
        if not isinstance(info, dict):
            raise ValueError("keyfile_dict is not a JSON object")
        return service_account.Credentials.from_service_account_info(info)
    if key_path:
        return service_account.Credentials.from_service_account_file(str(resolve_path(key_path)))
    return None


def _gcp_extra(extra: Mapping[str, Any], name: str) -> Any:
    return extra.get(name) or extra.get(f"extra__{GCP_CONNECTION_TYPE}__{name}")
