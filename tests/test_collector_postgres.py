"""The postgres_config collector against the real server on 127.0.0.1:5432, through ``pipeline.extract_source``.

Each test creates roles, a schema and grants under a unique prefix and drops them afterwards,
even when the test fails. Other roles on the server (another test's, ``root``) may appear in the
snapshot, so assertions look at this test's objects by name.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest

from conftest import collected_after, validate_config_bundle, write_pipeline_config
from soc2_evidence.collectors import load_config, source_config
from soc2_evidence.collectors.postgres_config import KIND
from soc2_evidence.core.credentials import Credentials
from soc2_evidence.core.errors import CollectorError, ConfigError
from soc2_evidence.core.evidence import RunContext
from soc2_evidence.core.redaction import Redactor
from soc2_evidence.core.staging import BUNDLE_FILE, Bundle
from soc2_evidence.demo.local_services import free_port
from soc2_evidence.orchestration.pipeline import extract_source

ROOT = Path(__file__).resolve().parents[1]
SOURCE = "db"
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
CANARY_ROLE_PASSWORD = "CanaryPgRolePassword0001"
CANARY_DSN_PASSWORD = "CanaryPgDsnPassword0001"


@pytest.fixture(autouse=True)
def _no_environment_overrides(monkeypatch):
    for name in ("EVIDENCE_STORE", "EVIDENCE_CONFIG", "EVIDENCE_STAGING", "PGHOST", "PGPORT", "PGUSER"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def objects():
    """Roles, a membership, a schema with a table and grants, all named ``soc2t_<random>_*``; dropped after."""
    prefix = f"soc2t_{uuid.uuid4().hex[:10]}"
    names = SimpleNamespace(
        prefix=prefix,
        app=f"{prefix}_app",
        nopass=f"{prefix}_nopass",
        md5=f"{prefix}_md5",
        admin=f"{prefix}_admin",
        group=f"{prefix}_group",
        schema=f"{prefix}_s",
    )
    statements = [
        f"CREATE ROLE {names.app} LOGIN PASSWORD '{CANARY_ROLE_PASSWORD}' VALID UNTIL '2030-01-02 03:04:05+00'",
        f"CREATE ROLE {names.nopass} LOGIN",
        "SET password_encryption = 'md5'",
        f"CREATE ROLE {names.md5} LOGIN PASSWORD 'md5-stored'",
        "RESET password_encryption",
        f"CREATE ROLE {names.admin} SUPERUSER LOGIN PASSWORD 'x' VALID UNTIL 'infinity'",
        f"CREATE ROLE {names.group} NOLOGIN",
        f"GRANT {names.group} TO {names.app} WITH ADMIN OPTION",
        f"CREATE SCHEMA {names.schema}",
        f"CREATE TABLE {names.schema}.accounts (id int)",
        f"GRANT SELECT, UPDATE ON {names.schema}.accounts TO {names.app}",
        f"GRANT SELECT ON {names.schema}.accounts TO PUBLIC",
        f"GRANT USAGE ON SCHEMA {names.schema} TO {names.group}",
    ]
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        try:
            for statement in statements:
                admin.execute(statement)
            yield names
        finally:
            admin.execute(f"DROP SCHEMA IF EXISTS {names.schema} CASCADE")
            for role in (names.app, names.nopass, names.md5, names.admin, names.group):
                admin.execute(f"DROP ROLE IF EXISTS {role}")


@pytest.fixture
def configure(tmp_path):
    def configure(**options):
        source = {"name": SOURCE, "kind": "postgres_config", "family": "config", **options}
        validation = {
            "controls_file": str(ROOT / "include" / "config" / "controls.yaml"),
            "exceptions_file": str(ROOT / "include" / "config" / "exceptions.yaml"),
        }
        path = tmp_path / "config" / "evidence.yaml"
        return load_config(write_pipeline_config(tmp_path, [source], validation=validation, path=path))

    return configure


@pytest.fixture
def run():
    """A run of a fixed night; items are stamped by a clock an hour after it, so freshness holds any day."""
    return RunContext("evidence_config_snapshot", "manual__postgres", datetime(2026, 11, 25, 2, tzinfo=UTC))


@pytest.fixture
def extract(configure, run):
    def extract(try_number=1, get_connection=None, **options):
        return extract_source(
            configure(**options),
            SOURCE,
            run,
            try_number=try_number,
            redaction_key=b"k",
            credentials=Credentials(get_connection),
            now=collected_after(run),
        )

    return extract


def items_of(summary) -> dict[str, bytes]:
    directory = Path(summary["bundle"]) / "items"
    return {item["name"]: (directory / item["name"]).read_bytes() for item in summary["items"]}


def records(summary, name: str) -> list[dict]:
    data = items_of(summary)[name]
    return [json.loads(data)] if name.endswith(".json") else [json.loads(line) for line in data.splitlines()]


def by(rows: list[dict], column: str) -> dict:
    return {row[column]: row for row in rows}


def validate(summary, configure, run, **options):
    """The validate task's run over the staged bundle, with the shipped control map."""
    return validate_config_bundle(configure(**options), run, Bundle.load(summary["bundle"]), SOURCE, calendar_days=3)


