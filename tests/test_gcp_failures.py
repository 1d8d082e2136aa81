"""Google Cloud failures are classed as AWS and HTTP ones are: what may pass later retries, the rest fails at once."""

from __future__ import annotations

import pytest
import requests
from google.api_core import exceptions
from google.auth.exceptions import RefreshError, TransportError

from soc2_evidence.collectors.support.gcp import gcp_error, is_transient_gcp
from soc2_evidence.collectors.support.locations import open_location
from soc2_evidence.core.errors import CollectorError, TransientCollectorError, is_transient


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(exceptions.TooManyRequests("slow down"), id="429"),
        pytest.param(exceptions.InternalServerError("oops"), id="500"),
        pytest.param(exceptions.ServiceUnavailable("busy"), id="503"),
        pytest.param(exceptions.GatewayTimeout("late"), id="504"),
        pytest.param(exceptions.RetryError("deadline spent", cause=None), id="retries-spent"),
        pytest.param(TransportError("connection reset"), id="auth-transport"),
        pytest.param(requests.ConnectionError("refused"), id="connection-refused"),
        pytest.param(requests.Timeout("read timed out"), id="timeout"),
    ],
)
def test_what_may_pass_later_is_transient(error):
    assert is_transient_gcp(error)
    classed = gcp_error("location gs://b/p: listing objects failed", error)
    assert type(classed) is TransientCollectorError and is_transient(classed)


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(exceptions.Forbidden("no storage.objects.list"), id="403"),
        pytest.param(exceptions.NotFound("no such bucket"), id="404"),
        pytest.param(exceptions.BadRequest("bad prefix"), id="400"),
        pytest.param(RefreshError("invalid_grant: account deleted"), id="revoked-key"),
    ],
)
def test_what_needs_a_person_is_permanent(error):
    assert not is_transient_gcp(error)
    classed = gcp_error("source gcs: project p", error)
    assert type(classed) is CollectorError and not is_transient(classed)


def test_a_bucket_that_does_not_exist_fails_at_once_naming_the_location(gcs_bucket):
    location = open_location(f"gs://{gcs_bucket}-missing/dumps", resolve_path=lambda value: value)
    with pytest.raises(
        CollectorError, match=rf"^location gs://{gcs_bucket}-missing/dumps: listing objects failed: "
    ) as caught:
        list(location.iter_objects())
    assert not is_transient(caught.value)
