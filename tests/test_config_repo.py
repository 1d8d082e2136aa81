"""The config_repo collector, end to end through ``pipeline.extract_source`` on real git repositories."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import re
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import git, make_repo, write_pipeline_config
from soc2_evidence.collectors import load_config
from soc2_evidence.collectors.config_repo import glob_to_regex
from soc2_evidence.core.credentials import Credentials
from soc2_evidence.core.errors import CollectorError, ConfigError, TransientCollectorError, is_transient
from soc2_evidence.core.evidence import RunContext, parse_rfc3339
from soc2_evidence.core.staging import BUNDLE_FILE, Bundle
from soc2_evidence.orchestration.pipeline import extract_source

SOURCE = "app-config"
BINARY = "binary (contains NUL bytes); binary content cannot be scanned for secrets, so it is not archived"
NOT_UTF8 = "not UTF-8 text; content that cannot be decoded cannot be scanned, so it is not archived"
COMPRESSED = "compressed; compressed content cannot be scanned for secrets, so it is not archived"
KEY = b"k"

# Canary secrets, one (or more) per detector; none may reach staging or XCom.
CANARY_PEM_BODY = "Q0FOQVJZLVBSSVZBVEUtS0VZLUJPRFktMDAwMQ"
CANARY_URL_PASSWORD = "CanaryUrlPw0001"
CANARY_ACCESS_KEY_ID = "AKIACANARY0000000001"
CANARY_SECRET_ACCESS_KEY = "CanaryAwsSecretKey" + "0" * 21 + "1"
CANARY_PASSWORD = "CanaryPassword0001"
CANARY_API_KEY = "CanaryApiKey0001"
CANARY_TOKEN = "CanaryToken0001"
CANARY_ENV_PASSWORD = "CanaryEnvPw0001"
CANARY_JSON_SECRET = "CanaryJsonSecret0001"
CANARY_COMMIT = "CanaryCommitPw0001"
CANARIES = [
    CANARY_PEM_BODY,
    CANARY_URL_PASSWORD,
    CANARY_ACCESS_KEY_ID,
    CANARY_SECRET_ACCESS_KEY,
    CANARY_PASSWORD,
    CANARY_API_KEY,
    CANARY_TOKEN,
    CANARY_ENV_PASSWORD,
    CANARY_JSON_SECRET,
    CANARY_COMMIT,
]

SECRET_FILES = {
    "app.yaml": (
        "service: payments\n"
        "database:\n"
        f"  url: postgresql://payments:{CANARY_URL_PASSWORD}@db.internal:5432/payments\n"
        f'  password: "{CANARY_PASSWORD}"\n'
        "  password_encryption: scram-sha-256\n"
        "aws:\n"
        f"  access_key_id: {CANARY_ACCESS_KEY_ID}\n"
        f"  aws_secret_access_key: {CANARY_SECRET_ACCESS_KEY}\n"
        f"api_key: {CANARY_API_KEY}\n"
        "features:\n"
        "  require_mfa: true\n"
    ),
    "keys/deploy-key.pem": (
        f"-----BEGIN OPENSSH PRIVATE KEY-----\n{CANARY_PEM_BODY}\n{CANARY_PEM_BODY[::-1]}\n"
        "-----END OPENSSH PRIVATE KEY-----\n"
    ),
    ".env": f"DB_PASSWORD={CANARY_ENV_PASSWORD}\nGITHUB_TOKEN='{CANARY_TOKEN}'\nLOG_LEVEL=info\n",
    "conf/settings.json": json.dumps({"client_secret": CANARY_JSON_SECRET, "timeout": 30}, indent=2) + "\n",
    "README.md": "# Config\nNothing secret here.\n",
}


@pytest.fixture(autouse=True)
def _no_environment_overrides(monkeypatch):
    """The config written by each test decides the store and staging, not the caller's environment."""
    for name in ("EVIDENCE_STORE", "EVIDENCE_CONFIG", "EVIDENCE_STAGING"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def configure(tmp_path):
    """Write a config with one config_repo source and load it: ``configure(repo=..., **options)``."""

    def configure(**options):
        source = {"name": SOURCE, "kind": "config_repo", "family": "config", **options}
        return load_config(write_pipeline_config(tmp_path, [source], path=tmp_path / "config" / "evidence.yaml"))

    return configure


@pytest.fixture
def extract(configure, run_context):
    """Run the collector like the extract task does; returns the XCom summary."""

    def extract(run=None, try_number=1, get_connection=None, **options):
        config = configure(**options)
        return extract_source(
            config,
            SOURCE,
            run or run_context,
            try_number=try_number,
            redaction_key=KEY,
            credentials=Credentials(get_connection),
        )

    return extract


def items_of(summary) -> dict[str, bytes]:
    bundle = Path(summary["bundle"])
    return {item["name"]: (bundle / "items" / item["name"]).read_bytes() for item in summary["items"]}


def read_json_item(summary, name):
    return json.loads((Path(summary["bundle"]) / "items" / name).read_bytes())


def marker(detector: str, secret: str) -> str:
    return f"[REDACTED:{detector}:{hmac.new(KEY, secret.encode(), hashlib.sha256).hexdigest()[:16]}]"


# --- commit.json ----------------------------------------------------------------------------


def test_commit_json(tmp_path, extract):
    repo = make_repo(tmp_path / "repo", {"app.yaml": "a: 1\n"})
    summary = extract(repo=str(repo))
    commit = read_json_item(summary, "commit.json")
    assert commit["commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert commit["tree"] == git(repo, "rev-parse", "HEAD^{tree}").strip()
    assert commit["ref"] == "HEAD"
    assert commit["repository"] == str(repo.resolve())
    assert commit["subject"] == "config snapshot fixture"
    for role in ("author", "committer"):
        assert commit[role]["name"] == "Test Author"
        assert commit[role]["email"] == "author@example.test"
        assert parse_rfc3339(commit[role]["time"]) == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert commit["signature"] == {"status": "none", "key": None, "signer": None}
    assert set(commit) == {"repository", "ref", "commit", "tree", "author", "committer", "subject", "signature"}


def test_commit_signature_as_git_verifies_it(tmp_path, extract, monkeypatch):
    """A gpg-signed commit is "good" with the signer's key in the keyring, "cannot-check" without it."""
    signing_home, empty_home = tmp_path / "gnupg", tmp_path / "gnupg-empty"
    for home in (signing_home, empty_home):
        home.mkdir(mode=0o700)
    monkeypatch.setenv("GNUPGHOME", str(signing_home))
    try:
        subprocess.run(
            [
                "gpg",
                "--batch",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--quick-gen-key",
                "Test Author <author@example.test>",
                "ed25519",
                "sign",
                "never",
            ],
            check=True,
            capture_output=True,
        )
        repo = tmp_path / "repo"
        repo.mkdir()
        git(repo, "init", "-q", "-b", "main")
        (repo / "app.yaml").write_text("a: 1\n")
        git(repo, "add", "-A")
        git(repo, "-c", "commit.gpgsign=true", "commit", "-q", "-m", "signed")
        signed = read_json_item(extract(repo=str(repo), try_number=1), "commit.json")["signature"]
        monkeypatch.setenv("GNUPGHOME", str(empty_home))
        unverifiable = read_json_item(extract(repo=str(repo), try_number=2), "commit.json")["signature"]
    finally:
        for home in (signing_home, empty_home):
            subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)
    assert signed["status"] == "good"
    assert signed["signer"] == "Test Author <author@example.test>"
    assert re.fullmatch(r"[0-9A-F]{16}", signed["key"])
    assert unverifiable == {"status": "cannot-check", "key": signed["key"], "signer": None}


def test_relative_repo_path_resolves_against_the_config_file(tmp_path, extract, monkeypatch):
    repo = make_repo(tmp_path / "repo", {"app.yaml": "a: 1\n"})
    monkeypatch.chdir(tmp_path / "repo")  # the working directory must not matter
    summary = extract(repo="../repo")  # the config lives in tmp_path/config
    assert read_json_item(summary, "commit.json")["repository"] == str(repo.resolve())


# --- files.json -------------------------------------------------------------------------------


def test_files_json_lists_every_file_with_blob_ids(tmp_path, extract):
    files = {
        "app.yaml": "service: payments\n",
        "conf/db.yaml": "pool: 20\n",
        "conf/nested/deep.ini": "[x]\ny=1\n",
        "my config.yaml": "spaces: true\n",
        "unicode/zoë.txt": "naïve\n",
        "empty.txt": "",
    }
    repo = make_repo(tmp_path / "repo", files)
    summary = extract(repo=str(repo))
    listing = read_json_item(summary, "files.json")
    assert listing["commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert listing["globs"] == ["**"]
    by_path = {record["path"]: record for record in listing["files"]}
    assert set(by_path) == set(files)
    staged = items_of(summary)
    for path, content in files.items():
        record = by_path[path]
        assert record["blob"] == git(repo, "rev-parse", f"HEAD:{path}").strip()
        assert record["mode"] == "100644"
        assert record["size"] == len(content.encode())
        assert record["archived"] is True
        assert staged[record["item"]] == content.encode()
    assert by_path["my config.yaml"]["item"] == "files/my_config.yaml"
    assert by_path["conf/nested/deep.ini"]["item"] == "files/conf/nested/deep.ini"
    # Items: the commit, one per archived file, and the listing.
    assert sorted(item["name"] for item in summary["items"]) == sorted(
        ["commit.json", "files.json", *(record["item"] for record in listing["files"])]
    )
    bundle = Bundle.load(summary["bundle"])
    assert bundle.reported_totals == {"files": len(files)}
    assert bundle.kind == "config_repo" and bundle.family == "config" and bundle.source == SOURCE


def test_executable_mode_is_recorded(tmp_path, extract):
    repo = make_repo(tmp_path / "repo", {"deploy.sh": "#!/bin/sh\necho hi\n"})
    (repo / "deploy.sh").chmod(0o755)
    git(repo, "add", "deploy.sh")
    git(repo, "commit", "-q", "-m", "make executable")
    (record,) = read_json_item(extract(repo=str(repo)), "files.json")["files"]
    assert record["mode"] == "100755"


@pytest.mark.parametrize(
    ("content", "why"),
    [
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", BINARY, id="nul-byte"),
        pytest.param(b"\xff\xfecaf\xe9\n", NOT_UTF8, id="invalid-utf8"),
        pytest.param("café".encode("latin-1"), NOT_UTF8, id="latin-1"),
        pytest.param(b"text then \x00 nul", BINARY, id="text-with-nul"),
        pytest.param(gzip.compress(b"password: hunter2\n", mtime=0), "gzip-" + COMPRESSED, id="gzip"),
        pytest.param(b"PK\x03\x04" + b"password: hunter2\n", "zip-" + COMPRESSED, id="zip"),
        pytest.param(b"BZh91AY&SY", "bzip2-" + COMPRESSED, id="bzip2"),
        pytest.param(b"\xfd7zXZ\x00\x00", "xz-" + COMPRESSED, id="xz"),
        pytest.param(b"\x28\xb5\x2f\xfd\x00", "zstd-" + COMPRESSED, id="zstd"),
    ],
)
def test_binary_files_are_listed_but_not_archived(tmp_path, extract, content, why):
    """Binary, undecodable and compressed content is listed with its size, blob id, sha256 and
    why, unarchived and marked unscanned, so the credentials control cannot pass over it."""
    repo = make_repo(tmp_path / "repo", {"blob.bin": content, "ok.txt": "fine\n"})
    summary = extract(repo=str(repo))
    by_path = {record["path"]: record for record in read_json_item(summary, "files.json")["files"]}
    record = by_path["blob.bin"]
    assert record == {
        "path": "blob.bin",
        "blob": git(repo, "rev-parse", "HEAD:blob.bin").strip(),
        "mode": "100644",
        "kind": "file",
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
        "target": None,
        "archived": False,
        "item": None,
        "scan": "unscanned",
        "redactions": None,
        "reason": why,
    }
    assert by_path["ok.txt"]["archived"] is True
    assert {item["name"] for item in summary["items"]} == {"commit.json", "files.json", "files/ok.txt"}
    assert not (Path(summary["bundle"]) / "items" / "files" / "blob.bin").exists()


def test_files_larger_than_max_file_bytes_are_not_archived(tmp_path, extract):
    repo = make_repo(
        tmp_path / "repo",
        {"at-limit.txt": "x" * 100, "over-limit.txt": "x" * 101, "big-binary.bin": b"\x00" * 500},
    )
    summary = extract(repo=str(repo), max_file_bytes=100)
    by_path = {record["path"]: record for record in read_json_item(summary, "files.json")["files"]}
    assert by_path["at-limit.txt"]["archived"] is True
    assert by_path["over-limit.txt"] == {
        "path": "over-limit.txt",
        "blob": git(repo, "rev-parse", "HEAD:over-limit.txt").strip(),
        "mode": "100644",
        "kind": "file",
        "size": 101,
        "sha256": None,
        "target": None,
        "archived": False,
        "item": None,
        "scan": "unscanned",
        "redactions": None,
        "reason": "larger than max_file_bytes (100); not read",
    }
    assert by_path["big-binary.bin"]["archived"] is False
    assert by_path["big-binary.bin"]["reason"] == "larger than max_file_bytes (100); not read"
    assert {item["name"] for item in summary["items"]} == {"commit.json", "files.json", "files/at-limit.txt"}


def test_hidden_and_colliding_names_get_distinct_items(tmp_path, extract):
    repo = make_repo(
        tmp_path / "repo",
        {".env": "A=1\n", "env": "B=2\n", ".github/workflows/ci.yml": "on: push\n", "-dash.txt": "d\n"},
    )
    summary = extract(repo=str(repo))
    records = read_json_item(summary, "files.json")["files"]
    by_path = {record["path"]: record for record in records}
    assert all(record["archived"] for record in records)
    items = [record["item"] for record in records]
    assert len(set(items)) == len(items)
    assert by_path[".github/workflows/ci.yml"]["item"] == "files/github/workflows/ci.yml"
    assert by_path["-dash.txt"]["item"] == "files/dash.txt"
    assert {by_path[".env"]["item"], by_path["env"]["item"]} == {
        "files/env",
        f"files/env.{git(repo, 'rev-parse', 'HEAD:env').strip()[:12]}",
    }
    staged = items_of(summary)
    assert staged[by_path[".env"]["item"]] == b"A=1\n"
    assert staged[by_path["env"]["item"]] == b"B=2\n"


def test_hidden_file_next_to_directory_of_the_same_name(tmp_path, extract):
    repo = make_repo(tmp_path / "repo", {".env": "A=1\n", "env/prod.yaml": "x: 1\n"})
    records = read_json_item(extract(repo=str(repo)), "files.json")["files"]
    assert [record["archived"] for record in records] == [True, True]


def test_file_name_with_double_dot(tmp_path, extract):
    repo = make_repo(tmp_path / "repo", {"v1..2.yaml": "x: 1\n"})
    (record,) = read_json_item(extract(repo=str(repo)), "files.json")["files"]
    assert record["archived"] is True


def test_names_made_alike_stay_distinct_as_files_and_directories(tmp_path, extract):
    files = {
        "a b.txt": "",  # three paths that all become files/a_b.txt, with the same (empty) blob
        "a+b.txt": "",
        "a_b.txt": "",
        "README.md": "upper\n",  # alike on a case-insensitive file system
        "readme.md": "lower\n",
        "d e/f.txt": "dir first\n",  # the directory files/d_e, then a file that would be named files/d_e
        "d_e": "file second\n",
        "x y": "file first\n",  # the file files/x_y, then a directory that would be named files/x_y
        "x_y/z.txt": "dir second\n",
    }
    repo = make_repo(tmp_path / "repo", files)
    summary = extract(repo=str(repo))
    records = read_json_item(summary, "files.json")["files"]
    assert all(record["archived"] for record in records)
    items = [record["item"].casefold() for record in records]
    assert len(set(items)) == len(items) == len(files)
    staged = items_of(summary)
    for record in records:
        assert staged[record["item"]] == files[record["path"]].encode()


# --- globs ----------------------------------------------------------------------------------------

GLOB_REPO = {
    "conf/a.yaml": "a\n",
    "conf/b.json": "b\n",
    "conf/sub/c.yaml": "c\n",
    "conf/sub/deep/d.yaml": "d\n",
    "other/conf/e.yaml": "e\n",
    "top.yaml": "t\n",
    "README.md": "r\n",
}


@pytest.mark.parametrize(
    ("globs", "expected"),
    [
        pytest.param(None, set(GLOB_REPO), id="default-everything"),
        pytest.param(["**"], set(GLOB_REPO), id="double-star"),
        pytest.param(["conf/*.yaml"], {"conf/a.yaml"}, id="star-does-not-cross-dirs"),
        pytest.param(
            ["conf/**"],
            {"conf/a.yaml", "conf/b.json", "conf/sub/c.yaml", "conf/sub/deep/d.yaml"},
            id="double-star-crosses-dirs",
        ),
        pytest.param(
            ["conf/**/*.yaml"], {"conf/a.yaml", "conf/sub/c.yaml", "conf/sub/deep/d.yaml"}, id="double-star-slash"
        ),
        pytest.param(
            ["**/*.yaml"],
            {"conf/a.yaml", "conf/sub/c.yaml", "conf/sub/deep/d.yaml", "other/conf/e.yaml", "top.yaml"},
            id="any-depth-yaml",
        ),
        pytest.param(["*.yaml"], {"top.yaml"}, id="top-level-only"),
        pytest.param(["*"], {"top.yaml", "README.md"}, id="star-alone"),
        pytest.param(["**/conf/*.yaml"], {"conf/a.yaml", "other/conf/e.yaml"}, id="leading-double-star"),
        pytest.param(["conf/?.yaml"], {"conf/a.yaml"}, id="question-mark"),
        pytest.param(["c*/a.yaml"], {"conf/a.yaml"}, id="star-in-dir"),
        pytest.param(["README.md", "conf/*.json"], {"README.md", "conf/b.json"}, id="several-globs"),
        pytest.param(["conf"], set(), id="directory-name-alone"),
        pytest.param(["nothing/**"], set(), id="no-match"),
    ],
)
def test_globs(tmp_path, extract, globs, expected):
    repo = make_repo(tmp_path / "repo", GLOB_REPO)
    options = {"repo": str(repo)} if globs is None else {"repo": str(repo), "globs": globs}
    summary = extract(**options)
    listing = read_json_item(summary, "files.json")
    assert {record["path"] for record in listing["files"]} == expected
    assert listing["globs"] == (globs if globs is not None else ["**"])
    assert Bundle.load(summary["bundle"]).reported_totals == {"files": len(expected)}
    assert {item["name"] for item in summary["items"]} == {"commit.json", "files.json"} | {
        f"files/{path}" for path in expected
    }


@pytest.mark.parametrize(
    ("glob", "matches", "rejects"),
    [
        ("*.yaml", ["a.yaml", ".yaml"], ["dir/a.yaml", "a.yml", "a.yaml.bak"]),
        ("conf/*", ["conf/a", "conf/.hidden"], ["conf/a/b", "conf", "xconf/a"]),
        ("conf/**", ["conf/a", "conf/a/b/c", "conf/"], ["conf", "other/conf/a"]),
        ("**", ["a", "a/b", "a/b/c.d"], []),
        ("**/x.yaml", ["x.yaml", "a/x.yaml", "a/b/x.yaml"], ["ax.yaml", "a/bx.yaml"]),
        ("a/**/b", ["a/b", "a/x/b", "a/x/y/b"], ["ab", "a/xb"]),
        ("?.txt", ["a.txt"], ["ab.txt", "/.txt", ".txt"]),
        ("a.yaml", ["a.yaml"], ["aXyaml"]),
        ("a+b(c)[d]{e}^$|.txt", ["a+b(c)[d]{e}^$|.txt"], ["aab(c)d{e}^$|.txt", "a"]),
        ("", [""], ["a"]),
    ],
    ids=[
        "star-ext",
        "star-in-dir",
        "double-star-suffix",
        "double-star-only",
        "double-star-prefix",
        "double-star-middle",
        "question-mark",
        "dot-is-literal",
        "regex-specials-are-literal",
        "empty",
    ],
)
def test_glob_to_regex(glob, matches, rejects):
    pattern = re.compile(glob_to_regex(glob))
    for path in matches:
        assert pattern.fullmatch(path), f"{glob!r} should match {path!r}"
    for path in rejects:
        assert not pattern.fullmatch(path), f"{glob!r} should not match {path!r}"


def test_glob_to_regex_translation():
    assert glob_to_regex("conf/**/*.yaml") == r"conf/(?:.*/)?[^/]*\.yaml"
    assert glob_to_regex("a?b") == "a[^/]b"
    assert glob_to_regex("x/**") == "x/.*"


# --- redaction ------------------------------------------------------------------------------------


def _secret_repo(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "repo", SECRET_FILES)
    (repo / "README.md").write_text(f"# Config\nrotated: password={CANARY_COMMIT}\n")
    git(repo, "commit", "-q", "-a", "-m", f"rotate password={CANARY_COMMIT}")
    return repo


def _assert_no_canary_under(directory: Path) -> int:
    checked = 0
    for path in directory.rglob("*"):
        for canary in CANARIES:
            assert canary not in str(path.relative_to(directory)), f"canary {canary} in file name {path}"
        if path.is_file():
            data = path.read_bytes()
            for canary in CANARIES:
                assert canary.encode() not in data, f"canary {canary} leaked into {path}"
            checked += 1
    return checked


def test_staged_content_is_redacted(tmp_path, extract, configure):
    repo = _secret_repo(tmp_path)
    summary = extract(repo=str(repo))
    staging = configure(repo=str(repo)).staging_dir
    # Every file under staging: items, files.json, commit.json and bundle.json.
    assert _assert_no_canary_under(staging) == len(SECRET_FILES) + 3
    assert (Path(summary["bundle"]) / BUNDLE_FILE).is_file()

    # Not vacuous: every file was archived, and what is not secret survived.
    records = read_json_item(summary, "files.json")["files"]
    assert {record["path"] for record in records} == set(SECRET_FILES)
    assert all(record["archived"] for record in records)
    staged = {record["path"]: items_of(summary)[record["item"]].decode() for record in records}
    app = staged["app.yaml"]
    assert f'  password: "{marker("secret_assignment", CANARY_PASSWORD)}"\n' in app
    assert f"postgresql://payments:{marker('url_password', CANARY_URL_PASSWORD)}@db.internal" in app
    assert f"access_key_id: {marker('aws_access_key_id', CANARY_ACCESS_KEY_ID)}" in app
    assert f"aws_secret_access_key: {marker('aws_secret_access_key', CANARY_SECRET_ACCESS_KEY)}" in app
    assert "password_encryption: scram-sha-256\n" in app
    assert "require_mfa: true\n" in app
    assert staged["keys/deploy-key.pem"].startswith("[REDACTED:private_key:")
    assert "LOG_LEVEL=info\n" in staged[".env"]
    assert '"timeout": 30' in staged["conf/settings.json"]
    assert staged["README.md"].startswith("# Config\n")
    commit = read_json_item(summary, "commit.json")
    assert commit["subject"] == f"rotate password={marker('secret_assignment', CANARY_COMMIT)}"

    assert summary["redactions"] == {
        "aws_access_key_id": 1,
        "aws_secret_access_key": 1,
        "private_key": 1,
        "secret_field": 3,  # found by parsing: DB_PASSWORD, GITHUB_TOKEN, client_secret
        # app.yaml's values all stand on their key's line, so the detectors take them without parsing:
        # password, api_key; then README.md and the commit subject.
        "secret_assignment": 4,
        "url_password": 1,
    }
    assert Bundle.load(summary["bundle"]).redactions == summary["redactions"]


def test_summary_for_xcom_has_no_secrets_and_no_content(tmp_path, extract):
    repo = _secret_repo(tmp_path)
    summary = extract(repo=str(repo))
    text = json.dumps(summary)
    for canary in CANARIES:
        assert canary not in text
    assert set(summary) == {"bundle", "source", "family", "items", "redactions"}
    assert summary["source"] == SOURCE and summary["family"] == "config"
    for item in summary["items"]:
        assert set(item) == {"name", "sha256", "size"}
        staged = (Path(summary["bundle"]) / "items" / item["name"]).read_bytes()
        assert item["sha256"] == hashlib.sha256(staged).hexdigest()
        assert item["size"] == len(staged)
    assert len(text) < 4096


def test_stored_sample_repository_secrets_are_redacted(tmp_path, extract):
    """The shipped sample config repository (fake secrets) comes out redacted."""
    samples = Path(__file__).resolve().parents[1] / "include" / "samples" / "config-repo"
    repo = make_repo(tmp_path / "repo", {path.name: path.read_bytes() for path in samples.iterdir()})
    summary = extract(repo=str(repo))
    staged = b"".join(items_of(summary).values())
    for secret in (b"Sample-Passw0rd", b"AKIAIOSFODNN7EXAMPLE", b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"):
        assert secret not in staged
    assert b"PRIVATE KEY-----\n" not in staged
    assert summary["redactions"]


# --- refs and clones --------------------------------------------------------------------------------


@pytest.fixture
def branched_repo(tmp_path):
    repo = make_repo(tmp_path / "repo", {"app.yaml": "version: main\n", "only-main.txt": "m\n"})
    git(repo, "checkout", "-q", "-b", "release")
    (repo / "app.yaml").write_text("version: release\n")
    (repo / "only-release.txt").write_text("r\n")
    (repo / "only-main.txt").unlink()
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "release change")
    git(repo, "tag", "v1.0")
    git(repo, "checkout", "-q", "main")
    return repo


@pytest.mark.parametrize(
    ("ref", "branch"),
    [
        ("release", "release"),
        ("refs/heads/release", "release"),
        ("v1.0", "release"),
        ("main", "main"),
        ("HEAD", "main"),
        (None, "main"),
        ("release~1", "main"),
    ],
)
@pytest.mark.parametrize("as_url", [False, True], ids=["path", "file-url"])
def test_ref_selection(branched_repo, extract, ref, branch, as_url):
    repo = f"file://{branched_repo}" if as_url else str(branched_repo)
    options = {"repo": repo} if ref is None else {"repo": repo, "ref": ref}
    summary = extract(**options)
    commit = read_json_item(summary, "commit.json")
    assert commit["commit"] == git(branched_repo, "rev-parse", branch).strip()
    assert commit["ref"] == (ref or "HEAD")
    assert commit["repository"] == (repo if as_url else str(branched_repo.resolve()))
    staged = items_of(summary)
    assert staged["files/app.yaml"] == f"version: {branch}\n".encode()
    assert f"files/only-{branch}.txt" in staged
    other = "main" if branch == "release" else "release"
    assert f"files/only-{other}.txt" not in staged


def test_ref_by_commit_sha(branched_repo, extract):
    sha = git(branched_repo, "rev-parse", "release").strip()
    commit = read_json_item(extract(repo=str(branched_repo), ref=sha), "commit.json")
    assert commit["commit"] == sha
    assert commit["subject"] == "release change"


def test_clone_leaves_no_temporary_directory(branched_repo, extract, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch-tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    extract(repo=f"file://{branched_repo}")
    assert list(scratch.iterdir()) == []


def test_clone_credentials_never_reach_staging(branched_repo, extract, configure):
    requested = []

    def get_connection(conn_id):
        requested.append(conn_id)
        return SimpleNamespace(login="ci-bot", password="CanaryConnPassword0001")

    summary = extract(repo=f"file://{branched_repo}", conn_id="git_http", get_connection=get_connection)
    assert requested == ["git_http"]
    assert "CanaryConnPassword0001" not in json.dumps(summary)
    for path in configure(repo="https://git.example/only-for-the-staging-path.git").staging_dir.rglob("*"):
        if path.is_file():
            assert b"CanaryConnPassword0001" not in path.read_bytes()
            assert b"Y2ktYm90OkNhbmFyeUNvbm5QYXNzd29yZDAwMDE" not in path.read_bytes()  # base64 of login:password


def test_conn_id_outside_airflow_is_a_config_error(branched_repo, extract):
    with pytest.raises(
        ConfigError, match=r"connection 'git_http' requested outside Airflow; set AIRFLOW_CONN_GIT_HTTP"
    ):
        extract(repo=f"file://{branched_repo}", conn_id="git_http")


def test_url_credentials_are_redacted_in_errors(extract, monkeypatch):
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "*")
    # Port 1 on loopback: connection refused at once, no network.
    pattern = rf"^source {SOURCE}: git clone of the repository URL failed: fatal: unable to access .*Failed to connect"
    with pytest.raises(TransientCollectorError, match=pattern) as caught:
        extract(repo="https://alice:CanaryUrlCred0001@127.0.0.1:1/config.git")
    assert "CanaryUrlCred0001" not in str(caught.value)  # an unreachable server may come back: the task retries


# --- errors -------------------------------------------------------------------------------------------


def _no_bundle(configure) -> bool:
    return not list(configure(repo="https://git.example/only-for-the-staging-path.git").staging_dir.rglob(BUNDLE_FILE))


def test_missing_repo_path(tmp_path, extract, configure):
    missing = tmp_path / "does-not-exist"
    pattern = rf"^source {SOURCE}: repository {re.escape(str(missing))} does not exist or is not a directory$"
    with pytest.raises(CollectorError, match=pattern) as caught:
        extract(repo=str(missing))
    assert not is_transient(caught.value)  # a missing path never fixes itself: no retry
    assert _no_bundle(configure)


def test_repo_path_is_a_file(tmp_path, extract):
    path = tmp_path / "file.txt"
    path.write_text("not a repo")
    with pytest.raises(CollectorError, match=rf"^source {SOURCE}: repository .* is not a directory$"):
        extract(repo=str(path))


@pytest.mark.parametrize("bare", [False, True], ids=["work-tree", "bare"])
def test_repo_path_below_the_top_level_is_refused(tmp_path, extract, configure, bare):
    """git would find the enclosing repository, and the snapshot would silently be of all of it."""
    repo = make_repo(tmp_path / "work", {"app.yaml": "a: 1\n", "sub/inner.yaml": "b: 2\n"})
    if bare:
        git(tmp_path, "clone", "-q", "--bare", str(repo), str(tmp_path / "repo.git"))
        repo = tmp_path / "repo.git"
    below = repo / ("refs" if bare else "sub")
    pattern = rf"^source {SOURCE}: repository {re.escape(str(below))} is inside the git repository "
    with pytest.raises(CollectorError, match=pattern + re.escape(str(repo.resolve()))):
        extract(repo=str(below))
    assert _no_bundle(configure)


def test_bare_repository_path(tmp_path, extract):
    repo = make_repo(tmp_path / "work", {"app.yaml": "a: 1\n"})
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(tmp_path / "repo.git"))
    summary = extract(repo=str(tmp_path / "repo.git"))
    assert items_of(summary)["files/app.yaml"] == b"a: 1\n"


def test_path_that_is_not_a_git_repository(tmp_path, extract, configure, monkeypatch):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "app.yaml").write_text("a: 1\n")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # never find a repository above tmp_path
    pattern = rf"^source {SOURCE}: git rev-parse in {re.escape(str(plain))} failed: fatal: not a git repository"
    with pytest.raises(CollectorError, match=pattern):
        extract(repo=str(plain))
    assert _no_bundle(configure)