# --- what is collected -----------------------------------------------------------------------------------------


def test_snapshot_as_superuser(extract, objects):
    summary = extract(dsn=ADMIN_DSN)
    assert {item["name"] for item in summary["items"]} == {
        "server.json",
        "roles.jsonl",
        "memberships.jsonl",
        "privileges.jsonl",
        "settings.jsonl",
        "hba_rules.jsonl",
        "extensions.jsonl",
    }

    [server] = records(summary, "server.json")
    assert server["connection"] == "postgresql://postgres@127.0.0.1:5432/test"
    assert (server["host"], server["port"], server["database"]) == ("127.0.0.1", 5432, "test")
    assert server["collecting_role"] == "postgres" and server["collecting_role_superuser"] is True
    assert server["role_passwords_readable"] is True and server["hba_rules_readable"] is True
    assert server["superuser_allow_list"] == ["postgres"]
    assert re.match(r"^\d+", server["server_version"]) and server["server_version_num"] >= 130000

    roles = by(records(summary, "roles.jsonl"), "role")
    assert roles[objects.app] == {
        "role": objects.app,
        "login": True,
        "superuser": False,
        "superuser_allowed": False,
        "create_role": False,
        "create_db": False,
        "replication": False,
        "bypass_rls": False,
        "inherit": True,
        "connection_limit": -1,
        "valid_until": "2030-01-02T03:04:05Z",
        "has_password": True,
        "password_type": "scram-sha-256",
    }
    assert (roles[objects.nopass]["has_password"], roles[objects.nopass]["password_type"]) == (False, None)
    assert roles[objects.md5]["password_type"] == "md5"
    assert roles[objects.admin]["superuser"] is True and roles[objects.admin]["superuser_allowed"] is False
    assert roles[objects.admin]["valid_until"] == "infinity"
    assert roles["postgres"]["superuser_allowed"] is True
    assert roles[objects.group]["login"] is False

    memberships = [row for row in records(summary, "memberships.jsonl") if row["role"] == objects.group]
    assert memberships == [{"role": objects.group, "member": objects.app, "grantor": "postgres", "admin_option": True}]

    table = f"{objects.schema}.accounts"
    privileges = {
        (row["grantee"], row["privilege"]): row
        for row in records(summary, "privileges.jsonl")
        if row["object"] == table
    }
    assert {("PUBLIC", "SELECT"), (objects.app, "SELECT"), (objects.app, "UPDATE")} <= set(privileges)
    assert ("postgres", "DELETE") in privileges  # the owner's privileges are listed too
    assert privileges[("PUBLIC", "SELECT")] == {
        "object_type": "table",
        "schema": objects.schema,
        "object": table,
        "owner": "postgres",
        "grantee": "PUBLIC",
        "grantor": "postgres",
        "privilege": "SELECT",
        "grantable": False,
        "default_acl": False,
    }
    schema_grants = [
        row
        for row in records(summary, "privileges.jsonl")
        if row["object"] == objects.schema and row["grantee"] != "postgres"
    ]
    assert [(row["object_type"], row["grantee"], row["privilege"]) for row in schema_grants] == [
        ("schema", objects.group, "USAGE")
    ]
    assert not any(
        row["schema"] in ("pg_catalog", "information_schema") for row in records(summary, "privileges.jsonl")
    )

    settings = by(records(summary, "settings.jsonl"), "name")
    assert settings["password_encryption"]["setting"] == "scram-sha-256"
    assert settings["ssl"]["visible"] is True and settings["ssl"]["setting"] in ("on", "off")
    assert all(row["visible"] for row in settings.values())

    hba = records(summary, "hba_rules.jsonl")
    assert hba and all(isinstance(row["line_number"], int) and isinstance(row["database"], list) for row in hba)
    assert "plpgsql" in by(records(summary, "extensions.jsonl"), "name")

    totals = Bundle.load(summary["bundle"]).reported_totals
    for name in ("roles", "memberships", "privileges", "hba_rules", "extensions"):
        assert totals[name] == len(records(summary, f"{name}.jsonl")), name


