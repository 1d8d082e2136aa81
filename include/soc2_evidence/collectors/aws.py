"""AWS configuration snapshot: IAM, S3, CloudTrail, KMS, security groups, RDS and AWS Config, per account and region.

Options (:class:`Options`): ``accounts`` (a list of :class:`Account` ``{id, role_arn,
external_id, regions}``: ``id`` is the 12-digit account id as a string; ``role_arn`` is assumed
once per account with STS, or omitted to read the account the base credentials belong to;
``regions`` lists the regions to read, the first one known to botocore serving the account's
global calls), ``conn_id`` (an Airflow AWS
connection, resolved by :mod:`soc2_evidence.core.credentials`: outside Airflow login is the
access key id, password the secret, extra may hold ``region_name``, ``endpoint_url`` and
``aws_session_token``; under Airflow the amazon provider's hook reads it; without it boto3's
standard chain applies, with ``AWS_ENDPOINT_URL*``), ``max_access_key_age_days``
(default 90), ``max_unused_days`` (console logins and active keys unused longer are findings,
default 45) and ``admin_allow_list`` (IAM user ARNs allowed administrator access, default none).
Whether each region exists, and is enabled for its account, is checked when collecting.

Every dataset is a JSON Lines item streamed record by record from paginators, so memory stays
flat however large the accounts are. Any failed call (access denied, throttling past the
retries, a role that cannot be assumed, a region the account does not have) raises a
CollectorError naming the account, region and call (transient for throttling, 5xx and network
failures; see ``collectors.support.aws``): a partial snapshot is never finished.

The role needs read access to what is listed (AWS's managed SecurityAudit policy covers it,
including ``s3:GetAccountPublicAccessBlock`` for the account-level S3 Block Public Access).
"""

from __future__ import annotations

import collections
import functools
import hashlib
import json
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import msgspec

from soc2_evidence.collectors import CollectContext
from soc2_evidence.collectors.support.aws import AwsApi
from soc2_evidence.core import config
from soc2_evidence.core.config import Problem, SourceConfig
from soc2_evidence.core.credentials import AwsSession
from soc2_evidence.core.datasets import Dataset, may_be_empty, must_exist
from soc2_evidence.core.errors import CollectorError
from soc2_evidence.core.evidence import rfc3339
from soc2_evidence.core.staging import BundleWriter

KIND = "aws"
FAMILY = "config"
VERSION = "1.0.0"
# Calls per listed resource (a user's MFA devices, a bucket's settings) run this many at a time:
# AWS answers in tens of milliseconds, and one at a time would take hours for large accounts.
WORKERS = 8
ROLE_SESSION_NAME = "soc2-evidence"
DEFAULT_MAX_ACCESS_KEY_AGE_DAYS = 90
# Prowler's SOC 2 mapping (CC1.3) holds console logins and access keys to 45 days without use.
DEFAULT_MAX_UNUSED_DAYS = 45
ADMIN_PORTS = (22, 3389)
# SQL Server (and its browser), MySQL, PostgreSQL, Redis, MongoDB: Prowler's database-port checks.
DB_PORTS = (1433, 1434, 3306, 5432, 6379, 27017, 27018)
WORLD_CIDRS = ("0.0.0.0/0", "::/0")
ADMINISTRATOR_ACCESS = re.compile(r"^arn:aws[\w-]*:iam::aws:policy/AdministratorAccess$")
AWS_MANAGED_POLICY = re.compile(r"^arn:aws[\w-]*:iam::aws:policy/")
PUBLIC_GRANTEES = (
    "http://acs.amazonaws.com/groups/global/AllUsers",
    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
)
MIN_PASSWORD_LENGTH = 14  # CIS AWS Foundations 1.8
MIN_PASSWORD_REUSE_PREVENTION = 24  # CIS AWS Foundations 1.9
MAX_PASSWORD_AGE_DAYS = 90
MIN_BACKUP_RETENTION_DAYS = 7
_ROLE_ARN = re.compile(r"^arn:aws[\w-]*:iam::(\d{12}):role/[\w+=,.@/-]+$")


AccountId = Annotated[str, msgspec.Meta(pattern=r"^\d{12}$", description="A 12-digit account id, as a quoted string")]
RoleArn = Annotated[str, msgspec.Meta(pattern=_ROLE_ARN.pattern, description="An IAM role ARN")]
Region = Annotated[str, msgspec.Meta(min_length=1)]


class Account(config.Section, kw_only=True):
    """One account to read: its id, the role to assume in it (if any) and its regions."""

    account_id: AccountId = msgspec.field(name="id")
    role_arn: Annotated[
        RoleArn | None, msgspec.Meta(description="Assumed with STS; unset: the base credentials' own account")
    ] = None
    external_id: Annotated[str | None, msgspec.Meta(description="The ExternalId the role's trust policy asks for")] = (
        None
    )
    regions: Annotated[
        list[Region],
        msgspec.Meta(min_length=1, description="Regions to read; the first one botocore knows serves the global calls"),
    ]

    def problems(self) -> Iterator[Problem]:
        match = _ROLE_ARN.match(self.role_arn) if self.role_arn else None
        if match and match[1] != self.account_id:
            yield Problem(("role_arn",), f"role {self.role_arn} is in account {match[1]}, not {self.account_id}")
        seen: set[str] = set()
        for index, region in enumerate(self.regions):
            if region in seen:
                yield Problem(("regions", index), f"region {region!r} is listed twice")
            seen.add(region)


class Options(config.Options):
    accounts: Annotated[list[Account], msgspec.Meta(min_length=1, description="The accounts to read")]
    conn_id: (
        Annotated[str, msgspec.Meta(min_length=1, description="Airflow AWS connection; unset: boto3's standard chain")]
        | None
    ) = None
    max_access_key_age_days: config.PositiveInt = DEFAULT_MAX_ACCESS_KEY_AGE_DAYS
    max_unused_days: config.PositiveInt = DEFAULT_MAX_UNUSED_DAYS
    admin_allow_list: Annotated[
        list[str], msgspec.Meta(description="ARNs of IAM users allowed administrator access")
    ] = msgspec.field(default_factory=list)

    def problems(self) -> Iterator[Problem]:
        first: dict[str, int] = {}
        for index, account in enumerate(self.accounts):
            if account.account_id in first:
                yield Problem(
                    ("accounts", index, "id"),
                    f"account {account.account_id} is also listed at accounts[{first[account.account_id]}]",
                )
            first.setdefault(account.account_id, index)


