"""The aws collector against a moto server over HTTP, end to end: extract_source, then GX validation.

Two accounts are seeded through STS assume_role (moto switches account by role ARN), so each
test module sees only its own resources on the shared server. moto gaps, named where they bite:

- moto stamps access keys with the server's current time and cannot backdate them: the snapshot's
  injected clock (``extract_source(now=...)``) reads KEY_CLOCK_SHIFT after the newest key's
  creation time as moto reports it, so key ages are exact and no test reads its own clock.
- moto's assume_role succeeds for any role, existing or not: a role that cannot be assumed is
  provoked with moto's IAM enforcement (``/moto-api/reset-auth``) and an explicit Deny on
  sts:AssumeRole, on a moto server of this module's own.
- moto cannot throttle: a loopback proxy in front of moto answers the first IAM
  GetAccountAuthorizationDetails call with the documented Throttling error, so botocore's own
  (adaptive) retries are what is tested; exhausting all ten attempts would take about a minute
  of back-off and is not.
- moto has no AWS-managed policies unless loaded at start-up: AdministratorAccess is recognised
  by ARN without a call and is not seeded; customer-managed, inline and group grants are.
- moto answers every list in one page, so the paginators' second pages are not exercised here.
- account-level S3 Block Public Access: moto 5.2.5 implements S3 Control GetPublicAccessBlock and
  PutPublicAccessBlock per account over HTTP (NoSuchPublicAccessBlockConfiguration when none is
  set), but botocore sends every S3 Control call to ``{AccountId}.{endpoint host}``, a custom
  endpoint included, and no name under 127.0.0.1 resolves. ``local_services.s3_control_env``
  bridges that: boto3's standard ``HTTP_PROXY`` is the moto server itself, which takes the
  collector's real request, account-prefixed host and all, as a proxied request.
- moto does not enforce Block Public Access when a bucket policy or ACL is put (AWS refuses a
  public one while BlockPublicPolicy or BlockPublicAcls is on at either level): public policies
  and ACLs are seeded before the settings that would block them, the order AWS accepts too.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
import threading
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import boto3
import botocore.config
import pytest

from conftest import collected_after, validate_config_bundle, write_pipeline_config
from soc2_evidence.collectors import aws, load_config, source_config
from soc2_evidence.collectors.support.aws import AwsApi
from soc2_evidence.core.credentials import Credentials
from soc2_evidence.core.datasets import load_records
from soc2_evidence.core.errors import CollectorError, ConfigError, TransientCollectorError, is_transient
from soc2_evidence.core.evidence import RunContext
from soc2_evidence.core.staging import BUNDLE_FILE, Bundle
from soc2_evidence.demo.local_services import DUMMY_AWS_ENV, moto_server, s3_control_env
from soc2_evidence.orchestration.pipeline import extract_source

SOURCE = "aws-prod"
KEY = b"k"
REGIONS = ["us-east-1", "eu-west-1"]
KEY_CLOCK_SHIFT = timedelta(days=100)
MAX_KEY_AGE = 90

CANARY_SECRET_KEY = "CanaryAwsSecretKey" + "0" * 21 + "2"  # 40 characters, as an AWS secret key
CANARY_TAG_PASSWORD = "CanaryTagPassword0001"
CANARY_POLICY_SECRET = "CanaryInlinePolicySecret0001"
CANARY_DB_PASSWORD = "CanaryDbMasterPassword0001"


def new_account_id() -> str:
    return str(10**11 + uuid.uuid4().int % (9 * 10**11))


def role_arn(account_id: str) -> str:
    return f"arn:aws:iam::{account_id}:role/evidence-reader"


def session_for(account_id: str) -> boto3.session.Session:
    """A session in ``account_id``: moto switches account on the role ARN's account."""
    credentials = boto3.client("sts").assume_role(RoleArn=role_arn(account_id), RoleSessionName="seed")["Credentials"]
    return boto3.session.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name="us-east-1",
    )


def write_config(directory: Path, **options):
    source = {"name": SOURCE, "kind": "aws", "family": "config", **options}
    return load_config(write_pipeline_config(directory, [source], path=directory / "config" / "evidence.yaml"))


NIGHT = datetime(2026, 11, 25, 2, tzinfo=UTC)


def new_run(logical_date: datetime = NIGHT) -> RunContext:
    return RunContext("evidence_config_snapshot", f"manual__{uuid.uuid4().hex[:8]}", logical_date)


def extract(config, run: RunContext | None = None, **kwargs) -> dict:
    """``extract_source`` of the aws source on a clock an hour after the run's logical date."""
    run = run or new_run()
    kwargs.setdefault("now", collected_after(run))
    return extract_source(config, SOURCE, run, **kwargs)


def no_bundle(config) -> bool:
    return not list(config.staging_dir.rglob(BUNDLE_FILE))


