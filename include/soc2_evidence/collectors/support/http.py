"""The one HTTP client of the API collectors: timeouts, retries with backoff, rate limits, pagination guards.

Built on urllib3 with its own retry loop, so every failure is reported the same way: one line
naming the source and the page, and what was wrong. Transient failures (connection errors,
timeouts, truncated bodies, malformed JSON, HTTP 5xx, 408, 429, GitHub's rate-limited 403) are
retried with exponential backoff; ``Retry-After`` and GitHub's ``x-ratelimit-remaining`` /
``x-ratelimit-reset`` are honoured, both after a refusal and before the next request once the
primary limit is spent. ``sleep`` and ``clock`` are injectable, so tests exercise real HTTP
without waiting out rate limits.

What is raised is classed for the task's retry (see ``core.errors``): retries used up on a
transient failure, or a rate limit longer than this task waits, raise
:class:`TransientCollectorError`; a body that stayed malformed JSON on every try raises
:class:`PayloadError`; any other 4xx (401, 403 without a rate-limit sign, 404, 410, ...) raises a
permanent :class:`CollectorError` at once, since asking again gets the same answer.
"""

from __future__ import annotations

import email.utils
import gc
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode, urljoin, urlsplit

import msgspec

if TYPE_CHECKING:
    import urllib3

from soc2_evidence.core.errors import CollectorError, PayloadError, TransientCollectorError, describe
from soc2_evidence.core.redaction import Redactor

log = logging.getLogger(__name__)

T = TypeVar("T")
_DONE = object()
READ_AHEAD_SWITCH_SECONDS = 0.0005
READ_AHEAD_GC_THRESHOLD = 50_000  # allocations between cycle collections while pages stream: a few pages
SECONDARY_LIMIT_WAIT_SECONDS = 60.0  # GitHub: "wait for at least one minute" when it gives no time
_ERROR_SNIPPET = 200
# msgspec parses a page about twice as fast as the json module, to the same dicts and lists; it
# refuses what JSON does not allow (NaN, trailing commas), which the json module would accept.
_decode_json = msgspec.json.Decoder().decode
_MALFORMED = "malformed JSON in the response body"


