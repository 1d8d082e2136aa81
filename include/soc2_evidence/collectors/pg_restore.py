"""PostgreSQL restore test: restore the newest finished backup into a scratch database, verify it, measure RTO and RPO.

Options (:class:`Options`, checked when the config file is loaded):

- ``conn_id`` (an Airflow ``postgres`` connection) or ``dsn``: the source database.
- ``backups``: where its dumps and their manifests are (``s3://bucket/prefix``, ``gs://bucket/prefix``
  or a directory), or ``fresh`` to take a dump (with its manifest) now and test that. ``pattern``
  (default ``*.dump``) selects the dumps. A dump is finished when its manifest
  (``<dump>.manifest.json``, written by :func:`~soc2_evidence.collectors.support.postgres.take_backup`)
  is beside it; unfinished ones are listed and skipped, and the newest finished one is tested.
  ``aws_conn_id`` gives S3 credentials (default: boto3's chain).
- ``restore_conn_id`` or ``restore_dsn``: the server scratch databases are made on, connected to its
  maintenance database (default: the source's server, database ``postgres``). In production point it
  at a server of its own: a restore test loads the server it runs on. It needs the source's roles
  (grants are restored) and extensions.
- ``scratch_prefix`` (default ``soc2_restore_``): scratch databases are ``<prefix><source>_<hash>_<random>``;
  each run first drops this source's leftovers (of a test whose machine died).
- ``row_count_tolerance_percent`` (default 0): how far the source's row counts may be from the
  backup's beyond the inserts and deletes its statistics counted since the backup.
- ``checksums``: ``full`` (default), ``sample`` or ``none``, with ``sample_percent`` (default 10):
  for fresh backups; for stored ones the mode their manifest recorded is verified; ``none`` skips checksums.
- ``smoke_queries``: a list of ``{name, sql, expect: [[row values]]}`` or ``{name, sql, expect_rows: n}``
  (:class:`SmokeQuery`), run read-only in the restored database.
- ``rto_target_minutes`` and ``rpo_target_hours`` (required): RTO is the wall time of download, restore
  and verification; RPO is the age, when the test started, of the newest backup that passed integrity.
- ``jobs`` (``pg_restore --jobs``, default 1), ``bin_dir`` (default: the binaries matching the server's
  major version), ``timeout_minutes`` (pg_restore, default 360).

What is vouched for, and by what: the manifest names the server (``system_identifier``) and
database (OID, name) the dump is of; a dump of anything else is not restored and no content check
passes for it. The dump's sha256 must be the manifest's. The restore is compared with the manifest
(catalog at backup time, row counts, checksums, large objects, sequences) and with the source now
(row counts within the changes its statistics counted since, checksums of tables unchanged since).
The source's schema changes since the backup are reported as drift, not as a failed restore.

A failed restore or verification is evidence, not an error: the test is recorded as failed and the
run goes on. Errors (an unreadable connection string, an unreachable server) fail the extraction,
which is retried.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal

import msgspec

from soc2_evidence.collectors import CollectContext
from soc2_evidence.collectors.support import restore_results
from soc2_evidence.collectors.support.locations import BackupLocation, BackupObject, LocalLocation, open_location
from soc2_evidence.collectors.support.postgres import (
    CHECKSUM_MODES,
    DEFAULT_SAMPLE_PERCENT,
    MANIFEST_SUFFIX,
    PgConnection,
    TableState,
    catalog_entries,
    connection_from_options,
    drop_database,
    find_bin_dir,
    large_objects,
    leftover_databases,
    list_tables,
    measure_table,
    new_scratch_name,
    read_manifest,
    scratch_database,
    scratch_prefix,
    sequence_values,
    source_identity,
    table_activity,
    take_backup,
)
from soc2_evidence.core import config
from soc2_evidence.core.config import Problem, SourceConfig
from soc2_evidence.core.credentials import Credentials
from soc2_evidence.core.datasets import Dataset, may_be_empty
from soc2_evidence.core.errors import CollectorError
from soc2_evidence.core.evidence import check_name, parse_rfc3339, rfc3339, utc_now
from soc2_evidence.core.hashing import digest_file
from soc2_evidence.core.staging import BundleWriter

KIND = "pg_restore"
FAMILY = "backup"
VERSION = "1.0.0"
TOOL = "soc2-evidence pg_restore"
FRESH = "fresh"
DEFAULT_SCRATCH_PREFIX = "soc2_restore_"
DEFAULT_TIMEOUT_MINUTES = 360
MANIFEST_LIMIT = 64 * 1024 * 1024
SMOKE_TIMEOUT_MS = 300_000
DETAIL_EXAMPLES = 3
NOT_OF_SOURCE = "not a backup of the source"
# Checks of the restored content; all skipped, with why, when the backup is not vouched for.
CONTENT_CHECKS = (
    "schema_matches_backup",
    "schema_since_backup",
    "row_counts_match",
    "checksums_match",
    "rows_match_source",
    "checksums_match_source",
    "large_objects_match",
    "sequences_match",
)
RESTORABLE_FORMATS = ("custom", "tar")
REFUSED_FORMATS = {
    "plain": "a plain SQL dump is a psql script, which may run shell commands (\\!); dump with -Fc or -Ft",
    "gzip": "a compressed plain SQL dump is a psql script, which may run shell commands (\\!); dump with -Fc or -Ft",
    "unknown": "not a pg_dump archive (custom or tar format)",
}
# pg_dump options that dump part of a database (the manifest always describes all of it).
SUBSET_OPTIONS = ("-n", "-t", "-N", "-T", "--schema", "--table", "--exclude-schema", "--exclude-table")
REFUSED_DIRECTORY = "a folder of files; dump with -Fc or -Ft"
# A restore list's CREATE SCHEMA entry: "<id>; <catalog oid> <oid> SCHEMA - <name> <owner>".
_TOC_SCHEMA = re.compile(r"^\d+; \d+ \d+ SCHEMA - (\S+) ")

RESULTS = restore_results.results_dataset(KIND, "The restore test: backup, timings, RTO, RPO, checks, outcome")
TABLES = Dataset(
    name="pg_restore.tables",
    existence=may_be_empty(
        "A restore that found no backup or failed has no tables; pg_restore.results records the failure"
    ),
    item="tables.jsonl",
    key=("table",),
    columns={
        "table": "string",
        "expected_rows": "integer",
        "restored_rows": "integer",
        "rows_match": "boolean",
        "checksum_mode": "string",
        "expected_checksum": "string",
        "restored_checksum": "string",
        "checksum_match": "boolean",
        "source_rows": "integer",
        "source_rows_match": "boolean",
        "source_checksum_match": "boolean",
    },
    required=("rows_match", "checksum_mode"),
    value_sets={"checksum_mode": CHECKSUM_MODES},
    total="tables",
    description="Per table: rows and checksum in the manifest, in the restore and in the source now",
)
DATASETS = (RESULTS, TABLES)


class SmokeQuery(config.Section):
    """A query run read-only in the restored database, with the rows or the row count it must return."""

    name: Annotated[str, msgspec.Meta(min_length=1, description="The check is named smoke:<name>")]
    sql: Annotated[str, msgspec.Meta(min_length=1)]
    expect: Annotated[list[list[Any]] | None, msgspec.Meta(description="The rows, each a list of values")] = None
    expect_rows: Annotated[int, msgspec.Meta(ge=0, description="The number of rows")] | None = None

    def problems(self) -> Iterator[Problem]:
        try:
            check_name("smoke query name", self.name)
        except ValueError as error:
            yield Problem(("name",), str(error))
        if not self.sql.strip():
            yield Problem(("sql",), "must be a query")
        if (self.expect is None) == (self.expect_rows is None):
            yield Problem((), "set exactly one of 'expect' (rows) and 'expect_rows' (a count)")


class Options(config.Options, kw_only=True):
    conn_id: Annotated[str | None, msgspec.Meta(description="The source database's Airflow postgres connection")] = None
    dsn: Annotated[str | None, msgspec.Meta(description="The source database's libpq connection string")] = None
    backups: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            description=f"A directory, s3://bucket/prefix or gs://bucket/prefix of dumps, or '{FRESH}' to take one now",
        ),
    ]
    pattern: Annotated[str, msgspec.Meta(min_length=1, description="Which dumps; the newest is tested")] = "*.dump"
    aws_conn_id: Annotated[str | None, msgspec.Meta(description="Airflow AWS connection; unset: boto3's chain")] = None
    restore_conn_id: Annotated[
        str | None, msgspec.Meta(description="The scratch server's maintenance database; unset: the source's server")
    ] = None
    restore_dsn: str | None = None
    scratch_prefix: Annotated[
        str,
        msgspec.Meta(pattern="^[a-z0-9_]*[a-z][a-z0-9_]*$", description="Lower-case letters, digits and '_'"),
    ] = DEFAULT_SCRATCH_PREFIX
    row_count_tolerance_percent: Annotated[
        float, msgspec.Meta(ge=0, description="Beyond the source's counted inserts and deletes since the backup")
    ] = 0.0
    checksums: Literal["full", "sample", "none"] = "full"
    sample_percent: Annotated[int, msgspec.Meta(ge=1, le=100)] = DEFAULT_SAMPLE_PERCENT
    smoke_queries: list[SmokeQuery] = msgspec.field(default_factory=list)
    rto_target_minutes: Annotated[float, msgspec.Meta(ge=0, description="Download, restore and verification")]
    rpo_target_hours: Annotated[float, msgspec.Meta(ge=0, description="The tested backup's age")]
    jobs: Annotated[config.PositiveInt, msgspec.Meta(description="pg_restore --jobs")] = 1
    bin_dir: Annotated[str | None, msgspec.Meta(description="unset: the binaries of the server's major version")] = None
    timeout_minutes: Annotated[float, msgspec.Meta(ge=1, description="pg_restore's")] = DEFAULT_TIMEOUT_MINUTES

    def problems(self) -> Iterator[Problem]:
        if self.conn_id and self.dsn:
            yield Problem(("dsn",), "set only one of 'conn_id' and 'dsn'")
        elif not (self.conn_id or self.dsn):
            yield Problem((), "set 'conn_id' (an Airflow connection) or 'dsn' (a libpq connection string)")
        if self.restore_conn_id and self.restore_dsn:
            yield Problem(("restore_dsn",), "set only one of 'restore_conn_id' and 'restore_dsn'")
        names = [query.name for query in self.smoke_queries]
        for index, name in enumerate(names):
            if name in names[:index]:
                yield Problem(("smoke_queries", index, "name"), f"smoke query name {name!r} is used twice")


@dataclass(frozen=True)
class RestoreTestConfig:
    source_name: str
    database: PgConnection
    restore_server: PgConnection
    backups: str
    pattern: str
    aws_conn_id: str | None
    scratch_prefix: str
    row_count_tolerance_percent: float
    checksums: str
    sample_percent: int
    smoke_queries: tuple[SmokeQuery, ...]
    rto_target_seconds: float
    rpo_target_seconds: float
    jobs: int
    bin_dir: str | None
    timeout_seconds: float

    @classmethod
    def parse(cls, source: SourceConfig, context: CollectContext) -> RestoreTestConfig:
        """The test's settings: the typed options, with connections made and the local backups path resolved."""
        options: Options = source.options
        fields = msgspec.structs.asdict(options)
        database = connection_from_options(
            source.name, fields, "conn_id", "dsn", context.credentials.connection, required=True
        )
        restore_server = connection_from_options(
            source.name, fields, "restore_conn_id", "restore_dsn", context.credentials.connection, required=False
        )
        restore_server = restore_server or database.with_dbname("postgres")
        backups = options.backups
        if backups != FRESH:
            backups = backups if "://" in backups else str(context.resolve_path(backups))
        return cls(
            source_name=source.name,
            database=database,
            restore_server=restore_server,
            backups=backups,
            pattern=options.pattern,
            aws_conn_id=options.aws_conn_id or None,
            scratch_prefix=scratch_prefix(options.scratch_prefix, source.name),
            row_count_tolerance_percent=float(options.row_count_tolerance_percent),
            checksums=options.checksums,
            sample_percent=options.sample_percent,
            smoke_queries=tuple(options.smoke_queries),
            rto_target_seconds=float(options.rto_target_minutes) * 60,
            rpo_target_seconds=float(options.rpo_target_hours) * 3600,
            jobs=options.jobs,
            bin_dir=options.bin_dir or None,
            timeout_seconds=float(options.timeout_minutes) * 60,
        )


