"""Credentials inside Airflow: connections from Airflow, AWS sessions through the amazon provider's hook.

The one place a connection id is resolved when the pipeline runs under Airflow; collectors and
stores receive the result (see :mod:`soc2_evidence.core.credentials`).
"""

from __future__ import annotations

from soc2_evidence.core.credentials import AwsSession, Connection, Credentials


class AirflowCredentials(Credentials):
    """Connections from Airflow (secrets backends, ``AIRFLOW_CONN_*``, the metadata database).

    AWS connections open through ``AwsBaseHook``, so what Airflow's AWS connection supports
    (``role_arn`` and assume-role options, ``endpoint_url``, ``service_config``, profiles) works
    for the store and the collectors alike.
    """

    def __init__(self) -> None:
        super().__init__(get_connection=_get_connection)

    def aws_session(self, conn_id: str | None, region: str | None = None) -> AwsSession:
        if not conn_id:
            return super().aws_session(conn_id, region)
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        hook = AwsBaseHook(aws_conn_id=conn_id, region_name=region)
        config = hook.conn_config
        endpoints = {
            service: settings["endpoint_url"]
            for service, settings in (config.service_config or {}).items()
            if isinstance(settings, dict) and settings.get("endpoint_url")
        }
        return AwsSession(hook.get_session(region_name=region), config.endpoint_url, endpoints)


def _get_connection(conn_id: str) -> Connection:
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id)
