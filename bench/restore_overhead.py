"""Restore-test overhead: the whole restore test vs a bare pg_restore of the same dump, on the local PostgreSQL.

A table of about 1 GiB (``--quick``: about 50 MiB), built with generate_series in a database of
its own on 127.0.0.1:5432, is backed up twice with ``take_backup``: once with full-table
checksums in its manifest, once with sampled ones. Bare: CREATE DATABASE, pg_restore (the same
binary and flags as the restore test) and DROP DATABASE. Ours: the ``pg_restore`` collector's
whole run on the same dump: leftover check, the source's identity, sha256 of the dump, scratch
database and its guard, pg_restore's list and restore, catalog comparison with the manifest and
the source, counts and checksums of the restore (against the manifest) and of the source (against
the restore), large objects and sequences, drop, and its evidence written. Ratio = ours / bare;
the runs are interleaved, each after a CHECKPOINT, and the fastest of each counts. Targets:
<= 1.25x with full checksums, <= 1.10x with sampled ones, judged on the full run only. Everything
it creates is dropped, however it ends.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from bench import Result, bench_tempdir, verdict

NAME = "restore_overhead"
SERVER = os.environ.get("BENCH_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=test")
FULL_TARGET = 1.25
SAMPLE_TARGET = 1.10
SAMPLE_PERCENT = 10
ROWS, QUICK_ROWS = 7_000_000, 350_000  # about 150 bytes a row on disk: 1 GiB, 50 MiB
RUNS, QUICK_RUNS = 3, 1
TABLE = """
CREATE TABLE events (
    id bigint PRIMARY KEY,
    created_at timestamptz NOT NULL,
    account integer NOT NULL,
    kind text NOT NULL,
    amount numeric(12, 2) NOT NULL,
    payload text NOT NULL
);
INSERT INTO events
SELECT i, '2026-01-01T00:00:00Z'::timestamptz + i * interval '1 second', i % 10007,
       (ARRAY['created', 'paid', 'shipped', 'refunded'])[1 + i % 4], (i % 100000) / 100.0,
       md5(i::text) || md5((i * 7)::text)
FROM generate_series(1, {rows}) AS i;
"""


def run(quick: bool = False) -> Result:
    rows = QUICK_ROWS if quick else ROWS
    runs = QUICK_RUNS if quick else RUNS
    token = uuid.uuid4().hex[:8]
    with bench_tempdir(NAME) as tmp, database(f"soc2_bench_source_{token}") as source:
        from soc2_evidence.collectors.support.postgres import PgConnection, find_bin_dir, take_backup

        table_bytes = build_table(source, rows)
        backups = {mode: tmp / mode for mode in ("full", "sample")}
        manifests = {
            mode: take_backup(source, path, checksums=mode, sample_percent=SAMPLE_PERCENT)
            for mode, path in backups.items()
        }
        dump = backups["full"] / manifests["full"]["dump"]["name"]
        server = PgConnection.from_dsn(SERVER)
        with server.connect() as connection:
            bin_dir = find_bin_dir(connection.info.server_version // 10000)
        times: dict[str, list[float]] = {"bare": [], "full": [], "sample": []}
        for number in range(runs):
            checkpoint(server)
            times["bare"].append(bare_restore(server, bin_dir, dump, f"soc2_bench_bare_{token}_{number}"))
            for mode in ("full", "sample"):
                checkpoint(server)
                times[mode].append(restore_test(tmp / f"staging-{mode}-{number}", source, backups[mode]))
    bare, full, sample = (min(times[key]) for key in ("bare", "full", "sample"))
    full_ratio, sample_ratio = full / bare, sample / bare
    # At 50 MiB the fixed costs of a test (connections, catalog comparison, guard) outweigh the
    # data, so --quick shows the ratios without judging them; the targets are for the 1 GiB run.
    passed = quick or (full_ratio <= FULL_TARGET and sample_ratio <= SAMPLE_TARGET)
    line = (
        f"{NAME}: restore test {full:.2f} s (full checksums), {sample:.2f} s (sampled {SAMPLE_PERCENT}%) "
        f"vs bare pg_restore {bare:.2f} s -> {full_ratio:.2f}x (target <= {FULL_TARGET:.2f}x), "
        f"{sample_ratio:.2f}x (target <= {SAMPLE_TARGET:.2f}x) "
        f"{'not judged (--quick: targets are for the full run)' if quick else verdict(passed)} "
        f"[{rows:,} rows, table {table_bytes / 2**20:.0f} MiB, dump {manifests['full']['dump']['size'] / 2**20:.0f} "
        f"MiB, best of {runs}]"
    )
    return Result(NAME, line, passed)


@contextlib.contextmanager
def database(name: str) -> Iterator[str]:
    """A database on the local server for the benchmark's source table, dropped however it ends."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    with psycopg.connect(SERVER, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(SERVER, dbname=name)
    finally:
        drop(name)


def drop(name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(SERVER, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def checkpoint(server) -> None:
    """Start each timed run clean: no run pays for flushing what the one before it wrote."""
    with server.connect() as connection:
        connection.execute("CHECKPOINT")


def build_table(dsn: str, rows: int) -> int:
    """Fill the source table; return its size on disk (heap and index)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(TABLE.format(rows=int(rows)))
        connection.execute("VACUUM (ANALYZE, FREEZE) events")
        return connection.execute("SELECT pg_total_relation_size('events')").fetchone()[0]


def bare_restore(server, bin_dir: Path, dump: Path, name: str) -> float:
    """What a restore test by hand costs: create a database, pg_restore into it, drop it."""
    from psycopg import sql

    started = time.perf_counter()
    try:
        with server.connect() as connection:
            connection.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
        target = server.with_dbname(name)
        subprocess.run(
            [
                str(bin_dir / "pg_restore"),
                "--verbose",
                "--exit-on-error",
                "--no-owner",
                "--jobs=1",
                f"--dbname={target.conninfo()}",
                str(dump),
            ],
            env=target.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
        )
    finally:
        drop(name)
    return time.perf_counter() - started


def restore_test(staging: Path, source: str, backups: Path) -> float:
    """The pg_restore collector's whole run, evidence written; raises unless the test passed."""
    import json

    from soc2_evidence.collectors import CollectContext, pg_restore, source_config
    from soc2_evidence.core.evidence import RunContext
    from soc2_evidence.core.redaction import Redactor
    from soc2_evidence.core.staging import BundleWriter

    options = {"dsn": source, "backups": str(backups), "rto_target_minutes": 60, "rpo_target_hours": 24}
    config = source_config("bench-restore-overhead", "pg_restore", options)
    writer = BundleWriter(
        staging,
        family="backup",
        source=config.name,
        kind="pg_restore",
        run=RunContext("bench_restore_overhead", "manual__bench", datetime.now(UTC)),
        try_number=1,
        collector="bench",
        collector_version="0",
        redactor=Redactor(),
    )
    context = CollectContext(resolve_path=Path)
    started = time.perf_counter()
    pg_restore.collect(config, writer, context)
    elapsed = time.perf_counter() - started
    bundle = writer.finish()
    results = next(staged.path for staged in bundle.items if staged.item.name == "results.jsonl")
    record = json.loads(results.read_text())
    if record["outcome"] != "passed":
        raise RuntimeError(f"the restore test did not pass: {record['checks']}")
    return elapsed