ACCOUNTS = Dataset(
    name="aws.accounts",
    existence=must_exist("exists", "At least one AWS account is read"),
    item="accounts.jsonl",
    key=("account_id",),
    columns={
        "account_id": "string",
        "role_arn": "string",
        "identity_arn": "string",
        "home_region": "string",
        "regions": "array",
        "root_mfa_enabled": "boolean",
        "root_access_keys_present": "boolean",
        "logging_trails": "integer",
    },
    required=(
        "identity_arn",
        "home_region",
        "regions",
        "root_mfa_enabled",
        "root_access_keys_present",
        "logging_trails",
    ),
    context={
        "role_arn": "Names how the account was read; not a setting of the account",
        "identity_arn": "Names who read the account, for the auditor",
        "home_region": "Where global calls were made; not a setting of the account",
        "regions": "The scope read; each region's recorder and groups are judged in their own datasets",
    },
    description=(
        "The accounts and regions read, the identity that read them, the root user's MFA and access keys "
        "(IAM account summary) and how many multi-region trails that are logging the account sees"
    ),
)
IAM_USERS = Dataset(
    name="aws.iam_users",
    existence=may_be_empty("An account may run on roles and single sign-on alone, with no IAM user"),
    item="iam_users.jsonl",
    key=("account_id", "user_name"),
    columns={
        "account_id": "string",
        "user_name": "string",
        "arn": "string",
        "created": "string",
        "console_access": "boolean",
        "password_last_used": "string",
        "console_unused_days": "integer",
        "max_unused_days": "integer",
        "mfa_devices": "integer",
        "mfa_enabled": "boolean",
        "access_keys": "integer",
        "groups": "array",
        "admin": "boolean",
        "admin_grants": "array",
        "admin_allow_listed": "boolean",
    },
    required=(
        "arn",
        "created",
        "console_access",
        "max_unused_days",
        "mfa_devices",
        "mfa_enabled",
        "access_keys",
        "groups",
        "admin",
    ),
    context={
        "arn": "Names the user in findings and in the admin allow-list",
        "created": "Dates the user; console inactivity counts from it when the password was never used",
        "password_last_used": "The fact console_unused_days is computed from",
        "mfa_devices": "The count mfa_enabled is computed from",
        "access_keys": "How many keys; each key is judged in aws.iam_access_keys",
        "groups": "Where a group grant of admin_grants comes from",
        "admin_grants": "Which policy or group grants the administrator access judged by admin",
    },
    total="iam_users",
    description="IAM users: console access, MFA, groups and administrator access (direct, inline or by group)",
)
IAM_ACCESS_KEYS = Dataset(
    name="aws.iam_access_keys",
    existence=may_be_empty("No long-lived access key at all is the goal, not a gap"),
    item="iam_access_keys.jsonl",
    key=("account_id", "key_fingerprint"),
    columns={
        "account_id": "string",
        "user_name": "string",
        "key_fingerprint": "string",
        "key_id_suffix": "string",
        "status": "string",
        "created": "string",
        "age_days": "integer",
        "max_age_days": "integer",
        "last_used_date": "string",
        "last_used_service": "string",
        "unused_days": "integer",
        "max_unused_days": "integer",
    },
    required=("user_name", "status", "created", "age_days", "max_age_days", "unused_days", "max_unused_days"),
    context={
        "user_name": "The key's owner, named in findings",
        "key_id_suffix": "The last four characters, as the console shows them, to find the key",
        "created": "The fact age_days is computed from",
        "last_used_date": "The fact unused_days is computed from",
        "last_used_service": "What the key was last used for, for the owner deciding to delete it",
    },
    value_sets={"status": ("Active", "Inactive")},
    total="iam_access_keys",
    description="IAM access keys by fingerprint (SHA-256 of the key id): status, age and last use",
)
PASSWORD_POLICIES = Dataset(
    name="aws.iam_password_policies",
    existence=must_exist("exists", "A password policy record for every account read (present=false where none is set)"),
    item="iam_password_policies.jsonl",
    key=("account_id",),
    columns={
        "account_id": "string",
        "present": "boolean",
        "minimum_length": "integer",
        "require_symbols": "boolean",
        "require_numbers": "boolean",
        "require_uppercase": "boolean",
        "require_lowercase": "boolean",
        "allow_users_to_change": "boolean",
        "expire_passwords": "boolean",
        "max_age_days": "integer",
        "reuse_prevention": "integer",
        "hard_expiry": "boolean",
    },
    required=("present",),
    context={
        "allow_users_to_change": "Convenience, not a control: rotation is judged by max_age_days",
        "hard_expiry": "Whether an expired password needs an administrator; no criterion asks for either",
    },
    description="The IAM account password policy of each account (present=false when none is set)",
)
S3_BUCKETS = Dataset(
    name="aws.s3_buckets",
    existence=may_be_empty("An account need not keep data in S3"),
    item="s3_buckets.jsonl",
    key=("account_id", "bucket"),
    columns={
        "account_id": "string",
        "bucket": "string",
        "region": "string",
        "created": "string",
        "block_public_acls": "boolean",
        "ignore_public_acls": "boolean",
        "block_public_policy": "boolean",
        "restrict_public_buckets": "boolean",
        "public_access_block_all": "boolean",
        "account_block_public_acls": "boolean",
        "account_ignore_public_acls": "boolean",
        "account_block_public_policy": "boolean",
        "account_restrict_public_buckets": "boolean",
        "effective_public_access_block_all": "boolean",
        "policy_is_public": "boolean",
        "acl_is_public": "boolean",
        "default_encryption": "string",
        "versioning": "string",
        "mfa_delete": "boolean",
        "access_logging": "boolean",
        "object_lock": "boolean",
    },
    required=(
        "region",
        "public_access_block_all",
        "account_block_public_acls",
        "account_ignore_public_acls",
        "account_block_public_policy",
        "account_restrict_public_buckets",
        "effective_public_access_block_all",
        "policy_is_public",
        "acl_is_public",
        "versioning",
        "mfa_delete",
        "access_logging",
        "object_lock",
    ),
    context={
        "region": "Where the bucket is, for remediation",
        "created": "Dates the bucket",
        "block_public_acls": "One of the four settings public_access_block_all is computed from",
        "ignore_public_acls": "One of the four settings public_access_block_all is computed from",
        "block_public_policy": "One of the four settings public_access_block_all is computed from",
        "restrict_public_buckets": "One of the four settings public_access_block_all is computed from",
        "account_block_public_acls": "The account-level setting effective_public_access_block_all combines",
        "account_ignore_public_acls": "The account-level setting effective_public_access_block_all combines",
        "account_block_public_policy": "The account-level setting effective_public_access_block_all combines",
        "account_restrict_public_buckets": "The account-level setting effective_public_access_block_all combines",
        "object_lock": "WORM retention is asked of evidence buckets only (the archive checks its own store)",
    },
    value_sets={
        "versioning": ("Enabled", "Suspended", "Disabled"),
        "default_encryption": ("AES256", "aws:kms", "aws:kms:dsse"),
    },
    total="s3_buckets",
    description=(
        "S3 buckets: public access block at bucket level, at account level and in effect (either level), "
        "policy and ACL exposure, encryption, versioning, MFA delete, server access logging"
    ),
)
S3_ACCOUNT_PUBLIC_ACCESS = Dataset(
    name="aws.s3_account_public_access",
    existence=must_exist("exists", "An account-level S3 Block Public Access record for every account read"),
    item="s3_account_public_access.jsonl",
    key=("account_id",),
    columns={
        "account_id": "string",
        "configured": "boolean",
        "block_public_acls": "boolean",
        "ignore_public_acls": "boolean",
        "block_public_policy": "boolean",
        "restrict_public_buckets": "boolean",
        "all_blocked": "boolean",
    },
    context={
        "configured": "Whether any account-level block is set; all_blocked judges the settings",
        "block_public_acls": "One of the four settings all_blocked is computed from",
        "ignore_public_acls": "One of the four settings all_blocked is computed from",
        "block_public_policy": "One of the four settings all_blocked is computed from",
        "restrict_public_buckets": "One of the four settings all_blocked is computed from",
    },
    required=(
        "configured",
        "block_public_acls",
        "ignore_public_acls",
        "block_public_policy",
        "restrict_public_buckets",
        "all_blocked",
    ),
    description=(
        "The account-level S3 Block Public Access of each account, which applies to every bucket "
        "(configured=false when none is set)"
    ),
)
CLOUDTRAIL_TRAILS = Dataset(
    name="aws.cloudtrail_trails",
    existence=may_be_empty(
        "An account without a multi-region trail that is logging is a finding of aws.accounts.logging_trail"
    ),
    item="cloudtrail_trails.jsonl",
    key=("arn",),
    columns={
        "account_id": "string",
        "region": "string",
        "name": "string",
        "arn": "string",
        "multi_region": "boolean",
        "organization_trail": "boolean",
        "log_file_validation": "boolean",
        "is_logging": "boolean",
        "s3_bucket": "string",
        "kms_key_id": "string",
    },
    required=("account_id", "region", "name", "multi_region", "log_file_validation", "is_logging"),
    context={
        "account_id": "The account the trail was listed in",
        "region": "The trail's home region",
        "name": "Names the trail in findings",
        "organization_trail": "Whether the trail covers an AWS Organization; either kind counts",
        "s3_bucket": "Where the logs go, for the auditor to follow",
        "kms_key_id": "Whether log files are encrypted with a customer key; not asked by SOC 2 criteria here",
    },
    total="cloudtrail_trails",
    description="CloudTrail trails, once each from their home region, with their logging status",
)
KMS_KEYS = Dataset(
    name="aws.kms_keys",
    existence=may_be_empty("Customer-managed keys are optional: AWS-managed keys encrypt by default"),
    item="kms_keys.jsonl",
    key=("arn",),
    columns={
        "account_id": "string",
        "region": "string",
        "key_id": "string",
        "arn": "string",
        "created": "string",
        "key_state": "string",
        "key_spec": "string",
        "key_usage": "string",
        "origin": "string",
        "rotation_enabled": "boolean",
        "policy_allows_everyone": "boolean",
    },
    required=("account_id", "region", "key_id", "key_state", "key_spec", "policy_allows_everyone"),
    context={
        "account_id": "The account of the key",
        "region": "The region of the key",
        "key_id": "Names the key in findings",
        "created": "Dates the key",
        "key_state": "Why rotation_enabled is null (pending deletion, imported)",
        "key_spec": "Why rotation_enabled is null (asymmetric keys cannot rotate)",
        "key_usage": "What the key is for",
        "origin": "Why rotation_enabled is null (imported or external key material)",
    },
    total="kms_keys",
    description=(
        "Customer-managed KMS keys: rotation (null where AWS cannot rotate the key) and whether the key policy "
        "allows any principal ('*') without a condition"
    ),
)
SECURITY_GROUPS = Dataset(
    name="aws.ec2_security_groups",
    existence=may_be_empty("A region without a VPC has no security group and nothing reachable"),
    item="ec2_security_groups.jsonl",
    key=("account_id", "region", "group_id"),
    columns={
        "account_id": "string",
        "region": "string",
        "group_id": "string",
        "group_name": "string",
        "vpc_id": "string",
        "tags": "object",
        "world_open_rules": "array",
        "open_admin_ports": "array",
        "admin_ports_open_to_world": "boolean",
        "open_db_ports": "array",
        "db_ports_open_to_world": "boolean",
        "default_group": "boolean",
        "allows_traffic": "boolean",
    },
    required=(
        "group_name",
        "tags",
        "world_open_rules",
        "open_admin_ports",
        "admin_ports_open_to_world",
        "open_db_ports",
        "db_ports_open_to_world",
        "default_group",
        "allows_traffic",
    ),
    context={
        "group_name": "Names the group in findings",
        "vpc_id": "Where the group is",
        "tags": "Owner and purpose, for remediation",
        "world_open_rules": "The rules open to the internet, which the port checks read",
        "open_admin_ports": "The ports admin_ports_open_to_world is computed from",
        "open_db_ports": "The ports db_ports_open_to_world is computed from",
    },
    total="ec2_security_groups",
    description=(
        "EC2 security groups: inbound rules open to 0.0.0.0/0 or ::/0, the admin and database ports they open, "
        "and whether a VPC's default group allows any traffic"
    ),
)
RDS_INSTANCES = Dataset(
    name="aws.rds_instances",
    existence=may_be_empty("An account need not run RDS instances"),
    item="rds_instances.jsonl",
    key=("arn",),
    columns={
        "account_id": "string",
        "region": "string",
        "db_instance_id": "string",
        "arn": "string",
        "engine": "string",
        "engine_version": "string",
        "instance_class": "string",
        "status": "string",
        "storage_encrypted": "boolean",
        "publicly_accessible": "boolean",
        "backup_retention_days": "integer",
        "deletion_protection": "boolean",
        "multi_az": "boolean",
        "cluster_id": "string",
        "port": "integer",
        "security_group_ids": "array",
        "security_groups_open_to_world": "array",
        "subnet_group": "string",
        "public_subnets": "array",
        "tags": "object",
    },
    required=(
        "account_id",
        "region",
        "db_instance_id",
        "engine",
        "storage_encrypted",
        "publicly_accessible",
        "backup_retention_days",
        "deletion_protection",
        "security_group_ids",
        "security_groups_open_to_world",
        "public_subnets",
    ),
    context={
        "account_id": "The account of the instance",
        "region": "The region of the instance",
        "db_instance_id": "Names the instance in findings",
        "engine": "Which database",
        "engine_version": "Which version, for patching (not judged here)",
        "instance_class": "Its size",
        "status": "Whether it runs",
        "multi_az": "Availability beyond backups; A1.2 asks for recovery, judged by backups and deletion protection",
        "port": "The port security_groups_open_to_world is checked for",
        "security_group_ids": "The groups attached, for remediation",
        "security_groups_open_to_world": (
            "Reported beside publicly_accessible rather than combined: Prowler also requires an open group"
        ),
        "subnet_group": "The DB subnet group the subnets come from, for remediation",
        "public_subnets": (
            "Reported beside publicly_accessible: Prowler also requires a subnet routed to an internet gateway"
        ),
        "tags": "Owner and purpose, for remediation",
    },
    total="rds_instances",
    description=(
        "RDS DB instances: encryption, public accessibility with the security groups open to the internet on its "
        "port, backups and deletion protection"
    ),
)
RDS_CLUSTERS = Dataset(
    name="aws.rds_clusters",
    existence=may_be_empty("An account need not run Aurora or Multi-AZ DB clusters"),
    item="rds_clusters.jsonl",
    key=("arn",),
    columns={
        "account_id": "string",
        "region": "string",
        "cluster_id": "string",
        "arn": "string",
        "engine": "string",
        "engine_version": "string",
        "status": "string",
        "members": "array",
        "storage_encrypted": "boolean",
        "backup_retention_days": "integer",
        "deletion_protection": "boolean",
        "multi_az": "boolean",
        "tags": "object",
    },
    required=(
        "account_id",
        "region",
        "cluster_id",
        "engine",
        "members",
        "storage_encrypted",
        "backup_retention_days",
        "deletion_protection",
    ),
    context={
        "account_id": "The account of the cluster",
        "region": "The region of the cluster",
        "cluster_id": "Names the cluster in findings",
        "engine": "Which database (aurora-mysql, aurora-postgresql, ...)",
        "engine_version": "Which version, for patching (not judged here)",
        "status": "Whether it runs",
        "members": "Its instances, each in aws.rds_instances (where public access is judged)",
        "multi_az": "Availability beyond backups; A1.2 asks for recovery, judged by backups and deletion protection",
        "tags": "Owner and purpose, for remediation",
    },
    total="rds_clusters",
    description="RDS DB clusters (Aurora and Multi-AZ clusters): encryption, backups and deletion protection",
)
CONFIG_RECORDERS = Dataset(
    name="aws.config_recorders",
    existence=must_exist("exists", "A Config recorder record for every region read (present=false where none exists)"),
    item="config_recorders.jsonl",
    key=("account_id", "region"),
    columns={
        "account_id": "string",
        "region": "string",
        "present": "boolean",
        "name": "string",
        "recording": "boolean",
        "last_status": "string",
        "all_supported": "boolean",
        "include_global_resource_types": "boolean",
    },
    required=("present", "recording"),
    context={
        "present": "Whether a recorder exists; recording is false without one",
        "name": "Names the recorder",
        "last_status": "Why recording failed, for remediation",
        "all_supported": "Which resource types are recorded; recording at all is the criterion judged here",
        "include_global_resource_types": "Whether IAM is recorded here; one region recording it is enough",
    },
    description="The AWS Config recorder of each account and region (present=false when none exists)",
)
DATASETS = (
    ACCOUNTS,
    IAM_USERS,
    IAM_ACCESS_KEYS,
    PASSWORD_POLICIES,
    S3_ACCOUNT_PUBLIC_ACCESS,
    S3_BUCKETS,
    CLOUDTRAIL_TRAILS,
    KMS_KEYS,
    SECURITY_GROUPS,
    RDS_INSTANCES,
    RDS_CLUSTERS,
    CONFIG_RECORDERS,
)