@pytest.fixture(scope="module")
def moto_env(s3_endpoint):
    """Every AWS service of boto3's standard chain pointed at the session's moto server."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            **DUMMY_AWS_ENV,
            **s3_control_env(s3_endpoint),
            "AWS_ENDPOINT_URL": s3_endpoint,
            "AWS_ENDPOINT_URL_S3": s3_endpoint,
        }.items():
            patch.setenv(name, value)
        for name in ("EVIDENCE_STORE", "EVIDENCE_CONFIG", "EVIDENCE_STAGING", "AWS_PROFILE"):
            patch.delenv(name, raising=False)
        yield s3_endpoint


# --- seeding ----------------------------------------------------------------------------------------


def admin_policy() -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})


def seed_iam(session, account_id: str) -> dict:
    iam = session.client("iam")
    for name in ("alice", "bob", "carol", "dave", "mallory", "ops", "break-glass"):
        iam.create_user(UserName=name, Tags=[{"Key": "note", "Value": f"aws_secret_access_key={CANARY_SECRET_KEY}"}])
    for name in ("alice", "bob"):
        iam.create_login_profile(UserName=name, Password="Initial-Passw0rd!")
    device = iam.create_virtual_mfa_device(VirtualMFADeviceName="alice")["VirtualMFADevice"]
    iam.enable_mfa_device(
        UserName="alice",
        SerialNumber=device["SerialNumber"],
        AuthenticationCode1="123456",
        AuthenticationCode2="654321",
    )
    secrets = [iam.create_access_key(UserName=name)["AccessKey"] for name in ("carol", "dave")]
    iam.update_access_key(UserName="dave", AccessKeyId=secrets[1]["AccessKeyId"], Status="Inactive")
    # Not admin, and carrying a secret that must never be staged (policies are read, not archived).
    iam.put_user_policy(
        UserName="carol",
        PolicyName="read-reports",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "s3:GetObject",
                        "Resource": "*",
                        "Condition": {"StringEquals": {"aws:PrincipalTag/secret": CANARY_POLICY_SECRET}},
                    }
                ],
            }
        ),
    )
    full_admin = iam.create_policy(PolicyName="FullAdmin", PolicyDocument=admin_policy())["Policy"]["Arn"]
    read_only = iam.create_policy(
        PolicyName="ReadOnly",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": {"Effect": "Allow", "Action": ["s3:Get*", "*"], "Resource": "arn:aws:s3:::reports/*"},
            }
        ),
    )["Policy"]["Arn"]
    iam.attach_user_policy(UserName="mallory", PolicyArn=full_admin)
    iam.attach_user_policy(UserName="bob", PolicyArn=read_only)
    iam.put_user_policy(UserName="ops", PolicyName="everything", PolicyDocument=admin_policy())
    iam.create_group(GroupName="Admins")
    iam.attach_group_policy(GroupName="Admins", PolicyArn=full_admin)
    iam.create_group(GroupName="Auditors")
    iam.put_group_policy(
        GroupName="Auditors",
        PolicyName="audit",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:Get*", "Resource": "*"}]}
        ),
    )
    iam.add_user_to_group(GroupName="Admins", UserName="break-glass")
    iam.add_user_to_group(GroupName="Auditors", UserName="alice")
    return {
        "secrets": [key["SecretAccessKey"] for key in secrets],
        "key_ids": {"carol": secrets[0]["AccessKeyId"], "dave": secrets[1]["AccessKeyId"]},
        "allow_list": [f"arn:aws:iam::{account_id}:user/break-glass"],
        "keys_created": max(key["CreateDate"] for key in secrets).astimezone(UTC),  # moto's clock
    }


def public_policy(bucket: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}
            ],
        }
    )


def seed_s3(session, account_id: str) -> dict[str, str]:
    s3 = session.client("s3")
    names = {kind: f"{kind}-{account_id}" for kind in ("public", "blocked", "acl", "plain", "logs")}
    for kind, name in names.items():
        if kind == "plain":
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        else:
            s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=kind == "logs")
        if kind != "plain":
            s3.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]
                },
            )
    s3.put_bucket_policy(Bucket=names["public"], Policy=public_policy(names["public"]))
    s3.put_bucket_policy(Bucket=names["blocked"], Policy=public_policy(names["blocked"]))
    s3.put_public_access_block(
        Bucket=names["blocked"],
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_acl(Bucket=names["acl"], ACL="public-read")
    s3.put_bucket_versioning(Bucket=names["plain"], VersioningConfiguration={"Status": "Suspended"})
    return names


def seed_regional(session, account_id: str, buckets: dict[str, str]) -> dict:
    east, west = "us-east-1", "eu-west-1"
    trail = session.client("cloudtrail", region_name=east)
    trail.create_trail(
        Name="org-trail", S3BucketName=buckets["logs"], IsMultiRegionTrail=True, EnableLogFileValidation=True
    )
    trail.start_logging(Name="org-trail")
    session.client("cloudtrail", region_name=west).create_trail(Name="no-validation", S3BucketName=buckets["logs"])

    rotated = session.client("kms", region_name=east).create_key()["KeyMetadata"]
    session.client("kms", region_name=east).enable_key_rotation(KeyId=rotated["KeyId"])
    unrotated = session.client("kms", region_name=west).create_key()["KeyMetadata"]
    signing = session.client("kms", region_name=west).create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")

    ec2 = session.client("ec2", region_name=east)
    ssh = ec2.create_security_group(
        GroupName="ssh-open",
        Description="bastion",
        TagSpecifications=[
            {
                "ResourceType": "security-group",
                "Tags": [
                    {"Key": "db_password", "Value": CANARY_TAG_PASSWORD},
                    {"Key": "note", "Value": f"aws_secret_access_key={CANARY_SECRET_KEY}"},
                    {"Key": "team", "Value": "platform"},
                ],
            }
        ],
    )["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=ssh,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )
    web = ec2.create_security_group(GroupName="web", Description="https")["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=web,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
        ],
    )
    # A VPC whose main route table sends the internet to a gateway; one subnet has a private table of its own.
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    public_subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.1.{index}.0/24", AvailabilityZone=f"us-east-1{zone}")["Subnet"][
            "SubnetId"
        ]
        for index, zone in ((1, "a"), (2, "b"))
    ]
    private_subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.1.3.0/24", AvailabilityZone="us-east-1c")["Subnet"][
        "SubnetId"
    ]
    gateway = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=vpc)
    [main_table] = ec2.describe_route_tables(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "association.main", "Values": ["true"]}]
    )["RouteTables"]
    ec2.create_route(RouteTableId=main_table["RouteTableId"], DestinationCidrBlock="0.0.0.0/0", GatewayId=gateway)
    private_table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.associate_route_table(RouteTableId=private_table, SubnetId=private_subnet)
    database = ec2.create_security_group(GroupName="db-open", Description="postgres", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=database,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )
    private_database = ec2.create_security_group(GroupName="db-private", Description="postgres", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=private_database,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}],
    )
    kms = session.client("kms", region_name=east)
    public_key = kms.create_key(Policy=key_policy(account_id, condition=None))["KeyMetadata"]
    kms.enable_key_rotation(KeyId=public_key["KeyId"])
    conditional_key = kms.create_key(Policy=key_policy(account_id, condition=True))["KeyMetadata"]
    kms.enable_key_rotation(KeyId=conditional_key["KeyId"])
    west_ec2 = session.client("ec2", region_name=west)
    everything = west_ec2.create_security_group(GroupName="all-v6", Description="debug")["GroupId"]
    west_ec2.authorize_security_group_ingress(
        GroupId=everything, IpPermissions=[{"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}]
    )

    rds = session.client("rds", region_name=east)
    rds.create_db_subnet_group(
        DBSubnetGroupName="orders-subnets",
        DBSubnetGroupDescription="orders",
        SubnetIds=[*public_subnets, private_subnet],
    )
    rds.create_db_instance(
        DBInstanceIdentifier="orders-db",
        DBSubnetGroupName="orders-subnets",
        VpcSecurityGroupIds=[database, private_database],
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        AllocatedStorage=20,
        MasterUsername="orders",
        MasterUserPassword=CANARY_DB_PASSWORD,
        PubliclyAccessible=True,
        Tags=[{"Key": "admin_password", "Value": CANARY_TAG_PASSWORD}],
    )
    rds.create_db_instance(
        DBInstanceIdentifier="ledger-db",
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        AllocatedStorage=20,
        MasterUsername="ledger",
        MasterUserPassword=CANARY_DB_PASSWORD,
        StorageEncrypted=True,
        KmsKeyId=rotated["Arn"],
        BackupRetentionPeriod=7,
        DeletionProtection=True,
        PubliclyAccessible=False,
    )

    for cluster, compliant in (("reports-cluster", False), ("ledger-cluster", True)):
        rds.create_db_cluster(
            DBClusterIdentifier=cluster,
            Engine="aurora-postgresql",
            MasterUsername="admin_user",
            MasterUserPassword=CANARY_DB_PASSWORD,
            StorageEncrypted=compliant,
            BackupRetentionPeriod=7 if compliant else 1,
            DeletionProtection=compliant,
        )
    rds.create_db_instance(
        DBInstanceIdentifier="reports-1",
        DBClusterIdentifier="reports-cluster",
        Engine="aurora-postgresql",
        DBInstanceClass="db.r6g.large",
        PubliclyAccessible=False,
    )

    config = session.client("config", region_name=east)
    config.put_configuration_recorder(
        ConfigurationRecorder={
            "name": "default",
            "roleARN": f"arn:aws:iam::{account_id}:role/config",
            "recordingGroup": {"allSupported": True, "includeGlobalResourceTypes": True},
        }
    )
    config.put_delivery_channel(DeliveryChannel={"name": "default", "s3BucketName": buckets["logs"]})
    config.start_configuration_recorder(ConfigurationRecorderName="default")
    return {
        "ssh_group": ssh,
        "web_group": web,
        "all_group": everything,
        "db_group": database,
        "private_db_group": private_database,
        "public_subnets": sorted(public_subnets),
        "public_key": public_key["Arn"],
        "conditional_key": conditional_key["Arn"],
        "unrotated_key": unrotated["Arn"],
        "signing_key": signing["KeyMetadata"]["Arn"],
        "rotated_key": rotated["Arn"],
    }


def key_policy(account_id: str, condition: bool | None) -> str:
    """A key policy granting every principal use of the key: open to anyone, or only within the account."""
    statement = {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:Decrypt", "Resource": "*"}
    if condition:
        statement["Condition"] = {"StringEquals": {"kms:CallerAccount": account_id}}
    root = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"}, "Action": "kms:*"}
    return json.dumps({"Version": "2012-10-17", "Statement": [root | {"Resource": "*"}, statement]})


ALL_BLOCKED = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


def put_account_block(session, account_id: str, **settings: bool) -> None:
    """Account-level S3 Block Public Access (S3 Control), through s3_control_env."""
    session.client("s3control").put_public_access_block(AccountId=account_id, PublicAccessBlockConfiguration=settings)


def encrypted_bucket(s3, name: str) -> None:
    s3.create_bucket(Bucket=name)
    s3.put_bucket_encryption(
        Bucket=name,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )


def seed_second_account(session, account_id: str) -> None:
    """A tidy account: a strong password policy, encrypted buckets, Config recording, and all of account-level
    Block Public Access on, so its bucket with a public policy and no bucket-level block is not exposed."""
    session.client("iam").update_account_password_policy(
        MinimumPasswordLength=14, RequireSymbols=True, PasswordReusePrevention=24
    )
    s3 = session.client("s3")
    encrypted_bucket(s3, f"private-{account_id}")
    encrypted_bucket(s3, f"open-{account_id}")
    s3.put_bucket_policy(Bucket=f"open-{account_id}", Policy=public_policy(f"open-{account_id}"))
    put_account_block(session, account_id, **ALL_BLOCKED)
    config = session.client("config")
    config.put_configuration_recorder(
        ConfigurationRecorder={"name": "default", "roleARN": f"arn:aws:iam::{account_id}:role/config"}
    )
    config.put_delivery_channel(DeliveryChannel={"name": "default", "s3BucketName": f"private-{account_id}"})
    config.start_configuration_recorder(ConfigurationRecorderName="default")


# --- the snapshot -----------------------------------------------------------------------------------


def validate(config, run: RunContext, bundle: Bundle) -> tuple[dict, list[dict]]:
    """GX validation of one staged bundle, as the validate task runs it: its summary and its findings."""
    return validate_config_bundle(config, run, bundle, SOURCE)


@pytest.fixture(scope="module")
def snapshot(moto_env, tmp_path_factory):
    """Two seeded accounts, extracted like the extract task does, then validated with GX."""
    first, second = new_account_id(), new_account_id()
    session = session_for(first)
    iam = seed_iam(session, first)
    buckets = seed_s3(session, first)
    regional = seed_regional(session, first, buckets)
    seed_second_account(session_for(second), second)

    directory = tmp_path_factory.mktemp("aws-snapshot")
    config = write_config(
        directory,
        accounts=[
            {"id": first, "role_arn": role_arn(first), "regions": REGIONS},
            {"id": second, "role_arn": role_arn(second), "regions": ["us-east-1"]},
        ],
        max_access_key_age_days=MAX_KEY_AGE,
        admin_allow_list=iam["allow_list"],
    )
    now = iam["keys_created"] + KEY_CLOCK_SHIFT  # moto cannot backdate keys: move the clock instead
    run = new_run(now - timedelta(hours=1))
    account_block_reads = []

    def read_account_block(account):
        account_block_reads.append(account.account_id)
        return read_once(account)

    read_once = aws._s3_account_public_access
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(aws, "_s3_account_public_access", read_account_block)
        summary = extract(config, run, redaction_key=KEY, now=lambda: now)
    bundle = Bundle.load(summary["bundle"])
    validation, findings = validate(config, run, bundle)
    default_groups = [
        (account, region, group["GroupId"])
        for account, region in ((first, "us-east-1"), (first, "eu-west-1"), (second, "us-east-1"))
        for group in session_for(account)
        .client("ec2", region_name=region)
        .describe_security_groups(Filters=[{"Name": "group-name", "Values": ["default"]}])["SecurityGroups"]
    ]
    return SimpleNamespace(
        default_groups=default_groups,
        now=now,
        first=first,
        second=second,
        iam=iam,
        buckets=buckets,
        regional=regional,
        config=config,
        summary=summary,
        bundle=bundle,
        account_block_reads=account_block_reads,
        validation=validation,
        findings=findings,
    )


def records(snapshot, dataset) -> list[dict]:
    staged = next(staged for staged in snapshot.bundle.items if staged.item.name == dataset.item)
    return load_records(dataset, staged.path)


def by(rows: list[dict], *columns: str) -> dict:
    return {tuple(row[column] for column in columns) if len(columns) > 1 else row[columns[0]]: row for row in rows}


def test_every_dataset_is_staged_with_every_column_and_its_reported_total(snapshot):
    assert {staged.item.name for staged in snapshot.bundle.items} == {dataset.item for dataset in aws.DATASETS}
    for dataset in aws.DATASETS:
        rows = records(snapshot, dataset)
        assert rows, dataset.name
        for row in rows:
            assert set(row) == set(dataset.columns), dataset.name
        if dataset.total:
            assert snapshot.bundle.reported_totals[dataset.total] == len(rows), dataset.name


def test_accounts_name_the_identity_that_read_them(snapshot):
    accounts = by(records(snapshot, aws.ACCOUNTS), "account_id")
    assert accounts[snapshot.first] == {
        "account_id": snapshot.first,
        "role_arn": role_arn(snapshot.first),
        "identity_arn": f"arn:aws:sts::{snapshot.first}:assumed-role/evidence-reader/soc2-evidence",
        "home_region": "us-east-1",
        "regions": REGIONS,
        "root_mfa_enabled": False,  # moto's root user has no MFA
        "root_access_keys_present": False,
        "logging_trails": 1,  # org-trail; no-validation is neither multi-region nor logging
    }
    assert accounts[snapshot.second]["regions"] == ["us-east-1"]
    assert accounts[snapshot.second]["logging_trails"] == 0


def test_iam_users(snapshot):
    users = by(records(snapshot, aws.IAM_USERS), "account_id", "user_name")
    assert {name for account, name in users if account == snapshot.first} == {
        "alice",
        "bob",
        "carol",
        "dave",
        "mallory",
        "ops",
        "break-glass",
    }
    assert not [key for key in users if key[0] == snapshot.second]
    alice = users[(snapshot.first, "alice")]
    assert alice["console_access"] is True and alice["mfa_devices"] == 1 and alice["mfa_enabled"] is True
    assert alice["groups"] == ["Auditors"] and alice["admin"] is False and alice["admin_grants"] == []
    assert alice["arn"] == f"arn:aws:iam::{snapshot.first}:user/alice"
    assert alice["password_last_used"] is None
    assert datetime.fromisoformat(alice["created"].replace("Z", "+00:00")) <= snapshot.now - KEY_CLOCK_SHIFT
    bob = users[(snapshot.first, "bob")]
    assert (bob["console_access"], bob["mfa_enabled"], bob["admin"]) == (True, False, False)  # ReadOnly is no admin
    carol = users[(snapshot.first, "carol")]
    assert (carol["console_access"], carol["access_keys"], carol["admin"]) == (False, 1, False)
    full_admin = f"arn:aws:iam::{snapshot.first}:policy/FullAdmin"
    assert users[(snapshot.first, "mallory")]["admin_grants"] == [f"policy:{full_admin}"]
    assert users[(snapshot.first, "ops")]["admin_grants"] == ["inline:everything"]
    glass = users[(snapshot.first, "break-glass")]
    assert (glass["admin_grants"], glass["admin_allow_listed"]) == (["group:Admins"], True)
    assert users[(snapshot.first, "mallory")]["admin_allow_listed"] is False


def test_access_keys_are_identified_by_fingerprint_never_by_id(snapshot):
    keys = by(records(snapshot, aws.IAM_ACCESS_KEYS), "user_name")
    assert set(keys) == {"carol", "dave"}
    for user, key_id in snapshot.iam["key_ids"].items():
        key = keys[user]
        assert key["key_fingerprint"] == hashlib.sha256(key_id.encode()).hexdigest()[:16]
        assert key["key_id_suffix"] == key_id[-4:]
        assert key["age_days"] == KEY_CLOCK_SHIFT.days  # 100 days after the newest key was made
        assert key["max_age_days"] == MAX_KEY_AGE
        assert key["last_used_date"] is None and key["last_used_service"] is None
    assert (keys["carol"]["status"], keys["dave"]["status"]) == ("Active", "Inactive")
    staged = b"".join(staged.path.read_bytes() for staged in snapshot.bundle.items)
    for key_id in snapshot.iam["key_ids"].values():
        assert key_id.encode() not in staged
    assert "aws_access_key_id" not in snapshot.summary["redactions"]  # nothing key-like was even staged


def test_password_policies_one_record_per_account(snapshot):
    policies = by(records(snapshot, aws.PASSWORD_POLICIES), "account_id")
    absent = policies[snapshot.first]
    assert absent["present"] is False
    assert all(value is None for column, value in absent.items() if column not in ("account_id", "present"))
    present = policies[snapshot.second]
    assert (present["present"], present["minimum_length"], present["require_symbols"]) == (True, 14, True)
    assert present["reuse_prevention"] == 24


def test_s3_buckets(snapshot):
    buckets = by(records(snapshot, aws.S3_BUCKETS), "bucket")
    names = snapshot.buckets
    assert set(buckets) == {*names.values(), f"private-{snapshot.second}", f"open-{snapshot.second}"}
    public = buckets[names["public"]]
    assert (public["policy_is_public"], public["public_access_block_all"], public["acl_is_public"]) == (
        True,
        False,
        False,
    )
    assert public["effective_public_access_block_all"] is False
    blocked = buckets[names["blocked"]]
    assert blocked["public_access_block_all"] is True and blocked["block_public_policy"] is True
    assert blocked["effective_public_access_block_all"] is True  # the bucket's own block is enough
    for column in ACCOUNT_COLUMNS:  # the first account sets no account-level block
        assert blocked[column] is False and public[column] is False
    assert buckets[names["acl"]]["acl_is_public"] is True
    plain = buckets[names["plain"]]
    assert (plain["region"], plain["default_encryption"], plain["versioning"]) == ("eu-west-1", None, "Suspended")
    logs = buckets[names["logs"]]
    assert (logs["object_lock"], logs["versioning"], logs["default_encryption"]) == (True, "Enabled", "aws:kms")
    assert buckets[f"private-{snapshot.second}"]["account_id"] == snapshot.second


ACCOUNT_COLUMNS = (
    "account_block_public_acls",
    "account_ignore_public_acls",
    "account_block_public_policy",
    "account_restrict_public_buckets",
)


# The checks of public exposure; each bucket's own block, versioning and logging are judged apart.
EXPOSURE_CHECKS = (
    "aws.s3_account_public_access.account_blocks_public_access",
    "aws.s3_buckets.not_public_by_policy",
    "aws.s3_buckets.not_public_by_acl",
    "aws.s3_buckets.default_encryption",
)


def s3_findings(findings: list[dict], account: str) -> set[tuple[str, str | None]]:
    """(check, bucket) of the public-exposure and encryption findings of ``account``; bucket None for the
    account's own."""
    return {
        (finding["check"], finding["record_key"].get("bucket"))
        for finding in findings
        if finding["check"] in EXPOSURE_CHECKS and finding["record_key"].get("account_id") == account
    }