def test_repository_without_commits(tmp_path, extract):
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q", "-b", "main")
    with pytest.raises(CollectorError, match=rf"^source {SOURCE}: git rev-parse in .* failed: "):
        extract(repo=str(empty))


@pytest.mark.parametrize("as_url", [False, True], ids=["path", "file-url"])
@pytest.mark.parametrize("ref", ["no-such-branch", "v9.9", "0" * 40, "HEAD:app.yaml"])
def test_unknown_ref(branched_repo, extract, configure, ref, as_url):
    repo = f"file://{branched_repo}" if as_url else str(branched_repo)
    where = "the cloned repository" if as_url else re.escape(str(branched_repo))
    pattern = rf"^source {SOURCE}: git rev-parse in {where} failed: fatal: "
    with pytest.raises(CollectorError, match=pattern) as caught:
        extract(repo=repo, ref=ref)
    assert not is_transient(caught.value)
    assert _no_bundle(configure)


def test_ref_that_looks_like_an_option_is_not_one(branched_repo, extract, tmp_path):
    target = tmp_path / "pwned"
    with pytest.raises(CollectorError, match=rf"^source {SOURCE}: git rev-parse"):
        extract(repo=str(branched_repo), ref=f"--output={target}")
    assert not target.exists()


def test_clone_of_missing_url(tmp_path, extract):
    with pytest.raises(CollectorError, match=rf"^source {SOURCE}: git clone of the repository URL failed: ") as caught:
        extract(repo=f"file://{tmp_path / 'nowhere'}")
    assert not is_transient(caught.value)  # a local path that is not there is permanent, even through clone


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({}, "sources[0]: missing required key 'repo'"),
        ({"repo": ""}, "sources[0].repo: expected str of length >= 1, got ''"),
        ({"repo": ["a"]}, "sources[0].repo: expected str, got array"),
        ({"repo": ".", "globs": "**"}, "sources[0].globs: expected array, got str"),
        ({"repo": ".", "globs": ["**", 3]}, "sources[0].globs[1]: expected str, got int"),
        ({"repo": ".", "globs": []}, "sources[0].globs: expected array of length >= 1, got []"),
        ({"repo": ".", "glob": ["*.yaml"]}, "sources[0].glob: unknown key 'glob'; did you mean 'globs'?"),
        ({"repo": "missing"}, "sources[0].repo: 'missing' does not exist: relative paths resolve against"),
    ],
    ids=["no-repo", "empty-repo", "repo-list", "globs-string", "globs-non-string", "no-globs", "glob", "missing"],
)
def test_invalid_options_are_refused_at_load(configure, options, problem):
    """Each would otherwise fail every night (and be retried), or, for glob, archive the whole repository."""
    with pytest.raises(ConfigError, match=re.escape(problem)):
        configure(**options)


