"""Secret redaction: every detector, secret-named fields, fingerprints, placeholders, idempotence, counts."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import Counter

import pytest

from conftest import bundle_writer
from soc2_evidence.core.redaction import DETECTORS, MARKER_PATTERN, Redactor, UnscannableContent, is_secret_key_name

KEY = b"test-redaction-key"
HEX16 = r"[0-9a-f]{16}"


def marker_re(detector: str) -> str:
    return rf"\[REDACTED:{detector}:{HEX16}\]"


def expected_marker(detector: str, secret: str, key: bytes = KEY) -> str:
    fingerprint = hmac.new(key, secret.encode("utf-8"), hashlib.sha256).hexdigest()[:16]
    return f"[REDACTED:{detector}:{fingerprint}]"


# --- detectors ----------------------------------------------------------------------------

_KEY_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\nq5Zs0dn4mK1u7Bq8kCanaryKeyBody0123456789abcd\n"


def _pem(label: str, body: str = _KEY_BODY) -> str:
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----"


# (detector, text, secret, what must remain around the marker)
DETECTOR_CASES = [
    pytest.param("private_key", _pem("PRIVATE KEY"), _pem("PRIVATE KEY"), [], id="private_key-pkcs8"),
    pytest.param(
        "private_key",
        "key: |\n  " + _pem("RSA PRIVATE KEY").replace("\n", "\n  ") + "\nnext: value\n",
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7",
        ["key: |\n  ", "\nnext: value\n"],
        id="private_key-rsa-multiline-indented",
    ),
    pytest.param(
        "private_key",
        "before\n" + _pem("OPENSSH PRIVATE KEY", "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n") + "\nafter",
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ",
        ["before\n", "\nafter"],
        id="private_key-openssh",
    ),
    pytest.param(
        "private_key",
        _pem("EC PRIVATE KEY", "MHcCAQEEIDanglingEcCanary0x\n"),
        "MHcCAQEEIDanglingEcCanary0x",
        [],
        id="private_key-ec",
    ),
    pytest.param(
        "private_key",
        _pem("ENCRYPTED PRIVATE KEY", "MIIFHDBOBgkqhkiG9w0BBQ0wQTApEncCanary\n"),
        "MIIFHDBOBgkqhkiG9w0BBQ0wQTApEncCanary",
        [],
        id="private_key-encrypted",
    ),
    pytest.param(
        "url_password",
        "url: postgresql://payments:S3cr3t-Pw@db.internal:5432/payments",
        "S3cr3t-Pw",
        ["url: postgresql://payments:", "@db.internal:5432/payments"],
        id="url_password-postgres",
    ),
    pytest.param(
        "url_password",
        "remote = https://ci-bot:ghp_canaryCanary123@github.example/org/repo.git",
        "ghp_canaryCanary123",
        ["remote = https://ci-bot:", "@github.example/org/repo.git"],
        id="url_password-https",
    ),
    pytest.param(
        "url_password",
        "BROKER=amqp+ssl://guest:Gu3st%21pw@rabbit:5671/vhost",
        "Gu3st%21pw",
        ["BROKER=amqp+ssl://guest:", "@rabbit:5671/vhost"],
        id="url_password-percent-encoded",
    ),
    pytest.param(
        "aws_access_key_id",
        "access_key_id: AKIAIOSFODNN7EXAMPLE\n",
        "AKIAIOSFODNN7EXAMPLE",
        ["access_key_id: ", "\n"],
        id="aws_access_key_id-akia",
    ),
    pytest.param(
        "aws_access_key_id",
        '{"AccessKeyId": "ASIAY34FZKBOKMUTVV7A"}',
        "ASIAY34FZKBOKMUTVV7A",
        ['{"AccessKeyId": "', '"}'],
        id="aws_access_key_id-asia-json",
    ),
    pytest.param(
        "aws_secret_access_key",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ["aws_secret_access_key = ", "\n"],
        id="aws_secret_access_key-ini",
    ),
    pytest.param(
        "aws_secret_access_key",
        "export AWS_SECRET_ACCESS_KEY=je7MtGbClwBF+2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
        "je7MtGbClwBF+2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
        ["export AWS_SECRET_ACCESS_KEY="],
        id="aws_secret_access_key-env",
    ),
    pytest.param(
        "aws_secret_access_key",
        '"awsSecretKey": "Zb3d4RkL9mN2pQ7sT1vW5xY8zA0cE6gH/jK+oP3=",',
        "Zb3d4RkL9mN2pQ7sT1vW5xY8zA0cE6gH/jK+oP3=",
        ['"awsSecretKey": "', '",'],
        id="aws_secret_access_key-json-quoted",
    ),
    pytest.param(
        "secret_assignment",
        "password: hunter2canary\n",
        "hunter2canary",
        ["password: ", "\n"],
        id="secret_assignment-colon",
    ),
    pytest.param(
        "secret_assignment",
        "DB_PASSWORD=hunter2canary\n",
        "hunter2canary",
        ["DB_PASSWORD=", "\n"],
        id="secret_assignment-equals-env",
    ),
    pytest.param(
        "secret_assignment",
        'password = "hunter2canary"',
        "hunter2canary",
        ['password = "', '"'],
        id="secret_assignment-double-quoted",
    ),
    pytest.param(
        "secret_assignment",
        "password: 'hunter2canary'",
        "hunter2canary",
        ["password: '", "'"],
        id="secret_assignment-single-quoted",
    ),
    pytest.param(
        "secret_assignment",
        '{"api_key": "ak_live_canary123", "region": "eu"}',
        "ak_live_canary123",
        ['{"api_key": "', '", "region": "eu"}'],
        id="secret_assignment-json-key",
    ),
    pytest.param(
        "secret_assignment",
        "  client_secret: cs-canary-999\n",
        "cs-canary-999",
        ["  client_secret: ", "\n"],
        id="secret_assignment-client_secret",
    ),
    pytest.param(
        "secret_assignment",
        "ssh_passphrase=pp-canary; other=1",
        "pp-canary",
        ["ssh_passphrase=", "; other=1"],
        id="secret_assignment-passphrase-stops-at-semicolon",
    ),
    pytest.param(
        "secret_assignment",
        "GITHUB_TOKEN: ghs_canaryCanaryCanary",
        "ghs_canaryCanaryCanary",
        ["GITHUB_TOKEN: "],
        id="secret_assignment-uppercase",
    ),
]


def test_every_case_names_a_detector():
    """Every detector and provider format has corpus cases too (tests/test_secret_corpus.py)."""
    tested = {param.values[0] for param in DETECTOR_CASES}
    assert tested <= {detector.name for detector in DETECTORS}


@pytest.mark.parametrize(("detector", "text", "secret", "kept"), DETECTOR_CASES)
def test_detector_redacts(detector, text, secret, kept):
    redactor = Redactor(KEY)
    out = redactor.redact_text(text)
    assert secret not in out
    assert re.search(marker_re(detector), out), out
    for fragment in kept:
        assert fragment in out
    assert redactor.counts == Counter({detector: 1})
    # Every marker in the output is a well-formed marker.
    for found in re.findall(r"\[REDACTED[^\]]*\]", out):
        assert MARKER_PATTERN.fullmatch(found)


@pytest.mark.parametrize(("detector", "text", "secret", "kept"), DETECTOR_CASES)
def test_detector_redaction_is_idempotent(detector, text, secret, kept):
    once = Redactor(KEY).redact_text(text)
    again = Redactor(KEY)
    assert again.redact_text(once) == once
    assert not again.counts
    unkeyed = Redactor().redact_text(text)
    again_unkeyed = Redactor()
    assert again_unkeyed.redact_text(unkeyed) == unkeyed
    assert not again_unkeyed.counts


def test_private_key_marker_fingerprints_the_whole_block():
    pem = _pem("RSA PRIVATE KEY")
    assert Redactor(KEY).redact_text(f"x\n{pem}\ny") == f"x\n{expected_marker('private_key', pem)}\ny"


def test_two_private_keys_are_redacted_separately_and_text_between_is_kept():
    first, second = _pem("RSA PRIVATE KEY", "Zmlyc3Q=\n"), _pem("EC PRIVATE KEY", "c2Vjb25k\n")
    redactor = Redactor(KEY)
    out = redactor.redact_text(f"{first}\nbetween: kept\n{second}\n")
    assert out == f"{expected_marker('private_key', first)}\nbetween: kept\n{expected_marker('private_key', second)}\n"
    assert redactor.counts == Counter({"private_key": 2})


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----", id="certificate"),
        pytest.param("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYI\n-----END PUBLIC KEY-----", id="public-key"),
        pytest.param("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMq user@host", id="ssh-public-key"),
        pytest.param("url: https://github.example/org/repo.git", id="url-without-userinfo"),
        pytest.param("url: https://deploy@github.example/org/repo.git", id="url-user-without-password"),
        pytest.param("url: https://host:8443/path@x", id="url-port-then-path"),
        pytest.param("id: AKIASHORT123", id="short-akia"),
        pytest.param("sha: 0123456789abcdef0123456789abcdef01234567", id="git-sha"),
        pytest.param("password_encryption = scram-sha-256", id="password_encryption-setting"),
        pytest.param("token_type: bearer", id="token_type-setting"),
        pytest.param("min_password_length: 14", id="password_length-setting"),
        pytest.param("# rotate the password every 90 days", id="prose"),
        pytest.param("require_mfa: true\nsession_timeout_minutes: 15", id="plain-settings"),
    ],
)
def test_non_secrets_are_kept(text):
    redactor = Redactor(KEY)
    assert redactor.redact_text(text) == text
    assert not redactor.counts


def test_counts_per_detector_in_mixed_text():
    text = "\n".join(
        [
            _pem("OPENSSH PRIVATE KEY", "b3BlbnNzaA==\n"),
            "primary: postgres://app:pw-one@db1/app",
            "replica: postgres://app:pw-two@db2/app",
            "key_id: AKIAIOSFODNN7EXAMPLE",
            "other_key_id: AKIAI44QH8DHBEXAMPLE",
            "aws_secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "password: one",
            "api_key=two",
            'token = "three"',
            "password_policy: strict",
        ]
    )
    redactor = Redactor(KEY)
    out = redactor.redact_text(text)
    assert redactor.counts == Counter(
        {
            "private_key": 1,
            "url_password": 2,
            "aws_access_key_id": 2,
            "aws_secret_access_key": 1,
            "secret_assignment": 3,
        }
    )
    assert len(MARKER_PATTERN.findall(out)) == 9
    assert "password_policy: strict" in out
    # Counts accumulate across calls on one redactor.
    redactor.redact_text("password: four")
    assert redactor.counts["secret_assignment"] == 4


# --- fingerprints -------------------------------------------------------------------------


def test_marker_fingerprint_is_a_keyed_hmac():
    assert Redactor(KEY).marker("secret_field", "hunter2") == expected_marker("secret_field", "hunter2")
    assert re.fullmatch(marker_re("secret_field"), Redactor(KEY).marker("secret_field", "hunter2"))


def test_fingerprint_is_stable_for_same_key_and_secret():
    text = "password: hunter2"
    assert Redactor(KEY).redact_text(text) == Redactor(KEY).redact_text(text)
    assert Redactor(KEY).redact_value({"password": "hunter2"}) == Redactor(KEY).redact_value({"password": "hunter2"})


def test_fingerprint_changes_when_the_secret_rotates():
    before = Redactor(KEY).redact_text("password: hunter2")
    after = Redactor(KEY).redact_text("password: hunter3")
    assert before != after
    assert before.startswith("password: [REDACTED:secret_assignment:")
    assert after.startswith("password: [REDACTED:secret_assignment:")


def test_fingerprint_differs_with_another_key():
    assert Redactor(KEY).redact_text("password: hunter2") != Redactor(b"another key").redact_text("password: hunter2")


def test_fingerprint_depends_on_the_secret_not_its_detector_context():
    # Same secret, same detector, different surroundings: same marker.
    first = Redactor(KEY).redact_text("password: hunter2")
    second = Redactor(KEY).redact_text("db_password = hunter2")
    assert first.split(": ", 1)[1] == second.split(" = ", 1)[1] == expected_marker("secret_assignment", "hunter2")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("password: hunter2", "password: [REDACTED:secret_assignment]"),
        ("postgres://u:pw@h/db", "postgres://u:[REDACTED:url_password]@h/db"),
        ("AKIAIOSFODNN7EXAMPLE", "[REDACTED:aws_access_key_id]"),
    ],
    ids=["secret_assignment", "url_password", "aws_access_key_id"],
)
def test_no_key_means_no_fingerprint(text, expected):
    assert Redactor().redact_text(text) == expected
    assert Redactor().redact_value({"password": "hunter2"}) == {"password": "[REDACTED:secret_field]"}
    assert MARKER_PATTERN.fullmatch("[REDACTED:secret_field]")


# --- redact_value ---------------------------------------------------------------------------


def test_redact_value_nested_structures():
    value = {
        "service": "payments",
        "database": {
            "password": "db-canary-pw",
            "password_encryption": "scram-sha-256",
            "password_policy": "strong",
            "passwords_enabled": True,
            "password_min_length": 14,
            "hosts": ["postgres://app:url-canary-pw@db1/app", "db2"],
        },
        "users": [
            {"name": "alice", "api_key": "ak-canary-1", "token_type": "bearer"},
            {"name": "bob", "Token": "tok-canary-2", "token_expiry": "2026-12-01"},
        ],
        "oauth": {"client_id": "app-123", "client_secret": "cs-canary-3"},
        "retries": 3,
        "ratio": 0.5,
        "nothing": None,
    }
    redactor = Redactor(KEY)
    out = redactor.redact_value(value)
    assert out == {
        "service": "payments",
        "database": {
            "password": expected_marker("secret_field", "db-canary-pw"),
            "password_encryption": "scram-sha-256",
            "password_policy": "strong",
            "passwords_enabled": True,
            "password_min_length": 14,
            "hosts": [f"postgres://app:{expected_marker('url_password', 'url-canary-pw')}@db1/app", "db2"],
        },
        "users": [
            {"name": "alice", "api_key": expected_marker("secret_field", "ak-canary-1"), "token_type": "bearer"},
            {"name": "bob", "Token": expected_marker("secret_field", "tok-canary-2"), "token_expiry": "2026-12-01"},
        ],
        "oauth": {"client_id": "app-123", "client_secret": expected_marker("secret_field", "cs-canary-3")},
        "retries": 3,
        "ratio": 0.5,
        "nothing": None,
    }
    assert redactor.counts == Counter({"secret_field": 4, "url_password": 1})
    assert "canary" not in repr(out)
    assert value["database"]["password"] == "db-canary-pw", "the input must not be modified"


@pytest.mark.parametrize(
    "key_name",
    [
        "password",
        "PASSWORD",
        "db_password",
        "passwd",
        "passphrase",
        "pwd",
        "secret",
        "client_secret",
        "Token",
        "access_token",
        "api_key",
        "apiKey",
        "api-key",
        "private_key",
        "credentials",
        "credential",
    ],
)
def test_redact_value_secret_key_names(key_name):
    redactor = Redactor(KEY)
    assert redactor.redact_value({key_name: "s3cr3t-value"}) == {
        key_name: expected_marker("secret_field", "s3cr3t-value")
    }
    assert redactor.counts == Counter({"secret_field": 1})


@pytest.mark.parametrize(
    ("key_name", "value"),
    [
        ("password_encryption", "scram-sha-256"),
        ("token_type", "bearer"),
        ("password_policy", "complex"),
        ("passwords_enabled", True),
        ("passwords_enabled", "true"),
        ("password_expiry_days", "90"),
        ("password_min_length", "14"),
        ("password_reuse_prevention", "24"),
        ("secret_rotation", "30d"),
        ("token_count", "2"),
        ("password_required", "yes"),
        ("secret_status", "Active"),
        ("token_last_used_at", "2026-11-01"),
        ("api_key_id", "key-1"),
        ("max_password_age", "90"),
        ("hostname", "db.internal"),
        ("username", "app"),
    ],
)
def test_redact_value_keeps_settings_about_secrets(key_name, value):
    redactor = Redactor(KEY)
    assert redactor.redact_value({key_name: value}) == {key_name: value}
    assert not redactor.counts


def test_redact_value_list_under_secret_key_redacts_each_item():
    redactor = Redactor(KEY)
    assert redactor.redact_value({"passwords": ["one", ("two",)]}) == {
        "passwords": [expected_marker("secret_field", "one"), [expected_marker("secret_field", "two")]]
    }
    assert redactor.counts == Counter({"secret_field": 2})


def test_redact_value_top_level_scalars():
    redactor = Redactor(KEY)
    assert redactor.redact_value("password=hunter2") == f"password={expected_marker('secret_assignment', 'hunter2')}"
    assert redactor.redact_value(42) == 42
    assert redactor.redact_value(None) is None
    assert redactor.redact_value("hunter2", key_name="password") == expected_marker("secret_field", "hunter2")


def test_redact_value_patterns_apply_under_any_key():
    redactor = Redactor(KEY)
    out = redactor.redact_value({"notes": "rotated AKIAIOSFODNN7EXAMPLE today", "subject": "set password: hunter2"})
    assert out == {
        "notes": f"rotated {expected_marker('aws_access_key_id', 'AKIAIOSFODNN7EXAMPLE')} today",
        "subject": f"set password: {expected_marker('secret_assignment', 'hunter2')}",
    }
    assert redactor.counts == Counter({"aws_access_key_id": 1, "secret_assignment": 1})


def test_redact_value_numeric_secret_under_secret_key():
    out = Redactor(KEY).redact_value({"password": 12345678, "pin_password": 4711})
    assert 12345678 not in out.values() and 4711 not in out.values()


def test_redact_value_mapping_under_secret_key():
    out = Redactor(KEY).redact_value({"credentials": {"prod": "hunter2-canary"}})
    assert "hunter2-canary" not in repr(out)


# --- placeholders --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "placeholder",
    ["${DB_PASSWORD}", "{{ var }}", "{{ vault('db/password') }}", "<changeme>", "***", "", "  ${X}  "],
    ids=["env-var", "jinja", "jinja-call", "angle", "stars", "empty", "padded-env-var"],
)
def test_redact_value_keeps_placeholders(placeholder):
    redactor = Redactor(KEY)
    assert redactor.redact_value({"password": placeholder}) == {"password": placeholder}
    assert not redactor.counts


@pytest.mark.parametrize(
    "text",
    [
        "password: ${DB_PASSWORD}",
        "DB_PASSWORD=${DB_PASSWORD}",
        "password={{var}}",
        'password: "{{ var }}"',
        "password: '{{ vault.db_password }}'",
        "password: <changeme>",
        "password: ***",
        "postgres://app:${DB_PASSWORD}@db/app",
    ],
)
def test_redact_text_keeps_placeholders(text):
    redactor = Redactor(KEY)
    assert redactor.redact_text(text) == text
    assert not redactor.counts


def test_redact_text_keeps_unquoted_jinja_placeholder():
    redactor = Redactor(KEY)
    assert redactor.redact_text("password: {{ var }}") == "password: {{ var }}"
    assert not redactor.counts


# --- known gaps (secrets that leak) -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ('password: "correct horse battery staple"', "horse battery"),
        ('password: "abc#canary"', "canary"),
        ("secret = 'a,canary'", "canary"),
    ],
    ids=["spaces", "hash", "comma"],
)
def test_quoted_secret_with_separator_characters(text, secret):
    assert secret not in Redactor(KEY).redact_text(text)


def test_url_password_with_empty_user():
    assert "redis-canary-pw" not in Redactor(KEY).redact_text("REDIS_URL=redis://:redis-canary-pw@cache:6379/0")


@pytest.mark.parametrize(
    "text",
    ["SECRET_KEY = 'django-insecure-canary'", "secret_key_base: canary0123", "JWT_SECRET_KEY=canary0123"],
    ids=["django", "rails", "jwt"],
)
def test_secret_key_style_names_in_text(text):
    assert "canary" not in Redactor(KEY).redact_text(text)


@pytest.mark.parametrize(
    "text",
    ["token => 'tok_canary_42'", '{"password" => "tok_canary_42"}', "password => tok_canary_42"],
    ids=["perl-quoted", "ruby-string-key", "unquoted"],
)
def test_fat_arrow_assignment(text):
    redactor = Redactor(KEY)
    out = redactor.redact_text(text)
    assert "tok_canary_42" not in out
    assert "=>" in out
    assert redactor.counts == Counter({"secret_assignment": 1})


# --- idempotence of redact_value ---------------------------------------------------------------


def test_redact_value_pattern_output_is_idempotent():
    value = {"notes": ["postgres://u:pw@h/db", "AKIAIOSFODNN7EXAMPLE"], "cfg": "token=abc"}
    once = Redactor(KEY).redact_value(value)
    again = Redactor(KEY)
    assert again.redact_value(once) == once
    assert not again.counts


@pytest.mark.parametrize("key", [KEY, None], ids=["keyed", "unkeyed"])
def test_redact_value_secret_field_output_is_idempotent(key):
    once = Redactor(key).redact_value({"password": "hunter2", "db": {"api_key": "k"}})
    again = Redactor(key)
    assert again.redact_value(once) == once
    assert not again.counts


# --- documents: structured first, the text kept as it was ---------------------------------------------


def test_redact_document_replaces_only_the_values_where_they_stand():
    text = (
        "service: api  # the public one\n"
        "credentials:\n"
        "  prod: pw-one-canary\n"
        "  staging: 'pw-two-canary'\n"
        "signing_secret: |\n"
        "  line-one-canary\n"
        "  line-two-canary\n"
        "max_tokens: 4096\n"
    )
    redactor = Redactor(KEY)
    out = redactor.redact_document("app.yaml", text)
    assert out == (
        "service: api  # the public one\n"
        "credentials:\n"
        f"  prod: {expected_marker('secret_field', 'pw-one-canary')}\n"
        f"  staging: '{expected_marker('secret_field', 'pw-two-canary')}'\n"
        "signing_secret: |\n"
        f"  {expected_marker('secret_field', 'line-one-canary' + chr(10) + 'line-two-canary' + chr(10))}\n"
        "max_tokens: 4096\n"
    )
    assert redactor.counts == Counter({"secret_field": 3})


@pytest.mark.parametrize(
    ("path", "text", "reason"),
    [
        ("conf/app.yaml", "password: x\n  bad: [\n", "not valid YAML (line 2)"),
        ("conf/app.json", '{"token": "x",}', "not valid JSON (line 1)"),
        ("conf/.env", "API_TOKEN=x\nnot an assignment\n", "not a .env file: line 2 is not NAME=value"),
        ("conf/app.toml", 'password = "x\n', "not valid TOML"),
        ("conf/web.config", "<add key='Password' value='x'>", "not valid XML (line 1)"),
        ("home/.pgpass", "db:5432:app\n", "not a .pgpass file: line 1 has fewer than 5 fields"),
    ],
)
def test_unparseable_document_is_unscannable_and_counts_nothing(path, text, reason):
    redactor = Redactor(KEY)
    redactor.counts["earlier"] = 1
    with pytest.raises(UnscannableContent) as raised:
        redactor.redact_document(path, text)
    assert raised.value.reason.startswith(reason)
    assert "x" not in raised.value.reason.replace(reason, "")
    assert redactor.counts == Counter({"earlier": 1})


def test_add_document_writes_nothing_for_unscannable_content(tmp_path, run_context):
    writer = bundle_writer(tmp_path, run_context, family="config", source="repo", kind="tests", redactor=Redactor(KEY))
    with pytest.raises(UnscannableContent):
        writer.add_document("files/app.yaml", "password: [unclosed\n", path="app.yaml")
    item = writer.add_document("files/ok.yaml", "password: fine-canary\n", path="ok.yaml")
    bundle = writer.finish()
    assert [staged.item.name for staged in bundle.items] == [item.name]
    assert not (writer.directory / "items" / "files" / "app.yaml").exists()
    assert "fine-canary" not in bundle.items[0].path.read_text()


@pytest.mark.parametrize(
    "name",
    ["max_tokens", "tokenizer", "token_ttl_seconds", "secretary_email", "compass_heading", "github_token_scopes",
     "bypass_cache", "passport_number", "keyboard_layout", "primary_key", "auth_scheme", "secretKeyRef",
     "PuTTY-User-Key-File-3"],
)  # fmt: skip
def test_names_that_do_not_name_a_secret(name):
    assert not is_secret_key_name(name)


@pytest.mark.parametrize(
    "name",
    ["API.KEY", "access-key", "auth", "secret key", "STRIPE_KEY", "apiKey", "_authToken", "requirepass", "bindpw",
     "ClientSecret", "db_password2", "identitytoken", "tls.key", "X-API-Key"],
)  # fmt: skip
def test_names_that_name_a_secret(name):
    assert is_secret_key_name(name)


@pytest.mark.parametrize("value", ["true", "False", "", "  ", "${DB_PASSWORD}", "${{ secrets.X }}", "$DB_PASSWORD",
                                   "changeme", "<your-token>", "%(password)s", "xxxxxx", "null"])  # fmt: skip
def test_values_never_redacted(value):
    assert Redactor(KEY).redact_document("app.yaml", f"password: {value}\n") == f"password: {value}\n"
