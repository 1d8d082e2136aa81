"""Access keys and console logins judged by age and by use, on credentials backdated in moto's backend.

moto stamps keys and users with its own clock and its API cannot backdate them; moto's own tests
set ``create_date`` and ``last_used`` on the backend objects. The session's moto server runs in
another process, so this module runs moto's threaded server in this process and backdates
through its backend: each planted key and login has its own age, against a fixed clock.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from conftest import validate_config_bundle, write_pipeline_config
from soc2_evidence.collectors import load_config
from soc2_evidence.core.evidence import RunContext
from soc2_evidence.core.staging import Bundle
from soc2_evidence.demo.local_services import DUMMY_AWS_ENV, LOOPBACK, free_port, s3_control_env
from soc2_evidence.orchestration.pipeline import extract_source

SOURCE = "aws-ages"
NOW = datetime(2026, 11, 25, 3, tzinfo=UTC)

# name: (key created, key last used, key status) days before NOW; None: never used.
KEYS = {
    "old-unused": (120, None, "Active"),  # planted: older than 90 days and unused for 45
    "old-used": (120, 1, "Active"),  # planted: older than 90 days
    "idle": (60, 50, "Active"),  # planted: unused for 50 days
    "fresh": (10, 1, "Active"),  # look-alike
    "new-unused": (30, None, "Active"),  # look-alike: never used, but only 30 days old
    "inactive-old": (200, None, "Inactive"),  # look-alike: cannot be used
}
# name: (user created, password last used) days before NOW; every one has MFA.
LOGINS = {
    "console-idle": (200, 60),  # planted
    "console-never": (100, None),  # planted: never signed in since created
    "console-active": (200, 2),  # look-alike
    "console-new": (10, None),  # look-alike: created 10 days ago
}


@pytest.fixture(scope="module")
def moto_backend():
    """moto's threaded server in this process, the environment pointed at it, and its IAM backends."""
    from moto.backends import get_backend
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=port, verbose=False)
    server.start()
    endpoint = f"http://{LOOPBACK}:{port}"
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in {**DUMMY_AWS_ENV, **s3_control_env(endpoint), "AWS_ENDPOINT_URL": endpoint}.items():
                patch.setenv(name, value)
            for name in ("EVIDENCE_STORE", "EVIDENCE_CONFIG", "EVIDENCE_STAGING", "AWS_PROFILE", "AWS_ENDPOINT_URL_S3"):
                patch.delenv(name, raising=False)
            yield get_backend("iam")
    finally:
        server.stop()


def days_ago(days: int) -> datetime:
    return (NOW - timedelta(days=days)).replace(tzinfo=None)  # moto keeps naive UTC times


@pytest.fixture(scope="module")
def planted(moto_backend, tmp_path_factory):
    from moto.iam.models import AccessKeyLastUsed

    account_id = str(10**11 + uuid.uuid4().int % (9 * 10**11))
    role = f"arn:aws:iam::{account_id}:role/evidence-reader"
    credentials = boto3.client("sts").assume_role(RoleArn=role, RoleSessionName="seed")["Credentials"]
    iam = boto3.client(
        "iam",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )
    backend = moto_backend[account_id]["aws"]
    key_ids = {}
    for name, (created, used, status) in KEYS.items():
        iam.create_user(UserName=name)
        key_id = iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"]
        iam.update_access_key(UserName=name, AccessKeyId=key_id, Status=status)
        key = backend.access_keys[key_id]
        key.create_date = days_ago(created)
        if used is not None:
            key.last_used = AccessKeyLastUsed(timestamp=days_ago(used), service="s3", region="us-east-1")
        key_ids[name] = key_id
    for name, (created, used) in LOGINS.items():
        iam.create_user(UserName=name)
        iam.create_login_profile(UserName=name, Password="Initial-Passw0rd!")
        device = iam.create_virtual_mfa_device(VirtualMFADeviceName=name)["VirtualMFADevice"]
        iam.enable_mfa_device(
            UserName=name,
            SerialNumber=device["SerialNumber"],
            AuthenticationCode1="123456",
            AuthenticationCode2="654321",
        )
        user = backend.users[name]
        user.create_date = days_ago(created)
        user.password_last_used = days_ago(used) if used is not None else None

    directory = tmp_path_factory.mktemp("aws-ages")
    source = {
        "name": SOURCE,
        "kind": "aws",
        "family": "config",
        "accounts": [{"id": account_id, "role_arn": role, "regions": ["us-east-1"]}],
    }
    config = load_config(write_pipeline_config(directory, [source], path=directory / "config" / "evidence.yaml"))
    run = RunContext("evidence_config_snapshot", f"manual__{uuid.uuid4().hex[:8]}", NOW - timedelta(hours=1))
    summary = extract_source(config, SOURCE, run, redaction_key=b"k", now=lambda: NOW)
    validation, findings = validate_config_bundle(config, run, Bundle.load(summary["bundle"]), SOURCE, now=lambda: NOW)
    return validation, findings, key_ids


def test_keys_and_logins_are_judged_by_their_own_age_and_use(planted):
    import hashlib

    validation, findings, key_ids = planted
    assert validation["status"] == "passed", validation["failures"]
    owner = {hashlib.sha256(key_id.encode()).hexdigest()[:16]: name for name, key_id in key_ids.items()}
    found = set()
    for finding in findings:
        if finding["dataset"] == "aws.iam_access_keys":
            found.add((finding["check"], owner[finding["record_key"]["key_fingerprint"]]))
        elif finding["dataset"] == "aws.iam_users":
            found.add((finding["check"], finding["record_key"]["user_name"]))
    assert found == {
        ("aws.iam_access_keys.rotated", "old-unused"),
        ("aws.iam_access_keys.used_recently", "old-unused"),
        ("aws.iam_access_keys.rotated", "old-used"),
        ("aws.iam_access_keys.used_recently", "idle"),
        ("aws.iam_users.console_used_recently", "console-idle"),
        ("aws.iam_users.console_used_recently", "console-never"),
    }


def test_a_finding_names_the_setting_the_expected_value_and_the_fix(planted):
    _, findings, _ = planted
    [idle] = [
        finding
        for finding in findings
        if finding["check"] == "aws.iam_users.console_used_recently"
        and finding["record_key"]["user_name"] == "console-idle"
    ]
    assert idle["setting"] == {"max_unused_days": 45, "console_unused_days": 60}
    assert idle["expected"] == "console_unused_days <= max_unused_days"
    assert idle["remediation"] == "Delete the unused console password (login profile) of the user"
    assert idle["controls"] == ["CC6.2", "CC6.3"]
