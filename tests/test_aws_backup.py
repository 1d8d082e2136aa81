"""AWS Backup and RDS backup evidence against moto over HTTP, with the gaps of moto filled by recorded responses.

moto 5.2.5 implements AWS Backup plans, vaults and Vault Lock, RDS instances with their automated
snapshots, and STS; the collector's calls for those go to the moto server. It does NOT implement
ListRecoveryPointsByBackupVault, ListRestoreJobs or ListRestoreTestingPlans (it answers 404): for
those a small HTTP server in front of moto answers with recorded responses in the documented
REST-JSON shapes (epoch-second timestamps, ``NextToken`` paging), and forwards every other call.
The collector makes the same real API calls either way; botocore parses the recorded answers.

The test never reads its own clock. moto stamps the RDS snapshots with the server's time, so the
estate's ``now`` is read from moto (the orders snapshot's creation time); the recorded times are
hours before it, and the collector, the writer and validation all run on that injected clock.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import boto3
import pytest

from conftest import ROOT, bundle_writer, write_pipeline_config
from soc2_evidence.collectors import CollectContext, aws_backup, load_config, source_config
from soc2_evidence.core.errors import CollectorError, ConfigError
from soc2_evidence.core.evidence import RunContext
from soc2_evidence.core.staging import Bundle
from soc2_evidence.orchestration.pipeline import validate_staged

REGION = "eu-north-1"  # this module's own region: other tests share the session's moto server
ACCOUNT = "123456789012"  # moto's default account


@dataclass(frozen=True)
class Ago:
    """A recorded time, ``hours`` before the estate's now; sent as epoch seconds (see ``_Handler._json``)."""

    hours: float


def epoch(hours_ago: float) -> Ago:
    return Ago(hours_ago)


def arn(kind: str, name: str) -> str:
    return f"arn:aws:{kind}:{REGION}:{ACCOUNT}:{name}"


def recovery_point(name: str, resource: str, status: str, hours_ago: float) -> dict:
    return {
        "RecoveryPointArn": arn("backup", f"recovery-point:{name}"),
        "BackupVaultName": "locked",
        "BackupVaultArn": arn("backup", "backup-vault:locked"),
        "ResourceArn": arn("rds", f"db:{resource}"),
        "ResourceType": "RDS",
        "Status": status,
        "CreationDate": epoch(hours_ago),
        "CompletionDate": epoch(hours_ago - 0.25),
        "BackupSizeInBytes": 1073741824,
        "IsEncrypted": True,
        "Lifecycle": {"DeleteAfterDays": 35},
    }


TESTING_PLAN = arn("backup", "restore-testing-plan:nightly-restore")
# Recorded answers, in the documented shapes (AWS Backup API Reference), for what moto lacks.
RECOVERY_POINT_PAGES = {
    None: {
        "RecoveryPoints": [
            recovery_point("orders-new", "orders", "COMPLETED", 6),
            recovery_point("orders-old", "orders", "COMPLETED", 30),
        ],
        "NextToken": "page-2",
    },
    "page-2": {
        "RecoveryPoints": [
            recovery_point("billing-partial", "billing", "PARTIAL", 2),
            recovery_point("archive-stale", "archive", "COMPLETED", 72),
        ]
    },
}
RESTORE_JOBS = {
    "RestoreJobs": [
        {
            "AccountId": ACCOUNT,
            "RestoreJobId": "restore-ok",
            "RecoveryPointArn": arn("backup", "recovery-point:orders-new"),
            "CreationDate": epoch(5),
            "CompletionDate": epoch(4.5),
            "Status": "COMPLETED",
            "CreatedResourceArn": arn("rds", "db:orders-restore-test"),
            "ResourceType": "RDS",
            "CreatedBy": {"RestoreTestingPlanArn": TESTING_PLAN},
            "ValidationStatus": "SUCCESSFUL",
        },
        {
            "AccountId": ACCOUNT,
            "RestoreJobId": "restore-broken",
            "RecoveryPointArn": arn("backup", "recovery-point:billing-partial"),
            "CreationDate": epoch(3),
            "CompletionDate": epoch(2.9),
            "Status": "FAILED",
            "StatusMessage": "The recovery point is not complete",
            "ResourceType": "RDS",
        },
    ]
}
RESTORE_TESTING_PLANS = {
    "RestoreTestingPlans": [
        {
            "RestoreTestingPlanArn": TESTING_PLAN,
            "RestoreTestingPlanName": "nightly-restore",
            "ScheduleExpression": "cron(0 5 ? * * *)",
            "ScheduleExpressionTimezone": "Etc/UTC",
            "CreationTime": epoch(500),
            "LastExecutionTime": epoch(5),
        },
        {
            "RestoreTestingPlanArn": arn("backup", "restore-testing-plan:forgotten"),
            "RestoreTestingPlanName": "forgotten",
            "ScheduleExpression": "cron(0 5 ? * * *)",
            "CreationTime": epoch(500),
            "LastExecutionTime": epoch(80),
        },
    ]
}


