"""The Jira collector against a local Jira (Cloud enhanced search and Data Center) over real HTTP.

Pagination, changelog completion, field mapping and every failure mode a nightly run meets:
each failure names the source and the page, and no bundle is finished.
"""

from __future__ import annotations

import base64
import json
import re

import pytest
from fake_apis import NOW, Connection, FakeJira, Reply, cloud_token, items, jira_issue, run_collector

from soc2_evidence.core.errors import CollectorError, ConfigError, PayloadError, TransientCollectorError, is_transient

CHANGES = {
    "jql": "project = CHG",
    "fields": {"environment": "customfield_10101", "change_type": "customfield_10102"},
    "approved_statuses": ["Approved"],
    "implemented_statuses": ["Done"],
}


def options(api: FakeJira, **overrides) -> dict:
    return {
        "conn_id": "jira",
        "url": api.url,
        "deployment": api.deployment,
        "page_size": 10,
        "timeout_seconds": 0.25,
        "tries": 3,
        "populations": {"changes": CHANGES},
        **overrides,
    }


def connection(api: FakeJira) -> dict[str, Connection]:
    if api.deployment == "cloud":
        return {"jira": Connection(login="bot@example.com", password="t0ken")}
    return {"jira": Connection(password="t0ken")}


def collect(api: FakeJira, tmp_path, sleeps=None, **overrides):
    return run_collector(
        "jira", options(api, **overrides), tmp_path / "staging", connections=connection(api), sleeps=sleeps
    )


@pytest.fixture(params=["cloud", "datacenter"])
def jira(request):
    issues = [jira_issue(n, extra_histories=4 if n % 7 == 0 else 0) for n in range(1, 26)]
    issues[3] = jira_issue(4, author="carol", approver="carol")  # self-approved
    with FakeJira(issues, deployment=request.param) as api:
        yield api


def test_collects_every_page_with_whole_changelogs(jira, tmp_path):
    bundle = collect(jira, tmp_path)

    changes = items(bundle, "changes.jsonl")
    assert [change["id"] for change in changes] == [f"CHG-{n}" for n in range(1, 26)]
    assert bundle.reported_totals == {"changes": 25, "access_reviews": 0, "incidents": 0}
    long_history = next(change for change in changes if change["id"] == "CHG-7")
    assert [move["to"] for move in long_history["transitions"]] == ["Approved", "Done"]  # beyond the embedded 2
    first = changes[0]
    assert first["author"] == "Alice <acc-alice>"
    assert first["approvers"] == [
        {"approver": "Bob <acc-bob>", "approved_at": "2026-11-20T09:01:00Z", "via": "status:Approved"}
    ]
    assert first["merged_at"] == "2026-11-20T10:01:00Z" and first["merged_by"] == "Alice <acc-alice>"
    assert first["approved_before_merge"] is True and first["has_ticket"] is True
    assert first["environment"] == "production" and first["emergency"] is False
    assert first["change_type"] == "Normal" and first["issue_type"] == "Change"
    assert first["assignee"] == "Dave <acc-dave>"
    assert first["url"] == f"{jira.url}/browse/CHG-1"
    self_approved = next(change for change in changes if change["id"] == "CHG-4")
    assert self_approved["approved_before_merge"] is False

    populations = items(bundle, "populations.json")
    [summary] = [p for p in populations["populations"] if p["configured"]]
    assert summary["pages"] == 3 and summary["total"] == 25
    assert summary["jql"] == (  # the window widened by an hour, in the user's zone (UTC here)
        '(project = CHG) AND updated >= "2026-10-25 01:50" AND updated < "2026-11-25 03:50" ORDER BY key ASC'
    )
    assert items(bundle, "watermark.json")["end"] == "2026-11-25T02:50:00Z"

    searches = [r for r in jira.requests if r.path.endswith(("/search", "/search/jql"))]
    assert all(r.query["expand"] == "changelog" for r in searches)
    assert "customfield_10102" in searches[0].query["fields"].split(",")
    changelog_reads = [r for r in jira.requests if "/issue/" in r.path]
    assert {r.path.split("/")[5] for r in changelog_reads} == {"CHG-7", "CHG-14", "CHG-21"}


