"""Shared fixtures: real services on loopback (moto server for S3), git repositories, Airflow home.

Airflow reads AIRFLOW_HOME when first imported, so it is set here, before any test imports it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="soc2-evidence-airflow-"))
os.environ.update(
    AIRFLOW_HOME=str(_AIRFLOW_HOME),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
    AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
)

from soc2_evidence.core.config import DAG_OF_FAMILY  # noqa: E402
from soc2_evidence.core.evidence import RunContext  # noqa: E402
from soc2_evidence.core.redaction import Redactor  # noqa: E402
from soc2_evidence.core.staging import BundleWriter  # noqa: E402
from soc2_evidence.demo.local_services import DUMMY_AWS_ENV, create_object_lock_bucket, moto_server  # noqa: E402


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory) -> Iterator[str]:
    """A moto server on a free loopback port, reached over HTTP like any S3 endpoint."""
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        yield endpoint


@pytest.fixture
def aws_env(s3_endpoint, monkeypatch) -> str:
    """boto3's standard configuration pointed at the moto server, as users point it at MinIO."""
    for name, value in {**DUMMY_AWS_ENV, "AWS_ENDPOINT_URL_S3": s3_endpoint}.items():
        monkeypatch.setenv(name, value)
    return s3_endpoint


@pytest.fixture
def s3_client(aws_env):
    import boto3

    return boto3.client("s3")


@pytest.fixture
def lock_bucket(s3_client) -> str:
    """A fresh bucket with Object Lock (and so versioning) enabled."""
    name = f"evidence-{uuid.uuid4().hex[:12]}"
    create_object_lock_bucket(s3_client, name)
    return name


@pytest.fixture
def s3_store(lock_bucket):
    from soc2_evidence.archive.stores import open_store

    return open_store(f"s3://{lock_bucket}/evidence")


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_DATE": "2026-01-02T03:04:05Z", "GIT_COMMITTER_DATE": "2026-01-02T03:04:05Z"}
    return subprocess.run(
        [
            "git",
            "-C",
            str(repo),
            "-c",
            "user.name=Test Author",
            "-c",
            "user.email=author@example.test",
            "-c",
            "commit.gpgsign=false",
            *args,
        ],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout


def make_repo(path: Path, files: dict[str, bytes | str]) -> Path:
    """A real git repository with ``files`` committed on branch main."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    for name, content in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "config snapshot fixture")
    return path


def write_pipeline_config(
    directory: Path,
    sources: list[dict],
    *,
    store_url: str | None = None,
    validation: dict | None = None,
    path: Path | None = None,
    exceptions_stub: bool = False,
) -> Path:
    """A pipeline config file with these sources, written as JSON (JSON is YAML); returns its path.

    The store (unless ``store_url`` is given) is the file store ``directory/store`` and staging is
    ``directory/staging``. The file is ``path``, by default ``directory/evidence.yaml``; relative paths in
    it, and the default controls.yaml and exceptions.yaml, resolve against its directory. ``exceptions_stub``
    writes an empty exceptions.yaml there, the register validation reads unless told another. The DAG
    of each family no source has is unscheduled, as loading requires.
    """
    path = path or directory / "evidence.yaml"
    families = {source.get("family") for source in sources if isinstance(source, dict)}
    document: dict = {
        "store": {"url": (directory / "store").as_uri(), "immutable": False}
        if store_url is None
        else {"url": store_url},
        "staging_dir": str(directory / "staging"),
        "schedules": {dag: None for family, dag in DAG_OF_FAMILY.items() if family not in families},
    }
    if validation is not None:
        document["validation"] = validation
    document["sources"] = sources
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document), encoding="utf-8")
    if exceptions_stub:
        (path.parent / "exceptions.yaml").write_text("exceptions: []\n")
    return path


def bundle_writer(
    staging: Path,
    run: RunContext,
    *,
    family: str,
    source: str,
    kind: str,
    collector: str = "tests",
    collector_version: str = "0",
    redactor: Redactor | None = None,
    now: Callable[[], datetime] | None = None,
) -> BundleWriter:
    """A first-try writer of one source's bundle, as the extract task makes it.

    Items are stamped collected by ``now``, by default an hour after the run's logical date (as the
    nightly run collects): tests never read the real clock, so a result cannot depend on today.
    """
    return BundleWriter(
        staging,
        family=family,
        source=source,
        kind=kind,
        run=run,
        try_number=1,
        collector=collector,
        collector_version=collector_version,
        redactor=redactor or Redactor(),
        now=now or collected_after(run),
    )


def collected_after(run: RunContext, delay: timedelta = timedelta(hours=1)) -> Callable[[], datetime]:
    """A clock that always reads ``delay`` after the run's logical date."""
    return lambda: run.logical_date + delay


