"""Ticket export files (Jira JSON and CSV, GitHub JSON dumps) from a directory, S3 (moto) and GCS (emulator):
the same normalised populations as the API collectors, and clear errors for files that are not what they claim."""

from __future__ import annotations

import json
import re
import shutil

import msgspec
import pytest
from fake_apis import items, run_collector

from conftest import ROOT
from soc2_evidence.collectors import load_config
from soc2_evidence.core.config import DEFAULT_CONFIG_PATH
from soc2_evidence.core.errors import CollectorError, ConfigError

SAMPLES = ROOT / "include" / "samples" / "tickets"


@pytest.fixture(scope="module")
def shipped():
    """The shipped sample source, exactly as include/config/evidence.yaml configures it."""
    config = load_config(DEFAULT_CONFIG_PATH)
    [source] = [source for source in config.sources if source.kind == "ticket_export"]
    assert source.family == "tickets" and config.resolve_path(source.options.location) == SAMPLES
    return msgspec.to_builtins(source.options)


def by_id(bundle, population="changes"):
    return {record["id"]: record for record in items(bundle, f"{population}.jsonl")}


def test_the_shipped_samples_hold_the_planted_violations(shipped, tmp_path):
    bundle = run_collector("ticket_export", {**shipped, "location": str(SAMPLES)}, tmp_path)

    changes = by_id(bundle)
    assert sorted(changes) == [
        "CHG-101",
        "CHG-102",
        "CHG-103",
        "CHG-104",
        "acme/payments#41",
        "acme/payments#42",
        "acme/payments#43",
    ]
    assert changes["CHG-102"]["approved_before_merge"] is False  # self-approved
    assert changes["CHG-102"]["approvers"][0]["approver"] == changes["CHG-102"]["author"] == "Carol Self <carol>"
    assert changes["acme/payments#42"]["has_ticket"] is False  # no ticket
    assert changes["CHG-103"]["emergency_reviewed_in_time"] is False  # reviewed nine days late
    assert changes["CHG-103"]["post_merge_review_at"] == "2026-10-21T11:00:00Z"
    compliant = [changes[key] for key in ("CHG-101", "CHG-104", "acme/payments#41", "acme/payments#43")]
    assert all(change["approved_before_merge"] or change["emergency_reviewed_in_time"] for change in compliant)
    assert all(change["has_ticket"] for change in compliant)
    assert changes["acme/payments#41"]["required_checks_succeeded"] is True
    assert changes["CHG-101"]["linked_tickets"] == ["CHG-101", "SEC-12"]

    reviews = by_id(bundle, "access_reviews")
    assert reviews["SEC-31"]["decisions"] == ["alice: keep", "bob: keep", "mallory: revoke"]
    assert (
        reviews["SEC-31"]["period_start"] == "2026-07-01"
        and reviews["SEC-31"]["completed_at"] == "2026-10-14T16:30:00Z"
    )
    incidents = by_id(bundle, "incidents")
    assert incidents["INC-7"]["post_mortem"].startswith("https://") and incidents["INC-8"]["post_mortem"] is None
    assert bundle.reported_totals == {"changes": 7, "access_reviews": 2, "incidents": 2}

    exports = items(bundle, "exports.json")["files"]
    assert {entry["file"] for entry in exports} == {path.name for path in SAMPLES.iterdir() if path.suffix != ".md"}
    changes_export = next(entry for entry in exports if entry["file"] == "jira-changes.json")
    assert changes_export["reported_total"] == 4 and len(changes_export["sha256"]) == 64


def test_a_declared_total_that_differs_from_the_issues_is_reported_as_declared(shipped, tmp_path):
    exports = tmp_path / "exports"
    shutil.copytree(SAMPLES, exports)
    document = json.loads((exports / "jira-changes.json").read_text())
    document["total"] = 5  # the export claims one more issue than it holds
    (exports / "jira-changes.json").write_text(json.dumps(document))
    bundle = run_collector("ticket_export", {**shipped, "location": str(exports)}, tmp_path / "staging")
    assert bundle.reported_totals["changes"] == 5 + 3  # validation's completeness check will fail on 7 rows


def test_from_an_s3_prefix(shipped, s3_client, tmp_path):
    s3_client.create_bucket(Bucket="exports")
    for path in SAMPLES.iterdir():
        s3_client.upload_file(str(path), "exports", f"team-a/2026-10/{path.name}")
    s3_client.put_object(Bucket="exports", Key="team-b/jira-changes.json", Body=b"not ours")
    local = run_collector("ticket_export", {**shipped, "location": str(SAMPLES)}, tmp_path / "local")
    remote = run_collector("ticket_export", {**shipped, "location": "s3://exports/team-a/2026-10"}, tmp_path / "s3")
    for population in ("changes", "access_reviews", "incidents"):
        assert items(remote, f"{population}.jsonl") == items(local, f"{population}.jsonl")


