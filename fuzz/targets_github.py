"""The GitHub collector under fuzz: malformed and plausible mutations of real GitHub response shapes.

A case is a whole "GitHub": every response the collector can ask for (the search count, two pages
of closed pull requests, each pull request, its reviews, timeline, check runs, status and
deployments, and the branch protection), built in the documented shapes, then mutated: a value at
some JSON path replaced by a hostile one (``head: "main"``, ``updated_at: "yesterday"``,
``0001-01-01T00:00:00+01:00``, a 400-digit integer, NaN, a 10,000-deep array...), a field
deleted, a body replaced by random JSON or by bytes that are not JSON, an HTTP status, or a
header (``Link``, ``x-ratelimit-reset``, ``retry-after``) changed.

The responses are injected where the collector's HTTP client meets the network: its urllib3
``PoolManager`` is replaced for the case by one answering from the case's "GitHub", so the real
``collect()`` runs whole (status judgement, retries on an injected sleep, JSON decoding, Link
pagination, the types) without a socket.
"""

from __future__ import annotations

import io
import json
import logging
import math
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import urllib3
from hypothesis import strategies as st

from fuzz.harness import FuzzTarget
from soc2_evidence.collectors import CollectContext, github, source_config
from soc2_evidence.collectors.support import http
from soc2_evidence.core.credentials import Credentials
from soc2_evidence.core.evidence import RunContext
from soc2_evidence.core.redaction import Redactor
from soc2_evidence.core.staging import Bundle, BundleWriter

API = "https://api.github.test"
REPO = "acme/app"
NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
MERGED = datetime(2026, 11, 20, 12, tzinfo=UTC)
DEEP = "\x00deep\x00"  # a hostile value written as a 10,000-deep array when the body is encoded
OPTIONS = {
    "conn_id": "github",
    "api_url": API,
    "repositories": [REPO],
    "page_size": 2,
    "tries": 2,
    "deployments": True,
    "ticket_pattern": r"\bCHG-[0-9]+\b",
}


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _user(login: str) -> dict[str, Any]:
    return {"login": login, "id": sum(map(ord, login)), "type": "User", "site_admin": False}


def _pull(number: int) -> dict[str, Any]:
    merged = MERGED + timedelta(hours=number)
    return {
        "url": f"{API}/repos/{REPO}/pulls/{number}",
        "id": 1_000_000 + number,
        "node_id": f"PR_{number}",
        "html_url": f"https://github.test/{REPO}/pull/{number}",
        "number": number,
        "state": "closed",
        "locked": False,
        "title": f"CHG-{number} change {number}",
        "body": f"Fixes CHG-{number}.\n\n> quoted CHG-99\n<details><summary>notes</summary>CHG-98</details>",
        "user": _user("alice"),
        "labels": [{"id": 5, "name": "emergency" if number == 3 else "change", "color": "ff0000"}],
        "created_at": _time(merged - timedelta(hours=5)),
        "updated_at": _time(merged + timedelta(minutes=number)),
        "closed_at": _time(merged),
        "merged_at": _time(merged) if number != 2 else None,
        "merge_commit_sha": f"{number + 5000:040x}",
        "head": {"label": f"acme:feature/{number}", "ref": f"feature/{number}", "sha": f"{number:040x}"},
        "base": {"label": "acme:main", "ref": "main", "sha": f"{9999:040x}", "repo": {"full_name": REPO}},
        "draft": False,
    }


def _reviews(number: int) -> list[dict[str, Any]]:
    merged = MERGED + timedelta(hours=number)
    return [
        {"id": number * 100, "user": _user("bob"), "state": "APPROVED", "submitted_at": _time(merged - timedelta(1))},
        {"id": number * 100 + 1, "user": _user("carol"), "state": "COMMENTED", "submitted_at": _time(merged)},
        {"id": number * 100 + 2, "user": _user("dave"), "state": "DISMISSED", "submitted_at": _time(merged)},
    ]


def _timeline(number: int) -> list[dict[str, Any]]:
    merged = MERGED + timedelta(hours=number)
    return [
        {"event": "committed", "node_id": f"C_{number}", "sha": f"{number:040x}", "message": "change"},
        {
            "event": "review_dismissed",
            "id": 9000 + number,
            "node_id": f"RDE_{number}",
            "actor": _user("admin"),
            "created_at": _time(merged + timedelta(hours=1)),
            "dismissed_review": {"state": "approved", "review_id": number * 100 + 2, "dismissal_message": "stale"},
        },
        {"event": "merged", "id": 8000 + number, "node_id": f"ME_{number}", "created_at": _time(merged)},
    ]


