"""Configuration repository snapshot: the files of a git ref, with the commit that holds them.

Options (:class:`Options`): ``repo`` (a path relative to the config file, or a URL cloned
read-only), ``ref`` (default ``HEAD``), ``globs`` (default every file), ``conn_id`` (an Airflow
HTTP connection whose login and password authenticate the clone), ``max_file_bytes`` (default 1 MiB).

The repository is untrusted input. git runs without system or global configuration, and
everything that reads content (the commit, the tree, the blobs) runs in a scratch git directory
of our own whose ``objects`` is the repository's: the repository's own configuration, hooks and
filters are never read there, so nothing it names can run. Only ``rev-parse`` (finding the
repository and resolving the ref) reads the repository's configuration, and it runs no program.
Signatures are checked by running gpg ourselves on the signed bytes. A repository that borrows
objects from another (``objects/info/alternates``) is refused: its snapshot could show files it
does not hold.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import msgspec

from soc2_evidence.collectors import CollectContext
from soc2_evidence.core import config
from soc2_evidence.core.config import SourceConfig
from soc2_evidence.core.datasets import Dataset, must_exist
from soc2_evidence.core.errors import CollectorError, TransientCollectorError, describe
from soc2_evidence.core.redaction import Redactor, UnscannableContent
from soc2_evidence.core.staging import BundleWriter, safe_segment

KIND = "config_repo"
FAMILY = "config"
VERSION = "1.1.0"
DEFAULT_MAX_FILE_BYTES = 1024 * 1024
GIT_TIMEOUT_SECONDS = 300
_FIELD_SEPARATOR = "\x1f"
_COMMIT_FORMAT = _FIELD_SEPARATOR.join(["%H", "%T", "%an", "%ae", "%aI", "%cn", "%ce", "%cI", "%s"])
_SUBMODULE_MODE = "160000"
_SYMLINK_MODE = "120000"
# Item names stay well inside file system (255 bytes a segment) and object key (1024 bytes) limits.
_MAX_SEGMENT = 64
_MAX_DIRECTORY_NAME = 120
# Compressed formats by their magic bytes: the content inside cannot be scanned, so it is not archived.
_COMPRESSED = (
    (b"\x1f\x8b", "gzip"),
    (b"PK\x03\x04", "zip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
)
# What ``scan`` says about a file's content; the credentials control accepts "clean" and "submodule".
SCAN_CLEAN, SCAN_REDACTED, SCAN_UNSCANNED, SCAN_SUBMODULE = "clean", "redacted", "unscanned", "submodule"


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
        "kind": "string",
        "blob": "string",
        "mode": "string",
        "size": "integer",
        "sha256": "string",
        "target": "string",
        "archived": "boolean",
        "item": "string",
        "scan": "string",
        "reason": "string",
        "redactions": "integer",
    },
    required=("kind", "blob", "mode", "archived", "scan"),
    value_sets={
        "mode": ("100644", "100755", _SYMLINK_MODE, _SUBMODULE_MODE),
        "kind": ("file", "symlink", "submodule"),
        "scan": (SCAN_CLEAN, SCAN_REDACTED, SCAN_UNSCANNED, SCAN_SUBMODULE),
    },
    total="files",
    description="Every file, symlink and submodule matched by the globs, archived or not, with what was done to it",
)
DATASETS = (COMMIT, FILES)


class _Entry(NamedTuple):
    """One ``ls-tree`` record: a blob (file or symlink) or a submodule's commit."""

    mode: str
    object: str
    size: int | None  # None for a submodule: its commit is in another repository
    path: str


