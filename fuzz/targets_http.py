"""The HTTP layer of the API collectors (``support/http.py``): status, headers and bodies as a server could send them.

The client runs its real request loop (judging statuses, rate-limit headers, decoding, retries)
against injected responses: its connection pool is replaced by one that answers from the case.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import urllib3
from hypothesis import strategies as st

from fuzz.harness import FuzzTarget
from fuzz.payloads import NOW, damaged, mutated, to_json
from soc2_evidence.collectors.support.http import HttpClient, PageGuard, RetryPolicy, next_link

PAGE = {
    "startAt": 0,
    "maxResults": 50,
    "total": 2,
    "issues": [{"key": "CHG-1", "fields": {"summary": "x", "updated": "2026-10-06T15:00:00.000+0000"}}],
    "message": "API rate limit exceeded",
    "errorMessages": ["Field 'x' does not exist"],
    "errors": {"jql": "bad"},
}
HEADER_VALUES = (
    "soon",
    "0",
    "1",
    "-1",
    "60",
    "1e400",
    "NaN",
    "inf",
    "²",
    "9" * 400,
    str(int(NOW.timestamp()) + 30),
    "Wed, 21 Oct 2015 07:28:00 GMT",
    "Fri, 31 Dec 9999 23:59:59 GMT",
    "Mon, 01 Jan 0001 00:00:00 -0000",
    "",
    '<https://api.github.com/x?page=2>; rel="next", <https://api.github.com/x?page=9>; rel="last"',
    "<>; rel=next",
    '<https://api.github.com/x?page=2>; rel="next"',
    ";;,,<",
)
_header = st.one_of(st.sampled_from(HEADER_VALUES), st.text(max_size=20).filter(str.isprintable))
_headers = st.dictionaries(
    st.sampled_from(["retry-after", "x-ratelimit-remaining", "x-ratelimit-reset", "link", "content-type"]),
    _header,
    max_size=4,
)
_status = st.one_of(
    st.sampled_from([200, 200, 200, 201, 204, 400, 401, 403, 404, 408, 410, 429, 500, 503]), st.integers(100, 599)
)
_body = st.one_of(mutated(PAGE).map(to_json), st.binary(max_size=40)).flatmap(damaged)
RESPONSES = st.lists(st.tuples(_status, _headers, _body), min_size=1, max_size=3)


class _Answers:
    """A connection pool that answers each request with the next response of the case (then the last again)."""

    def __init__(self, responses: list[tuple[int, dict[str, str], bytes]]) -> None:
        self.responses = responses

    def request(self, method: str, url: str, **_: Any) -> urllib3.HTTPResponse:
        status, headers, body = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        return urllib3.HTTPResponse(body=io.BytesIO(body), headers=headers, status=status, preload_content=True)

    def clear(self) -> None:
        """Nothing to close."""


def _run(responses: list[tuple[int, dict[str, str], bytes]]) -> None:
    clock = NOW.timestamp()
    client = HttpClient(
        "fuzzed",
        "https://jira.example.com",
        policy=RetryPolicy(tries=3, max_wait_seconds=120),
        sleep=lambda seconds: None,
        clock=lambda: clock,
    )
    client._pool = _Answers(list(responses))
    guard = PageGuard("fuzzed", "search", max_pages=3)
    logging.disable(logging.WARNING)  # each retry logs a warning: thousands of lines that say nothing here
    try:
        response = client.get("/rest/api/2/search", {"jql": "project = CHG"}, page=guard.next("start"))
    finally:
        logging.disable(logging.NOTSET)
    link = next_link(response.headers)
    if link:
        guard.next(link)


TARGETS = [FuzzTarget("HTTP layer", RESPONSES, _run)]