def test_account_level_block_public_access_is_read_once_per_account(snapshot):
    """The collector's S3 Control GetPublicAccessBlock, one per account however many buckets it has."""
    assert sorted(snapshot.account_block_reads) == sorted((snapshot.first, snapshot.second))
    assert len(snapshot.buckets) == 5  # the first account's buckets did not each read it


def test_account_level_block_public_access_covers_a_public_bucket(snapshot):
    """All four settings on at account level: a bucket with a public policy and no bucket-level block
    is not exposed (no finding), and the account's setting is evidenced on its own."""
    second = snapshot.second
    accounts = by(records(snapshot, aws.S3_ACCOUNT_PUBLIC_ACCESS), "account_id")
    assert accounts[second] == {
        "account_id": second,
        "configured": True,
        "block_public_acls": True,
        "ignore_public_acls": True,
        "block_public_policy": True,
        "restrict_public_buckets": True,
        "all_blocked": True,
    }
    buckets = by(records(snapshot, aws.S3_BUCKETS), "bucket")
    for name in (f"open-{second}", f"private-{second}"):
        bucket = buckets[name]
        assert bucket["public_access_block_all"] is False  # bucket level: nothing set
        assert all(bucket[column] is True for column in ACCOUNT_COLUMNS)
        assert bucket["effective_public_access_block_all"] is True
    assert buckets[f"open-{second}"]["policy_is_public"] is True
    assert s3_findings(snapshot.findings, second) == set()


