"""AWS Backup and RDS backup evidence: plans, vaults and their locks, recovery points and their age,
restore jobs, restore-testing plans, and RDS backup retention and newest snapshot age.

Options (:class:`Options`): ``regions`` (default: the session's region), ``aws_conn_id`` (an
Airflow AWS connection; default boto3's chain, whose endpoint settings such as ``AWS_ENDPOINT_URL``
apply), ``rpo_target_hours`` (default 24: the newest completed recovery point of each protected
resource, and the newest snapshot of each RDS instance, must be younger), ``rds_min_retention_days``
(default 7), ``restore_lookback_days`` (default 35: restore jobs created since then),
``restore_test_max_age_hours`` (default 26: each restore-testing plan ran within it, i.e.
nightly), ``rds`` (default true).

Only list and describe calls are made; every record is streamed to JSON Lines as its page arrives.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec

from soc2_evidence.collectors import CollectContext
from soc2_evidence.collectors.support.aws import AwsApi
from soc2_evidence.core import config
from soc2_evidence.core.config import SourceConfig
from soc2_evidence.core.credentials import AwsSession
from soc2_evidence.core.datasets import Dataset, may_be_empty, must_exist
from soc2_evidence.core.errors import CollectorError
from soc2_evidence.core.evidence import rfc3339
from soc2_evidence.core.staging import BundleWriter

KIND = "aws_backup"
FAMILY = "backup"
VERSION = "1.0.0"
DEFAULT_RPO_TARGET_HOURS = 24
DEFAULT_RDS_MIN_RETENTION_DAYS = 7
DEFAULT_RESTORE_LOOKBACK_DAYS = 35
DEFAULT_RESTORE_TEST_MAX_AGE_HOURS = 26
# Recovery points that can be restored from; others (PARTIAL, EXPIRED, ...) do not count toward the RPO.
RESTORABLE = ("COMPLETED", "AVAILABLE")
RESTORE_JOB_FAILED = ("FAILED", "ABORTED")
VALIDATION_FAILED = ("FAILED", "TIMED_OUT")
# A whole or fractional number greater than zero, kept as written (24 stays 24 in scope.json).
PositiveNumber = Annotated[int, msgspec.Meta(gt=0)] | Annotated[float, msgspec.Meta(gt=0)]


class Options(config.Options):
    regions: (
        Annotated[
            list[Annotated[str, msgspec.Meta(min_length=1)]],
            msgspec.Meta(min_length=1, description="Regions to read; unset: the session's region"),
        ]
        | None
    ) = None
    aws_conn_id: Annotated[
        str | None, msgspec.Meta(description="Airflow AWS connection; unset: boto3's standard chain")
    ] = None
    rpo_target_hours: Annotated[
        PositiveNumber,
        msgspec.Meta(description="Each protected resource's and RDS instance's newest backup must be younger"),
    ] = DEFAULT_RPO_TARGET_HOURS
    rds_min_retention_days: PositiveNumber = DEFAULT_RDS_MIN_RETENTION_DAYS
    restore_lookback_days: Annotated[
        PositiveNumber, msgspec.Meta(description="Restore jobs created within this many days are collected")
    ] = DEFAULT_RESTORE_LOOKBACK_DAYS
    restore_test_max_age_hours: Annotated[
        PositiveNumber, msgspec.Meta(description="Each restore-testing plan must have run within it")
    ] = DEFAULT_RESTORE_TEST_MAX_AGE_HOURS
    rds: Annotated[bool, msgspec.Meta(description="Collect RDS backup retention and snapshots")] = True


PLANS = Dataset(
    name="aws_backup.plans",
    existence=must_exist(
        "exists", "At least one AWS Backup plan exists: without one nothing is backed up by AWS Backup"
    ),
    item="plans.jsonl",
    key=("region", "plan_id"),
    columns={
        "region": "string",
        "plan_id": "string",
        "plan_arn": "string",
        "name": "string",
        "version_id": "string",
        "created_at": "string",
        "last_execution_at": "string",
        "rules": "array",
        "rule_count": "integer",
    },
    required=("plan_arn", "name", "rules", "rule_count"),
    total="plans",
    description="AWS Backup plans and their rules (schedule, target vault, lifecycle)",
)
VAULTS = Dataset(
    name="aws_backup.vaults",
    existence=must_exist("exists", "At least one backup vault exists to hold recovery points"),
    item="vaults.jsonl",
    key=("region", "vault_name"),
    columns={
        "region": "string",
        "vault_name": "string",
        "vault_arn": "string",
        "vault_type": "string",
        "locked": "boolean",
        "lock_date": "string",
        "min_retention_days": "integer",
        "max_retention_days": "integer",
        "recovery_points": "integer",
        "encryption_key_arn": "string",
        "created_at": "string",
    },
    required=("vault_arn", "locked"),
    total="vaults",
    description="Backup vaults, with their Vault Lock state and retention bounds",
)
RECOVERY_POINTS = Dataset(
    name="aws_backup.recovery_points",
    existence=must_exist("exists", "At least one recovery point exists: a plan that never ran protects nothing"),
    item="recovery_points.jsonl",
    key=("region", "recovery_point_arn"),
    columns={
        "region": "string",
        "recovery_point_arn": "string",
        "vault_name": "string",
        "resource_arn": "string",
        "resource_type": "string",
        "status": "string",
        "created_at": "string",
        "completed_at": "string",
        "age_hours": "number",
        "size_bytes": "integer",
        "encrypted": "boolean",
        "delete_after_days": "integer",
    },
    required=("vault_name", "status", "created_at", "age_hours"),
    total="recovery_points",
    description="Every recovery point in every vault, with its age",
)
PROTECTED_RESOURCES = Dataset(
    name="aws_backup.protected_resources",
    existence=must_exist("exists", "At least one resource is protected by AWS Backup"),
    item="protected_resources.jsonl",
    key=("region", "resource_arn"),
    columns={
        "region": "string",
        "resource_arn": "string",
        "resource_type": "string",
        "newest_recovery_point_arn": "string",
        "newest_at": "string",
        "age_hours": "number",
        "rpo_target_hours": "number",
        "rpo_met": "boolean",
    },
    required=("rpo_target_hours", "rpo_met"),
    description="Per backed-up resource: its newest restorable recovery point and whether it meets the RPO",
)
RESTORE_JOBS = Dataset(
    name="aws_backup.restore_jobs",
    existence=may_be_empty("Restore testing is judged by aws_backup.restore_testing_plans.exists and tested_recently"),
    item="restore_jobs.jsonl",
    key=("region", "restore_job_id"),
    columns={
        "region": "string",
        "restore_job_id": "string",
        "status": "string",
        "status_message": "string",
        "resource_type": "string",
        "recovery_point_arn": "string",
        "created_resource_arn": "string",
        "restore_testing_plan_arn": "string",
        "created_at": "string",
        "completed_at": "string",
        "duration_seconds": "number",
        "validation_status": "string",
        "validation_message": "string",
    },
    required=("status", "created_at"),
    total="restore_jobs",
    description="Restore jobs (including those of restore-testing plans) and their validation results",
)
RESTORE_TESTING_PLANS = Dataset(
    name="aws_backup.restore_testing_plans",
    existence=must_exist("exists", "At least one restore testing plan exists, so restores are tested"),
    item="restore_testing_plans.jsonl",
    key=("region", "name"),
    columns={
        "region": "string",
        "name": "string",
        "arn": "string",
        "schedule": "string",
        "schedule_timezone": "string",
        "last_execution_at": "string",
        "age_hours": "number",
        "max_age_hours": "number",
        "tested_recently": "boolean",
    },
    required=("arn", "max_age_hours", "tested_recently"),
    total="restore_testing_plans",
    description="Restore-testing plans: their schedule and when they last ran",
)
RDS_INSTANCES = Dataset(
    name="aws_backup.rds_instances",
    existence=may_be_empty("An account need not run RDS instances"),
    item="rds_instances.jsonl",
    key=("region", "db_instance"),
    columns={
        "region": "string",
        "db_instance": "string",
        "engine": "string",
        "status": "string",
        "backup_retention_days": "integer",
        "min_retention_days": "integer",
        "retention_met": "boolean",
        "latest_restorable_at": "string",
        "latest_snapshot": "string",
        "latest_snapshot_type": "string",
        "latest_snapshot_at": "string",
        "snapshot_age_hours": "number",
        "rpo_target_hours": "number",
        "rpo_met": "boolean",
    },
    required=("backup_retention_days", "retention_met", "rpo_met"),
    total="rds_instances",
    description="RDS instances: automated backup retention, latest restorable time, newest snapshot and its age",
)
DATASETS = (PLANS, VAULTS, RECOVERY_POINTS, PROTECTED_RESOURCES, RESTORE_JOBS, RESTORE_TESTING_PLANS, RDS_INSTANCES)


def collect(source: SourceConfig, writer: BundleWriter, context: CollectContext) -> None:
    options: Options = source.options
    now = context.now()  # recovery point and snapshot ages are measured from it
    regions = _regions(source, options, context.credentials.aws_session(options.aws_conn_id).session.region_name)
    sessions = {region: context.credentials.aws_session(options.aws_conn_id, region) for region in regions}
    account = _account(source, sessions)
    calls = [_Calls(source.name, account, region, session) for region, session in sessions.items()]
    counts: dict[str, int] = {}

    def counted(total: str, records: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        counts[total] = 0
        for record in records:
            counts[total] += 1
            yield record

    writer.add_json(
        "scope.json",
        {
            "account": account,
            "regions": regions,
            "collected_at": rfc3339(now),
            "restore_jobs_created_after": rfc3339(now - timedelta(days=options.restore_lookback_days)),
            "rpo_target_hours": options.rpo_target_hours,
            "rds_min_retention_days": options.rds_min_retention_days,
            "restore_test_max_age_hours": options.restore_test_max_age_hours,
        },
        description="What was collected: account, regions, windows and targets",
    )
    writer.add_jsonl(PLANS.item, counted("plans", (p for c in calls for p in _plans(c))), description=PLANS.description)
    vault_names: list[tuple[_Calls, str]] = []
    writer.add_jsonl(
        VAULTS.item,
        counted("vaults", (v for c in calls for v in _vaults(c, vault_names))),
        description=VAULTS.description,
    )
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    writer.add_jsonl(
        RECOVERY_POINTS.item,
        counted("recovery_points", _recovery_points(vault_names, now, newest)),
        description=RECOVERY_POINTS.description,
    )
    writer.add_jsonl(
        PROTECTED_RESOURCES.item,
        (_protected_resource(entry, now, options.rpo_target_hours) for _, entry in sorted(newest.items())),
        description=PROTECTED_RESOURCES.description,
    )
    created_after = now - timedelta(days=options.restore_lookback_days)
    writer.add_jsonl(
        RESTORE_JOBS.item,
        counted("restore_jobs", (j for c in calls for j in _restore_jobs(c, created_after))),
        description=RESTORE_JOBS.description,
    )
    writer.add_jsonl(
        RESTORE_TESTING_PLANS.item,
        counted(
            "restore_testing_plans",
            (p for c in calls for p in _restore_testing_plans(c, now, options.restore_test_max_age_hours)),
        ),
        description=RESTORE_TESTING_PLANS.description,
    )
    rds = (i for c in calls for i in _rds_instances(c, now, options)) if options.rds else iter(())
    writer.add_jsonl(RDS_INSTANCES.item, counted("rds_instances", rds), description=RDS_INSTANCES.description)
    for total, count in counts.items():
        writer.report_total(total, count)


def control_expectations(dataset: Dataset) -> list[Any]:
    """Backup controls: plans with rules, locked vaults, RPO per resource, restores that work, nightly tests."""
    from soc2_evidence.validation.gx import control, expectations

    by_dataset = {
        PLANS.name: [
            control(
                expectations.ExpectColumnValuesToBeBetween,
                dataset,
                "has_rules",
                "Every backup plan has at least one rule (a schedule that takes backups)",
                column="rule_count",
                min_value=1,
            )
        ],
        VAULTS.name: [
            control(
                expectations.ExpectColumnValuesToBeInSet,
                dataset,
                "locked",
                "Every backup vault has Vault Lock, so recovery points cannot be deleted early",
                column="locked",
                value_set=[True],
            )
        ],
        PROTECTED_RESOURCES.name: [
            control(
                expectations.ExpectColumnValuesToBeInSet,
                dataset,
                "rpo_within_target",
                "Every backed-up resource has a restorable recovery point younger than the RPO",
                column="rpo_met",
                value_set=[True],
            )
        ],
        RESTORE_JOBS.name: [
            control(
                expectations.ExpectColumnValuesToNotBeInSet,
                dataset,
                "restore_succeeded",
                "No restore job failed or was aborted",
                column="status",
                value_set=list(RESTORE_JOB_FAILED),
            ),
            control(
                expectations.ExpectColumnValuesToNotBeInSet,
                dataset,
                "validation_passed",
                "No restore validation failed or timed out",
                column="validation_status",
                value_set=list(VALIDATION_FAILED),
            ),
        ],
        RESTORE_TESTING_PLANS.name: [
            control(
                expectations.ExpectColumnValuesToBeInSet,
                dataset,
                "tested_recently",
                "Every restore-testing plan ran within its expected interval (no missed nightly test)",
                column="tested_recently",
                value_set=[True],
            )
        ],
        RDS_INSTANCES.name: [
            control(
                expectations.ExpectColumnValuesToBeInSet,
                dataset,
                "retention_met",
                "Every RDS instance keeps automated backups at least the minimum number of days",
                column="retention_met",
                value_set=[True],
            ),
            control(
                expectations.ExpectColumnValuesToBeInSet,
                dataset,
                "rpo_within_target",
                "Every RDS instance has a snapshot younger than the RPO",
                column="rpo_met",
                value_set=[True],
            ),
        ],
    }
    return by_dataset.get(dataset.name, [])


def _regions(source: SourceConfig, options: Options, default: str | None) -> list[str]:
    """The configured regions, each once, else the session's default region."""
    if options.regions is not None:
        return list(dict.fromkeys(options.regions))
    if not default:
        raise CollectorError(f"source {source.name}: no region; set option 'regions' or AWS_DEFAULT_REGION")
    return [default]


