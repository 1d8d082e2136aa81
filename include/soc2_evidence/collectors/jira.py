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

- ``jql`` (required; no ``ORDER BY``: the collector orders by key), ``period_field`` (the JQL
  date field of a full period: ``resolved`` for changes and access reviews, ``created`` for
  incidents);
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
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

import msgspec

from soc2_evidence.collectors import CollectContext
from soc2_evidence.collectors.support import tickets
from soc2_evidence.collectors.support.http import HttpClient, PageGuard, base_url_of, read_ahead
from soc2_evidence.collectors.support.tickets import Approval, Person, Window, parse_time, record
from soc2_evidence.core import config
from soc2_evidence.core.config import SourceConfig
from soc2_evidence.core.errors import CollectorError, PayloadError
from soc2_evidence.core.staging import BundleWriter

KIND = "jira"
FAMILY = "tickets"
VERSION = "1.0.0"
DATASETS = tickets.datasets(KIND)
CHANGELOG_PAGE_SIZE = 100
STANDARD_FIELDS = (
    "summary",
    "status",
    "reporter",
    "creator",
    "assignee",
    "priority",
    "created",
    "updated",
    "resolutiondate",
    "issuelinks",
)

JqlField = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$", description="A JQL date field")]


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
    fields: ChangeFields = msgspec.field(default_factory=ChangeFields)
    period_field: JqlField = "resolved"
    approved_statuses: list[str] = msgspec.field(default_factory=lambda: ["Approved"])
    implemented_statuses: list[str] = msgspec.field(default_factory=lambda: ["Done", "Deployed", "Closed"])
    emergency_values: list[str] = msgspec.field(default_factory=lambda: ["Emergency"])
    emergency_review_days: config.NonNegativeInt = tickets.DEFAULT_EMERGENCY_REVIEW_DAYS


class AccessReviewsPopulation(Population):
    fields: AccessReviewFields = msgspec.field(default_factory=AccessReviewFields)
    period_field: JqlField = "resolved"


class IncidentsPopulation(Population):
    fields: IncidentFields = msgspec.field(default_factory=IncidentFields)
    period_field: JqlField = "created"


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
    period_field: str
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
            period_field=population.period_field,
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
        for name in tickets.POPULATIONS:
            spec = specs.get(name)
            if spec is None:
                writer.add_jsonl(f"{name}.jsonl", [], description=f"{name}: not configured for this source")
                writer.report_total(name, 0)
                summaries.append({"population": name, "configured": False})
                continue
            search = JiraSearch(client, deployment, spec, window, page_size=page_size, max_pages=policy.max_pages)
            browse = base_url.rstrip("/") + "/browse/"
            now = context.now()
            writer.add_jsonl(
                f"{name}.jsonl",
                search.records(browse, now),
                description=tickets.DESCRIPTIONS[name],
            )
            writer.report_total(name, search.total)
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


