"""The GitHub collector against a local GitHub REST API over real HTTP: merged pull requests with reviews,
checks and deployments; Link pagination; primary and secondary rate limits; and every refusal."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import formatdate

import pytest
from fake_apis import NOW, Connection, FakeGitHub, Reply, github_pull, items, run_collector

from conftest import ROOT
from soc2_evidence.collectors.github import own_text
from soc2_evidence.collectors.support import tickets
from soc2_evidence.core.errors import CollectorError, PayloadError, TransientCollectorError

T = datetime(2026, 11, 20, 12, tzinfo=UTC)


def h(hours: float) -> datetime:
    return T + timedelta(hours=hours)


def pulls() -> list[dict]:
    return [
        github_pull(1, merged_at=h(0), reviews=[("bob", "APPROVED", h(-1))]),
        github_pull(2, merged_at=h(1), title="Bump library", branch="deps/bump"),  # no ticket, no approval
        github_pull(  # approved, then changes requested: not approved at merge
            3, merged_at=h(2), reviews=[("bob", "APPROVED", h(1)), ("bob", "CHANGES_REQUESTED", h(1.5))]
        ),
        github_pull(  # an emergency reviewed a day after its merge
            4,
            merged_at=h(3),
            branch="hotfix/CHG-4",
            labels=["emergency"],
            reviews=[("carol", "APPROVED", h(27))],
            updated_at=h(27),
        ),
        github_pull(5, merged_at=None, updated_at=h(4)),  # closed without merging
        github_pull(6, merged_at=h(5), reviews=[("bob", "COMMENTED", h(4)), ("carol", "APPROVED", h(4.5))]),
        github_pull(7, merged_at=datetime(2026, 10, 1, tzinfo=UTC), reviews=[("bob", "APPROVED", h(-1000))]),
        github_pull(8, merged_at=datetime(2026, 9, 1, tzinfo=UTC)),
    ]


def options(api: FakeGitHub, **overrides) -> dict:
    return {
        "conn_id": "github",
        "api_url": api.url,
        "repositories": ["acme/app"],
        "page_size": 2,
        "timeout_seconds": 0.25,
        "tries": 3,
        "ticket_pattern": r"\bCHG-[0-9]+\b",
        **overrides,
    }


def collect(api: FakeGitHub, tmp_path, sleeps=None, **kwargs):
    overrides = kwargs.pop("overrides", {})
    return run_collector(
        "github",
        options(api, **overrides),
        tmp_path / "staging",
        connections={"github": Connection(password="ghp_test")},
        sleeps=sleeps,
        **kwargs,
    )


@pytest.fixture
def github():
    with FakeGitHub(
        pulls(),
        deployments={
            f"{1 + 5000:040x}": [
                {
                    "id": 11,
                    "environment": "production",
                    "created_at": "2026-11-20T12:30:00Z",
                    "creator": {"login": "deploy-bot"},
                }
            ]
        },
    ) as api:
        yield api


def by_id(bundle) -> dict[str, dict]:
    return {change["id"]: change for change in items(bundle, "changes.jsonl")}


def test_merged_pull_requests_in_the_window_with_reviews_checks_and_deployments(github, tmp_path):
    bundle = collect(github, tmp_path, overrides={"deployments": True})

    changes = by_id(bundle)
    assert sorted(changes) == ["acme/app#1", "acme/app#2", "acme/app#3", "acme/app#4", "acme/app#6"]
    assert bundle.reported_totals == {"changes": 5}  # GitHub's search count agrees
    first = changes["acme/app#1"]
    assert first["approvers"] == [{"approver": "bob", "approved_at": "2026-11-20T11:00:00Z", "via": "review"}]
    assert first["approved_before_merge"] is True
    assert first["merged_by"] == "alice" and first["merge_commit"] == f"{5001:040x}"
    assert first["linked_tickets"] == ["CHG-1"] and first["has_ticket"] is True
    assert first["required_checks"] == [{"name": "ci/build", "conclusion": "success"}]
    assert first["required_checks_succeeded"] is True
    assert first["environment"] == "production"
    assert first["deployments"] == [
        {"id": 11, "environment": "production", "created_at": "2026-11-20T12:30:00Z", "creator": "deploy-bot"}
    ]
    assert changes["acme/app#2"]["has_ticket"] is False and changes["acme/app#2"]["approved_before_merge"] is False
    assert changes["acme/app#3"]["approved_before_merge"] is False  # the approval was withdrawn before the merge
    emergency = changes["acme/app#4"]
    assert emergency["emergency"] is True and emergency["approved_before_merge"] is False
    assert emergency["post_merge_review_at"] == "2026-11-21T15:00:00Z"
    assert emergency["emergency_reviewed_in_time"] is True
    assert changes["acme/app#6"]["approved_before_merge"] is True  # a comment does not reset an approval

    listing = [r for r in github.requests if r.path == "/repos/acme/app/pulls"]
    assert [r.query.get("page", "1") for r in listing] == ["1", "2", "3", "4"]  # stopped before the older pages
    assert all(r.query["sort"] == "updated" and r.query["state"] == "closed" for r in listing)
    protection = [r for r in github.requests if r.path.endswith("/required_status_checks")]
    assert len(protection) == 1  # read once per branch
    [search] = [r for r in github.requests if r.path == "/search/issues"]
    assert search.query["q"] == "repo:acme/app is:pr is:merged updated:2026-10-25T02:50:00Z..2026-11-25T02:49:59Z"


def test_failed_or_missing_required_checks_and_unprotected_branches(tmp_path):
    with FakeGitHub(pulls()[:2]) as api:
        api.check_conclusions[1] = "failure"
        changes = by_id(collect(api, tmp_path))
    assert changes["acme/app#1"]["required_checks"] == [{"name": "ci/build", "conclusion": "failure"}]
    assert changes["acme/app#1"]["required_checks_succeeded"] is False
    with FakeGitHub(pulls()[:2], required=None) as api:
        changes = by_id(collect(api, tmp_path / "unprotected"))
    assert changes["acme/app#1"]["required_checks"] == [] and changes["acme/app#1"]["required_checks_succeeded"] is None
    assert not [r for r in api.requests if "/check-runs" in r.path]  # nothing required, nothing read


def test_full_population_selects_by_merge_time(github, tmp_path):
    bundle = collect(
        github, tmp_path, params={"full_population": True, "period_start": "2026-09-01", "period_end": "2026-10-02"}
    )
    assert sorted(by_id(bundle)) == ["acme/app#7", "acme/app#8"]
    assert bundle.reported_totals == {"changes": 2}
    [search] = [r for r in github.requests if r.path == "/search/issues"]
    assert "merged:2026-09-01T00:00:00Z..2026-10-01T23:59:59Z" in search.query["q"]
    assert "watermark.json" not in {staged.item.name for staged in bundle.items}


@pytest.mark.parametrize(
    ("reply", "expected_sleep"),
    [
        pytest.param(
            lambda: Reply(
                403,
                {"message": "API rate limit exceeded"},
                headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW.timestamp()) + 30)},
            ),
            31.0,
            id="primary-403-until-reset",
        ),
        pytest.param(
            lambda: Reply(403, {"message": "You have exceeded a secondary rate limit."}, headers={"retry-after": "5"}),
            5.0,
            id="secondary-retry-after",
        ),
        pytest.param(
            lambda: Reply(403, {"message": "You have exceeded a secondary rate limit. Please wait a few minutes."}),
            60.0,
            id="secondary-at-least-a-minute",
        ),
        pytest.param(
            lambda: Reply(
                403, {"message": "Forbidden"}, headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "soon"}
            ),
            60.0,
            id="spent-with-a-reset-that-is-not-a-time",
        ),
        pytest.param(lambda: Reply(429, {"message": "Too many requests"}, headers={"retry-after": "2"}), 2.0, id="429"),
        pytest.param(
            lambda: Reply(
                429, {"message": "Slow down"}, headers={"retry-after": formatdate(NOW.timestamp() + 10, usegmt=True)}
            ),
            10.0,
            id="429-retry-after-http-date",
        ),
    ],
)
def test_rate_limits_are_waited_out(github, tmp_path, reply, expected_sleep):
    github.fault(lambda r: r.path == "/repos/acme/app/pulls" and r.query.get("page") == "2", reply())
    sleeps: list[float] = []
    bundle = collect(github, tmp_path, sleeps=sleeps)
    assert len(by_id(bundle)) == 5
    assert sleeps == [expected_sleep]  # measured on the collector's clock, stopped at NOW


def test_a_spent_primary_limit_waits_for_the_reset_before_the_next_request(github, tmp_path):
    reset = int(NOW.timestamp()) + 20
    github.fault(
        lambda r: r.path == "/search/issues",
        Reply(
            json={"total_count": 5, "incomplete_results": False, "items": []},
            headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
        ),
    )
    sleeps: list[float] = []
    collect(github, tmp_path, sleeps=sleeps)
    assert sleeps == [21.0]  # the reset, 20 s after the collector's clock, plus a second


def test_a_permission_403_is_not_a_rate_limit(github, tmp_path):
    github.fault(
        lambda r: r.path.endswith("/reviews"), Reply(403, {"message": "Resource not accessible by integration"})
    )
    with pytest.raises(
        CollectorError,
        match=r"^source tickets-src: GET /repos/acme/app/pulls/\d+/reviews \(acme/app#\d+ reviews page 1\): "
        r"HTTP 403: Resource not accessible by integration$",
    ):
        collect(github, tmp_path)


def test_bad_credentials(github, tmp_path):
    with pytest.raises(
        CollectorError, match=r"HTTP 401 Unauthorized: .* renew the token in connection 'github'"
    ) as caught:
        run_collector("github", options(github), tmp_path, connections={"github": Connection(password="ghp_revoked")})
    assert "ghp_revoked" not in str(caught.value)


def test_a_next_link_back_to_a_seen_page_is_a_loop(github, tmp_path):
    first = f"{github.url}/repos/acme/app/pulls?state=closed&sort=updated&direction=desc&per_page=2"
    listed = [github._listed(pull) for pull in github.pulls[2:4]]
    github.fault(
        lambda r: r.path == "/repos/acme/app/pulls" and r.query.get("page") == "2",
        Reply(json=listed, headers={"Link": f'<{first}>; rel="next"'}),
    )
    with pytest.raises(
        CollectorError, match=r"acme/app pull requests page 3: the API returned a cursor it had already given"
    ):
        collect(github, tmp_path)


def test_a_next_link_that_skips_a_page_is_a_gap(github, tmp_path):
    skip = f"{github.url}/repos/acme/app/pulls?state=closed&sort=updated&direction=desc&per_page=2&page=3"
    listed = [github._listed(pull) for pull in github.pulls[:2]]
    github.fault(
        lambda r: r.path == "/repos/acme/app/pulls" and "page" not in r.query,
        Reply(json=listed, headers={"Link": f'<{skip}>; rel="next"'}),
    )
    with pytest.raises(CollectorError, match=r"acme/app pull requests page 1: the next link points to page 3, not 2"):
        collect(github, tmp_path)


def test_a_repeated_page_is_refused(github, tmp_path):
    listed = [github._listed(pull) for pull in github.pulls[:2]]
    next_page = f"{github.url}/repos/acme/app/pulls?state=closed&sort=updated&direction=desc&per_page=2&page=3"
    github.fault(
        lambda r: r.path == "/repos/acme/app/pulls" and r.query.get("page") == "2",
        Reply(json=listed, headers={"Link": f'<{next_page}>; rel="next"'}),
    )
    with pytest.raises(CollectorError, match=r"acme/app pull requests page 2 repeats an earlier page"):
        collect(github, tmp_path)


def test_a_pull_request_without_a_field_names_the_page(github, tmp_path):
    broken = [github._listed(pull) for pull in github.pulls[:2]]
    del broken[1]["updated_at"]
    github.fault(lambda r: r.path == "/repos/acme/app/pulls" and "page" not in r.query, Reply(json=broken))
    with pytest.raises(
        PayloadError,
        match=r"^source tickets-src: acme/app pull requests page 1 \(GET /repos/acme/app/pulls\?state=closed&.*\): "
        r"pull request 1 \(#6\): Object missing required field `updated_at`$",
    ):
        collect(github, tmp_path)


def test_an_incomplete_search_count_is_not_trusted(github, tmp_path):
    github.fault(
        lambda r: r.path == "/search/issues", Reply(json={"total_count": 3, "incomplete_results": True, "items": []})
    )
    with pytest.raises(TransientCollectorError, match=r"acme/app search count: GitHub reports incomplete_results"):
        collect(github, tmp_path)


def test_enterprise_server_base_url_path_is_kept(tmp_path):
    """GitHub Enterprise Server serves the API under /api/v3; every call stays under it."""
    with FakeGitHub(pulls()[:1]) as api:
        api.route_prefix = "/api/v3"
        original = api._route

        def prefixed(request):
            if not request.path.startswith("/api/v3/"):
                return Reply(404, {"message": "Not Found"})
            request.path = request.path[len("/api/v3") :]
            return original(request)

        api._route = prefixed
        bundle = run_collector(
            "github",
            {**options(api), "api_url": f"{api.url}/api/v3"},
            tmp_path,
            connections={"github": Connection(password="ghp_test")},
        )
    assert list(by_id(bundle)) == ["acme/app#1"]


def test_the_query_card_says_how_the_population_was_selected(github, tmp_path):
    bundle = collect(github, tmp_path)
    card = items(bundle, "query-changes.json")
    search = "repo:acme/app is:pr is:merged updated:2026-10-25T02:50:00Z..2026-11-25T02:49:59Z"
    assert card == {
        "population": "changes",
        "endpoint": f"GET {github.url}/repos/{{owner}}/{{name}}/pulls",
        "query": search,
        "parameters": {
            "repositories": ["acme/app"],
            "listing": {"state": "closed", "sort": "updated", "direction": "desc", "per_page": 2},
            "window": items(bundle, "window.json"),
            "selected_by": "updated_at",
            "per_repository": [
                {"repository": "acme/app", "search": search, "reported_total": 5, "pages": 4, "rows": 5}
            ],
        },
        "pages_read": 4,
        "reported_total": 5,
        "rows_archived": 5,
        "notes": [
            "Closed pull requests are listed newest-updated first until one was last updated before "
            "2026-10-25T02:50:00Z; those merged with updated_at in [start, end) are the population.",
            "reported_total is GitHub's search count (GET /search/issues with the query shown, per repository).",
        ],
    }


def test_the_query_card_of_a_full_population_says_when_rows_and_the_reported_total_differ(github, tmp_path):
    github.fault(
        lambda r: r.path == "/search/issues", Reply(json={"total_count": 3, "incomplete_results": False, "items": []})
    )
    params = {"full_population": True, "period_start": "2026-09-01", "period_end": "2026-10-02"}
    card = items(collect(github, tmp_path, params=params), "query-changes.json")
    assert card["query"] == "repo:acme/app is:pr is:merged merged:2026-09-01T00:00:00Z..2026-10-01T23:59:59Z"
    assert card["parameters"]["selected_by"] == "merged_at"
    assert (card["reported_total"], card["rows_archived"]) == (3, 2)
    assert card["notes"][-1] == "2 rows archived, but GitHub's search reported 3."


def dismissed_pulls() -> list[dict]:
    """Approvals dismissed after and before their merge; GitHub lists both reviews as DISMISSED."""
    return [
        github_pull(11, merged_at=h(0), reviews=[("bob", "APPROVED", h(-2))], dismissed={0: h(3)}),
        github_pull(12, merged_at=h(1), reviews=[("bob", "APPROVED", h(-2))], dismissed={0: h(0.5)}),
        github_pull(  # changes requested, then that request dismissed before the merge: still no approval
            13,
            merged_at=h(2),
            reviews=[("carol", "CHANGES_REQUESTED", h(0)), ("bob", "APPROVED", h(0.5))],
            dismissed={1: h(1)},
        ),
        github_pull(14, merged_at=h(3), reviews=[("bob", "APPROVED", h(1))]),  # nothing dismissed
    ]


def test_approval_is_judged_by_each_reviews_state_at_the_merge(tmp_path):
    with FakeGitHub(dismissed_pulls()) as api:
        changes = by_id(collect(api, tmp_path))
        timelines = sorted(r.path for r in api.requests if r.path.endswith("/timeline"))
    after, before, withdrawn = changes["acme/app#11"], changes["acme/app#12"], changes["acme/app#13"]
    assert after["approved_before_merge"] is True  # dismissed three hours after the merge: it approved the merge
    assert after["approvers"] == [
        {"approver": "bob", "approved_at": "2026-11-20T10:00:00Z", "via": "review, dismissed 2026-11-20T15:00:00Z"}
    ]
    assert before["approved_before_merge"] is False  # dismissed half an hour before the merge
    assert before["approvers"][0]["via"] == "review, dismissed 2026-11-20T12:30:00Z"
    assert withdrawn["approved_before_merge"] is False
    assert changes["acme/app#14"]["approved_before_merge"] is True
    assert timelines == [f"/repos/acme/app/issues/{n}/timeline" for n in (11, 12, 13)]  # only where one was dismissed


def test_a_dismissal_the_timeline_does_not_date_approves_nothing(tmp_path):
    with FakeGitHub(dismissed_pulls()[:1]) as api:
        api.fault(lambda r: r.path.endswith("/timeline"), Reply(json=[]))
        [change] = by_id(collect(api, tmp_path)).values()
    assert change["approved_before_merge"] is False and change["approvers"] == []


def test_a_review_dismissed_event_without_its_review_is_refused(tmp_path):
    with FakeGitHub(dismissed_pulls()[:1]) as api:
        api.fault(
            lambda r: r.path.endswith("/timeline"),
            Reply(json=[{"event": "review_dismissed", "node_id": "x", "created_at": "2026-11-20T15:00:00Z"}]),
        )
        with pytest.raises(
            PayloadError,
            match=r"^source tickets-src: acme/app#11 timeline: event 0: a review_dismissed event without "
            r"dismissed_review or created_at$",
        ):
            collect(api, tmp_path)


DEPENDABOT_BODY = (ROOT / "tests" / "data" / "github" / "dependabot-httpclient5-body.md").read_text()


def test_a_dependabot_bump_links_no_ticket_from_quoted_release_notes(tmp_path):
    bump = github_pull(
        21,
        merged_at=h(0),
        author="dependabot[bot]",
        title="Bump org.apache.httpcomponents.client5:httpclient5 from 5.2.1 to 5.3",
        branch="dependabot/maven/org.apache.httpcomponents.client5-httpclient5-5.3",
        body=DEPENDABOT_BODY,
        reviews=[("bob", "APPROVED", h(-1))],
    )
    default = re.compile(tickets.DEFAULT_TICKET_PATTERN)
    assert len(tickets.ticket_keys(default, DEPENDABOT_BODY)) == 25  # what the raw body would have linked
    with FakeGitHub([bump]) as api:
        [change] = by_id(collect(api, tmp_path, overrides={"ticket_pattern": default.pattern})).values()
    assert change["linked_tickets"] == [] and change["has_ticket"] is False


def test_tickets_are_linked_from_title_branch_and_the_authors_own_text(tmp_path):
    body = "\n".join(
        [
            "<!-- Template: name the ticket, e.g. CHG-900 -->",
            "Fixes CHG-31; see also [CHG-32](https://jira.example/browse/CHG-32).",
            "",
            "> Upstream says CHG-901 is fixed",
            "lazily continued quote CHG-902",
            "",
            "```",
            "log: CHG-903",
            "```",
            "Run `deploy CHG-904` after. <details><summary>CHG-905</summary>CHG-906</details>",
            "",
            "    indented code CHG-907",
            "",
            "- a list item",
            "",
            "    its continuation CHG-33",
        ]
    )
    pull = github_pull(22, merged_at=h(0), title="CHG-30: fix", branch="feature/CHG-34-retry", body=body)
    with FakeGitHub([pull]) as api:
        [change] = by_id(collect(api, tmp_path)).values()
    assert change["linked_tickets"] == ["CHG-30", "CHG-34", "CHG-31", "CHG-32", "CHG-33"]


@pytest.mark.parametrize(
    ("body", "linked"),
    [
        pytest.param("CHG-1 <details><details>CHG-2</details>CHG-3</details> CHG-4", ["CHG-1", "CHG-4"], id="nested"),
        pytest.param("CHG-1 <DETAILS open>CHG-2", ["CHG-1"], id="left-open-hides-the-rest"),
        pytest.param("</details> CHG-1 </blockquote>", ["CHG-1"], id="stray-closing-tags"),
        pytest.param("<!-- CHG-1 --> CHG-2 <!-- CHG-3", ["CHG-2"], id="comments"),
        pytest.param('<a href="https://jira.example/browse/CHG-1">the ticket</a> CHG-2', ["CHG-2"], id="attributes"),
        pytest.param("~~~~\nCHG-1\n~~~\nCHG-2\n~~~~\nCHG-3", ["CHG-3"], id="a-fence-closes-only-with-its-own"),
        pytest.param("``CHG-1`` and `CHG-2` but CHG-3", ["CHG-3"], id="code-spans"),
    ],
)
def test_only_the_authors_own_text_links_tickets(body, linked):
    assert tickets.ticket_keys(re.compile(r"\bCHG-[0-9]+\b"), own_text(body)) == linked