def _account(source: SourceConfig, sessions: dict[str, AwsSession]) -> str:
    region, aws = next(iter(sessions.items()))
    return AwsApi(source.name, None, region, aws.client("sts", region)).call("get_caller_identity")["Account"]


class _Calls:
    """One region's Backup and RDS APIs, whose failures name source, account, region, call and page."""

    def __init__(self, source: str, account: str, region: str, aws: AwsSession) -> None:
        self.region = region
        self.backup = AwsApi(source, account, region, aws.client("backup", region))
        self.rds = AwsApi(source, account, region, aws.client("rds", region))


def _plans(calls: _Calls) -> Iterator[dict[str, Any]]:
    for summary in calls.backup.items("list_backup_plans", "BackupPlansList"):
        plan = calls.backup.call("get_backup_plan", BackupPlanId=summary["BackupPlanId"])
        rules = [
            {
                "name": rule.get("RuleName"),
                "schedule": rule.get("ScheduleExpression"),
                "target_vault": rule.get("TargetBackupVaultName"),
                "start_window_minutes": rule.get("StartWindowMinutes"),
                "delete_after_days": (rule.get("Lifecycle") or {}).get("DeleteAfterDays"),
                "move_to_cold_storage_after_days": (rule.get("Lifecycle") or {}).get("MoveToColdStorageAfterDays"),
                "copy_actions": [action.get("DestinationBackupVaultArn") for action in rule.get("CopyActions", [])],
            }
            for rule in plan.get("BackupPlan", {}).get("Rules", [])
        ]
        yield {
            "region": calls.region,
            "plan_id": summary["BackupPlanId"],
            "plan_arn": summary.get("BackupPlanArn"),
            "name": summary.get("BackupPlanName"),
            "version_id": summary.get("VersionId"),
            "created_at": _time(summary.get("CreationDate")),
            "last_execution_at": _time(summary.get("LastExecutionDate")),
            "rules": rules,
            "rule_count": len(rules),
        }