def base_world() -> dict[str, tuple[int, dict[str, str], Any]]:
    """Every response of a small repository, by ``path`` or ``path?page=N``: (status, headers, JSON)."""
    pulls = [_pull(number) for number in (4, 3, 2, 1)]
    listing = f"/repos/{REPO}/pulls"
    query = "state=closed&sort=updated&direction=desc&per_page=2"
    world: dict[str, tuple[int, dict[str, str], Any]] = {
        "/search/issues": (200, {}, {"total_count": 3, "incomplete_results": False, "items": []}),
        listing: (200, {"link": f'<{API}{listing}?{query}&page=2>; rel="next"'}, pulls[:2]),
        f"{listing}?page=2": (200, {}, pulls[2:]),
        f"/repos/{REPO}/branches/main/protection/required_status_checks": (
            200,
            {},
            {"strict": True, "contexts": ["ci/build"], "checks": [{"context": "ci/build", "app_id": 15368}]},
        ),
    }
    for pull in pulls:
        number, head = pull["number"], pull["head"]["sha"]
        world[f"{listing}/{number}"] = (200, {}, {**pull, "merged_by": _user("alice")})
        world[f"{listing}/{number}/reviews"] = (200, {}, _reviews(number))
        world[f"/repos/{REPO}/issues/{number}/timeline"] = (200, {}, _timeline(number))
        world[f"/repos/{REPO}/commits/{head}/check-runs"] = (
            200,
            {},
            {
                "total_count": 1,
                "check_runs": [
                    {
                        "id": number * 10,
                        "name": "ci/build",
                        "status": "completed",
                        "conclusion": "success",
                        "started_at": pull["created_at"],
                        "head_sha": head,
                    }
                ],
            },
        )
        world[f"/repos/{REPO}/commits/{head}/status"] = (
            200,
            {},
            {"state": "success", "statuses": [{"context": "ci/lint", "state": "success"}], "total_count": 1},
        )
        world[f"/repos/{REPO}/deployments?sha={pull['merge_commit_sha']}"] = (
            200,
            {},
            [{"id": number, "environment": "production", "created_at": pull["closed_at"], "creator": _user("bot")}],
        )
    return world


