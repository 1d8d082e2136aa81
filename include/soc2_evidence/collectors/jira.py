"""Jira populations (changes, access reviews, incidents) from Jira Cloud or Data Center, with changelogs.

Cloud: ``GET /rest/api/3/search/jql`` (enhanced search: ``nextPageToken``/``isLast``, no total),
the total from ``POST /rest/api/3/search/approximate-count``, e-mail + API token (basic auth:
the connection's login and password). Data Center: ``GET /rest/api/2/search`` (``startAt``,
``maxResults``, ``total``), a personal access token as bearer (the connection's password).
Both with ``expand=changelog``; a changelog longer than the search embeds (Cloud: 40
histories) is read whole from ``/rest/api/3/issue/{key}/changelog`` (Cloud) or
``/rest/api/2/issue/{key}?expand=changelog`` (Data Center). The records' schema is in
:mod:`soc2_evidence.collectors.support.tickets`.

Options (:class:`Options`): ``conn_id`` (required), ``url`` (else the connection's host),
``deployment`` (``cloud``/``datacenter``; default by host), the paging, HTTP and window options of
:class:`soc2_evidence.collectors.support.tickets.ApiOptions`, and ``populations``: a mapping of
``changes``/``access_reviews``/``incidents`` (:data:`POPULATION_OPTIONS`) to

- ``jql`` (required; no ``ORDER BY``: the collector orders by key); access reviews and incidents
  also ``period_field`` (``created``, ``updated`` or ``resolved``: the date that puts a record in a
  full period; default ``resolved`` for access reviews, ``created`` for incidents);
- ``fields``: Jira field ids of the roles. Changes: ``approver`` (an "approved by" user field:
  each change of it in the changelog is an approval by the user it names, when it was set),
  ``environment``, ``change_type``. Access reviews: ``system``, ``reviewer`` (default
  ``assignee``), ``period_start``, ``period_end``, ``decisions``. Incidents: ``severity`` (default
  ``priority``), ``post_mortem``;
- changes only: ``approved_statuses`` (default ``[Approved]``: a transition into one is an
  approval by whoever made it), ``implemented_statuses`` (default ``[Done, Deployed, Closed]``:
  the first transition into one is the merge), ``emergency_values`` (change type values of an
  emergency; default ``[Emergency]``), ``emergency_review_days`` (default 5).

A population not configured is written empty with a reported total of 0; ``populations.json``
says which were configured, with their JQL and the pages read.

Selection is complete by construction. A change belongs to the period in which it was done: its
first transition into an implemented status (else, with no such transition, its resolution date
while its status is implemented), whatever ``resolution``/``resolutiondate`` say; 13 of 17 done
changes of a real site had no resolution date, and selecting by ``resolved`` archived 4 of them.
So a full period of changes selects every issue *updated* since the period began (a transition
updates the issue) and keeps, locally, those done in the period. Jira reads a JQL date
(``"yyyy-MM-dd HH:mm"``) in the API user's time zone, which ``/myself`` gives (``timeZone``): every
JQL date is written in that zone, widened by ``JQL_MARGIN``, and the exact UTC bounds are applied
locally (incremental runs: ``updated`` in the window; access reviews and incidents: their
``period_field``). Candidates left out by that local filter are named in the population's query
card (``query-<population>.json``), which also carries the endpoint, JQL, parameters, pages read,
Jira's total and the rows archived; the total reported for the completeness check is Jira's
total less those named candidates.

Every response is decoded into the declared types below (:class:`CloudPage`, :class:`Issue`, ...).
A value that does not fit is a :class:`PayloadError` (permanent: no retry) naming the source, the
page (``startAt`` or ``nextPageToken``), the issue key and the field.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote
from zoneinfo import ZoneInfo

import msgspec

from soc2_evidence.collectors import CollectContext
from soc2_evidence.collectors.support import tickets
from soc2_evidence.collectors.support.http import HttpClient, PageGuard, base_url_of, read_ahead
from soc2_evidence.collectors.support.query_card import QueryCard, add_query_card
from soc2_evidence.collectors.support.tickets import Approval, Person, Window, parse_time, record
from soc2_evidence.core import config
from soc2_evidence.core.config import SourceConfig
from soc2_evidence.core.errors import CollectorError, PayloadError
from soc2_evidence.core.evidence import rfc3339
from soc2_evidence.core.staging import BundleWriter

KIND = "jira"
FAMILY = "tickets"
VERSION = "2.0.0"
DATASETS = tickets.datasets(KIND)
CHANGELOG_PAGE_SIZE = 100
# JQL dates are minutes in the user's zone; the window is widened by this much and then cut exactly in UTC.
JQL_MARGIN = timedelta(hours=1)
# The JQL date fields a period can be read by, and the issue field that holds each.
PERIOD_FIELDS = {"created": "created", "updated": "updated", "resolved": "resolutiondate"}
PeriodField = Literal["created", "updated", "resolved"]
STANDARD_FIELDS = (
    "summary",
    "status",
    "issuetype",
    "reporter",
    "creator",
    "assignee",
    "priority",
    "created",
    "updated",
    "resolutiondate",
    "issuelinks",
)
T = TypeVar("T")


# --- Jira's payloads, as declared types -----------------------------------------------------------
# Unknown keys are ignored (Jira adds fields over time); a known key of the wrong type, a missing
# required key, or a count outside 0..MAX_COUNT is refused.

MAX_COUNT = 10**9
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]
IssueKey = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]


class Payload(msgspec.Struct, rename="camel", frozen=True):
    """Base of Jira's JSON objects: names are Jira's camelCase."""


class User(Payload):
    """Cloud names a user by ``accountId``, Data Center by ``name``/``key``."""

    account_id: str | None = None
    name: str | None = None
    key: str | None = None
    email_address: str | None = None
    display_name: str | None = None


class Named(Payload):
    """A status, priority or issue type."""

    name: str | None = None


class ChangeItem(Payload):
    field: str | None = None
    field_id: str | None = None
    from_: str | None = msgspec.field(default=None, name="from")
    from_string: str | None = None
    to: str | None = None
    to_string: str | None = None


class History(Payload):
    created: str
    id: str | None = None
    author: User | None = None
    items: list[ChangeItem] = []


class Changelog(Payload):
    histories: list[History]
    start_at: Count = 0
    total: Count | None = None


class LinkedIssue(Payload):
    key: IssueKey


class IssueLink(Payload):
    outward_issue: LinkedIssue | None = None
    inward_issue: LinkedIssue | None = None


class StandardFields(Payload):
    """The fields every population reads; mapped fields are read from the raw ``fields`` by id."""

    summary: str | None = None
    status: Named | None = None
    issuetype: Named | None = None
    reporter: User | None = None
    creator: User | None = None
    assignee: User | None = None
    created: str | None = None
    updated: str | None = None
    resolutiondate: str | None = None
    issuelinks: list[IssueLink] = []


class Issue(Payload):
    key: IssueKey
    fields: StandardFields
    changelog: Changelog | None = None


@dataclass(frozen=True)
class JiraIssue:
    """A decoded issue, with its raw ``fields`` for the mapped (custom) field ids, whose types vary by site."""

    key: str
    fields: StandardFields
    raw_fields: dict[str, Any]
    changelog: Changelog | None


class CloudPage(Payload):
    """``GET /rest/api/3/search/jql``: no total; ``nextPageToken`` absent on the last page."""

    issues: list[Any]
    next_page_token: str | None = None
    is_last: bool | None = None


class DataCenterPage(Payload):
    """``GET /rest/api/2/search``."""

    issues: list[Any]
    start_at: Count
    total: Count


class ChangelogPage(Payload):
    """``GET /rest/api/3/issue/{key}/changelog``."""

    values: list[History]
    start_at: Count = 0
    total: Count | None = None
    is_last: bool | None = None


class IssueChangelog(Payload):
    """``GET /rest/api/2/issue/{key}?expand=changelog``, as far as the changelog goes."""

    changelog: Changelog


class ApproximateCount(Payload):
    count: Count


class Myself(Payload):
    """``GET /rest/api/{2,3}/myself``: the zone in which Jira reads this user's JQL dates."""

    time_zone: str