def test_unprivileged_role_records_what_it_cannot_read(extract, objects):
    """pg_authid, pg_hba_file_rules and superuser-only settings are closed to an ordinary role: said, not skipped."""
    summary = extract(dsn=f"postgresql://{objects.app}@127.0.0.1:5432/test")
    [server] = records(summary, "server.json")
    assert server["collecting_role"] == objects.app and server["collecting_role_superuser"] is False
    assert server["role_passwords_readable"] is False
    assert server["hba_rules_readable"] is False
    assert records(summary, "hba_rules.jsonl") == []
    assert Bundle.load(summary["bundle"]).reported_totals["hba_rules"] == 0
    roles = by(records(summary, "roles.jsonl"), "role")
    assert (roles[objects.app]["has_password"], roles[objects.app]["password_type"]) == (None, None)
    settings = by(records(summary, "settings.jsonl"), "name")
    assert settings["shared_preload_libraries"] == {
        "name": "shared_preload_libraries",
        "setting": None,
        "unit": None,
        "source": None,
        "visible": False,
    }
    assert settings["ssl"]["visible"] is True


# --- controls ---------------------------------------------------------------------------------------------------


def test_findings_through_validate_run(extract, objects, configure, run):
    summary = extract(dsn=ADMIN_DSN)
    outcome, findings = validate(summary, configure, run, dsn=ADMIN_DSN)
    assert outcome["status"] == "passed", outcome["failures"]  # control exceptions never fail data quality
    mine = {
        (finding["check"], json.dumps(finding["record_key"], sort_keys=True))
        for finding in findings
        if objects.prefix in json.dumps(finding["record_key"])
    }
    table = f"{objects.schema}.accounts"
    assert mine == {
        ("postgres_config.roles.superuser_allowed", json.dumps({"role": objects.admin})),
        ("postgres_config.roles.login_has_password", json.dumps({"role": objects.nopass})),
        ("postgres_config.roles.scram_passwords", json.dumps({"role": objects.md5})),
        (
            "postgres_config.privileges.no_public_grants",
            json.dumps(
                {
                    "grantee": "PUBLIC",
                    "grantor": "postgres",
                    "object": table,
                    "object_type": "table",
                    "privilege": "SELECT",
                },
                sort_keys=True,
            ),
        ),
    }
    checks = {finding["check"] for finding in findings}
    assert "postgres_config.roles.superuser_allowed" in checks
    assert not any(
        finding["check"] == "postgres_config.roles.superuser_allowed" and finding["record_key"] == {"role": "postgres"}
        for finding in findings
    )
    # The test server: trust authentication in pg_hba.conf, no TLS, connections not logged, SCRAM on.
    settings = by(records(summary, "settings.jsonl"), "name")
    assert ("postgres_config.settings.ssl_on" in checks) == (settings["ssl"]["setting"] != "on")
    assert ("postgres_config.settings.connections_logged" in checks) == (
        settings["log_connections"]["setting"] == "off"
    )
    assert ("postgres_config.settings.disconnections_logged" in checks) == (
        settings["log_disconnections"]["setting"] != "on"
    )
    assert ("postgres_config.settings.ddl_logged" in checks) == (
        settings["log_statement"]["setting"] not in ("ddl", "mod", "all")
    )
    assert "postgres_config.settings.setting_readable" not in checks  # a superuser reads every setting
    assert "postgres_config.settings.scram_password_encryption" not in checks
    # Each finding tells the owner what to do: the setting in effect, the value expected, how to fix it.
    [md5] = [finding for finding in findings if finding["check"] == "postgres_config.roles.scram_passwords"]
    assert md5["setting"] == {"password_type": "md5"}
    assert md5["expected"] == "= 'scram-sha-256'"
    assert "SCRAM" in md5["remediation"]
    trust_lines = [row["line_number"] for row in records(summary, "hba_rules.jsonl") if row["auth_method"] == "trust"]
    assert sorted(
        finding["record_key"]["line_number"]
        for finding in findings
        if finding["check"] == "postgres_config.hba_rules.no_trust_or_cleartext"
    ) == sorted(trust_lines)
    assert all(finding["controls"] for finding in findings)


