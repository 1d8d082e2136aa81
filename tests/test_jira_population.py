"""A Jira full population holds every change done in its period, whatever the resolution field says.

A change is done at its first transition into an implemented status. On a real site 13 of 17 done
changes had no ``resolutiondate``, and selecting by ``resolved`` archived 4 of them. The fake Jira
here applies JQL date clauses as Jira does, in the API user's time zone, so a query written in UTC
or by resolution would miss changes near the period's edges or with no resolution.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fake_apis import Connection, FakeJira, items, jira_issue, jira_user, run_collector

OCTOBER = {"full_population": True, "period_start": "2026-10-01", "period_end": "2026-11-01"}
CHANGES = {"jql": "project = CHG", "fields": {"change_type": "customfield_10102"}, "implemented_statuses": ["Done"]}
STAMP = "%Y-%m-%dT%H:%M:%S.000+0000"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def change(number: int, done: list[str], *, updated: str | None = None, resolved: bool = False) -> dict:
    """A change approved an hour before its first ``done`` time, moved to Done at each of ``done``."""
    issue = jira_issue(number)
    first = at(done[0]) if done else at("2026-10-15T12:00")
    histories = [("bob", "Open", "Approved", first - timedelta(hours=1))]
    histories += [
        ("alice", "Reopened" if index else "Approved", "Done", at(moment)) for index, moment in enumerate(done)
    ]
    issue["_histories"] = [
        {
            "id": f"{number}-{index}",
            "author": jira_user(who),
            "created": moment.strftime(STAMP),
            "items": [{"field": "status", "fieldtype": "jira", "fromString": before, "toString": after}],
        }
        for index, (who, before, after, moment) in enumerate(histories)
    ]
    last = max(moment for *_, moment in histories)
    issue["fields"]["created"] = (first - timedelta(days=1)).strftime(STAMP)
    issue["fields"]["updated"] = (at(updated) if updated else last).strftime(STAMP)
    issue["fields"]["status"] = {"name": "Done" if done else "Approved"}
    issue["fields"]["resolutiondate"] = at(done[-1]).strftime(STAMP) if resolved and done else None
    return issue


# 17 changes done in October (UTC), 13 of them without a resolution date, some at its very edges.
DONE_IN_OCTOBER = [
    change(1, ["2026-10-01T00:05"]),
    change(2, ["2026-10-31T23:55"]),
    change(3, ["2026-10-02T06:30"], resolved=True),
    change(4, ["2026-10-10T12:00"], updated="2026-11-20T09:00"),  # commented on after the period
    change(5, ["2026-10-31T16:30"]),  # 09:30 on Oct 31 in Los Angeles; Nov 1 in Auckland
    *(change(number, [f"2026-10-{number:02d}T09:00"], resolved=number % 4 == 0) for number in range(6, 18)),
]
NOT_IN_OCTOBER = [
    change(20, ["2026-09-30T23:55"]),  # just before
    change(21, ["2026-11-01T00:05"]),  # just after
    change(22, ["2026-09-12T10:00", "2026-10-20T10:00"], resolved=True),  # first done in September, again in October
    change(23, [], updated="2026-10-20T10:00"),  # approved, never done
    change(24, ["2026-08-03T10:00"], resolved=True),  # done long before: not even a candidate
]


@pytest.mark.parametrize("deployment", ["cloud", "datacenter"])
@pytest.mark.parametrize("zone", ["America/Los_Angeles", "Pacific/Auckland"])
def test_a_full_period_holds_every_change_done_in_it_whatever_its_resolution(tmp_path, deployment, zone):
    issues = sorted(DONE_IN_OCTOBER + NOT_IN_OCTOBER, key=lambda issue: int(issue["key"].split("-")[1]))
    with FakeJira(issues, deployment=deployment, time_zone=zone) as jira:
        by_resolution = jira.matching('resolved >= "2026-10-01 00:00" AND resolved < "2026-11-01 00:00"')
        connections = {"jira": _connection(deployment)}
        options = {"conn_id": "jira", "url": jira.url, "deployment": deployment, "page_size": 5}
        bundle = run_collector(
            "jira", {**options, "populations": {"changes": CHANGES}}, tmp_path, connections=connections, params=OCTOBER
        )

    assert len([issue for issue in by_resolution if issue in DONE_IN_OCTOBER]) == 4  # the measured 4 of 17
    changes = items(bundle, "changes.jsonl")
    assert [row["id"] for row in changes] == [issue["key"] for issue in DONE_IN_OCTOBER]
    assert all(
        at("2026-10-01T00:00") <= datetime.fromisoformat(row["merged_at"]) < at("2026-11-01T00:00") for row in changes
    )
    assert bundle.reported_totals["changes"] == 17

    since = (at("2026-09-30T23:00")).astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")
    card = items(bundle, "query-changes.json")
    endpoint = "GET /rest/api/3/search/jql" if deployment == "cloud" else "GET /rest/api/2/search"
    assert card == {
        "population": "changes",
        "endpoint": endpoint,
        "query": f'(project = CHG) AND updated >= "{since}" ORDER BY key ASC',
        "parameters": {
            "maxResults": 5,
            "fields": "summary,status,issuetype,reporter,creator,assignee,priority,created,updated,resolutiondate,"
            "issuelinks,customfield_10102",
            "expand": "changelog",
        },
        "pages_read": 5,  # 21 candidates in pages of 5
        "reported_total": 21,
        "rows_archived": 17,
        "notes": [
            f"JQL dates are in the API user's time zone {zone}, widened by 1:00:00; kept: done (first transition "
            "into Done) in [2026-10-01T00:00:00Z, 2026-11-01T00:00:00Z) UTC",
            "4 candidates read were outside that window and not archived: CHG-20, CHG-21, CHG-22, CHG-23",
        ],
    }


def test_a_nightly_window_is_written_in_the_users_zone_and_cut_exactly_in_utc(tmp_path):
    watermark = b'{"mode": "incremental", "start": "x", "end": "2026-11-24T02:50:00Z"}'
    # The window is [01:50 Nov 24, 02:50 Nov 25) UTC; the JQL reads an hour more on each side.
    before = change(1, ["2026-11-24T01:20"])
    inside = change(2, ["2026-11-24T01:55"])
    after = change(3, ["2026-11-25T02:55"])
    with FakeJira([before, inside, after], time_zone="Asia/Kolkata") as jira:
        options = {"conn_id": "jira", "url": jira.url, "deployment": "cloud"}
        bundle = run_collector(
            "jira",
            {**options, "populations": {"changes": CHANGES}},
            tmp_path,
            connections={"jira": _connection("cloud")},
            watermark=watermark,
        )
    assert [row["id"] for row in items(bundle, "changes.jsonl")] == ["CHG-2"]
    card = items(bundle, "query-changes.json")
    # 00:50 and 03:50 UTC are 06:20 and 09:20 in Kolkata (+05:30).
    assert card["query"] == (
        '(project = CHG) AND updated >= "2026-11-24 06:20" AND updated < "2026-11-25 09:20" ORDER BY key ASC'
    )
    assert card["reported_total"] == 3 and card["rows_archived"] == 1
    assert card["notes"][1] == "2 candidates read were outside that window and not archived: CHG-1, CHG-3"
    assert bundle.reported_totals["changes"] == 1


def _connection(deployment: str) -> Connection:
    return (
        Connection(login="bot@example.com", password="t0ken") if deployment == "cloud" else Connection(password="t0ken")
    )