def is_transient_status(status: int) -> bool:
    """5xx (the server's trouble), 408 (a request timeout) and 429 (too many requests) may pass if asked again."""
    return status >= 500 or status in (408, 429)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: ``tries`` per request, backoff doubling from ``backoff_seconds``.

    A rate-limit wait longer than ``max_wait_seconds`` fails at once with the time it would
    have waited: Airflow's task retry is the better place for an hour-long wait.
    """

    tries: int = 6
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 120.0
    max_wait_seconds: float = 900.0
    timeout_seconds: float = 30.0
    max_pages: int = 100_000


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    data: Any
    url: str


class HttpClient:
    """JSON over HTTPS for one source, with one connection pool.

    ``auth_hint`` ends the message of a 401 (e.g. "renew the token in connection jira_default"),
    so an expired credential says where to fix it. Headers (credentials) never reach a message.
    """

    def __init__(
        self,
        source: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        policy: RetryPolicy | None = None,
        auth_hint: str = "",
        ca_bundle: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise CollectorError(f"source {source}: base URL {base_url!r} is not an http(s) URL")
        self.source = source
        self.base_url = base_url.rstrip("/") + "/"
        self.policy = policy or RetryPolicy()
        self.auth_hint = auth_hint
        self.sleep, self.clock = sleep, clock
        self.requests = 0
        self._blocked_until = 0.0
        self._headers = {"Accept": "application/json", "User-Agent": "soc2-evidence", **(headers or {})}
        import urllib3  # here, not at module level: DAG files import this module (for Options) at parse time

        # Redirects are followed (urllib3 drops Authorization across hosts); everything else is retried here.
        retries = urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=5, raise_on_redirect=True)
        timeout = urllib3.Timeout(connect=min(10.0, self.policy.timeout_seconds), read=self.policy.timeout_seconds)
        self._pool = urllib3.PoolManager(retries=retries, timeout=timeout, maxsize=4, ca_certs=ca_bundle)

    def url(self, path: str, params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None) -> str:
        """An absolute URL: ``path`` relative to the base URL (or absolute, as in a Link header), plus ``params``."""
        url = urljoin(self.base_url, path.lstrip("/")) if "://" not in path else path
        if params:
            items = params.items() if isinstance(params, Mapping) else params
            query = urlencode([(key, value) for key, value in items if value is not None])
            url += ("&" if "?" in url else "?") + query
        return url

    def get(self, path: str, params=None, *, page: str, allow: tuple[int, ...] = ()) -> Response:
        return self.request("GET", self.url(path, params), page=page, allow=allow)

    def post(self, path: str, body: Any, *, page: str) -> Response:
        return self.request("POST", self.url(path), body=body, page=page)

    def request(self, method: str, url: str, *, page: str, body: Any = None, allow: tuple[int, ...] = ()) -> Response:
        """One JSON request, retried within the policy; ``page`` names it in errors ("search page 3").

        A status in ``allow`` (e.g. 404 for "not configured") is returned, not raised.
        """
        import urllib3

        payload = json.dumps(body).encode("utf-8") if body is not None else None
        headers = {**self._headers, **({"Content-Type": "application/json"} if payload is not None else {})}
        where = f"source {self.source}: {method} {urlsplit(url).path} ({page})"
        for attempt in range(1, self.policy.tries + 1):
            self._wait_for_rate_limit(where)
            self.requests += 1
            try:
                raw = self._pool.request(method, url, body=payload, headers=headers, preload_content=True)
            except urllib3.exceptions.HTTPError as error:
                problem, wait = _network_problem(error), self._backoff(attempt)
            else:
                problem, wait = (None, 0.0) if raw.status in allow else self._judge(raw, attempt, where)
                if problem is None:
                    try:
                        data = _decode_json(raw.data) if raw.data and not raw.data.isspace() else None
                    except (msgspec.DecodeError, UnicodeDecodeError) as error:  # a string that is not UTF-8
                        problem, wait = f"{_MALFORMED} ({error})", self._backoff(attempt)
                    except RecursionError:
                        problem, wait = f"{_MALFORMED} (nested over about 1,000 levels deep)", self._backoff(attempt)
                    else:
                        self._note_rate_limit(raw.headers)
                        return Response(raw.status, raw.headers, data, url)
            if attempt == self.policy.tries:
                gave_up = PayloadError if problem.startswith(_MALFORMED) else TransientCollectorError
                raise gave_up(f"{where}: {problem}; gave up after {attempt} tries")
            log.warning("%s: %s; retry %d of %d in %.1f s", where, problem, attempt, self.policy.tries - 1, wait)
            self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _judge(self, raw, attempt: int, where: str) -> tuple[str | None, float]:
        """None for a usable response, else the problem and how long to wait; raises when retrying is pointless."""
        status = raw.status
        if 200 <= status < 300:
            return None, 0.0
        detail = _error_detail(raw.data)
        rate_wait = self._rate_limit_wait(status, raw.headers, detail, attempt)
        if rate_wait is not None:
            if rate_wait > self.policy.max_wait_seconds:
                raise TransientCollectorError(
                    f"{where}: rate limited (HTTP {status}) for {rate_wait:.0f} s, longer than the "
                    f"{self.policy.max_wait_seconds:.0f} s this task waits; the task's retry will resume later"
                )
            return f"rate limited (HTTP {status}{': ' + detail if detail else ''})", rate_wait
        if is_transient_status(status):
            return f"HTTP {status}{': ' + detail if detail else ''}", self._backoff(attempt)
        if status == 401:
            hint = f"; {self.auth_hint}" if self.auth_hint else ""
            raise CollectorError(f"{where}: HTTP 401 Unauthorized: the credential is invalid or expired{hint}")
        raise CollectorError(f"{where}: HTTP {status}{': ' + detail if detail else ''}")

    def _rate_limit_wait(self, status: int, headers: Mapping[str, str], detail: str, attempt: int) -> float | None:
        """Seconds to wait before retrying a rate-limited request, or None when it was not rate limited.

        GitHub's rules: ``retry-after`` seconds if present; else, with ``x-ratelimit-remaining: 0``,
        until ``x-ratelimit-reset``; else (a secondary limit, or a reset that is not a time) at least a
        minute, growing exponentially.
        A 403 is a rate limit only with one of those signs; otherwise it is a permission error.
        """
        retry_after = _retry_after(headers.get("retry-after"), self.clock())
        reset = _epoch_seconds(headers.get("x-ratelimit-reset"))
        spent = headers.get("x-ratelimit-remaining") == "0"
        limited = retry_after is not None or spent or "rate limit" in detail.lower()
        if status == 429 or (status == 403 and limited):
            if retry_after is not None:
                return retry_after
            if reset is not None and spent:
                return max(0.0, reset - self.clock()) + 1.0
            if status == 403:
                return SECONDARY_LIMIT_WAIT_SECONDS * 2 ** (attempt - 1)
            return self._backoff(attempt)
        return None

    def _note_rate_limit(self, headers: Mapping[str, str]) -> None:
        """The primary limit is spent: the next request waits for the reset instead of being refused."""
        reset = _epoch_seconds(headers.get("x-ratelimit-reset"))
        if headers.get("x-ratelimit-remaining") == "0" and reset is not None:
            self._blocked_until = reset + 1.0

    def _wait_for_rate_limit(self, where: str) -> None:
        wait = self._blocked_until - self.clock()
        if wait <= 0:
            return
        if wait > self.policy.max_wait_seconds:
            raise TransientCollectorError(
                f"{where}: the API rate limit is spent for {wait:.0f} s, longer than the "
                f"{self.policy.max_wait_seconds:.0f} s this task waits; the task's retry will resume later"
            )
        log.info("%s: rate limit spent; waiting %.0f s for its reset", where, wait)
        self.sleep(wait)
        self._blocked_until = 0.0

    def _backoff(self, attempt: int) -> float:
        return min(self.policy.max_backoff_seconds, self.policy.backoff_seconds * 2 ** (attempt - 1))

    def close(self) -> None:
        self._pool.clear()


def base_url_of(connection: Any) -> str | None:
    """An Airflow HTTP connection's base URL: its host if that is a URL, else schema://host:port."""
    host = (getattr(connection, "host", None) or "").strip()
    if not host:
        return None
    if "://" in host:
        return host
    port = getattr(connection, "port", None)
    return f"{getattr(connection, 'schema', None) or 'https'}://{host}{f':{port}' if port else ''}"


