"""Merged GitHub pull requests as changes: reviews, merger, merge commit, linked tickets, checks, deployments.

REST API v3 (``X-GitHub-Api-Version: 2022-11-28``) on github.com or GitHub Enterprise Server
(``api_url``, e.g. ``https://ghe.example.com/api/v3``), a token as bearer (the connection's
password). Per repository: ``GET /repos/{repo}/pulls?state=closed&sort=updated&direction=desc``
followed through ``Link: rel="next"`` until the window is passed; per merged pull request in
the window ``GET /pulls/{n}`` (merged_by is only there), ``/pulls/{n}/reviews``, where a review
was dismissed ``/issues/{n}/timeline`` (when it was dismissed), and where the base branch has
required checks ``/commits/{head}/check-runs`` and ``/commits/{head}/status``; with
``deployments: true``, ``/deployments?sha={merge commit}``. GitHub's own count of the population
comes from ``GET /search/issues`` (``is:pr is:merged`` in the window) and is the reported total.
The record schema is in :mod:`soc2_evidence.collectors.support.tickets`; beside the population,
``query-changes.json`` (a query card) says how it was selected, so an auditor can re-perform it.

Every response is decoded into the declared types below before it is used: a record that does not
fit (a ``head`` that is a string, a pull request without ``number``, a time that is not RFC 3339
with a zone or falls outside 1970..2999, an id beyond 64 bits) is a :class:`PayloadError` naming
the source, the page, the record and the field. It is permanent: GitHub sends the same again.

A reviewer's state at merge is their last review (approve, request changes) submitted before the
merge, in the state it had at the merge: GitHub rewrites a dismissed review's own ``state`` to
DISMISSED and keeps its ``submitted_at``, so the dismissal's time comes from the timeline's
``review_dismissed`` event. An approval dismissed after the merge approved the merge; one
dismissed before it did not, nor one whose dismissal GitHub gives no time for. Only reviewers
whose state at merge is APPROVED count as approving it. Approvals submitted after the merge (and
not dismissed) are the after-the-fact review of an emergency change.

Linked tickets are the keys people write: in the title, the head branch and the pull request's
own text. Text the author quotes or hides is not theirs: block quotes, code blocks and spans,
HTML comments and collapsed ``<details>`` (where dependabot puts upstream release notes).

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
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, NamedTuple, TypeVar
from urllib.parse import parse_qs, quote, urlsplit

import msgspec

from soc2_evidence.collectors import CollectContext
from soc2_evidence.collectors.support import tickets
from soc2_evidence.collectors.support.http import HttpClient, PageGuard, RetryPolicy, next_link
from soc2_evidence.collectors.support.query_card import QueryCard, add_query_card
from soc2_evidence.collectors.support.tickets import Approval, Person, Window, record
from soc2_evidence.core import config
from soc2_evidence.core.config import SourceConfig
from soc2_evidence.core.errors import CollectorError, PayloadError, TransientCollectorError
from soc2_evidence.core.evidence import rfc3339
from soc2_evidence.core.staging import BundleWriter

KIND = "github"
FAMILY = "tickets"
VERSION = "1.1.0"
DATASETS = tickets.datasets(KIND, ("changes",))
DEFAULT_API_URL = "https://api.github.com"
PASSING_CONCLUSIONS = ("success", "neutral", "skipped")
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)  # exclusive: a time must leave room for arithmetic
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_STATEFUL_REVIEWS = ("APPROVED", "CHANGES_REQUESTED", "DISMISSED")  # a dismissal of unknown time too
T = TypeVar("T")


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


# --- what GitHub sends, as declared types --------------------------------------------------------

Time = Annotated[datetime, msgspec.Meta(tz=True)]  # RFC 3339 with a zone, as GitHub writes every time
Id = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Number = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]


class Payload(msgspec.Struct, kw_only=True):
    """A GitHub object, declaring only the fields read (GitHub adds fields freely).

    Times are held in UTC and bounded to 1970..2999, so no comparison or ``+ timedelta`` later can
    overflow (``0001-01-01T00:00:00+01:00`` is a valid RFC 3339 time that Python cannot hold in UTC).
    """

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, datetime):
                setattr(self, name, _bounded_time(name, value))


def _bounded_time(name: str, value: datetime) -> datetime:
    try:
        moment = value.astimezone(UTC)
    except OverflowError:
        moment = None
    if moment is None or not EARLIEST <= moment < LATEST:
        raise ValueError(f"`{name}` {value.isoformat()} is outside {EARLIEST.year}..{LATEST.year - 1}")
    return moment


class User(Payload):
    login: str


class Repo(Payload):
    full_name: str


class Head(Payload):
    ref: str
    sha: str


class Base(Payload):
    ref: str
    repo: Repo | None = None


class Label(Payload):
    name: str


class ListedPull(Payload):
    """A pull request as ``GET /pulls`` lists it: enough to tell whether it is in the window."""

    number: Number
    updated_at: Time
    merged_at: Time | None
    user: User | None


class Pull(ListedPull):
    """``GET /pulls/{n}``: the listed fields and ``merged_by``, which only the single pull request has."""

    title: str
    state: str
    head: Head
    base: Base
    html_url: str | None = None
    body: str | None = None
    labels: list[Label] = []
    created_at: Time | None = None
    merge_commit_sha: str | None = None
    merged_by: User | msgspec.UnsetType | None = msgspec.UNSET


class Review(Payload):
    id: Id
    user: User | None
    state: Literal["APPROVED", "CHANGES_REQUESTED", "COMMENTED", "DISMISSED", "PENDING"]
    submitted_at: Time | None = None  # a pending review has none


class DismissedReview(Payload):
    state: str  # the review's state before it was dismissed, lower case ("approved")
    review_id: Id


class TimelineEvent(Payload):
    """One event of an issue's timeline; only ``review_dismissed`` events are read."""

    event: str
    node_id: str | None = None
    created_at: Time | None = None
    dismissed_review: DismissedReview | None = None


