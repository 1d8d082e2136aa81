"""What the other collectors archive is redacted the same way: records through BundleWriter.add_jsonl/add_json.

Each record has the shape its collector writes (the fields named in the collector's code), with
fake secrets where people put them: ticket titles and post-mortems, PR titles, PostgreSQL
settings, AWS tags, and documents held in strings (policies, embedded JSON or YAML).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from secret_corpus import password, r

from conftest import bundle_writer
from soc2_evidence.core.redaction import MARKER_PATTERN, Redactor

KEY = b"records-redaction-key"
GHP = "ghp_" + r(36)
PASSWORD = password()
STRIPE = "sk_live_" + r(40)
TAG_SECRET = r(24)
SETTING_SECRET = r(20)
POLICY_SECRET = r(28)
URL_PASSWORD = r(18)


def _staged(tmp_path: Path, run_context, records: list[dict]) -> list[dict]:
    writer = bundle_writer(
        tmp_path, run_context, family="tickets", source="records", kind="tests", redactor=Redactor(KEY)
    )
    writer.add_jsonl("records.jsonl", records)
    bundle = writer.finish()
    return [json.loads(line) for line in bundle.items[0].path.read_text().splitlines()]


# (shape, record, secrets that must go, fields that must stay as they were)
RECORDS = [
    pytest.param(
        {  # collectors/jira.py normalise_issue: an incident
            "id": "OPS-12",
            "source": "jira",
            "url": "https://acme.atlassian.net/browse/OPS-12",
            "title": f"Leaked token {GHP} in build log",
            "status": "Done",
            "severity": "high",
            "post_mortem": f"The deploy script ran mysql -uroot -p{PASSWORD} db; rotated.",
        },
        [GHP, PASSWORD],
        ["id", "source", "url", "status", "severity"],
        id="jira-incident",
    ),
    pytest.param(
        {  # collectors/github.py: a change (pull request)
            "id": "acme/api#42",
            "source": "github",
            "url": "https://github.com/acme/api/pull/42",
            "title": f"Rotate Stripe key (old: {STRIPE})",
            "status": "merged",
            "author": "dev",
            "approvers": ["lead"],
            "linked_tickets": ["OPS-12"],
            "has_ticket": True,
            "environment": "production",
        },
        [STRIPE],
        ["id", "url", "status", "approvers", "linked_tickets", "has_ticket", "environment"],
        id="github-change",
    ),
    pytest.param(
        {
            "name": "app.api_token",
            "setting": SETTING_SECRET,
            "unit": None,
            "source": "configuration file",
            "visible": True,
        },
        [SETTING_SECRET],
        ["name", "unit", "source", "visible"],
        id="postgres-secret-setting",
    ),
    pytest.param(
        {"name": "password_encryption", "setting": "scram-sha-256", "unit": None, "source": "default", "visible": True},
        [],
        ["name", "setting", "unit", "source", "visible"],
        id="postgres-setting-about-passwords",
    ),
    pytest.param(
        {  # collectors/aws.py security groups: tags as {Key: Value}
            "account_id": "123456789012",
            "region": "eu-west-1",
            "group_id": "sg-0123",
            "group_name": "db",
            "tags": {"Name": "db", "DbPassword": TAG_SECRET, "token_ttl_seconds": "3600", "Owner": "platform"},
            "world_open_rules": [],
            "open_admin_ports": [],
            "admin_ports_open_to_world": False,
        },
        [TAG_SECRET],
        ["account_id", "group_id", "world_open_rules", "admin_ports_open_to_world"],
        id="aws-security-group-tags",
    ),
    pytest.param(
        {  # raw AWS tag lists, as the APIs return them
            "arn": "arn:aws:rds:eu-west-1:123456789012:db:app",
            "TagList": [{"Key": "MASTER_PASSWORD", "Value": TAG_SECRET}, {"Key": "team", "Value": "data"}],
        },
        [TAG_SECRET],
        ["arn"],
        id="aws-tag-list",
    ),
    pytest.param(
        {  # a policy held as a JSON string (S3 GetBucketPolicy), and a YAML document in a description
            "bucket": "evidence",
            "policy": json.dumps(
                {"Statement": [{"Sid": "x", "Condition": {"StringEquals": {"api_key": POLICY_SECRET}}}]}
            ),
            "description": f"deploy:\n  database_url: postgres://app:{URL_PASSWORD}@db/app\n  region: eu\n",
        },
        [POLICY_SECRET, URL_PASSWORD],
        ["bucket"],
        id="policy-and-embedded-documents",
    ),
    pytest.param(
        {"nested": {"level": {"deeper": [{"client-secret": POLICY_SECRET, "max_tokens": 4096}]}}},
        [POLICY_SECRET],
        [],
        id="secret-key-at-depth",
    ),
]


@pytest.mark.parametrize(("record", "secrets", "unchanged"), RECORDS)
def test_collector_records_are_redacted(tmp_path, run_context, record, secrets, unchanged):
    [staged] = _staged(tmp_path, run_context, [record])
    text = json.dumps(staged)
    for secret in secrets:
        assert secret not in text
    assert bool(MARKER_PATTERN.search(text)) == bool(secrets), text
    for field in unchanged:
        assert staged[field] == record[field]


def test_word_boundaries_in_record_keys():
    out = Redactor(KEY).redact_value(
        {"max_tokens": 4096, "tokenizer": "bpe", "secretary_email": "a@b", "github_token_scopes": "repo", "auth": "x1"}
    )
    assert out["max_tokens"] == 4096 and out["tokenizer"] == "bpe" and out["secretary_email"] == "a@b"
    assert out["github_token_scopes"] == "repo"
    assert MARKER_PATTERN.fullmatch(out["auth"])


def test_kubernetes_secret_object_is_redacted_whatever_the_entry_names():
    secret = {"kind": "Secret", "metadata": {"name": "tls"}, "data": {"tls.crt": "Y2VydA==", "ca": "Y2E="}}
    out = Redactor(KEY).redact_value(secret)
    assert out["metadata"] == {"name": "tls"}
    assert all(MARKER_PATTERN.fullmatch(value) for value in out["data"].values())


def test_a_list_of_key_records_is_judged_field_by_field():
    """IAM's access_keys are records (id, status, dates): their dates stay readable; a secret in one is not."""
    value = {
        "access_keys": [
            {
                "status": "Active",
                "created": "2026-01-02T03:04:05Z",
                "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",
            }
        ],
        "api_keys": "sk_live_" + "a" * 24,
    }
    redacted = Redactor(b"k").redact_value(value)
    [record] = redacted["access_keys"]
    assert (record["status"], record["created"]) == ("Active", "2026-01-02T03:04:05Z")
    assert "wJalrXUtnFEMI" not in str(redacted) and "sk_live_" not in str(redacted)