def test_no_account_level_block_public_access(snapshot):
    """No account-level configuration: recorded as configured=false, and a finding; a bucket made public by
    its policy without a bucket-level block is a finding too, while one blocked at bucket level is not."""
    first, names = snapshot.first, snapshot.buckets
    accounts = by(records(snapshot, aws.S3_ACCOUNT_PUBLIC_ACCESS), "account_id")
    assert accounts[first] == {
        "account_id": first,
        "configured": False,
        "block_public_acls": False,
        "ignore_public_acls": False,
        "block_public_policy": False,
        "restrict_public_buckets": False,
        "all_blocked": False,
    }
    found = s3_findings(snapshot.findings, first)
    assert ("aws.s3_account_public_access.account_blocks_public_access", None) in found
    assert ("aws.s3_buckets.not_public_by_policy", names["public"]) in found
    assert ("aws.s3_buckets.not_public_by_acl", names["acl"]) in found
    assert not [finding for finding in found if finding[1] == names["blocked"]]
    [finding] = [
        finding
        for finding in snapshot.findings
        if finding["check"] == "aws.s3_account_public_access.account_blocks_public_access"
    ]
    assert finding["record_key"] == {"account_id": first}
    assert set(finding["controls"]) == {"CC6.1", "CC6.6"}


def test_block_public_access_in_effect_is_each_setting_at_either_level(moto_env, tmp_path):
    """The account blocks public ACLs, a bucket blocks public policies: together all four are in effect.
    A bucket with a public policy and no block of its own has only the account's two: exposed."""
    account = new_account_id()
    session = session_for(account)
    s3 = session.client("s3")
    for name in (f"partial-{account}", f"policy-only-{account}"):
        encrypted_bucket(s3, name)
        s3.put_bucket_policy(Bucket=name, Policy=public_policy(name))
    s3.put_public_access_block(
        Bucket=f"partial-{account}",
        PublicAccessBlockConfiguration={"BlockPublicPolicy": True, "RestrictPublicBuckets": True},
    )
    put_account_block(session, account, BlockPublicAcls=True, IgnorePublicAcls=True)
    config = write_config(tmp_path, accounts=[{"id": account, "role_arn": role_arn(account), "regions": ["us-east-1"]}])
    run = new_run()
    bundle = Bundle.load(extract(config, run)["bundle"])
    _, findings = validate(config, run, bundle)

    [account_record] = load_records(aws.S3_ACCOUNT_PUBLIC_ACCESS, bundle_item(bundle, aws.S3_ACCOUNT_PUBLIC_ACCESS))
    assert (account_record["configured"], account_record["all_blocked"]) == (True, False)
    assert (account_record["block_public_acls"], account_record["ignore_public_acls"]) == (True, True)
    assert (account_record["block_public_policy"], account_record["restrict_public_buckets"]) == (False, False)
    buckets = by(load_records(aws.S3_BUCKETS, bundle_item(bundle, aws.S3_BUCKETS)), "bucket")
    partial = buckets[f"partial-{account}"]
    assert (partial["block_public_acls"], partial["ignore_public_acls"]) == (False, False)
    assert (partial["block_public_policy"], partial["restrict_public_buckets"]) == (True, True)
    assert partial["public_access_block_all"] is False  # neither level alone blocks everything
    assert [partial[column] for column in ACCOUNT_COLUMNS] == [True, True, False, False]
    assert partial["effective_public_access_block_all"] is True
    assert buckets[f"policy-only-{account}"]["effective_public_access_block_all"] is False
    assert s3_findings(findings, account) == {
        ("aws.s3_account_public_access.account_blocks_public_access", None),
        ("aws.s3_buckets.not_public_by_policy", f"policy-only-{account}"),
    }