def collect(source: SourceConfig, writer: BundleWriter, context: CollectContext) -> None:
    options: Options = source.options
    repo, ref, globs, max_bytes = options.repo, options.ref, options.globs, options.max_file_bytes
    # DOTALL: a name with a newline is still matched by "*" and "**", never silently left out.
    matcher = re.compile("|".join(f"(?:{glob_to_regex(glob)})" for glob in globs), re.DOTALL)
    redact = writer.redactor.redact_text

    with _repository(source, repo, context) as git:
        commit_sha = git.resolve(ref)
        fields = git.run("show", "-s", f"--format={_COMMIT_FORMAT}", commit_sha).rstrip("\n").split(_FIELD_SEPARATOR)
        commit, tree, author, author_email, authored, committer, committer_email, committed, subject = fields
        writer.add_json(
            "commit.json",
            {
                "repository": _display_url(repo, context),
                "ref": redact(ref),
                "commit": commit,
                "tree": tree,
                "author": {"name": author, "email": author_email, "time": authored},
                "committer": {"name": committer, "email": committer_email, "time": committed},
                "subject": redact(subject),
                "signature": git.signature(commit_sha),
            },
            description="The commit the snapshot was taken from",
        )
        entries = [entry for entry in git.tree(commit_sha) if matcher.fullmatch(entry.path)]
        to_read = [entry for entry in entries if entry.size is not None and entry.size <= max_bytes]
        listing = []
        names = _ItemNames()
        with contextlib.closing(git.contents(to_read)) as contents:
            for entry in entries:
                path = redact(entry.path)
                record = _listed(entry, path)
                listing.append(record)
                if entry.size is None:
                    continue
                if entry.size > max_bytes:
                    record["reason"] = f"larger than max_file_bytes ({max_bytes}); not read"
                    continue
                content = next(contents)
                record["sha256"] = hashlib.sha256(content).hexdigest()
                text, record["reason"] = _as_text(content)
                if text is None:
                    continue
                if record["kind"] == "symlink":
                    record["target"] = redact(text)
                name = names.name(path, entry.object)
                redacted_before = sum(writer.redactor.counts.values())
                try:
                    writer.add_document(name, text, path=entry.path, description=f"{path} at {commit[:12]}")
                except UnscannableContent as error:
                    record["reason"] = f"not archived, cannot be redacted with confidence: {error.reason}"
                    continue
                except (OSError, ValueError) as error:
                    raise CollectorError(f"source {source.name}: cannot stage {path!r}: {describe(error)}") from error
                redactions = sum(writer.redactor.counts.values()) - redacted_before
                record.update(
                    archived=True,
                    item=name,
                    redactions=redactions,
                    scan=SCAN_REDACTED if redactions else SCAN_CLEAN,
                )
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
        # On ``scan``, not ``redactions``: a file that was never scanned (binary, compressed, too
        # large) has no count, and a check on the count alone would let it pass unseen.
        control(
            in_set,
            dataset,
            "nothing_to_redact",
            "No credential is committed in plain text: every file was scanned and none needed redacting",
            column="scan",
            value_set=[SCAN_CLEAN, SCAN_SUBMODULE],
        ),
        control(
            in_set,
            dataset,
            "every_file_archived",
            "Every matched configuration file is archived, none skipped as binary, compressed, too large or submodule",
            column="archived",
            value_set=[True],
        ),
    ]


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


def _listed(entry: _Entry, path: str) -> dict[str, Any]:
    """The ``files.json`` record of an entry before its content is read: listed, unscanned, unarchived."""
    record = {
        "path": path,
        "kind": "symlink" if entry.mode == _SYMLINK_MODE else "file",
        "blob": entry.object,
        "mode": entry.mode,
        "size": entry.size,
        "sha256": None,
        "target": None,
        "archived": False,
        "item": None,
        "scan": SCAN_UNSCANNED,
        "reason": None,
        "redactions": None,
    }
    if entry.size is None:
        record.update(
            kind="submodule",
            scan=SCAN_SUBMODULE,
            reason=f"submodule at commit {entry.object}: its files are in another repository and are not "
            "snapshotted; add that repository as a source of its own",
        )
    return record


def _as_text(content: bytes) -> tuple[str | None, str | None]:
    """The content as text, or None and why it is not archived: only text can be scanned and redacted."""
    for magic, name in _COMPRESSED:
        if content.startswith(magic):
            return None, f"{name}-compressed; compressed content cannot be scanned for secrets, so it is not archived"
    if b"\0" in content:
        return None, "binary (contains NUL bytes); binary content cannot be scanned for secrets, so it is not archived"
    try:
        return content.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, "not UTF-8 text; content that cannot be decoded cannot be scanned, so it is not archived"


