"""Errors at the Airflow edge and for people: permanent fails at once, transient retries, bugs keep their traceback."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from soc2_evidence.core.errors import (
    CollectorError,
    ConfigError,
    DataQualityError,
    PayloadError,
    TransientCollectorError,
    TransientError,
    describe,
    is_permanent,
    is_transient,
)
from soc2_evidence.orchestration.failures import airflow_edge, for_airflow


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("/etc/evidence.yaml: line 3: mapping values are not allowed here"),
        CollectorError("source jira: GET /rest/api/3/search/jql (changes search page 1): HTTP 404: No such project"),
        PayloadError("source jira: malformed JSON in the response body; gave up after 6 tries"),
        DataQualityError("run archived as FAILED at s3://b/p/m.json"),
    ],
    ids=["config", "collector", "payload", "data-quality"],
)
def test_a_permanent_error_fails_the_task_without_retries_in_one_line(error):
    mapped = for_airflow(error, "source jira")
    assert type(mapped) is AirflowFailException
    line = str(error) if str(error).startswith("source jira") else f"source jira: {error}"
    assert str(mapped) == line
    assert "\n" not in str(mapped)


@pytest.mark.parametrize(
    "error",
    [
        TransientCollectorError("source jira: GET /x (page 1): HTTP 503; gave up after 6 tries"),
        TransientError("network"),
    ],
)
def test_a_transient_error_is_raised_as_it_is_so_the_task_retries(error):
    assert for_airflow(error, "source jira") is error


def test_a_bug_keeps_its_exception_and_traceback():
    bug = KeyError("issues")
    assert for_airflow(bug, "source jira") is bug
    with pytest.raises(KeyError) as caught, airflow_edge("source jira"):
        {}["issues"]
    assert caught.traceback[-1].name == "test_a_bug_keeps_its_exception_and_traceback"


def test_the_edge_raises_the_one_line_without_the_chained_traceback():
    pattern = r"^source gone: repository /x does not exist$"
    with pytest.raises(AirflowFailException, match=pattern) as caught, airflow_edge("source gone"):
        raise CollectorError("source gone: repository /x does not exist")
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    with pytest.raises(TransientCollectorError), airflow_edge("source jira"):
        raise TransientCollectorError("source jira: HTTP 503; gave up after 6 tries")


def test_a_plain_collector_error_is_permanent_and_only_transient_errors_are_transient():
    assert is_permanent(CollectorError("x")) and not is_transient(CollectorError("x"))
    assert is_transient(TransientCollectorError("x")) and not is_permanent(TransientCollectorError("x"))
    assert isinstance(PayloadError("x"), CollectorError) and is_permanent(PayloadError("x"))
    assert not is_permanent(ValueError("a bug")) and not is_transient(ValueError("a bug"))


def test_describe_is_one_redacted_capped_line():
    error = RuntimeError("\n  connect to postgresql://app:Hunter2Canary@db:5432/shop failed\nDETAIL: password=x\n")
    assert describe(error) == "connect to postgresql://app:[REDACTED:url_password]@db:5432/shop failed"
    assert describe(RuntimeError("")) == "RuntimeError"
    assert describe(RuntimeError("x" * 1000)) == "x" * 297 + "..."


def test_describe_removes_a_known_password_no_pattern_would_see():
    error = RuntimeError('FATAL: role "app" with "Hunter2Canary" failed')
    text = describe(error, known_secrets=("Hunter2Canary", None))
    assert text == 'FATAL: role "app" with "[REDACTED:connection_password]" failed'


def test_describe_gives_an_aws_client_error_as_code_and_message():
    from botocore.exceptions import ClientError

    error = ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied\nmore"}}, "GetObject")
    assert describe(error) == "AccessDenied: Access Denied"