class CheckRun(Payload):
    id: Id
    name: str
    status: str
    conclusion: str | None = None
    started_at: Time | None = None


class CommitStatus(Payload):
    context: str
    state: str


class CombinedStatus(Payload):
    statuses: list[CommitStatus]


class RequiredCheck(Payload):
    context: str


class RequiredStatusChecks(Payload):
    contexts: list[str] = []
    checks: list[RequiredCheck] = []


class Deployment(Payload):
    id: Id
    environment: str | None = None
    created_at: Time | None = None
    creator: User | None = None


class SearchCount(Payload):
    total_count: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
    incomplete_results: bool


class ExportedPull(Pull):
    """A pull request in a ``github_json`` export: the API's fields with its reviews and checks inside."""

    reviews: list[Review] = []
    timeline: list[TimelineEvent] = []
    check_runs: list[CheckRun] = []
    statuses: list[CommitStatus] = []
    deployments: list[Deployment] | None = None
    required_checks: list[str] | None = None


def decode(kind: type[T], data: Any, where: str) -> T:
    """``data`` (decoded JSON) as ``kind``, else a permanent :class:`PayloadError` naming ``where`` and the field."""
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as error:
        raise PayloadError(f"{where}: {error}") from None


class Dismissal(NamedTuple):
    at: datetime
    state: str  # upper case, as reviews write it: the state the dismissal took away


def dismissals(events: list[TimelineEvent], where: str) -> dict[int, Dismissal]:
    """When each dismissed review was dismissed, and what it was before, from timeline events."""
    found: dict[int, Dismissal] = {}
    for index, event in enumerate(events):
        if event.event != "review_dismissed":
            continue
        if event.dismissed_review is None or event.created_at is None:
            raise PayloadError(
                f"{where}: event {index}: a review_dismissed event without dismissed_review or created_at"
            )
        found[event.dismissed_review.review_id] = Dismissal(event.created_at, event.dismissed_review.state.upper())
    return found


# --- collecting ----------------------------------------------------------------------------------


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
    add_query_card(writer, reader.query_card())
    if not window.full:
        writer.add_json(tickets.WATERMARK_ITEM, window.to_dict(), description="Where the next nightly run starts")


def control_expectations(dataset):
    return tickets.control_expectations(dataset)


