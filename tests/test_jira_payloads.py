"""Jira responses that do not fit the declared types are refused at once, naming where and what.

Each case is one value the issue's fuzzing found crashing the collector (a JSON type assumed, an
overflowing date, a 400-digit number, a 10,000-deep body). Each must now be a permanent
:class:`PayloadError` (the Airflow edge fails it without retries) naming the source, the page
(``startAt``/``nextPageToken``), the issue and the field.
"""

from __future__ import annotations

import re

import pytest
from fake_apis import Connection, FakeJira, Reply, jira_issue, run_collector

from soc2_evidence.core.errors import PayloadError, is_permanent

CHANGES = {"jql": "project = CHG", "fields": {"change_type": "customfield_10102"}}


def collect(jira: FakeJira, tmp_path, sleeps=None):
    connection = Connection(login="bot@example.com", password="t0ken")
    if jira.deployment == "datacenter":
        connection = Connection(password="t0ken")
    options = {"conn_id": "jira", "url": jira.url, "deployment": jira.deployment, "tries": 2, "page_size": 10}
    return run_collector(
        "jira",
        {**options, "populations": {"changes": CHANGES}},
        tmp_path,
        connections={"jira": connection},
        sleeps=sleeps,
    )


def first_page(jira: FakeJira) -> dict:
    issues = jira.page_slice(0, 10, "")
    if jira.deployment == "cloud":
        return {"issues": issues, "isLast": True}
    return {"startAt": 0, "maxResults": 10, "total": len(issues), "issues": issues}


def _set(path: str, value):
    """A mutation of the first page: ``issues.1.changelog.total`` set to ``value``."""

    def mutate(page: dict) -> None:
        *parents, last = [int(step) if step.isdigit() else step for step in path.split(".")]
        target = page
        for step in parents:
            target = target[step]
        target[last] = value

    return mutate


ISSUE_2 = r"changes search page 1 \((first page|startAt=0)\): issue CHG-2: "


@pytest.mark.parametrize("deployment", ["cloud", "datacenter"])
@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        pytest.param(
            _set("issues.1.changelog.total", "3"),
            ISSUE_2 + r"field changelog.total: expected `int \| null`, got `str`",
            id="changelog-total-a-string",
        ),
        pytest.param(
            _set("issues.1.changelog.histories.0", "moved to Done"),
            ISSUE_2 + r"field changelog.histories\[0\]: expected `object`, got `str`",
            id="history-a-string",
        ),
        pytest.param(
            _set("issues.1.changelog.histories.1.created", "0001-01-01T00:00:00+01:00"),
            ISSUE_2 + r"time '0001-01-01T00:00:00\+01:00' is outside 1970..2199",
            id="date-before-utc-can-hold-it",
        ),
        pytest.param(
            _set("issues.1.fields.created", "9999-12-31T23:59:59.000-0100"),
            ISSUE_2 + r"time '9999-12-31T23:59:59.000-0100' is outside 1970..2199",
            id="date-after-utc-can-hold-it",
        ),
        pytest.param(
            _set("issues.1.changelog.histories.1.created", ""),
            ISSUE_2 + r"history '2-Done' has an empty 'created'",
            id="history-without-a-time",
        ),
        pytest.param(
            _set("issues.1.changelog.total", 10**400),
            ISSUE_2 + r"field changelog.total: expected `int` <= 1000000000",
            id="400-digit-integer",
        ),
        pytest.param(
            _set("issues.1.fields.customfield_10102", [["Emergency"]]),
            ISSUE_2
            + r"field fields.customfield_10102 \(change_type\): a field value is a list inside a list, not text",
            id="custom-field-list-of-lists",
        ),
        pytest.param(
            _set("issues.1.fields.status", "Done"),
            ISSUE_2 + r"field fields.status: expected `object \| null`, got `str`",
            id="status-a-string",
        ),
        pytest.param(
            _set("issues.1.key", 2),
            r"changes search page 1 \((first page|startAt=0)\): issue #2 \(no key\): "
            r"field key: expected `str`, got `int`",
            id="key-a-number",
        ),
    ],
)
def test_a_value_that_does_not_fit_is_a_permanent_error_naming_page_issue_and_field(
    tmp_path, deployment, mutate, message
):
    with FakeJira([jira_issue(1), jira_issue(2)], deployment=deployment) as jira:
        page = first_page(jira)
        mutate(page)
        jira.fault(lambda r: r.path.endswith(("/search", "/search/jql")), Reply(json=page), times=-1)
        with pytest.raises(PayloadError, match=rf"^source tickets-src: {message}$") as caught:
            collect(jira, tmp_path)
    assert is_permanent(caught.value)


@pytest.mark.parametrize("deployment", ["cloud", "datacenter"])
def test_a_page_whose_paging_fields_do_not_fit_names_the_field(tmp_path, deployment):
    with FakeJira([jira_issue(1)], deployment=deployment) as jira:
        page = first_page(jira)
        field = "isLast" if deployment == "cloud" else "startAt"
        page[field] = "yes"
        jira.fault(lambda r: r.path.endswith(("/search", "/search/jql")), Reply(json=page), times=-1)
        expected = "`bool | null`" if deployment == "cloud" else "`int`"
        with pytest.raises(PayloadError, match=re.escape(f"field {field}: expected {expected}, got `str`")):
            collect(jira, tmp_path)


def test_a_body_nested_10000_deep_is_malformed_json_not_a_crash(tmp_path):
    with FakeJira([jira_issue(1)]) as jira:
        jira.fault(lambda r: r.path.endswith("/search/jql"), Reply(raw=b"[" * 10_000 + b"]" * 10_000), times=-1)
        with pytest.raises(
            PayloadError, match=r"malformed JSON in the response body \(nested over about 1,000 levels deep\)"
        ) as caught:
            collect(jira, tmp_path)
    assert is_permanent(caught.value)


@pytest.mark.parametrize(
    ("zone", "message"),
    [
        pytest.param("Mars/Olympus_Mons", "timeZone 'Mars/Olympus_Mons' is not a known IANA zone", id="unknown"),
        pytest.param("Etc", "timeZone 'Etc' is not a known IANA zone", id="a-directory-of-zones"),
        pytest.param(None, "field timeZone: expected `str`, got `null`", id="null"),
    ],
)
def test_a_user_zone_jira_cannot_mean_is_refused_before_any_search(tmp_path, zone, message):
    with FakeJira([jira_issue(1)]) as jira:
        jira.fault(lambda r: r.path.endswith("/myself"), Reply(json={"accountId": "acc-bot", "timeZone": zone}))
        with pytest.raises(PayloadError, match=r"^source tickets-src: GET /rest/api/3/myself: " + re.escape(message)):
            collect(jira, tmp_path)
        assert not [r for r in jira.requests if "search" in r.path]
