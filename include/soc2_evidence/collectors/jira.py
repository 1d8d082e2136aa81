"""Jira populations (changes, access reviews, incidents) from Jira Cloud or Data Center, with changelogs.

Cloud: ``GET /rest/api/3/search/jql`` (enhanced search: ``nextPageToken``/``isLast``, no total),
the total from ``POST /rest/api/3/search/approximate-count``, e-mail + API token (basic auth:
the connection's login and password). Data Center: ``GET /rest/api/2/search`` (``startAt``,
``maxResults``, ``total``), a personal access token as bearer (the connection's password).
Both with ``expand=changelog``; a changelog longer than the search embeds (Cloud: 40
histories) is read whole from ``/rest/api/3/issue/{key}/changelog`` (Cloud) or
``/rest/api/2/issue/{key}?expand=changelog`` (Data Center). The records' schema is in
:mod:`soc2_evidence.collectors.support.tickets`.

Options: ``conn_id`` (required), ``url`` (else the connection's host), ``deployment``
(``cloud``/``datacenter``; default by host), ``page_size`` (100), ``ca_bundle``, the HTTP options
of :func:`soc2_evidence.collectors.support.tickets.retry_policy`, the window options of
:func:`soc2_evidence.collectors.support.tickets.collection_window`, and ``populations``:
a mapping of ``changes``/``access_reviews``/``incidents`` to

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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from soc2_evidence.collectors import CollectContext, reject_unknown_options
from soc2_evidence.collectors.support import tickets
from soc2_evidence.collectors.support.http import HttpClient, PageGuard, base_url_of, read_ahead
from soc2_evidence.collectors.support.tickets import Approval, Person, Window, parse_time, record
from soc2_evidence.core.config import SourceConfig
from soc2_evidence.core.errors import CollectorError
from soc2_evidence.core.staging import BundleWriter

KIND = "jira"
FAMILY = "tickets"
VERSION = "1.0.0"
DATASETS = tickets.datasets(KIND)
DEPLOYMENTS = ("cloud", "datacenter")
DEFAULT_PAGE_SIZE = 100
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
ROLES = {
    "changes": {"approver": None, "environment": None, "change_type": None},
    "access_reviews": {
        "system": None,
        "reviewer": "assignee",
        "period_start": None,
        "period_end": None,
        "decisions": None,
    },
    "incidents": {"severity": "priority", "post_mortem": None},
}
PERIOD_FIELDS = {"changes": "resolved", "access_reviews": "resolved", "incidents": "created"}


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
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_options(
        cls, source: str, name: str, options: Any, *, require_jql: bool, extra_keys: tuple[str, ...] = ()
    ) -> PopulationSpec:
        where = f"source {source}: population {name!r}"
        if name not in tickets.POPULATIONS:
            raise CollectorError(f"{where} is unknown; use {', '.join(tickets.POPULATIONS)}")
        if not isinstance(options, Mapping):
            raise CollectorError(f"{where} must be a mapping of options")
        known = {"jql", "fields", "period_field", *extra_keys}
        if name == "changes":
            known |= {"approved_statuses", "implemented_statuses", "emergency_values", "emergency_review_days"}
        reject_unknown_options(where, options, known)
        jql = options.get("jql")
        if require_jql and (not isinstance(jql, str) or not jql.strip()):
            raise CollectorError(f"{where}: option 'jql' (a JQL filter) is required")
        if isinstance(jql, str) and "order by" in jql.lower():
            raise CollectorError(f"{where}: the JQL must not have ORDER BY; the collector orders by key")
        mapped = options.get("fields", {})
        if not isinstance(mapped, Mapping) or not all(isinstance(value, str) for value in mapped.values()):
            raise CollectorError(f"{where}: option 'fields' must map roles to Jira field ids")
        unknown_roles = sorted(set(mapped) - set(ROLES[name]))
        if unknown_roles:
            raise CollectorError(
                f"{where}: unknown field role(s) {', '.join(unknown_roles)}; use {', '.join(ROLES[name])}"
            )
        period_field = options.get("period_field", PERIOD_FIELDS[name])
        if not isinstance(period_field, str) or not period_field.isidentifier():
            raise CollectorError(f"{where}: option 'period_field' must be a JQL date field name")
        spec = {
            "name": name,
            "jql": jql,
            "fields": {**ROLES[name], **mapped},
            "period_field": period_field,
            "extra": {key: options[key] for key in extra_keys if key in options},
        }
        if name == "changes":
            opts = {**options}
            spec.update(
                approved_statuses=tuple(tickets.option_list(source, opts, "approved_statuses", ["Approved"])),
                implemented_statuses=tuple(
                    tickets.option_list(source, opts, "implemented_statuses", ["Done", "Deployed", "Closed"])
                ),
                emergency_values=tuple(tickets.option_list(source, opts, "emergency_values", ["Emergency"])),
                emergency_review_days=tickets.option_int(
                    source, opts, "emergency_review_days", tickets.DEFAULT_EMERGENCY_REVIEW_DAYS
                ),
            )
        return cls(**spec)

    @functools.cached_property
    def emergency_folded(self) -> frozenset[str]:
        return frozenset(value.casefold() for value in self.emergency_values)

    @property
    def field_ids(self) -> list[str]:
        mapped = [value for value in self.fields.values() if value]
        return list(dict.fromkeys([*STANDARD_FIELDS, *mapped]))


def populations_of(source: str, options: Mapping[str, Any], **kwargs: Any) -> dict[str, PopulationSpec]:
    raw = options.get("populations")
    if not isinstance(raw, Mapping) or not raw:
        raise CollectorError(
            f"source {source}: option 'populations' must map one or more of {', '.join(tickets.POPULATIONS)} "
            "to their JQL and field mapping"
        )
    return {name: PopulationSpec.from_options(source, str(name), value, **kwargs) for name, value in raw.items()}


def collect(source: SourceConfig, writer: BundleWriter, context: CollectContext) -> None:
    options = source.options
    specs = populations_of(source.name, options, require_jql=True)
    conn_id = options.get("conn_id")
    if not isinstance(conn_id, str) or not conn_id:
        raise CollectorError(f"source {source.name}: option 'conn_id' (an Airflow connection) is required")
    connection = context.get_connection(conn_id)
    base_url = options.get("url") or base_url_of(connection)
    if not base_url:
        raise CollectorError(f"source {source.name}: no Jira URL: set option 'url' or the host of {conn_id}")
    deployment = options.get("deployment") or ("cloud" if ".atlassian.net" in base_url else "datacenter")
    if deployment not in DEPLOYMENTS:
        raise CollectorError(f"source {source.name}: option 'deployment' must be one of {', '.join(DEPLOYMENTS)}")
    page_size = tickets.option_int(source.name, options, "page_size", DEFAULT_PAGE_SIZE, minimum=1)
    policy = tickets.retry_policy(source.name, options)
    client = HttpClient(
        source.name,
        base_url,
        headers=_auth_headers(source.name, deployment, connection),
        policy=policy,
        auth_hint=f"renew the {'API token' if deployment == 'cloud' else 'personal access token'} in connection "
        f"{conn_id!r}",
        ca_bundle=str(context.resolve_path(options["ca_bundle"])) if options.get("ca_bundle") else None,
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
                raise CollectorError(
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
