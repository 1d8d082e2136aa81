"""Results of other backup tools, normalised into the restore-result dataset.

Options (:class:`Options`, checked when the config file is loaded): ``location`` (a directory, relative
to the config file, ``s3://bucket/prefix`` or ``gs://bucket/prefix``), ``patterns`` (default
``["*.xml", "*.json"]``, matched against file names), ``aws_conn_id``, ``max_file_bytes`` (default
10 MiB), ``rto_target_minutes`` and ``rpo_target_hours`` (targets for results that carry none),
``expect_databases`` (databases that must have a restore test) and ``max_test_age_hours`` (default 26:
the newest restore test of each database must be younger, i.e. nightly).

Formats, told apart by content:

- JUnit XML (an operator's restore script): one ``<testsuite>`` per restore test, its test cases the
  checks (``<failure>``/``<error>`` fail, ``<skipped>`` skips), ``timestamp`` the start, ``time`` the
  duration (the RTO). Properties: ``database`` (required), ``backup_key``, ``backup_sha256``,
  ``backup_at``, ``tool``, ``phase.<download|restore|verify>`` (seconds), ``rto_target_seconds``,
  ``rpo_target_seconds``.
- Restore-result JSON: ``{"results": [...]}`` (or the list itself), each result with the dataset's
  own fields (``database``, ``restore_started_at``, ``restore_finished_at``, ``backup_at``, ``checks``
  as ``[{name, status, detail}]``, ``phases``, targets, ``outcome``, ...).
- pgBackRest ``info --output=json``: per stanza a backup check (not a restore): the stanza's status
  and its newest backup, whose age at the file's time is the RPO.

Each file is archived as it was read (redacted), and listed in ``files.jsonl`` with whether it
parsed. A file that does not parse, or a result missing what a result needs, is a data-quality
failure; the file's good results are still ingested.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

if TYPE_CHECKING:
    from xml.etree import ElementTree

from soc2_evidence.collectors import CollectContext
from soc2_evidence.collectors.support import restore_results
from soc2_evidence.collectors.support.locations import BackupObject, open_location
from soc2_evidence.core import config, payloads
from soc2_evidence.core.config import SourceConfig
from soc2_evidence.core.datasets import Dataset, may_be_empty
from soc2_evidence.core.errors import CollectorError, PayloadError
from soc2_evidence.core.evidence import parse_rfc3339, rfc3339
from soc2_evidence.core.hashing import digest_bytes
from soc2_evidence.core.staging import BundleWriter

KIND = "backup_results"
FAMILY = "backup"
VERSION = "1.0.0"
DEFAULT_PATTERNS = ("*.xml", "*.json")
DEFAULT_MAX_FILE_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_TEST_AGE_HOURS = 26
FORMATS = ("junit", "restore_json", "pgbackrest")
PHASE_PROPERTY = "phase."

RESULTS = restore_results.results_dataset(KIND, "Restore tests and backup checks reported by other tools")
FILES = Dataset(
    name="backup_results.files",
    existence=may_be_empty(
        "No result file at the location leaves backup_results.results empty, a finding of backup_results.results.exists"
    ),
    item="files.jsonl",
    key=("path",),
    columns={
        "path": "string",
        "url": "string",
        "sha256": "string",
        "size": "integer",
        "modified_at": "string",
        "format": "string",
        "parsed": "boolean",
        "results": "integer",
        "item": "string",
        "error": "string",
    },
    required=("url", "size", "modified_at", "parsed", "results"),
    # A malformed result file is a data-quality failure, not a finding.
    value_sets={"format": FORMATS, "parsed": (True,)},
    total="files",
    description="Every result file at the location: its hash, format, and whether it parsed",
)
COVERAGE = Dataset(
    name="backup_results.coverage",
    existence=may_be_empty(
        "Coverage follows expected databases and results seen; no result is a finding of backup_results.results.exists"
    ),
    item="coverage.jsonl",
    key=("database",),
    columns={
        "database": "string",
        "expected": "boolean",
        "last_test_at": "string",
        "last_outcome": "string",
        "age_hours": "number",
        "max_age_hours": "number",
        "tested_recently": "boolean",
    },
    required=("expected", "max_age_hours", "tested_recently"),
    description="Per database (expected or seen): its newest restore test and whether it is recent enough",
)
DATASETS = (RESULTS, FILES, COVERAGE)


PositiveNumber = Annotated[float, msgspec.Meta(gt=0)]


class Options(config.Options, kw_only=True):
    location: Annotated[
        config.LocalPath,
        msgspec.Meta(description="A directory of result files, s3://bucket/prefix or gs://bucket/prefix"),
    ]
    patterns: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1)]],
        msgspec.Meta(min_length=1, description="File name patterns of result files"),
    ] = msgspec.field(default_factory=lambda: list(DEFAULT_PATTERNS))
    aws_conn_id: Annotated[str | None, msgspec.Meta(description="Airflow AWS connection; unset: boto3's chain")] = None
    max_file_bytes: config.PositiveInt = DEFAULT_MAX_FILE_BYTES
    rto_target_minutes: Annotated[PositiveNumber | None, msgspec.Meta(description="For results that carry none")] = None
    rpo_target_hours: Annotated[PositiveNumber | None, msgspec.Meta(description="For results that carry none")] = None
    expect_databases: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1)]],
        msgspec.Meta(description="Databases that must have a restore test"),
    ] = msgspec.field(default_factory=list)
    max_test_age_hours: Annotated[
        PositiveNumber, msgspec.Meta(description="Each database's newest restore test must be younger")
    ] = float(DEFAULT_MAX_TEST_AGE_HOURS)

    @property
    def rto_target_seconds(self) -> float | None:
        return None if self.rto_target_minutes is None else float(self.rto_target_minutes) * 60

    @property
    def rpo_target_seconds(self) -> float | None:
        return None if self.rpo_target_hours is None else float(self.rpo_target_hours) * 3600


def collect(source: SourceConfig, writer: BundleWriter, context: CollectContext) -> None:
    options: Options = source.options
    try:
        location = open_location(
            options.location,
            resolve_path=context.resolve_path,
            credentials=context.credentials,
            aws_conn_id=options.aws_conn_id or None,
        )
    except CollectorError as error:
        raise CollectorError(f"source {source.name}: {error}") from error
    now = context.now()  # result ages are measured from it
    files: list[dict[str, Any]] = []
    newest: dict[str, dict[str, Any]] = {}

    def results() -> Iterator[dict[str, Any]]:
        listed = (found for found in location.iter_objects() if _matches(found, options.patterns))
        for number, found in enumerate(listed, start=1):
            entry, records = _ingest(source, location, found, number, writer, options)
            files.append(entry)
            for record in records:
                if record["test_type"] == "restore" and record["tested_at"]:
                    known = newest.get(record["database"])
                    if known is None or known["tested_at"] < record["tested_at"]:
                        newest[record["database"]] = record
                yield record

    try:
        writer.add_jsonl(RESULTS.item, results(), description=RESULTS.description)
    except CollectorError as error:
        raise CollectorError(f"source {source.name}: {error}") from error
    writer.add_jsonl(FILES.item, files, description=FILES.description)
    writer.report_total(FILES.total, len(files))
    databases = sorted(set(options.expect_databases) | set(newest))
    writer.add_jsonl(
        COVERAGE.item,
        (_coverage(name, name in options.expect_databases, newest.get(name), now, options) for name in databases),
        description=COVERAGE.description,
    )


def control_expectations(dataset: Dataset) -> list[Any]:
    if dataset is RESULTS:
        return restore_results.control_expectations(dataset)
    if dataset is COVERAGE:
        from soc2_evidence.validation.gx import control, expectations

        return [
            control(
                expectations.ExpectColumnValuesToBeInSet,
                dataset,
                "tested_recently",
                "Every database had a restore test within the expected interval (none missed)",
                column="tested_recently",
                value_set=[True],
            )
        ]
    return []


def _matches(found: BackupObject, patterns: list[str]) -> bool:
    base = found.name.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(base, pattern) for pattern in patterns)


def _ingest(
    source: SourceConfig, location, found: BackupObject, number: int, writer: BundleWriter, options: Options
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One file: archive it, parse it; its files.jsonl entry and its good results."""
    entry = {
        "path": found.name,
        "url": found.url,
        "sha256": None,
        "size": found.size,
        "modified_at": rfc3339(found.modified),
        "format": None,
        "parsed": False,
        "results": 0,
        "item": None,
        "error": None,
    }
    if found.size > options.max_file_bytes:
        entry["error"] = f"{found.size} bytes, more than max_file_bytes ({options.max_file_bytes})"
        return entry, []
    data = location.read_bytes(found.name, options.max_file_bytes)
    if data is None:  # removed since the listing
        entry["error"] = "removed while being read"
        return entry, []
    entry["sha256"] = digest_bytes(data).sha256
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        entry["error"] = f"not UTF-8 text (byte {error.start})"
        return entry, []
    item = f"files/{number:05d}-{_safe(found.name.rsplit('/', 1)[-1])}"
    writer.add_text(item, text, description=f"{found.url} as read")
    entry["item"] = item
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    try:
        entry["format"], parsed = _parse(found, text, options)
        for result in parsed:
            try:
                records.append(result())
            except PayloadError as problem:
                problems.append(str(problem))
    except PayloadError as problem:
        problems.append(str(problem))
    entry.update(parsed=not problems, results=len(records), error="; ".join(problems[:3]) or None)
    return entry, records