class _ItemNames:
    """Item names for (redacted) repository paths: short, valid evidence names that never collide.

    Making a path a valid name can make two paths alike (``.env`` and ``env``, ``a b`` and
    ``a_b``), or give a file the name another item needs as a directory (``.env`` next to
    ``env/prod.yaml``). Staging writes items as files, so a file's name must be free as a file
    and as a directory, ignoring case as an auditor's file system may; directories may share.
    A taken file name gets the blob id appended, a taken directory name a digest of its path.
    Long segments are cut to ``_MAX_SEGMENT`` and deep directories folded into the last one that
    fits ``_MAX_DIRECTORY_NAME``; a name shortened so always carries the blob id, so it stays the
    same whatever else the tree holds. ``files.json`` maps each path to its item.
    """

    def __init__(self) -> None:
        self._directories: dict[str, tuple[str, bool]] = {}  # directory -> (item directory, shortened)
        self._taken_files: set[str] = set()
        self._taken_directories: set[str] = set()

    def name(self, path: str, blob: str) -> str:
        *directories, file = path.split("/")
        parent, shortened = "files", False
        for depth, segment in enumerate(directories, 1):
            directory = "/".join(directories[:depth])
            if directory not in self._directories:
                item_segment = _segment(segment)
                wanted = f"{parent}/{item_segment[:_MAX_SEGMENT]}"
                if len(wanted) > _MAX_DIRECTORY_NAME:
                    self._directories[directory] = (parent, True)
                else:
                    digest = hashlib.sha256(directory.encode("utf-8")).hexdigest()
                    item_directory = self._free(wanted, digest, for_file=False)
                    self._directories[directory] = (item_directory, shortened or len(item_segment) > _MAX_SEGMENT)
                    self._taken_directories.add(item_directory.casefold())
            parent, shortened = self._directories[directory]
        item_file = _segment(file)
        shortened = shortened or len(item_file) > _MAX_SEGMENT
        name = self._free(f"{parent}/{item_file[:_MAX_SEGMENT]}", blob, for_file=True, tagged=shortened)
        self._taken_files.add(name.casefold())
        return name

    def _free(self, wanted: str, tag: str, *, for_file: bool, tagged: bool = False) -> str:
        """``wanted`` (unless ``tagged``), else ``wanted.<tag>``, else ``wanted.<tag>-2``, ...: the first one free."""

        def free(name: str) -> bool:
            key = name.casefold()
            return key not in self._taken_files and not (for_file and key in self._taken_directories)

        with_tag = f"{wanted}.{tag[:12]}"
        first = [with_tag] if tagged else [wanted, with_tag]
        return next(filter(free, itertools.chain(first, (f"{with_tag}-{n}" for n in itertools.count(2)))))


def _segment(part: str) -> str:
    """A path segment as a name segment: not hidden or option-like, no '..', no trailing '.' (Windows drops it)."""
    return re.sub(r"\.\.+", ".", safe_segment(part)).lstrip(".-_").rstrip(".") or "_"


def _is_url(repo: str) -> bool:
    return "://" in repo or bool(re.match(r"^[\w.-]+@[\w.-]+:", repo))


def _display_url(repo: str, context: CollectContext) -> str:
    return Redactor().redact_text(repo) if _is_url(repo) else str(context.resolve_path(repo))