def test_from_a_gcs_prefix(shipped, gcs_bucket, tmp_path):
    from google.cloud import storage

    bucket = storage.Client(project="test").bucket(gcs_bucket)
    for path in SAMPLES.iterdir():
        bucket.blob(f"exports/{path.name}").upload_from_filename(str(path))
    remote = run_collector("ticket_export", {**shipped, "location": f"gs://{gcs_bucket}/exports"}, tmp_path)
    assert len(items(remote, "changes.jsonl")) == 7


def test_jira_csv_with_repeated_headers_and_jira_dates(tmp_path):
    (tmp_path / "changes.csv").write_text(
        "Issue key,Summary,Status,Reporter,Created,Resolved,Approver,Approved,Outward issue link (Relates),"
        "Outward issue link (Relates),Change type\n"
        "OPS-1,Patch kernel,Done,alice,02/Nov/26 9:00 AM,03/Nov/26 5:00 PM,bob,03/Nov/26 10:00 AM,SEC-1,SEC-2,Normal\n"
        "OPS-2,Hot patch,Done,alice,04/Nov/26 9:00 AM,04/Nov/26 9:30 AM,,,,,Emergency\n",
        encoding="utf-8",
    )
    options = {
        "location": str(tmp_path),
        "files": [
            {
                "glob": "*.csv",
                "format": "jira_csv",
                "population": "changes",
                "columns": {"approver": "Approver", "approved_at": "Approved", "change_type": "Change type"},
            }
        ],
    }
    changes = by_id(run_collector("ticket_export", options, tmp_path / "staging"))
    assert changes["OPS-1"]["linked_tickets"] == ["OPS-1", "SEC-1", "SEC-2"]
    assert changes["OPS-1"]["approvers"] == [
        {"approver": "bob", "approved_at": "2026-11-03T10:00:00Z", "via": "export:Approver"}
    ]
    assert changes["OPS-1"]["approved_before_merge"] is True and changes["OPS-1"]["merged_at"] == "2026-11-03T17:00:00Z"
    assert changes["OPS-2"]["emergency"] is True and changes["OPS-2"]["emergency_reviewed_in_time"] is False
    assert changes["OPS-2"]["transitions"] is None  # a CSV export has no changelog


@pytest.mark.parametrize(
    ("files", "message"),
    [
        pytest.param(
            [{"glob": "*.json", "format": "xml"}],
            "files[0].format: expected one of jira_json, jira_csv, github_json, got 'xml'",
            id="bad-format",
        ),
        pytest.param(
            [{"glob": "*.json", "format": "jira_jsn", "population": "changes"}],
            "files[0].format: expected one of jira_json, jira_csv, github_json, got 'jira_jsn'; "
            "did you mean 'jira_json'?",
            id="misspelt-format",
        ),
        pytest.param(
            [{"glob": "*.json", "format": "jira_json", "population": "changes", "jql": "x ORDER BY y"}],
            "files[0].jql: unknown key 'jql'",
            id="jql-in-an-export",
        ),
        pytest.param(
            [{"glob": "*.json", "format": "jira_json", "population": "incidents", "approved_statuses": ["OK"]}],
            "files[0].approved_statuses: unknown key 'approved_statuses'; valid keys: jql, fields, period_field",
            id="change-option-on-incidents",
        ),
        pytest.param(
            [{"glob": "*.csv", "format": "jira_csv", "population": "incidents", "columns": {"sevrity": "P"}}],
            "files[0].columns.sevrity: unknown column role 'sevrity'",
            id="unknown-column-role",
        ),
        pytest.param(
            [{"glob": "*.json", "format": "github_json", "emergency_label": ["x"]}],
            "files[0].emergency_label: unknown key 'emergency_label'; did you mean 'emergency_labels'?",
            id="misspelt-github-rule",
        ),
        pytest.param([], "files: expected array of length >= 1, got []", id="no-files"),
    ],
)
def test_bad_export_options_are_refused_at_load(tmp_path, files, message):
    with pytest.raises(ConfigError, match="^source tickets-src: .*" + re.escape(message)):
        run_collector("ticket_export", {"location": str(tmp_path), "files": files}, tmp_path / "staging")