class JiraSearch:
    """One population's issues, page by page, each with its whole changelog; ``total`` is Jira's count."""

    def __init__(
        self,
        client: HttpClient,
        deployment: str,
        spec: PopulationSpec,
        window: Window,
        *,
        page_size: int,
        max_pages: int,
    ) -> None:
        self.client, self.deployment, self.spec = client, deployment, spec
        self.page_size, self.max_pages = page_size, max_pages
        date_field = spec.period_field if window.full else "updated"
        self.filter = (
            f'({spec.jql}) AND {date_field} >= "{window.start:%Y-%m-%d %H:%M}" '
            f'AND {date_field} < "{window.end:%Y-%m-%d %H:%M}"'
        )
        self.jql = f"{self.filter} ORDER BY key ASC"
        # What every search page asks for; Cloud adds nextPageToken, Data Center startAt.
        self._search_params = {
            "jql": self.jql,
            "maxResults": page_size,
            "fields": ",".join(spec.field_ids),
            "expand": "changelog",
        }
        self.total = 0
        self.pages = 0
        self._guard = PageGuard(client.source, f"{spec.name} search", max_pages)

    def records(self, browse_url: str, now: datetime) -> Iterator[dict[str, Any]]:
        """The population's normalised records; a value Jira sent that cannot be read names its issue."""
        for issue in self.issues():
            try:
                yield normalise_issue(self.spec, issue, browse_url=browse_url, now=now)
            except ValueError as error:
                raise PayloadError(
                    f"source {self.client.source}: {self.spec.name}: issue {issue['key']}: {error}"
                ) from error

    def issues(self) -> Iterator[dict[str, Any]]:
        pages = self._cloud_pages() if self.deployment == "cloud" else self._datacenter_pages()
        for page in read_ahead(pages):
            for issue in page:
                yield self._with_changelog(issue)
        self.pages = self._guard.pages

    def _cloud_pages(self) -> Iterator[list[dict[str, Any]]]:
        count = self.client.post(
            "rest/api/3/search/approximate-count", {"jql": self.filter}, page=f"{self.spec.name} count"
        ).data
        if not isinstance(count, dict) or not isinstance(count.get("count"), int):
            raise CollectorError(f"source {self.client.source}: {self.spec.name} count: no integer 'count'")
        self.total = count["count"]
        token = None
        while True:
            page = self._guard.next(token or "")
            data = self.client.get(
                "rest/api/3/search/jql", {**self._search_params, "nextPageToken": token}, page=page
            ).data
            issues = self._issues_of(data)
            yield issues
            token = data.get("nextPageToken")
            if data.get("isLast") is True or (data.get("isLast") is None and not token):
                return
            if not token:
                raise self._guard.fail("isLast is false but there is no nextPageToken: the next page is unreachable")

    def _datacenter_pages(self) -> Iterator[list[dict[str, Any]]]:
        start_at, total = 0, None
        while True:
            page = self._guard.next(f"startAt={start_at}")
            data = self.client.get("rest/api/2/search", {**self._search_params, "startAt": start_at}, page=page).data
            issues = self._issues_of(data)
            for name in ("startAt", "total"):
                if not isinstance(data.get(name), int):
                    raise self._guard.fail(f"no integer {name!r} in the response")
            if data["startAt"] != start_at:
                raise self._guard.fail(f"asked for startAt {start_at}, got {data['startAt']}: a page is missing")
            if total is not None and data["total"] != total:
                raise self._guard.fail(
                    f"the total changed from {total} to {data['total']} while paging: issues moved; retry the run"
                )
            total = self.total = data["total"]
            yield issues
            start_at += len(issues)
            if start_at >= total:
                return
            if not issues:
                raise self._guard.fail(f"no issues at startAt {start_at}, Jira reports {total}: a page is missing")

    def _issues_of(self, data: Any) -> list[dict[str, Any]]:
        if not isinstance(data, dict) or not isinstance(data.get("issues"), list):
            raise self._guard.fail("no 'issues' list in the response")
        issues = data["issues"]
        for index, issue in enumerate(issues):
            if not isinstance(issue, dict) or not isinstance(issue.get("key"), str):
                raise self._guard.fail(f"issue {index} has no 'key'")
            if not isinstance(issue.get("fields"), dict):
                raise self._guard.fail(f"issue {issue['key']} has no 'fields'")
        self._guard.items([issue["key"] for issue in issues])
        return issues

    def _with_changelog(self, issue: dict[str, Any]) -> dict[str, Any]:
        """The issue with its whole changelog: the search embeds only the first histories."""
        changelog = issue.get("changelog")
        if not isinstance(changelog, dict) or not isinstance(changelog.get("histories"), list):
            raise self._guard.fail(f"issue {issue['key']} has no changelog (expand=changelog)")
        total = changelog.get("total", len(changelog["histories"]))
        if total <= len(changelog["histories"]):
            return issue
        key = issue["key"]
        if self.deployment == "cloud":
            histories = list(self._cloud_changelog(key))
        else:
            params = {"expand": "changelog", "fields": "summary"}
            data = self.client.get(f"rest/api/2/issue/{quote(key)}", params, page=f"changelog of {key}").data
            histories = ((data or {}).get("changelog") or {}).get("histories")
            if not isinstance(histories, list):
                raise CollectorError(f"source {self.client.source}: changelog of {key}: no 'changelog.histories'")
        if len(histories) < total:
            raise CollectorError(
                f"source {self.client.source}: changelog of {key}: {len(histories)} histories, Jira reports {total}"
            )
        return {**issue, "changelog": {"startAt": 0, "total": len(histories), "histories": histories}}

    def _cloud_changelog(self, key: str) -> Iterator[dict[str, Any]]:
        guard = PageGuard(self.client.source, f"changelog of {key}", self.max_pages)
        start_at = 0
        while True:
            page = guard.next(str(start_at))
            data = self.client.get(
                f"rest/api/3/issue/{quote(key)}/changelog",
                {"startAt": start_at, "maxResults": CHANGELOG_PAGE_SIZE},
                page=page,
            ).data
            if not isinstance(data, dict) or not isinstance(data.get("values"), list):
                raise guard.fail("no 'values' list in the response")
            values = data["values"]
            guard.items([value.get("id") for value in values if isinstance(value, dict)])
            yield from values
            start_at += len(values)
            if data.get("isLast") is True or not values or start_at >= data.get("total", start_at):
                return


# --- normalisation -------------------------------------------------------------------------------


def person(value: Any) -> Person | None:
    """A Jira user (Cloud: accountId; Data Center: name/key) as a Person; a plain string is an id."""
    if not value:
        return None
    if isinstance(value, str):
        return Person(value)
    if not isinstance(value, dict):
        return Person(str(value))
    ident = value.get("accountId") or value.get("name") or value.get("key") or value.get("emailAddress")
    name = value.get("displayName")
    if not ident and not name:
        return None
    return Person(str(ident or name), name)