def collect(source: SourceConfig, writer: BundleWriter, context: CollectContext) -> None:
    options: Options = source.options
    # The session roles are assumed from: the connection's (an Airflow AWS connection's, under
    # Airflow), else boto3's standard chain.
    base = context.credentials.aws_session(options.conn_id)
    # Every account is opened (role assumed, identity and regions checked) before anything is
    # written, so a misconfigured account fails the snapshot at once.
    accounts = [_Account.open(source.name, spec, base) for spec in options.accounts]
    now = context.now()  # access-key ages are measured from it
    totals: collections.Counter[str] = collections.Counter()

    with tempfile.TemporaryFile() as key_spool:
        writer.add_jsonl(
            IAM_USERS.item, _iam_users(accounts, options, now, key_spool, totals), description=IAM_USERS.description
        )
        key_spool.seek(0)
        writer.add_jsonl(
            IAM_ACCESS_KEYS.item, (json.loads(line) for line in key_spool), description=IAM_ACCESS_KEYS.description
        )
    writer.add_jsonl(PASSWORD_POLICIES.item, map(_password_policy, accounts), description=PASSWORD_POLICIES.description)
    writer.add_jsonl(
        S3_ACCOUNT_PUBLIC_ACCESS.item,
        (account.s3_account_public_access() for account in accounts),
        description=S3_ACCOUNT_PUBLIC_ACCESS.description,
    )
    writer.add_jsonl(S3_BUCKETS.item, _s3_buckets(accounts, totals), description=S3_BUCKETS.description)
    logging_trails: collections.Counter[str] = collections.Counter()
    writer.add_jsonl(
        CLOUDTRAIL_TRAILS.item, _trails(accounts, totals, logging_trails), description=CLOUDTRAIL_TRAILS.description
    )
    writer.add_jsonl(KMS_KEYS.item, _kms_keys(accounts, totals), description=KMS_KEYS.description)
    writer.add_jsonl(SECURITY_GROUPS.item, _security_groups(accounts, totals), description=SECURITY_GROUPS.description)
    writer.add_jsonl(RDS_INSTANCES.item, _rds_instances(accounts, totals), description=RDS_INSTANCES.description)
    writer.add_jsonl(RDS_CLUSTERS.item, _rds_clusters(accounts, totals), description=RDS_CLUSTERS.description)
    writer.add_jsonl(CONFIG_RECORDERS.item, _config_recorders(accounts), description=CONFIG_RECORDERS.description)
    # Last: each account's record counts the logging trails it sees.
    writer.add_jsonl(
        ACCOUNTS.item,
        (account.record(logging_trails[account.account_id]) for account in accounts),
        description=ACCOUNTS.description,
    )
    for dataset in DATASETS:
        if dataset.total:
            writer.report_total(dataset.total, totals[dataset.total])


def control_expectations(dataset: Dataset) -> list[Any]:
    """The controls each dataset evidences; a failing record is a finding, not a failed run."""
    for candidate, controls in _CONTROLS:
        if dataset is candidate:
            return controls(_Checks(dataset))
    return []


class _Checks:
    """The shapes this collector's control checks take, bound to one dataset.

    Validation imports Great Expectations only when it judges, so extraction never pays for it.
    """

    def __init__(self, dataset: Dataset) -> None:
        from soc2_evidence.validation.gx import control, expectations

        self.dataset, self._control, self.expectations = dataset, control, expectations

    def expect(self, expectation: Any, name: str, description: str, **kwargs: Any) -> Any:
        remediation = REMEDIATION[f"{self.dataset.name}.{name}"]
        return self._control(expectation, self.dataset, name, description, remediation=remediation, **kwargs)

    def equals(self, column: str, value: Any, name: str, description: str, **condition: Any) -> Any:
        return self.expect(
            self.expectations.ExpectColumnValuesToBeInSet,
            name,
            description,
            column=column,
            value_set=[value],
            **condition,
        )

    def at_least(self, column: str, minimum: int, name: str, description: str) -> Any:
        return self.expect(
            self.expectations.ExpectColumnValuesToBeBetween, name, description, column=column, min_value=minimum
        )

    def at_most(self, column: str, maximum: int, name: str, description: str) -> Any:
        return self.expect(
            self.expectations.ExpectColumnValuesToBeBetween, name, description, column=column, max_value=maximum
        )

    def within(self, column: str, limit: str, name: str, description: str, **condition: Any) -> Any:
        """``column`` is at most the record's own ``limit`` column (a configured threshold, kept in the evidence)."""
        return self.expect(
            self.expectations.ExpectColumnPairValuesAToBeGreaterThanB,
            name,
            description,
            column_A=limit,
            column_B=column,
            or_equal=True,
            **condition,
        )

    def pairs(self, column_a: str, column_b: str, allowed: list[tuple[bool, bool]], name: str, description: str) -> Any:
        """Only the ``allowed`` (column_a, column_b) combinations may occur."""
        return self.expect(
            self.expectations.ExpectColumnPairValuesToBeInSet,
            name,
            description,
            column_A=column_a,
            column_B=column_b,
            value_pairs_set=allowed,
        )

    def unless_blocked(self, column: str, name: str, description: str) -> Any:
        """``column`` may be true only where all four public access block settings are in effect (bucket or account)."""
        return self.pairs(
            "effective_public_access_block_all",
            column,
            [(True, True), (True, False), (False, False)],
            name,
            description,
        )