def test_cloud_uses_basic_auth_and_datacenter_a_bearer_token(jira, tmp_path):
    collect(jira, tmp_path)
    sent = jira.requests[0].headers["authorization"]
    if jira.deployment == "cloud":
        assert base64.b64decode(sent.split()[1]) == b"bot@example.com:t0ken"
    else:
        assert sent == "Bearer t0ken"


def test_a_full_population_run_selects_by_period_and_leaves_the_watermark(jira, tmp_path):
    bundle = run_collector(
        "jira",
        options(jira),
        tmp_path / "staging",
        connections=connection(jira),
        params={"full_population": True, "period_start": "2026-10-01", "period_end": "2026-11-01"},
    )
    names = {staged.item.name for staged in bundle.items}
    assert "watermark.json" not in names
    assert items(bundle, "window.json") == {
        "mode": "full",
        "start": "2026-10-01T00:00:00Z",
        "end": "2026-11-01T00:00:00Z",
        "reason": "requested",
    }
    jql = items(bundle, "populations.json")["populations"][0]["jql"]
    # Changes done in October: every issue updated since October began (an hour's margin), then done in it.
    assert jql == '(project = CHG) AND updated >= "2026-09-30 23:00" ORDER BY key ASC'
    assert items(bundle, "changes.jsonl") == [] and bundle.reported_totals["changes"] == 0


def test_the_next_night_starts_at_the_committed_watermark(jira, tmp_path):
    watermark = json.dumps({"mode": "incremental", "start": "x", "end": "2026-11-24T02:50:00Z"}).encode()
    bundle = run_collector(
        "jira", options(jira), tmp_path / "staging", connections=connection(jira), watermark=watermark
    )
    window = items(bundle, "window.json")
    assert window["start"] == "2026-11-24T01:50:00Z"  # an hour's overlap
    assert window["end"] == "2026-11-25T02:50:00Z"


@pytest.mark.parametrize(
    ("fault", "times"),
    [
        pytest.param(Reply(429, {"errorMessages": ["Rate limit exceeded"]}, headers={"Retry-After": "7"}), 2, id="429"),
        pytest.param(Reply(500, {"errorMessages": ["Internal server error"]}), 2, id="500"),
        pytest.param(Reply(503, raw=b"<html>Service Unavailable</html>"), 1, id="503-html"),
        pytest.param(Reply(json={"issues": []}, delay=0.6), 1, id="timeout"),
        pytest.param(Reply(json={"issues": [jira_issue(99)] * 3}, truncate=True), 2, id="truncated"),
        pytest.param(Reply(raw=b'{"issues": [{"key": '), 1, id="malformed-json"),
    ],
)
def test_transient_errors_recover_within_the_retry_budget(jira, tmp_path, fault, times):
    jira.fault(lambda r: r.path.endswith(("/search", "/search/jql")) and _page(r) == 2, fault, times)
    sleeps: list[float] = []
    bundle = collect(jira, tmp_path, sleeps=sleeps)
    assert len(items(bundle, "changes.jsonl")) == 25
    assert len(sleeps) == times
    if fault.status == 429:
        assert sleeps == [7.0, 7.0]  # Retry-After, not the backoff
    else:
        assert sleeps == [1.0, 2.0][:times]  # exponential backoff


def _page(request) -> int:
    """Which search page a request asks for (1-based), for either deployment."""
    if "startAt" in request.query:
        return int(request.query["startAt"]) // 10 + 1
    token = request.query.get("nextPageToken")
    return int(base64.urlsafe_b64decode(token).decode().split(":")[1]) // 10 + 1 if token else 1