# --- determinism ------------------------------------------------------------------------------------


def test_unchanged_repo_gives_identical_items(tmp_path, extract, run_context):
    repo = _secret_repo(tmp_path)
    first = extract(repo=str(repo), try_number=1)
    second = extract(repo=str(repo), try_number=2)
    other_run = RunContext(
        dag_id=run_context.dag_id,
        run_id="scheduled__2026-11-26T02:00:00+00:00",
        logical_date=datetime(2026, 11, 26, 2, tzinfo=UTC),
    )
    third = extract(repo=str(repo), run=other_run)
    assert len({first["bundle"], second["bundle"], third["bundle"]}) == 3
    assert first["items"] == second["items"] == third["items"]
    assert first["redactions"] == second["redactions"] == third["redactions"]
    assert items_of(first) == items_of(second) == items_of(third)

    def metadata(summary):
        """bundle.json without what legitimately differs: collection time, try and run."""
        bundle = json.loads((Path(summary["bundle"]) / BUNDLE_FILE).read_bytes())
        for item in bundle["items"]:
            assert parse_rfc3339(item.pop("collected_at")).tzinfo == UTC
            item.pop("try_number")
            item.pop("run")
        bundle.pop("run")
        return bundle

    assert metadata(first) == metadata(second) == metadata(third)