class PullRequests:
    """The merged pull requests of every repository in the window, as change records, one at a time."""

    def __init__(self, client: HttpClient, settings: GitHubOptions, window: Window, now: datetime) -> None:
        self.client, self.settings, self.window, self.now = client, settings, window, now
        self.total = 0
        self.archived = 0
        self.summaries: list[dict[str, Any]] = []
        self._required: dict[tuple[str, str], tuple[str, ...]] = {}

    @property
    def source(self) -> str:
        return self.client.source

    def changes(self) -> Iterator[dict[str, Any]]:
        for repository in self.settings.repositories:
            query = self._search_query(repository)
            reported = self._count(repository, query)
            self.total += reported
            summary = {"repository": repository, "search": query, "reported_total": reported, "pages": 0, "rows": 0}
            self.summaries.append(summary)
            for listed in self._merged_in_window(repository, summary):
                change = self._change(repository, listed)
                summary["rows"] += 1
                self.archived += 1
                yield change

    def query_card(self) -> QueryCard:
        """How the population was selected, per repository, with GitHub's count beside the rows archived."""
        moment = "merged_at" if self.window.full else "updated_at"
        notes = [
            f"Closed pull requests are listed newest-updated first until one was last updated before "
            f"{rfc3339(self.window.start)}; those merged with {moment} in [start, end) are the population.",
            "reported_total is GitHub's search count (GET /search/issues with the query shown, per repository).",
        ]
        if self.archived != self.total:
            notes.append(f"{self.archived} rows archived, but GitHub's search reported {self.total}.")
        listing = {"state": "closed", "sort": "updated", "direction": "desc", "per_page": self.settings.page_size}
        return QueryCard(
            population="changes",
            endpoint=f"GET {self.client.url('repos/{owner}/{name}/pulls')}",
            query="; ".join(summary["search"] for summary in self.summaries),
            parameters={
                "repositories": list(self.settings.repositories),
                "listing": {**listing, **({"base": self.settings.base} if self.settings.base else {})},
                "window": self.window.to_dict(),
                "selected_by": moment,
                "per_repository": self.summaries,
            },
            pages_read=sum(summary["pages"] for summary in self.summaries),
            reported_total=self.total,
            rows_archived=self.archived,
            notes=notes,
        )

    def _search_query(self, repository: str) -> str:
        last = (self.window.end - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        first = self.window.start.strftime("%Y-%m-%dT%H:%M:%SZ")
        qualifier = "merged" if self.window.full else "updated"
        query = f"repo:{repository} is:pr is:merged {qualifier}:{first}..{last}"
        return f"{query} base:{self.settings.base}" if self.settings.base else query

    def _count(self, repository: str, query: str) -> int:
        """GitHub's search count of the population: merged pull requests in the window."""
        page = f"{repository} search count"
        data = self.client.get("search/issues", {"q": query, "per_page": 1}, page=page).data
        count = decode(SearchCount, data, f"source {self.source}: {page}")
        if count.incomplete_results:
            raise TransientCollectorError(
                f"source {self.source}: {page}: GitHub reports incomplete_results "
                "(its search timed out), so its total cannot be trusted; the task's retry asks again"
            )
        return count.total_count

    def _merged_in_window(self, repository: str, summary: dict[str, Any]) -> Iterator[ListedPull]:
        """Closed pull requests newest-updated first, until one was last updated before the window."""
        params = {"state": "closed", "sort": "updated", "direction": "desc", "per_page": self.settings.page_size}
        if self.settings.base:
            params["base"] = self.settings.base
        url = self.client.url(f"repos/{repository}/pulls", params)
        for _, pulls in self._pages(url, f"{repository} pull requests", ListedPull, "pull request"):
            summary["pages"] += 1
            for pull in pulls:
                if pull.updated_at < self.window.start:
                    return
                if pull.merged_at is None:
                    continue
                moment = pull.merged_at if self.window.full else pull.updated_at
                if self.window.start <= moment < self.window.end:
                    yield pull

    def _change(self, repository: str, listed: ListedPull) -> dict[str, Any]:
        number = listed.number
        name = f"{repository}#{number}"
        response = self.client.get(f"repos/{repository}/pulls/{number}", page=name)
        pull = decode(Pull, response.data, f"source {self.source}: {name}")
        if pull.merged_by is msgspec.UNSET:
            raise PayloadError(f"source {self.source}: {name}: no 'merged_by' in the response")
        reviews = self._all(f"repos/{repository}/pulls/{number}/reviews", f"{name} reviews", Review, "review")
        dismissed = {}
        if any(review.state == "DISMISSED" for review in reviews):
            label = f"{name} timeline"
            events = self._all(f"repos/{repository}/issues/{number}/timeline", label, TimelineEvent, "event")
            dismissed = dismissals(events, f"source {self.source}: {label}")
        required = self._required_checks(repository, pull.base.ref)
        check_runs: list[CheckRun] = []
        statuses: list[CommitStatus] = []
        if required:
            head = quote(pull.head.sha, safe="")
            check_runs = self._all(
                f"repos/{repository}/commits/{head}/check-runs",
                f"{name} check runs",
                CheckRun,
                "check run",
                items_key="check_runs",
            )
            page = f"{name} status"
            status = self.client.get(f"repos/{repository}/commits/{head}/status", {"per_page": 100}, page=page)
            statuses = decode(CombinedStatus, status.data, f"source {self.source}: {page}").statuses
        deployments = None
        if self.settings.deployments and pull.merge_commit_sha:
            deployments = self._all(
                f"repos/{repository}/deployments",
                f"{name} deployments",
                Deployment,
                "deployment",
                params={"sha": pull.merge_commit_sha},
            )
        return normalise_pull(
            self.settings,
            repository,
            pull,
            reviews,
            dismissed,
            required=required,
            check_runs=check_runs,
            statuses=statuses,
            deployments=deployments,
            now=self.now,
        )

    def _all(
        self, path: str, label: str, kind: type[T], noun: str, *, params=None, items_key: str | None = None
    ) -> list[T]:
        url = self.client.url(path, {**(params or {}), "per_page": 100})
        return [item for _, items in self._pages(url, label, kind, noun, items_key=items_key) for item in items]

    def _pages(
        self, url: str, label: str, kind: type[T], noun: str, *, items_key: str | None = None
    ) -> Iterator[tuple[str, list[T]]]:
        """Pages of a listing through ``Link: rel="next"``, each item decoded as ``kind``.

        A loop, a repeated page or a skipped page fails, as does an item that does not fit: named by
        its page (number and URL), its index on the page and, for a pull request, its number.
        """
        guard = PageGuard(self.source, label, self.settings.max_pages)
        next_url: str | None = url
        while next_url:
            page = guard.next(next_url)
            response = self.client.request("GET", next_url, page=page)
            where = f"source {self.source}: {page} (GET {_path_and_query(next_url)})"
            data = response.data
            raw = data.get(items_key) if items_key and isinstance(data, dict) else data
            if not isinstance(raw, list):
                expected = f"an object with a list under {items_key!r}" if items_key else "a list"
                raise PayloadError(f"{where}: expected {expected}, got {_json_type(data)}")
            items = [decode(kind, item, f"{where}: {_item_name(noun, index, item)}") for index, item in enumerate(raw)]
            guard.items([_identity(item) for item in items])
            yield page, items
            next_url = next_link(response.headers)
            number = _page_number(next_url)
            if number is not None and number != guard.pages + 1:
                raise guard.fail(
                    f"the next link points to page {number}, not {guard.pages + 1}: a page would be missing"
                )

    def _required_checks(self, repository: str, branch: str) -> tuple[str, ...]:
        """Configured required checks, else the branch protection's (none when the branch is unprotected)."""
        if self.settings.required_checks is not None:
            return self.settings.required_checks
        if (repository, branch) not in self._required:
            page = f"{repository} {branch} required checks"
            response = self.client.get(
                f"repos/{repository}/branches/{quote(branch, safe='')}/protection/required_status_checks",
                page=page,
                allow=(404,),
            )
            names: list[str] = []
            if response.status == 200:
                protection = decode(RequiredStatusChecks, response.data, f"source {self.source}: {page}")
                names = [check.context for check in protection.checks] + protection.contexts
            self._required[(repository, branch)] = tuple(dict.fromkeys(filter(None, names)))
        return self._required[(repository, branch)]


def _identity(item: Any) -> Any:
    """What tells two items of a listing apart, for the repeated-page guard."""
    for name in ("id", "number", "node_id"):
        value = getattr(item, name, None)
        if value is not None:
            return value
    return msgspec.json.encode(item)


def _item_name(noun: str, index: int, item: Any) -> str:
    """``pull request 3 (#42)``: its place on the page, and its number when that is one."""
    number = item.get("number") if isinstance(item, dict) else None
    known = type(number) is int and 0 < number < 2**31
    return f"{noun} {index}" + (f" (#{number})" if known else "")


def _json_type(data: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(data), "a number"
    )


def _path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def _page_number(url: str | None) -> int | None:
    if not url:
        return None
    values = parse_qs(urlsplit(url).query).get("page")
    return int(values[0]) if values and values[0].isdigit() and len(values[0]) < 10 else None


# --- one pull request as a change record ---------------------------------------------------------


def _person(user: User | msgspec.UnsetType | None) -> Person | None:
    return Person(user.login) if isinstance(user, User) and user.login else None


def normalise_pull(
    settings: GitHubOptions,
    repository: str,
    pull: Pull,
    reviews: list[Review],
    dismissed: dict[int, Dismissal],
    *,
    required: tuple[str, ...],
    check_runs: list[CheckRun],
    statuses: list[CommitStatus],
    deployments: list[Deployment] | None,
    now: datetime,
) -> dict[str, Any]:
    """One merged pull request as a change record (from the API or a JSON export)."""
    author = _person(pull.user)
    effective, shown = _approvals(reviews, dismissed, pull.merged_at)
    head_ref = pull.head.ref
    labels = {label.name.casefold() for label in pull.labels}
    emergency = bool(labels & {label.casefold() for label in settings.emergency_labels}) or any(
        head_ref.startswith(prefix) for prefix in settings.emergency_branch_prefixes
    )
    linked = tickets.ticket_keys(settings.ticket_pattern, pull.title, head_ref, own_text(pull.body))
    results = [{"name": name, "conclusion": _conclusion(name, check_runs, statuses)} for name in required]
    environments = sorted({d.environment for d in deployments or [] if d.environment})
    merged_by = _person(pull.merged_by)
    return record(
        "changes",
        id=f"{repository}#{pull.number}",
        source="github",
        url=pull.html_url,
        title=pull.title,
        status="merged" if pull.merged_at else pull.state,
        author=author.label if author else None,
        created_at=pull.created_at,
        approvers=shown,
        **tickets.approval_facts(author, effective, pull.merged_at, emergency, settings.emergency_review_days, now),
        merged_at=pull.merged_at,
        merged_by=merged_by.label if merged_by else None,
        merge_commit=pull.merge_commit_sha,
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
                "id": deployment.id,
                "environment": deployment.environment,
                "created_at": deployment.created_at,
                "creator": (_person(deployment.creator) or Person("unknown")).label,
            }
            for deployment in deployments
        ],
    )


