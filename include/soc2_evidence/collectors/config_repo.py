"""Configuration repository snapshot: the files of a git ref, with the commit that holds them.

Options (:class:`Options`): ``repo`` (a path relative to the config file, or a URL cloned
read-only), ``ref`` (default ``HEAD``), ``globs`` (default every file), ``conn_id`` (an Airflow
HTTP connection whose login and password authenticate the clone), ``max_file_bytes`` (default 1 MiB).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import msgspec

from soc2_evidence.collectors import CollectContext
from soc2_evidence.core import config
from soc2_evidence.core.config import SourceConfig
from soc2_evidence.core.datasets import Dataset, must_exist
from soc2_evidence.core.errors import CollectorError, TransientCollectorError, describe
from soc2_evidence.core.redaction import Redactor
from soc2_evidence.core.staging import BundleWriter, safe_segment

KIND = "config_repo"
FAMILY = "config"
VERSION = "1.0.0"
DEFAULT_MAX_FILE_BYTES = 1024 * 1024
GIT_TIMEOUT_SECONDS = 300
_FIELD_SEPARATOR = "\x1f"
_COMMIT_FORMAT = _FIELD_SEPARATOR.join(
    ["%H", "%T", "%an", "%ae", "%aI", "%cn", "%ce", "%cI", "%G?", "%GK", "%GS", "%s"]
)
# git's signature letters (%G?) in words. Without gpg, or without the signer's key, git says E or N.
SIGNATURE_STATUSES = {
    "G": "good",
    "B": "bad",
    "U": "unknown-validity",
    "X": "expired",
    "Y": "expired-key",
    "R": "revoked-key",
    "E": "cannot-check",
    "N": "none",
}


class Options(config.Options):
    repo: Annotated[config.LocalPath, msgspec.Meta(description="A local repository, or a URL cloned read-only")]
    ref: Annotated[str, msgspec.Meta(min_length=1)] = "HEAD"
    globs: Annotated[list[str], msgspec.Meta(min_length=1, description="Paths to snapshot; ** crosses folders")] = (
        msgspec.field(default_factory=lambda: ["**"])
    )
    conn_id: str | None = None
    max_file_bytes: config.PositiveInt = DEFAULT_MAX_FILE_BYTES


COMMIT = Dataset(
    name="config_repo.commit",
    existence=must_exist("exists", "The configuration repository's commit is recorded"),
    item="commit.json",
    key=("commit",),
    columns={
        "repository": "string",
        "ref": "string",
        "commit": "string",
        "tree": "string",
        "author": "object",
        "committer": "object",
        "subject": "string",
        "signature": "object",
    },
    required=("repository", "ref", "tree", "author", "committer", "signature"),
    description="The commit the snapshot was taken from",
)
FILES = Dataset(
    name="config_repo.files",
    existence=must_exist(
        "exists", "The configuration repository has at least one file matching the configured patterns"
    ),
    item="files.json",
    records="files",
    key=("path",),
    columns={
        "path": "string",
        "blob": "string",
        "mode": "string",
        "size": "integer",
        "archived": "boolean",
        "item": "string",
        "reason": "string",
        "redactions": "integer",
    },
    required=("blob", "mode", "size", "archived"),
    value_sets={"mode": ("100644", "100755", "120000")},
    total="files",
    description="Every file matched by the globs, archived or not",
)
DATASETS = (COMMIT, FILES)


def collect(source: SourceConfig, writer: BundleWriter, context: CollectContext) -> None:
    options: Options = source.options
    repo, ref, globs, max_bytes = options.repo, options.ref, options.globs, options.max_file_bytes
    matcher = re.compile("|".join(f"(?:{glob_to_regex(glob)})" for glob in globs))

    with _repository(source, repo, context) as (git_dir, env):
        git = _Git(source.name, git_dir, env)
        commit_sha = git.run("rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}").strip()
        fields = git.run("show", "-s", f"--format={_COMMIT_FORMAT}", commit_sha).rstrip("\n").split(_FIELD_SEPARATOR)
        commit, tree, author, author_email, authored, committer, committer_email, committed, *signature, subject = (
            fields
        )
        writer.add_json(
            "commit.json",
            {
                "repository": _display_url(repo, context),
                "ref": ref,
                "commit": commit,
                "tree": tree,
                "author": {"name": author, "email": author_email, "time": authored},
                "committer": {"name": committer, "email": committer_email, "time": committed},
                "subject": subject,
                "signature": _signature(*signature),
            },
            description="The commit the snapshot was taken from",
        )
        entries = [entry for entry in git.tree(commit_sha) if matcher.fullmatch(entry["path"])]
        listing = []
        names = _ItemNames()
        for entry, content in zip(entries, git.blobs([entry["blob"] for entry in entries]), strict=True):
            record = {
                "path": entry["path"],
                "blob": entry["blob"],
                "mode": entry["mode"],
                "size": len(content),
                "archived": False,
                "item": None,
                "reason": None,
                "redactions": None,
            }
            text = _as_text(content) if len(content) <= max_bytes else None
            if len(content) > max_bytes:
                record["reason"] = f"larger than max_file_bytes ({max_bytes})"
            elif text is None:
                record["reason"] = "not UTF-8 text; binary content is not archived since it cannot be redacted"
            else:
                name = names.name(entry["path"], entry["blob"])
                redacted_before = sum(writer.redactor.counts.values())
                try:
                    writer.add_text(name, text, description=f"{entry['path']} at {commit[:12]}")
                except (OSError, ValueError) as error:
                    raise CollectorError(f"source {source.name}: cannot stage {entry['path']!r}: {error}") from error
                record.update(
                    archived=True, item=name, redactions=sum(writer.redactor.counts.values()) - redacted_before
                )
            listing.append(record)
        writer.report_total("files", len(entries))
        writer.add_json(
            "files.json",
            {"commit": commit, "globs": globs, "files": listing},
            description="Every file matched by the globs, archived or not, with its blob id",
        )


def control_expectations(dataset: Dataset) -> list[Any]:
    """Control checks on the snapshot: findings, not failures, when they do not hold."""
    from soc2_evidence.validation.gx import control, expectations

    if dataset is not FILES:
        return []
    in_set = expectations.ExpectColumnValuesToBeInSet
    return [
        control(
            in_set,
            dataset,
            "nothing_to_redact",
            "No credential is committed in plain text (each would have been redacted)",
            column="redactions",
            value_set=[0],
        ),
        control(
            in_set,
            dataset,
            "every_file_archived",
            "Every matched configuration file is archived, none skipped as binary or too large",
            column="archived",
            value_set=[True],
        ),
    ]


def _signature(letter: str, key: str, signer: str) -> dict[str, str | None]:
    """The commit signature as git verified it with the local keyring: status, key id and signer."""
    return {"status": SIGNATURE_STATUSES.get(letter, "cannot-check"), "key": key or None, "signer": signer or None}


def glob_to_regex(glob: str) -> str:
    """Translate a path glob: ``**`` crosses directories, ``*`` and ``?`` do not."""
    out, index = [], 0
    while index < len(glob):
        char = glob[index]
        if glob.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
            continue
        if glob.startswith("**", index):
            out.append(".*")
            index += 2
            continue
        out.append("[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char))
        index += 1
    return "".join(out)


def _as_text(content: bytes) -> str | None:
    """The content as text, or None for binary (git's own test: a NUL byte, or invalid UTF-8)."""
    if b"\0" in content:
        return None
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        return None


class _ItemNames:
    """Item names for repository paths: valid evidence names that never collide.

    Making a path a valid name can make two paths alike (``.env`` and ``env``, ``a b`` and
    ``a_b``), or give a file the name another item needs as a directory (``.env`` next to
    ``env/prod.yaml``). Staging writes items as files, so a file's name must be free as a file
    and as a directory, ignoring case as an auditor's file system may; directories may share.
    A taken file name gets the blob id appended, a taken directory name a digest of its path.
    """

    def __init__(self) -> None:
        self._directories: dict[str, str] = {}  # repository directory -> item directory
        self._taken_files: set[str] = set()
        self._taken_directories: set[str] = set()

    def name(self, path: str, blob: str) -> str:
        *directories, file = path.split("/")
        parent = "files"
        for depth, segment in enumerate(directories, 1):
            directory = "/".join(directories[:depth])
            if directory not in self._directories:
                digest = hashlib.sha256(directory.encode("utf-8")).hexdigest()
                item_directory = self._free(f"{parent}/{_segment(segment)}", digest, for_file=False)
                self._directories[directory] = item_directory
                self._taken_directories.add(item_directory.casefold())
            parent = self._directories[directory]
        name = self._free(f"{parent}/{_segment(file)}", blob, for_file=True)
        self._taken_files.add(name.casefold())
        return name

    def _free(self, wanted: str, tag: str, *, for_file: bool) -> str:
        """``wanted``, else ``wanted.<tag>``, else ``wanted.<tag>-2``, ...: the first one free."""

        def free(name: str) -> bool:
            key = name.casefold()
            return key not in self._taken_files and not (for_file and key in self._taken_directories)

        tagged = f"{wanted}.{tag[:12]}"
        return next(filter(free, itertools.chain([wanted, tagged], (f"{tagged}-{n}" for n in itertools.count(2)))))


def _segment(part: str) -> str:
    """A path segment as a name segment: not hidden or option-like, no '..', no trailing '.' (Windows drops it)."""
    return re.sub(r"\.\.+", ".", safe_segment(part)).lstrip(".-_").rstrip(".") or "_"


def _is_url(repo: str) -> bool:
    return "://" in repo or bool(re.match(r"^[\w.-]+@[\w.-]+:", repo))


def _display_url(repo: str, context: CollectContext) -> str:
    return Redactor().redact_text(repo) if _is_url(repo) else str(context.resolve_path(repo))


@contextmanager
def _repository(source: SourceConfig, repo: str, context: CollectContext) -> Iterator[tuple[str, dict[str, str]]]:
    """A git directory to read from: the local repository itself, or a bare clone of a URL."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "LC_ALL": "C"}
    if not _is_url(repo):
        path = context.resolve_path(repo)
        if not path.is_dir():
            raise CollectorError(f"source {source.name}: repository {path} does not exist or is not a directory")
        _require_top_level(_Git(source.name, str(path), env), path)
        yield str(path), env
        return
    conn_id = source.options.conn_id
    if conn_id:
        connection = context.credentials.connection(conn_id)
        token = base64.b64encode(f"{connection.login or 'git'}:{connection.password or ''}".encode()).decode()
        # Passed through git's environment config, never on a command line where ps could show it.
        env.update(
            GIT_CONFIG_COUNT="1",
            GIT_CONFIG_KEY_0="http.extraHeader",
            GIT_CONFIG_VALUE_0=f"Authorization: Basic {token}",
        )
    with tempfile.TemporaryDirectory(prefix="soc2-evidence-git-") as clone:
        _Git(source.name, clone, env).run("clone", "--bare", "--quiet", "--", repo, clone, in_repo=False)
        yield clone, env


def _require_top_level(git: _Git, path: Path) -> None:
    """Refuse a directory below a repository's top: git would find the enclosing repository and
    the snapshot would silently be of all of it, not of the directory the config names."""
    bare, git_dir = git.run("rev-parse", "--is-bare-repository", "--absolute-git-dir").splitlines()
    top = git_dir if bare == "true" else git.run("rev-parse", "--show-toplevel").rstrip("\n")
    if Path(top).resolve() != path.resolve():
        raise CollectorError(
            f"source {git.source}: repository {path} is inside the git repository {top}; name its top level"
        )


# Network commands only: a local repository's errors (a missing path, a bad ref) never fix themselves.
_NETWORK_COMMANDS = frozenset({"clone", "fetch", "ls-remote"})
_TRANSIENT_GIT = re.compile(
    r"(?i)could not resolve host|temporary failure in name resolution|failed to connect|couldn't connect"
    r"|connection (?:refused|reset|timed out)|operation timed out|returned error: (?:5\d\d|408|429)"
    r"|rpc failed|early eof|remote end hung up"
)


class _Git:
    """git as a subprocess; a failure names the source and command, transient only when the network failed."""

    def __init__(self, source: str, git_dir: str, env: dict[str, str]) -> None:
        self.source, self.git_dir, self.env = source, git_dir, env

    def run(self, *args: str, in_repo: bool = True) -> str:
        command = ["git", "-C", self.git_dir, *args] if in_repo else ["git", *args]
        try:
            result = subprocess.run(
                command, capture_output=True, env=self.env, timeout=GIT_TIMEOUT_SECONDS, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            timed_out = isinstance(error, subprocess.TimeoutExpired) and args[0] in _NETWORK_COMMANDS
            cls = TransientCollectorError if timed_out else CollectorError
            raise cls(f"source {self.source}: git {args[0]} failed: {describe(error)}") from error
        if result.returncode != 0:
            stderr = result.stderr.decode("utf-8", "replace").strip()
            lines = stderr.splitlines()
            detail = Redactor().redact_text(lines[-1] if lines else f"exit code {result.returncode}")
            network = args[0] in _NETWORK_COMMANDS and _TRANSIENT_GIT.search(stderr) is not None
            cls = TransientCollectorError if network else CollectorError
            raise cls(f"source {self.source}: git {args[0]} in {self._where()} failed: {detail}")
        return result.stdout.decode("utf-8", "replace")

    def tree(self, commit: str) -> list[dict[str, Any]]:
        out = self.run("ls-tree", "-r", "-z", "--full-tree", commit)
        entries = []
        for record in filter(None, out.split("\0")):
            meta, path = record.split("\t", 1)
            mode, kind, blob = meta.split(" ")
            if kind == "blob":
                entries.append({"mode": mode, "blob": blob, "path": path})
        return entries

    def blobs(self, shas: list[str]) -> Iterator[bytes]:
        """Stream blob contents through one ``git cat-file --batch`` process."""
        if not shas:
            return
        process = subprocess.Popen(
            ["git", "-C", self.git_dir, "cat-file", "--batch"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=self.env,
        )
        assert process.stdin and process.stdout
        try:
            for sha in shas:
                process.stdin.write(f"{sha}\n".encode())
                process.stdin.flush()
                header = process.stdout.readline().decode().split()
                if len(header) != 3:
                    raise CollectorError(f"source {self.source}: cannot read blob {sha} in {self._where()}")
                content = process.stdout.read(int(header[2]))
                process.stdout.read(1)
                yield content
        finally:
            process.stdin.close()
            process.kill()
            process.wait()

    def _where(self) -> str:
        return "the cloned repository" if Path(self.git_dir).name.startswith("soc2-evidence-git-") else self.git_dir