def _parse(found: BackupObject, text: str, options: Options) -> tuple[str, list]:
    """The file's format and one deferred result builder per result (each may raise PayloadError)."""
    if text.lstrip().startswith("<"):
        return "junit", _junit(found, text, options)
    document = payloads.decode_json(text, where="content")  # not "<": JSON, else malformed
    if (
        isinstance(document, list)
        and document
        and all(isinstance(stanza, dict) and "backup" in stanza and "name" in stanza for stanza in document)
    ):
        return "pgbackrest", [_stanza_builder(found, index, stanza, options) for index, stanza in enumerate(document)]
    results = document.get("results") if isinstance(document, dict) else document
    if isinstance(results, list):
        return "restore_json", [_json_builder(found, index, result, options) for index, result in enumerate(results)]
    raise PayloadError("JSON that is neither pgBackRest info nor restore results")


# --- the declared shapes: what a result must hold, with bounds (see core.payloads) ----------------

Time = datetime | payloads.EpochSeconds  # ISO 8601 (naive: UTC), or epoch seconds


class JUnitProperties(msgspec.Struct):
    """A restore test suite's ``<property>`` values; other properties (a connection string) are ignored."""

    database: payloads.NonEmpty
    tool: str | None = None
    backup_key: str | None = None
    backup_sha256: str | None = None
    backup_at: Time | None = None
    rto_target_seconds: payloads.Seconds | None = None
    rpo_target_seconds: payloads.Seconds | None = None