def decode(value: Any, kind: type[T], where: str) -> T:
    """``value`` as ``kind``, or a :class:`PayloadError` naming ``where`` and the field that does not fit."""
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as error:
        raise PayloadError(f"{where}: {_field_problem(error)}") from None


def decode_issue(raw: Any) -> JiraIssue:
    """One issue as Jira sent it (a search page, an export file); a ValueError names the field that does not fit."""
    try:
        issue = msgspec.convert(raw, Issue)
    except msgspec.ValidationError as error:
        raise ValueError(_field_problem(error)) from None
    return JiraIssue(issue.key, issue.fields, raw["fields"], issue.changelog)


def _field_problem(error: msgspec.ValidationError) -> str:
    """msgspec's "Expected `int`, got `str` - at `$.changelog.total`" as "field changelog.total: expected ..."."""
    problem, _, path = str(error).partition(" - at `$")
    problem = problem[:1].lower() + problem[1:]
    field = path.rstrip("`").lstrip(".")
    return f"field {field}: {problem}" if field else problem


class ChangeFields(config.Options):
    """Jira field ids of a change's roles; ``approver`` is an "approved by" user field."""

    approver: str | None = None
    environment: str | None = None
    change_type: str | None = None


class AccessReviewFields(config.Options):
    system: str | None = None
    reviewer: str | None = "assignee"
    period_start: str | None = None
    period_end: str | None = None
    decisions: str | None = None