@pytest.mark.parametrize(
    ("fault", "message", "error_class"),
    [
        pytest.param(
            Reply(500, {"errorMessages": ["boom"]}),
            r"HTTP 500: boom; gave up after 3 tries",
            TransientCollectorError,
            id="500s",
        ),
        pytest.param(
            Reply(json={}, delay=0.6), r"timed out; gave up after 3 tries", TransientCollectorError, id="timeouts"
        ),
        pytest.param(
            Reply(json={"issues": []}, truncate=True),
            r"cut short.*gave up after 3 tries",
            TransientCollectorError,
            id="truncated",
        ),
        pytest.param(
            Reply(raw=b"{not json"), r"malformed JSON.*gave up after 3 tries", PayloadError, id="malformed-json"
        ),
        pytest.param(
            Reply(json={"values": []}), r"object missing required field `issues`$", PayloadError, id="missing-field"
        ),
        pytest.param(
            Reply(json={"issues": [{"key": "CHG-2"}], "startAt": 10, "total": 25, "isLast": False}),
            r"issue CHG-2: object missing required field `fields`$",
            PayloadError,
            id="missing-fields",
        ),
        pytest.param(
            Reply(429, {"errorMessages": ["Rate limit"]}, headers={"Retry-After": "3600"}),
            r"rate limited \(HTTP 429\) for 3600 s, longer than the 900 s this task waits",
            TransientCollectorError,
            id="rate-limit-too-long",
        ),
        pytest.param(
            Reply(403, {"errorMessages": ["no permission"]}), r"HTTP 403: no permission", CollectorError, id="forbidden"
        ),
    ],
)
def test_persistent_errors_name_the_source_and_page_and_finish_nothing(jira, tmp_path, fault, message, error_class):
    jira.fault(lambda r: r.path.endswith(("/search", "/search/jql")) and _page(r) == 2, fault, times=-1)
    where = r"(GET /rest/api/\d/search[^ ]* \(changes search page 2\)|changes search page 2 \([^)]+\))"
    with pytest.raises(CollectorError, match=rf"^source tickets-src: {where}: .*{message}") as caught:
        collect(jira, tmp_path)
    assert type(caught.value) is error_class
    assert is_transient(caught.value) is (error_class is TransientCollectorError)


def test_a_404_fails_at_once_as_permanent(jira, tmp_path):
    """A wrong URL or a deleted project never fixes itself: no retry here, and none by the task."""
    jira.fault(
        lambda r: r.path.endswith(("/search", "/search/jql")), Reply(404, {"errorMessages": ["No such project"]})
    )
    sleeps: list[float] = []
    pattern = (
        r"^source tickets-src: GET /rest/api/\d/search(/jql)? \(changes search page 1\): HTTP 404: No such project$"
    )
    with pytest.raises(CollectorError, match=pattern) as caught:
        collect(jira, tmp_path, sleeps=sleeps)
    assert not is_transient(caught.value)
    assert sleeps == []
    assert len([r for r in jira.requests if r.path.endswith(("/search", "/search/jql"))]) == 1


def test_a_408_is_retried_like_a_5xx(jira, tmp_path):
    jira.fault(lambda r: r.path.endswith(("/search", "/search/jql")), Reply(408, {"errorMessages": ["timeout"]}))
    sleeps: list[float] = []
    assert len(items(collect(jira, tmp_path, sleeps=sleeps), "changes.jsonl")) == 25
    assert sleeps == [1.0]


def test_an_expired_token_says_which_connection_to_renew(jira, tmp_path):
    stale = {
        "jira": Connection(login="bot@example.com", password="s3cr3t-old"),
    }
    with pytest.raises(
        CollectorError, match=r"HTTP 401 Unauthorized: the credential is invalid or expired; renew"
    ) as caught:
        run_collector("jira", options(jira), tmp_path / "staging", connections=stale)
    assert "in connection 'jira'" in str(caught.value)
    assert "s3cr3t-old" not in str(caught.value)
    assert len(jira.requests) == 1  # a 401 is not retried


def test_a_repeated_page_is_refused(jira, tmp_path):
    first_page = [jira._issue(issue, 2) for issue in jira.issues[:10]]
    body = {"issues": first_page, "isLast": False, "nextPageToken": cloud_token(20), "startAt": 10, "total": 25}
    jira.fault(lambda r: r.path.endswith(("/search", "/search/jql")) and _page(r) == 2, Reply(json=body))
    with pytest.raises(
        CollectorError, match=r"changes search page 2 repeats an earlier page \(10 items from 'CHG-1'\)"
    ):
        collect(jira, tmp_path)


