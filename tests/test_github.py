"""The GitHub collector against a local GitHub REST API over real HTTP: merged pull requests with reviews,
checks and deployments; Link pagination; primary and secondary rate limits; and every refusal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import formatdate

import pytest
from fake_apis import NOW, Connection, FakeGitHub, Reply, github_pull, items, run_collector

from soc2_evidence.core.errors import CollectorError, PayloadError

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
    with pytest.raises(CollectorError, match=r"acme/app search count: GitHub reports incomplete_results"):
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