def test_a_change_changes_only_the_affected_items(tmp_path, extract):
    repo = make_repo(tmp_path / "repo", {"a.yaml": "a: 1\n", "b.yaml": "b: 1\n"})
    before = {item["name"]: item["sha256"] for item in extract(repo=str(repo), try_number=1)["items"]}
    (repo / "b.yaml").write_text("b: 2\n")
    git(repo, "commit", "-q", "-a", "-m", "change b")
    after = {item["name"]: item["sha256"] for item in extract(repo=str(repo), try_number=2)["items"]}
    assert before["files/a.yaml"] == after["files/a.yaml"]
    assert before["files/b.yaml"] != after["files/b.yaml"]
    assert before["commit.json"] != after["commit.json"]
    assert before["files.json"] != after["files.json"]


def test_retry_replaces_a_half_written_try(tmp_path, extract, configure, run_context):
    repo = make_repo(tmp_path / "repo", {"a.yaml": "a: 1\n"})
    summary = extract(repo=str(repo))
    bundle = Path(summary["bundle"])
    (bundle / "items" / "leftover.txt").write_text("from a dead try")
    (bundle / BUNDLE_FILE).unlink()
    again = extract(repo=str(repo))
    assert again == summary
    assert not (bundle / "items" / "leftover.txt").exists()