# The one line an owner follows to close each check's finding.
REMEDIATION = {
    "aws.accounts.root_mfa": "Sign in as the root user and assign an MFA device (IAM > Security credentials)",
    "aws.accounts.no_root_access_keys": "Delete the root user's access keys; use IAM roles instead",
    "aws.accounts.logging_trail": "Create a multi-region CloudTrail trail (or an organization trail) and start logging",
    "aws.iam_users.console_users_have_mfa": "Assign an MFA device to the user, or remove the console password",
    "aws.iam_users.admin_access_allow_listed": (
        "Remove the administrator grant named in admin_grants, or add the user to admin_allow_list after review"
    ),
    "aws.iam_users.console_used_recently": "Delete the unused console password (login profile) of the user",
    "aws.iam_access_keys.rotated": "Create a new key, move its users to it, then deactivate and delete the old key",
    "aws.iam_access_keys.used_recently": "Deactivate and delete the unused access key",
    "aws.iam_password_policies.present": "Set an account password policy (aws iam update-account-password-policy)",
    "aws.iam_password_policies.minimum_length": f"Set MinimumPasswordLength to {MIN_PASSWORD_LENGTH} or more",
    "aws.iam_password_policies.requires_symbols": "Set RequireSymbols in the account password policy",
    "aws.iam_password_policies.requires_numbers": "Set RequireNumbers in the account password policy",
    "aws.iam_password_policies.requires_uppercase": "Set RequireUppercaseCharacters in the account password policy",
    "aws.iam_password_policies.requires_lowercase": "Set RequireLowercaseCharacters in the account password policy",
    "aws.iam_password_policies.reuse_prevention": f"Set PasswordReusePrevention to {MIN_PASSWORD_REUSE_PREVENTION}",
    "aws.iam_password_policies.expires_passwords": f"Set MaxPasswordAge to {MAX_PASSWORD_AGE_DAYS} days or fewer",
    "aws.iam_password_policies.max_age": f"Lower MaxPasswordAge to {MAX_PASSWORD_AGE_DAYS} days or fewer",
    "aws.s3_buckets.not_public_by_policy": "Remove the public statement from the bucket policy, or turn on Block "
    "Public Access",
    "aws.s3_buckets.not_public_by_acl": "Remove the AllUsers/AuthenticatedUsers grants from the bucket ACL, or turn "
    "on Block Public Access",
    "aws.s3_buckets.default_encryption": "Set default encryption (SSE-S3 or SSE-KMS) on the bucket",
    "aws.s3_buckets.bucket_blocks_public_access": "Turn on all four Block Public Access settings of the bucket",
    "aws.s3_buckets.versioning": "Enable versioning on the bucket",
    "aws.s3_buckets.mfa_delete": "As the root user with MFA, enable MFA delete in the bucket's versioning",
    "aws.s3_buckets.access_logging": "Enable server access logging to a separate log bucket",
    "aws.s3_account_public_access.account_blocks_public_access": (
        "Turn on all four account-level S3 Block Public Access settings"
    ),
    "aws.cloudtrail_trails.multi_region": "Make the trail multi-region (IsMultiRegionTrail)",
    "aws.cloudtrail_trails.log_file_validation": "Enable log file validation on the trail",
    "aws.cloudtrail_trails.logging": "Start logging on the trail, or delete the trail if it is not needed",
    "aws.kms_keys.rotation_enabled": "Enable automatic key rotation",
    "aws.kms_keys.not_public": "Replace Principal '*' in the key policy with named principals, or add a condition",
    "aws.ec2_security_groups.no_admin_ports_open_to_world": (
        "Restrict SSH/RDP to known addresses, or use Session Manager instead of open ports"
    ),
    "aws.ec2_security_groups.no_db_ports_open_to_world": (
        "Remove the 0.0.0.0/0 or ::/0 rule on the database port; allow only the application's security group"
    ),
    "aws.ec2_security_groups.default_group_restricts_all_traffic": (
        "Remove every inbound and outbound rule of the default group; use dedicated groups"
    ),
    "aws.rds_instances.encrypted": "Restore an encrypted copy of the instance from an encrypted snapshot",
    "aws.rds_instances.not_public": "Set PubliclyAccessible to false (and close world-open groups listed)",
    "aws.rds_instances.backup_retention": f"Set BackupRetentionPeriod to {MIN_BACKUP_RETENTION_DAYS} days or more",
    "aws.rds_instances.deletion_protection": "Enable deletion protection on the instance",
    "aws.rds_clusters.encrypted": "Restore an encrypted cluster from an encrypted snapshot",
    "aws.rds_clusters.backup_retention": f"Set BackupRetentionPeriod to {MIN_BACKUP_RETENTION_DAYS} days or more",
    "aws.rds_clusters.deletion_protection": "Enable deletion protection on the cluster",
    "aws.config_recorders.recording": "Create an AWS Config recorder and delivery channel in the region, and start it",
}


def _account_controls(checks: _Checks) -> list[Any]:
    """The root user can do anything and cannot be restricted: MFA on, no access keys. And each account
    must have its audit log: a multi-region trail that is logging (an account with none is a finding)."""
    return [
        checks.equals("root_mfa_enabled", True, "root_mfa", "The root user has MFA"),
        checks.equals("root_access_keys_present", False, "no_root_access_keys", "The root user has no access keys"),
        checks.at_least(
            "logging_trails", 1, "logging_trail", "Every account has a multi-region CloudTrail trail that is logging"
        ),
    ]


def _iam_user_controls(checks: _Checks) -> list[Any]:
    """Console sign-in needs MFA, administrator access must be granted on purpose (the allow-list), and a
    console login nobody uses is access nobody reviews."""
    from great_expectations.expectations.row_conditions import Column

    return [
        checks.equals(
            "mfa_enabled",
            True,
            "console_users_have_mfa",
            "Every IAM user who can sign in to the console has an MFA device",
            row_condition=Column("console_access") == True,  # noqa: E712 - builds a GX condition
        ),
        checks.pairs(
            "admin",
            "admin_allow_listed",
            [(False, False), (False, True), (True, True)],
            "admin_access_allow_listed",
            "Only allow-listed IAM users have administrator access (AdministratorAccess or Action * on *)",
        ),
        checks.within(
            "console_unused_days",
            "max_unused_days",
            "console_used_recently",
            "No console login goes unused longer than max_unused_days (since created, if never used)",
            row_condition=Column("console_access") == True,  # noqa: E712 - builds a GX condition
        ),
    ]


def _access_key_controls(checks: _Checks) -> list[Any]:
    """Long-lived keys leak: active ones must be rotated within the configured age (inactive ones cannot be used)."""
    from great_expectations.expectations.row_conditions import Column

    return [
        checks.expect(
            checks.expectations.ExpectColumnPairValuesAToBeGreaterThanB,
            "rotated",
            "No active access key is older than max_access_key_age_days",
            column_A="max_age_days",
            column_B="age_days",
            or_equal=True,
            row_condition=Column("status") == "Active",
        ),
        checks.within(
            "unused_days",
            "max_unused_days",
            "used_recently",
            "No active access key goes unused longer than max_unused_days (since created, if never used)",
            row_condition=Column("status") == "Active",
        ),
    ]


def _password_policy_controls(checks: _Checks) -> list[Any]:
    """Without a policy IAM accepts any password; length, complexity, reuse and age follow CIS AWS Foundations
    (each is its own check, as in Prowler, so a finding names the one setting to change)."""
    from great_expectations.expectations.row_conditions import Column

    complexity = [
        checks.equals(f"require_{kind}", True, f"requires_{kind}", f"The password policy requires {kind}")
        for kind in ("symbols", "numbers", "uppercase", "lowercase")
    ]
    return [
        checks.equals("present", True, "present", "Every account sets an IAM password policy"),
        checks.at_least(
            "minimum_length",
            MIN_PASSWORD_LENGTH,
            "minimum_length",
            f"The password policy requires at least {MIN_PASSWORD_LENGTH} characters",
        ),
        *complexity,
        checks.at_least(
            "reuse_prevention",
            MIN_PASSWORD_REUSE_PREVENTION,
            "reuse_prevention",
            f"The password policy prevents reuse of the last {MIN_PASSWORD_REUSE_PREVENTION} passwords",
        ),
        checks.equals(
            "expire_passwords",
            True,
            "expires_passwords",
            "The password policy makes passwords expire",
            row_condition=Column("present") == True,  # noqa: E712 - builds a GX condition
        ),
        checks.at_most(
            "max_age_days",
            MAX_PASSWORD_AGE_DAYS,
            "max_age",
            f"Passwords expire within {MAX_PASSWORD_AGE_DAYS} days",
        ),
    ]


