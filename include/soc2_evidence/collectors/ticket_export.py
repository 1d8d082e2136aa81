"""Ticket populations from export files, for teams that cannot give the pipeline API access.

Reads Jira JSON exports (a search response ``{"issues": [...], "total": n}``, a list of issues,
or JSON Lines of issues; with or without changelogs), Jira CSV exports, and GitHub API JSON
dumps (a list of pull requests as ``GET /repos/{repo}/pulls/{n}`` returns them, each with a
``reviews`` list as ``/pulls/{n}/reviews`` returns it, and optionally ``required_checks``
(names), ``check_runs``, ``statuses`` and ``deployments``), from a directory, a file, or a
bucket prefix (``s3://bucket/prefix``; ``gs://bucket/prefix``). The output is the same
normalised populations as the API collectors (:mod:`soc2_evidence.collectors.support.tickets`).

An export is its own population: everything in the files is evidenced, with no window or
watermark, and the reported total is the total the export declares (a Jira search response's
``total``), else the number of issues or merged pull requests it holds. ``exports.json``
names every file with its SHA-256, so the population can be traced to the export.

Options: ``location`` (required), ``aws_conn_id`` (for ``s3://``; default boto3's chain),
``files``: a list of ``{glob, format}`` (``jira_json``, ``jira_csv``, ``github_json``), each
matching at least one file. Jira formats name their ``population`` and take the Jira
collector's population options (``fields``, statuses, ...; no ``jql``) plus ``browse_url``;
``jira_csv`` maps roles to column headers in ``columns`` (defaults: Jira's own headers such as
``Issue key``, ``Summary``, ``Reporter``, ``Resolved``) and parses dates with ``date_formats``
(default Jira's ``%d/%b/%y %I:%M %p``) when they are not ISO 8601. ``github_json`` takes the
GitHub collector's options (``ticket_pattern``, ``emergency_labels``, ``required_checks``, ...).
"""

from __future__ import annotations

import csv
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from soc2_evidence.collectors import CollectContext, github, jira
from soc2_evidence.collectors.config_repo import glob_to_regex
from soc2_evidence.collectors.support import tickets
from soc2_evidence.collectors.support.locations import LocalLocation, open_location
from soc2_evidence.collectors.support.tickets import Approval, Person, parse_time, record
from soc2_evidence.core import config, payloads
from soc2_evidence.core.config import SourceConfig
from soc2_evidence.core.errors import CollectorError, PayloadError
from soc2_evidence.core.hashing import digest_file
from soc2_evidence.core.staging import BundleWriter

KIND = "ticket_export"
FAMILY = "tickets"
VERSION = "1.0.0"
DATASETS = tickets.datasets(KIND)
DEFAULT_DATE_FORMATS = ("%d/%b/%y %I:%M %p", "%d/%b/%Y %I:%M %p", "%Y-%m-%d %H:%M")
CSV_COLUMNS = {
    "common": {"id": "Issue key", "title": "Summary", "status": "Status", "created": "Created", "resolved": "Resolved"},
    "changes": {
        "author": "Reporter",
        "approver": None,
        "approved_at": None,
        "merged_at": "Resolved",
        "environment": None,
        "change_type": None,
        "issue_type": "Issue Type",
        "assignee": "Assignee",
        "links": "Outward issue link",
    },
    "access_reviews": {
        "system": None,
        "reviewer": "Assignee",
        "period_start": None,
        "period_end": None,
        "decisions": None,
    },
    "incidents": {"severity": "Priority", "post_mortem": None},
}


class ExportEntry(config.Options, tag_field="format"):
    """One ``files`` entry: a glob, and the ``format`` that says which entry type it is."""

    glob: Annotated[str, msgspec.Meta(min_length=1, description="Files to read, relative to location")]


# The keys of a Jira population an export file may set (its JQL is the export itself).
_JIRA_POPULATION_KEYS = (
    "fields",
    "period_field",
    "approved_statuses",
    "implemented_statuses",
    "emergency_values",
    "emergency_review_days",
)