def validate_config_bundle(config, run: RunContext, bundle, source: str, calendar_days: int = 7, now=None):
    """validate_run over one staged config bundle with the shipped control map, as the validate task runs
    it: the validation's summary and its findings. ``now`` (default: an hour after the run's logical
    date) is the validation's clock; today is its UTC date."""
    from soc2_evidence.archive.stores import open_store
    from soc2_evidence.collectors import collector_for
    from soc2_evidence.validation.controls import load_control_map
    from soc2_evidence.validation.run import ValidationSettings, summary_of, validate_run

    settings = ValidationSettings(
        control_map=load_control_map(ROOT / "include" / "config" / "controls.yaml"),
        register=[],
        freshness_hours=48,
        calendar_days=calendar_days,
        today=(now or collected_after(run))().astimezone(UTC).date(),
    )
    validation = validate_run(
        [bundle],
        run,
        family="config",
        sources=[source],
        store=open_store(config.store_url),
        settings=settings,
        staging_root=config.staging_dir,
        checks_of=collector_for,
        now=now or collected_after(run),
    )
    findings_item = next(staged for staged in validation.items if staged.item.name == "findings.jsonl")
    return summary_of(validation), [json.loads(line) for line in findings_item.path.read_text().splitlines()]


@pytest.fixture
def run_context() -> RunContext:
    return RunContext(
        dag_id="evidence_config_snapshot",
        run_id="scheduled__2026-11-25T02:00:00+00:00",
        logical_date=datetime(2026, 11, 25, 2, tzinfo=UTC),
        data_interval_start=datetime(2026, 11, 25, 2, tzinfo=UTC),
        data_interval_end=datetime(2026, 11, 25, 2, tzinfo=UTC),
    )


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Airflow metadata on SQLite, migrated once per session."""
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], check=True, capture_output=True)
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def gcs_endpoint(tmp_path_factory) -> Iterator[str]:
    """gcp-storage-emulator on a free loopback port, reached by google-cloud-storage over HTTP."""
    from soc2_evidence.demo.local_services import gcs_emulator

    with gcs_emulator(tmp_path_factory.mktemp("gcs") / "gcs.log") as endpoint:
        yield endpoint


@pytest.fixture
def gcs_bucket(gcs_endpoint, monkeypatch) -> str:
    """A fresh emulator bucket; STORAGE_EMULATOR_HOST points google-cloud-storage at the emulator."""
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint)
    name = f"evidence-{uuid.uuid4().hex[:12]}"
    storage.Client(project="test").create_bucket(name)
    return name


def commit_night(store, staging: Path, night: str, sources: dict[str, str], failed_items: tuple[str, ...] = ()):
    """Archive and commit a config night (``YYYY-MM-DD``) whose sources ended as ``sources`` says
    (``archived`` with one item each, or a failure status), the items of ``failed_items`` failing
    validation; committed an hour after its 02:00 logical date. A file store is allowed (for tests)."""
    from soc2_evidence.archive.run import SourceOutcome, archive_run

    logical = datetime.fromisoformat(night).replace(hour=2, tzinfo=UTC)
    run = RunContext("evidence_config_snapshot", f"scheduled__{night}", logical)
    bundles = []
    for name, status in sources.items():
        if status == "archived":
            writer = bundle_writer(staging, run, family="config", source=name, kind="config_repo")
            writer.add_json("commit.json", {"source": name, "night": night})
            bundles.append(writer.finish())
    return archive_run(
        store,
        family="config",
        run=run,
        bundles=bundles,
        sources=[SourceOutcome(name, "config_repo", status) for name, status in sources.items()],
        retention_days=400,
        item_status={(name, "commit.json"): "failed" for name in failed_items},
        validation={"status": "passed", "failures": [], "controls": []},
        allow_mutable_store=True,
        now=collected_after(run),
    )
