"""The one AWS call wrapper of the collectors: every failure names source, account, region and call, and is classed.

botocore already retries throttling and connection errors (the clients use its adaptive mode);
what reaches here has outlived those retries. Throttling, a 5xx and a network failure may
still pass later, so they become :class:`TransientCollectorError` and the task retries.
Everything else (AccessDenied, NoSuchBucket, ValidationError, missing credentials) needs a
person, so it is a permanent :class:`CollectorError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from soc2_evidence.core.errors import CollectorError, TransientCollectorError, describe

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "ProvisionedThroughputExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "BandwidthLimitExceeded",
        "EC2ThrottledException",
        "ServiceUnavailable",
        "InternalError",
    }
)


def is_transient_aws(error: BaseException) -> bool:
    """Throttling codes, HTTP 5xx, 408 and 429, connection failures, timeouts; not TLS (certificates are not flaky)."""
    from botocore.exceptions import ClientError, HTTPClientError, SSLError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        code = str(error.response.get("Error", {}).get("Code", ""))
        return code in THROTTLING_CODES or status >= 500 or status in (408, 429)
    if isinstance(error, SSLError):
        return False
    return isinstance(error, BotoConnectionError | HTTPClientError)


def aws_error(where: str, error: BaseException) -> CollectorError:
    """``where: <one line>`` as the class the error deserves (see the module doc)."""
    cls = TransientCollectorError if is_transient_aws(error) else CollectorError
    return cls(f"{where}: {describe(error)}")


class AwsApi:
    """One client of one account and region; every call's failure names the source, account, region and call.

    ``account_id`` may be None before the account is known (the GetCallerIdentity that finds it).
    Operations are botocore's Python names (``list_backup_plans``); errors use the API's own
    name (``ListBackupPlans``), as in CloudTrail and IAM policies.
    """

    def __init__(self, source: str, account_id: str | None, region: str, client: Any) -> None:
        self.source, self.account_id, self.region, self.client = source, account_id, region, client

    def call(self, operation: str, *, absent: tuple[str, ...] = (), **params: Any) -> dict[str, Any] | None:
        """The response, or None when the error code says the thing is absent (no policy, no login profile)."""
        from botocore.exceptions import BotoCoreError, ClientError  # at call time: DAG files import this module

        try:
            return getattr(self.client, operation)(**params)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in absent:
                return None
            raise self.error(operation, error) from error
        except BotoCoreError as error:
            raise self.error(operation, error) from error

    def pages(self, operation: str, **params: Any) -> Iterator[dict[str, Any]]:
        """The pages of a paginated call; a failure names the page it happened on."""
        from botocore.exceptions import BotoCoreError, ClientError

        pages = iter(self.client.get_paginator(operation).paginate(**params))
        number = 1
        while True:
            try:
                page = next(pages, None)
            except (ClientError, BotoCoreError) as error:
                raise self.error(operation, error, page=number) from error
            if page is None:
                return
            yield page
            number += 1

    def items(self, operation: str, key: str, **params: Any) -> Iterator[dict[str, Any]]:
        for page in self.pages(operation, **params):
            yield from page.get(key, [])

    def error(self, operation: str, error: BaseException, *, page: int | None = None) -> CollectorError:
        """Denied, throttled past the retries, unreachable: one line an operator can act on, rightly classed."""
        api = self.client.meta.method_to_api_mapping.get(operation, operation)
        service = self.client.meta.service_model.service_name
        account = f"account {self.account_id} " if self.account_id else ""
        call = f"{service} {api}" + (f" page {page}" if page else "")
        return aws_error(f"source {self.source}: {account}region {self.region}: {call} failed", error)
