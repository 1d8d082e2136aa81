"""Fuzz the Jira collector, Cloud (v3) and Data Center (v2), through its real ``collect()``.

Each case is a real Jira conversation (``/myself``, the count, two search pages and a changelog
read, shaped like ``tests/fake_apis.py``'s Jira) with one to three mutations: a value replaced by a
wrong type, a 400-digit integer, NaN or Infinity, an odd date, a missing key, a string where a
list was, a random JSON tree; or a whole body replaced by 10,000-deep nesting, truncated JSON or
bytes that are not UTF-8. The answers are served in-process, at the urllib3 pool the collector's
``HttpClient`` talks to, so every byte goes through the client's own decoding, retries and the
collector's parsing, without a socket round trip per case.
"""

from __future__ import annotations

import copy
import json
import logging
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import urllib3
from hypothesis import strategies as st

from fuzz.harness import FuzzTarget
from soc2_evidence.collectors import CollectContext, jira, source_config
from soc2_evidence.core.credentials import Credentials
from soc2_evidence.core.evidence import RunContext
from soc2_evidence.core.redaction import Redactor
from soc2_evidence.core.staging import BundleWriter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_apis import Connection, jira_issue  # the test fakes' issue shape: one source of truth

NOW = datetime(2026, 11, 25, 3, tzinfo=UTC)
URL = "https://jira.fuzz.test"
PAGE_SIZE = 2
EMBEDDED = 2
ODD_DATES = (
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59.999-01:00",
    "2026-02-30T10:00:00.000+0000",
    "yesterday",
    "2026-11-20",
    "1969-12-31T23:59:59.000+0000",
    "",
)
KNOWN_KEYS = (
    "issues", "key", "fields", "changelog", "histories", "total", "startAt", "isLast", "nextPageToken", "values",
    "items", "created", "updated", "author", "toString", "fromString", "field", "status", "name", "timeZone", "count",
)  # fmt: skip


def _conversation(deployment: str) -> dict[str, Any]:
    """The answers of one run: the API user, the count (Cloud), two search pages and a changelog."""
    issues = [jira_issue(1, extra_histories=3), jira_issue(2), jira_issue(3)]
    issues[0]["fields"]["customfield_10102"] = [{"value": "Emergency"}, "Normal"]

    def shown(issue: dict) -> dict:
        histories = issue["_histories"]
        body = {key: value for key, value in issue.items() if key != "_histories"}
        body["changelog"] = {"startAt": 0, "maxResults": EMBEDDED, "total": len(histories), "histories": histories[:2]}
        return body

    whole = issues[0]["_histories"]
    if deployment == "cloud":
        pages = [
            {"issues": [shown(issue) for issue in issues[:2]], "isLast": False, "nextPageToken": "b2Zmc2V0OjI="},
            {"issues": [shown(issues[2])], "isLast": True},
        ]
        changelog = {"startAt": 0, "maxResults": 100, "total": len(whole), "isLast": True, "values": whole}
    else:
        pages = [
            {"startAt": start, "maxResults": PAGE_SIZE, "total": 3, "issues": [shown(i) for i in issues[start:][:2]]}
            for start in (0, 2)
        ]
        changelog = {**shown(issues[0]), "changelog": {"startAt": 0, "total": len(whole), "histories": whole}}
    return {
        "myself": {"accountId": "acc-bot", "timeZone": "Europe/Berlin"},
        "count": {"count": 3},
        "page1": pages[0],
        "page2": pages[1],
        "changelog": changelog,
    }


CONVERSATIONS = {deployment: _conversation(deployment) for deployment in ("cloud", "datacenter")}
ROUTES = tuple(CONVERSATIONS["cloud"])

# --- mutations ----------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**399, max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(ODD_DATES)
)
json_trees = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
raw_bodies = st.sampled_from(
    [
        b"[" * 10_000 + b"]" * 10_000,
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
        b'{"issues": [',
        b"\xff\xfe\x00not json",
        b"",
        b"NaN",
        b'{"total": 1e400}',
        b'{"startAt": ' + b"9" * 400 + b"}",
    ]
)
mutations = st.tuples(
    st.sampled_from(ROUTES),
    st.integers(min_value=0, max_value=10_000),  # which node of the body (modulo its node count)
    st.sampled_from(["replace", "delete", "stringify", "wrap", "date", "raw"]),
    json_trees,
    raw_bodies,
)
cases = st.lists(mutations, min_size=1, max_size=3)


