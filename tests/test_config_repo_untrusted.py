"""config_repo on hostile repositories: traps in git configuration, names git allows that a file
list can lose, and secrets in names and commit messages.

Each trap that plain git can fire here is first shown to be armed (plain git in the repository
runs it); then the collector runs and the trap's marker file must not exist.
"""

from __future__ import annotations

import gzip
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
import test_config_repo

from conftest import git, make_repo
from soc2_evidence.core.errors import CollectorError
from soc2_evidence.core.redaction import Redactor

# The collector fixtures of test_config_repo, shared rather than copied.
_no_environment_overrides, configure, extract = (
    test_config_repo._no_environment_overrides,
    test_config_repo.configure,
    test_config_repo.extract,
)
items_of, read_json_item, KEY = test_config_repo.items_of, test_config_repo.read_json_item, test_config_repo.KEY

SIGNED_COMMIT_SUBJECT = "signed fixture"
# Not a real signature: git hands any PGP block to gpg.program, which is all a trap needs.
FAKE_SIGNATURE = (
    "-----BEGIN PGP SIGNATURE-----\n\niQEzBAABCAAdFiEEAAAAAAAAAAAAAAAAAAAAAAAAAAAFAmAAAAAACgkQAAAAAAAA\n=AAAA\n"
    "-----END PGP SIGNATURE-----"
)


def trap_program(directory: Path, marker: Path) -> Path:
    """A program that appends its name and arguments to ``marker``: any run leaves a trace."""
    program = directory / "trap.sh"
    program.write_text(f'#!/bin/sh\necho "$0 $*" >> {marker}\nexit 1\n')
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return program


def signed_repo(path: Path) -> Path:
    """A repository whose HEAD carries a (fake) PGP signature, so %G? or log.showSignature would call gpg."""
    repo = make_repo(path, {"app.yaml": "a: 1\n"})
    tree = git(repo, "rev-parse", "HEAD^{tree}").strip()
    signature = "gpgsig " + "\n ".join(FAKE_SIGNATURE.split("\n"))  # continuation lines start with a space
    commit = (
        f"tree {tree}\nauthor Test Author <author@example.test> 1767323045 +0000\n"
        f"committer Test Author <author@example.test> 1767323045 +0000\n{signature}\n\n{SIGNED_COMMIT_SUBJECT}\n"
    )
    sha = subprocess.run(
        ["git", "-C", str(repo), "hash-object", "-t", "commit", "-w", "--stdin"],
        input=commit.encode(),
        capture_output=True,
        check=True,
    ).stdout.decode()
    git(repo, "update-ref", "refs/heads/main", sha.strip())
    return repo


def set_config(repo: Path, *pairs: tuple[str, str]) -> None:
    for key, value in pairs:
        git(repo, "config", key, value)


def plant_hooks(repo: Path, program: Path) -> list[tuple[str, str]]:
    hooks = repo / "trap-hooks"
    hooks.mkdir()
    for name in ("pre-commit", "post-commit", "reference-transaction", "post-checkout", "post-index-change"):
        for directory in (hooks, repo / ".git" / "hooks"):
            (directory / name).symlink_to(program)
    return [("core.hooksPath", str(hooks))]


def plant_include(repo: Path, program: Path) -> list[tuple[str, str]]:
    included = repo.parent / "included.gitconfig"
    included.write_text(f"[gpg]\n\tprogram = {program}\n[log]\n\tshowSignature = true\n")
    return [("include.path", str(included))]


def plant_include_if(repo: Path, program: Path) -> list[tuple[str, str]]:
    included = repo.parent / "included-if.gitconfig"
    included.write_text(f"[gpg]\n\tprogram = {program}\n[log]\n\tshowSignature = true\n")
    return [(f"includeIf.gitdir:{repo}/.git.path", str(included))]