def _approvals(
    reviews: list[Review], dismissed: dict[int, Dismissal], merged_at: datetime | None
) -> tuple[list[Approval], list[dict[str, Any]]]:
    """Approvals that count (state at merge APPROVED, or approved after the merge) and every approval shown.

    Reviews are taken in time order; COMMENTED and PENDING reviews change no reviewer's state. A
    dismissed review had its original state until its dismissal and none after it; one whose
    dismissal the timeline does not date stands as DISMISSED, approving nothing.
    """
    timed = sorted((review for review in reviews if review.submitted_at), key=lambda review: review.submitted_at)
    state: dict[str, tuple[bool, datetime, Person]] = {}  # reviewer -> (approving at the merge, when, who)
    after: list[Approval] = []
    shown: list[dict[str, Any]] = []
    for review in timed:
        who, moment = _person(review.user), review.submitted_at
        dismissal = dismissed.get(review.id) if review.state == "DISMISSED" else None
        original = dismissal.state if dismissal else review.state
        if who is None or original not in _STATEFUL_REVIEWS:
            continue
        after_merge = merged_at is not None and moment > merged_at
        if original == "APPROVED":
            via = "review after merge" if after_merge else "review"
            via += f", dismissed {rfc3339(dismissal.at)}" if dismissal else ""
            shown.append({"approver": who.label, "approved_at": moment, "via": via})
        if after_merge:
            if review.state == "APPROVED":
                after.append(Approval(who, moment, "review after merge"))
            continue
        dismissed_after_merge = dismissal is not None and merged_at is not None and dismissal.at > merged_at
        state[who.id] = (review.state == "APPROVED" or (original == "APPROVED" and dismissed_after_merge), moment, who)
    before = [Approval(who, moment, "review") for approving, moment, who in state.values() if approving]
    return before + after, shown


