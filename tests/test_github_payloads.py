"""GitHub responses that do not fit their declared types: each measured crash class of issue 14 is a
permanent PayloadError naming the source, the page, the pull request and the field, and is not retried."""

from __future__ import annotations

import re

import pytest
from fake_apis import Connection, FakeGitHub, Reply, github_pull, run_collector
from test_github import h, options

from soc2_evidence.core.errors import PayloadError, is_permanent

LISTING = "/repos/acme/app/pulls"
LISTING_PAGE = (
    r"acme/app pull requests page 1 \(GET /repos/acme/app/pulls\?state=closed&sort=updated&direction=desc&per_page=2\)"
)
REVIEWS_PAGE = r"acme/app#1 reviews page 1 \(GET /repos/acme/app/pulls/1/reviews\?per_page=100\)"


def one_pull() -> list[dict]:
    return [github_pull(1, merged_at=h(0), reviews=[("bob", "APPROVED", h(-1))])]


def listed(**changes) -> list[dict]:
    pull = {key: value for key, value in one_pull()[0].items() if not key.startswith("_")}
    return [{**pull, **changes}]


def without(name: str) -> list[dict]:
    [pull] = listed()
    del pull[name]
    return [pull]


def detail(**changes) -> dict:
    return {**listed()[0], "merged_by": {"login": "alice"}, **changes}


CASES = [
    pytest.param(
        LISTING,
        Reply(json=listed(updated_at="yesterday")),
        rf"{LISTING_PAGE}: pull request 0 \(#1\): Invalid RFC3339 encoded datetime - at `\$.updated_at`",
        id="updated_at-yesterday",
    ),
    pytest.param(
        LISTING,
        Reply(json=listed(merged_at="0001-01-01T00:00:00+01:00")),
        rf"{LISTING_PAGE}: pull request 0 \(#1\): `merged_at` 0001-01-01T00:00:00\+01:00 is outside 1970..2999",
        id="overflowing-date",
    ),
    pytest.param(
        LISTING,
        Reply(json=listed(updated_at="9999-12-31T23:59:59-01:00")),
        rf"{LISTING_PAGE}: pull request 0 \(#1\): `updated_at` 9999-12-31T23:59:59-01:00 is outside 1970..2999",
        id="date-past-year-9999",
    ),
    pytest.param(
        LISTING,
        Reply(json=listed(updated_at="2026-11-20T12:00:00")),
        rf"{LISTING_PAGE}: pull request 0 \(#1\): Expected `datetime` with a timezone component - at `\$.updated_at`",
        id="time-without-zone",
    ),
    pytest.param(
        LISTING,
        Reply(json=without("number")),
        rf"{LISTING_PAGE}: pull request 0: Object missing required field `number`",
        id="pull-without-number",
    ),
    pytest.param(
        LISTING,
        Reply(json=listed(number=10**400)),
        rf"{LISTING_PAGE}: pull request 0: Expected `int` <= 2147483647 - at `\$.number`",
        id="400-digit-number",
    ),
    pytest.param(
        LISTING,
        Reply(json={"message": "Moved"}),
        rf"{LISTING_PAGE}: expected a list, got an object",
        id="listing-not-a-list",
    ),
    pytest.param(
        "/repos/acme/app/pulls/1",
        Reply(json=detail(head="main")),
        r"acme/app#1: Expected `object`, got `str` - at `\$.head`",
        id="head-main",
    ),
    pytest.param(
        "/repos/acme/app/pulls/1",
        Reply(json=detail(labels=[{"name": float("inf")}])),
        None,  # json.dumps writes Infinity, which is not JSON: a malformed body, below
        id="infinity-in-a-label",
    ),
    pytest.param(
        "/repos/acme/app/pulls/1/reviews",
        Reply(json=["LGTM"]),
        rf"{REVIEWS_PAGE}: review 0: Expected `object`, got `str`",
        id="review-not-an-object",
    ),
    pytest.param(
        "/repos/acme/app/pulls/1/reviews",
        Reply(json=[{"id": 10**400, "user": {"login": "bob"}, "state": "APPROVED"}]),
        rf"{REVIEWS_PAGE}: review 0: Expected `int` <= 9223372036854775807 - at `\$.id`",
        id="400-digit-review-id",
    ),
    pytest.param(
        "/repos/acme/app/pulls/1/reviews",
        Reply(json=[{"id": 7, "user": {"login": "bob"}, "state": "LGTM", "submitted_at": "2026-11-20T11:00:00Z"}]),
        rf"{REVIEWS_PAGE}: review 0: Invalid enum value 'LGTM' - at `\$.state`",
        id="unknown-review-state",
    ),
    pytest.param(
        "/repos/acme/app/commits/" + f"{1:040x}" + "/check-runs",
        Reply(json={"total_count": 1, "check_runs": {"name": "ci/build"}}),
        r"acme/app#1 check runs page 1 \(GET .*\): expected an object with a list under 'check_runs', got an object",
        id="check-runs-not-a-list",
    ),
    pytest.param(
        "/search/issues",
        Reply(json={"total_count": "5", "incomplete_results": False}),
        r"acme/app search count: Expected `int`, got `str` - at `\$.total_count`",
        id="total-count-a-string",
    ),
]


@pytest.mark.parametrize(("path", "reply", "message"), CASES)
def test_a_record_that_does_not_fit_fails_at_once_naming_page_record_and_field(tmp_path, path, reply, message):
    with FakeGitHub(one_pull()) as api:
        api.fault(lambda request: request.path == path, reply, times=-1)
        with pytest.raises(PayloadError) as caught:
            run_collector("github", options(api), tmp_path, connections={"github": Connection(password="ghp_test")})
    assert is_permanent(caught.value)
    text = str(caught.value)
    assert text.startswith("source tickets-src: ")
    if message is None:  # not JSON at all: the HTTP layer refuses the body (and tried it again)
        assert re.search(r"acme/app#1\): malformed JSON in the response body .*; gave up after 3 tries$", text)
    else:
        assert re.search(f"{message}$", text), text
        assert len([request for request in api.requests if request.path == path]) == 1  # not retried


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'[{"number": 1, "updated_at": NaN}]', id="nan"),
        pytest.param(b'[{"number": 1, "updated_at": Infinity}]', id="infinity"),
        pytest.param(b'[{"number": 1e400}]', id="float-overflow"),
        pytest.param(b"[" * 10_000 + b"]" * 10_000, id="10000-deep"),
    ],
)
def test_bodies_that_are_not_json_are_refused_by_the_http_layer(tmp_path, body):
    """NaN, Infinity, an overflowing number and a 10,000-deep body never reach the types (nor canonical JSON)."""
    with FakeGitHub(one_pull()) as api:
        api.fault(lambda request: request.path == LISTING, Reply(raw=body), times=-1)
        with pytest.raises(PayloadError, match=r"pull requests page 1\): malformed JSON in the response body"):
            run_collector("github", options(api), tmp_path, connections={"github": Connection(password="ghp_test")})