def test_unreadable_evidence_becomes_findings(extract, objects, configure, run):
    dsn = f"postgresql://{objects.app}@127.0.0.1:5432/test"
    summary = extract(dsn=dsn)
    outcome, findings = validate(summary, configure, run, dsn=dsn)
    assert outcome["status"] == "passed", outcome["failures"]
    server_checks = {finding["check"] for finding in findings if finding["dataset"] == "postgres_config.server"}
    assert server_checks == {
        "postgres_config.server.role_passwords_readable",
        "postgres_config.server.hba_rules_readable",
    }
    # A setting the role could not read is a finding, never a silent pass of the check that needs it.
    unreadable = {
        finding["record_key"]["name"]
        for finding in findings
        if finding["check"] == "postgres_config.settings.setting_readable"
    }
    assert unreadable == {row["name"] for row in records(summary, "settings.jsonl") if not row["visible"]}
    assert "ssl_ciphers" in unreadable  # superuser-only (pg_read_all_settings): not vacuous


# --- connections and secrets ------------------------------------------------------------------------------------


def test_airflow_connection(extract, objects):
    requested = []

    def get_connection(conn_id):
        requested.append(conn_id)
        return SimpleNamespace(
            conn_type="postgres",
            host="127.0.0.1",
            port=5432,
            login=objects.app,
            password=CANARY_DSN_PASSWORD,
            schema="test",
            extra_dejson={"sslmode": "disable", "unrelated": "ignored"},
        )

    summary = extract(conn_id="pg_main", get_connection=get_connection)
    assert requested == ["pg_main"]
    [server] = records(summary, "server.json")
    assert server["connection"] == f"postgresql://{objects.app}@127.0.0.1:5432/test"
    assert CANARY_DSN_PASSWORD.encode() not in b"".join(items_of(summary).values())


def test_connection_of_another_type_is_refused(extract):
    def get_connection(conn_id):
        return SimpleNamespace(conn_type="mysql", extra_dejson={})

    with pytest.raises(CollectorError, match=rf"^source {SOURCE}: connection 'db' is of type 'mysql', expected"):
        extract(conn_id="db", get_connection=get_connection)