class IncidentFields(config.Options):
    severity: str | None = "priority"
    post_mortem: str | None = None


class Population(config.Options):
    """How one population is selected: ``jql`` (no ORDER BY: the collector orders by key)."""

    jql: Annotated[str, msgspec.Meta(min_length=1)] | None = None

    def problems(self) -> Iterator[config.Problem]:
        if self.jql is not None and "order by" in self.jql.lower():
            yield config.Problem(("jql",), "the JQL must not have ORDER BY; the collector orders by key")


class ChangesPopulation(Population):
    """Changes; their period is when they were done (see the module doc), so they have no ``period_field``."""

    fields: ChangeFields = msgspec.field(default_factory=ChangeFields)
    approved_statuses: list[str] = msgspec.field(default_factory=lambda: ["Approved"])
    implemented_statuses: list[str] = msgspec.field(default_factory=lambda: ["Done", "Deployed", "Closed"])
    emergency_values: list[str] = msgspec.field(default_factory=lambda: ["Emergency"])
    emergency_review_days: config.NonNegativeInt = tickets.DEFAULT_EMERGENCY_REVIEW_DAYS


class AccessReviewsPopulation(Population):
    fields: AccessReviewFields = msgspec.field(default_factory=AccessReviewFields)
    period_field: PeriodField = "resolved"


class IncidentsPopulation(Population):
    fields: IncidentFields = msgspec.field(default_factory=IncidentFields)
    period_field: PeriodField = "created"


# The options of each population, by its name in ``populations`` (and an export file's ``population``).
POPULATION_OPTIONS: dict[str, type[Population]] = {
    "changes": ChangesPopulation,
    "access_reviews": AccessReviewsPopulation,
    "incidents": IncidentsPopulation,
}


class Populations(config.Options):
    changes: ChangesPopulation | None = None
    access_reviews: AccessReviewsPopulation | None = None
    incidents: IncidentsPopulation | None = None

    def problems(self) -> Iterator[config.Problem]:
        configured = [name for name in tickets.POPULATIONS if getattr(self, name) is not None]
        if not configured:
            yield config.Problem((), f"configure one or more of {', '.join(tickets.POPULATIONS)}")
        for name in configured:
            if getattr(self, name).jql is None:
                yield config.Problem((name,), "missing required key 'jql' (the JQL filter of the population)")


class Options(tickets.ApiOptions):
    conn_id: Annotated[str, msgspec.Meta(min_length=1, description="Airflow connection of the Jira site")]
    populations: Populations
    url: str | None = None
    deployment: Literal["cloud", "datacenter"] | None = None