def plant_filters(repo: Path, program: Path) -> list[tuple[str, str]]:
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "attributes").write_text("* filter=trap diff=trap\n")
    return [
        ("filter.trap.smudge", str(program)),
        ("filter.trap.clean", str(program)),
        ("filter.trap.process", str(program)),
        ("diff.trap.textconv", str(program)),
    ]


# name -> (plant(repo, program) -> config pairs, a git command that shows the trap is armed, or None)
TRAPS = {
    "gpg.program": (lambda repo, program: [("gpg.program", str(program))], ["log", "-1", "--format=%G?"]),
    "gpg.program+log.showSignature": (
        lambda repo, program: [("gpg.program", str(program)), ("log.showSignature", "true")],
        ["show", "-s", "HEAD"],
    ),
    "gpg.ssh.program": (
        lambda repo, program: [("gpg.ssh.program", str(program)), ("gpg.format", "ssh")],
        None,  # runs only for an SSH signature; planted all the same
    ),
    "gpg.x509.program": (lambda repo, program: [("gpg.x509.program", str(program))], None),
    "core.fsmonitor": (lambda repo, program: [("core.fsmonitor", str(program))], ["status"]),
    "hooks": (plant_hooks, ["commit", "-q", "--allow-empty", "-m", "arm"]),
    "core.sshCommand": (
        lambda repo, program: [("core.sshCommand", str(program)), ("remote.origin.url", "ssh://git.invalid/x")],
        ["ls-remote", "origin"],
    ),
    "core.pager": (lambda repo, program: [("core.pager", str(program)), ("pager.show", "true")], None),
    "diff.external": (lambda repo, program: [("diff.external", str(program))], ["show", "--ext-diff", "HEAD"]),
    "filters-and-textconv": (plant_filters, ["cat-file", "--filters", "HEAD:app.yaml"]),
    "include.path": (plant_include, ["show", "-s", "HEAD"]),
    "includeIf": (plant_include_if, ["show", "-s", "HEAD"]),
}


def plain_git(repo: Path, *args: str, env: dict[str, str] | None = None) -> None:
    """git as a careless caller would run it: the repository's configuration applies."""
    subprocess.run(
        ["git", "-C", str(repo), *args], stdin=subprocess.DEVNULL, capture_output=True, env=env, check=False, timeout=60
    )


@pytest.fixture
def gnupg_home(tmp_path, monkeypatch):
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("GNUPGHOME", str(home))
    yield home
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)


@pytest.mark.parametrize("trap", list(TRAPS))
def test_no_program_the_repository_names_is_run(tmp_path, extract, gnupg_home, trap):
    repo = signed_repo(tmp_path / "repo")
    marker = tmp_path / "ran"
    plant, arm = TRAPS[trap]
    set_config(repo, *plant(repo, trap_program(tmp_path, marker)))
    if arm is not None:
        plain_git(repo, *arm)
        assert marker.exists(), f"the {trap} trap is not armed: plain 'git {' '.join(arm)}' did not run it"
        marker.unlink()
    commit = read_json_item(extract(repo=str(repo)), "commit.json")
    assert not marker.exists(), f"the collector ran the repository's {trap}: {marker.read_text()}"
    assert commit["subject"] == SIGNED_COMMIT_SUBJECT
    assert commit["signature"] == {"status": "cannot-check", "key": None, "signer": None}