class RecordedBackupApi(ThreadingHTTPServer):
    """Answers what moto lacks from the recordings above; forwards everything else to moto."""

    def __init__(self, moto_endpoint: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.moto_endpoint = moto_endpoint
        self.denied: set[str] = set()
        self.calls: list[str] = []
        self.now = datetime(2026, 11, 25, 3, tzinfo=UTC)  # the estate's clock; aws_estate sets moto's

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: RecordedBackupApi

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        url = urlparse(self.path)
        token = parse_qs(url.query).get("nextToken", [None])[0]
        self.server.calls.append(url.path)
        recorded = {
            "/backup-vaults/locked/recovery-points/": lambda: RECOVERY_POINT_PAGES[token],
            "/backup-vaults/open/recovery-points/": lambda: {"RecoveryPoints": []},
            "/restore-jobs/": lambda: RESTORE_JOBS,
            "/restore-testing/plans": lambda: RESTORE_TESTING_PLANS,
        }
        if url.path in self.server.denied:
            return self._json(403, {"Message": "User is not authorized"}, error="AccessDeniedException")
        if url.path in recorded:
            return self._json(200, recorded[url.path]())
        return self._forward()

    do_POST = do_PUT = do_DELETE = lambda self: self._forward()

    def _json(self, status: int, body: dict, error: str | None = None) -> None:
        def epoch_seconds(value):
            if isinstance(value, Ago):
                return (self.server.now - timedelta(hours=value.hours)).timestamp()
            raise TypeError(f"{type(value).__name__} in a recording")

        data = json.dumps(body, default=epoch_seconds).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if error:
            self.send_header("x-amzn-ErrorType", error)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = urllib.request.Request(  # noqa: S310 - the loopback moto server
            self.server.moto_endpoint + self.path,
            data=self.rfile.read(length) if length else None,
            method=self.command,
            headers={key: value for key, value in self.headers.items() if key.lower() != "host"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - as above
                status, headers, body = response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            status, headers, body = error.code, error.headers, error.read()
        self.send_response(status)
        for key, value in headers.items():
            if key.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def backup_api(aws_env, s3_endpoint, monkeypatch):
    """moto for RDS, STS and what it implements of AWS Backup; the recorded server for the rest."""
    server = RecordedBackupApi(s3_endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_BACKUP", server.endpoint)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def aws_estate(backup_api):
    """A plan, a locked and an unlocked vault, and two RDS instances: one backed up, one not."""
    backup = boto3.client("backup", region_name=REGION)
    backup.create_backup_plan(
        BackupPlan={
            "BackupPlanName": "nightly",
            "Rules": [
                {
                    "RuleName": "daily",
                    "TargetBackupVaultName": "locked",
                    "ScheduleExpression": "cron(0 3 * * ? *)",
                    "Lifecycle": {"DeleteAfterDays": 35},
                }
            ],
        }
    )
    for vault in ("locked", "open"):
        backup.create_backup_vault(BackupVaultName=vault)
    backup.put_backup_vault_lock_configuration(BackupVaultName="locked", MinRetentionDays=7, MaxRetentionDays=400)
    rds = boto3.client("rds", region_name=REGION)
    for name, retention in (("orders", 7), ("scratch", 1)):
        rds.create_db_instance(
            DBInstanceIdentifier=name,
            DBInstanceClass="db.t3.micro",
            Engine="postgres",
            MasterUsername="admin_user",
            MasterUserPassword="not-a-real-password",  # moto's required field; never collected
            AllocatedStorage=20,
            BackupRetentionPeriod=retention,
        )
    rds.delete_db_snapshot(
        DBSnapshotIdentifier=next(
            snapshot["DBSnapshotIdentifier"]
            for snapshot in rds.describe_db_snapshots(DBInstanceIdentifier="scratch")["DBSnapshots"]
        )
    )
    [snapshot] = rds.describe_db_snapshots(DBInstanceIdentifier="orders")["DBSnapshots"]
    backup_api.now = snapshot["SnapshotCreateTime"].astimezone(UTC) + timedelta(minutes=1)  # moto's clock
    return backup_api


def collect(tmp_path: Path, options: dict, now: datetime = datetime(2026, 11, 25, 3, tzinfo=UTC)) -> Bundle:
    """Collect on a clock stopped at ``now``."""
    source = source_config("aws-backup", "aws_backup", options)
    run = RunContext("evidence_backup_test", "manual__aws", now)
    clock = lambda: now  # noqa: E731
    writer = bundle_writer(tmp_path / "staging", run, family="backup", source=source.name, kind="aws_backup", now=clock)
    aws_backup.collect(source, writer, CollectContext(resolve_path=Path, now=clock))
    return writer.finish()


def records(bundle: Bundle, name: str) -> list[dict]:
    path = next(staged.path for staged in bundle.items if staged.item.name == name)
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_aws_backup_and_rds_evidence_with_findings(aws_estate, tmp_path):
    bundle = collect(tmp_path, {"regions": [REGION]}, aws_estate.now)

    [plan] = records(bundle, "plans.jsonl")
    assert plan["name"] == "nightly" and plan["rule_count"] == 1
    assert plan["rules"][0]["schedule"] == "cron(0 3 * * ? *)" and plan["rules"][0]["delete_after_days"] == 35
    vaults = {vault["vault_name"]: vault for vault in records(bundle, "vaults.jsonl")}
    assert vaults["locked"]["locked"] is True and vaults["locked"]["min_retention_days"] == 7
    assert vaults["open"]["locked"] is False
    points = records(bundle, "recovery_points.jsonl")
    assert len(points) == bundle.reported_totals["recovery_points"] == 4  # both pages
    assert "/backup-vaults/locked/recovery-points/" in aws_estate.calls
    resources = {r["resource_arn"].rsplit(":", 1)[1]: r for r in records(bundle, "protected_resources.jsonl")}
    assert resources["orders"]["rpo_met"] is True and resources["orders"]["age_hours"] == 6.0
    assert resources["orders"]["newest_recovery_point_arn"].endswith("orders-new")
    assert resources["billing"]["rpo_met"] is False and resources["billing"]["newest_at"] is None  # PARTIAL only
    assert resources["archive"]["rpo_met"] is False
    jobs = {job["restore_job_id"]: job for job in records(bundle, "restore_jobs.jsonl")}
    assert jobs["restore-ok"]["restore_testing_plan_arn"] == TESTING_PLAN
    assert jobs["restore-ok"]["duration_seconds"] == 1800 and jobs["restore-ok"]["validation_status"] == "SUCCESSFUL"
    assert jobs["restore-broken"]["status"] == "FAILED"
    plans = {plan["name"]: plan for plan in records(bundle, "restore_testing_plans.jsonl")}
    assert plans["nightly-restore"]["tested_recently"] is True and plans["forgotten"]["tested_recently"] is False
    instances = {instance["db_instance"]: instance for instance in records(bundle, "rds_instances.jsonl")}
    assert instances["orders"]["retention_met"] is True and instances["orders"]["rpo_met"] is True
    assert instances["orders"]["latest_snapshot_type"] == "automated"
    assert instances["scratch"]["retention_met"] is False and instances["scratch"]["latest_snapshot"] is None
    assert records(bundle, "scope.json")[0]["account"] == ACCOUNT
    assert "not-a-real-password" not in "".join(staged.path.read_text() for staged in bundle.items)

    config_path = write_pipeline_config(
        tmp_path,
        [{"name": "aws-backup", "kind": "aws_backup", "family": "backup"}],
        validation={"controls_file": str(ROOT / "include" / "config" / "controls.yaml")},
        exceptions_stub=True,
    )
    run = RunContext("evidence_backup_test", "manual__aws", aws_estate.now)
    validation = validate_staged(
        load_config(config_path),
        family="backup",
        run=run,
        bundle_dirs=[str(bundle.directory)],
        now=lambda: aws_estate.now,
    )

    assert validation["failures"] == []
    findings_path = Path(validation["bundle"]) / "items" / "findings.jsonl"
    findings = [json.loads(line) for line in findings_path.read_text().splitlines()]
    found = sorted((finding["check"], _key(finding)) for finding in findings)
    assert found == [
        ("aws_backup.protected_resources.rpo_within_target", f"{REGION}/{arn('rds', 'db:archive')}"),
        ("aws_backup.protected_resources.rpo_within_target", f"{REGION}/{arn('rds', 'db:billing')}"),
        ("aws_backup.rds_instances.retention_met", f"{REGION}/scratch"),
        ("aws_backup.rds_instances.rpo_within_target", f"{REGION}/scratch"),
        ("aws_backup.restore_jobs.restore_succeeded", f"{REGION}/restore-broken"),
        ("aws_backup.restore_testing_plans.tested_recently", f"{REGION}/forgotten"),
        ("aws_backup.vaults.locked", f"{REGION}/open"),
    ]
    assert {criterion for finding in findings for criterion in finding["controls"]} == {"A1.2", "A1.3"}


def _key(finding: dict) -> str:
    """The record key as region/name (every dataset here is keyed by region and one more column)."""
    key = dict(finding["record_key"])
    region = key.pop("region")
    [name] = key.values()
    return f"{region}/{name}"


def test_an_api_error_names_the_source_region_call_and_page(backup_api, tmp_path):
    backup_api.denied.add("/restore-jobs/")

    with pytest.raises(CollectorError) as raised:
        collect(tmp_path, {"regions": ["eu-south-1"], "rds": False})  # an empty region: the error is the first

    assert str(raised.value) == (
        "source aws-backup: account 123456789012 region eu-south-1: backup ListRestoreJobs page 1 failed: "
        "AccessDeniedException: User is not authorized"
    )


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"regions": [REGION], "rpo_target_hours": "daily"}, "rpo_target_hours: expected int | float, got str"),
        (
            {"region": REGION},
            "region: unknown key 'region'; did you mean 'regions'?; valid keys: regions, aws_conn_id, "
            "rpo_target_hours, rds_min_retention_days, restore_lookback_days, restore_test_max_age_hours, rds",
        ),
        (
            {"rds_min_retention_day": 7},
            "rds_min_retention_day: unknown key 'rds_min_retention_day'; did you mean 'rds_min_retention_days'?; "
            "valid keys: regions, aws_conn_id, rpo_target_hours, rds_min_retention_days, restore_lookback_days, "
            "restore_test_max_age_hours, rds",
        ),
        ({"regions": []}, "regions: expected array of length >= 1, got []"),
        ({"restore_lookback_days": 0}, "restore_lookback_days: expected int >= 1, got 0"),
        ({"restore_test_max_age_hours": -0.5}, "restore_test_max_age_hours: expected float > 0.0, got -0.5"),
        ({"rds": "yes"}, "rds: expected bool, got str"),
    ],
    ids=["rpo-not-a-number", "unknown-option", "misspelt-key", "no-regions", "zero-days", "negative-hours", "rds-str"],
)
def test_bad_options_name_the_source(options, problem):
    with pytest.raises(ConfigError, match="^" + re.escape(f"source aws-backup: {problem}") + "$"):
        source_config("aws-backup", "aws_backup", options)