def collect(source: SourceConfig, writer: BundleWriter, context: CollectContext) -> None:
    config = RestoreTestConfig.parse(source, context)
    with tempfile.TemporaryDirectory(prefix="soc2-restore-test-") as work:
        test = RestoreTest(config, Path(work), context.credentials, now=context.now)
        try:
            record = test.run()
        finally:
            test.log.close()
        writer.add_jsonl(RESULTS.item, [record], description=RESULTS.description)
        writer.add_jsonl(TABLES.item, test.tables, description=TABLES.description)
        writer.report_total(TABLES.total, len(test.tables))
        writer.add_json(
            "scratch.json", test.scratch, description="The scratch database: its name, and that it was dropped"
        )
        if test.manifest is not None:
            writer.add_json("backup-manifest.json", test.manifest, description="The manifest written with the backup")
        writer.add_text(
            "restore.log",
            test.log.path.read_text(encoding="utf-8", errors="replace"),
            description="The restore test's log, with pg_restore's own output",
        )


def control_expectations(dataset: Dataset) -> list[Any]:
    return restore_results.control_expectations(dataset) if dataset is RESULTS else []


class RestoreLog:
    """Time-stamped lines in a file that pg_restore writes its own output into, in order."""

    def __init__(self, path: Path, now: Callable[[], datetime] = utc_now) -> None:
        self.path = path
        self.now = now
        self.stream: BinaryIO = open(path, "ab")  # noqa: SIM115 - closed by close()

    def __call__(self, message: str) -> None:
        self.stream.write(f"{rfc3339(self.now())} {message}\n".encode())
        self.stream.flush()

    def close(self) -> None:
        self.stream.close()