@dataclass(frozen=True)
class PopulationSpec:
    """How one population is selected (JQL) and mapped (field ids, statuses) to the normalised schema."""

    name: str
    jql: str | None
    fields: dict[str, str | None]
    period_field: str | None  # None for changes: they belong to the period in which they were done
    approved_statuses: tuple[str, ...] = ()
    implemented_statuses: tuple[str, ...] = ()
    emergency_values: tuple[str, ...] = ()
    emergency_review_days: int = tickets.DEFAULT_EMERGENCY_REVIEW_DAYS

    @classmethod
    def of(cls, name: str, population: Population) -> PopulationSpec:
        return cls(
            name=name,
            jql=population.jql,
            fields=msgspec.structs.asdict(population.fields),
            period_field=getattr(population, "period_field", None),
            approved_statuses=tuple(getattr(population, "approved_statuses", ())),
            implemented_statuses=tuple(getattr(population, "implemented_statuses", ())),
            emergency_values=tuple(getattr(population, "emergency_values", ())),
            emergency_review_days=getattr(population, "emergency_review_days", tickets.DEFAULT_EMERGENCY_REVIEW_DAYS),
        )

    @functools.cached_property
    def emergency_folded(self) -> frozenset[str]:
        return frozenset(value.casefold() for value in self.emergency_values)

    @property
    def field_ids(self) -> list[str]:
        mapped = [value for value in self.fields.values() if value]
        return list(dict.fromkeys([*STANDARD_FIELDS, *mapped]))


def populations_of(populations: Populations) -> dict[str, PopulationSpec]:
    return {
        name: PopulationSpec.of(name, getattr(populations, name))
        for name in tickets.POPULATIONS
        if getattr(populations, name) is not None
    }


def collect(source: SourceConfig, writer: BundleWriter, context: CollectContext) -> None:
    options: Options = source.options
    specs = populations_of(options.populations)
    conn_id = options.conn_id
    connection = context.credentials.connection(conn_id)
    base_url = options.url or base_url_of(connection)
    if not base_url:
        raise CollectorError(f"source {source.name}: no Jira URL: set option 'url' or the host of {conn_id}")
    deployment = options.deployment or ("cloud" if ".atlassian.net" in base_url else "datacenter")
    page_size = options.page_size
    policy = options.retry_policy()
    client = HttpClient(
        source.name,
        base_url,
        headers=_auth_headers(source.name, deployment, connection),
        policy=policy,
        auth_hint=f"renew the {'API token' if deployment == 'cloud' else 'personal access token'} in connection "
        f"{conn_id!r}",
        ca_bundle=str(context.resolve_path(options.ca_bundle)) if options.ca_bundle else None,
        sleep=context.sleep,
        clock=lambda: context.now().timestamp(),  # rate-limit resets are dates: waits are measured on it
    )
    window = tickets.open_window(source.name, options, writer, context, "tickets")
    summaries = []
    try:
        zone = user_zone(client, deployment)
        for name in tickets.POPULATIONS:
            spec = specs.get(name)
            if spec is None:
                writer.add_jsonl(f"{name}.jsonl", [], description=f"{name}: not configured for this source")
                writer.report_total(name, 0)
                summaries.append({"population": name, "configured": False})
                continue
            search = JiraSearch(client, deployment, spec, window, zone, page_size=page_size, max_pages=policy.max_pages)
            browse = base_url.rstrip("/") + "/browse/"
            writer.add_jsonl(
                f"{name}.jsonl", search.records(browse, context.now()), description=tickets.DESCRIPTIONS[name]
            )
            writer.report_total(name, search.total - len(search.outside))
            add_query_card(writer, search.card())
            summaries.append(
                {
                    "population": name,
                    "configured": True,
                    "jql": search.jql,
                    "pages": search.pages,
                    "total": search.total,
                }
            )
    finally:
        client.close()
    writer.add_json(
        "populations.json",
        {"deployment": deployment, "url": base_url, "window": window.to_dict(), "populations": summaries},
        description="Which populations were read, with their JQL, pages and the totals Jira reported",
    )
    if not window.full:
        writer.add_json(tickets.WATERMARK_ITEM, window.to_dict(), description="Where the next nightly run starts")


def control_expectations(dataset):
    return tickets.control_expectations(dataset)


