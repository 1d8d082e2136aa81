"""The gcs_config collector against gcp-storage-emulator over HTTP, and recorded GCS JSON API resources.

Gaps of the emulator (gcp-storage-emulator 2026.7), each covered here another way:

- Bucket insert keeps only the name (location is always "US", every other field is dropped):
  tests create a bucket, then PATCH its configuration as a client would.
- Bucket listing ignores ``prefix`` and ``project`` (and paging): every bucket comes back. The
  collector keeps to its prefix itself; a bucket of another prefix is created to prove it.
- ``lockRetentionPolicy`` is not implemented (501), and a stored ``retentionPolicy`` comes back
  without ``isLocked`` or ``effectiveTime``: a locked policy is covered by a recorded resource.
- ``publicAccessPrevention`` is not defaulted to "inherited" and not enforced (an allUsers binding
  is accepted beside "enforced", which Cloud Storage refuses), ``uniformBucketLevelAccess`` gets
  no ``lockedTime``: public access prevention with a leftover public binding is a recorded resource.
- IAM policies are stored and returned verbatim: no default project bindings, version 1 even when
  version 3 is requested, conditions unchecked. Conditional bindings are covered by a recorded policy.

Recorded resources (tests/data/gcs) follow the documented shapes of the bucket resource
(https://cloud.google.com/storage/docs/json_api/v1/buckets#resource) and of the IAM policy
(https://cloud.google.com/storage/docs/json_api/v1/buckets/getIamPolicy), and go through
:func:`bucket_record`, the function the collector feeds with live responses.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import collected_after, write_pipeline_config
from soc2_evidence.collectors import load_config, source_config
from soc2_evidence.collectors.gcs_config import BUCKETS, KIND, bucket_record
from soc2_evidence.core.credentials import Credentials, service_account_credentials
from soc2_evidence.core.errors import CollectorError, ConfigError
from soc2_evidence.core.evidence import RunContext
from soc2_evidence.core.staging import Bundle
from soc2_evidence.orchestration.pipeline import extract_source

ROOT = Path(__file__).resolve().parents[1]
RECORDED = Path(__file__).resolve().parent / "data" / "gcs"
SOURCE = "buckets"
PROJECT = "acme-test"
KMS_KEY = "projects/acme/locations/us/keyRings/storage/cryptoKeys/evidence"


def recorded(name: str) -> dict:
    return json.loads((RECORDED / name).read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def _no_environment_overrides(monkeypatch):
    for name in ("EVIDENCE_STORE", "EVIDENCE_CONFIG", "EVIDENCE_STAGING", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def emulator(gcs_endpoint, monkeypatch):
    """google-cloud-storage pointed at the emulator, as STORAGE_EMULATOR_HOST points it anywhere."""
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint)
    return storage.Client(project=PROJECT)


@pytest.fixture
def buckets(emulator):
    """Two buckets under a unique prefix, one locked down and one public, and one bucket outside the prefix."""
    prefix = f"soc2t-{uuid.uuid4().hex[:10]}-"
    locked = emulator.create_bucket(f"{prefix}locked")
    locked.versioning_enabled = True
    locked.iam_configuration.uniform_bucket_level_access_enabled = True
    locked.iam_configuration.public_access_prevention = "enforced"
    locked.retention_period = 86400
    locked.default_kms_key_name = KMS_KEY
    locked.labels = {"team": "security", "env": "prod"}
    locked.enable_logging("access-logs")
    locked.patch()
    policy = locked.get_iam_policy(requested_policy_version=3)
    policy.bindings.append(
        {"role": "roles/storage.objectAdmin", "members": {"serviceAccount:etl@acme.iam.gserviceaccount.com"}}
    )
    locked.set_iam_policy(policy)

    public = emulator.create_bucket(f"{prefix}public")
    policy = public.get_iam_policy(requested_policy_version=3)
    policy.bindings.append({"role": "roles/storage.objectViewer", "members": {"allUsers", "group:web@acme.example"}})
    public.set_iam_policy(policy)

    emulator.create_bucket(f"other-{prefix}x")
    return SimpleNamespace(prefix=prefix, locked=locked.name, public=public.name)


@pytest.fixture
def configure(tmp_path):
    def configure(**options):
        source = {"name": SOURCE, "kind": "gcs_config", "family": "config", **options}
        return load_config(write_pipeline_config(tmp_path, [source], path=tmp_path / "config" / "evidence.yaml"))

    return configure


@pytest.fixture
def run():
    """A fixed night; extract stamps items an hour after it, so freshness holds whatever day it is."""
    return RunContext("evidence_config_snapshot", "manual__gcs", datetime(2026, 11, 25, 2, tzinfo=UTC))


@pytest.fixture
def extract(configure, run):
    def extract(try_number=1, get_connection=None, **options):
        return extract_source(
            configure(**options),
            SOURCE,
            run,
            try_number=try_number,
            credentials=Credentials(get_connection),
            now=collected_after(run),
        )

    return extract


def staged_records(summary) -> list[dict]:
    path = Path(summary["bundle"]) / "items" / BUCKETS.item
    return [json.loads(line) for line in path.read_bytes().splitlines()]


# --- from the emulator -------------------------------------------------------------------------------------------


def test_buckets_from_the_emulator(extract, buckets):
    summary = extract(project=PROJECT, prefix=buckets.prefix)
    records = {record["name"]: record for record in staged_records(summary)}
    assert set(records) == {buckets.locked, buckets.public}  # not the bucket of another prefix
    assert Bundle.load(summary["bundle"]).reported_totals == {"buckets": 2}

    locked = records[buckets.locked]
    assert set(locked) == set(BUCKETS.columns)
    assert locked["uniform_bucket_level_access"] is True
    assert locked["public_access_prevention"] == "enforced"
    assert locked["versioning"] is True
    assert locked["retention_period_seconds"] == 86400
    assert locked["retention_locked"] is False  # the emulator cannot lock a policy (see the module docstring)
    assert locked["default_kms_key"] == KMS_KEY
    assert locked["access_log_bucket"] == "access-logs"
    assert list(locked["labels"].items()) == [("env", "prod"), ("team", "security")]
    assert locked["iam_bindings"] == [
        {
            "role": "roles/storage.objectAdmin",
            "members": ["serviceAccount:etl@acme.iam.gserviceaccount.com"],
            "condition": None,
        }
    ]
    assert (locked["public"], locked["public_bindings"]) == (False, [])

    public = records[buckets.public]
    assert public["uniform_bucket_level_access"] is False
    assert public["public_access_prevention"] is None  # real Cloud Storage reports "inherited"
    assert public["versioning"] is False
    assert (public["retention_period_seconds"], public["retention_locked"]) == (None, None)
    assert public["iam_bindings"] == [
        {"role": "roles/storage.objectViewer", "members": ["allUsers", "group:web@acme.example"], "condition": None}
    ]
    assert public["public"] is True
    assert public["public_bindings"] == [{"role": "roles/storage.objectViewer", "member": "allUsers"}]


def validate(summary, configure, run) -> tuple[dict, list[dict]]:
    """validate_run over the staged bucket snapshot, as the validate task runs it: its summary and findings."""
    from soc2_evidence.archive.stores import open_store
    from soc2_evidence.collectors import collector_for
    from soc2_evidence.validation.controls import load_control_map
    from soc2_evidence.validation.run import ValidationSettings, summary_of, validate_run

    config = configure(project=PROJECT)
    validation = validate_run(
        [Bundle.load(summary["bundle"])],
        run,
        family="config",
        sources=[SOURCE],
        store=open_store(config.store_url),
        settings=ValidationSettings(
            control_map=load_control_map(ROOT / "include" / "config" / "controls.yaml"),
            register=[],
            freshness_hours=48,
            calendar_days=3,
            today=run.night,
        ),
        staging_root=config.staging_dir,
        checks_of=collector_for,
        now=collected_after(run),
    )
    findings_path = next(item.path for item in validation.items if item.item.name == "findings.jsonl")
    findings = [json.loads(line) for line in findings_path.read_bytes().splitlines()]
    return summary_of(validation), [finding for finding in findings if finding["dataset"] == BUCKETS.name]


def compliant(bucket) -> None:
    """Every setting the checks ask for: the look-alikes below each break exactly one of them."""
    bucket.versioning_enabled = True
    bucket.iam_configuration.uniform_bucket_level_access_enabled = True
    bucket.iam_configuration.public_access_prevention = "enforced"
    bucket.retention_period = 86400
    bucket.default_kms_key_name = KMS_KEY
    bucket.enable_logging("access-logs")


# One planted violation per bucket (the bucket's name says which), so the findings must be exactly these.
PLANTED = {
    "no-versioning": {"gcs_config.buckets.versioning"},
    "fine-grained-acl": {"gcs_config.buckets.uniform_access"},
    "inherited-prevention": {"gcs_config.buckets.public_access_prevented"},
    "no-retention": {"gcs_config.buckets.retention_policy"},
    "google-managed-key": {"gcs_config.buckets.cmek"},
    "no-logging": {"gcs_config.buckets.access_logging"},
    "all-users": {"gcs_config.buckets.public_access_prevented", "gcs_config.buckets.not_public"},
    "all-authenticated": {"gcs_config.buckets.public_access_prevented", "gcs_config.buckets.not_public"},
}


@pytest.fixture
def planted(emulator):
    """Eight planted buckets and five compliant look-alikes under a unique prefix."""
    prefix = f"soc2p-{uuid.uuid4().hex[:10]}-"
    for name in (*PLANTED, "compliant", "private-group", "service-account", "long-retention", "dual-label"):
        bucket = emulator.create_bucket(f"{prefix}{name}")
        compliant(bucket)
        bucket.labels = {"case": name}
        if name == "no-versioning":
            bucket.versioning_enabled = False
        elif name == "fine-grained-acl":
            bucket.iam_configuration.uniform_bucket_level_access_enabled = False
        elif name in ("inherited-prevention", "all-users", "all-authenticated"):
            bucket.iam_configuration.public_access_prevention = "inherited"
        elif name == "no-retention":
            bucket.retention_period = None
        elif name == "google-managed-key":
            bucket.default_kms_key_name = None
        elif name == "no-logging":
            bucket.disable_logging()
        elif name == "long-retention":
            bucket.retention_period = 7 * 365 * 86400
        bucket.patch()
        members = {
            "all-users": {"allUsers"},
            "all-authenticated": {"allAuthenticatedUsers"},
            # Look-alikes: bindings that are not public.
            "private-group": {"group:auditors@acme.example"},
            "service-account": {"serviceAccount:etl@acme.iam.gserviceaccount.com"},
        }.get(name)
        if members:
            policy = bucket.get_iam_policy(requested_policy_version=3)
            policy.bindings.append({"role": "roles/storage.objectViewer", "members": members})
            bucket.set_iam_policy(policy)
    return prefix


def test_planted_buckets_give_exactly_the_planted_findings(extract, planted, configure, run):
    outcome, findings = validate(extract(project=PROJECT, prefix=planted), configure, run)
    assert outcome["status"] == "passed", outcome["failures"]
    found = {(finding["record_key"]["name"].removeprefix(planted), finding["check"]) for finding in findings}
    assert found == {(name, check) for name, checks in PLANTED.items() for check in checks}
    assert len(found) >= 10
    # Each finding tells the owner what to do: the setting in effect, the value expected, how to fix it.
    [retention] = [finding for finding in findings if finding["check"] == "gcs_config.buckets.retention_policy"]
    assert retention["setting"] == {"retention_period_seconds": None}
    assert retention["expected"] == "not null"
    assert retention["remediation"].startswith("Set a retention policy")
    assert retention["controls"] == ["A1.2"]


def test_no_bucket_at_all_is_a_finding_not_a_pass(extract, emulator, configure, run):
    """A prefix that matches nothing: every per-bucket check would pass, so the absence itself is the finding."""
    outcome, findings = validate(extract(project=PROJECT, prefix=f"soc2none-{uuid.uuid4().hex[:10]}-"), configure, run)
    assert outcome["status"] == "passed", outcome["failures"]
    assert [(finding["check"], finding["record_key"], finding["setting"]) for finding in findings] == [
        ("gcs_config.buckets.exists", {}, {"rows": 0})
    ]
    assert findings[0]["expected"] == ">= 1 rows"


def test_unchanged_buckets_give_identical_items(extract, buckets):
    first = extract(project=PROJECT, prefix=buckets.prefix, try_number=1)
    second = extract(project=PROJECT, prefix=buckets.prefix, try_number=2)
    assert first["bundle"] != second["bundle"]
    assert first["items"] == second["items"]


# --- recorded API resources --------------------------------------------------------------------------------------


def test_locked_retention_and_conditional_public_binding_from_recorded_resources():
    record = bucket_record(recorded("bucket-locked-retention.json"), recorded("iam-policy-locked-retention.json"))
    assert record == {
        "name": "acme-audit-logs",
        "project_number": "123456789012",
        "location": "EUROPE-WEST1",
        "location_type": "region",
        "storage_class": "STANDARD",
        "time_created": "2025-03-04T10:11:12.345Z",
        "uniform_bucket_level_access": True,
        "public_access_prevention": "enforced",
        "iam_bindings": [
            {
                "role": "roles/storage.legacyBucketOwner",
                "members": ["projectEditor:acme-security", "projectOwner:acme-security"],
                "condition": None,
            },
            {"role": "roles/storage.legacyBucketReader", "members": ["projectViewer:acme-security"], "condition": None},
            {
                "role": "roles/storage.objectViewer",
                "members": ["allAuthenticatedUsers", "group:auditors@acme.example"],
                "condition": {
                    "title": "fieldwork-2026",
                    "description": "Auditors during fieldwork",
                    "expression": 'request.time < timestamp("2027-03-01T00:00:00Z")',
                },
            },
        ],
        "public": True,
        "public_bindings": [{"role": "roles/storage.objectViewer", "member": "allAuthenticatedUsers"}],
        "versioning": True,
        "retention_period_seconds": 34560000,
        "retention_locked": True,
        "default_kms_key": "projects/acme-security/locations/europe-west1/keyRings/storage/cryptoKeys/audit-logs",
        "access_log_bucket": "acme-access-logs",
        "labels": {"data-class": "restricted", "team": "security"},
    }


def test_public_access_prevention_overrides_a_leftover_public_binding(tmp_path):
    """The not_public check: a public binding is a finding unless public access prevention is enforced."""
    from soc2_evidence.collectors.gcs_config import control_expectations
    from soc2_evidence.core.datasets import to_frame
    from soc2_evidence.validation.gx import Target, Validator

    records = [
        bucket_record(recorded("bucket-locked-retention.json"), recorded("iam-policy-locked-retention.json")),
        bucket_record(recorded("bucket-public-website.json"), recorded("iam-policy-public-website.json")),
    ]
    collected = datetime(2028, 2, 29, 3, tzinfo=UTC)
    target = Target(
        source=SOURCE,
        dataset=BUCKETS,
        frame=to_frame(BUCKETS, records, collected.isoformat()),
        parameters={"fresh_after": collected - timedelta(days=1), "fresh_before": collected, "reported_total": 2},
        controls=control_expectations(BUCKETS),
    )
    checks, _ = Validator(tmp_path / "gx").validate(target)
    assert [check.check for check in checks if check.kind == "quality" and not check.success] == []
    failed = {check.check: check.unexpected_rows for check in checks if check.kind == "control" and not check.success}
    assert failed == {
        "gcs_config.buckets.not_public": [1],
        "gcs_config.buckets.uniform_access": [1],
        "gcs_config.buckets.versioning": [1],
        "gcs_config.buckets.public_access_prevented": [1],
        "gcs_config.buckets.retention_policy": [1],
        "gcs_config.buckets.cmek": [1],
        "gcs_config.buckets.access_logging": [1],
    }


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        ({"kind": "storage#bucket"}, "a bucket resource without a name"),
        (
            {"name": "b", "retentionPolicy": {"retentionPeriod": "a month"}},
            "bucket b: retentionPolicy.retentionPeriod is not a number of seconds",
        ),
    ],
)
def test_resource_not_as_documented(resource, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        bucket_record(resource, {"bindings": []})


# --- credentials and options -------------------------------------------------------------------------------------


def _service_account_key() -> dict:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": "acme-from-key",
        "private_key_id": "0123456789abcdef",
        "private_key": pem,
        "client_email": "evidence@acme-from-key.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


@pytest.mark.parametrize("spelling", ["keyfile_dict", "extra__google_cloud_platform__keyfile_dict"])
def test_service_account_from_keyfile_dict(spelling):
    key = _service_account_key()
    for value in (json.dumps(key), key):  # the UI stores a JSON string, a secrets backend may give a mapping
        credentials = service_account_credentials({spelling: value})
        assert credentials.service_account_email == key["client_email"]
        assert credentials.project_id == "acme-from-key"


def test_service_account_from_key_path(tmp_path):
    key = _service_account_key()
    (tmp_path / "key.json").write_text(json.dumps(key))
    credentials = service_account_credentials({"key_path": "key.json"}, resolve_path=lambda p: tmp_path / p)
    assert credentials.service_account_email == key["client_email"]
    assert service_account_credentials({}) is None


def test_connection_key_and_project_never_reach_staging(extract, buckets, configure):
    """The key is parsed (the emulator then takes anonymous credentials) and its project is used."""
    key = _service_account_key()
    requested = []

    def get_connection(conn_id):
        requested.append(conn_id)
        return SimpleNamespace(conn_type="google_cloud_platform", extra_dejson={"keyfile_dict": json.dumps(key)})

    summary = extract(conn_id="gcp", prefix=buckets.prefix, get_connection=get_connection)
    assert requested == ["gcp"]
    assert {record["name"] for record in staged_records(summary)} == {buckets.locked, buckets.public}
    body = key["private_key"].splitlines()[1].encode()
    for path in configure().staging_dir.rglob("*"):
        if path.is_file():
            assert body not in path.read_bytes()


@pytest.mark.parametrize(
    ("connection", "message"),
    [
        (
            SimpleNamespace(conn_type="aws", extra_dejson={}),
            "connection 'gcp' is of type 'aws', expected 'google_cloud_platform'",
        ),
        (
            SimpleNamespace(conn_type="google_cloud_platform", extra_dejson={"keyfile_dict": "{not json"}),
            "connection 'gcp': unusable service account key: ",
        ),
        (
            SimpleNamespace(
                conn_type="google_cloud_platform", extra_dejson={"keyfile_dict": {"type": "service_account"}}
            ),
            "connection 'gcp': unusable service account key: ",
        ),
    ],
    ids=["wrong-type", "not-json", "missing-fields"],
)
def test_bad_connection(extract, emulator, connection, message):
    with pytest.raises(CollectorError, match="^" + re.escape(f"source {SOURCE}: {message}")):
        extract(conn_id="gcp", project=PROJECT, get_connection=lambda conn_id: connection)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"project": PROJECT, "prefix": ""}, "prefix: expected str of length >= 1, got ''"),
        ({"project": PROJECT, "prefix": 3}, "prefix: expected str | null, got int"),
        ({"project": ["a"]}, "project: expected str | null, got array"),
        (
            {"projet": PROJECT},
            "projet: unknown key 'projet'; did you mean 'project'?; valid keys: project, prefix, conn_id",
        ),
    ],
    ids=["prefix-empty", "prefix-int", "project-list", "misspelt-key"],
)
def test_invalid_options(options, message):
    with pytest.raises(ConfigError, match="^" + re.escape(f"source {SOURCE}: {message}") + "$"):
        source_config(SOURCE, KIND, options)


def test_no_project_anywhere(extract, emulator):
    """No project in the options, the connection or the credentials: known only when collecting."""
    with pytest.raises(
        CollectorError, match="^" + re.escape(f"source {SOURCE}: no Google Cloud project; set option 'project'") + "$"
    ):
        extract()
