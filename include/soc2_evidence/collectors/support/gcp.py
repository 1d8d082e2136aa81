"""Google Cloud failures, classed like AWS's and HTTP's: what may pass later retries, the rest needs a person.

google-cloud-storage already retries idempotent calls on 429, 5xx and connection errors; what
reaches here has outlived those retries. Those may still pass later, so they become
:class:`TransientCollectorError` and the task retries. A 4xx (403, 404, 400), a key that cannot be
used, or a response that does not fit is permanent.
"""

from __future__ import annotations

from soc2_evidence.core.errors import CollectorError, TransientCollectorError, describe


def gcp_failures() -> tuple[type[BaseException], ...]:
    """What a Google client call may raise besides our own errors: API errors, auth errors, transport errors.

    A closed port or a dropped connection surfaces as requests' own exception, not as a GoogleAPIError.
    """
    import requests
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError

    return GoogleAPIError, GoogleAuthError, requests.RequestException


def is_transient_gcp(error: BaseException) -> bool:
    """429, 408, 5xx, a deadline or retry budget spent, a transport failure; not a 4xx or a bad key."""
    import requests
    from google.api_core import exceptions
    from google.auth.exceptions import TransportError

    if isinstance(error, exceptions.GoogleAPICallError):
        return error.code in (408, 429) or (error.code or 0) >= 500
    if isinstance(error, exceptions.RetryError | TransportError):
        return True
    return isinstance(error, requests.ConnectionError | requests.Timeout)


def gcp_error(where: str, error: BaseException) -> CollectorError:
    """``where: <one line>`` as the class the error deserves (see the module doc)."""
    cls = TransientCollectorError if is_transient_gcp(error) else CollectorError
    return cls(f"{where}: {describe(error)}")