class JUnitSuite(msgspec.Struct):
    """One ``<testsuite>``: ``timestamp`` is the restore's start, ``time`` its duration (the RTO)."""

    timestamp: datetime
    properties: JUnitProperties
    phases: dict[str, payloads.Seconds]
    time: payloads.Seconds | None = None


class Check(msgspec.Struct):
    name: payloads.NonEmpty
    status: Literal["passed", "failed", "skipped"]
    detail: str | None = None


class RestoreResult(msgspec.Struct):
    """One result of a restore-result JSON file: the dataset's own fields, typed."""

    database: payloads.NonEmpty
    restore_started_at: Time
    restore_finished_at: Time | None = None
    backup_at: Time | None = None
    test_id: str | payloads.Integer | None = None
    tool: str | None = None
    checks: list[Check] = msgspec.field(default_factory=list)
    phases: dict[str, payloads.Seconds | None] | None = None
    outcome: Literal["passed", "failed"] | None = None
    backup_key: str | None = None
    backup_sha256: str | None = None
    rto_seconds: payloads.Seconds | None = None
    rto_target_seconds: payloads.Seconds | None = None
    rpo_target_seconds: payloads.Seconds | None = None
    error: str | None = None


class StanzaStatus(msgspec.Struct):
    code: payloads.Integer
    message: str = ""