@pytest.mark.parametrize(
    ("files", "content", "message"),
    [
        pytest.param(
            [{"glob": "missing-*.json", "format": "jira_json", "population": "changes"}],
            None,
            r"no file under .* matches 'missing-\*\.json'",
            id="no-match",
        ),
        pytest.param(
            [{"glob": "*.json", "format": "jira_json", "population": "changes"}],
            b"{oops",
            r"x\.json: not JSON",
            id="malformed",
        ),
        pytest.param(
            [{"glob": "*.json", "format": "jira_json", "population": "changes"}],
            b'{"issues": [{"key": "A-1"}]}',
            r"x\.json: issue 1: missing required field 'fields'$",
            id="missing-fields",
        ),
        pytest.param(
            [{"glob": "*.json", "format": "jira_json", "population": "changes"}],
            b'{"issues": [{"key": "A-1", "fields": {}, "changelog": {"histories": [{"items": "status"}]}}]}',
            r"x\.json: issue 1: changelog\.histories\[0\]\.items: expected array \| null, got str$",
            id="history-items-not-a-list",
        ),
        pytest.param(
            [{"glob": "*.json", "format": "jira_json", "population": "changes"}],
            b'{"total": "3", "issues": []}',
            r"x\.json: total: expected int \| null, got str$",
            id="total-as-text",
        ),
        pytest.param(
            [{"glob": "*.json", "format": "jira_json", "population": "changes"}],
            b'{"total": 1' + b"0" * 400 + b', "issues": []}',
            r"x\.json: total: expected int <= 9007199254740992$",
            id="total-400-digits",
        ),
        pytest.param(
            [{"glob": "*.json", "format": "jira_json", "population": "changes"}],
            b'{"issues": [' + b"[" * 10_000 + b"]" * 10_000 + b"]}",
            r"x\.json: JSON nested too deeply to read \(over about 1,000 levels\)$",
            id="nested-10000-deep",
        ),
        pytest.param(
            [{"glob": "*.json", "format": "jira_json", "population": "changes"}],
            b'{"issues": [{"key": "A-1", "fields": {"created": NaN}}]}',
            r"x\.json: not JSON: JSON is malformed: invalid character \(byte 49\)$",
            id="nan",
        ),
        pytest.param(
            [{"glob": "*.json", "format": "jira_json", "population": "incidents"}],
            b'{"issues": [{"key": "A-1", "fields": {"created": "0001-01-01T00:00:00+01:00"}}]}',
            r"x\.json: record 1: time '0001-01-01T00:00:00\+01:00' is outside 1970\.\.2199$",
            id="time-before-utc-begins",
        ),
        pytest.param(
            [{"glob": "*.json", "format": "github_json"}],
            b'[{"number": 1, "merged_at": "2026-11-01T00:00:00Z", "head": "main"}]',
            r"x\.json: pull request 1: head: expected object, got str$",
            id="head-as-text",
        ),
        pytest.param(
            [{"glob": "*.json", "format": "github_json"}],
            b'[{"merged_at": "2026-11-01T00:00:00Z"}]',
            r"x\.json: pull request 1: missing required field 'number'$",
            id="no-number",
        ),
        pytest.param(
            [{"glob": "*.json", "format": "github_json"}],
            b'[{"number": 1, "merged_at": "2026-11-01T00:00:00Z", "reviews": [7]}]',
            r"x\.json: pull request 1: reviews\[0\]: expected object, got int$",
            id="review-not-an-object",
        ),
        pytest.param(
            [{"glob": "*.json", "format": "jira_json", "population": "changes"}],
            b'{"issues": [{"key": "A-1", "fields": {"created": "yesterday"}}]}',
            r"x\.json: record 1: unrecognised time 'yesterday'",
            id="bad-time",
        ),
        pytest.param(
            [{"glob": "*.json", "format": "github_json"}],
            b'[{"number": 1, "merged_at": "2026-11-01T00:00:00Z", "updated_at": "2026-11-01T00:00:00Z", "user": null,'
            b' "title": "t", "state": "closed", "head": {"ref": "b", "sha": "s"}, "base": {"ref": "main"}}]',
            r"x\.json: pull request 1 names no repository",
            id="no-repository",
        ),
    ],
)
def test_bad_exports_name_the_source_and_file(tmp_path, files, content, message):
    """A file whose records do not parse fails the source, naming the file and the record."""
    (tmp_path / "x.json").write_bytes(content or b"[]")
    with pytest.raises(CollectorError, match=rf"^source tickets-src: .*{message}"):
        run_collector("ticket_export", {"location": str(tmp_path), "files": files}, tmp_path / "staging")