def _auth_headers(source: str, deployment: str, connection: Any) -> dict[str, str]:
    if not connection.password:
        raise CollectorError(f"source {source}: the Jira connection has no password (API token or PAT)")
    if deployment == "cloud":
        if not connection.login:
            raise CollectorError(f"source {source}: Jira Cloud needs the account e-mail as the connection's login")
        token = base64.b64encode(f"{connection.login}:{connection.password}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}
    return {"Authorization": f"Bearer {connection.password}"}


def user_zone(client: HttpClient, deployment: str) -> ZoneInfo:
    """The API user's time zone, in which Jira reads the JQL's dates (``/myself`` ``timeZone``)."""
    path = f"rest/api/{3 if deployment == 'cloud' else 2}/myself"
    where = f"source {client.source}: GET /{path}"
    myself = decode(client.get(path, page="the API user").data, Myself, where)
    if myself.time_zone not in _known_zones():  # a key is a path: "Etc" or "../x" would reach the filesystem
        raise PayloadError(
            f"{where}: timeZone {myself.time_zone[:60]!r} is not a known IANA zone, so JQL dates cannot be "
            "written in it; fix the API user's profile time zone"
        )
    return ZoneInfo(myself.time_zone)


@functools.cache
def _known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def jql_time(moment: datetime, zone: ZoneInfo) -> str:
    """A UTC moment as a JQL date literal, which Jira reads in the API user's zone."""
    return f'"{moment.astimezone(zone):%Y-%m-%d %H:%M}"'


class JiraSearch:
    """One population: its candidates page by page, each with its whole changelog, filtered exactly to the window.

    ``total`` is Jira's count of the candidates, ``outside`` the keys of candidates read and left out
    by the local filter (they are named in the query card).
    """

    def __init__(
        self,
        client: HttpClient,
        deployment: str,
        spec: PopulationSpec,
        window: Window,
        zone: ZoneInfo,
        *,
        page_size: int,
        max_pages: int,
    ) -> None:
        self.client, self.deployment, self.spec, self.window, self.zone = client, deployment, spec, window, zone
        self.page_size, self.max_pages = page_size, max_pages
        since, until = jql_time(window.start - JQL_MARGIN, zone), jql_time(window.end + JQL_MARGIN, zone)
        if not window.full:
            self.period_field, self.selection = "updated", f"updated >= {since} AND updated < {until}"
        elif spec.period_field is None:  # changes: done in the period, so updated since it began
            self.period_field, self.selection = None, f"updated >= {since}"
        else:
            field = spec.period_field
            self.period_field, self.selection = field, f"{field} >= {since} AND {field} < {until}"
        self.filter = f"({spec.jql}) AND {self.selection}"
        self.jql = f"{self.filter} ORDER BY key ASC"
        self.endpoint = "GET /rest/api/3/search/jql" if deployment == "cloud" else "GET /rest/api/2/search"
        # What every search page asks for; Cloud adds nextPageToken, Data Center startAt.
        self._search_params = {
            "jql": self.jql,
            "maxResults": page_size,
            "fields": ",".join(spec.field_ids),
            "expand": "changelog",
        }
        self.total = 0
        self.pages = 0
        self.rows = 0
        self.outside: list[str] = []
        self._guard = PageGuard(client.source, f"{spec.name} search", max_pages)

    def records(self, browse_url: str, now: datetime) -> Iterator[dict[str, Any]]:
        """The population's normalised records in the window; a value that cannot be read names its issue."""
        for where, issue in self.issues():
            try:
                row = issue_record(self.spec, issue, browse_url=browse_url, now=now)
                moment = self._moment(issue, row)
            except ValueError as error:
                raise PayloadError(f"{where}: issue {issue.key}: {error}") from None
            if moment is not None and self.window.start <= moment < self.window.end:
                self.rows += 1
                yield row
            else:
                self.outside.append(issue.key)

    def _moment(self, issue: JiraIssue, row: dict[str, Any]) -> datetime | None:
        """When the issue entered the window: its done time (changes, full period) or its period field."""
        if self.period_field is None:
            return row["merged_at"]
        return parse_time(getattr(issue.fields, PERIOD_FIELDS[self.period_field]))

    def card(self) -> QueryCard:
        """How this population was selected, for an auditor to re-perform (see ``support.query_card``)."""
        rule = (
            "done (first transition into " + ", ".join(self.spec.implemented_statuses) + ")"
            if self.period_field is None
            else PERIOD_FIELDS[self.period_field]
        )
        notes = [
            f"JQL dates are in the API user's time zone {self.zone.key}, widened by {JQL_MARGIN}; "
            f"kept: {rule} in [{rfc3339(self.window.start)}, {rfc3339(self.window.end)}) UTC",
            f"{len(self.outside)} candidates read were outside that window and not archived"
            + (": " + ", ".join(self.outside) if self.outside else ""),
        ]
        return QueryCard(
            population=self.spec.name,
            endpoint=self.endpoint,
            query=self.jql,
            parameters={key: value for key, value in self._search_params.items() if key != "jql"},
            pages_read=self.pages,
            reported_total=self.total,
            rows_archived=self.rows,
            notes=notes,
        )

    def issues(self) -> Iterator[tuple[str, JiraIssue]]:
        """Each candidate with its whole changelog, and where it was read ("changes search page 2 (startAt=10)")."""
        pages = self._cloud_pages() if self.deployment == "cloud" else self._datacenter_pages()
        # Issues are decoded here, not in the read-ahead thread: that thread only waits for the
        # network, and CPU work in it would contend for the GIL with the records written here.
        for where, page in read_ahead(pages):
            for index, raw in enumerate(page):
                try:
                    issue = decode_issue(raw)
                except ValueError as error:
                    raise PayloadError(f"{where}: issue {_key_of(raw, index)}: {error}") from None
                yield where, self._with_changelog(where, issue)
        self.pages = self._guard.pages

    def _where(self, page: str, cursor: str) -> str:
        return f"source {self.client.source}: {page} ({cursor})"

    def _cloud_pages(self) -> Iterator[tuple[str, list[Any]]]:
        where = f"source {self.client.source}: {self.spec.name} count"
        count = self.client.post(
            "rest/api/3/search/approximate-count", {"jql": self.filter}, page=f"{self.spec.name} count"
        )
        self.total = decode(count.data, ApproximateCount, where).count
        token = None
        while True:
            cursor = f"nextPageToken={token[:40]}" if token else "first page"
            page = self._guard.next(token or "")
            data = self.client.get(
                "rest/api/3/search/jql", {**self._search_params, "nextPageToken": token}, page=page
            ).data
            where = self._where(page, cursor)
            body = decode(data, CloudPage, where)
            yield where, self._issues_of(body.issues)
            token = body.next_page_token
            if body.is_last is True or (body.is_last is None and not token):
                return
            if not token:
                raise self._guard.fail("isLast is false but there is no nextPageToken: the next page is unreachable")

    def _datacenter_pages(self) -> Iterator[tuple[str, list[Any]]]:
        start_at, total = 0, None
        while True:
            page = self._guard.next(f"startAt={start_at}")
            data = self.client.get("rest/api/2/search", {**self._search_params, "startAt": start_at}, page=page).data
            where = self._where(page, f"startAt={start_at}")
            body = decode(data, DataCenterPage, where)
            issues = self._issues_of(body.issues)
            if body.start_at != start_at:
                raise self._guard.fail(f"asked for startAt {start_at}, got {body.start_at}: a page is missing")
            if total is not None and body.total != total:
                raise self._guard.fail(
                    f"the total changed from {total} to {body.total} while paging: issues moved; retry the run"
                )
            total = self.total = body.total
            yield where, issues
            start_at += len(issues)
            if start_at >= total:
                return
            if not issues:
                raise self._guard.fail(f"no issues at startAt {start_at}, Jira reports {total}: a page is missing")

    def _issues_of(self, raw: list[Any]) -> list[Any]:
        """A page's issues, undecoded; a page that repeats an earlier one is refused."""
        self._guard.items([_key_of(item, index) for index, item in enumerate(raw)])
        return raw

    def _with_changelog(self, where: str, issue: JiraIssue) -> JiraIssue:
        """The issue with its whole changelog: the search embeds only the first histories."""
        changelog = issue.changelog
        if changelog is None:
            raise PayloadError(f"{where}: issue {issue.key}: no changelog (expand=changelog)")
        total = changelog.total if changelog.total is not None else len(changelog.histories)
        if total <= len(changelog.histories):
            return issue
        key = issue.key
        if self.deployment == "cloud":
            histories = list(self._cloud_changelog(key))
        else:
            params = {"expand": "changelog", "fields": "summary"}
            page = f"changelog of {key}"
            data = self.client.get(f"rest/api/2/issue/{quote(key)}", params, page=page).data
            histories = decode(data, IssueChangelog, f"source {self.client.source}: {page}").changelog.histories
        if len(histories) < total:
            raise CollectorError(
                f"source {self.client.source}: changelog of {key}: {len(histories)} histories, Jira reports {total}"
            )
        return dataclasses.replace(issue, changelog=Changelog(histories=histories, total=len(histories)))

    def _cloud_changelog(self, key: str) -> Iterator[History]:
        guard = PageGuard(self.client.source, f"changelog of {key}", self.max_pages)
        start_at = 0
        while True:
            page = guard.next(str(start_at))
            data = self.client.get(
                f"rest/api/3/issue/{quote(key)}/changelog",
                {"startAt": start_at, "maxResults": CHANGELOG_PAGE_SIZE},
                page=page,
            ).data
            body = decode(data, ChangelogPage, self._where(page, f"startAt={start_at}"))
            guard.items([value.id for value in body.values])
            yield from body.values
            start_at += len(body.values)
            if (
                body.is_last is True
                or not body.values
                or start_at >= (body.total if body.total is not None else start_at)
            ):
                return


def _key_of(item: Any, index: int) -> str:
    """An undecoded issue's key for a message, else its place on the page."""
    key = item.get("key") if isinstance(item, dict) else None
    return key[:60] if isinstance(key, str) and key else f"#{index + 1} (no key)"


# --- normalisation -------------------------------------------------------------------------------
# Mapped fields are read from the raw ``fields`` by id: their types vary by site and field type, so
# each is read as one of the shapes Jira gives a field (text, number, option, user, list of those);
# anything else (a list of lists, an object of objects) is refused by name, never turned into text.

SCALARS = (str, int, float, bool)


def person(user: User | None) -> Person | None:
    """A Jira user (Cloud: accountId; Data Center: name/key) as a Person."""
    if user is None:
        return None
    ident = user.account_id or user.name or user.key or user.email_address
    if not ident and not user.display_name:
        return None
    return Person(ident or user.display_name, user.display_name)


def mapped_person(value: Any) -> Person | None:
    """A mapped user field: a user object, or a plain string id."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return Person(value)
    try:
        return person(msgspec.convert(value, User))
    except msgspec.ValidationError as error:
        raise ValueError(f"not a user: {_field_problem(error)}") from None


def text_value(value: Any) -> str | None:
    """A field value as text: an option's ``value``, a named object's ``name``, a list joined."""
    if isinstance(value, list):
        parts = [text for text in map(_scalar_text, value) if text]
        return ", ".join(parts) or None
    return _scalar_text(value)


def _scalar_text(value: Any) -> str | None:
    """One value (not a list): text, a number, a boolean, or an object's ``value``/``name``/... ."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        for key in ("value", "name", "displayName", "key", "id"):
            inner = value.get(key)
            if inner not in (None, ""):
                if not isinstance(inner, SCALARS):
                    raise ValueError(f"{key!r} of a field value is a {type(inner).__name__}, not text")
                return _scalar_text(inner)
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, SCALARS):
        return str(value)
    raise ValueError(f"a field value is a {type(value).__name__} inside a list, not text")


