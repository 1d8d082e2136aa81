"""Credentials: connection ids become connections, AWS sessions and Google credentials, in and outside Airflow."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from soc2_evidence.core.credentials import AwsSession, Credentials, aws_client_config
from soc2_evidence.core.errors import ConfigError

AWS_CONNECTION = SimpleNamespace(
    conn_type="aws",
    login="AKIDEXAMPLE",
    password="example-secret",
    extra_dejson={"region_name": "eu-west-1", "endpoint_url": "http://127.0.0.1:9", "aws_session_token": "token"},
)


def test_outside_airflow_a_connection_is_a_config_error():
    with pytest.raises(
        ConfigError, match=r"^connection 'git_http' requested outside Airflow; set AIRFLOW_CONN_GIT_HTTP$"
    ):
        Credentials().connection("git_http")


def test_aws_session_from_a_connections_keys():
    aws = Credentials(lambda conn_id: AWS_CONNECTION).aws_session("aws_audit")
    credentials = aws.session.get_credentials()
    assert (credentials.access_key, credentials.secret_key, credentials.token) == (
        "AKIDEXAMPLE",
        "example-secret",
        "token",
    )
    assert aws.session.region_name == "eu-west-1"
    client = aws.client("s3")
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
    assert client.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 11}
    assert client.meta.config.max_pool_connections == aws_client_config().max_pool_connections


def test_aws_session_without_a_connection_is_boto3s_standard_chain(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    aws = Credentials().aws_session(None, "us-west-2")
    assert (aws.session.region_name, aws.endpoint_url, dict(aws.service_endpoints)) == ("us-west-2", None, {})


def test_a_service_endpoint_wins_over_the_connections_endpoint():
    import boto3

    aws = AwsSession(boto3.session.Session(region_name="us-east-1"), "http://127.0.0.1:9", {"s3": "http://127.0.0.1:8"})
    assert aws.client("s3").meta.endpoint_url == "http://127.0.0.1:8"
    assert aws.client("sts").meta.endpoint_url == "http://127.0.0.1:9"
    assert aws.with_session(boto3.session.Session()).client("s3").meta.endpoint_url == "http://127.0.0.1:8"


def test_google_credentials_refuse_another_connection_type():
    credentials = Credentials(lambda conn_id: AWS_CONNECTION)
    with pytest.raises(ConfigError, match=r"^connection 'gcp' is of type 'aws', expected 'google_cloud_platform'$"):
        credentials.google_credentials("gcp")


def test_google_credentials_without_a_key_leave_googles_chain_and_keep_the_project():
    connection = SimpleNamespace(conn_type="google_cloud_platform", extra_dejson={"project": "acme"})
    assert Credentials(lambda conn_id: connection).google_credentials("gcp") == (None, "acme")


def test_airflow_credentials_open_aws_connections_through_the_provider_hook(monkeypatch):
    """An Airflow AWS connection's endpoint_url and service_config reach the clients, as the hook reads them."""
    from soc2_evidence.orchestration.connections import AirflowCredentials

    extra = {
        "region_name": "eu-west-1",
        "endpoint_url": "http://127.0.0.1:9",
        "service_config": {"s3": {"endpoint_url": "http://127.0.0.1:8"}},
    }
    connection = {"conn_type": "aws", "login": "AKIDEXAMPLE", "password": "example-secret", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_AWS_AUDIT", json.dumps(connection))
    credentials = AirflowCredentials()
    aws = credentials.aws_session("aws_audit")
    assert aws.session.get_credentials().access_key == "AKIDEXAMPLE"
    assert aws.session.region_name == "eu-west-1"
    assert aws.client("s3").meta.endpoint_url == "http://127.0.0.1:8"
    assert aws.client("sts").meta.endpoint_url == "http://127.0.0.1:9"
    assert credentials.connection("aws_audit").login == "AKIDEXAMPLE"