# --- mutations -----------------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
MARKDOWN = st.lists(
    st.sampled_from(
        [
            "<details>",
            "</details>",
            "<blockquote>",
            "</BLOCKQUOTE>",
            "<!--",
            "-->",
            "```",
            "~~~",
            "`",
            "> ",
            "\n",
            "    ",
            "- ",
            "<a href='",
            "'>",
            "<",
            ">",
            "CHG-1",
            " CHG-22 ",
            "\t",
            "\x00",
            "\u202e",
        ]
    ),
    max_size=30,
).map("".join)  # a pull request body: the linked-ticket reader's input
HOSTILE = st.one_of(
    MARKDOWN,
    st.sampled_from(
        [
            "main",
            "yesterday",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "2026-11-20T12:00:00",
            "2026-02-30T00:00:00Z",
            "",
            "APPROVED",
            "DISMISSED",
            "review_dismissed",
            "http://[::1",
            "../../etc/passwd",
            10**400,
            -(10**400),
            2**63,
            -1,
            0,
            float("nan"),
            float("inf"),
            1e308,
            None,
            True,
            [],
            {},
            [None],
            {"login": None},
            DEEP,
        ]
    ),
    _json,
)
RAW_BODIES = st.sampled_from(
    [
        b"",
        b"null",
        b"NaN",
        b'[{"number": 1, "updated_at": Infinity}]',
        b"[1e400]",
        b"{",
        b"\xff\xfe",
        b"[" * 10_000 + b"]" * 10_000,
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    ]
) | st.binary(max_size=40)
HEADERS = st.sampled_from(["link", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after"])
HEADER_VALUES = st.sampled_from(
    [
        "soon",
        "0",
        "-5",
        "1e400",
        "99999999999999999999",
        "nan",
        "",
        f'<{API}/repos/{REPO}/pulls?page=7>; rel="next"',
        f'<{API}/repos/{REPO}/pulls?page=99999999999999999999>; rel="next"',
        f'<{API}/repos/{REPO}/pulls?page=1>; rel="next"',
        '<not a url>; rel="next"',
        "<>; rel=next",
    ]
) | st.text(max_size=30)
STATUSES = st.sampled_from([200, 204, 301, 400, 401, 403, 404, 409, 410, 422, 429, 500, 502, 503])


def _paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every JSON path in ``value``, parents before children."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


def _replace(value: Any, path: tuple, new: Any, delete: bool = False) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        copy = dict(value)
        if delete and not rest:
            copy.pop(head, None)
        else:
            copy[head] = _replace(value[head], rest, new, delete)
        return copy
    copy = list(value)
    if delete and not rest:
        del copy[head]
    else:
        copy[head] = _replace(value[head], rest, new, delete)
    return copy


@st.composite
def worlds(draw: Callable) -> dict[str, tuple[int, dict[str, str], bytes]]:
    """A GitHub with one to three mutations, its bodies encoded as the network would carry them."""
    world = base_world()
    raw: dict[str, bytes] = {}
    keys = sorted(world)
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(keys))
        status, headers, body = world[key]
        kind = draw(
            st.sampled_from(["replace", "replace", "replace", "delete", "body", "raw", "status", "header", "limit"])
        )
        paths = list(_paths(body))
        path = paths[draw(st.integers(0, len(paths) - 1))]
        if kind == "replace":
            body = _replace(body, path, draw(HOSTILE))
        elif kind == "delete" and path:
            body = _replace(body, path, None, delete=True)
        elif kind == "body":
            body = draw(_json)
        elif kind == "raw":
            raw[key] = draw(RAW_BODIES)
        elif kind == "status":
            status = draw(STATUSES)
        elif kind == "header":
            headers = {**headers, draw(HEADERS): draw(HEADER_VALUES)}
        elif kind == "limit":  # a refusal with rate-limit headers, plausible or not
            status = draw(st.sampled_from([403, 429]))
            spent = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": draw(HEADER_VALUES)}
            headers = {**headers, **draw(st.sampled_from([spent, {"retry-after": draw(HEADER_VALUES)}]))}
        world[key] = (status, headers, body)
    deep = "[" * 10_000 + "]" * 10_000
    return {
        key: (status, headers, raw[key] if key in raw else json.dumps(body).replace(json.dumps(DEEP), deep).encode())
        for key, (status, headers, body) in world.items()
    }


# --- running a case through the real collect() ---------------------------------------------------


class _Pool:
    """Stands in for urllib3's ``PoolManager``: answers each request from the case's GitHub."""

    world: ClassVar[dict[str, tuple[int, dict[str, str], bytes]]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def request(self, method: str, url: str, **kwargs: Any) -> urllib3.HTTPResponse:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        key = parts.path
        if "page" in query and query["page"] != ["1"]:
            key += f"?page={query['page'][0]}"
        elif "sha" in query:
            key += f"?sha={query['sha'][0]}"
        status, headers, body = self.world.get(key, (404, {}, b'{"message": "Not Found"}'))
        # read from a stream, as from a socket: an empty body is b"", not None
        return urllib3.HTTPResponse(body=io.BytesIO(body), headers=headers, status=status, preload_content=True)

    def clear(self) -> None:
        pass


def _sleep(seconds: float) -> None:
    """Refuses what ``time.sleep`` refuses (NaN, infinity, a negative time), without waiting."""
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"sleep length must be a non-negative number, not {seconds}")
    if math.isinf(seconds):
        raise OverflowError("sleep length is too large")


_STAGING = Path(tempfile.mkdtemp(prefix="fuzz-github-"))
_RUN = RunContext("evidence_tickets", "scheduled__fuzz", NOW)
_SOURCE = source_config("github-fuzz", "github", OPTIONS)
_CONTEXT = CollectContext(
    resolve_path=Path,
    credentials=Credentials(lambda conn_id: SimpleNamespace(password="ghp_fuzz")),  # noqa: S106 - the fake token
    sleep=_sleep,
    now=lambda: NOW,
)


def run(world: dict[str, tuple[int, dict[str, str], bytes]]) -> Bundle:
    """Collect from ``world`` through the real collector and its HTTP client, with urllib3 answered locally."""
    writer = BundleWriter(
        _STAGING,
        family="tickets",
        source="github-fuzz",
        kind="github",
        run=_RUN,
        try_number=1,
        collector="github",
        collector_version=github.VERSION,
        redactor=Redactor(b"fuzz-key"),
        now=lambda: NOW,
    )
    original, urllib3.PoolManager = urllib3.PoolManager, _Pool
    _Pool.world = world
    retry_log = logging.getLogger(http.__name__)
    level = retry_log.level
    retry_log.setLevel(logging.ERROR)  # thousands of "retry 1 of 1" warnings would bury the table
    try:
        github.collect(_SOURCE, writer, _CONTEXT)
        return writer.finish()
    finally:
        urllib3.PoolManager = original
        retry_log.setLevel(level)


TARGETS = [FuzzTarget("GitHub", worlds(), run)]