class PageGuard:
    """Pagination that cannot loop or run away: a cursor or a page of items seen twice is an error.

    Memory is one small hash per page, never the records. ``label`` names the listing in errors.
    """

    def __init__(self, source: str, label: str, max_pages: int) -> None:
        self.source, self.label, self.max_pages = source, label, max_pages
        self.pages = 0
        self._cursors: set[int] = set()
        self._pages: set[int] = set()

    def next(self, cursor: str) -> str:
        """Register the request for the next page; return its name for messages ("page 3")."""
        key = hash(cursor)
        if key in self._cursors:
            raise CollectorError(
                f"source {self.source}: {self.label} page {self.pages + 1}: the API returned a cursor it had "
                f"already given ({_clip(cursor)}): a pagination loop"
            )
        if self.pages >= self.max_pages:
            raise CollectorError(
                f"source {self.source}: {self.label}: more than {self.max_pages} pages; raise max_pages if the "
                "population is really that large"
            )
        self._cursors.add(key)
        self.pages += 1
        return f"{self.label} page {self.pages}"

    def items(self, ids: Sequence[Any]) -> None:
        """Refuse a page whose items are exactly those of an earlier page (a repeated page)."""
        if not ids:
            return
        key = hash(tuple(ids))
        if key in self._pages:
            raise CollectorError(
                f"source {self.source}: {self.label} page {self.pages} repeats an earlier page "
                f"({len(ids)} items from {ids[0]!r}); the listing is not advancing"
            )
        self._pages.add(key)

    def fail(self, problem: str) -> CollectorError:
        return CollectorError(f"source {self.source}: {self.label} page {self.pages}: {problem}")