def bundle_item(bundle: Bundle, dataset) -> Path:
    return next(staged.path for staged in bundle.items if staged.item.name == dataset.item)


def test_trails_keys_groups_databases_recorders(snapshot):
    trails = by(records(snapshot, aws.CLOUDTRAIL_TRAILS), "name")
    assert set(trails) == {"org-trail", "no-validation"}  # the multi-region trail once, from its home region
    assert (trails["org-trail"]["region"], trails["org-trail"]["is_logging"]) == ("us-east-1", True)
    assert trails["org-trail"]["multi_region"] is True and trails["org-trail"]["log_file_validation"] is True
    lax = trails["no-validation"]
    assert (lax["region"], lax["multi_region"], lax["log_file_validation"], lax["is_logging"]) == (
        "eu-west-1",
        False,
        False,
        False,
    )

    keys = by(records(snapshot, aws.KMS_KEYS), "arn")
    regional = snapshot.regional
    assert set(keys) == {
        regional["rotated_key"],
        regional["unrotated_key"],
        regional["signing_key"],
        regional["public_key"],
        regional["conditional_key"],
    }
    # '*' without a condition is open to anyone; with the caller-account condition it is not.
    assert [arn for arn, key in keys.items() if key["policy_allows_everyone"]] == [regional["public_key"]]
    assert keys[regional["rotated_key"]]["rotation_enabled"] is True
    assert keys[regional["unrotated_key"]]["rotation_enabled"] is False
    assert keys[regional["signing_key"]]["rotation_enabled"] is None  # asymmetric keys cannot rotate

    groups = by(records(snapshot, aws.SECURITY_GROUPS), "group_id")
    ssh = groups[regional["ssh_group"]]
    assert ssh["open_admin_ports"] == [22] and ssh["admin_ports_open_to_world"] is True
    assert ssh["world_open_rules"] == [{"protocol": "tcp", "from_port": 22, "to_port": 22, "cidr": "0.0.0.0/0"}]
    assert ssh["tags"]["team"] == "platform"
    web = groups[regional["web_group"]]
    assert web["open_admin_ports"] == [] and len(web["world_open_rules"]) == 1  # 22 only from 10.0.0.0/8
    everything = groups[regional["all_group"]]
    assert (everything["region"], everything["open_admin_ports"]) == ("eu-west-1", [22, 3389])
    assert {group["group_name"] for group in groups.values()} >= {"default", "ssh-open", "web", "all-v6"}

    databases = by(records(snapshot, aws.RDS_INSTANCES), "db_instance_id")
    orders, ledger = databases["orders-db"], databases["ledger-db"]
    # Publicly accessible, and both other facts Prowler asks for: a group open on its port, a routed subnet.
    assert sorted(orders["security_group_ids"]) == sorted([regional["db_group"], regional["private_db_group"]])
    assert orders["security_groups_open_to_world"] == [regional["db_group"]]  # not db-private (10.0.0.0/8)
    assert orders["public_subnets"] == regional["public_subnets"]  # not the subnet with a private route table
    assert (orders["port"], orders["subnet_group"]) == (5432, "orders-subnets")
    assert (ledger["security_groups_open_to_world"], ledger["public_subnets"]) == ([], [])
    assert (orders["storage_encrypted"], orders["publicly_accessible"], orders["deletion_protection"]) == (
        False,
        True,
        False,
    )
    assert (ledger["storage_encrypted"], ledger["backup_retention_days"], ledger["deletion_protection"]) == (
        True,
        7,
        True,
    )

    recorders = by(records(snapshot, aws.CONFIG_RECORDERS), "account_id", "region")
    assert set(recorders) == {
        (snapshot.first, "us-east-1"),
        (snapshot.first, "eu-west-1"),
        (snapshot.second, "us-east-1"),
    }
    assert recorders[(snapshot.first, "us-east-1")]["recording"] is True
    assert recorders[(snapshot.first, "us-east-1")]["all_supported"] is True
    missing = recorders[(snapshot.first, "eu-west-1")]
    assert (missing["present"], missing["name"], missing["recording"]) == (False, None, False)