def _nodes(value: Any, path: tuple = ()) -> list[tuple]:
    """Every path into a JSON value, in a fixed order: the places a mutation can land."""
    found = [path]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _nodes(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _nodes(child, (*path, index))
    return found


def _mutate(bodies: dict[str, Any], mutation: tuple) -> None:
    route, which, kind, tree, raw = mutation
    if kind == "raw":
        bodies[route] = raw
        return
    body = bodies[route]
    if isinstance(body, bytes):
        return
    paths = _nodes(body)[1:]
    if not paths:
        bodies[route] = tree
        return
    *parents, last = paths[which % len(paths)]
    parent = body
    for step in parents:
        parent = parent[step]
    if kind == "delete":
        if isinstance(parent, dict):
            del parent[last]
        else:
            parent.pop(last)
        return
    old = parent[last]
    parent[last] = {
        "replace": lambda: tree,
        "stringify": lambda: json.dumps(old, allow_nan=True),
        "wrap": lambda: [old],
        "date": lambda: ODD_DATES[which % len(ODD_DATES)],
    }[kind]()


# --- serving at the HTTP client's pool -----------------------------------------------------------


class _Answer:
    def __init__(self, body: Any) -> None:
        self.status = 200
        self.headers = {"content-type": "application/json"}
        self.data = body if isinstance(body, bytes) else json.dumps(body, allow_nan=True).encode()


class ConversationPool:
    """Stands in for ``urllib3.PoolManager``: answers each request from the case's conversation."""

    def __init__(self, bodies: dict[str, Any]) -> None:
        self.bodies = bodies

    def request(self, method: str, url: str, **_: Any) -> _Answer:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        path = parts.path
        if path.endswith("/myself"):
            return _Answer(self.bodies["myself"])
        if path.endswith("/approximate-count"):
            return _Answer(self.bodies["count"])
        if path.endswith(("/search", "/search/jql")):
            later = "nextPageToken" in query or query.get("startAt", ["0"]) != ["0"]
            return _Answer(self.bodies["page2" if later else "page1"])
        return _Answer(self.bodies["changelog"])

    def clear(self) -> None:
        pass


def _runner(deployment: str):
    options = {
        "conn_id": "jira",
        "url": URL,
        "deployment": deployment,
        "page_size": PAGE_SIZE,
        "tries": 2,
        "populations": {
            "changes": {
                "jql": "project = CHG",
                "fields": {"environment": "customfield_10101", "change_type": "customfield_10102"},
                "emergency_values": ["Emergency"],
            }
        },
    }
    source = source_config("jira-fuzz", "jira", options)
    connection = Connection(login="bot@example.com", password="t0ken")  # noqa: S106 - the fake conversation's own
    context = CollectContext(
        resolve_path=Path, credentials=Credentials(lambda _: connection), sleep=lambda _: None, now=lambda: NOW
    )
    run = RunContext("evidence_tickets", "fuzz", NOW)

    def run_case(case: list[tuple]) -> None:
        bodies = copy.deepcopy(CONVERSATIONS[deployment])
        for mutation in case:
            _mutate(bodies, mutation)
        with tempfile.TemporaryDirectory(prefix="fuzz-jira-") as staging:
            writer = BundleWriter(
                Path(staging),
                family="tickets",
                source="jira-fuzz",
                kind="jira",
                run=run,
                try_number=1,
                collector=jira.__name__,
                collector_version=jira.VERSION,
                redactor=Redactor(b"fuzz-key"),
                now=lambda: NOW,
            )
            logging.disable(logging.WARNING)  # the client's retry warnings, thousands of them
            try:
                with mock.patch.object(urllib3, "PoolManager", lambda **_: ConversationPool(bodies)):
                    jira.collect(source, writer, context)
            finally:
                logging.disable(logging.NOTSET)
            writer.finish()

    return run_case


TARGETS = [
    FuzzTarget("Jira v3", cases, _runner("cloud")),
    FuzzTarget("Jira v2", cases, _runner("datacenter")),
]