@dataclass(frozen=True)
class BackupListing:
    """The dumps at a location: finished ones (with a manifest) newest first, and those left aside."""

    finished: list[BackupObject]
    unfinished: list[BackupObject]  # no manifest yet: still being written, or abandoned
    refused: list[str]  # directory-format dumps: not restored (see _list_backups)
    missing: bool  # the local directory does not exist (an S3 or GCS prefix is just empty)


@dataclass(frozen=True)
class SourceNow:
    """The source when the restore is verified: its catalog, and per table its state and the changes
    its counters counted since the backup (None: unknown)."""

    catalog: list[str]
    tables: dict[str, tuple[TableState, dict[str, int] | None]]


@dataclass(frozen=True)
class Candidate:
    """A finished backup read for testing: its manifest (or why it is unusable) and whose it is."""

    found: BackupObject
    manifest: dict[str, Any] | None
    problem: str | None  # the manifest is unreadable, or not of the source


class RestoreTest:
    """One restore test of one database; ``run`` returns its result record and never leaves a scratch database."""

    def __init__(
        self,
        config: RestoreTestConfig,
        work: Path,
        credentials: Credentials | None = None,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self.config = config
        self.credentials = credentials or Credentials()
        self.work = work
        self.now = now  # the RPO (backup age) and the restore's finish time are read from it
        self.log = RestoreLog(work / "restore.log", now)
        self.checks: list[dict[str, str]] = []
        self.phases: dict[str, float | None] = {}
        self.tables: list[dict[str, Any]] = []
        self.manifest: dict[str, Any] | None = None
        self.identity: dict[str, Any] = {}
        self.scratch_name = new_scratch_name(config.scratch_prefix)
        self.scratch: dict[str, Any] = {
            "database": self.scratch_name,
            "server": config.restore_server.describe(),
            "created": False,
            "dropped": False,
            "drop_error": None,
            "leftovers_dropped": [],
        }

    def run(self) -> dict[str, Any]:
        config = self.config
        self.log(f"restore test {self.scratch_name}: source {config.database.describe()}, backups {config.backups}")
        restore_major = self._drop_leftovers()
        location = self._location()
        self.identity = self._source_identity()
        listing = self._list_backups(location)
        tested_at = self.now()  # the RPO is the backup's age now, when it is about to be restored
        if not listing.finished:
            self.checks.append(restore_results.check("backup_found", "failed", self._nothing_found(location, listing)))
            self.checks.append(restore_results.check("rpo_measured_from", "failed", "no finished backup: RPO missed"))
            return self._record(tested_at, rpo_met=False)
        found = listing.finished[0]
        self.checks.append(restore_results.check("backup_found", "passed", self._found_detail(found, listing)))
        self.log(f"newest finished backup: {found.url} ({found.size} bytes, modified {rfc3339(found.modified)})")
        candidate = self._candidate(location, found)
        self.manifest = candidate.manifest
        backup_key = found.url if config.backups != FRESH else f"{FRESH}:{found.name}"

        restore_finished_at = None
        rto_seconds = None
        sha256 = None
        bin_dir = find_bin_dir(restore_major, config.bin_dir)
        started = time.monotonic()
        with (
            ThreadPoolExecutor(max_workers=2) as beside,  # beside pg_restore: off the RTO's critical path
            scratch_database(config.restore_server, self.scratch_name, work_dir=self.work) as guard,
        ):
            self.scratch["created"] = True
            dump = self._download(location, found.name, self.work / "backup.dump")
            self.phases["download"] = round(time.monotonic() - started, 3)
            digest = beside.submit(digest_file, dump)
            scratch = config.restore_server.with_dbname(self.scratch_name)
            restored = False
            if candidate.problem is None:
                source_now = beside.submit(self._measure_source)
                restored = self._restore(bin_dir, scratch, dump)
            else:
                detail = f"not restored: {candidate.problem}"
                self.checks.append(restore_results.check("restore_completed", "skipped", detail))
            sha256 = digest.result().sha256
            self.log(f"backup sha256 {sha256}")
            backup_checks, unvouched = self._backup_checks(candidate, sha256)
            self.checks[1:1] = backup_checks  # listed right after backup_found
            if restored and unvouched is None:
                self._verify(scratch, source_now)
                restore_finished_at = self.now()
                rto_seconds = round(time.monotonic() - started, 3)
            else:
                reason = unvouched or "nothing restored to verify"
                for name in (*CONTENT_CHECKS, *(f"smoke:{query.name}" for query in config.smoke_queries)):
                    self.checks.append(restore_results.check(name, "skipped", reason))
        self.scratch.update(dropped=guard.dropped, drop_error=guard.drop_error)
        if guard.dropped:
            self.log(f"scratch database {self.scratch_name} dropped")
        else:
            self.log(f"scratch database {self.scratch_name} NOT dropped ({guard.drop_error}); its guard will retry")
        good, skipped = self._newest_intact(location, listing, tested=(candidate, backup_checks))
        self.checks.insert(len(backup_checks) + 1, self._rpo_check(found, good, skipped))
        return self._record(
            tested_at,
            backup_key=backup_key,
            backup_sha256=sha256,
            backup_at=good[1] if good else None,
            restore_started_at=tested_at,
            restore_finished_at=restore_finished_at,
            rto_seconds=rto_seconds,
            rpo_seconds=round((tested_at - good[1]).total_seconds(), 3) if good else None,
            rpo_met=None if good else False,
        )

    def _record(self, tested_at: datetime, **values: Any) -> dict[str, Any]:
        config = self.config
        record = restore_results.result_record(
            test_id=f"{config.source_name}/{self.scratch_name}",
            database=config.database.dbname,
            tool=TOOL,
            test_type="restore",
            tested_at=tested_at,
            checks=self.checks,
            phases=self.phases,
            rto_target_seconds=config.rto_target_seconds,
            rpo_target_seconds=config.rpo_target_seconds,
            **values,
        )
        self.log(
            f"outcome {record['outcome']}: {record['checks_failed']} check(s) failed; "
            f"RTO {record['rto_seconds']} s (target {config.rto_target_seconds:g}), "
            f"RPO {record['rpo_seconds']} s (target {config.rpo_target_seconds:g})"
        )
        return record

    def _drop_leftovers(self) -> int:
        """Drop this source's scratch databases left by a test that died; return the server's major version."""
        server = self.config.restore_server
        try:
            with server.connect() as connection:
                major = connection.info.server_version // 10000
            leftovers = leftover_databases(server, self.config.scratch_prefix)
            for name in leftovers:
                drop_database(server, name)
                self.log(f"dropped leftover scratch database {name} (a previous test did not finish)")
        except _pg_errors() as error:
            raise CollectorError(
                f"source {self.config.source_name}: restore server {server.describe()}: {server.scrub(error)}"
            ) from error
        self.scratch["leftovers_dropped"] = leftovers
        return major

    def _source_identity(self) -> dict[str, Any]:
        database = self.config.database
        try:
            with database.connect() as connection:
                return source_identity(connection)
        except _pg_errors() as error:
            raise CollectorError(
                f"source {self.config.source_name}: {database.describe()}: {database.scrub(error)}"
            ) from error
        except CollectorError as error:
            raise CollectorError(f"source {self.config.source_name}: {database.describe()}: {error}") from error

    def _location(self) -> BackupLocation:
        config = self.config
        if config.backups != FRESH:
            try:
                return open_location(config.backups, credentials=self.credentials, aws_conn_id=config.aws_conn_id)
            except CollectorError as error:
                raise CollectorError(f"source {config.source_name}: {error}") from error
        directory = self.work / "fresh"
        started = time.monotonic()
        try:
            manifest = take_backup(
                config.database,
                directory,
                checksums=config.checksums,
                sample_percent=config.sample_percent,
                bin_dir=config.bin_dir,
                timeout=config.timeout_seconds,
            )
        except _pg_errors() as error:
            raise CollectorError(
                f"source {config.source_name}: {config.database.describe()}: {config.database.scrub(error)}"
            ) from error
        except CollectorError as error:
            raise CollectorError(f"source {config.source_name}: {error}") from error
        self.phases["backup"] = round(time.monotonic() - started, 3)
        self.log(f"took a fresh backup {manifest['dump']['name']} in {self.phases['backup']} s")
        return LocalLocation(directory)

    def _list_backups(self, location: BackupLocation) -> BackupListing:
        """The dumps matching the pattern. Only one with its manifest beside it is finished: the manifest
        is stored last. A missing local directory is listed as empty, like an S3 prefix without objects.

        A directory-format dump (``pg_dump -Fd``) is a folder of files whose name matches; it is refused,
        named in ``backup_found``: store it as one file (``-Fc`` or ``-Ft``) so it can be fetched whole.
        """
        pattern = self.config.pattern
        if isinstance(location, LocalLocation) and not location.root.exists():
            self.log(f"{location.url} does not exist")
            return BackupListing([], [], [], missing=True)
        manifests: set[str] = set()
        folders: set[str] = set()
        dumps: list[BackupObject] = []
        try:
            for found in location.iter_objects():  # streamed: only dumps and manifests' names are kept
                folder, _, base = found.name.rpartition("/")
                if base.endswith(MANIFEST_SUFFIX):
                    manifests.add(found.name)
                elif base == "toc.dat" and folder and fnmatch.fnmatchcase(folder.rpartition("/")[2], pattern):
                    folders.add(folder)
                elif fnmatch.fnmatchcase(base, pattern):
                    dumps.append(found)
        except CollectorError as error:
            raise CollectorError(f"source {self.config.source_name}: {error}") from error
        refused = sorted(folders)
        dumps = [found for found in dumps if not any(found.name.startswith(folder + "/") for folder in refused)]
        dumps.sort(key=lambda found: (found.modified, found.name), reverse=True)
        finished = [found for found in dumps if found.name + MANIFEST_SUFFIX in manifests]
        unfinished = [found for found in dumps if found.name + MANIFEST_SUFFIX not in manifests]
        for found in unfinished:
            self.log(f"unfinished (no manifest), skipped: {found.url}")
        refused_urls = [f"{location.url}/{folder}" for folder in refused]
        for url in refused_urls:
            self.log(f"directory-format dump, refused: {url}")
        return BackupListing(finished, unfinished, refused_urls, missing=False)

    def _nothing_found(self, location: BackupLocation, listing: BackupListing) -> str:
        where = f"{location.url} (does not exist)" if listing.missing else location.url
        parts = [f"source {self.config.source_name}: no finished {self.config.pattern} at {where}"]
        if listing.unfinished:
            parts.append("unfinished (no manifest): " + _names(found.url for found in listing.unfinished))
        if listing.refused:
            parts.append(f"directory-format dumps refused ({REFUSED_DIRECTORY}): " + _names(listing.refused))
        return "; ".join(parts)

    def _found_detail(self, found: BackupObject, listing: BackupListing) -> str:
        parts = [f"{found.url} ({found.size} bytes, {rfc3339(found.modified)})"]
        if listing.unfinished:
            parts.append("skipped as unfinished (no manifest): " + _names(item.url for item in listing.unfinished))
        if listing.refused:
            parts.append(f"directory-format dumps refused ({REFUSED_DIRECTORY}): " + _names(listing.refused))
        return "; ".join(parts)

    def _candidate(self, location: BackupLocation, found: BackupObject) -> Candidate:
        """A finished backup's manifest, and whether it says the backup is of the source."""
        where = f"{location.url}/{found.name}{MANIFEST_SUFFIX}"
        try:
            data = location.read_bytes(found.name + MANIFEST_SUFFIX, MANIFEST_LIMIT)
        except CollectorError as error:
            raise CollectorError(f"source {self.config.source_name}: {error}") from error
        if data is None:  # removed since the listing
            return Candidate(found, None, "its manifest is gone")
        try:
            manifest = read_manifest(data, where)
        except ValueError as error:
            self.log(str(error))
            return Candidate(found, None, f"the manifest is unusable: {error}")
        self.log(f"{found.name}: manifest taken at {manifest['taken_at']}, {len(manifest['tables'])} table(s)")
        differences = _identity_differences(manifest["source"], self.identity)
        if differences:
            return Candidate(found, manifest, f"{NOT_OF_SOURCE} ({differences})")
        return Candidate(found, manifest, None)

    def _download(self, location: BackupLocation, name: str, target: Path) -> Path:
        """The dump as a local file: the file itself in a directory, else a download to ``target``."""
        path = location.local_path(name)
        if path is None:
            path = target
            try:
                location.download(name, path)
            except CollectorError as error:
                raise CollectorError(f"source {self.config.source_name}: {error}") from error
        return path

    def _backup_checks(self, candidate: Candidate, sha256: str) -> tuple[list[dict[str, str]], str | None]:
        """Is the dump the one its manifest describes, and a backup of this database? With the checks,
        why no content check may vouch for the restore (None: they may)."""
        manifest = candidate.manifest
        if manifest is None:
            problem = candidate.problem or ""
            return [
                restore_results.check("backup_intact", "failed", problem),
                restore_results.check("backup_of_source", "skipped", "no usable manifest to say"),
            ], "no usable manifest to compare with"
        intact = _intact_detail(manifest, candidate.found.name, sha256)
        identity = manifest["source"]
        if candidate.problem is None:
            of_source = (
                "passed",
                f"server {identity['system_identifier']}, database {identity['database']} (OID "
                f"{identity['database_oid']}), as the source",
            )
        else:
            of_source = ("failed", candidate.problem)
        checks = [
            restore_results.check("backup_intact", "failed" if intact else "passed", intact or f"sha256 {sha256}"),
            restore_results.check("backup_of_source", *of_source),
        ]
        if candidate.problem is not None:
            return checks, NOT_OF_SOURCE
        return checks, ("the dump is not the one its manifest describes" if intact else None)

    def _newest_intact(
        self, location: BackupLocation, listing: BackupListing, tested: tuple[Candidate, list[dict[str, str]]]
    ) -> tuple[tuple[BackupObject, datetime] | None, str]:
        """The newest finished backup that passed integrity (its manifest's sha256, of the source), with
        when it was taken, and what was wrong with each newer one: the backup the RPO is measured from."""
        candidate, checks = tested
        skipped: list[str] = []
        if all(check["status"] == "passed" for check in checks):
            return (candidate.found, parse_rfc3339(candidate.manifest["taken_at"])), ""
        skipped.append(f"{candidate.found.name}: {_first_failure(checks)}")
        for found in listing.finished[1:]:
            older = self._candidate(location, found)
            if older.problem is not None or older.manifest is None:
                skipped.append(f"{found.name}: {older.problem}")
                continue
            path = self._download(location, found.name, self.work / "older.dump")
            problem = _intact_detail(older.manifest, found.name, digest_file(path).sha256)
            if path == self.work / "older.dump":
                path.unlink()
            if problem is None:
                return (found, parse_rfc3339(older.manifest["taken_at"])), "; ".join(skipped)
            skipped.append(f"{found.name}: {problem}")
        return None, "; ".join(skipped)

    def _rpo_check(
        self, tested: BackupObject, good: tuple[BackupObject, datetime] | None, skipped: str
    ) -> dict[str, str]:
        if good is None:
            detail = f"no finished backup passed integrity: RPO missed ({_short(skipped, 400)})"
            return restore_results.check("rpo_measured_from", "failed", detail)
        found, taken_at = good
        if found is tested:
            return restore_results.check("rpo_measured_from", "passed", f"{found.url}, taken at {rfc3339(taken_at)}")
        detail = f"{found.url}, taken at {rfc3339(taken_at)}: the newest intact backup (newer ones failed: {skipped})"
        return restore_results.check("rpo_measured_from", "passed", _short(detail, 600))

    def _restore(self, bin_dir: Path, scratch: PgConnection, dump: Path) -> bool:
        """pg_restore into the empty scratch database, stopping at the first error.

        Only custom and tar archives are restored (see :func:`dump_format`). Entries that create what
        a fresh database already has (the ``public`` schema, which ``pg_dump -n public`` dumps) are
        left out of the restore's list, so they are not errors.
        """
        config = self.config
        started = time.monotonic()
        kind = dump_format(dump)
        if kind not in RESTORABLE_FORMATS:
            detail = f"not restored: {REFUSED_FORMATS.get(kind, REFUSED_FORMATS['unknown'])}"
            self.phases["restore"] = round(time.monotonic() - started, 3)
            self.log(detail)
            self.checks.append(restore_results.check("restore_completed", "failed", detail))
            return False
        listing = self.work / "restore.list"
        code = self._pg_restore(bin_dir, scratch, ["--list", f"--file={listing}", str(dump)], None)
        if code == 0:
            self._leave_out_existing(scratch, listing)
            arguments = ["--exit-on-error", "--no-owner", f"--jobs={config.jobs}", f"--use-list={listing}"]
            self.log(f"pg_restore ({bin_dir}) of a {kind} archive into {scratch.describe()}, {config.jobs} job(s)")
            code = self._pg_restore(bin_dir, scratch, [*arguments, f"--dbname={scratch.conninfo()}", str(dump)], 1)
        self.phases["restore"] = round(time.monotonic() - started, 3)
        if code == 0:
            detail, status = f"pg_restore finished in {self.phases['restore']} s", "passed"
        elif code is None:
            detail, status = f"pg_restore timed out after {config.timeout_seconds / 60:g} minutes", "failed"
        elif code < 0:
            detail, status = f"pg_restore was killed by signal {-code}", "failed"
        else:
            detail, status = f"pg_restore exited with {code}: {_last_error(self.log.path)}", "failed"
        self.log(detail)
        self.checks.append(restore_results.check("restore_completed", status, detail))
        return status == "passed"

    def _pg_restore(
        self, bin_dir: Path, scratch: PgConnection, arguments: list[str], verbose: int | None
    ) -> int | None:
        """Run pg_restore with its output in the log; its exit code, None when it timed out."""
        command = [str(bin_dir / "pg_restore"), *(["--verbose"] if verbose else []), *arguments]
        process = subprocess.Popen(
            command, env=scratch.env(), stdin=subprocess.DEVNULL, stdout=self.log.stream, stderr=subprocess.STDOUT
        )
        try:
            return process.wait(timeout=self.config.timeout_seconds)
        except subprocess.TimeoutExpired:
            return None
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    def _leave_out_existing(self, scratch: PgConnection, listing: Path) -> None:
        """Comment out the list's CREATE SCHEMA entries of schemas the fresh scratch database already has."""
        with scratch.connect() as connection:
            existing = {row[0] for row in connection.execute("SELECT nspname FROM pg_namespace")}
        lines = listing.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
        kept = []
        for line in lines:
            match = _TOC_SCHEMA.match(line)
            if match and match.group(1) in existing:
                self.log(f"left out of the restore (the fresh database has it): {line.strip()}")
                line = ";" + line
            kept.append(line)
        listing.write_text("\n".join(kept) + "\n", encoding="utf-8", errors="surrogateescape")

    def _measure_source(self) -> SourceNow:
        """The source now, in one snapshot: its catalog, and per table of the manifest its rows, its
        change counters since the backup and, where they and its columns show no change, its checksum."""
        config = self.config
        manifest = self.manifest
        expected = {entry["table"]: entry for entry in manifest["tables"]}
        tables: dict[str, tuple[TableState, bool]] = {}
        with config.database.connect(pinned=True) as source, source.transaction():
            source.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            activity = table_activity(source)  # first: beside the snapshot the counts are read in
            catalog = catalog_entries(source)
            altered = _altered_tables(manifest["catalog"], catalog)
            for table in list_tables(source):
                want = expected.get(table.name)
                if want is None:
                    continue  # created since the backup: schema_since_backup says so
                since = _changes_since(want, activity.get(table.name))
                unchanged = since is not None and not any(since.values()) and table.name not in altered
                mode = want["checksum_mode"] if unchanged and config.checksums != "none" else "none"
                state = measure_table(source, table, mode, want.get("sample_percent"))
                tables[table.name] = (state, since)
        return SourceNow(catalog, tables)

    def _verify(self, scratch: PgConnection, source_now: Future[SourceNow]) -> None:
        config = self.config
        manifest = self.manifest
        started = time.monotonic()
        try:
            with scratch.connect(pinned=True) as restored:
                restored_catalog = catalog_entries(restored)
                subset = _subset_options(manifest["dump"].get("options") or [])
                self.checks.append(_schema_check(manifest["catalog"], restored_catalog, subset))
                measured = self._measure_restored(restored)
                source = source_now.result()
                self.checks.append(_drift_check(manifest["catalog"], source.catalog))
                self._compare_tables(measured, source)
                self.checks.append(_large_objects_check(manifest["large_objects"], large_objects(restored)))
                self.checks.append(_sequences_check(manifest["sequences"], sequence_values(restored)))
            for query in config.smoke_queries:
                self.checks.append(_run_smoke_query(scratch, query))
        except _pg_errors() as error:
            raise CollectorError(
                f"source {config.source_name}: verification failed to run: {config.database.scrub(error)}"
            ) from error
        except CollectorError as error:
            raise CollectorError(f"source {config.source_name}: {error}") from error
        self.phases["verify"] = round(time.monotonic() - started, 3)
        self.log(f"verified in {self.phases['verify']} s")

    def _measure_restored(self, restored) -> dict[str, TableState]:
        """Rows and checksum of each restored table, in the mode its manifest entry recorded."""
        expected = {entry["table"]: entry for entry in self.manifest["tables"]}
        measured = {}
        for table in list_tables(restored):
            want = expected.get(table.name)
            mode = want["checksum_mode"] if want and self.config.checksums != "none" else "none"
            measured[table.name] = measure_table(restored, table, mode, want.get("sample_percent") if want else None)
        return measured

    def _compare_tables(self, measured: dict[str, TableState], source: SourceNow) -> None:
        """Each table against the manifest (exactly: integrity) and against the source now (within what
        the source's change counters say it changed since the backup: the restore holds the source's data).
        Checksums are compared with the source only for tables whose rows and columns are unchanged since."""
        config = self.config
        expected = {entry["table"]: entry for entry in self.manifest["tables"]}
        rows, checksums, source_rows, source_checksums = [], [], [], []
        compared = compared_with_source = 0
        for name in sorted(set(expected) | set(measured)):
            want, got = expected.get(name), measured.get(name)
            mode = want["checksum_mode"] if want and config.checksums != "none" else "none"
            rows_match = bool(want and got and got.rows == want["rows"])
            checksum_match = None
            if want and got and mode != "none":
                checksum_match = got.checksum_mode == mode and got.checksum == want["checksum"]
                compared += 1
            elif want and mode != "none":  # a table of the backup that was not restored: nothing vouches for it
                checksum_match = False
            if not rows_match:
                rows.append(
                    f"{name}: {'absent' if got is None else got.rows} restored, "
                    f"{'none' if want is None else want['rows']} in the manifest"
                )
            if checksum_match is False:
                checksums.append(f"{name} ({mode}{', absent' if got is None else ''})")
            row = {
                "table": name,
                "expected_rows": want["rows"] if want else None,
                "restored_rows": got.rows if got else None,
                "rows_match": rows_match,
                "checksum_mode": mode,
                "expected_checksum": want["checksum"] if want and mode != "none" else None,
                "restored_checksum": got.checksum if got and mode != "none" else None,
                "checksum_match": checksum_match,
                "source_rows": None,
                "source_rows_match": None,
                "source_checksum_match": None,
            }
            self.tables.append(row)
            if want and got is None and name in source.tables:
                source_rows.append(f"{name}: absent restored")
                if mode != "none":
                    source_checksums.append(f"{name} ({mode}, absent)")
            if not (want and got and name in source.tables):
                continue  # else created or dropped since the backup: schema_since_backup says so
            now, since = source.tables[name]
            problem = _source_rows_problem(got.rows, now.rows, since, config.row_count_tolerance_percent)
            row.update(source_rows=now.rows, source_rows_match=problem is None)
            if problem:
                source_rows.append(f"{name}: {problem}")
            if now.checksum_mode != "none" and now.rows == got.rows:
                row["source_checksum_match"] = now.checksum == got.checksum
                compared_with_source += 1
                if not row["source_checksum_match"]:
                    source_checksums.append(f"{name} ({mode}, unchanged since the backup by its counters)")
        sampled = {entry.get("sample_percent") for entry in expected.values() if entry["checksum_mode"] == "sample"}
        how = f" (sampled {', '.join(f'{percent}%' for percent in sorted(sampled))})" if sampled else ""
        self.checks.append(_problems_check("row_counts_match", rows, f"{len(self.tables)} tables match the manifest"))
        self.checks.append(
            self._checksum_check("checksums_match", checksums, compared, f"{compared} table checksums{how}")
        )
        in_source = len([row for row in self.tables if row["source_rows"] is not None])
        self.checks.append(
            _problems_check(
                "rows_match_source", source_rows, f"{in_source} tables within the source's changes since the backup"
            )
        )
        changed = in_source - compared_with_source
        self.checks.append(
            self._checksum_check(
                "checksums_match_source",
                source_checksums,
                compared_with_source,
                f"{compared_with_source} unchanged table checksums{how} match the source now"
                + (f"; {changed} changed since the backup, not compared" if changed else ""),
            )
        )
        for problem in rows + source_rows:
            self.log(f"rows: {problem}")
        for problem in checksums + source_checksums:
            self.log(f"checksum differs: {problem}")

    def _checksum_check(self, name: str, problems: list[str], compared: int, passed: str) -> dict[str, str]:
        if self.config.checksums == "none":
            return restore_results.check(name, "skipped", "checksums: none")
        if compared == 0 and not problems:
            return restore_results.check(name, "skipped", "no table checksum to compare")
        return _problems_check(name, problems, passed + (" match the manifest" if name == "checksums_match" else ""))


def dump_format(path: Path) -> str:
    """What kind of dump a file is, from its first bytes: custom, tar, gzip (compressed) or plain SQL."""
    with open(path, "rb") as stream:
        head = stream.read(512)
    if head.startswith(b"PGDMP"):
        return "custom"
    if head[257:262] == b"ustar":
        return "tar"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.lstrip().startswith((b"--", b"SET ", b"\\")):
        return "plain"
    return "unknown"


def _identity_differences(recorded: dict[str, Any], source: dict[str, Any]) -> str:
    """How the manifest's identity differs from the source's, or "" when it is the same database."""
    differences = []
    if str(recorded.get("system_identifier")) != source["system_identifier"]:
        differences.append(f"server {recorded.get('system_identifier')}, the source's is {source['system_identifier']}")
    if recorded.get("database_oid") != source["database_oid"]:
        differences.append(f"database OID {recorded.get('database_oid')}, the source's is {source['database_oid']}")
    if recorded.get("database") != source["database"]:
        differences.append(f"database {recorded.get('database')!r}, the source is {source['database']!r}")
    return "; ".join(differences)


def _intact_detail(manifest: dict[str, Any], name: str, sha256: str) -> str | None:
    """Why the dump is not the one its manifest describes, or None when it is."""
    dump = manifest.get("dump") or {}
    if dump.get("name") != name:
        return f"the manifest describes {dump.get('name')!r}, not {name!r}"
    if dump.get("sha256") != sha256:
        return f"sha256 {sha256} differs from the manifest's {dump.get('sha256')}"
    return None


def _first_failure(checks: list[dict[str, str]]) -> str:
    return next((check["detail"] for check in checks if check["status"] != "passed"), "")


def _changes_since(backup: dict[str, Any], now: dict[str, int] | None) -> dict[str, int] | None:
    """Rows inserted, updated and deleted in a table since the backup, by its counters; None when unknown
    (no statistics now, or counters below the backup's: they were reset)."""
    if now is None:
        return None
    since = {counter: now[counter] - backup[counter] for counter in ("inserted", "updated", "deleted")}
    return since if min(since.values()) >= 0 else None


def _source_rows_problem(restored: int, now: int, since: dict[str, int] | None, tolerance_percent: float) -> str | None:
    """Why ``restored`` rows cannot be the source's ``now`` rows at backup time, or None when they can.

    Allowed: the inserts and deletes counted since the backup, plus ``row_count_tolerance_percent``
    of the restored rows. Never allowed: the source holding ten times the rows restored or more.
    """
    if now >= 10 * restored and now > restored:
        return f"{restored} restored, {now} in the source now: an order of magnitude fewer"
    slack = restored * tolerance_percent / 100
    inserted, deleted = (since["inserted"], since["deleted"]) if since else (0, 0)
    if restored - deleted - slack <= now <= restored + inserted + slack:
        return None
    counted = (
        f"{inserted} inserted and {deleted} deleted since the backup"
        if since
        else "no change counters since the backup (statistics reset)"
    )
    return f"{restored} restored, {now} in the source now; {counted}, tolerance {tolerance_percent:g}%"


def _altered_tables(recorded: list[str], now: list[str]) -> set[str]:
    """Tables whose columns changed since the backup (a row's checksum covers its columns)."""
    changed = set(recorded) ^ set(now)
    return {".".join(line.split(" ", 2)[1].split(".")[:2]) for line in changed if line.startswith("column ")}


def _subset_options(options: list[str]) -> list[str]:
    """The pg_dump options a backup was taken with that leave part of the database out."""
    return [option for option in options if option.startswith(SUBSET_OPTIONS)]


def _schema_check(recorded: list[str], restored: list[str], subset: list[str]) -> dict[str, str]:
    """The restored schema against the catalog the manifest recorded at backup time."""
    missing = sorted(set(recorded) - set(restored))
    unexpected = sorted(set(restored) - set(recorded))
    if not missing and not unexpected:
        return restore_results.check("schema_matches_backup", "passed", f"{len(recorded)} catalog entries as at backup")
    parts = [f"{len(missing)} catalog entries of the backup missing, {len(unexpected)} not in it"]
    if missing:
        parts.append("missing: " + "; ".join(_short(line) for line in missing[:DETAIL_EXAMPLES]))
    if unexpected:
        parts.append("unexpected: " + "; ".join(_short(line) for line in unexpected[:DETAIL_EXAMPLES]))
    if subset:
        parts.append(f"a subset dump ({' '.join(subset)}): its manifest describes the whole database")
    return restore_results.check("schema_matches_backup", "failed", "; ".join(parts))


def _drift_check(recorded: list[str], now: list[str]) -> dict[str, str]:
    """The source's schema changes since the backup: evidence of change, not a failed restore."""
    added = sorted(set(now) - set(recorded))
    removed = sorted(set(recorded) - set(now))
    if not added and not removed:
        return restore_results.check("schema_since_backup", "passed", "the source's schema is unchanged since")
    parts = [f"the source changed since the backup (drift, not a restore failure): +{len(added)} -{len(removed)}"]
    if added:
        parts.append("added: " + "; ".join(_short(line) for line in added[:DETAIL_EXAMPLES]))
    if removed:
        parts.append("removed: " + "; ".join(_short(line) for line in removed[:DETAIL_EXAMPLES]))
    return restore_results.check("schema_since_backup", "passed", "; ".join(parts))


def _large_objects_check(recorded: dict[str, Any], restored: dict[str, Any]) -> dict[str, str]:
    if recorded == restored:
        detail = f"{restored['count']} large objects, {restored['bytes']} bytes, checksums as at backup"
        return restore_results.check("large_objects_match", "passed", detail)
    return restore_results.check(
        "large_objects_match",
        "failed",
        f"{restored['count']} large objects ({restored['bytes']} bytes) restored, the manifest has "
        f"{recorded['count']} ({recorded['bytes']} bytes)"
        + (
            "; their content differs"
            if (recorded["count"], recorded["bytes"]) == (restored["count"], restored["bytes"])
            else ""
        ),
    )


def _sequences_check(recorded: dict[str, int | None], restored: dict[str, int | None]) -> dict[str, str]:
    """Each sequence restored at or above the value read before pg_dump read it (never behind: new
    rows would reuse keys)."""
    problems = []
    for name, value in sorted(recorded.items()):
        if name not in restored:
            problems.append(f"{name}: absent")
        elif value is not None and (restored[name] is None or restored[name] < value):
            problems.append(f"{name}: {restored[name]} restored, at least {value} at backup")
    passed = f"{len(recorded)} sequences at or above their backup values"
    return _problems_check("sequences_match", problems, passed, "sequence(s)")


def _names(urls) -> str:
    urls = list(urls)
    more = f" and {len(urls) - DETAIL_EXAMPLES} more" if len(urls) > DETAIL_EXAMPLES else ""
    return ", ".join(urls[:DETAIL_EXAMPLES]) + more


def _problems_check(name: str, problems: list[str], passed: str, what: str = "table(s)") -> dict[str, str]:
    if not problems:
        return restore_results.check(name, "passed", passed)
    shown = "; ".join(problems[:DETAIL_EXAMPLES])
    more = f" and {len(problems) - DETAIL_EXAMPLES} more" if len(problems) > DETAIL_EXAMPLES else ""
    return restore_results.check(name, "failed", f"{len(problems)} {what}: {shown}{more}")


def _run_smoke_query(scratch: PgConnection, query: SmokeQuery) -> dict[str, str]:
    import psycopg

    name = f"smoke:{query.name}"
    try:
        with scratch.connect(autocommit=False) as connection:
            connection.read_only = True
            connection.execute(f"SET statement_timeout = {SMOKE_TIMEOUT_MS}")
            rows = [[_plain(value) for value in row] for row in connection.execute(query.sql).fetchall()]
            connection.rollback()
    except psycopg.OperationalError:
        raise
    except psycopg.Error as error:
        return restore_results.check(name, "failed", f"the query failed: {scratch.scrub(error)}")
    if query.expect is not None:
        expected = [[_plain(value) for value in row] for row in query.expect]
        if rows == expected:
            return restore_results.check(name, "passed", f"returned {_short(repr(rows))}")
        return restore_results.check(
            name, "failed", f"returned {_short(repr(rows))}, expected {_short(repr(expected))}"
        )
    if len(rows) == query.expect_rows:
        return restore_results.check(name, "passed", f"returned {len(rows)} row(s)")
    return restore_results.check(name, "failed", f"returned {len(rows)} row(s), expected {query.expect_rows}")


def _plain(value: Any) -> Any:
    """Query values and YAML values in one comparable form."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        return rfc3339(value) if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _last_error(path: Path) -> str:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    errors = [line for line in lines if "error" in line.lower()]
    return _short((errors or lines or ["no output"])[-1].strip())


def _pg_errors() -> tuple[type[BaseException], ...]:
    import psycopg

    return (psycopg.Error,)