def test_validation_finds_exactly_the_seeded_control_exceptions(snapshot):
    assert snapshot.validation["status"] == "passed", snapshot.validation["failures"]
    assert snapshot.validation["failures"] == []
    first, regional, buckets = snapshot.first, snapshot.regional, snapshot.buckets
    found = {
        (finding["check"], tuple(sorted(finding["record_key"].items())))
        for finding in snapshot.findings
        if finding["source"] == SOURCE
    }

    def key(check: str, **record_key) -> tuple:
        return (f"aws.{check}", tuple(sorted(record_key.items())))

    second = snapshot.second
    arn = f"arn:aws:rds:us-east-1:{first}:db:orders-db"
    cluster = f"arn:aws:rds:us-east-1:{first}:cluster:reports-cluster"
    carol_key = hashlib.sha256(snapshot.iam["key_ids"]["carol"].encode()).hexdigest()[:16]
    first_buckets = [buckets[kind] for kind in ("public", "blocked", "acl", "plain", "logs")]
    second_buckets = [f"private-{second}", f"open-{second}"]
    every_bucket = [(first, name) for name in first_buckets] + [(second, name) for name in second_buckets]

    def bucket_findings(check: str, found_in: list[tuple[str, str]]) -> set[tuple]:
        return {key(f"s3_buckets.{check}", account_id=account, bucket=name) for account, name in found_in}

    def group(check: str, account: str, region: str, group_id: str) -> tuple:
        return key(f"ec2_security_groups.{check}", account_id=account, region=region, group_id=group_id)

    default_groups = snapshot.default_groups  # moto's default VPCs: each default group allows traffic
    assert len(default_groups) == 4  # the three default VPCs and the orders VPC
    expected = {
        # Both accounts: moto's root user has no MFA (it cannot be turned on through an API).
        key("accounts.root_mfa", account_id=first),
        key("accounts.root_mfa", account_id=second),
        # The second account has no CloudTrail trail at all: an absence is a finding, not a pass.
        key("accounts.logging_trail", account_id=second),
        key("iam_users.console_users_have_mfa", account_id=first, user_name="bob"),
        # Console logins never used since created KEY_CLOCK_SHIFT ago.
        key("iam_users.console_used_recently", account_id=first, user_name="alice"),
        key("iam_users.console_used_recently", account_id=first, user_name="bob"),
        key("iam_users.admin_access_allow_listed", account_id=first, user_name="mallory"),
        key("iam_users.admin_access_allow_listed", account_id=first, user_name="ops"),
        key("iam_access_keys.rotated", account_id=first, key_fingerprint=carol_key),  # dave's is inactive
        key("iam_access_keys.used_recently", account_id=first, key_fingerprint=carol_key),
        # The first account has no password policy; the second's lacks complexity and expiry.
        key("iam_password_policies.present", account_id=first),
        *(
            key(f"iam_password_policies.{check}", account_id=second)
            for check in ("requires_numbers", "requires_uppercase", "requires_lowercase", "expires_passwords")
        ),
        key("s3_account_public_access.account_blocks_public_access", account_id=first),
        key("s3_buckets.not_public_by_policy", account_id=first, bucket=buckets["public"]),
        key("s3_buckets.not_public_by_acl", account_id=first, bucket=buckets["acl"]),
        key("s3_buckets.default_encryption", account_id=first, bucket=buckets["plain"]),
        *bucket_findings("bucket_blocks_public_access", [b for b in every_bucket if b[1] != buckets["blocked"]]),
        # Only the Object Lock bucket keeps versions (Object Lock turns versioning on).
        *bucket_findings("versioning", [b for b in every_bucket if b[1] != buckets["logs"]]),
        *bucket_findings("mfa_delete", every_bucket),
        *bucket_findings("access_logging", every_bucket),
        *(
            key(f"cloudtrail_trails.{check}", arn=f"arn:aws:cloudtrail:eu-west-1:{first}:trail/no-validation")
            for check in ("multi_region", "log_file_validation", "logging")
        ),
        key("kms_keys.rotation_enabled", arn=regional["unrotated_key"]),
        key("kms_keys.not_public", arn=regional["public_key"]),
        group("no_admin_ports_open_to_world", first, "us-east-1", regional["ssh_group"]),
        group("no_admin_ports_open_to_world", first, "eu-west-1", regional["all_group"]),
        group("no_db_ports_open_to_world", first, "us-east-1", regional["db_group"]),
        group("no_db_ports_open_to_world", first, "eu-west-1", regional["all_group"]),
        *(group("default_group_restricts_all_traffic", *default) for default in default_groups),
        *(
            key(f"rds_instances.{check}", arn=arn)
            for check in ("encrypted", "not_public", "backup_retention", "deletion_protection")
        ),
        # The Aurora member reports-1 is judged through its cluster, not again on its own.
        *(
            key(f"rds_clusters.{check}", arn=cluster)
            for check in ("encrypted", "backup_retention", "deletion_protection")
        ),
        key("config_recorders.recording", account_id=first, region="eu-west-1"),
    }
    assert found == expected
    assert len(expected) == 66  # at least 30 planted violations, as issue 15 asks
    criteria = {criterion for finding in snapshot.findings for criterion in finding["controls"]}
    assert {"CC6.1", "CC6.3", "CC6.6", "CC7.1", "CC7.2", "A1.2"} <= criteria
    assert {"CC6.6", "CC7.2", "A1.2"} <= set(snapshot.validation["controls"])