def test_no_secret_reaches_staging_or_xcom(extract, objects, configure, tmp_path):
    """The role's password (set in the server) and the DSN's password (sent by us) appear in no staged byte."""
    summary = extract(dsn=f"postgresql://postgres:{CANARY_DSN_PASSWORD}@127.0.0.1:5432/test")
    checked = 0
    for path in configure(dsn="x").staging_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in (CANARY_ROLE_PASSWORD, CANARY_DSN_PASSWORD, "SCRAM-SHA-256$", "md5-stored"):
                assert secret.encode() not in data, f"{secret} leaked into {path}"
            checked += 1
    assert checked == len(summary["items"]) + 1  # every item and bundle.json
    assert CANARY_DSN_PASSWORD not in json.dumps(summary)


def test_refused_connection_names_source_and_host(extract, configure):
    port = free_port()  # nothing listens there
    dsn = f"postgresql://postgres:{CANARY_DSN_PASSWORD}@127.0.0.1:{port}/test"
    with pytest.raises(
        CollectorError, match=rf"^source {SOURCE}: cannot connect to PostgreSQL at 127\.0\.0\.1:{port}/test: "
    ) as caught:
        extract(dsn=dsn)
    assert CANARY_DSN_PASSWORD not in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not list(configure(dsn="x").staging_dir.rglob(BUNDLE_FILE))


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({}, "set option 'conn_id' (an Airflow connection) or 'dsn'"),
        ({"dsn": ADMIN_DSN, "conn_id": "pg"}, "set only one of options 'conn_id' and 'dsn'"),
        ({"dsn": ["x"]}, "dsn: expected str | null, got array"),
        ({"dsn": ADMIN_DSN, "superusers": "postgres"}, "superusers: expected array, got str"),
        ({"dsn": ADMIN_DSN, "connect_timeout": 0}, "connect_timeout: expected int >= 1, got 0"),
        (
            {"dsn": ADMIN_DSN, "superuser": ["postgres"]},
            "superuser: unknown key 'superuser'; did you mean 'superusers'?; "
            "valid keys: conn_id, dsn, superusers, connect_timeout",
        ),
    ],
    ids=["neither", "both", "dsn-list", "superusers-string", "timeout-zero", "misspelt-key"],
)
def test_invalid_options(options, problem):
    with pytest.raises(ConfigError, match="^" + re.escape(f"source {SOURCE}: {problem}") + "$"):
        source_config(SOURCE, KIND, options)


def test_malformed_dsn(extract):
    """A DSN libpq cannot parse is found when connecting; the message never quotes it (it may hold a password)."""
    dsn = f"host=127.0.0.1 password={CANARY_DSN_PASSWORD} oops"
    problem = "option 'dsn': not a valid PostgreSQL connection string"
    with pytest.raises(CollectorError, match="^" + re.escape(f"source {SOURCE}: {problem}") + "$"):
        extract(dsn=dsn)


def test_hba_options_with_secrets_are_redacted():
    """pg_hba.conf options can carry an LDAP bind password or a RADIUS secret; the writer's redactor catches both.

    The test server's pg_hba.conf cannot be changed from a test, so the rows are given here as the view returns them.
    """
    row = {"options": ["ldapserver=ldap.internal", "ldapbindpasswd=CanaryLdap0001", 'radiussecrets="CanaryRadius0001"']}
    text = json.dumps(Redactor(b"k").redact_value(row))
    assert "CanaryLdap0001" not in text and "CanaryRadius0001" not in text
    assert "ldapserver=ldap.internal" in text


# --- determinism ------------------------------------------------------------------------------------------------


def test_unchanged_server_gives_identical_items(extract, objects):
    first = extract(dsn=ADMIN_DSN, try_number=1)
    second = extract(dsn=ADMIN_DSN, try_number=2)
    assert first["bundle"] != second["bundle"]
    assert first["items"] == second["items"]