class JiraJsonFile(ExportEntry, tag="jira_json"):
    population: Literal["changes", "access_reviews", "incidents"]
    browse_url: str | None = None
    fields: dict[str, str] | None = None
    period_field: str | None = None
    approved_statuses: list[str] | None = None
    implemented_statuses: list[str] | None = None
    emergency_values: list[str] | None = None
    emergency_review_days: int | None = None

    def population_options(self) -> dict[str, Any]:
        """The population keys this entry sets, as the Jira collector's population options take them."""
        return {key: getattr(self, key) for key in _JIRA_POPULATION_KEYS if getattr(self, key) is not None}

    def problems(self) -> Iterator[config.Problem]:
        return config.check_value(self.population_options(), jira.POPULATION_OPTIONS[self.population], ())

    def spec(self) -> jira.PopulationSpec:
        options = msgspec.convert(self.population_options(), jira.POPULATION_OPTIONS[self.population])
        return jira.PopulationSpec.of(self.population, options)


class JiraCsvFile(JiraJsonFile, tag="jira_csv"):
    columns: dict[str, str] = msgspec.field(default_factory=dict)
    date_formats: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_DATE_FORMATS))

    def problems(self) -> Iterator[config.Problem]:
        yield from super().problems()
        roles = {**CSV_COLUMNS["common"], **CSV_COLUMNS[self.population]}
        for role in self.columns:
            if role not in roles:
                yield config.Problem(("columns", role), f"unknown column role {role!r}; roles: {', '.join(roles)}")

    def column_map(self) -> dict[str, str | None]:
        return {**CSV_COLUMNS["common"], **CSV_COLUMNS[self.population], **self.columns}


# A GitHub JSON export takes the GitHub collector's change rules, declared once there.
GithubJsonFile = config.with_fields_of(
    github.Options, github.RULE_FIELDS, ExportEntry, "GithubJsonFile", tag="github_json"
)


class Options(config.Options):
    location: Annotated[config.LocalPath, msgspec.Meta(description="A folder or file, s3:// or gs:// prefix")]
    files: Annotated[list[JiraJsonFile | JiraCsvFile | GithubJsonFile], msgspec.Meta(min_length=1)]
    aws_conn_id: str | None = None


@dataclass
class ExportFile:
    """One export file: where it came from, how to read it, and what it held."""

    name: str
    path: Path
    entry: dict[str, Any]
    population: str
    records: int = 0
    reported: int | None = None
    digest: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "file": self.name,
            "format": self.entry["format"],
            "population": self.population,
            **self.digest,
            "records": self.records,
            "reported_total": self.total,
        }

    @property
    def total(self) -> int:
        return self.records if self.reported is None else self.reported


def collect(source: SourceConfig, writer: BundleWriter, context: CollectContext) -> None:
    options: Options = source.options
    location = options.location
    entries = [_entry(entry) for entry in options.files]
    now = context.now()
    with tempfile.TemporaryDirectory(prefix="soc2-evidence-export-") as scratch:
        available = _fetch(source, location, context, Path(scratch))
        files: list[ExportFile] = []
        for entry in entries:
            pattern = re.compile(glob_to_regex(entry["glob"]))
            matched = [name for name in available if pattern.fullmatch(name)]
            if not matched:
                raise CollectorError(f"source {source.name}: no file under {location} matches {entry['glob']!r}")
            files += [ExportFile(name, available[name], entry, entry["population"]) for name in matched]
        for population in tickets.POPULATIONS:
            mine = [export for export in files if export.population == population]
            writer.add_jsonl(
                f"{population}.jsonl",
                (item for export in mine for item in _records(source.name, export, now)),
                description=tickets.DESCRIPTIONS[population] + (" (from export files)" if mine else ": no export"),
            )
            writer.report_total(population, sum(export.total for export in mine))
        for export in files:
            digest = digest_file(export.path)
            export.digest = {"sha256": digest.sha256, "size": digest.size}
    writer.add_json(
        "exports.json",
        {"location": location, "files": [export.summary() for export in files]},
        description="Every export file read, with its hash, population, records and declared total",
    )


def control_expectations(dataset):
    return tickets.control_expectations(dataset)


def _entry(entry: ExportEntry) -> dict[str, Any]:
    """What the readers need of one typed ``files`` entry."""
    found: dict[str, Any] = {"glob": entry.glob, "format": type(entry).__struct_config__.tag}
    if isinstance(entry, JiraJsonFile):
        found.update(population=entry.population, browse_url=entry.browse_url, spec=entry.spec())
        if isinstance(entry, JiraCsvFile):
            found.update(columns=entry.column_map(), date_formats=tuple(entry.date_formats))
    else:
        found.update(population="changes", settings=github.GitHubOptions.of(entry))
    return found