def test_no_secret_reaches_staging_or_xcom(snapshot):
    canaries = [
        CANARY_SECRET_KEY,
        CANARY_TAG_PASSWORD,
        CANARY_POLICY_SECRET,
        CANARY_DB_PASSWORD,
        *snapshot.iam["secrets"],
    ]
    checked = 0
    for path in snapshot.config.staging_dir.rglob("*"):  # the aws bundle and the validation bundle
        if path.is_file():
            data = path.read_bytes()
            for canary in canaries:
                assert canary.encode() not in data, f"{canary} leaked into {path}"
            checked += 1
    assert checked > len(aws.DATASETS)
    text = json.dumps(snapshot.summary)
    assert not any(canary in text for canary in canaries)
    # Not vacuous: the tags were staged, redacted, next to what is not secret.
    ssh = by(records(snapshot, aws.SECURITY_GROUPS), "group_id")[snapshot.regional["ssh_group"]]
    assert ssh["tags"]["db_password"].startswith("[REDACTED:secret_field:")
    assert ssh["tags"]["note"].startswith("aws_secret_access_key=[REDACTED:aws_secret_access_key:")
    assert snapshot.summary["redactions"] == {"aws_secret_access_key": 1, "secret_field": 2}


# --- errors -------------------------------------------------------------------------------------------


@pytest.fixture
def moto_aws(aws_env, monkeypatch) -> str:
    for name, value in s3_control_env(aws_env).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_env)
    for name in ("EVIDENCE_STORE", "EVIDENCE_CONFIG", "EVIDENCE_STAGING", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    return aws_env


def test_credentials_of_another_account_are_refused(moto_aws, tmp_path):
    """No role_arn: the base credentials (moto's default account) must belong to the configured account."""
    wanted = new_account_id()
    config = write_config(tmp_path, accounts=[{"id": wanted, "regions": ["us-east-1"]}])
    pattern = rf"^source {SOURCE}: account {wanted}: the credentials are for account 123456789012 \(arn:aws:"
    with pytest.raises(CollectorError, match=pattern):
        extract(config)
    assert no_bundle(config)


def test_region_that_does_not_exist(moto_aws, tmp_path):
    account = new_account_id()
    config = write_config(
        tmp_path, accounts=[{"id": account, "role_arn": role_arn(account), "regions": ["us-east-1", "mars-north-1"]}]
    )
    pattern = (
        rf"^source {SOURCE}: account {account} region mars-north-1: ec2 DescribeRegions does not list "
        r"'mars-north-1': no such region$"
    )
    with pytest.raises(CollectorError, match=pattern):
        extract(config)
    assert no_bundle(config)


def test_no_known_region_at_all(moto_aws, tmp_path):
    account = new_account_id()
    config = write_config(tmp_path, accounts=[{"id": account, "regions": ["mars-north-1"]}])
    with pytest.raises(CollectorError, match=rf"^source {SOURCE}: account {account}: none of the regions mars-north-1"):
        extract(config)


ACCOUNT = {"id": "123456789012", "regions": ["us-east-1"]}
VALID_KEYS = "valid keys: accounts, conn_id, max_access_key_age_days, max_unused_days, admin_allow_list"


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({}, "missing required key 'accounts'"),
        ({"accounts": []}, "accounts: expected array of length >= 1, got []"),
        ({"accounts": [{"id": 123456789012, "regions": ["us-east-1"]}]}, "accounts[0].id: expected str, got int"),
        (
            {"accounts": [{"id": "1234", "regions": ["us-east-1"]}]},
            r"accounts[0].id: expected str matching regex '^\\d{12}$', got '1234'",  # the regex as repr() shows it
        ),
        ({"accounts": [{"id": "123456789012"}]}, "accounts[0]: missing required key 'regions'"),
        (
            {"accounts": [{**ACCOUNT, "role_arn": "reader"}]},
            f"accounts[0].role_arn: expected str matching regex {aws._ROLE_ARN.pattern!r}, got 'reader'",
        ),
        (
            {"accounts": [{**ACCOUNT, "role_arn": "arn:aws:iam::210987654321:role/r"}]},
            "accounts[0].role_arn: role arn:aws:iam::210987654321:role/r is in account 210987654321, not 123456789012",
        ),
        (
            {"accounts": [{**ACCOUNT, "region": "x"}]},
            "accounts[0].region: unknown key 'region'; did you mean 'regions'?; "
            "valid keys: id, role_arn, external_id, regions",
        ),
        ({"accounts": [ACCOUNT], "max_access_key_age_days": 0}, "max_access_key_age_days: expected int >= 1, got 0"),
        ({"accounts": [ACCOUNT], "admin_allow_list": "root"}, "admin_allow_list: expected array, got str"),
        ({"accounts": [ACCOUNT], "regions": ["x"]}, f"regions: unknown key 'regions'; {VALID_KEYS}"),
        (
            {"accounts": [{"id": "123456789012", "regions": ["us-east-1", "us-east-1"]}]},
            "accounts[0].regions[1]: region 'us-east-1' is listed twice",
        ),
        ({"accounts": [ACCOUNT, ACCOUNT]}, "accounts[1].id: account 123456789012 is also listed at accounts[0]"),
        ({"accounts": [{**ACCOUNT, "regions": [""]}]}, "accounts[0].regions[0]: expected str of length >= 1"),
        ({"accounts": [ACCOUNT], "conn_id": ""}, "conn_id: expected str of length >= 1, got ''"),
        (
            {"accounts": [ACCOUNT], "max_acess_key_age_days": 30},
            "max_acess_key_age_days: unknown key 'max_acess_key_age_days'; "
            f"did you mean 'max_access_key_age_days'?; {VALID_KEYS}",
        ),
    ],
    ids=[
        "missing",
        "empty",
        "id-number",
        "id-short",
        "no-regions",
        "role-not-arn",
        "role-other-account",
        "unknown-account-key",
        "age-zero",
        "allow-list-string",
        "unknown-option",
        "region-twice",
        "account-twice",
        "region-empty",
        "conn-id-empty",
        "misspelt-key",
    ],
)
def test_invalid_options(options, problem):
    with pytest.raises(ConfigError, match="^" + re.escape(f"source {SOURCE}: {problem}") + "$"):
        source_config(SOURCE, aws.KIND, options)


@pytest.fixture(scope="module")
def enforcing_moto(tmp_path_factory):
    """A moto server of this module's own that enforces IAM policies (moto's reset-auth), with an auditor
    whose policy allows everything but ListAccessKeys and assuming one role."""
    with moto_server(tmp_path_factory.mktemp("moto-auth") / "moto.log") as endpoint:
        admin = boto3.session.Session(region_name="us-east-1", **_dummy_keys())
        iam = admin.client("iam", endpoint_url=endpoint)
        iam.create_user(UserName="auditor")
        iam.put_user_policy(
            UserName="auditor",
            PolicyName="read",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Action": "*", "Resource": "*"},
                        {"Effect": "Deny", "Action": "iam:ListAccessKeys", "Resource": "*"},
                        {"Effect": "Deny", "Action": "sts:AssumeRole", "Resource": "arn:aws:iam::*:role/denied"},
                    ],
                }
            ),
        )
        key = iam.create_access_key(UserName="auditor")["AccessKey"]
        request = urllib.request.Request(  # noqa: S310 - loopback URL we built
            f"{endpoint}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "application/octet-stream"},
        )
        urllib.request.urlopen(request, timeout=10).close()  # noqa: S310 - loopback URL we built
        yield SimpleNamespace(endpoint=endpoint, login=key["AccessKeyId"], password=key["SecretAccessKey"])