def test_global_and_system_config_and_git_environment_are_ignored(tmp_path, extract, gnupg_home, monkeypatch):
    """The worker's own ~/.gitconfig, XDG config, system config and GIT_* variables set nothing either."""
    repo = signed_repo(tmp_path / "repo")
    marker = tmp_path / "ran"
    program = trap_program(tmp_path, marker)
    trap_config = f"[gpg]\n\tprogram = {program}\n[log]\n\tshowSignature = true\n[core]\n\tfsmonitor = {program}\n"
    home = tmp_path / "home"
    (home / ".config" / "git").mkdir(parents=True)
    (home / ".gitconfig").write_text(trap_config)
    (home / ".config" / "git" / "config").write_text(trap_config)
    system = tmp_path / "system.gitconfig"
    system.write_text(trap_config)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_SYSTEM", str(system))
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", f"'gpg.program'='{program}'")
    monkeypatch.setenv("GIT_EXTERNAL_DIFF", str(program))
    plain_git(repo, "show", "-s", "HEAD", env=dict(os.environ))
    assert marker.exists(), "the global-config trap is not armed"
    marker.unlink()
    read_json_item(extract(repo=str(repo)), "commit.json")
    assert not marker.exists(), f"the collector ran a program from the worker's git config: {marker.read_text()}"


def test_repository_borrowing_objects_through_alternates_is_refused(tmp_path, extract):
    """A clone --shared holds none of its files' objects: reading through alternates would snapshot
    the other repository. The collector refuses it, and nothing of the other repository is staged."""
    other = make_repo(tmp_path / "other", {"other.yaml": "owner: the-other-repository\n"})
    borrower = tmp_path / "borrower"
    subprocess.run(["git", "clone", "-q", "--shared", str(other), str(borrower)], check=True, capture_output=True)
    assert (borrower / ".git" / "objects" / "info" / "alternates").read_text().strip()
    with pytest.raises(CollectorError, match=r"borrows objects from another repository \(objects/info/alternates\)"):
        extract(repo=str(borrower))
    staged = [path for path in (tmp_path / "staging").rglob("*") if path.is_file()]
    assert not any(b"the-other-repository" in path.read_bytes() for path in staged)