# --- where the files are -------------------------------------------------------------------------


def _fetch(source: SourceConfig, location: str, context: CollectContext, scratch: Path) -> dict[str, Path]:
    """Every file under the location, by its name relative to it: local files where they are, bucket objects
    downloaded into ``scratch`` first. A local location may also be a single file."""
    try:
        place = open_location(
            location,
            resolve_path=context.resolve_path,
            credentials=context.credentials,
            aws_conn_id=source.options.aws_conn_id or None,
        )
        if isinstance(place, LocalLocation) and place.root.is_file():
            return {place.root.name: place.root}
        files = {}
        for found in place.iter_objects():
            if not found.name or found.name.endswith("/"):  # a bucket's folder placeholder
                continue
            path = place.local_path(found.name)
            if path is None:
                path = _local_name(scratch, found.name)
                place.download(found.name, path)
            files[found.name] = path
    except CollectorError as error:
        raise CollectorError(f"source {source.name}: {error}") from error
    return dict(sorted(files.items()))


def _local_name(scratch: Path, name: str) -> Path:
    path = scratch / name
    if scratch.resolve() not in path.resolve().parents:
        raise CollectorError(f"object name {name!r} escapes the download directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


# --- the declared shapes of export records ---------------------------------------------------------
# What the Jira and GitHub normalisers read of a record, typed: a record that does not fit is a
# PayloadError naming the file, the record and the field, before any of it is used. Other fields
# (custom fields, which the population options name) stay as the export has them.

Text = str | None
JiraUser = dict[str, Any] | str | None  # Cloud: accountId; Data Center: name/key; or an id as text


class ExportEnvelope(msgspec.Struct):
    """A Jira search response saved as a file: its ``total`` is the population the export claims."""

    total: payloads.Count | None = None


class JiraChangeItem(msgspec.Struct):
    field: Text = None
    fieldId: Text = None
    fromString: Text = None
    toString: Text = None
    to: Text = None


class JiraHistory(msgspec.Struct):
    created: Text = None
    author: JiraUser = None
    items: list[JiraChangeItem] | None = None


class JiraChangelog(msgspec.Struct):
    histories: list[JiraHistory] | None = None


class JiraLink(msgspec.Struct):
    outwardIssue: dict[str, Any] | None = None
    inwardIssue: dict[str, Any] | None = None


class JiraFields(msgspec.Struct):
    created: Text = None
    resolutiondate: Text = None
    reporter: JiraUser = None
    creator: JiraUser = None
    issuelinks: list[JiraLink] | None = None


class JiraIssue(msgspec.Struct):
    key: payloads.NonEmpty
    fields: JiraFields
    changelog: JiraChangelog | None = None


# --- reading the files ---------------------------------------------------------------------------


def _records(source: str, export: ExportFile, now: datetime) -> Iterator[dict[str, Any]]:
    entry = export.entry
    where = f"source {source}: {export.name}"
    try:
        if entry["format"] == "jira_csv":
            rows = _csv_rows(export.path)
        else:
            rows = _json_items(where, export, "pull_requests" if entry["format"] == "github_json" else "issues")
        for index, item in enumerate(rows, start=1):
            normalised = _normalise(where, index, entry, item, now)
            if normalised is not None:
                export.records += 1
                yield normalised
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise CollectorError(f"{where}: cannot read: {error}") from error


def _json_items(where: str, export: ExportFile, list_key: str) -> Iterator[Any]:
    """Items of a JSON document (a list, or ``{list_key: [...]}`` with an optional ``total``) or JSON Lines."""
    if export.path.suffix == ".jsonl":
        with open(export.path, "rb") as stream:
            for number, line in enumerate(stream, start=1):
                if line.strip():
                    yield payloads.decode_json(line, where=f"{where}: line {number}")
        return
    document = payloads.decode_json(export.path.read_bytes(), where=where)
    if isinstance(document, dict):
        envelope = payloads.convert(document, ExportEnvelope, where=where)
        export.reported = envelope.total
        document = document.get(list_key)
    if not isinstance(document, list):
        raise PayloadError(f"{where}: expected a list, or an object with a {list_key!r} list")
    yield from document


def _csv_rows(path: Path) -> Iterator[dict[str, list[str]]]:
    """Rows as header -> values: Jira repeats a header once per value of a multi-valued field."""
    with open(path, encoding="utf-8-sig", newline="") as stream:
        reader = csv.reader(stream)
        headers = next(reader, [])
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            values: dict[str, list[str]] = {}
            for header, cell in zip(headers, row, strict=False):
                if cell.strip():
                    values.setdefault(header.strip(), []).append(cell.strip())
            yield values


def _normalise(where: str, index: int, entry: dict[str, Any], item: Any, now: datetime) -> dict[str, Any] | None:
    kind = entry["format"]
    try:
        if kind == "github_json":
            return _pull_record(where, index, entry, item, now)
        if kind == "jira_csv":
            return _csv_record(entry, item, now)
        payloads.convert(item, JiraIssue, where=f"{where}: issue {index}")
        return jira.normalise_issue(entry["spec"], item, browse_url=entry.get("browse_url"), now=now)
    except ValueError as error:  # an unparseable time or a missing column
        raise PayloadError(f"{where}: record {index}: {error}") from error


def _pull_record(where: str, index: int, entry: dict[str, Any], pull: Any, now: datetime) -> dict[str, Any] | None:
    """One exported pull request, decoded by the GitHub collector's own types (the API's shape)."""
    exported = payloads.convert(pull, github.ExportedPull, where=f"{where}: pull request {index}")
    if not exported.merged_at:
        return None
    named = pull.get("repository")
    repository = named.get("full_name") if isinstance(named, dict) else named
    if not isinstance(repository, str) or not repository:
        repository = exported.base.repo.full_name if exported.base.repo else None
    if not repository:
        raise PayloadError(f"{where}: pull request {index} names no repository (base.repo.full_name)")
    settings: github.GitHubOptions = entry["settings"]
    return github.normalise_pull(
        settings,
        repository,
        exported,
        exported.reviews,
        github.dismissals(exported.timeline, f"{where}: pull request {index} timeline"),
        required=tuple(exported.required_checks or settings.required_checks or ()),
        check_runs=exported.check_runs,
        statuses=exported.statuses,
        deployments=exported.deployments,
        now=now,
    )


def _csv_record(entry: dict[str, Any], row: dict[str, list[str]], now: datetime) -> dict[str, Any]:
    spec: jira.PopulationSpec = entry["spec"]
    columns: dict[str, str | None] = entry["columns"]
    formats = entry["date_formats"]

    def first(role: str) -> str | None:
        header = columns.get(role)
        values = row.get(header) if header else None
        return values[0] if values else None

    def moment(role: str) -> datetime | None:
        return parse_time(first(role), formats)

    def day(role: str) -> str | None:
        value = first(role)
        if not value:
            return None
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            return parse_time(value, (*formats, "%d/%b/%y", "%d/%b/%Y")).date().isoformat()

    key = first("id")
    if not key:
        raise ValueError(f"no {columns['id']!r} column value")
    browse = entry.get("browse_url")
    common = {
        "id": key,
        "source": "jira",
        "url": browse + key if browse else None,
        "title": first("title") or "",
        "status": first("status"),
    }
    if spec.name == "incidents":
        return record(
            "incidents",
            **common,
            severity=first("severity"),
            opened_at=moment("created"),
            resolved_at=moment("resolved"),
            post_mortem=first("post_mortem"),
        )
    if spec.name == "access_reviews":
        decisions_header = columns.get("decisions")
        return record(
            "access_reviews",
            **common,
            system=first("system"),
            reviewer=first("reviewer"),
            period_start=day("period_start"),
            period_end=day("period_end"),
            completed_at=moment("resolved"),
            decisions=[line for value in row.get(decisions_header or "", []) for line in value.splitlines() if line],
        )
    approver = first("approver")
    approvals = [Approval(Person(approver), moment("approved_at"), f"export:{columns['approver']}")] if approver else []
    links_prefix = columns.get("links")
    links = [
        value for header, values in row.items() if links_prefix and header.startswith(links_prefix) for value in values
    ]
    author = first("author")
    return jira.change_record(
        spec,
        common,
        author=Person(author) if author else None,
        created_at=moment("created"),
        approvals=approvals,
        merged_at=moment("merged_at"),
        merged_by=None,
        linked=[key, *links],
        change_type=first("change_type"),
        issue_type=first("issue_type"),
        assignee=first("assignee"),
        environment=first("environment"),
        moves=None,
        now=now,
    )