class BackupTimes(msgspec.Struct):
    stop: payloads.EpochSeconds


class StanzaBackup(msgspec.Struct):
    timestamp: BackupTimes
    label: str | None = None
    error: bool | None = None


class Stanza(msgspec.Struct):
    """A stanza of ``pgbackrest info --output=json``: its status and its backups."""

    name: payloads.NonEmpty
    status: StanzaStatus
    backup: list[StanzaBackup]


def _junit(found: BackupObject, text: str, options: Options) -> list:
    from xml.etree import ElementTree  # here: DAG files import this module at parse time

    try:
        # The standard parser does not fetch external entities, and expat >= 2.4 caps entity expansion.
        root = ElementTree.fromstring(text)  # noqa: S314 - see above
    except ElementTree.ParseError as error:
        raise PayloadError(f"XML does not parse: {error}") from error
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite") if root.tag == "testsuites" else None
    if suites is None:
        raise PayloadError(f"not JUnit XML: the root element is <{root.tag}>")
    return [_suite_builder(found, index, suite, options) for index, suite in enumerate(suites)]


def _suite_builder(found: BackupObject, index: int, suite: ElementTree.Element, options: Options):
    def build() -> dict[str, Any]:
        name = suite.get("name") or f"suite {index + 1}"
        where = f"testsuite {name!r}"
        properties = {prop.get("name"): prop.get("value") for prop in suite.iter("property") if prop.get("value")}
        attributes = {
            "timestamp": suite.get("timestamp") or None,
            "time": suite.get("time") or None,
            "properties": properties,
            "phases": {
                key[len(PHASE_PROPERTY) :]: value
                for key, value in properties.items()
                if key and key.startswith(PHASE_PROPERTY)
            },
        }
        given = {key: value for key, value in attributes.items() if value is not None}
        typed = payloads.convert(given, JUnitSuite, where=where, strict=False)
        started = payloads.utc(typed.timestamp, where=f"{where}: timestamp")
        props = typed.properties
        checks = [_testcase_check(case) for case in suite.iter("testcase")]
        backup_at = _time(props.backup_at, f"{where}: backup_at")
        return restore_results.result_record(
            test_id=f"{found.name}#{name}",
            database=props.database,
            tool=props.tool or "junit",
            test_type="restore",
            tested_at=started,
            checks=checks,
            backup_key=props.backup_key,
            backup_sha256=props.backup_sha256,
            backup_at=backup_at,
            restore_started_at=started,
            restore_finished_at=started + timedelta(seconds=typed.time) if typed.time is not None else None,
            phases=typed.phases,
            rto_seconds=typed.time,
            rto_target_seconds=props.rto_target_seconds or options.rto_target_seconds,
            rpo_seconds=restore_results.seconds_between(backup_at, started),
            rpo_target_seconds=props.rpo_target_seconds or options.rpo_target_seconds,
            error=None if checks else "no test cases",
        )

    return build


def _testcase_check(case: ElementTree.Element) -> dict[str, str]:
    name = ".".join(part for part in (case.get("classname"), case.get("name")) if part) or "testcase"
    for tag, status in (("failure", "failed"), ("error", "failed"), ("skipped", "skipped")):
        element = case.find(tag)
        if element is not None:
            detail = element.get("message") or (element.text or "").strip()
            return restore_results.check(name, status, detail.splitlines()[0][:500] if detail else "")
    return restore_results.check(name, "passed")