def _s3_bucket_controls(checks: _Checks) -> list[Any]:
    """A public policy or ACL is only a finding where Block Public Access does not neutralise it; data at rest
    is encrypted."""
    return [
        checks.unless_blocked(
            "policy_is_public",
            "not_public_by_policy",
            "No bucket policy makes a bucket public, unless all four Block Public Access settings are on "
            "(each at bucket or account level)",
        ),
        checks.unless_blocked(
            "acl_is_public",
            "not_public_by_acl",
            "No bucket ACL grants access to everyone, unless all four Block Public Access settings are on "
            "(each at bucket or account level)",
        ),
        checks.expect(
            checks.expectations.ExpectColumnValuesToNotBeNull,
            "default_encryption",
            "Every bucket encrypts new objects by default",
            column="default_encryption",
        ),
        checks.equals(
            "public_access_block_all",
            True,
            "bucket_blocks_public_access",
            "Every bucket turns on all four settings of its own Block Public Access",
        ),
        checks.equals("versioning", "Enabled", "versioning", "Every bucket keeps object versions"),
        checks.equals("mfa_delete", True, "mfa_delete", "Deleting versions needs MFA (MFA delete)"),
        checks.equals("access_logging", True, "access_logging", "Every bucket logs access (server access logging)"),
    ]


def _s3_account_controls(checks: _Checks) -> list[Any]:
    """The account-level block protects buckets created later, not only the ones listed tonight."""
    return [
        checks.equals(
            "all_blocked",
            True,
            "account_blocks_public_access",
            "Every account turns on all four settings of account-level S3 Block Public Access",
        )
    ]


def _trail_controls(checks: _Checks) -> list[Any]:
    """The audit log itself must be complete (every region), tamper-evident (digests) and running."""
    return [
        checks.equals("multi_region", True, "multi_region", "Trails record every region"),
        checks.equals("log_file_validation", True, "log_file_validation", "Trails sign their log files (digest files)"),
        checks.equals("is_logging", True, "logging", "Trails are logging"),
    ]


def _kms_key_controls(checks: _Checks) -> list[Any]:
    """Rotation limits how much data one key version protects."""
    return [
        checks.equals("rotation_enabled", True, "rotation_enabled", "Customer-managed keys rotate yearly"),
        checks.equals(
            "policy_allows_everyone",
            False,
            "not_public",
            "No key policy allows any principal ('*') without a condition",
        ),
    ]


def _security_group_controls(checks: _Checks) -> list[Any]:
    """SSH and RDP open to the internet are the classic way in."""
    return [
        checks.equals(
            "admin_ports_open_to_world",
            False,
            "no_admin_ports_open_to_world",
            f"No security group opens ports {', '.join(map(str, ADMIN_PORTS))} (or all traffic) to the internet",
        ),
        checks.equals(
            "db_ports_open_to_world",
            False,
            "no_db_ports_open_to_world",
            f"No security group opens database ports {', '.join(map(str, DB_PORTS))} to the internet",
        ),
        checks.pairs(
            "default_group",
            "allows_traffic",
            [(False, False), (False, True), (True, False)],
            "default_group_restricts_all_traffic",
            "The default security group of every VPC has no inbound or outbound rule",
        ),
    ]


def _rds_instance_controls(checks: _Checks) -> list[Any]:
    """Databases hold the data SOC 2 protects: encrypted, private, backed up and not deletable by mistake.

    An Aurora member's encryption, backups and deletion protection are its cluster's, judged in aws.rds_clusters.
    """
    from great_expectations.expectations.row_conditions import Column

    standalone = Column("cluster_id").is_null()
    return [
        checks.equals(
            "storage_encrypted", True, "encrypted", "DB instances encrypt their storage", row_condition=standalone
        ),
        checks.equals("publicly_accessible", False, "not_public", "DB instances are not publicly accessible"),
        checks.expect(
            checks.expectations.ExpectColumnValuesToBeBetween,
            "backup_retention",
            f"DB instances keep automated backups at least {MIN_BACKUP_RETENTION_DAYS} days",
            column="backup_retention_days",
            min_value=MIN_BACKUP_RETENTION_DAYS,
            row_condition=standalone,
        ),
        checks.equals(
            "deletion_protection",
            True,
            "deletion_protection",
            "DB instances have deletion protection",
            row_condition=standalone,
        ),
    ]


def _rds_cluster_controls(checks: _Checks) -> list[Any]:
    """Aurora keeps backups and deletion protection at the cluster: the same controls as an instance."""
    return [
        checks.equals("storage_encrypted", True, "encrypted", "DB clusters encrypt their storage"),
        checks.at_least(
            "backup_retention_days",
            MIN_BACKUP_RETENTION_DAYS,
            "backup_retention",
            f"DB clusters keep automated backups at least {MIN_BACKUP_RETENTION_DAYS} days",
        ),
        checks.equals("deletion_protection", True, "deletion_protection", "DB clusters have deletion protection"),
    ]


def _config_recorder_controls(checks: _Checks) -> list[Any]:
    """Change management needs configuration history, so AWS Config must record in every region read."""
    return [checks.equals("recording", True, "recording", "AWS Config records configuration changes in every region")]


_CONTROLS: tuple[tuple[Dataset, Callable[[_Checks], list[Any]]], ...] = (
    (ACCOUNTS, _account_controls),
    (IAM_USERS, _iam_user_controls),
    (IAM_ACCESS_KEYS, _access_key_controls),
    (PASSWORD_POLICIES, _password_policy_controls),
    (S3_BUCKETS, _s3_bucket_controls),
    (S3_ACCOUNT_PUBLIC_ACCESS, _s3_account_controls),
    (CLOUDTRAIL_TRAILS, _trail_controls),
    (KMS_KEYS, _kms_key_controls),
    (SECURITY_GROUPS, _security_group_controls),
    (RDS_INSTANCES, _rds_instance_controls),
    (RDS_CLUSTERS, _rds_cluster_controls),
    (CONFIG_RECORDERS, _config_recorder_controls),
)


# --- options and sessions -----------------------------------------------------------------------


@dataclass
class _Account:
    source: str
    spec: Account
    aws: AwsSession
    home_region: str
    identity_arn: str = ""
    _clients: dict[tuple[str, str], AwsApi] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _s3_public_access: dict[str, Any] | None = None
    _s3_public_access_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def account_id(self) -> str:
        return self.spec.account_id

    @classmethod
    def open(cls, source: str, spec: Account, base: AwsSession) -> _Account:
        """Assume the account's role, then check who we are and that every region exists and is enabled."""
        home = _home_region(source, spec, base.session)
        aws = base
        if spec.role_arn:
            aws = base.with_session(_assumed_role_session(cls(source, spec, base, home).api("sts"), spec, home))
        account = cls(source, spec, aws, home)
        identity = account.api("sts").call("get_caller_identity")
        if identity["Account"] != spec.account_id:
            raise CollectorError(
                f"source {source}: account {spec.account_id}: the credentials are for account {identity['Account']} "
                f"({identity['Arn']}), not {spec.account_id}"
            )
        account.identity_arn = identity["Arn"]
        available = {
            region["RegionName"]: region.get("OptInStatus", "opt-in-not-required")
            for region in account.api("ec2").call("describe_regions", AllRegions=True)["Regions"]
        }
        for region in spec.regions:
            if region not in available:
                raise CollectorError(
                    f"source {source}: account {spec.account_id} region {region}: ec2 DescribeRegions does not "
                    f"list {region!r}: no such region"
                )
            if available[region] == "not-opted-in":
                raise CollectorError(
                    f"source {source}: account {spec.account_id} region {region}: ec2 DescribeRegions says the "
                    "account has not opted in to this region"
                )
        return account

    def api(self, service: str, region: str | None = None) -> AwsApi:
        """A client for ``service`` in ``region`` (default: the home region), made once; clients are thread-safe."""
        region = region or self.home_region
        with self._lock:
            if (service, region) not in self._clients:
                client = self.aws.client(service, region)
                self._clients[(service, region)] = AwsApi(self.source, self.account_id, region, client)
            return self._clients[(service, region)]

    def s3_account_public_access(self) -> dict[str, Any]:
        """The account-level S3 Block Public Access (S3 Control), read once per account and kept for its buckets."""
        with self._s3_public_access_lock:
            if self._s3_public_access is None:
                self._s3_public_access = _s3_account_public_access(self)
            return self._s3_public_access

    def record(self, logging_trails: int) -> dict[str, Any]:
        """The account, with its root user's MFA and access keys as IAM's account summary counts them
        (the same facts as the credential report's ``<root_account>`` row, without generating a report)."""
        summary = self.api("iam").call("get_account_summary")["SummaryMap"]
        return {
            "account_id": self.account_id,
            "role_arn": self.spec.role_arn,
            "identity_arn": self.identity_arn,
            "home_region": self.home_region,
            "regions": list(self.spec.regions),
            "root_mfa_enabled": bool(summary.get("AccountMFAEnabled")),
            "root_access_keys_present": bool(summary.get("AccountAccessKeysPresent")),
            "logging_trails": logging_trails,
        }


