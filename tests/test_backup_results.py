"""Results of other backup tools (JUnit XML, restore-result JSON, pgBackRest info) into the restore-result dataset."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import ROOT, bundle_writer, write_pipeline_config
from soc2_evidence.collectors import CollectContext, backup_results, load_config, source_config
from soc2_evidence.core.errors import CollectorError, ConfigError
from soc2_evidence.core.evidence import RunContext
from soc2_evidence.core.staging import Bundle
from soc2_evidence.orchestration.pipeline import validate_staged

# The collector's injected clock: the morning after the leap day, so result ages span 2028-02-29.
NOW = datetime(2028, 3, 1, 3, 0, tzinfo=UTC)


def ago(hours: float, *, naive: bool = False) -> str:
    moment = NOW - timedelta(hours=hours)
    return moment.replace(tzinfo=None).isoformat() if naive else moment.isoformat()


def junit() -> str:
    """An operator's restore script's report: one suite per database restored, checks as test cases."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="restore orders" tests="2" failures="0" timestamp="{ago(2, naive=True)}" time="600.5">
    <properties>
      <property name="database" value="orders"/>
      <property name="tool" value="restore-orders.sh"/>
      <property name="backup_key" value="s3://backups/orders/orders-2026.dump"/>
      <property name="backup_at" value="{ago(8)}"/>
      <property name="phase.download" value="120"/>
      <property name="phase.restore" value="420"/>
      <property name="phase.verify" value="60.5"/>
      <property name="rto_target_seconds" value="3600"/>
      <property name="connection" value="postgresql://restore:Hunter2-Secret@db.internal/orders"/>
    </properties>
    <testcase classname="restore" name="pg_restore exit code"/>
    <testcase classname="verify" name="row counts"/>
  </testsuite>
  <testsuite name="restore billing" tests="2" failures="1" timestamp="{ago(3, naive=True)}" time="900">
    <properties><property name="database" value="billing"/><property name="backup_at" value="{ago(9)}"/></properties>
    <testcase classname="restore" name="pg_restore exit code"/>
    <testcase classname="verify" name="row counts"><failure message="invoices: 10 rows, 12 expected"/></testcase>
  </testsuite>