def _json_builder(found: BackupObject, index: int, result: Any, options: Options):
    def build() -> dict[str, Any]:
        where = f"result {index + 1}"
        typed = payloads.convert(result, RestoreResult, where=where)
        started = _time(typed.restore_started_at, f"{where}: restore_started_at")
        finished = _time(typed.restore_finished_at, f"{where}: restore_finished_at")
        backup_at = _time(typed.backup_at, f"{where}: backup_at")
        return restore_results.result_record(
            test_id=str(typed.test_id or f"{found.name}#{index + 1}"),
            database=typed.database,
            tool=typed.tool or "restore_json",
            test_type="restore",
            tested_at=started,
            checks=[restore_results.check(check.name, check.status, check.detail or "") for check in typed.checks],
            backup_key=typed.backup_key,
            backup_sha256=typed.backup_sha256,
            backup_at=backup_at,
            restore_started_at=started,
            restore_finished_at=finished,
            phases=typed.phases,
            rto_seconds=typed.rto_seconds or restore_results.seconds_between(started, finished),
            rto_target_seconds=typed.rto_target_seconds or options.rto_target_seconds,
            rpo_seconds=restore_results.seconds_between(backup_at, started),
            rpo_target_seconds=typed.rpo_target_seconds or options.rpo_target_seconds,
            outcome=typed.outcome,
            error=typed.error,
        )

    return build


def _stanza_builder(found: BackupObject, index: int, stanza: dict[str, Any], options: Options):
    """pgBackRest info: the stanza's status and its newest backup; tested at the file's time."""

    def build() -> dict[str, Any]:
        typed = payloads.convert(stanza, Stanza, where=f"stanza {index + 1}")
        status = typed.status
        checks = [
            restore_results.check(
                "stanza_status", "passed" if status.code == 0 else "failed", f"code {status.code}: {status.message}"
            )
        ]
        newest = max(typed.backup, key=lambda backup: backup.timestamp.stop) if typed.backup else None
        backup_at = datetime.fromtimestamp(newest.timestamp.stop, UTC) if newest else None
        if newest is None:
            checks.append(restore_results.check("backup_present", "failed", "the stanza has no backup"))
        else:
            checks.append(restore_results.check("backup_present", "passed", f"newest {newest.label}"))
            checks.append(
                restore_results.check("newest_backup_ok", "skipped", "this pgBackRest reports no error flag")
                if newest.error is None
                else restore_results.check(
                    "newest_backup_ok",
                    "failed" if newest.error else "passed",
                    "pgBackRest found errors in it" if newest.error else "no errors",
                )
            )
        tested_at = found.modified
        return restore_results.result_record(
            test_id=f"{found.name}#{typed.name}",
            database=typed.name,
            tool="pgbackrest",
            test_type="backup_info",
            tested_at=tested_at,
            checks=checks,
            backup_key=newest.label if newest else None,
            backup_at=backup_at,
            rpo_seconds=restore_results.seconds_between(backup_at, tested_at),
            rpo_target_seconds=options.rpo_target_seconds,
            rpo_met=False if newest is None and options.rpo_target_seconds else None,
        )

    return build


def _coverage(
    database: str, expected: bool, newest: dict[str, Any] | None, now: datetime, options: Options
) -> dict[str, Any]:
    max_age = options.max_test_age_hours
    age = round((now - parse_rfc3339(newest["tested_at"])).total_seconds() / 3600, 3) if newest else None
    return {
        "database": database,
        "expected": expected,
        "last_test_at": newest["tested_at"] if newest else None,
        "last_outcome": newest["outcome"] if newest else None,
        "age_hours": age,
        "max_age_hours": max_age,
        "tested_recently": age is not None and age <= max_age,
    }


def _time(value: datetime | float | None, where: str) -> datetime | None:
    """A declared ``Time`` as UTC: epoch seconds are bounded by their type, ISO times here."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return payloads.utc(value, where=where)
    return datetime.fromtimestamp(value, UTC)


def _safe(name: str) -> str:
    return re.sub(r"\.\.+", ".", re.sub(r"[^A-Za-z0-9._-]", "_", name)).lstrip(".-_") or "file"