def _home_region(source: str, spec: Account, session: Any) -> str:
    """The first configured region botocore knows: it serves STS, IAM, S3 listing and the region check."""
    known = {
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("ec2", partition_name=partition)
    }
    for region in spec.regions:
        if region in known:
            return region
    raise CollectorError(
        f"source {source}: account {spec.account_id}: none of the regions {', '.join(spec.regions)} is an AWS region"
    )


def _assumed_role_session(sts: AwsApi, spec: Account, region: str) -> Any:
    """A session on the account's role, assumed once and refreshed by botocore before the credentials expire."""
    import boto3
    import botocore.session
    from botocore.credentials import RefreshableCredentials

    params = {"RoleArn": spec.role_arn, "RoleSessionName": ROLE_SESSION_NAME}
    if spec.external_id:
        params["ExternalId"] = spec.external_id

    def fetch() -> dict[str, str]:
        credentials = sts.call("assume_role", **params)["Credentials"]
        return {
            "access_key": credentials["AccessKeyId"],
            "secret_key": credentials["SecretAccessKey"],
            "token": credentials["SessionToken"],
            "expiry_time": credentials["Expiration"].isoformat(),
        }

    credentials = RefreshableCredentials.create_from_metadata(
        metadata=fetch(), refresh_using=fetch, method="sts-assume-role"
    )
    core = botocore.session.get_session()
    core._credentials = credentials  # botocore has no public setter; Airflow's AWS hook does the same
    return boto3.session.Session(botocore_session=core, region_name=region)


def _ordered_map(function: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
    """``map`` over a thread pool, in order, with a bounded window: memory stays flat, latency overlaps."""
    pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="soc2-evidence-aws")
    window: collections.deque[Future[Any]] = collections.deque()
    try:
        for item in items:
            window.append(pool.submit(function, item))
            if len(window) >= 2 * WORKERS:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _time(value: datetime | None) -> str | None:
    return rfc3339(value) if value is not None else None


# --- IAM ------------------------------------------------------------------------------------------------


def _iam_users(
    accounts: list[_Account], options: Options, now: datetime, key_spool: Any, totals: collections.Counter[str]
) -> Iterator[dict[str, Any]]:
    """Users, with their access keys written to ``key_spool`` (JSON Lines) on the way: one pass, flat memory.

    GetAccountAuthorizationDetails pages users with their groups and attached and inline
    policies, so each user costs four more calls (password last used, login profile, MFA, keys).
    """
    for account in accounts:
        iam = account.api("iam")
        describe = functools.partial(_user_record, account, iam, _AdminPolicies.load(iam), options, now)
        users = iam.items("get_account_authorization_details", "UserDetailList", Filter=["User"])
        for record, keys in _ordered_map(describe, _counted(users, totals, "iam_users")):
            totals["iam_access_keys"] += len(keys)
            for key in keys:
                key_spool.write(json.dumps(key, sort_keys=True).encode("utf-8") + b"\n")
            yield record


def _counted(items: Iterable[Any], totals: collections.Counter[str], total: str) -> Iterator[Any]:
    """``items``, counted into ``totals[total]`` as the paginator delivers them."""
    for item in items:
        totals[total] += 1
        yield item