def _neutral_environment() -> dict[str, str]:
    """The worker's environment without any ``GIT_*`` variable of its own (an inherited
    ``GIT_DIR``, ``GIT_ALTERNATE_OBJECT_DIRECTORIES`` or ``GIT_SSH_COMMAND`` would change what is
    read or run), and without system or global git configuration. ``HOME`` stays: gpg finds
    the operator's keyring through it."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("GIT_")}
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_NO_REPLACE_OBJECTS="1",  # refs/replace would show other content under a blob's id
        GIT_TERMINAL_PROMPT="0",
        GIT_ASKPASS="true",
        LC_ALL="C",
    )
    return env


@contextmanager
def _repository(source: SourceConfig, repo: str, context: CollectContext) -> Iterator[_Git]:
    """The repository to read: the local one itself, or a bare clone of a URL, read through a scratch git directory."""
    env = _neutral_environment()
    if not _is_url(repo):
        path = context.resolve_path(repo)
        if not path.is_dir():
            raise CollectorError(f"source {source.name}: repository {path} does not exist or is not a directory")
        with _Git.open(source.name, path, env, display=str(path)) as git:
            yield git
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
        _run_git(source.name, "of the repository URL", env, ["clone", "--bare", "--quiet", "--", repo, clone])
        with _Git.open(source.name, Path(clone), env, display="the cloned repository") as git:
            yield git


# Network commands only: a local repository's errors (a missing path, a bad ref) never fix themselves.
_NETWORK_COMMANDS = frozenset({"clone", "fetch", "ls-remote"})
_TRANSIENT_GIT = re.compile(
    r"(?i)could not resolve host|temporary failure in name resolution|failed to connect|couldn't connect"
    r"|connection (?:refused|reset|timed out)|operation timed out|returned error: (?:5\d\d|408|429)"
    r"|rpc failed|early eof|remote end hung up"
)
# rev-parse is the one command run with the repository's configuration. It reads refs and
# objects only (no index, no diff, no network); these overrides guard the two keys a future
# git could consult while finding the repository.
_REPOSITORY_OVERRIDES = ("-c", "core.fsmonitor=false", "-c", f"core.hooksPath={os.devnull}")


def _in_repository(repository: Path) -> tuple[str, ...]:
    """git options to run in ``repository``. It may belong to another user (a deploy checkout):
    git's ownership check guards against running what its config names, which nothing here
    does, and global config, where an operator would allow it, is ignored; so it is allowed here."""
    return (*_REPOSITORY_OVERRIDES, "-c", f"safe.directory={repository.resolve()}", "-C", str(repository))


def _run_git(source: str, where: str, env: dict[str, str], args: list[str], options: tuple[str, ...] = ()) -> bytes:
    """Run ``git <options> <args>``; a failure names the source, command and ``where`` ("in <repository>"),
    transient only
    when the network failed."""
    command = args[0]
    try:
        result = subprocess.run(
            ["git", *options, *args], capture_output=True, env=env, timeout=GIT_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        timed_out = isinstance(error, subprocess.TimeoutExpired) and command in _NETWORK_COMMANDS
        cls = TransientCollectorError if timed_out else CollectorError
        raise cls(f"source {source}: git {command} failed: {describe(error)}") from error
    if result.returncode != 0:
        stderr = result.stderr.decode("utf-8", "replace").strip()
        lines = stderr.splitlines()
        detail = Redactor().redact_text(lines[-1] if lines else f"exit code {result.returncode}")
        network = command in _NETWORK_COMMANDS and _TRANSIENT_GIT.search(stderr) is not None
        cls = TransientCollectorError if network else CollectorError
        raise cls(f"source {source}: git {command} {where} failed: {detail}")
    return result.stdout


class _Git:
    """One repository, read two ways: ``rev-parse`` in the repository itself, everything else in
    a scratch git directory of ours that shares only the repository's object store."""

    def __init__(
        self, source: str, repository: Path, env: dict[str, str], display: str, scratch: Path, object_format: str
    ) -> None:
        self.source, self.repository, self.env, self.display = source, repository, env, display
        self.scratch, self.object_format = scratch, object_format

    @classmethod
    @contextmanager
    def open(cls, source: str, repository: Path, env: dict[str, str], display: str) -> Iterator[_Git]:
        def rev_parse(*args: str) -> list[str]:
            out = _run_git(source, f"in {display}", env, ["rev-parse", *args], _in_repository(repository))
            return out.decode("utf-8", "replace").splitlines()

        bare, git_dir, common_dir, object_format = rev_parse(
            "--is-bare-repository",
            "--absolute-git-dir",
            "--path-format=absolute",
            "--git-common-dir",
            "--show-object-format",
        )
        top = git_dir if bare == "true" else rev_parse("--show-toplevel")[0]
        if Path(top).resolve() != repository.resolve():
            # git would find the enclosing repository: the snapshot would silently be of all of it.
            raise CollectorError(
                f"source {source}: repository {repository} is inside the git repository {top}; name its top level"
            )
        objects = Path(common_dir) / "objects"
        _refuse_alternates(source, display, objects)
        with tempfile.TemporaryDirectory(prefix="soc2-evidence-scratch-") as scratch:
            _make_scratch_git_dir(Path(scratch), objects, object_format)
            yield cls(source, repository, env, display, Path(scratch), object_format)

    def resolve(self, ref: str) -> str:
        """The commit ``ref`` names, resolved by the repository (its refs and reflogs live there)."""
        args = ["rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}"]
        return (
            _run_git(self.source, f"in {self.display}", self.env, args, _in_repository(self.repository))
            .decode("ascii")
            .strip()
        )

    def run(self, *args: str) -> str:
        return self.run_bytes(*args).decode("utf-8", "replace")

    def run_bytes(self, *args: str) -> bytes:
        return _run_git(self.source, f"in {self.display}", self.env, list(args), ("--git-dir", str(self.scratch)))

    def tree(self, commit: str) -> list[_Entry]:
        """Every blob and submodule of the commit, NUL-separated so any byte in a name survives."""
        out = self.run_bytes("ls-tree", "-r", "-z", "--long", "--full-tree", commit)
        entries = []
        for record in filter(None, out.split(b"\0")):
            meta, path = record.split(b"\t", 1)
            mode, kind, object_id, size = meta.decode("ascii").split()
            if kind in ("blob", "commit"):
                entries.append(_Entry(mode, object_id, None if kind == "commit" else int(size), _decode(path)))
        return entries

    def contents(self, entries: list[_Entry]) -> Iterator[bytes]:
        """Each entry's content, in order, through one ``git cat-file --batch``. A thread writes the
        ids while this reads, so git never waits on a round trip; only listed (size-checked) blobs
        are asked for, and each is read at its size, one at a time."""
        if not entries:
            return
        process = subprocess.Popen(
            ["git", "--git-dir", str(self.scratch), "cat-file", "--batch"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=self.env,
        )
        assert process.stdin and process.stdout
        feeder = threading.Thread(target=_feed, args=(process.stdin, entries), daemon=True)
        feeder.start()
        try:
            for entry in entries:
                header = process.stdout.readline().split()
                if len(header) != 3 or header[0].decode() != entry.object or int(header[2]) != entry.size:
                    raise CollectorError(
                        f"source {self.source}: cannot read blob {entry.object} in {self.display}; "
                        "check the repository with 'git fsck'"
                    )
                content = process.stdout.read(entry.size)
                process.stdout.read(1)
                yield content
        finally:
            process.kill()
            process.wait()
            feeder.join()
            process.stdout.close()

    def signature(self, commit: str) -> dict[str, str | None]:
        """The commit's signature status, checked by gpg run here on the signed bytes, never by a
        program the repository's configuration names."""
        signed = _split_signature(self.run_bytes("cat-file", "commit", commit), self.object_format)
        if signed is None:
            return {"status": "none", "key": None, "signer": None}
        return _verify_gpg(*signed, env=self.env)


def _feed(stdin: Any, entries: list[_Entry]) -> None:
    with contextlib.suppress(BrokenPipeError, ValueError), stdin:  # ValueError, BrokenPipe: the reader killed git
        stdin.write(b"".join(f"{entry.object}\n".encode() for entry in entries))


def _decode(path: bytes) -> str:
    """A path as text; bytes that are not UTF-8 become escapes (never a replacement character two names could share)."""
    return path.decode("utf-8", "backslashreplace")


def _refuse_alternates(source: str, display: str, objects: Path) -> None:
    try:
        lines = (objects / "info" / "alternates").read_text("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return
    if any(line.strip() and not line.startswith("#") for line in lines):
        raise CollectorError(
            f"source {source}: repository {display} borrows objects from another repository "
            "(objects/info/alternates), so its snapshot could hold files it does not; "
            "run 'git repack -a -d' in it and delete objects/info/alternates"
        )


def _make_scratch_git_dir(scratch: Path, objects: Path, object_format: str) -> None:
    """A bare git directory of ours: our config, no refs, no hooks, the repository's objects."""
    (scratch / "refs").mkdir()
    (scratch / "HEAD").write_text("ref: refs/heads/snapshot\n")
    extensions = "" if object_format == "sha1" else f"[extensions]\n\tobjectformat = {object_format}\n"
    version = 0 if object_format == "sha1" else 1
    (scratch / "config").write_text(f"[core]\n\trepositoryformatversion = {version}\n\tbare = true\n{extensions}")
    (scratch / "objects").symlink_to(objects, target_is_directory=True)


def _split_signature(raw: bytes, object_format: str) -> tuple[bytes, bytes] | None:
    """The signed payload and the signature of a raw commit object, or None when it is unsigned.

    The payload is the object without its signature headers (``gpgsig``, ``gpgsig-sha256``); the
    signature for this repository's object format is the header's value, continuation lines unindented.
    """
    headers, separator, message = raw.partition(b"\n\n")
    wanted = b"gpgsig-sha256" if object_format == "sha256" else b"gpgsig"
    payload, signature, current = [], [], None
    for line in headers.split(b"\n"):
        if current is not None and line.startswith(b" "):
            if current == wanted:
                signature.append(line[1:])
            continue
        name, _, value = line.partition(b" ")
        current = name if name in (b"gpgsig", b"gpgsig-sha256") else None
        if current is None:
            payload.append(line)
        elif current == wanted:
            signature.append(value)
    if not signature:
        return None
    return b"\n".join(payload) + separator + message, b"\n".join(signature) + b"\n"


# gpg's status lines (doc/DETAILS in GnuPG) in words, as git names them for %G?.
_GPG_STATUSES = {
    "GOODSIG": "good",
    "BADSIG": "bad",
    "EXPSIG": "expired",
    "EXPKEYSIG": "expired-key",
    "REVKEYSIG": "revoked-key",
    "ERRSIG": "cannot-check",
}
_TRUSTED = frozenset({"TRUST_MARGINAL", "TRUST_FULLY", "TRUST_ULTIMATE"})


def _verify_gpg(payload: bytes, signature: bytes, env: dict[str, str]) -> dict[str, str | None]:
    """Verify an OpenPGP signature with the worker's gpg and keyring: status, key id and signer.

    A good signature by a key the keyring does not trust is "unknown-validity"; an SSH or X.509
    signature, or no gpg on the worker, is "cannot-check".
    """
    cannot_check: dict[str, str | None] = {"status": "cannot-check", "key": None, "signer": None}
    gpg = shutil.which("gpg")
    if gpg is None or not signature.startswith(b"-----BEGIN PGP SIGNATURE-----"):
        return cannot_check
    with tempfile.NamedTemporaryFile(prefix="soc2-evidence-sig-") as signature_file:
        signature_file.write(signature)
        signature_file.flush()
        try:
            result = subprocess.run(
                [gpg, "--batch", "--no-tty", "--status-fd", "1", "--verify", signature_file.name, "-"],
                input=payload,
                capture_output=True,
                env=env,
                timeout=GIT_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return cannot_check
    verdict = dict(cannot_check)
    trusted = False
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        words = line.split(" ", 3)
        if len(words) < 3 or words[0] != "[GNUPG:]":
            continue
        keyword = words[1]
        if keyword in _GPG_STATUSES and verdict["key"] is None:
            verdict["status"], verdict["key"] = _GPG_STATUSES[keyword], words[2]
            verdict["signer"] = words[3] if keyword != "ERRSIG" and len(words) > 3 else None
        trusted = trusted or keyword in _TRUSTED
    if verdict["status"] == "good" and not trusted:
        verdict["status"] = "unknown-validity"
    return verdict