def text_values(value: Any) -> list[str]:
    """A multi-valued field (or multi-line text) as one string per value."""
    if value is None:
        return []
    if isinstance(value, list):
        return [text for text in map(_scalar_text, value) if text]
    if isinstance(value, str):
        return [line.strip() for line in value.splitlines() if line.strip()]
    text = _scalar_text(value)
    return [text] if text else []


def date_value(value: Any) -> str | datetime | None:
    """A date field as ``YYYY-MM-DD``, or as its UTC time (written RFC 3339) when it carries one."""
    text = text_value(value)
    if not text:
        return None
    if len(text) == 10:
        return date.fromisoformat(text).isoformat()
    return parse_time(text)


Move = tuple[datetime, Person | None, str | None, str | None]


def history_time(history: History) -> datetime:
    """When a change was made: every history has a time, and one without cannot be ordered or judged."""
    moment = parse_time(history.created)
    if moment is None:
        raise ValueError(f"history {history.id!r} has an empty 'created'")
    return moment


def transitions(histories: list[History]) -> list[Move]:
    """Status changes in time order, as ``(at, by, from, to)``."""
    moves = [
        (history_time(history), person(history.author), item.from_string, item.to_string)
        for history in histories
        for item in history.items
        if item.field == "status" or item.field_id == "status"
    ]
    moves.sort(key=lambda move: move[0])
    return moves