def _dummy_keys() -> dict[str, str]:
    return {
        "aws_access_key_id": DUMMY_AWS_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": DUMMY_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    }


@pytest.fixture
def airflow_connection(enforcing_moto, monkeypatch):
    """The auditor's keys as an Airflow AWS connection; the environment points nowhere useful."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    requested = []

    def get_connection(conn_id):
        requested.append(conn_id)
        return SimpleNamespace(
            login=enforcing_moto.login,
            password=enforcing_moto.password,
            extra_dejson={"region_name": "us-east-1", "endpoint_url": enforcing_moto.endpoint},
        )

    get_connection.requested = requested
    return get_connection


def test_access_denied_names_account_region_and_call(tmp_path, airflow_connection, enforcing_moto):
    config = write_config(tmp_path, conn_id="aws_audit", accounts=[{"id": "123456789012", "regions": ["us-east-1"]}])
    pattern = (
        rf"^source {SOURCE}: account 123456789012 region us-east-1: iam ListAccessKeys page 1 failed: AccessDenied: "
        r"User: arn:aws:iam::123456789012:user/auditor is not authorized to perform: iam:ListAccessKeys"
    )
    with pytest.raises(CollectorError, match=pattern) as caught:
        extract(config, credentials=Credentials(airflow_connection))
    assert not is_transient(caught.value)  # a denied permission needs a person: the task must not retry
    assert airflow_connection.requested == ["aws_audit"]
    assert enforcing_moto.password not in str(caught.value)
    assert no_bundle(config)


def test_role_that_cannot_be_assumed(tmp_path, airflow_connection):
    config = write_config(
        tmp_path,
        conn_id="aws_audit",
        accounts=[
            {"id": "210987654321", "role_arn": "arn:aws:iam::210987654321:role/denied", "regions": ["us-east-1"]}
        ],
    )
    pattern = rf"^source {SOURCE}: account 210987654321 region us-east-1: sts AssumeRole failed: AccessDenied: "
    with pytest.raises(CollectorError, match=pattern):
        extract(config, credentials=Credentials(airflow_connection))
    assert no_bundle(config)


class _ThrottlingProxy(BaseHTTPRequestHandler):
    """Forwards to moto, but answers the first ``throttle`` GetAccountAuthorizationDetails calls with Throttling."""

    upstream: tuple[str, int]
    throttle = 1
    details_calls = 0
    lock = threading.Lock()

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if b"Action=GetAccountAuthorizationDetails" in body:
            with self.lock:
                type(self).details_calls += 1
                throttled = type(self).details_calls <= self.throttle
            if throttled:
                error = (
                    b'<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type>'
                    b"<Code>Throttling</Code><Message>Rate exceeded</Message></Error>"
                    b"<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
                )
                self.send_response(400)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(error)))
                self.end_headers()
                self.wfile.write(error)
                return
        connection = http.client.HTTPConnection(*self.upstream, timeout=30)
        headers = {name: value for name, value in self.headers.items() if name.lower() != "content-length"}
        connection.request(self.command, self.path, body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        connection.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

    def log_message(self, *args) -> None:
        pass


def test_throttling_is_retried_by_botocore(moto_aws, tmp_path, monkeypatch):
    host, port = moto_aws.removeprefix("http://").split(":")
    handler = type("Proxy", (_ThrottlingProxy,), {"upstream": (host, int(port)), "details_calls": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        proxy = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy)
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy)
        account = new_account_id()
        config = write_config(
            tmp_path, accounts=[{"id": account, "role_arn": role_arn(account), "regions": ["us-east-1"]}]
        )
        summary = extract(config)
    finally:
        server.shutdown()
        server.server_close()
    assert handler.details_calls == 3  # groups and policies: throttled, then answered; then users
    assert Bundle.load(summary["bundle"]).reported_totals["iam_users"] == 0


@pytest.fixture
def throttling_proxy(moto_aws):
    """A proxy in front of moto that throttles every GetAccountAuthorizationDetails call."""
    host, port = moto_aws.removeprefix("http://").split(":")
    handler = type("Proxy", (_ThrottlingProxy,), {"upstream": (host, int(port)), "details_calls": 0, "throttle": 99})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _one_try_iam(endpoint: str):
    """An IAM client that does not retry, so what botocore would give up with after its retries comes at once."""
    config = botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=2)
    return boto3.client("iam", region_name="us-east-1", endpoint_url=endpoint, config=config)


def test_throttling_past_the_retries_is_transient(throttling_proxy):
    api = AwsApi(SOURCE, "123456789012", "us-east-1", _one_try_iam(throttling_proxy))
    pattern = (
        rf"^source {SOURCE}: account 123456789012 region us-east-1: iam GetAccountAuthorizationDetails page 1 "
        r"failed: Throttling: Rate exceeded$"
    )
    with pytest.raises(TransientCollectorError, match=pattern):
        list(api.pages("get_account_authorization_details"))


def test_an_unreachable_endpoint_is_transient(moto_aws):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    api = AwsApi(SOURCE, None, "us-east-1", _one_try_iam(closed))
    pattern = (
        rf'^source {SOURCE}: region us-east-1: iam GetUser failed: Could not connect to the endpoint URL: "{closed}/"$'
    )
    with pytest.raises(TransientCollectorError, match=pattern):
        api.call("get_user")


def test_an_absent_thing_is_none_and_a_missing_one_is_permanent(moto_aws):
    api = AwsApi(SOURCE, "123456789012", "us-east-1", boto3.client("iam", region_name="us-east-1"))
    assert api.call("get_login_profile", absent=("NoSuchEntity",), UserName="nobody") is None
    pattern = rf"^source {SOURCE}: account 123456789012 region us-east-1: iam GetUser failed: NoSuchEntity: "
    with pytest.raises(CollectorError, match=pattern) as caught:
        api.call("get_user", UserName="nobody")
    assert not is_transient(caught.value)


@pytest.mark.parametrize(
    ("document", "admin"),
    [
        ({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}, True),
        ({"Statement": {"Effect": "Allow", "Action": ["s3:*", "*"], "Resource": ["*"]}}, True),
        (json.dumps({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}), True),
        ({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"Bool": {}}}]}, True),
        ({"Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}, False),
        ({"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}, False),
        ({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::b"}]}, False),
        ({"Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]}, False),
    ],
    ids=["star", "lists", "json-string", "conditional", "deny", "service-star", "one-resource", "not-action"],
)
def test_admin_policy_documents(document, admin):
    assert aws._grants_everything(document) is admin
