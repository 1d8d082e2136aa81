"""The secret corpus through a real config_repo run: every secret leaks nowhere, every look-alike survives.

One repository holds every corpus file; the collector snapshots it as the extract task does and
the run is archived to a file store. Each case then searches everything the run wrote: staging
(content and file names), the store (objects and their keys), files.json, the XCom summaries,
captured logs, stdout and stderr.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from secret_corpus import LOOKALIKES, NAME_SECRETS, SECRETS, SUBJECT, SUBJECT_SECRETS, Case

from conftest import git, make_repo, write_pipeline_config
from soc2_evidence.collectors import load_config
from soc2_evidence.core.credentials import Credentials
from soc2_evidence.core.evidence import RunContext
from soc2_evidence.core.redaction import MARKER_PATTERN, Redactor
from soc2_evidence.orchestration.pipeline import archive_bundles, extract_source

SOURCE = "corpus-config"
KEY = b"corpus-redaction-key"
RUN = RunContext(
    dag_id="evidence_config_snapshot",
    run_id="scheduled__2026-11-25T02:00:00+00:00",
    logical_date=datetime(2026, 11, 25, 2, tzinfo=UTC),
    data_interval_start=datetime(2026, 11, 25, 2, tzinfo=UTC),
    data_interval_end=datetime(2026, 11, 25, 2, tzinfo=UTC),
)


def _clock() -> datetime:
    """The run collects and archives an hour after its logical date, whatever today is."""
    return RUN.logical_date + timedelta(hours=1)


# Files of a known format that do not parse: listed with the reason, never archived.
UNSCANNABLE = {
    "broken/app.yaml": "database:\n  password: {}\n   bad: [indent\n",
    "broken/settings.json": '{{"client_secret": "{}",}}\n',
    "broken/.env": "API_TOKEN={}\nthis line is not an assignment\n",
}
UNSCANNABLE_SECRET = "Unscannable-Canary-7Q2x"


@dataclass(frozen=True)
class RunOutput:
    """Everything one collector run and its archiving wrote, as (where, text) pairs."""

    places: list[tuple[str, str]]
    staged: dict[str, str]  # repository path -> staged (redacted) text
    files: dict[str, dict]  # repository path -> files.json record
    subject: str

    def leaks(self, secret: str) -> list[str]:
        fragments = _fragments(secret)
        return [where for where, text in self.places if any(fragment in text for fragment in fragments)]


def _fragments(secret: str) -> set[str]:
    """The secret's lines, and 16-character windows of long lines: a partial leak is a leak."""
    fragments = set()
    for line in (line.strip() for line in secret.splitlines()):
        if len(line) >= 6:
            fragments.add(line)
        fragments.update(
            line[start : start + 16] for start in range(0, max(len(line) - 16, 0) + 1, 8) if len(line) >= 24
        )
    return fragments


@pytest.fixture(scope="module")
def run_output(tmp_path_factory) -> RunOutput:
    tmp_path = tmp_path_factory.mktemp("corpus")
    files = {case.path: case.content for case in [*SECRETS, *LOOKALIKES]}
    files.update({path: template.format(UNSCANNABLE_SECRET) for path, template in UNSCANNABLE.items()})
    assert len(files) == len(SECRETS) + len(LOOKALIKES) + len(UNSCANNABLE), "two cases share a path"
    repo = make_repo(tmp_path / "repo", files)
    git(repo, "commit", "-q", "--allow-empty", "-m", SUBJECT)
    source = {"name": SOURCE, "kind": "config_repo", "family": "config", "repo": str(repo)}
    config = load_config(write_pipeline_config(tmp_path, [source], path=tmp_path / "config" / "evidence.yaml"))

    logs = io.StringIO()
    handler = logging.StreamHandler(logs)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            summary = extract_source(
                config, SOURCE, RUN, try_number=1, redaction_key=KEY, credentials=Credentials(), now=_clock
            )
            archived = archive_bundles(
                config, family="config", run=RUN, bundle_dirs=[summary["bundle"]], validation_dir=None, now=_clock
            )
    finally:
        root.removeHandler(handler)
        root.setLevel(level)

    places = [("xcom: extract summary", json.dumps(summary)), ("xcom: archived run", repr(archived))]
    places += [("log", logs.getvalue()), ("stdout", stdout.getvalue()), ("stderr", stderr.getvalue())]
    for label, root_dir in (("staging", config.staging_dir), ("store", tmp_path / "store")):
        paths = sorted(path for path in Path(root_dir).rglob("*"))
        assert paths, f"nothing written under {label}"
        places.append((f"{label}: names", "\n".join(str(path.relative_to(root_dir)) for path in paths)))
        places += [(f"{label}: {path.relative_to(root_dir)}", _text(path)) for path in paths if path.is_file()]

    items = Path(summary["bundle"]) / "items"
    records = {record["path"]: record for record in json.loads((items / "files.json").read_text())["files"]}
    staged = {path: (items / record["item"]).read_text() for path, record in records.items() if record["archived"]}
    subject = json.loads((items / "commit.json").read_text())["subject"]
    return RunOutput(places, staged, records, subject)


