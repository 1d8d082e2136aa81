"""Decoding untrusted payloads (core.payloads), canonical JSON's refusals, and the HTTP layer's hostile answers."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import msgspec
import pytest

from soc2_evidence.collectors.support.http import HttpClient, RetryPolicy
from soc2_evidence.core import payloads
from soc2_evidence.core.errors import EncodingError, PayloadError, TransientCollectorError, is_permanent
from soc2_evidence.core.evidence import canonical_json

NOW = datetime(2026, 11, 2, 3, 0, tzinfo=UTC)


class Total(msgspec.Struct):
    total: payloads.Count
    seconds: payloads.Seconds | None = None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b'{"total": "3"}', "where: total: expected int, got str", id="number-as-text"),
        pytest.param(
            b'{"total": 1' + b"0" * 400 + b"}", "where: total: expected int <= 9007199254740992", id="400-digits"
        ),
        pytest.param(
            b'{"total": 1, "seconds": 1e20}', "where: seconds: expected float <= 316224000.0", id="1e20-seconds"
        ),
        pytest.param(b'{"total": 1, "seconds": 1e400}', "where: seconds: number out of range", id="1e400"),
        pytest.param(b'{"total": NaN}', "where: not JSON: JSON is malformed: invalid character (byte 10)", id="nan"),
        pytest.param(
            b'{"total": Infinity}', "where: not JSON: JSON is malformed: invalid character (byte 10)", id="inf"
        ),
        pytest.param(b"{}", "where: missing required field 'total'", id="missing"),
        pytest.param(
            b'{"total": 1, "ignored": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
            "where: JSON nested too deeply to read (over about 1,000 levels)",
            id="10000-deep-in-an-ignored-field",
        ),
    ],
)
def test_a_payload_that_does_not_fit_is_a_permanent_payload_error_naming_the_field(data, message):
    with pytest.raises(PayloadError) as raised:
        payloads.decode_json(data, Total, where="where")
    assert str(raised.value).startswith(message) and is_permanent(raised.value)


def test_a_payload_of_any_shape_is_still_bounded_in_depth_and_utf_8():
    assert payloads.decode_json(b'{"a": [1, "x"]}', where="w") == {"a": [1, "x"]}
    with pytest.raises(PayloadError, match=r"^w: JSON nested too deeply"):
        payloads.decode_json(b"[" * 10_000 + b"]" * 10_000, where="w")
    with pytest.raises(PayloadError, match=r"^w: not JSON: 'utf-8' codec can't decode byte 0xff"):
        payloads.decode_json(b'{"a": "\xff"}', where="w")


@pytest.mark.parametrize(
    "moment",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),  # valid, but before the first UTC time
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-1))),  # after the last
        datetime(1969, 12, 31, 23, 59, tzinfo=UTC),
        datetime(3000, 1, 1, tzinfo=UTC),
    ],
    ids=["year-1-plus-one-hour", "year-9999-minus-one-hour", "before-1970", "after-2999"],
)
def test_times_outside_the_bounds_are_refused_not_overflowed(moment):
    with pytest.raises(PayloadError, match=r"^at: .* is outside 1970-2999$"):
        payloads.utc(moment, where="at")


def test_a_naive_time_is_utc_and_an_offset_is_moved_to_utc():
    assert payloads.utc(datetime(2026, 11, 2, 3), where="at") == NOW
    assert payloads.utc(datetime(2026, 11, 2, 4, tzinfo=timezone(timedelta(hours=1))), where="at") == NOW


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param({"rto": float("nan")}, "Out of range float values are not JSON compliant", id="nan"),
        pytest.param([float("inf")], "Out of range float values are not JSON compliant", id="infinity"),
        pytest.param({"at": datetime(2026, 11, 2)}, "naive datetime", id="naive-time"),
    ],
)
def test_canonical_json_refuses_what_json_cannot_hold_with_a_permanent_error(value, message):
    with pytest.raises(EncodingError, match=f"^not JSON evidence: {message}") as raised:
        canonical_json(value)
    assert is_permanent(raised.value) and isinstance(raised.value, ValueError)


@pytest.mark.parametrize("plain", [True, False], ids=["msgspec-path", "json-path"])
def test_canonical_json_refuses_deep_nesting_instead_of_recursing_out(plain):
    value: object = [] if plain else [1.5]
    for _ in range(10_000):
        value = [value]
    with pytest.raises(EncodingError, match=r"^not JSON evidence: nested deeper than about 1,000 levels$"):
        canonical_json(value)


# --- the HTTP layer against a loopback server that answers as scripted ------------------------------


@pytest.fixture
def server():
    """A loopback HTTP server answering each request with the next scripted (status, headers, body)."""
    answers: list[tuple[int, dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            status, headers, body = answers.pop(0) if len(answers) > 1 else answers[0]
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            """Quiet: the test asserts on what the client saw."""

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, answers
    httpd.shutdown()
    httpd.server_close()


def client(httpd, sleeps: list[float]) -> HttpClient:
    return HttpClient(
        "api",
        f"http://127.0.0.1:{httpd.server_address[1]}",
        policy=RetryPolicy(tries=3, max_wait_seconds=300),
        sleep=sleeps.append,
        clock=NOW.timestamp,
    )


def test_a_rate_limit_reset_that_is_not_a_time_is_waited_out_like_a_secondary_limit(server):
    """``x-ratelimit-reset: soon`` used to raise ValueError from float(); now the client waits a minute."""
    httpd, answers = server
    limited = (
        403,
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "soon"},
        b'{"message": "API rate limit exceeded"}',
    )
    answers += [limited, (200, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "soon"}, b"[]")]
    sleeps: list[float] = []
    assert client(httpd, sleeps).get("/x", page="page 1").data == []
    assert sleeps == [60.0]


def test_a_retry_after_of_unicode_digits_is_no_wait_time(server):
    httpd, answers = server
    answers += [(429, {"retry-after": "²"}, b"{}"), (200, {}, b"{}")]
    sleeps: list[float] = []
    client(httpd, sleeps).get("/x", page="page 1")
    assert sleeps == [1.0]  # the backoff, as for a 429 without Retry-After


def test_a_body_nested_10000_deep_is_malformed_json_not_a_recursion_error(server):
    httpd, answers = server
    answers.append((200, {}, b"[" * 10_000 + b"]" * 10_000))
    with pytest.raises(PayloadError, match=r"^source api: GET /x \(page 1\): malformed JSON .*nested over about 1,000"):
        client(httpd, []).get("/x", page="page 1")


def test_an_error_body_of_unexpected_shape_still_gives_a_one_line_error(server):
    httpd, answers = server
    answers.append((503, {}, json.dumps({"errorMessages": 7, "message": "down"}).encode()))
    with pytest.raises(TransientCollectorError, match=r"^source api: GET /x \(page 1\): HTTP 503: down; 7; gave up"):
        client(httpd, []).get("/x", page="page 1")