def text_value(value: Any) -> str | None:
    """A field value as text: an option's ``value``, a named object's ``name``, a list joined."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        for key in ("value", "name", "displayName", "key", "id"):
            if value.get(key) not in (None, ""):
                return str(value[key])
        return None
    if isinstance(value, list):
        parts = [text for text in map(text_value, value) if text]
        return ", ".join(parts) or None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def text_values(value: Any) -> list[str]:
    """A multi-valued field (or multi-line text) as one string per value."""
    if value is None:
        return []
    if isinstance(value, list):
        return [text for text in map(text_value, value) if text]
    if isinstance(value, str):
        return [line.strip() for line in value.splitlines() if line.strip()]
    text = text_value(value)
    return [text] if text else []


def date_value(value: Any) -> str | datetime | None:
    """A date field as ``YYYY-MM-DD``, or as its UTC time (written RFC 3339) when it carries one."""
    text = text_value(value)
    if not text:
        return None
    if len(text) == 10:
        return text
    return parse_time(text)


Move = tuple[datetime | None, Person | None, str | None, str | None]
_UNDATED = datetime.min.replace(tzinfo=UTC)


def _moment_of(move: Move) -> datetime:
    return move[0] or _UNDATED


def transitions(histories: list[dict[str, Any]]) -> list[Move]:
    """Status changes in time order (an undated one first), as ``(at, by, from, to)``."""
    moves = [
        (
            parse_time(history.get("created")),
            person(history.get("author")),
            item.get("fromString"),
            item.get("toString"),
        )
        for history in histories
        for item in history.get("items") or ()
        if item.get("field") == "status" or item.get("fieldId") == "status"
    ]
    moves.sort(key=_moment_of)
    return moves


def normalise_issue(spec: PopulationSpec, issue: dict[str, Any], *, browse_url: str | None, now: datetime) -> dict:
    """One Jira issue as a record of ``spec``'s population."""
    key, fields = issue["key"], issue["fields"]
    mapped = {role: fields.get(field_id) if field_id else None for role, field_id in spec.fields.items()}
    common = {
        "id": key,
        "source": "jira",
        "url": browse_url + key if browse_url else None,
        "title": text_value(fields.get("summary")) or "",
        "status": text_value(fields.get("status")),
    }
    if spec.name == "incidents":
        return record(
            "incidents",
            **common,
            severity=text_value(mapped["severity"]),
            opened_at=parse_time(fields.get("created")),
            resolved_at=parse_time(fields.get("resolutiondate")),
            post_mortem=text_value(mapped["post_mortem"]),
        )
    if spec.name == "access_reviews":
        reviewer = person(mapped["reviewer"])
        return record(
            "access_reviews",
            **common,
            system=text_value(mapped["system"]),
            reviewer=reviewer.label if reviewer else None,
            period_start=date_value(mapped["period_start"]),
            period_end=date_value(mapped["period_end"]),
            completed_at=parse_time(fields.get("resolutiondate")),
            decisions=text_values(mapped["decisions"]),
        )
    histories = (issue.get("changelog") or {}).get("histories") or []
    moves = transitions(histories)
    approvals = [Approval(by, at, f"status:{to}") for at, by, _, to in moves if by and to in spec.approved_statuses]
    approver_field = spec.fields.get("approver")
    if approver_field:
        for history in histories:
            for item in history.get("items") or []:
                value = item.get("to") or item.get("toString")
                if value and approver_field in (item.get("fieldId"), item.get("field")):
                    who = Person(str(value), item.get("toString"))
                    approvals.append(Approval(who, parse_time(history.get("created")), f"field:{approver_field}"))
    merged_at, merged_by = next(((at, by) for at, by, _, to in moves if to in spec.implemented_statuses), (None, None))
    if merged_at is None and common["status"] in spec.implemented_statuses:
        merged_at = parse_time(fields.get("resolutiondate"))
    return change_record(
        spec,
        common,
        author=person(fields.get("reporter")) or person(fields.get("creator")),
        created_at=parse_time(fields.get("created")),
        approvals=approvals,
        merged_at=merged_at,
        merged_by=merged_by,
        linked=[key, *linked_keys(fields.get("issuelinks"))],
        change_type=text_value(mapped["change_type"]),
        environment=text_value(mapped["environment"]),
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
        environment=environment,
        transitions=moves,
        required_checks=None,
        required_checks_succeeded=None,
        deployments=None,
    )


def linked_keys(links: Any) -> list[str]:
    keys = []
    for link in links or []:
        for side in ("outwardIssue", "inwardIssue"):
            linked = link.get(side) if isinstance(link, dict) else None
            if isinstance(linked, dict) and linked.get("key"):
                keys.append(str(linked["key"]))
    return keys