</testsuites>
"""


def write_results(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "restore-report.xml").write_text(junit())
    (directory / "crm" / "restore-results.json").parent.mkdir()
    (directory / "crm" / "restore-results.json").write_text(
        json.dumps(
            {
                "results": [
                    {
                        "database": "crm",
                        "tool": "restore.py",
                        "backup_key": "gs://backups/crm/crm.dump",
                        "backup_at": ago(30),
                        "restore_started_at": ago(1),
                        "restore_finished_at": ago(1 - 120 / 3600),
                        "phases": {"restore": 100, "verify": 20},
                        "checks": [{"name": "smoke", "status": "passed", "detail": "42 customers"}],
                        "outcome": "passed",
                    }
                ]
            }
        )
    )
    stop = int((NOW - timedelta(hours=10)).timestamp())
    (directory / "pgbackrest-info.json").write_text(
        json.dumps(
            [
                {
                    "name": "main",
                    "status": {"code": 0, "message": "ok", "lock": {"backup": {"held": False}}},
                    "cipher": "none",
                    "db": [{"id": 1, "repo-key": 1, "system-id": 7301234567890123456, "version": "15"}],
                    "backup": [
                        {
                            "label": "20260101-010000F",
                            "type": "full",
                            "error": False,
                            "timestamp": {"start": stop - 86400 - 600, "stop": stop - 86400},
                        },
                        {
                            "label": "20260101-010000F_20260102-010000I",
                            "type": "incr",
                            "error": False,
                            "timestamp": {"start": stop - 300, "stop": stop},
                        },
                    ],
                }
            ]
        )
    )
    # pgBackRest's check is dated by the info file's modification time: pin it to the injected clock.
    os.utime(directory / "pgbackrest-info.json", (NOW.timestamp(), NOW.timestamp()))
    (directory / "broken.json").write_text('{"results": [')
    (directory / "no-database.xml").write_text(
        '<testsuite name="restore ?" timestamp="2026-01-01T00:00:00"><testcase name="x"/></testsuite>'
    )
    (directory / "notes.txt").write_text("not a result file\n")
    return directory


def collect(tmp_path: Path, options: dict) -> Bundle:
    source = source_config("restore-reports", "backup_results", options)
    run = RunContext("evidence_backup_test", "manual__results", NOW)
    writer = bundle_writer(
        tmp_path / "staging", run, family="backup", source=source.name, kind="backup_results", now=lambda: NOW
    )
    context = CollectContext(resolve_path=lambda value: tmp_path / value, now=lambda: NOW)
    backup_results.collect(source, writer, context)
    return writer.finish()


def records(bundle: Bundle, name: str) -> list[dict]:
    path = next(staged.path for staged in bundle.items if staged.item.name == name)
    return [json.loads(line) for line in path.read_text().splitlines()]


OPTIONS = {
    "location": "results",
    "rto_target_minutes": 30,
    "rpo_target_hours": 24,
    "expect_databases": ["orders", "billing", "crm", "ledger"],
}


def test_results_of_other_tools_are_normalised_checked_and_archived(tmp_path):
    write_results(tmp_path / "results")

    bundle = collect(tmp_path, OPTIONS)

    results = {record["database"]: record for record in records(bundle, "results.jsonl")}
    assert set(results) == {"orders", "billing", "crm", "main"}
    orders = results["orders"]
    assert orders["outcome"] == "passed" and orders["tool"] == "restore-orders.sh"
    assert orders["rto_seconds"] == 600.5 and orders["rto_target_seconds"] == 3600 and orders["rto_met"] is True
    assert orders["phases"] == {"backup": None, "download": 120.0, "restore": 420.0, "verify": 60.5}
    assert orders["rpo_seconds"] == pytest.approx(6 * 3600, abs=1) and orders["rpo_met"] is True
    assert orders["restore_started_at"].endswith("Z") and orders["test_id"] == "restore-report.xml#restore orders"
    billing = results["billing"]
    assert billing["outcome"] == "failed" and billing["checks_failed"] == 1
    assert billing["checks"][1] == {
        "name": "verify.row counts",
        "status": "failed",
        "detail": "invoices: 10 rows, 12 expected",
    }
    assert billing["rto_target_seconds"] == 1800  # the configured default where the result has none
    crm = results["crm"]
    assert crm["outcome"] == "passed" and crm["rto_seconds"] == 120 and crm["rpo_met"] is False
    assert crm["rpo_seconds"] == 29 * 3600  # backed up 2028-02-28T21:00Z, restored 2028-03-01T02:00Z
    main = results["main"]
    assert main["test_type"] == "backup_info" and main["tool"] == "pgbackrest" and main["outcome"] == "passed"
    assert main["backup_key"] == "20260101-010000F_20260102-010000I" and main["rpo_seconds"] == 10 * 3600

    files = {entry["path"]: entry for entry in records(bundle, "files.jsonl")}
    assert set(files) == {
        "restore-report.xml",
        "crm/restore-results.json",
        "pgbackrest-info.json",
        "broken.json",
        "no-database.xml",
    }
    assert bundle.reported_totals["files"] == 5
    assert {path for path, entry in files.items() if not entry["parsed"]} == {"broken.json", "no-database.xml"}
    assert files["no-database.xml"]["error"] == "testsuite 'restore ?': properties: missing required field 'database'"
    assert files["restore-report.xml"]["format"] == "junit" and files["restore-report.xml"]["results"] == 2
    archived = {staged.item.name for staged in bundle.items}
    assert files["restore-report.xml"]["item"] in archived
    report = next(staged.path for staged in bundle.items if staged.item.name == files["restore-report.xml"]["item"])
    assert "Hunter2-Secret" not in report.read_text()  # archived as read, but redacted
    coverage = {entry["database"]: entry for entry in records(bundle, "coverage.jsonl")}
    assert coverage["ledger"]["tested_recently"] is False and coverage["ledger"]["last_test_at"] is None
    assert coverage["orders"]["tested_recently"] is True and coverage["orders"]["expected"] is True
    assert "main" not in coverage  # a backup check is not a restore test

    config_path = write_pipeline_config(
        tmp_path,
        [{"name": "restore-reports", "kind": "backup_results", "family": "backup", "location": "results"}],
        validation={"controls_file": str(ROOT / "include" / "config" / "controls.yaml")},
        exceptions_stub=True,
    )
    run = RunContext("evidence_backup_test", "manual__results", NOW)
    validation = validate_staged(
        load_config(config_path), family="backup", run=run, bundle_dirs=[str(bundle.directory)], now=lambda: NOW
    )

    # Malformed result files are a data-quality failure; the findings are the tests that failed or are missing.
    assert [(f["item"], f["check"]) for f in validation["failures"]] == [
        ("files.jsonl", "backup_results.files.values.parsed")
    ]
    findings_path = Path(validation["bundle"]) / "items" / "findings.jsonl"
    findings = sorted(
        (finding["check"], finding["record"].get("database"), tuple(finding["controls"]))
        for finding in map(json.loads, findings_path.read_text().splitlines())
    )
    assert findings == [
        ("backup_results.coverage.tested_recently", "ledger", ("A1.3",)),
        ("backup_results.results.restore_succeeded", "billing", ("A1.2", "A1.3")),
        ("backup_results.results.rpo_within_target", "crm", ("A1.2",)),
    ]


def test_results_are_ingested_from_a_bucket_prefix(s3_client, tmp_path):
    bucket = f"results-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=bucket)
    for path in write_results(tmp_path / "results").rglob("*"):
        if path.is_file():
            s3_client.upload_file(str(path), bucket, f"restore-tests/{path.relative_to(tmp_path / 'results')}")
    s3_client.put_object(Bucket=bucket, Key="elsewhere/other.xml", Body=junit().encode())

    bundle = collect(tmp_path, {**OPTIONS, "location": f"s3://{bucket}/restore-tests"})

    files = records(bundle, "files.jsonl")
    assert sorted(entry["url"] for entry in files if entry["parsed"]) == [
        f"s3://{bucket}/restore-tests/crm/restore-results.json",
        f"s3://{bucket}/restore-tests/pgbackrest-info.json",
        f"s3://{bucket}/restore-tests/restore-report.xml",
    ]
    assert {record["database"] for record in records(bundle, "results.jsonl")} == {"orders", "billing", "crm", "main"}


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({}, r"missing required key 'location'"),
        (
            {"locaton": "results"},
            r"locaton: unknown key 'locaton'; did you mean 'location'\?.*; missing required key 'location'",
        ),
        ({"location": ""}, r"location: expected str of length >= 1, got ''"),
        ({"location": "results", "patterns": []}, r"patterns: expected array of length >= 1, got \[\]"),
        ({"location": "results", "patterns": "*.xml"}, r"patterns: expected array, got str"),
        ({"location": "results", "patterns": ["*.xml", ""]}, r"patterns\[1\]: expected str of length >= 1"),
        ({"location": "results", "expect_databases": "orders"}, r"expect_databases: expected array, got str"),
        ({"location": "results", "max_file_bytes": 0}, r"max_file_bytes: expected int >= 1, got 0"),
        ({"location": "results", "rto_target_minutes": 0}, r"rto_target_minutes: expected float > 0.0, got 0"),
        ({"location": "results", "rpo_target_hours": True}, r"rpo_target_hours: expected float \| null, got bool"),
        ({"location": "results", "max_test_age_hours": None}, r"max_test_age_hours: expected float, got null"),
    ],
    ids=[
        "no-location",
        "misspelt-location",
        "empty-location",
        "no-patterns",
        "patterns-string",
        "empty-pattern",
        "expect_databases-string",
        "max_file_bytes",
        "rto-zero",
        "rpo-bool",
        "max_test_age_hours-null",
    ],
)
def test_bad_options_are_refused_with_the_source_and_the_key(options, problem):
    with pytest.raises(ConfigError, match=r"^source restore-reports: .*" + problem):
        source_config("restore-reports", "backup_results", options)


def test_options_defaults():
    options = source_config("restore-reports", "backup_results", {"location": "results"}).options

    assert options.patterns == ["*.xml", "*.json"] and options.expect_databases == []
    assert options.max_file_bytes == 10 * 1024 * 1024 and options.max_test_age_hours == 26
    assert options.rto_target_seconds is None and options.rpo_target_seconds is None and options.aws_conn_id is None


def test_a_location_is_relative_to_the_config_file_and_must_exist_there(tmp_path):
    write_results(tmp_path / "config" / "results")
    sources = [
        {"name": "here", "kind": "backup_results", "family": "backup", "location": "results"},
        {"name": "bucket", "kind": "backup_results", "family": "backup", "location": "s3://results/restore-tests"},
    ]
    path = write_pipeline_config(tmp_path, sources, path=tmp_path / "config" / "evidence.yaml", exceptions_stub=True)
    (tmp_path / "config" / "controls.yaml").write_text("controls: {}\n")  # only needs to exist to load

    assert [source.options.location for source in load_config(path).sources] == [
        "results",
        "s3://results/restore-tests",
    ]

    missing = write_pipeline_config(
        tmp_path, [{**sources[0], "location": "missing"}], path=tmp_path / "config" / "missing.yaml"
    )
    with pytest.raises(
        ConfigError, match=r"sources\[0\]\.location: 'missing' does not exist: .* here .*/config/missing"
    ):
        load_config(missing)


def test_a_location_missing_at_collection_names_the_source(tmp_path):
    with pytest.raises(CollectorError, match=r"source restore-reports: location .*/missing: not a directory"):
        collect(tmp_path, {"location": "missing"})


SUITE = (
    '<testsuite name="restore orders" timestamp="{timestamp}" time="{time}">{properties}'
    '<testcase name="x"/></testsuite>'
)
ORDERS = '<properties><property name="database" value="orders"/></properties>'


@pytest.mark.parametrize(
    ("name", "content", "error"),
    [
        pytest.param(
            "r.xml",
            SUITE.format(timestamp="2028-03-01T01:00:00", time="1e20", properties=ORDERS),
            "testsuite 'restore orders': time: expected float <= 316224000.0",
            id="junit-time-1e20",
        ),
        pytest.param(
            "r.xml",
            SUITE.format(timestamp="9999-12-31T23:59:59-01:00", time="1", properties=ORDERS),
            "testsuite 'restore orders': timestamp: 9999-12-31T23:59:59-01:00 is outside 1970-2999",
            id="junit-year-9999",
        ),
        pytest.param(
            "r.json",
            json.dumps({"results": [{"database": "crm", "restore_started_at": "0001-01-01T00:00:00+01:00"}]}),
            "result 1: restore_started_at: 0001-01-01T00:00:00+01:00 is outside 1970-2999",
            id="restore-json-year-1",
        ),
        pytest.param(
            "r.json",
            '{"results": [{"database": "crm", "restore_started_at": 1e400}]}',
            "content: [...][0][...]: number out of range",  # msgspec's path in a document of any shape
            id="restore-json-1e400",
        ),
        pytest.param(
            "r.json",
            '{"results": [{"database": "crm", "restore_started_at": "2028-03-01T01:00:00Z", "rto_seconds": NaN}]}',
            "content: not JSON: JSON is malformed: invalid character (byte 94)",
            id="restore-json-nan",
        ),
        pytest.param(
            "r.json",
            json.dumps(
                {"results": [{"database": "crm", "restore_started_at": "2028-03-01T01:00:00Z", "checks": "ok"}]}
            ),
            "result 1: checks: expected array, got str",
            id="restore-json-checks-text",
        ),
        pytest.param(
            "r.json",
            '{"results": [{"database": "crm", "restore_started_at": ' + "[" * 10_000 + "]" * 10_000 + "}]}",
            "content: JSON nested too deeply to read (over about 1,000 levels)",
            id="restore-json-10000-deep",
        ),
        pytest.param(
            "info.json",
            '[{"name": "main", "status": {"code": 0}, "backup": [{"timestamp": {"stop": Infinity}}]}]',
            "content: not JSON: JSON is malformed: invalid character (byte 75)",
            id="pgbackrest-stop-infinity",
        ),
        pytest.param(
            "info.json",
            json.dumps([{"name": "main", "status": {"code": 0}, "backup": [{"timestamp": {"stop": 10**400}}]}]),
            "stanza 1: backup[0].timestamp.stop: number out of range",
            id="pgbackrest-stop-400-digits",
        ),
        pytest.param(
            "info.json",
            json.dumps([{"name": "main", "status": "ok", "backup": []}]),
            "stanza 1: status: expected object, got str",
            id="pgbackrest-status-text",
        ),
    ],
)
def test_a_malformed_result_is_recorded_with_its_field_and_fails_the_file(tmp_path, name, content, error):
    """Out-of-range numbers and times, NaN and deep nesting are refused per file, naming the result and field."""
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / name).write_text(content)
    bundle = collect(tmp_path, {**OPTIONS, "expect_databases": []})
    [entry] = records(bundle, "files.jsonl")
    assert (entry["parsed"], entry["results"], entry["error"]) == (False, 0, error)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(
            '<?xml version="1.0"?><!DOCTYPE t [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
            '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">'
            '<!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;"><!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">'
            '<!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;"><!ENTITY h "&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;">]>'
            '<testsuite name="&h;" timestamp="2028-03-01T01:00:00"><testcase name="x"/></testsuite>',
            id="entity-expansion",
        ),
        pytest.param(
            '<?xml version="1.0"?><!DOCTYPE t [<!ENTITY x SYSTEM "file:///etc/hostname">]>'
            '<testsuite name="&x;" timestamp="2028-03-01T01:00:00">' + ORDERS + '<testcase name="x"/></testsuite>',
            id="external-entity",
        ),
    ],
)
def test_hostile_xml_is_refused_and_nothing_is_fetched_or_expanded(tmp_path, content):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "r.xml").write_text(content)
    bundle = collect(tmp_path, {**OPTIONS, "expect_databases": []})
    [entry] = records(bundle, "files.jsonl")
    assert entry["parsed"] is False and entry["error"].startswith("XML does not parse: ")
    assert records(bundle, "results.jsonl") == []


def test_xinclude_is_not_processed(tmp_path):
    """ElementTree leaves an ``xi:include`` as an element: the included file is never read."""
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "r.xml").write_text(
        '<testsuite xmlns:xi="http://www.w3.org/2001/XInclude" name="xi" timestamp="2028-03-01T01:00:00">'
        + ORDERS
        + '<xi:include href="/etc/hostname" parse="text"/><testcase name="x"/></testsuite>'
    )
    bundle = collect(tmp_path, {**OPTIONS, "expect_databases": []})
    [result] = records(bundle, "results.jsonl")
    assert result["database"] == "orders" and result["checks"] == [{"name": "x", "status": "passed", "detail": ""}]
    assert Path("/etc/hostname").read_text().strip() not in json.dumps(records(bundle, "results.jsonl"))