def normalise_issue(spec: PopulationSpec, raw: Any, *, browse_url: str | None, now: datetime) -> dict:
    """One issue as Jira sent it (an export file's entry) as a record; a ValueError names what does not fit."""
    return issue_record(spec, decode_issue(raw), browse_url=browse_url, now=now)


def issue_record(spec: PopulationSpec, issue: JiraIssue, *, browse_url: str | None, now: datetime) -> dict:
    """One decoded Jira issue as a record of ``spec``'s population."""
    key, fields = issue.key, issue.fields

    def mapped(role: str, read: Callable[[Any], T]) -> T:
        """The value of the field mapped to ``role``, read by ``read``; a value it cannot read names the field."""
        field_id = spec.fields[role]
        try:
            return read(issue.raw_fields.get(field_id) if field_id else None)
        except ValueError as error:
            raise ValueError(f"field fields.{field_id} ({role}): {error}") from None

    common = {
        "id": key,
        "source": "jira",
        "url": browse_url + key if browse_url else None,
        "title": fields.summary or "",
        "status": fields.status.name if fields.status else None,
    }
    if spec.name == "incidents":
        return record(
            "incidents",
            **common,
            severity=mapped("severity", text_value),
            opened_at=parse_time(fields.created),
            resolved_at=parse_time(fields.resolutiondate),
            post_mortem=mapped("post_mortem", text_value),
        )
    if spec.name == "access_reviews":
        reviewer = mapped("reviewer", mapped_person)
        return record(
            "access_reviews",
            **common,
            system=mapped("system", text_value),
            reviewer=reviewer.label if reviewer else None,
            period_start=mapped("period_start", date_value),
            period_end=mapped("period_end", date_value),
            completed_at=parse_time(fields.resolutiondate),
            decisions=mapped("decisions", text_values),
        )
    histories = issue.changelog.histories if issue.changelog else []
    moves = transitions(histories)
    approvals = [Approval(by, at, f"status:{to}") for at, by, _, to in moves if by and to in spec.approved_statuses]
    approver_field = spec.fields.get("approver")
    if approver_field:
        for history in histories:
            for item in history.items:
                value = item.to or item.to_string
                if value and approver_field in (item.field_id, item.field):
                    who = Person(value, item.to_string)
                    approvals.append(Approval(who, history_time(history), f"field:{approver_field}"))
    merged_at, merged_by = next(((at, by) for at, by, _, to in moves if to in spec.implemented_statuses), (None, None))
    if merged_at is None and common["status"] in spec.implemented_statuses:
        merged_at = parse_time(fields.resolutiondate)
    assignee = person(fields.assignee)
    return change_record(
        spec,
        common,
        author=person(fields.reporter) or person(fields.creator),
        created_at=parse_time(fields.created),
        approvals=approvals,
        merged_at=merged_at,
        merged_by=merged_by,
        linked=[key, *linked_keys(fields.issuelinks)],
        change_type=mapped("change_type", text_value),
        issue_type=fields.issuetype.name if fields.issuetype else None,
        assignee=assignee.label if assignee else None,
        environment=mapped("environment", text_value),
        moves=[{"from": old, "to": new, "by": by.label if by else None, "at": at} for at, by, old, new in moves],
        now=now,
    )