def test_a_pagination_loop_is_refused(tmp_path):
    with FakeJira([jira_issue(n) for n in range(1, 26)]) as jira:
        loop = {
            "issues": [jira._issue(issue, 2) for issue in jira.issues[10:20]],
            "isLast": False,
            "nextPageToken": cloud_token(10),
        }
        jira.fault(lambda r: _page(r) == 2 and r.path.endswith("/search/jql"), Reply(json=loop), times=-1)
        with pytest.raises(
            CollectorError,
            match=r"changes search page 3: the API returned a cursor it had already given.*a pagination loop",
        ):
            collect(jira, tmp_path)


def test_cloud_page_without_a_next_token_is_a_gap(tmp_path):
    with FakeJira([jira_issue(n) for n in range(1, 26)]) as jira:
        body = {"issues": [jira._issue(issue, 2) for issue in jira.issues[10:20]], "isLast": False}
        jira.fault(lambda r: _page(r) == 2 and r.path.endswith("/search/jql"), Reply(json=body))
        with pytest.raises(
            CollectorError, match=r"changes search page 2: isLast is false but there is no nextPageToken"
        ):
            collect(jira, tmp_path)


def test_datacenter_page_that_skips_ahead_is_a_gap(tmp_path):
    with FakeJira([jira_issue(n) for n in range(1, 26)], deployment="datacenter") as jira:
        skipped = {"startAt": 20, "maxResults": 10, "total": 25, "issues": jira.page_slice(20, 10)}
        jira.fault(lambda r: r.query.get("startAt") == "10", Reply(json=skipped))
        with pytest.raises(
            CollectorError, match=r"changes search page 2: asked for startAt 10, got 20: a page is missing"
        ):
            collect(jira, tmp_path)


def test_datacenter_total_moving_mid_run_is_refused(tmp_path):
    with FakeJira([jira_issue(n) for n in range(1, 26)], deployment="datacenter") as jira:
        moved = {"startAt": 10, "maxResults": 10, "total": 24, "issues": jira.page_slice(10, 10)}
        jira.fault(lambda r: r.query.get("startAt") == "10", Reply(json=moved))
        with pytest.raises(CollectorError, match=r"the total changed from 25 to 24 while paging"):
            collect(jira, tmp_path)