SIGNER = "Signer <signer@example.test>"
GPG_BATCH = ("gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "")


def test_signature_is_checked_on_the_bytes_we_split(tmp_path, extract, gnupg_home):
    """A real signature over the commit verifies as good with our gpg, with git's config absent."""
    subprocess.run(
        [*GPG_BATCH, "--quick-gen-key", SIGNER, "ed25519", "sign", "never"],
        check=True,
        capture_output=True,
    )
    repo = make_repo(tmp_path / "repo", {"app.yaml": "a: 1\n"})
    sign = ("-c", "commit.gpgsign=true", "-c", f"user.signingKey={SIGNER}")
    git(repo, *sign, "commit", "-q", "--allow-empty", "-m", "signed")
    tampered = tmp_path / "tampered"
    subprocess.run(["git", "clone", "-q", "--no-local", str(repo), str(tampered)], check=True, capture_output=True)
    raw = git(tampered, "cat-file", "commit", "HEAD").replace("\n\nsigned\n", "\n\nsigned, then edited\n")
    forged = subprocess.run(
        ["git", "-C", str(tampered), "hash-object", "-t", "commit", "-w", "--stdin"],
        input=raw.encode(),
        capture_output=True,
        check=True,
    ).stdout.decode()
    git(tampered, "update-ref", "HEAD", forged.strip())
    good = read_json_item(extract(repo=str(repo), try_number=1), "commit.json")["signature"]
    bad = read_json_item(extract(repo=str(tampered), try_number=2), "commit.json")["signature"]
    assert good["status"] == "good" and good["signer"] == SIGNER
    assert bad["status"] == "bad" and bad["key"] == good["key"]


# --- nothing silently dropped ------------------------------------------------------------------


def commit_index(repo: Path, entries: list[tuple[str, str, bytes]]) -> None:
    """Commit tree entries (mode, object id, path bytes) through the index: paths no file system
    would take (a newline, 300 bytes, invalid UTF-8) and submodule links without a checkout."""
    records = b"".join(f"{mode} {sha}\t".encode() + path + b"\0" for mode, sha, path in entries)
    subprocess.run(["git", "-C", str(repo), "update-index", "--add", "-z", "--index-info"], input=records, check=True)
    git(repo, "commit", "-q", "-m", "odd names")


def blob(repo: Path, content: bytes) -> str:
    return (
        subprocess.run(
            ["git", "-C", str(repo), "hash-object", "-w", "--stdin"], input=content, capture_output=True, check=True
        )
        .stdout.decode()
        .strip()
    )


LONG = "Very-Long-Configuration-Name-" * 10  # 290 characters, over NAME_MAX once staged as is
DEEP = "/".join(["nested-directory-level"] * 30)


def test_every_name_git_allows_is_listed_with_what_was_done(tmp_path, extract):
    repo = make_repo(tmp_path / "repo", {"app.yaml": "a: 1\n"})
    submodule_commit = git(repo, "rev-parse", "HEAD").strip()
    contents = {
        b"creds\n.yaml": b"password: CanaryNewlinePw0001\n",
        b"tab\there.yaml": b"t: 1\n",
        b"bell\x07.yaml": b"b: 1\n",
        b"caf\xe9.yaml": b"latin-1 name\n",
        f"{LONG}.yaml".encode(): b"upper: 1\n",
        f"{LONG.lower()}.yaml".encode(): b"lower: 1\n",
        f"{DEEP}/deep.yaml".encode(): b"deep: 1\n",
    }
    entries = [("100644", blob(repo, content), path) for path, content in contents.items()]
    entries += [
        ("120000", blob(repo, b"app.yaml"), b"link.yaml"),
        ("160000", submodule_commit, b"vendor/lib"),
    ]
    commit_index(repo, entries)
    summary = extract(repo=str(repo), globs=["**"])
    records = read_json_item(summary, "files.json")["files"]
    by_path = {record["path"]: record for record in records}
    expected = {"app.yaml", "link.yaml", "vendor/lib", *(path.decode("utf-8", "backslashreplace") for path in contents)}
    assert set(by_path) == expected and len(records) == len(expected)

    staged = items_of(summary)
    for path, content in contents.items():
        record = by_path[path.decode("utf-8", "backslashreplace")]
        assert record["archived"] is True and record["kind"] == "file", record
        assert len(record["item"]) <= 200 and all(len(part) <= 80 for part in record["item"].split("/"))
        if b"Canary" not in content:
            assert staged[record["item"]] == content
    assert b"CanaryNewlinePw0001" not in staged[by_path["creds\n.yaml"]["item"]]
    assert by_path["creds\n.yaml"]["scan"] == "redacted" and by_path["creds\n.yaml"]["redactions"] == 1
    upper, lower = by_path[f"{LONG}.yaml"]["item"], by_path[f"{LONG.lower()}.yaml"]["item"]
    assert upper.casefold() != lower.casefold()
    assert upper.endswith(f".{entries[4][1][:12]}")  # a shortened name always carries its blob id

    link = by_path["link.yaml"]
    assert (link["kind"], link["mode"], link["target"], link["archived"]) == ("symlink", "120000", "app.yaml", True)
    assert staged[link["item"]] == b"app.yaml"  # the target as text, never the file it points to
    submodule = by_path["vendor/lib"]
    assert submodule == {
        "path": "vendor/lib",
        "kind": "submodule",
        "blob": submodule_commit,
        "mode": "160000",
        "size": None,
        "sha256": None,
        "target": None,
        "archived": False,
        "item": None,
        "scan": "submodule",
        "reason": f"submodule at commit {submodule_commit}: its files are in another repository and are not "
        "snapshotted; add that repository as a source of its own",
        "redactions": None,
    }


def test_an_unscanned_file_is_a_credentials_finding_and_the_listing_passes_quality(tmp_path, extract):
    """files.json through its GX suite: binary, compressed and oversized files are findings of
    nothing_to_redact (never silent passes), a submodule is not, and a listing with every kind of
    entry passes the data-quality suite (schema, types, value sets, keys)."""
    from datetime import UTC, datetime, timedelta

    from soc2_evidence.collectors.config_repo import FILES, control_expectations
    from soc2_evidence.core.datasets import to_frame
    from soc2_evidence.validation.gx import Target, Validator

    repo = make_repo(
        tmp_path / "repo",
        {
            "clean.yaml": "mfa: true\n",
            "keys.bin": b"\x00password: hunter2\n",
            "keys.yaml.gz": gzip.compress(b"password: hunter2\n", mtime=0),
            "huge.yaml": "x: " + "y" * 200 + "\n",
        },
    )
    commit_index(repo, [("120000", blob(repo, b"clean.yaml"), b"link.yaml"), ("160000", "1" * 40, b"vendor/lib")])
    records = read_json_item(extract(repo=str(repo), max_file_bytes=100), "files.json")["files"]
    collected = datetime(2026, 11, 25, 3, tzinfo=UTC)
    target = Target(
        source="repo",
        dataset=FILES,
        frame=to_frame(FILES, records, "2026-11-25T03:00:00Z"),
        parameters={
            "fresh_after": collected - timedelta(hours=1),
            "fresh_before": collected + timedelta(hours=1),
            "reported_total": len(records),
        },
        controls=control_expectations(FILES),
    )
    checks, _ = Validator(tmp_path / "gx").validate(target)
    assert [check.check for check in checks if check.kind == "quality" and not check.success] == []
    flagged = {
        check.check.removeprefix("config_repo.files."): {records[row]["path"] for row in check.unexpected_rows}
        for check in checks
        if check.kind == "control" and not check.success
    }
    unscanned = {"keys.bin", "keys.yaml.gz", "huge.yaml"}
    assert flagged == {"nothing_to_redact": unscanned, "every_file_archived": {*unscanned, "vendor/lib"}}


# --- secrets in names and messages ---------------------------------------------------------------

GITHUB_TOKEN = "ghp_" + "C4n4ryT0k3n" * 3 + "abc"  # ghp_ and 36 characters
AWS_KEY_ID = "AKIACANARY0000000009"


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(AWS_KEY_ID, id="aws-key-id"),
        pytest.param(
            GITHUB_TOKEN,
            id="github-token",
            marks=pytest.mark.xfail(
                Redactor(KEY).redact_text(GITHUB_TOKEN) == GITHUB_TOKEN,
                reason="the redaction engine on this branch has no GitHub token detector (branch redaction adds it)",
                strict=True,
            ),
        ),
    ],
)
def test_secrets_in_names_and_commit_messages_reach_nothing(tmp_path, extract, token, caplog, capfd):
    repo = make_repo(tmp_path / "repo", {f"creds-{token}.yaml": "a: 1\n", f"dir-{token}/x.yaml": "x: 1\n"})
    git(repo, "commit", "-q", "--allow-empty", "-m", f"rotate {token}", "-m", f"old token was {token}")
    summary = extract(repo=str(repo))
    records = read_json_item(summary, "files.json")["files"]
    assert len(records) == 2 and all(record["archived"] for record in records)
    assert token not in json.dumps(summary)
    for path in (tmp_path / "staging").rglob("*"):
        assert token not in str(path)
        if path.is_file():
            assert token.encode() not in path.read_bytes(), f"{token} reached {path}"
    captured = capfd.readouterr()
    assert token not in caplog.text + captured.out + captured.err


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a repository to another user needs root")
def test_repository_of_another_user_is_read(tmp_path, extract):
    """A deploy user's checkout: with global config ignored, the collector itself allows the
    ownership (nothing the repository names can run), and says nothing about safe.directory."""
    repo = make_repo(tmp_path / "repo", {"app.yaml": "a: 1\n"})
    subprocess.run(["chown", "-R", "nobody", str(repo)], check=True)
    try:
        (record,) = read_json_item(extract(repo=str(repo)), "files.json")["files"]
    finally:
        subprocess.run(["chown", "-R", str(os.geteuid()), str(repo)], check=True)
    assert record["archived"] is True
