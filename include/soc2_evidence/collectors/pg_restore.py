"""PostgreSQL restore test: restore the newest backup into a scratch database, verify it, measure RTO and RPO.

Options (:class:`Options`, checked when the config file is loaded):

- ``conn_id`` (an Airflow ``postgres`` connection) or ``dsn``: the source database.
- ``backups``: where its pg_dump custom-format files are (``s3://bucket/prefix``, ``gs://bucket/prefix``
  or a directory), or ``fresh`` to take a dump (with its manifest) now and test that. ``pattern``
  (default ``*.dump``) selects the dumps; the newest by modification time is tested. ``aws_conn_id``
  gives S3 credentials (default: boto3's chain).
- ``restore_conn_id`` or ``restore_dsn``: the server scratch databases are made on, connected to its
  maintenance database (default: the source's server, database ``postgres``). In production point it
  at a server of its own: a restore test loads the server it runs on.
- ``scratch_prefix`` (default ``soc2_restore_``): scratch databases are ``<prefix><source>_<hash>_<random>``;
  each run first drops this source's leftovers (of a test whose machine died).
- ``baseline``: ``manifest`` (default) compares row counts and checksums with the backup manifest
  beside the dump (recorded in the dump's own snapshot); ``source`` compares with the source now, for
  dumps without a manifest: ``row_count_tolerance_percent`` (default 0) allows drift, and checksums
  then only hold on a source that did not change since the backup.
- ``checksums``: ``full`` (default), ``sample`` or ``none``; ``sample_percent`` (default 10). Against a
  manifest, the mode the manifest recorded is verified; ``none`` skips checksums.
- ``smoke_queries``: a list of ``{name, sql, expect: [[row values]]}`` or ``{name, sql, expect_rows: n}``
  (:class:`SmokeQuery`), run read-only in the restored database.
- ``rto_target_minutes`` and ``rpo_target_hours`` (required): RTO is the wall time of download, restore
  and verification; RPO is the age of the tested backup when the test started.
- ``jobs`` (``pg_restore --jobs``, default 1), ``bin_dir`` (default: the binaries matching the server's
  major version), ``timeout_minutes`` (pg_restore, default 360).

A failed restore or verification is evidence, not an error: the test is recorded as failed and the
run goes on. Errors (an unreadable connection string, an unreachable server) fail the extraction,
which is retried.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal

import msgspec

from soc2_evidence.collectors import CollectContext
from soc2_evidence.collectors.support import restore_results
from soc2_evidence.collectors.support.locations import BackupLocation, LocalLocation, open_location
from soc2_evidence.collectors.support.postgres import (
    CHECKSUM_MODES,
    DEFAULT_SAMPLE_PERCENT,
    MANIFEST_SUFFIX,
    PgConnection,
    Table,
    TableState,
    catalog_entries,
    connection_from_options,
    drop_database,
    find_bin_dir,
    leftover_databases,
    list_tables,
    measure_table,
    new_scratch_name,
    read_manifest,
    scratch_database,
    scratch_prefix,
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
    },
    required=("rows_match", "checksum_mode"),
    value_sets={"checksum_mode": CHECKSUM_MODES},
    total="tables",
    description="Per table: rows and checksum expected (manifest or source) and found in the restore",
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
    baseline: Literal["manifest", "source"] = "manifest"
    row_count_tolerance_percent: Annotated[float, msgspec.Meta(ge=0, description="With baseline: source")] = 0.0
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
    baseline: str
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
            baseline=options.baseline,
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
        self.manifest_problem: str | None = None
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
        found = location.newest(config.pattern)
        tested_at = self.now()  # the RPO is the backup's age now, when it is about to be restored
        if found is None:
            self.checks.append(
                restore_results.check("backup_found", "failed", f"no {config.pattern} at {location.url}")
            )
            self.log(f"no backup matching {config.pattern} at {location.url}")
            return self._record(tested_at, rpo_met=False)
        self.checks.append(
            restore_results.check(
                "backup_found", "passed", f"{found.url} ({found.size} bytes, {rfc3339(found.modified)})"
            )
        )
        self.log(f"newest backup: {found.url} ({found.size} bytes, modified {rfc3339(found.modified)})")
        self._read_manifest(location, found.name)
        backup_at = parse_rfc3339(self.manifest["taken_at"]) if self.manifest else found.modified
        backup_key = found.url if config.backups != FRESH else f"{FRESH}:{found.name}"

        restore_finished_at = None
        rto_seconds = None
        bin_dir = find_bin_dir(restore_major, config.bin_dir)
        started = time.monotonic()
        with (
            ThreadPoolExecutor(max_workers=1) as hashing,
            scratch_database(config.restore_server, self.scratch_name, work_dir=self.work) as guard,
        ):
            self.scratch["created"] = True
            dump = self._download(location, found.name)
            self.phases["download"] = round(time.monotonic() - started, 3)
            digest = hashing.submit(digest_file, dump)  # read beside pg_restore: off the RTO's critical path
            scratch = config.restore_server.with_dbname(self.scratch_name)
            restored = self._restore(bin_dir, scratch, dump)
            sha256 = digest.result().sha256
            self.log(f"backup sha256 {sha256}")
            self.checks[1:1] = self._backup_checks(found.name, sha256)  # listed right after backup_found
            if restored:
                self._verify(scratch)
                restore_finished_at = self.now()
                rto_seconds = round(time.monotonic() - started, 3)
            else:
                unverified = ["schema_matches_source", "row_counts_match", "checksums_match"]
                for name in unverified + [f"smoke:{query.name}" for query in config.smoke_queries]:
                    self.checks.append(restore_results.check(name, "skipped", "nothing restored to verify"))
        self.scratch.update(dropped=guard.dropped, drop_error=guard.drop_error)
        if guard.dropped:
            self.log(f"scratch database {self.scratch_name} dropped")
        else:
            self.log(f"scratch database {self.scratch_name} NOT dropped ({guard.drop_error}); its guard will retry")
        return self._record(
            tested_at,
            backup_key=backup_key,
            backup_sha256=sha256,
            backup_at=backup_at,
            restore_started_at=tested_at,
            restore_finished_at=restore_finished_at,
            rto_seconds=rto_seconds,
            rpo_seconds=round((tested_at - backup_at).total_seconds(), 3),
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

    def _read_manifest(self, location: BackupLocation, name: str) -> None:
        where = f"{location.url}/{name}{MANIFEST_SUFFIX}"
        try:
            data = location.read_bytes(name + MANIFEST_SUFFIX, MANIFEST_LIMIT)
        except CollectorError as error:
            raise CollectorError(f"source {self.config.source_name}: {error}") from error
        if data is None:
            self.manifest_problem = "no manifest next to the dump"
            self.log(f"{where}: no manifest")
            return
        try:
            self.manifest = read_manifest(data, where)
            self.log(f"manifest: taken at {self.manifest['taken_at']}, {len(self.manifest['tables'])} table(s)")
        except ValueError as error:
            self.manifest_problem = str(error)
            self.log(str(error))

    def _download(self, location: BackupLocation, name: str) -> Path:
        """The dump as a local file: the file itself in a directory, else a download into the work directory."""
        path = location.local_path(name)
        if path is None:
            path = self.work / "backup.dump"
            try:
                location.download(name, path)
            except CollectorError as error:
                raise CollectorError(f"source {self.config.source_name}: {error}") from error
        return path

    def _backup_checks(self, name: str, sha256: str) -> list[dict[str, str]]:
        """Is the dump the one its manifest describes, and a backup of this database?"""
        manifest = self.manifest
        if manifest is None:
            status = "failed" if self.config.baseline == "manifest" else "skipped"
            return [
                restore_results.check("backup_intact", status, self.manifest_problem or ""),
                restore_results.check("backup_of_source", "skipped", "no manifest to say"),
            ]
        dump = manifest.get("dump") or {}
        if dump.get("name") != name:
            intact = ("failed", f"the manifest describes {dump.get('name')!r}, not {name!r}")
        elif dump.get("sha256") != sha256:
            intact = ("failed", f"sha256 {sha256} differs from the manifest's {dump.get('sha256')}")
        else:
            intact = ("passed", f"sha256 {sha256} as recorded at backup")
        expected = self.config.database.dbname
        if manifest.get("database") == expected:
            of_source = ("passed", f"a backup of {expected}")
        else:
            of_source = ("failed", f"a backup of {manifest.get('database')!r}, not of {expected!r}")
        return [
            restore_results.check("backup_intact", *intact),
            restore_results.check("backup_of_source", *of_source),
        ]

    def _restore(self, bin_dir: Path, scratch: PgConnection, dump: Path) -> bool:
        config = self.config
        command = [
            str(bin_dir / "pg_restore"),
            "--verbose",
            "--exit-on-error",
            "--no-owner",
            "--no-privileges",
            f"--jobs={config.jobs}",
            f"--dbname={scratch.conninfo()}",
            str(dump),
        ]
        self.log(f"pg_restore ({bin_dir}) into {scratch.describe()}, {config.jobs} job(s)")
        started = time.monotonic()
        process = subprocess.Popen(
            command, env=scratch.env(), stdin=subprocess.DEVNULL, stdout=self.log.stream, stderr=subprocess.STDOUT
        )
        try:
            code = process.wait(timeout=config.timeout_seconds)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
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

    def _verify(self, scratch: PgConnection) -> None:
        config = self.config
        started = time.monotonic()
        try:
            with config.database.connect(pinned=True) as source, scratch.connect(pinned=True) as restored:
                self._compare_schema(catalog_entries(source), catalog_entries(restored))
                expected = self._baseline(source)
                self._compare_tables(expected, restored)
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

    def _compare_schema(self, source: list[str], restored: list[str]) -> None:
        missing = sorted(set(source) - set(restored))
        unexpected = sorted(set(restored) - set(source))
        if not missing and not unexpected:
            detail = f"{len(source)} catalog entries match the source's"
            self.checks.append(restore_results.check("schema_matches_source", "passed", detail))
            return
        parts = [f"{len(missing)} catalog entries of the source missing, {len(unexpected)} not in the source"]
        if missing:
            parts.append("missing: " + "; ".join(_short(line) for line in missing[:DETAIL_EXAMPLES]))
        if unexpected:
            parts.append("unexpected: " + "; ".join(_short(line) for line in unexpected[:DETAIL_EXAMPLES]))
        for line in missing:
            self.log(f"schema: missing from the restore: {line}")
        for line in unexpected:
            self.log(f"schema: not in the source: {line}")
        self.checks.append(restore_results.check("schema_matches_source", "failed", "; ".join(parts)))

    def _baseline(self, source) -> dict[str, TableState] | None:
        """Per table, the rows and checksum the restore must have: the manifest's, or the source's now."""
        config = self.config
        if config.baseline == "manifest":
            if self.manifest is None:
                return None
            return {
                entry["table"]: TableState(
                    entry["table"],
                    entry["rows"],
                    entry.get("checksum_mode", "none"),
                    entry.get("checksum"),
                    entry.get("sample_percent"),
                )
                for entry in self.manifest["tables"]
            }
        mode = config.checksums
        with source.transaction():
            source.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return {
                table.name: measure_table(source, table, mode, config.sample_percent) for table in list_tables(source)
            }

    def _compare_tables(self, expected: dict[str, TableState] | None, restored_connection) -> None:
        config = self.config
        if expected is None:
            detail = (
                f"{self.manifest_problem}: nothing recorded to compare with (baseline: source compares with the source)"
            )
            self.checks.append(restore_results.check("row_counts_match", "failed", detail))
            self.checks.append(restore_results.check("checksums_match", "failed", detail))
            return
        restored_tables: dict[str, Table] = {table.name: table for table in list_tables(restored_connection)}
        tolerance = config.row_count_tolerance_percent if config.baseline == "source" else 0
        row_problems, checksum_problems, compared = [], [], 0
        for name in sorted(set(expected) | set(restored_tables)):
            want = expected.get(name)
            mode = want.checksum_mode if want and config.checksums != "none" else "none"
            got = (
                measure_table(restored_connection, restored_tables[name], mode, want.sample_percent if want else None)
                if name in restored_tables
                else None
            )
            rows_match = bool(want and got and abs(got.rows - want.rows) <= want.rows * tolerance / 100)
            checksum_match = None
            if want and got and mode != "none":
                checksum_match = got.checksum_mode == want.checksum_mode and got.checksum == want.checksum
                compared += 1
            if not rows_match:
                row_problems.append(
                    f"{name}: {'absent' if got is None else got.rows} restored, "
                    f"{'none' if want is None else want.rows} expected"
                )
            if checksum_match is False:
                checksum_problems.append(f"{name} ({mode})")
            self.tables.append(
                {
                    "table": name,
                    "expected_rows": want.rows if want else None,
                    "restored_rows": got.rows if got else None,
                    "rows_match": rows_match,
                    "checksum_mode": mode,
                    "expected_checksum": want.checksum if want and mode != "none" else None,
                    "restored_checksum": got.checksum if got and mode != "none" else None,
                    "checksum_match": checksum_match,
                }
            )
        against = "the manifest" if config.baseline == "manifest" else "the source now"
        self.checks.append(
            _problems_check("row_counts_match", row_problems, f"{len(self.tables)} tables match {against}")
        )
        if config.checksums == "none":
            self.checks.append(restore_results.check("checksums_match", "skipped", "checksums: none"))
        elif compared == 0 and not checksum_problems:
            self.checks.append(restore_results.check("checksums_match", "skipped", f"{against} records no checksums"))
        else:
            passed = f"{compared} table checksums match {against}"
            self.checks.append(_problems_check("checksums_match", checksum_problems, passed))
        for problem in row_problems:
            self.log(f"rows: {problem}")
        for problem in checksum_problems:
            self.log(f"checksum differs: {problem}")


def _problems_check(name: str, problems: list[str], passed: str) -> dict[str, str]:
    if not problems:
        return restore_results.check(name, "passed", passed)
    shown = "; ".join(problems[:DETAIL_EXAMPLES])
    more = f" and {len(problems) - DETAIL_EXAMPLES} more" if len(problems) > DETAIL_EXAMPLES else ""
    return restore_results.check(name, "failed", f"{len(problems)} table(s): {shown}{more}")


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