def test_populations_map_access_reviews_and_incidents(tmp_path):
    review = {
        "key": "SEC-1",
        "fields": {
            "summary": "Q3 review",
            "status": {"name": "Done"},
            "assignee": {"accountId": "acc-frank", "displayName": "Frank"},
            "created": "2026-10-01T09:00:00.000+0000",
            "updated": "2026-11-10T09:00:00.000+0000",
            "resolutiondate": "2026-10-10T09:00:00.000+0000",
            "customfield_1": {"value": "payments-prod"},
            "customfield_2": "2026-07-01",
            "customfield_3": "2026-09-30",
            "customfield_4": "alice: keep\nmallory: revoke\n",
        },
        "_histories": [],
    }
    with FakeJira([review]) as jira:
        bundle = collect(
            jira,
            tmp_path,
            populations={
                "access_reviews": {
                    "jql": "project = SEC",
                    "fields": {
                        "system": "customfield_1",
                        "period_start": "customfield_2",
                        "period_end": "customfield_3",
                        "decisions": "customfield_4",
                    },
                }
            },
        )
    [record] = items(bundle, "access_reviews.jsonl")
    assert record == {
        "id": "SEC-1",
        "source": "jira",
        "url": f"{jira.url}/browse/SEC-1",
        "title": "Q3 review",
        "status": "Done",
        "system": "payments-prod",
        "reviewer": "Frank <acc-frank>",
        "period_start": "2026-07-01",
        "period_end": "2026-09-30",
        "completed_at": "2026-10-10T09:00:00Z",
        "decisions": ["alice: keep", "mallory: revoke"],
    }
    assert items(bundle, "changes.jsonl") == [] and bundle.reported_totals["changes"] == 0
    card = items(bundle, "query-access_reviews.json")
    assert (card["endpoint"], card["pages_read"], card["reported_total"], card["rows_archived"]) == (
        "GET /rest/api/3/search/jql",
        1,
        1,
        1,
    )
    assert card["notes"][0].endswith("kept: updated in [2026-10-25T02:50:00Z, 2026-11-25T02:50:00Z) UTC")
    assert "query-changes.json" not in {staged.item.name for staged in bundle.items}  # not configured: no query


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param(
            {"populations": {}},
            "populations: configure one or more of changes, access_reviews, incidents",
            id="no-populations",
        ),
        pytest.param(
            {"populations": {"changes": {"jql": "a ORDER BY b"}}},
            "populations.changes.jql: the JQL must not have ORDER BY; the collector orders by key",
            id="order-by",
        ),
        pytest.param(
            {"populations": {"changes": {"fields": {}}}},
            "populations.changes: missing required key 'jql' (the JQL filter of the population)",
            id="no-jql",
        ),
        pytest.param(
            {"populations": {"bugs": {"jql": "x"}}},
            "populations.bugs: unknown key 'bugs'; valid keys: changes, access_reviews, incidents",
            id="unknown-population",
        ),
        pytest.param(
            {"populations": {"changes": {"jql": "x", "fields": {"owner": "customfield_1"}}}},
            "populations.changes.fields.owner: unknown key 'owner'; valid keys: approver, environment, change_type",
            id="unknown-role",
        ),
        pytest.param(
            {"populations": {"incidents": {"jql": "x", "fields": {"severty": "priority"}}}},
            "populations.incidents.fields.severty: unknown key 'severty'; did you mean 'severity'?",
            id="misspelt-role",
        ),
        pytest.param(
            {"deployment": "server"},
            "deployment: expected one of cloud, datacenter, got 'server'",
            id="bad-deployment",
        ),
        pytest.param({"tries": 0}, "tries: expected int >= 1, got 0", id="bad-tries"),
        pytest.param({"page_sise": 50}, "page_sise: unknown key 'page_sise'; did you mean 'page_size'?", id="misspelt"),
    ],
)
def test_bad_options_are_refused_before_anything_is_collected(tmp_path, overrides, message):
    with FakeJira([]) as jira, pytest.raises(ConfigError, match="^source tickets-src: .*" + re.escape(message)):
        collect(jira, tmp_path, **overrides)
    assert jira.requests == [], "a source whose options are wrong must not be fetched at all"


def test_emergency_change_reviewed_late_or_not_at_all(tmp_path):
    late = jira_issue(1, approver="bob")
    late["fields"]["customfield_10102"] = {"value": "Emergency"}
    # Implemented first, approved nine days later.
    late["_histories"] = [
        {
            "id": "1",
            "author": {"accountId": "acc-alice"},
            "created": "2026-11-01T10:00:00.000+0000",
            "items": [{"field": "status", "fromString": "Open", "toString": "Done"}],
        },
        {
            "id": "2",
            "author": {"accountId": "acc-bob"},
            "created": "2026-11-10T10:00:00.000+0000",
            "items": [{"field": "status", "fromString": "Done", "toString": "Approved"}],
        },
    ]
    pending = jira_issue(2)
    pending["fields"]["customfield_10102"] = {"value": "emergency"}
    pending["_histories"] = [late["_histories"][0] | {"created": "2026-11-24T10:00:00.000+0000"}]
    with FakeJira([late, pending]) as jira:
        bundle = collect(jira, tmp_path, populations={"changes": {**CHANGES, "emergency_review_days": 5}})
    first, second = items(bundle, "changes.jsonl")
    assert first["emergency"] and first["approved_before_merge"] is False
    assert first["post_merge_review_at"] == "2026-11-10T10:00:00Z"
    assert first["emergency_reviewed_in_time"] is False
    assert second["emergency"] and second["emergency_reviewed_in_time"] is None  # still within its 5 days at NOW
    assert NOW.isoformat() == "2026-11-25T03:00:00+00:00"


def test_a_value_that_cannot_be_read_names_the_issue(tmp_path):
    broken = jira_issue(2)
    broken["fields"]["created"] = "last Tuesday"
    with (
        FakeJira([jira_issue(1), broken]) as jira,
        pytest.raises(
            PayloadError,
            match=r"^source tickets-src: changes search page 1 \(first page\): issue CHG-2: "
            r"unrecognised time 'last Tuesday'$",
        ),
    ):
        collect(jira, tmp_path)