def _conclusion(name: str, check_runs: list[CheckRun], statuses: list[CommitStatus]) -> str:
    """The latest check run of that name (its conclusion, or its status while running), else the commit status."""
    runs = [run for run in check_runs if run.name == name]
    if runs:
        latest = max(runs, key=lambda run: (run.started_at or EARLIEST, run.id))
        return latest.conclusion or latest.status
    for status in statuses:  # newest first, as GitHub lists them
        if status.context == name:
            return status.state
    return "missing"


# --- the pull request's own text -----------------------------------------------------------------

_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
# Elements whose content is not the author's own words: collapsed or quoted text and code.
_HIDDEN_TAG = re.compile(r"<(/?)(details|blockquote|pre|code|table)\b[^<>]*>", re.I)
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")  # [^<>]: a stray "<" ends the attempt, so a scan stays linear
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_QUOTE = re.compile(r" {0,3}>")
_LIST_ITEM = re.compile(r" {0,3}(?:[-*+]|\d{1,9}[.)])(?:\s|$)")
_INDENTED = re.compile(r"(?: {4}|\t)")
_CODE_SPAN = re.compile(r"(`+)[^`]+\1")


def own_text(body: str | None) -> str:
    """The words of a pull request body its author wrote, as GitHub Markdown renders them.

    Dropped: HTML comments (the template's hints), ``<details>``, ``<blockquote>``, ``<pre>``,
    ``<code>`` and table elements (nested ones whole; one left open runs to the end, as GitHub
    renders it), Markdown block quotes (with their lazy continuation lines), fenced and indented
    code blocks, and code spans. Tags are removed and their text kept. Every step is one linear
    scan: a body is up to 65,536 characters of anyone's making.
    """
    if not body:
        return ""
    text = _visible_html(_HTML_COMMENT.sub(" ", body))
    kept: list[str] = []
    fence: str | None = None
    quoted = code = False
    in_list = False
    previous_blank = True
    for line in text.splitlines():
        blank = not line.strip()
        if fence is not None:
            closing = _FENCE.match(line)
            if closing and closing[1][0] == fence[0] and len(closing[1]) >= len(fence) and not line.strip(" `~"):
                fence = None
            continue
        if opening := _FENCE.match(line):
            fence = opening[1]
            continue
        if _QUOTE.match(line) or (quoted and not blank):
            quoted = True
            continue
        quoted = False
        if not blank and _INDENTED.match(line) and (code or (previous_blank and not in_list)):
            code = True
            continue
        code = False
        if not blank and not _INDENTED.match(line):
            in_list = bool(_LIST_ITEM.match(line))
        previous_blank = blank
        kept.append(line)
    return _TAG.sub(" ", _CODE_SPAN.sub(" ", "\n".join(kept)))


def _visible_html(text: str) -> str:
    """``text`` without the content of hidden elements, counting each element's nesting depth."""
    depth: dict[str, int] = {}
    visible: list[str] = []
    position = 0
    for tag in _HIDDEN_TAG.finditer(text):
        if not any(depth.values()):
            visible.append(text[position : tag.start()])
        name = tag[2].lower()
        depth[name] = max(0, depth.get(name, 0) + (-1 if tag[1] else 1))
        position = tag.end()
    if not any(depth.values()):
        visible.append(text[position:])
    return " ".join(visible)
