"""Merged GitHub pull requests as changes: reviews, merger, merge commit, linked tickets, checks, deployments.

REST API v3 (``X-GitHub-Api-Version: 2022-11-28``) on github.com or GitHub Enterprise Server
(``api_url``, e.g. ``https://ghe.example.com/api/v3``), a token as bearer (the connection's
password). Per repository: ``GET /repos/{repo}/pulls?state=closed&sort=updated&direction=desc``
followed through ``Link: rel="next"`` until the window is passed; per merged pull request in
the window ``GET /pulls/{n}`` (merged_by is only there), ``/pulls/{n}/reviews``, and where the
base branch has required checks ``/commits/{head}/check-runs`` and ``/commits/{head}/status``;
with ``deployments: true``, ``/deployments?sha={merge commit}``. GitHub's own count of the
population comes from ``GET /search/issues`` (``is:pr is:merged`` in the window) and is the
reported total. The record schema is in :mod:`soc2_evidence.collectors.support.tickets`.

A reviewer's state at merge is their last review (approve, request changes, dismissed) submitted
before the merge; only reviewers whose state at merge is APPROVED count as approving it.
Approvals submitted after the merge are the after-the-fact review of an emergency change.

Options (:class:`Options`): ``repositories`` (``owner/name`` list, required), ``conn_id`` (optional:
anonymous without), ``api_url``, ``base`` (only pull requests into this branch), ``ticket_pattern``
(regex for ticket keys in title, branch and body; default Jira-style keys), ``emergency_labels``
(default ``[emergency, hotfix]``), ``emergency_branch_prefixes`` (default ``[hotfix/]``),
``emergency_review_days`` (5), ``required_checks`` (names; default: the base branch's branch
protection, read once per branch, none when unprotected), ``deployments`` (false),
``environment`` (recorded when no deployment names one), and the paging, HTTP and window options
of :class:`soc2_evidence.collectors.support.tickets.ApiOptions`. The change rules (``base`` to
``environment``) are also what a ``github_json`` export file takes (:data:`RULE_FIELDS`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlsplit

import msgspec

from soc2_evidence.collectors import CollectContext
from soc2_evidence.collectors.support import tickets
from soc2_evidence.collectors.support.http import HttpClient, PageGuard, RetryPolicy, next_link
from soc2_evidence.collectors.support.tickets import Approval, Person, Window, parse_time, record
from soc2_evidence.core import config
from soc2_evidence.core.config import SourceConfig
from soc2_evidence.core.errors import CollectorError
from soc2_evidence.core.staging import BundleWriter

KIND = "github"
FAMILY = "tickets"
VERSION = "1.0.0"
DATASETS = tickets.datasets(KIND, ("changes",))
DEFAULT_API_URL = "https://api.github.com"
PASSING_CONCLUSIONS = ("success", "neutral", "skipped")
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_STATEFUL_REVIEWS = ("APPROVED", "CHANGES_REQUESTED", "DISMISSED")


RULE_FIELDS = (
    "base",
    "ticket_pattern",
    "emergency_labels",
    "emergency_branch_prefixes",
    "emergency_review_days",
    "required_checks",
    "deployments",
    "environment",
)


class Options(tickets.ApiOptions):
    repositories: Annotated[
        list[Annotated[str, msgspec.Meta(pattern=_REPOSITORY.pattern)]],
        msgspec.Meta(min_length=1, description="owner/name of each repository"),
    ]
    conn_id: str | None = None
    api_url: str = DEFAULT_API_URL
    base: str | None = None
    ticket_pattern: str = tickets.DEFAULT_TICKET_PATTERN
    emergency_labels: list[str] = msgspec.field(default_factory=lambda: ["emergency", "hotfix"])
    emergency_branch_prefixes: list[str] = msgspec.field(default_factory=lambda: ["hotfix/"])
    emergency_review_days: config.NonNegativeInt = tickets.DEFAULT_EMERGENCY_REVIEW_DAYS
    required_checks: list[str] | None = None
    deployments: bool = False
    environment: str | None = None

    def problems(self) -> Iterator[config.Problem]:
        return tickets.pattern_problems("ticket_pattern", self.ticket_pattern)


@dataclass(frozen=True)
class GitHubOptions:
    """The change rules as the reader applies them, from a source's or an export file's options."""

    repositories: tuple[str, ...]
    base: str | None
    ticket_pattern: re.Pattern[str]
    emergency_labels: tuple[str, ...]
    emergency_branch_prefixes: tuple[str, ...]
    emergency_review_days: int
    required_checks: tuple[str, ...] | None
    deployments: bool
    environment: str | None
    page_size: int
    max_pages: int

    @classmethod
    def of(
        cls,
        rules: Any,
        repositories: tuple[str, ...] = (),
        page_size: int = 100,
        max_pages: int = RetryPolicy.max_pages,
    ) -> GitHubOptions:
        """``rules``: anything with the :data:`RULE_FIELDS` (this kind's Options, an export file's entry)."""
        return cls(
            repositories=repositories,
            base=rules.base,
            ticket_pattern=re.compile(rules.ticket_pattern),
            emergency_labels=tuple(rules.emergency_labels),
            emergency_branch_prefixes=tuple(rules.emergency_branch_prefixes),
            emergency_review_days=rules.emergency_review_days,
            required_checks=None if rules.required_checks is None else tuple(rules.required_checks),
            deployments=rules.deployments,
            environment=rules.environment,
            page_size=page_size,
            max_pages=max_pages,
        )


def collect(source: SourceConfig, writer: BundleWriter, context: CollectContext) -> None:
    options: Options = source.options
    settings = GitHubOptions.of(options, tuple(options.repositories), options.page_size, options.max_pages)
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
    conn_id = options.conn_id
    if conn_id:
        connection = context.credentials.connection(conn_id)
        if not connection.password:
            raise CollectorError(f"source {source.name}: connection {conn_id!r} has no token (its password)")
        headers["Authorization"] = f"Bearer {connection.password}"
    client = HttpClient(
        source.name,
        options.api_url,
        headers=headers,
        policy=options.retry_policy(),
        auth_hint=f"renew the token in connection {conn_id!r}" if conn_id else "set conn_id to a token's connection",
        ca_bundle=str(context.resolve_path(options.ca_bundle)) if options.ca_bundle else None,
        sleep=context.sleep,
        clock=lambda: context.now().timestamp(),  # rate-limit resets are dates: waits are measured on it
    )
    window = tickets.open_window(source.name, options, writer, context, "changes")
    reader = PullRequests(client, settings, window, context.now())
    try:
        writer.add_jsonl("changes.jsonl", reader.changes(), description=tickets.DESCRIPTIONS["changes"])
    finally:
        client.close()
    writer.report_total("changes", reader.total)
    writer.add_json(
        "repositories.json",
        {"api_url": client.base_url, "window": window.to_dict(), "repositories": reader.summaries},
        description="Per repository: GitHub's search count of merged pull requests and the pages read",
    )
    if not window.full:
        writer.add_json(tickets.WATERMARK_ITEM, window.to_dict(), description="Where the next nightly run starts")


def control_expectations(dataset):
    return tickets.control_expectations(dataset)


class PullRequests:
    """The merged pull requests of every repository in the window, as change records, one at a time."""

    def __init__(self, client: HttpClient, settings: GitHubOptions, window: Window, now: datetime) -> None:
        self.client, self.settings, self.window, self.now = client, settings, window, now
        self.total = 0
        self.summaries: list[dict[str, Any]] = []
        self._required: dict[tuple[str, str], tuple[str, ...]] = {}

    def changes(self) -> Iterator[dict[str, Any]]:
        for repository in self.settings.repositories:
            reported = self._count(repository)
            self.total += reported
            summary = {"repository": repository, "reported_total": reported, "collected": 0, "pages": 0}
            self.summaries.append(summary)
            for pull in self._merged_in_window(repository, summary):
                summary["collected"] += 1
                try:
                    yield self._change(repository, pull)
                except ValueError as error:  # a time or field GitHub sent that cannot be read
                    raise CollectorError(
                        f"source {self.client.source}: {repository}#{pull['number']}: {error}"
                    ) from error

    def _count(self, repository: str) -> int:
        """GitHub's search count of the population: merged pull requests in the window."""
        last = (self.window.end - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        first = self.window.start.strftime("%Y-%m-%dT%H:%M:%SZ")
        qualifier = "merged" if self.window.full else "updated"
        query = f"repo:{repository} is:pr is:merged {qualifier}:{first}..{last}"
        if self.settings.base:
            query += f" base:{self.settings.base}"
        data = self.client.get("search/issues", {"q": query, "per_page": 1}, page=f"{repository} search count").data
        if not isinstance(data, dict) or not isinstance(data.get("total_count"), int):
            raise CollectorError(f"source {self.client.source}: {repository} search count: no integer 'total_count'")
        if data.get("incomplete_results"):
            raise CollectorError(
                f"source {self.client.source}: {repository} search count: GitHub reports incomplete_results "
                "(its search timed out), so its total cannot be trusted; retry"
            )
        return data["total_count"]

    def _merged_in_window(self, repository: str, summary: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Closed pull requests newest-updated first, until one was last updated before the window."""
        params = {"state": "closed", "sort": "updated", "direction": "desc", "per_page": self.settings.page_size}
        if self.settings.base:
            params["base"] = self.settings.base
        url = self.client.url(f"repos/{repository}/pulls", params)
        label = f"{repository} pull requests"
        for page, items in pages(self.client, url, label, self.settings.max_pages, key="number"):
            summary["pages"] += 1
            for index, pull in enumerate(items):
                for name in ("number", "updated_at", "user", "merged_at"):
                    if name not in pull:
                        raise CollectorError(
                            f"source {self.client.source}: {page}: pull request {index} has no {name!r}"
                        )
                updated = parse_time(pull["updated_at"])
                if updated < self.window.start:
                    return
                merged = parse_time(pull["merged_at"])
                if merged is None:
                    continue
                moment = merged if self.window.full else updated
                if self.window.start <= moment < self.window.end:
                    yield pull

    def _change(self, repository: str, listed: dict[str, Any]) -> dict[str, Any]:
        number = listed["number"]
        pull = self.client.get(f"repos/{repository}/pulls/{number}", page=f"{repository}#{number}").data
        if not isinstance(pull, dict) or "merged_by" not in pull:
            raise CollectorError(f"source {self.client.source}: {repository}#{number}: no 'merged_by' in the response")
        reviews = [
            review
            for _, items in pages(
                self.client,
                self.client.url(f"repos/{repository}/pulls/{number}/reviews", {"per_page": 100}),
                f"{repository}#{number} reviews",
                self.settings.max_pages,
                key="id",
            )
            for review in items
        ]
        head = (pull.get("head") or {}).get("sha")
        required = self._required_checks(repository, (pull.get("base") or {}).get("ref"))
        check_runs, statuses = ([], [])
        if required and head:
            check_runs = [
                run
                for _, items in pages(
                    self.client,
                    self.client.url(f"repos/{repository}/commits/{head}/check-runs", {"per_page": 100}),
                    f"{repository}#{number} check runs",
                    self.settings.max_pages,
                    key="id",
                    items_key="check_runs",
                )
                for run in items
            ]
            status = self.client.get(
                f"repos/{repository}/commits/{head}/status", {"per_page": 100}, page=f"{repository}#{number} status"
            ).data
            statuses = (status or {}).get("statuses") or []
        deployments = None
        if self.settings.deployments and pull.get("merge_commit_sha"):
            deployments = [
                deployment
                for _, items in pages(
                    self.client,
                    self.client.url(
                        f"repos/{repository}/deployments", {"sha": pull["merge_commit_sha"], "per_page": 100}
                    ),
                    f"{repository}#{number} deployments",
                    self.settings.max_pages,
                    key="id",
                )
                for deployment in items
            ]
        return normalise_pull(
            self.settings,
            repository,
            pull,
            reviews,
            required=required,
            check_runs=check_runs,
            statuses=statuses,
            deployments=deployments,
            now=self.now,
        )

    def _required_checks(self, repository: str, branch: str | None) -> tuple[str, ...]:
        """Configured required checks, else the branch protection's (none when the branch is unprotected)."""
        if self.settings.required_checks is not None or not branch:
            return self.settings.required_checks or ()
        if (repository, branch) not in self._required:
            response = self.client.get(
                f"repos/{repository}/branches/{quote(branch, safe='')}/protection/required_status_checks",
                page=f"{repository} {branch} required checks",
                allow=(404,),
            )
            data = response.data if response.status == 200 and isinstance(response.data, dict) else {}
            names = [check.get("context") for check in data.get("checks") or [] if isinstance(check, dict)]
            names += data.get("contexts") or []
            self._required[(repository, branch)] = tuple(dict.fromkeys(filter(None, names)))
        return self._required[(repository, branch)]


def pages(
    client: HttpClient, url: str, label: str, max_pages: int, *, key: str, items_key: str | None = None
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Pages of a GitHub listing through ``Link: rel="next"``: a loop, a repeated page or a skipped page fails."""
    guard = PageGuard(client.source, label, max_pages)
    next_url: str | None = url
    while next_url:
        page = guard.next(next_url)
        response = client.request("GET", next_url, page=page)
        data = response.data
        items = data.get(items_key) if items_key and isinstance(data, dict) else data
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise guard.fail(f"expected a list of objects{f' under {items_key!r}' if items_key else ''}")
        guard.items([item.get(key) for item in items])
        yield page, items
        next_url = next_link(response.headers)
        number = _page_number(next_url)
        if number is not None and number != guard.pages + 1:
            raise guard.fail(f"the next link points to page {number}, not {guard.pages + 1}: a page would be missing")


def _page_number(url: str | None) -> int | None:
    if not url:
        return None
    values = parse_qs(urlsplit(url).query).get("page")
    return int(values[0]) if values and values[0].isdigit() else None


def _login(user: Any) -> Person | None:
    if isinstance(user, dict) and user.get("login"):
        return Person(str(user["login"]))
    return None


def normalise_pull(
    settings: GitHubOptions,
    repository: str,
    pull: dict[str, Any],
    reviews: list[dict[str, Any]],
    *,
    required: tuple[str, ...],
    check_runs: list[dict[str, Any]],
    statuses: list[dict[str, Any]],
    deployments: list[dict[str, Any]] | None,
    now: datetime,
) -> dict[str, Any]:
    """One merged pull request as a change record (from the API or a JSON dump)."""
    merged_at = parse_time(pull.get("merged_at"))
    author = _login(pull.get("user"))
    effective, shown = _approvals(reviews, merged_at)
    head_ref = (pull.get("head") or {}).get("ref") or ""
    labels = {str(label.get("name", "")).casefold() for label in pull.get("labels") or [] if isinstance(label, dict)}
    emergency = bool(labels & {label.casefold() for label in settings.emergency_labels}) or any(
        head_ref.startswith(prefix) for prefix in settings.emergency_branch_prefixes
    )
    linked = tickets.ticket_keys(settings.ticket_pattern, pull.get("title"), head_ref, pull.get("body"))
    results = [{"name": name, "conclusion": _conclusion(name, check_runs, statuses)} for name in required]
    environments = sorted({str(d["environment"]) for d in deployments or [] if d.get("environment")})
    merged_by = _login(pull.get("merged_by"))
    return record(
        "changes",
        id=f"{repository}#{pull['number']}",
        source="github",
        url=pull.get("html_url"),
        title=pull.get("title") or "",
        status="merged" if merged_at else str(pull.get("state")),
        author=author.label if author else None,
        created_at=parse_time(pull.get("created_at")),
        approvers=shown,
        **tickets.approval_facts(author, effective, merged_at, emergency, settings.emergency_review_days, now),
        merged_at=merged_at,
        merged_by=merged_by.label if merged_by else None,
        merge_commit=pull.get("merge_commit_sha"),
        linked_tickets=linked,
        has_ticket=bool(linked),
        emergency=emergency,
        change_type=None,
        issue_type=None,
        assignee=None,
        environment=", ".join(environments) or settings.environment,
        transitions=None,
        required_checks=results,
        required_checks_succeeded=all(r["conclusion"] in PASSING_CONCLUSIONS for r in results) if results else None,
        deployments=None
        if deployments is None
        else [
            {
                "id": deployment.get("id"),
                "environment": deployment.get("environment"),
                "created_at": parse_time(deployment.get("created_at")),
                "creator": (_login(deployment.get("creator")) or Person("unknown")).label,
            }
            for deployment in deployments
        ],
    )


def _approvals(reviews: list[dict[str, Any]], merged_at: datetime | None) -> tuple[list[Approval], list[dict]]:
    """Approvals that count (state at merge APPROVED, or approved after the merge) and every approval shown.

    Reviews are taken in time order; COMMENTED and PENDING reviews change no reviewer's state, and a
    dismissed review (GitHub turns the dismissed review's own state into DISMISSED) approves nothing.
    """
    timed = sorted(
        ((parse_time(review.get("submitted_at")), review) for review in reviews if review.get("submitted_at")),
        key=lambda pair: pair[0],
    )
    state: dict[str, tuple[str, datetime, Person]] = {}
    after: list[Approval] = []
    shown: list[dict[str, Any]] = []
    for moment, review in timed:
        who = _login(review.get("user"))
        kind = review.get("state")
        if who is None or kind not in _STATEFUL_REVIEWS:
            continue
        if kind == "APPROVED":
            after_merge = merged_at is not None and moment > merged_at
            shown.append(
                {
                    "approver": who.label,
                    "approved_at": moment,
                    "via": "review after merge" if after_merge else "review",
                }
            )
        if merged_at is not None and moment > merged_at:
            if kind == "APPROVED":
                after.append(Approval(who, moment, "review after merge"))
            continue
        state[who.id] = (kind, moment, who)
    before = [Approval(who, moment, "review") for kind, moment, who in state.values() if kind == "APPROVED"]
    return before + after, shown


def _conclusion(name: str, check_runs: list[dict[str, Any]], statuses: list[dict[str, Any]]) -> str:
    """The latest check run of that name (its conclusion, or its status while running), else the commit status."""
    runs = [run for run in check_runs if run.get("name") == name]
    if runs:
        latest = max(runs, key=lambda run: (run.get("started_at") or "", run.get("id") or 0))
        return str(latest.get("conclusion") or latest.get("status") or "unknown")
    for status in statuses:  # newest first, as GitHub lists them
        if status.get("context") == name:
            return str(status.get("state") or "unknown")
    return "missing"
