"""Configuration repository snapshot: the files of a git ref, with the commit that holds them.

Options: ``repo`` (a path, or a URL cloned read-only), ``ref`` (default ``HEAD``),
``globs`` (default every file), ``conn_id`` (an Airflow HTTP connection whose login and
password authenticate the clone), ``max_file_bytes`` (default 1 MiB).
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from soc2_evidence.collectors import CollectContext
from soc2_evidence.config import SourceConfig
from soc2_evidence.exceptions import CollectorError
from soc2_evidence.redaction import Redactor
from soc2_evidence.staging import BundleWriter, safe_segment

KIND = "config_repo"
FAMILY = "config"
VERSION = "1.0.0"
DEFAULT_MAX_FILE_BYTES = 1024 * 1024
GIT_TIMEOUT_SECONDS = 300
_FIELD_SEPARATOR = "\x1f"
_COMMIT_FORMAT = _FIELD_SEPARATOR.join(["%H", "%T", "%an", "%ae", "%aI", "%cn", "%ce", "%cI", "%s"])


def collect(source: SourceConfig, writer: BundleWriter, context: CollectContext) -> None:
    options = source.options
    repo = options.get("repo")
    if not isinstance(repo, str) or not repo:
        raise CollectorError(f"source {source.name}: option 'repo' (a path or URL) is required")
    ref = str(options.get("ref", "HEAD"))
    globs = options.get("globs", ["**"])
    if not isinstance(globs, list) or not all(isinstance(glob, str) for glob in globs):
        raise CollectorError(f"source {source.name}: option 'globs' must be a list of strings")
    max_bytes = int(options.get("max_file_bytes", DEFAULT_MAX_FILE_BYTES))
    matcher = re.compile("|".join(f"(?:{glob_to_regex(glob)})" for glob in globs))

    with _repository(source, repo, context) as (git_dir, env):
        git = _Git(source.name, git_dir, env)
        commit_sha = git.run("rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}").strip()
        fields = git.run("show", "-s", f"--format={_COMMIT_FORMAT}", commit_sha).rstrip("\n").split(_FIELD_SEPARATOR)
        commit, tree, author, author_email, authored, committer, committer_email, committed, subject = fields
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
            },
            description="The commit the snapshot was taken from",
        )
        entries = [entry for entry in git.tree(commit_sha) if matcher.fullmatch(entry["path"])]
        listing = []
        used_names: set[str] = set()
        for entry, content in zip(entries, git.blobs([entry["blob"] for entry in entries]), strict=True):
            record = {"path": entry["path"], "blob": entry["blob"], "mode": entry["mode"], "size": len(content)}
            if len(content) > max_bytes:
                record["archived"] = False
                record["reason"] = f"larger than max_file_bytes ({max_bytes})"
            else:
                text = _as_text(content)
                if text is None:
                    record["archived"] = False
                    record["reason"] = "not UTF-8 text; binary content is not archived since it cannot be redacted"
                else:
                    name = _item_name(entry["path"], entry["blob"], used_names)
                    writer.add_text(name, text, description=f"{entry['path']} at {commit[:12]}")
                    record["archived"] = True
                    record["item"] = name
            listing.append(record)
        writer.report_total("files", len(entries))
        writer.add_json(
            "files.json",
            {"commit": commit, "globs": globs, "files": listing},
            description="Every file matched by the globs, archived or not, with its blob id",
        )


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


def _item_name(path: str, blob: str, used: set[str]) -> str:
    name = "files/" + "/".join(safe_segment(part).lstrip(".-_") or "_" for part in path.split("/"))
    if name in used:
        name = f"{name}.{blob[:12]}"
    used.add(name)
    return name


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
        yield str(path), env
        return
    conn_id = source.options.get("conn_id")
    if conn_id:
        connection = context.get_connection(conn_id)
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


class _Git:
    def __init__(self, source: str, git_dir: str, env: dict[str, str]) -> None:
        self.source, self.git_dir, self.env = source, git_dir, env

    def run(self, *args: str, in_repo: bool = True) -> str:
        command = ["git", "-C", self.git_dir, *args] if in_repo else ["git", *args]
        try:
            result = subprocess.run(
                command, capture_output=True, env=self.env, timeout=GIT_TIMEOUT_SECONDS, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise CollectorError(f"source {self.source}: git {args[0]} failed: {error}") from error
        if result.returncode != 0:
            lines = result.stderr.decode("utf-8", "replace").strip().splitlines()
            detail = Redactor().redact_text(lines[-1] if lines else f"exit code {result.returncode}")
            raise CollectorError(f"source {self.source}: git {args[0]} in {self._where()} failed: {detail}")
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