def change_record(
    spec: PopulationSpec,
    common: dict[str, Any],
    *,
    author: Person | None,
    created_at: datetime | None,
    approvals: list[Approval],
    merged_at: datetime | None,
    merged_by: Person | None,
    linked: list[str],
    change_type: str | None,
    issue_type: str | None,
    assignee: str | None,
    environment: str | None,
    moves: list[dict[str, Any]] | None,
    now: datetime,
) -> dict[str, Any]:
    """A Jira change record (from the API or an export); the change ticket is itself the linked ticket."""
    emergency = bool(change_type) and change_type.casefold() in spec.emergency_folded
    return record(
        "changes",
        **common,
        author=author.label if author else None,
        created_at=created_at,
        approvers=[approval.to_dict() for approval in approvals],
        **tickets.approval_facts(author, approvals, merged_at, emergency, spec.emergency_review_days, now),
        merged_at=merged_at,
        merged_by=merged_by.label if merged_by else None,
        merge_commit=None,
        linked_tickets=list(dict.fromkeys(linked)),
        has_ticket=bool(linked),
        emergency=emergency,
        change_type=change_type,
        issue_type=issue_type,
        assignee=assignee,
        environment=environment,
        transitions=moves,
        required_checks=None,
        required_checks_succeeded=None,
        deployments=None,
    )


def linked_keys(links: list[IssueLink]) -> list[str]:
    return [side.key for link in links for side in (link.outward_issue, link.inward_issue) if side is not None]