def _vaults(calls: _Calls, names: list[tuple[_Calls, str]]) -> Iterator[dict[str, Any]]:
    for vault in calls.backup.items("list_backup_vaults", "BackupVaultList"):
        names.append((calls, vault["BackupVaultName"]))
        yield {
            "region": calls.region,
            "vault_name": vault["BackupVaultName"],
            "vault_arn": vault.get("BackupVaultArn"),
            "vault_type": vault.get("VaultType"),
            "locked": bool(vault.get("Locked", False)),
            "lock_date": _time(vault.get("LockDate")),
            "min_retention_days": vault.get("MinRetentionDays"),
            "max_retention_days": vault.get("MaxRetentionDays"),
            "recovery_points": vault.get("NumberOfRecoveryPoints"),
            "encryption_key_arn": vault.get("EncryptionKeyArn"),
            "created_at": _time(vault.get("CreationDate")),
        }


def _recovery_points(
    vaults: list[tuple[_Calls, str]], now: datetime, newest: dict[tuple[str, str], dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    """Every recovery point; on the way, the newest restorable one of each resource (for the RPO)."""
    for calls, vault in vaults:
        for point in calls.backup.items(
            "list_recovery_points_by_backup_vault", "RecoveryPoints", BackupVaultName=vault
        ):
            created = point.get("CreationDate")
            record = {
                "region": calls.region,
                "recovery_point_arn": point["RecoveryPointArn"],
                "vault_name": vault,
                "resource_arn": point.get("ResourceArn"),
                "resource_type": point.get("ResourceType"),
                "status": point.get("Status"),
                "created_at": _time(created),
                "completed_at": _time(point.get("CompletionDate")),
                "age_hours": _hours(now, created),
                "size_bytes": point.get("BackupSizeInBytes"),
                "encrypted": point.get("IsEncrypted"),
                "delete_after_days": (point.get("Lifecycle") or {}).get("DeleteAfterDays"),
            }
            resource = (calls.region, record["resource_arn"] or "")
            if record["status"] in RESTORABLE and created is not None:
                known = newest.get(resource)
                if known is None or known["created"] is None or known["created"] < created:
                    newest[resource] = {"record": record, "created": created}
            else:
                newest.setdefault(resource, {"record": {**record, "recovery_point_arn": None}, "created": None})
            yield record


def _protected_resource(entry: dict[str, Any], now: datetime, target_hours: float) -> dict[str, Any]:
    record, created = entry["record"], entry["created"]
    age = _hours(now, created)
    return {
        "region": record["region"],
        "resource_arn": record["resource_arn"],
        "resource_type": record["resource_type"],
        "newest_recovery_point_arn": record["recovery_point_arn"] if created else None,
        "newest_at": _time(created),
        "age_hours": age,
        "rpo_target_hours": float(target_hours),
        "rpo_met": age is not None and age <= target_hours,
    }


def _restore_jobs(calls: _Calls, created_after: datetime) -> Iterator[dict[str, Any]]:
    for job in calls.backup.items("list_restore_jobs", "RestoreJobs", ByCreatedAfter=created_after):
        created, completed = job.get("CreationDate"), job.get("CompletionDate")
        yield {
            "region": calls.region,
            "restore_job_id": job["RestoreJobId"],
            "status": job.get("Status"),
            "status_message": job.get("StatusMessage"),
            "resource_type": job.get("ResourceType"),
            "recovery_point_arn": job.get("RecoveryPointArn"),
            "created_resource_arn": job.get("CreatedResourceArn"),
            "restore_testing_plan_arn": (job.get("CreatedBy") or {}).get("RestoreTestingPlanArn"),
            "created_at": _time(created),
            "completed_at": _time(completed),
            "duration_seconds": round((completed - created).total_seconds(), 3) if created and completed else None,
            "validation_status": job.get("ValidationStatus"),
            "validation_message": job.get("ValidationStatusMessage"),
        }


def _restore_testing_plans(calls: _Calls, now: datetime, max_age_hours: float) -> Iterator[dict[str, Any]]:
    for plan in calls.backup.items("list_restore_testing_plans", "RestoreTestingPlans"):
        age = _hours(now, plan.get("LastExecutionTime"))
        yield {
            "region": calls.region,
            "name": plan["RestoreTestingPlanName"],
            "arn": plan.get("RestoreTestingPlanArn"),
            "schedule": plan.get("ScheduleExpression"),
            "schedule_timezone": plan.get("ScheduleExpressionTimezone"),
            "last_execution_at": _time(plan.get("LastExecutionTime")),
            "age_hours": age,
            "max_age_hours": float(max_age_hours),
            "tested_recently": age is not None and age <= max_age_hours,
        }


def _rds_instances(calls: _Calls, now: datetime, options: Options) -> Iterator[dict[str, Any]]:
    for instance in calls.rds.items("describe_db_instances", "DBInstances"):
        identifier = instance["DBInstanceIdentifier"]
        newest = None
        for snapshot in calls.rds.items("describe_db_snapshots", "DBSnapshots", DBInstanceIdentifier=identifier):
            created = snapshot.get("SnapshotCreateTime")
            if snapshot.get("Status") == "available" and created and (newest is None or newest["at"] < created):
                newest = {"id": snapshot["DBSnapshotIdentifier"], "type": snapshot.get("SnapshotType"), "at": created}
        retention = instance.get("BackupRetentionPeriod", 0)
        age = _hours(now, newest["at"]) if newest else None
        yield {
            "region": calls.region,
            "db_instance": identifier,
            "engine": instance.get("Engine"),
            "status": instance.get("DBInstanceStatus"),
            "backup_retention_days": retention,
            "min_retention_days": int(options.rds_min_retention_days),
            "retention_met": retention >= options.rds_min_retention_days,
            "latest_restorable_at": _time(instance.get("LatestRestorableTime")),
            "latest_snapshot": newest["id"] if newest else None,
            "latest_snapshot_type": newest["type"] if newest else None,
            "latest_snapshot_at": _time(newest["at"]) if newest else None,
            "snapshot_age_hours": age,
            "rpo_target_hours": float(options.rpo_target_hours),
            "rpo_met": age is not None and age <= options.rpo_target_hours,
        }


def _time(value: datetime | None) -> str | None:
    return rfc3339(value) if value else None


def _hours(now: datetime, moment: datetime | None) -> float | None:
    return round((now - moment).total_seconds() / 3600, 3) if moment else None