def _user_record(
    account: _Account, iam: AwsApi, admin: _AdminPolicies, options: Options, now: datetime, user: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    name = user["UserName"]
    details = iam.call("get_user", UserName=name)["User"]
    console = iam.call("get_login_profile", absent=("NoSuchEntity",), UserName=name) is not None
    mfa_devices = sum(1 for _ in iam.items("list_mfa_devices", "MFADevices", UserName=name))
    groups = list(user.get("GroupList", []))
    grants = [
        f"policy:{policy['PolicyArn']}"
        for policy in user.get("AttachedManagedPolicies", [])
        if admin.managed(policy["PolicyArn"])
    ]
    grants += [
        f"inline:{policy['PolicyName']}"
        for policy in user.get("UserPolicyList", [])
        if _grants_everything(policy["PolicyDocument"])
    ]
    grants += [f"group:{group}" for group in groups if admin.group(group)]
    keys = [
        _access_key_record(account, iam, options, now, key)
        for key in iam.items("list_access_keys", "AccessKeyMetadata", UserName=name)
    ]
    password_last_used = details.get("PasswordLastUsed")
    record = {
        "account_id": account.account_id,
        "user_name": name,
        "arn": user["Arn"],
        "created": _time(user["CreateDate"]),
        "console_access": console,
        "password_last_used": _time(password_last_used),
        "console_unused_days": (now - (password_last_used or user["CreateDate"])).days if console else None,
        "max_unused_days": options.max_unused_days,
        "mfa_devices": mfa_devices,
        "mfa_enabled": mfa_devices > 0,
        "access_keys": len(keys),
        "groups": groups,
        "admin": bool(grants),
        "admin_grants": grants,
        "admin_allow_listed": user["Arn"] in options.admin_allow_list,
    }
    return record, keys


def _access_key_record(
    account: _Account, iam: AwsApi, options: Options, now: datetime, key: dict[str, Any]
) -> dict[str, Any]:
    """A key by fingerprint: key ids are identifiers, not secrets, but they look like one to every scanner."""
    key_id = key["AccessKeyId"]
    last_used = iam.call("get_access_key_last_used", AccessKeyId=key_id).get("AccessKeyLastUsed", {})
    service = last_used.get("ServiceName")
    last_used_date = last_used.get("LastUsedDate")
    return {
        "account_id": account.account_id,
        "user_name": key["UserName"],
        "key_fingerprint": hashlib.sha256(key_id.encode("ascii")).hexdigest()[:16],
        "key_id_suffix": key_id[-4:],
        "status": key["Status"],
        "created": _time(key["CreateDate"]),
        "age_days": (now - key["CreateDate"]).days,
        "max_age_days": options.max_access_key_age_days,
        "last_used_date": _time(last_used_date),
        "last_used_service": service if service and service != "N/A" else None,
        "unused_days": (now - (last_used_date or key["CreateDate"])).days,
        "max_unused_days": options.max_unused_days,
    }


class _AdminPolicies:
    """Which managed policies and groups of an account grant administrator access.

    Read once per account from GetAccountAuthorizationDetails (groups and customer-managed
    policies; an account has few of either, however many users it has). AWS-managed policies
    are fixed and known by ARN; a policy or group created after the listing is looked up on its own.
    """

    def __init__(self, iam: AwsApi, policies: dict[str, bool], groups: dict[str, bool]) -> None:
        self.iam, self._policies, self._groups = iam, policies, groups
        self._lock = threading.Lock()

    @classmethod
    def load(cls, iam: AwsApi) -> _AdminPolicies:
        policies: dict[str, bool] = {}
        group_policies: dict[str, list[str]] = {}
        groups: dict[str, bool] = {}
        for page in iam.pages("get_account_authorization_details", Filter=["Group", "LocalManagedPolicy"]):
            for policy in page.get("Policies", []):
                default = next((v for v in policy.get("PolicyVersionList", []) if v.get("IsDefaultVersion")), None)
                policies[policy["Arn"]] = bool(default and _grants_everything(default["Document"]))
            for group in page.get("GroupDetailList", []):
                name = group["GroupName"]
                group_policies[name] = [policy["PolicyArn"] for policy in group.get("AttachedManagedPolicies", [])]
                groups[name] = any(_grants_everything(p["PolicyDocument"]) for p in group.get("GroupPolicyList", []))
        admin = cls(iam, policies, {})
        # Groups are resolved after the listing: a page may name a policy that a later page describes.
        admin._groups = {
            name: inline or any(admin.managed(arn) for arn in group_policies[name]) for name, inline in groups.items()
        }
        return admin

    def managed(self, arn: str) -> bool:
        if AWS_MANAGED_POLICY.match(arn):
            # Of the AWS-managed policies only AdministratorAccess allows * on *.
            return bool(ADMINISTRATOR_ACCESS.match(arn))
        with self._lock:
            known = self._policies.get(arn)
        if known is None:
            version = self.iam.call("get_policy", PolicyArn=arn)["Policy"]["DefaultVersionId"]
            document = self.iam.call("get_policy_version", PolicyArn=arn, VersionId=version)
            known = _grants_everything(document["PolicyVersion"]["Document"])
            with self._lock:
                self._policies[arn] = known
        return known

    def group(self, name: str) -> bool:
        with self._lock:
            known = self._groups.get(name)
        if known is None:  # created after the listing
            attached = self.iam.items("list_attached_group_policies", "AttachedPolicies", GroupName=name)
            inline = self.iam.items("list_group_policies", "PolicyNames", GroupName=name)
            known = any(self.managed(policy["PolicyArn"]) for policy in attached) or any(
                _grants_everything(
                    self.iam.call("get_group_policy", GroupName=name, PolicyName=policy)["PolicyDocument"]
                )
                for policy in inline
            )
            with self._lock:
                self._groups[name] = known
        return known


def _grants_everything(document: Any) -> bool:
    """An Allow statement with Action ``*`` on Resource ``*``, conditions or not (a condition is no least privilege)."""
    if isinstance(document, str):
        document = json.loads(document)
    statements = document.get("Statement", []) if isinstance(document, dict) else []
    if isinstance(statements, dict):
        statements = [statements]

    def listed(value: Any) -> list[Any]:
        return value if isinstance(value, list) else [value]

    return any(
        isinstance(statement, dict)
        and statement.get("Effect") == "Allow"
        and "*" in listed(statement.get("Action"))
        and "*" in listed(statement.get("Resource"))
        for statement in statements
    )


def _password_policy(account: _Account) -> dict[str, Any]:
    response = account.api("iam").call("get_account_password_policy", absent=("NoSuchEntity",))
    policy = response["PasswordPolicy"] if response else None
    fields = {
        "minimum_length": "MinimumPasswordLength",
        "require_symbols": "RequireSymbols",
        "require_numbers": "RequireNumbers",
        "require_uppercase": "RequireUppercaseCharacters",
        "require_lowercase": "RequireLowercaseCharacters",
        "allow_users_to_change": "AllowUsersToChangePassword",
        "expire_passwords": "ExpirePasswords",
        "max_age_days": "MaxPasswordAge",
        "reuse_prevention": "PasswordReusePrevention",
        "hard_expiry": "HardExpiry",
    }
    record = {
        "account_id": account.account_id,
        "present": policy is not None,
        **{column: policy.get(name) if policy else None for column, name in fields.items()},
    }
    if policy is not None and record["reuse_prevention"] is None:
        record["reuse_prevention"] = 0  # IAM omits the field when no previous password is remembered
    return record


# --- S3 --------------------------------------------------------------------------------------------------


# The four Block Public Access settings: column name and API field.
_PUBLIC_ACCESS_BLOCK_FLAGS = {
    "block_public_acls": "BlockPublicAcls",
    "ignore_public_acls": "IgnorePublicAcls",
    "block_public_policy": "BlockPublicPolicy",
    "restrict_public_buckets": "RestrictPublicBuckets",
}


def _s3_account_public_access(account: _Account) -> dict[str, Any]:
    """Account-level Block Public Access: S3 applies each setting to every bucket, on top of the bucket's own."""
    response = account.api("s3control").call(
        "get_public_access_block", absent=("NoSuchPublicAccessBlockConfiguration",), AccountId=account.account_id
    )
    config = response["PublicAccessBlockConfiguration"] if response else {}
    flags = {column: bool(config.get(name)) for column, name in _PUBLIC_ACCESS_BLOCK_FLAGS.items()}
    return {
        "account_id": account.account_id,
        "configured": response is not None,
        **flags,
        "all_blocked": all(flags.values()),
    }


def _s3_buckets(accounts: list[_Account], totals: collections.Counter[str]) -> Iterator[dict[str, Any]]:
    """Every bucket of each account (S3 lists them account-wide), read through a client in its own region."""
    for account in accounts:
        account_block = account.s3_account_public_access()
        buckets = _counted(account.api("s3").items("list_buckets", "Buckets"), totals, "s3_buckets")
        yield from _ordered_map(functools.partial(_bucket_record, account, account_block), buckets)


def _bucket_record(account: _Account, account_block: dict[str, Any], bucket: dict[str, Any]) -> dict[str, Any]:
    """A bucket's own settings, and the Block Public Access in effect: each setting on at bucket or account level."""
    name = bucket["Name"]
    location = account.api("s3").call("get_bucket_location", Bucket=name).get("LocationConstraint")
    region = {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(location, location)
    s3 = account.api("s3", region)
    block = s3.call("get_public_access_block", absent=("NoSuchPublicAccessBlockConfiguration",), Bucket=name)
    block_config = block["PublicAccessBlockConfiguration"] if block else {}
    flags = {column: bool(block_config.get(name)) for column, name in _PUBLIC_ACCESS_BLOCK_FLAGS.items()}
    policy_status = s3.call("get_bucket_policy_status", absent=("NoSuchBucketPolicy",), Bucket=name)
    grants = s3.call("get_bucket_acl", Bucket=name).get("Grants", [])
    encryption = s3.call(
        "get_bucket_encryption", absent=("ServerSideEncryptionConfigurationNotFoundError",), Bucket=name
    )
    rules = encryption["ServerSideEncryptionConfiguration"]["Rules"] if encryption else []
    default = rules[0].get("ApplyServerSideEncryptionByDefault", {}) if rules else {}
    lock = s3.call("get_object_lock_configuration", absent=("ObjectLockConfigurationNotFoundError",), Bucket=name)
    versioning = s3.call("get_bucket_versioning", Bucket=name)
    return {
        "account_id": account.account_id,
        "bucket": name,
        "region": region,
        "created": _time(bucket.get("CreationDate")),
        **flags,
        "public_access_block_all": all(flags.values()),
        **{f"account_{column}": account_block[column] for column in _PUBLIC_ACCESS_BLOCK_FLAGS},
        "effective_public_access_block_all": all(
            flags[column] or account_block[column] for column in _PUBLIC_ACCESS_BLOCK_FLAGS
        ),
        "policy_is_public": bool(policy_status and policy_status["PolicyStatus"].get("IsPublic")),
        "acl_is_public": any(grant.get("Grantee", {}).get("URI") in PUBLIC_GRANTEES for grant in grants),
        "default_encryption": default.get("SSEAlgorithm"),
        "versioning": versioning.get("Status", "Disabled"),
        "mfa_delete": versioning.get("MFADelete") == "Enabled",
        "access_logging": "LoggingEnabled" in s3.call("get_bucket_logging", Bucket=name),
        "object_lock": bool(lock and lock["ObjectLockConfiguration"].get("ObjectLockEnabled") == "Enabled"),
    }


# --- regional services --------------------------------------------------------------------------------------


def _regions(accounts: list[_Account]) -> Iterator[tuple[_Account, str]]:
    for account in accounts:
        for region in account.spec.regions:
            yield account, region


def _trails(
    accounts: list[_Account], totals: collections.Counter[str], logging_trails: collections.Counter[str]
) -> Iterator[dict[str, Any]]:
    """Each trail once, read in its home region: ListTrails shows multi-region trails in every region.

    ``logging_trails`` counts, per account, the multi-region trails that are logging which the
    account sees (an organization trail counts for every member account that lists it).
    """
    seen: dict[str, bool] = {}
    visible: set[tuple[str, str]] = set()
    for account, region in _regions(accounts):
        for trail in account.api("cloudtrail", region).items("list_trails", "Trails"):
            arn = trail["TrailARN"]
            if arn in seen:
                if seen[arn] and (account.account_id, arn) not in visible:
                    logging_trails[account.account_id] += 1
                visible.add((account.account_id, arn))
                continue
            totals["cloudtrail_trails"] += 1
            home = account.api("cloudtrail", trail.get("HomeRegion") or region)
            details = home.call("get_trail", Name=arn)["Trail"]
            status = home.call("get_trail_status", Name=arn)
            seen[arn] = bool(details.get("IsMultiRegionTrail")) and bool(status.get("IsLogging"))
            visible.add((account.account_id, arn))
            logging_trails[account.account_id] += seen[arn]
            yield {
                "account_id": account.account_id,
                "region": home.region,
                "name": details["Name"],
                "arn": arn,
                "multi_region": bool(details.get("IsMultiRegionTrail")),
                "organization_trail": bool(details.get("IsOrganizationTrail")),
                "log_file_validation": bool(details.get("LogFileValidationEnabled")),
                "is_logging": bool(status.get("IsLogging")),
                "s3_bucket": details.get("S3BucketName"),
                "kms_key_id": details.get("KmsKeyId"),
            }


def _kms_keys(accounts: list[_Account], totals: collections.Counter[str]) -> Iterator[dict[str, Any]]:
    """Customer-managed keys only: AWS-managed keys rotate on AWS's schedule and are not the customer's control."""
    for account, region in _regions(accounts):
        kms = account.api("kms", region)
        for record in _ordered_map(functools.partial(_kms_key_record, account, kms), kms.items("list_keys", "Keys")):
            if record is not None:
                totals["kms_keys"] += 1
                yield record


def _kms_key_record(account: _Account, kms: AwsApi, key: dict[str, Any]) -> dict[str, Any] | None:
    metadata = kms.call("describe_key", KeyId=key["KeyId"])["KeyMetadata"]
    if metadata.get("KeyManager") != "CUSTOMER":
        return None
    rotatable = (
        metadata.get("KeySpec") == "SYMMETRIC_DEFAULT"
        and metadata.get("Origin") == "AWS_KMS"
        and metadata.get("KeyState") in ("Enabled", "Disabled")
    )
    rotation = kms.call("get_key_rotation_status", KeyId=key["KeyId"]) if rotatable else None
    policy = kms.call("get_key_policy", KeyId=key["KeyId"], PolicyName="default")["Policy"]
    return {
        "account_id": account.account_id,
        "region": kms.region,
        "key_id": metadata["KeyId"],
        "arn": metadata["Arn"],
        "created": _time(metadata.get("CreationDate")),
        "key_state": metadata["KeyState"],
        "key_spec": metadata.get("KeySpec"),
        "key_usage": metadata.get("KeyUsage"),
        "origin": metadata.get("Origin"),
        "rotation_enabled": bool(rotation["KeyRotationEnabled"]) if rotation else None,
        "policy_allows_everyone": _allows_everyone(policy),
    }


def _allows_everyone(document: Any) -> bool:
    """An Allow statement for principal ``*`` (or ``{"AWS": "*"}``) without a condition: anyone may use the key."""
    if isinstance(document, str):
        document = json.loads(document)
    statements = document.get("Statement", []) if isinstance(document, dict) else []
    if isinstance(statements, dict):
        statements = [statements]

    def everyone(principal: Any) -> bool:
        if isinstance(principal, dict):
            principal = principal.get("AWS")
        return principal == "*" or (isinstance(principal, list) and "*" in principal)

    return any(
        isinstance(statement, dict)
        and statement.get("Effect") == "Allow"
        and everyone(statement.get("Principal"))
        and not statement.get("Condition")
        for statement in statements
    )


def _security_groups(accounts: list[_Account], totals: collections.Counter[str]) -> Iterator[dict[str, Any]]:
    for account, region in _regions(accounts):
        for group in account.api("ec2", region).items("describe_security_groups", "SecurityGroups"):
            totals["ec2_security_groups"] += 1
            rules = list(_world_open_rules(group.get("IpPermissions", [])))
            ports = sorted({port for port in ADMIN_PORTS for rule in rules if _opens(rule, port)})
            db_ports = sorted({port for port in DB_PORTS for rule in rules if _opens(rule, port)})
            yield {
                "account_id": account.account_id,
                "region": region,
                "group_id": group["GroupId"],
                "group_name": group.get("GroupName"),
                "vpc_id": group.get("VpcId"),
                "tags": _tags(group.get("Tags")),
                "world_open_rules": rules,
                "open_admin_ports": ports,
                "admin_ports_open_to_world": bool(ports),
                "open_db_ports": db_ports,
                "db_ports_open_to_world": bool(db_ports),
                "default_group": group.get("GroupName") == "default",
                "allows_traffic": bool(group.get("IpPermissions") or group.get("IpPermissionsEgress")),
            }


def _world_open_rules(permissions: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for permission in permissions:
        cidrs = [entry.get("CidrIp") for entry in permission.get("IpRanges", [])]
        cidrs += [entry.get("CidrIpv6") for entry in permission.get("Ipv6Ranges", [])]
        for cidr in cidrs:
            if cidr in WORLD_CIDRS:
                yield {
                    "protocol": str(permission.get("IpProtocol")),
                    "from_port": permission.get("FromPort"),
                    "to_port": permission.get("ToPort"),
                    "cidr": cidr,
                }


def _opens(rule: dict[str, Any], port: int) -> bool:
    """All traffic (protocol -1) opens every port; TCP and UDP rules open their port range."""
    if rule["protocol"] == "-1":
        return True
    if rule["protocol"] not in ("tcp", "udp", "6", "17"):
        return False
    low, high = rule["from_port"], rule["to_port"]
    return low is None or high is None or low <= port <= high


def _tags(tags: list[dict[str, str]] | None) -> dict[str, str]:
    return {tag["Key"]: tag.get("Value", "") for tag in tags or []}


def _rds_instances(accounts: list[_Account], totals: collections.Counter[str]) -> Iterator[dict[str, Any]]:
    """Instances, with the attached security groups that open the instance's port to the internet.

    AWS reaches a publicly accessible instance only through such a group and a public subnet (one
    whose route table sends 0.0.0.0/0 or ::/0 to an internet gateway); the flag, the groups and
    the subnets are all reported, so neither reading is chosen for the auditor.
    """
    for account, region in _regions(accounts):
        for instance in account.api("rds", region).items("describe_db_instances", "DBInstances"):
            totals["rds_instances"] += 1
            groups = [group["VpcSecurityGroupId"] for group in instance.get("VpcSecurityGroups", [])]
            subnet_group = instance.get("DBSubnetGroup", {})
            subnets = [subnet["SubnetIdentifier"] for subnet in subnet_group.get("Subnets", [])]
            port = instance.get("Endpoint", {}).get("Port") or instance.get("DbInstancePort") or None
            yield {
                "account_id": account.account_id,
                "region": region,
                "db_instance_id": instance["DBInstanceIdentifier"],
                "arn": instance["DBInstanceArn"],
                "engine": instance.get("Engine"),
                "engine_version": instance.get("EngineVersion"),
                "instance_class": instance.get("DBInstanceClass"),
                "status": instance.get("DBInstanceStatus"),
                "storage_encrypted": bool(instance.get("StorageEncrypted")),
                "publicly_accessible": bool(instance.get("PubliclyAccessible")),
                "backup_retention_days": int(instance.get("BackupRetentionPeriod", 0)),
                "deletion_protection": bool(instance.get("DeletionProtection")),
                "multi_az": bool(instance.get("MultiAZ")),
                "cluster_id": instance.get("DBClusterIdentifier"),
                "port": port,
                "security_group_ids": groups,
                "security_groups_open_to_world": _groups_open_to_world(account.api("ec2", region), groups, port),
                "subnet_group": subnet_group.get("DBSubnetGroupName"),
                "public_subnets": _public_subnets(account.api("ec2", region), subnet_group.get("VpcId"), subnets),
                "tags": _tags(instance.get("TagList")),
            }


def _groups_open_to_world(ec2: AwsApi, group_ids: list[str], port: int | None) -> list[str]:
    """The groups among ``group_ids`` with an inbound rule open to the internet on ``port`` (any port if unknown)."""
    if not group_ids:
        return []
    open_groups = []
    # One call, not a paginator: AWS refuses MaxResults together with GroupIds.
    for group in ec2.call("describe_security_groups", GroupIds=group_ids)["SecurityGroups"]:
        rules = list(_world_open_rules(group.get("IpPermissions", [])))
        if any(port is None or _opens(rule, port) for rule in rules):
            open_groups.append(group["GroupId"])
    return sorted(open_groups)


def _public_subnets(ec2: AwsApi, vpc_id: str | None, subnet_ids: list[str]) -> list[str]:
    """The subnets among ``subnet_ids`` whose route table (their own, else the VPC's main one) sends the
    internet (0.0.0.0/0 or ::/0) to an internet gateway."""
    if not vpc_id or not subnet_ids:
        return []
    tables = list(ec2.items("describe_route_tables", "RouteTables", Filters=[{"Name": "vpc-id", "Values": [vpc_id]}]))

    def to_internet(table: dict[str, Any]) -> bool:
        return any(
            str(route.get("GatewayId", "")).startswith("igw-")
            and (
                route.get("DestinationCidrBlock") in WORLD_CIDRS or route.get("DestinationIpv6CidrBlock") in WORLD_CIDRS
            )
            for route in table.get("Routes", [])
        )

    explicit = {
        association["SubnetId"]: table
        for table in tables
        for association in table.get("Associations", [])
        if association.get("SubnetId")
    }
    main = next(
        (table for table in tables if any(association.get("Main") for association in table.get("Associations", []))),
        None,
    )
    return sorted(
        subnet for subnet in subnet_ids if (table := explicit.get(subnet, main)) is not None and to_internet(table)
    )


def _rds_clusters(accounts: list[_Account], totals: collections.Counter[str]) -> Iterator[dict[str, Any]]:
    """DB clusters (Aurora, Multi-AZ clusters): their backups and deletion protection are the cluster's own."""
    for account, region in _regions(accounts):
        for cluster in account.api("rds", region).items("describe_db_clusters", "DBClusters"):
            totals["rds_clusters"] += 1
            yield {
                "account_id": account.account_id,
                "region": region,
                "cluster_id": cluster["DBClusterIdentifier"],
                "arn": cluster["DBClusterArn"],
                "engine": cluster.get("Engine"),
                "engine_version": cluster.get("EngineVersion"),
                "status": cluster.get("Status"),
                "members": sorted(member["DBInstanceIdentifier"] for member in cluster.get("DBClusterMembers", [])),
                "storage_encrypted": bool(cluster.get("StorageEncrypted")),
                "backup_retention_days": int(cluster.get("BackupRetentionPeriod", 0)),
                "deletion_protection": bool(cluster.get("DeletionProtection")),
                "multi_az": bool(cluster.get("MultiAZ")),
                "tags": _tags(cluster.get("TagList")),
            }


def _config_recorders(accounts: list[_Account]) -> Iterator[dict[str, Any]]:
    """One record per account and region: AWS allows one customer-managed recorder per region."""
    for account, region in _regions(accounts):
        config = account.api("config", region)
        recorders = config.call("describe_configuration_recorders").get("ConfigurationRecorders", [])
        statuses = {
            status["name"]: status
            for status in config.call("describe_configuration_recorder_status").get("ConfigurationRecordersStatus", [])
        }
        if not recorders:
            yield {
                "account_id": account.account_id,
                "region": region,
                "present": False,
                "name": None,
                "recording": False,
                "last_status": None,
                "all_supported": None,
                "include_global_resource_types": None,
            }
        for recorder in recorders:
            status = statuses.get(recorder["name"], {})
            group = recorder.get("recordingGroup", {})
            yield {
                "account_id": account.account_id,
                "region": region,
                "present": True,
                "name": recorder["name"],
                "recording": bool(status.get("recording")),
                "last_status": status.get("lastStatus"),
                "all_supported": group.get("allSupported"),
                "include_global_resource_types": group.get("includeGlobalResourceTypes"),
            }