def _text(path: Path) -> str:
    data = path.read_bytes()
    assert not data.startswith(b"\x1f\x8b"), f"{path} is compressed: searching it for secrets would prove nothing"
    return data.decode("utf-8", "replace")


@pytest.mark.parametrize("case", SECRETS, ids=[case.id for case in SECRETS])
def test_secret_leaks_nowhere(run_output: RunOutput, case: Case):
    assert run_output.files[case.path]["archived"], run_output.files[case.path]["reason"]
    for secret in case.secrets:
        assert not run_output.leaks(secret), f"{case.id}: leaked into {run_output.leaks(secret)}"
    staged = run_output.staged[case.path]
    assert MARKER_PATTERN.search(staged), staged
    for kept in case.kept:  # what is not secret in the same file stays readable
        assert kept in staged, staged


@pytest.mark.parametrize("case", LOOKALIKES, ids=[case.id for case in LOOKALIKES])
def test_lookalike_survives(run_output: RunOutput, case: Case):
    staged = run_output.staged[case.path]
    for kept in case.kept:
        assert kept in staged, staged
    assert run_output.files[case.path]["redactions"] == 0


@pytest.mark.parametrize("case_id", SUBJECT_SECRETS)
def test_commit_subject_secret_leaks_nowhere(run_output: RunOutput, case_id: str):
    assert not run_output.leaks(SUBJECT_SECRETS[case_id])
    assert run_output.subject.startswith("rotate CI token [REDACTED:github_token:")


@pytest.mark.parametrize(("template", "secret"), [case[1:] for case in NAME_SECRETS], ids=[c[0] for c in NAME_SECRETS])
def test_names_and_messages_are_redacted(template: str, secret: str):
    """File names, ticket titles, PR and commit bodies, log and alert lines: short text, one secret."""
    out = Redactor(KEY).redact_text(template.format(secret))
    assert secret not in out
    before, _, after = template.partition("{}")
    assert out.startswith(before) and out.endswith(after) and MARKER_PATTERN.search(out), out


@pytest.mark.parametrize("path", UNSCANNABLE)
def test_unparseable_file_is_listed_not_archived(run_output: RunOutput, path: str):
    record = run_output.files[path]
    assert record["archived"] is False and record["item"] is None
    assert re.fullmatch(
        r"not archived, cannot be redacted with confidence: not (?:valid YAML|valid JSON|a \.env file)\b.*",
        record["reason"],
    )
    assert record["size"] == len(UNSCANNABLE[path].format(UNSCANNABLE_SECRET).encode())
    assert not run_output.leaks(UNSCANNABLE_SECRET)


def test_corpus_figures(run_output: RunOutput, capsys):
    """The two figures the README reports, over the whole corpus."""
    caught = sum(not any(run_output.leaks(secret) for secret in case.secrets) for case in SECRETS)
    kept = sum(
        all(text in run_output.staged[case.path] for text in case.kept)
        and run_output.files[case.path]["redactions"] == 0
        for case in LOOKALIKES
    )
    with capsys.disabled():
        print(f"\nsecret corpus: {caught}/{len(SECRETS)} formats caught, {kept}/{len(LOOKALIKES)} look-alikes kept")
    assert len(SECRETS) >= 120 and len(LOOKALIKES) >= 40
    assert caught == len(SECRETS)
    assert len(LOOKALIKES) - kept <= len(LOOKALIKES) // 10