def read_ahead(pages: Iterator[T]) -> Iterator[T]:
    """``pages``, with the next page fetched in a worker thread while the caller works on this one.

    One page ahead, never more: memory stays two pages. The iterator is advanced by one thread
    at a time, and an error surfaces where its page would have been yielded. A caller that stops
    early does not wait for the page in flight (it ends within the client's timeout).

    While it runs, two interpreter settings change (both are put back when the pages end):
    - the thread switch interval is at most ``READ_AHEAD_SWITCH_SECONDS``: the worker needs the
      GIL for a moment after each network read, and at Python's default 5 ms it queued behind the
      caller's work, losing the overlap read-ahead exists for;
    - the cycle collector's first threshold is at least ``READ_AHEAD_GC_THRESHOLD``: a parsed page
      is thousands of dicts alive at once, freed by reference counting as its records are written.
      At the default (700) the collector ran several times a page, found nothing (parsed JSON has
      no cycles), and promoted each live page into older generations whose collections walk the
      whole task heap.
    Measured on the tickets benchmark: a tenth of its time each.
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead")
    switch_interval, gc_threshold = sys.getswitchinterval(), gc.get_threshold()
    sys.setswitchinterval(min(switch_interval, READ_AHEAD_SWITCH_SECONDS))
    gc.set_threshold(max(gc_threshold[0], READ_AHEAD_GC_THRESHOLD), *gc_threshold[1:])
    try:
        future = pool.submit(next, pages, _DONE)
        while (page := future.result()) is not _DONE:
            future = pool.submit(next, pages, _DONE)
            yield page
    finally:
        sys.setswitchinterval(switch_interval)
        gc.set_threshold(*gc_threshold)
        pool.shutdown(wait=False, cancel_futures=True)


def next_link(headers: Mapping[str, str]) -> str | None:
    """The ``rel="next"`` URL of an RFC 8288 Link header (GitHub's pagination), or None."""
    return _links(headers).get("next")


def _links(headers: Mapping[str, str]) -> dict[str, str]:
    links = {}
    for part in (headers.get("link") or "").split(","):
        section = part.split(";")
        url = section[0].strip()
        if not (url.startswith("<") and url.endswith(">")):
            continue
        for parameter in section[1:]:
            name, _, value = parameter.strip().partition("=")
            if name == "rel":
                for rel in value.strip('"').split():
                    links[rel] = url[1:-1]
    return links


def _retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # ASCII: str.isdigit() also accepts "²", which float() refuses
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
        return max(0.0, moment.timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):  # not a date, or one out of datetime's range
        return None


def _epoch_seconds(value: str | None) -> float | None:
    """GitHub's ``x-ratelimit-reset`` (epoch seconds); None when absent or not a finite number (``soon``).

    Without a usable reset time a rate limit is waited out like a secondary one: a minute, growing.
    """
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) else None


def _network_problem(error: urllib3.exceptions.HTTPError) -> str:
    """A failed connection or read in words: timeouts and short bodies plainly, anything else by the describer."""
    import urllib3

    reason = getattr(error, "reason", None) or error
    if isinstance(reason, urllib3.exceptions.ReadTimeoutError | urllib3.exceptions.ConnectTimeoutError):
        return "timed out"
    if isinstance(reason, urllib3.exceptions.ProtocolError) and "IncompleteRead" in str(reason):
        return "the response body was cut short (fewer bytes than its Content-Length)"
    return f"{type(reason).__name__}: {describe(reason)}"


def _error_detail(body: bytes) -> str:
    """The API's own error message (Jira ``errorMessages``, GitHub ``message``), short and redacted."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = _decode_json(text)
    except (msgspec.DecodeError, RecursionError):
        return _clip(Redactor().redact_text(" ".join(text.split())))
    if isinstance(data, dict):
        errors = data.get("errors")
        messages = data.get("errorMessages")
        parts = [data.get("message"), *(messages if isinstance(messages, list) else [messages])]
        parts += list(errors.values()) if isinstance(errors, dict) else []
        text = "; ".join(str(part) for part in parts if part) or text
    return _clip(Redactor().redact_text(text))


def _clip(text: str) -> str:
    return text if len(text) <= _ERROR_SNIPPET else text[: _ERROR_SNIPPET - 3] + "..."
