"""The archive under faults: a fault-injecting proxy in front of an Object Lock bucket, kills at every
write boundary, one run archived twice at once, and a matrix of tamperings.

The figures that must be zero are asserted: runs reported complete that fail verify, manifests naming
a version the store does not hold, chains broken after a kill and a rerun. ``make test`` runs a few
nights at each fault rate and every tampering kind once; ``make soak`` runs 20 nights at 10% and at
30% faults and 100 random tamperings, and prints the table the README shows.

Two things are set for speed, not for what is tested: botocore's backoff is capped at 50 ms, and
clients use its ``standard`` retry mode (the pipeline's ``adaptive`` mode adds client-side rate
limiting after throttling, which is botocore's own behaviour and would only slow these runs down).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import boto3
import pytest
from botocore.config import Config
from fault_proxy import FAULT_KINDS, FaultProxy

from conftest import bundle_writer, write_pipeline_config
from soc2_evidence.archive import run as archive_module
from soc2_evidence.archive.layout import attempt_folder_of
from soc2_evidence.archive.run import SourceOutcome, archive_run, chain_keys, committed_links
from soc2_evidence.archive.stores import base as store_base
from soc2_evidence.archive.stores.s3 import S3ObjectLockStore
from soc2_evidence.archive.verify import NIGHT_DUE_HOURS, verify_store
from soc2_evidence.core.errors import EvidenceError
from soc2_evidence.core.evidence import RunContext
from soc2_evidence.core.redaction import Redactor
from soc2_evidence.demo.local_services import create_object_lock_bucket

DAG = "evidence_config_snapshot"
SOURCES = [SourceOutcome("repo-a", "config_repo", "archived"), SourceOutcome("repo-b", "config_repo", "archived")]
PASSED = {"status": "passed", "failures": [], "controls": ["CC8.1"]}
FIRST_NIGHT = date(2026, 10, 1)


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    from botocore.retries import standard

    real = standard.ExponentialBackoff.delay_amount
    monkeypatch.setattr(
        standard.ExponentialBackoff, "delay_amount", lambda self, context: min(real(self, context), 0.05)
    )
    monkeypatch.setattr(store_base, "READ_BACKOFF_SECONDS", 0.01)


def store_at(endpoint: str, bucket: str) -> S3ObjectLockStore:
    config = Config(
        retries={"mode": "standard", "max_attempts": 10}, max_pool_connections=32, connect_timeout=5, read_timeout=20
    )
    return S3ObjectLockStore(
        bucket, "evidence", client_factory=lambda: boto3.client("s3", endpoint_url=endpoint, config=config)
    )


@pytest.fixture
def fresh_bucket(s3_client):
    def make() -> str:
        name = f"faults-{uuid.uuid4().hex[:12]}"
        create_object_lock_bucket(s3_client, name)
        return name

    return make


def run_of(day: int) -> RunContext:
    night = FIRST_NIGHT + timedelta(days=day)
    logical = datetime(night.year, night.month, night.day, 2, tzinfo=UTC)
    return RunContext(DAG, f"scheduled__{logical:%Y-%m-%dT%H:%M:%S}+00:00", logical)


def stage(tmp_path, run: RunContext):
    bundles = []
    for source in SOURCES:
        writer = bundle_writer(
            tmp_path / "staging", run, family="config", source=source.name, kind="config_repo", redactor=Redactor(b"k")
        )
        writer.add_json("commit.json", {"commit": f"{source.name}-{run.night}"})
        writer.add_text("files/app.yaml", f"service: {source.name}\nnight: {run.night}\n")
        bundles.append(writer.finish())
    return bundles


def archive(store, tmp_path, run: RunContext, *, delay: timedelta = timedelta(hours=1)):
    return archive_run(
        store,
        family="config",
        run=run,
        bundles=stage(tmp_path, run),
        sources=SOURCES,
        retention_days=400,
        validation=PASSED,
        now=lambda: run.logical_date + delay,
    )


def verified(store, last_day: int, **scope):
    """verify_store by a clock just after night ``last_day`` is complete."""
    night = FIRST_NIGHT + timedelta(days=last_day)
    clock = datetime.combine(night, datetime.min.time(), UTC) + timedelta(hours=NIGHT_DUE_HOURS, minutes=1)
    return verify_store(store, since=FIRST_NIGHT, until=night, now=lambda: clock, **scope)


@dataclass
class Figures:
    """What one fault run measured; every field but ``verified`` and ``failed`` must be zero."""

    label: str
    runs: int = 0
    verified: int = 0
    failed: int = 0
    complete_but_fail_verify: int = 0
    unknown_version_ids: int = 0
    broken_chains: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def audit(direct: S3ObjectLockStore, figures: Figures, reported: dict[str, str], last_day: int) -> Figures:
    """Check what the runs reported against the store itself, read without faults."""
    report = verified(direct, last_day)
    integrity = [problem for problem in report.errors if problem.check not in ("calendar", "manifests")]
    figures.broken_chains = sum(problem.check == "chain" for problem in integrity)
    bad_folders = {folder.prefix for problem in integrity if (folder := attempt_folder_of(problem.key))}
    committed = {link.manifest_key: link for link in committed_links(direct, DAG)}
    for manifest_key in reported.values():
        folder = attempt_folder_of(manifest_key)
        if manifest_key not in committed or (folder and folder.prefix in bad_folders):
            figures.complete_but_fail_verify += 1
        else:
            figures.verified += 1
    for link in committed.values():
        manifest = json.loads(direct.read_bytes(link.manifest_key, link.body["manifest_version_id"]))
        entries = [(link.manifest_key, link.body["manifest_version_id"], link.body["manifest_sha256"])]
        entries += [(item["key"], item["version_id"], item["sha256"]) for item in manifest["items"]]
        for key, version_id, sha256 in entries:
            try:
                head = direct.head(key, version_id) if version_id else None
            except EvidenceError:
                head = None
            if head is None or head.checksum_sha256 != base64.b64encode(bytes.fromhex(sha256)).decode():
                figures.unknown_version_ids += 1
    assert not [p for p in integrity if p.check != "chain"], integrity
    return figures


def archive_under_faults(s3_endpoint, bucket: str, tmp_path, *, nights: int, rate: float, seed: int) -> Figures:
    figures = Figures(f"{nights} archives at {rate:.0%} faults")
    reported: dict[str, str] = {}
    proxy = FaultProxy(s3_endpoint, rate=rate, seed=seed)
    with proxy as proxied:
        faulty = store_at(proxied, bucket)
        for day in range(nights):
            run = run_of(day)
            figures.runs += 1
            try:
                reported[run.run_id] = archive(faulty, tmp_path / str(day), run).manifest_key
            except EvidenceError as error:
                figures.failed += 1
                figures.failures.append(f"{run.night}: {error}")
    figures.faults = dict(proxy.injected)
    return audit(store_at(s3_endpoint, bucket), figures, reported, nights - 1)


@pytest.mark.parametrize(("rate", "seed"), [(0.10, 1), (0.30, 2)], ids=["10%", "30%"])
def test_archives_under_faults_report_complete_only_what_verifies(
    s3_endpoint, aws_env, fresh_bucket, tmp_path, rate, seed
):
    figures = archive_under_faults(s3_endpoint, fresh_bucket(), tmp_path, nights=4, rate=rate, seed=seed)
    print(table([figures]), figures.faults, figures.failures)
    assert figures.complete_but_fail_verify == figures.unknown_version_ids == figures.broken_chains == 0
    assert figures.verified == figures.runs - figures.failed
    assert figures.verified >= 3, figures.failures  # ten tries per request ride out these rates


def test_the_proxy_injects_every_kind_of_fault(s3_endpoint, aws_env, lock_bucket):
    """The suite is only as good as its faults: each kind happens, and the store rides each one out."""
    store = None
    for kind in FAULT_KINDS:
        proxy = FaultProxy(s3_endpoint, rate=0.5, seed=3, kinds=(kind,))
        with proxy as proxied:
            store = store_at(proxied, lock_bucket)
            data = f"{kind}\n".encode()
            sha256 = hashlib.sha256(data).hexdigest()
            stored = store.put_bytes(f"{kind}.txt", data, sha256, datetime(2030, 1, 1, tzinfo=UTC))
            assert store.read_bytes(f"{kind}.txt", stored.version_id) == data
        assert proxy.injected[kind] >= 1, kind
        direct = store_at(s3_endpoint, lock_bucket)
        versions = [version for version in direct.list_versions(f"{kind}.txt") if version.key == f"{kind}.txt"]
        assert [version.version_id for version in versions] == [stored.version_id], kind


class SimulatedKill(BaseException):
    """The process dies: nothing after this point runs, and nothing catches it."""


class KillingStore(S3ObjectLockStore):
    """Dies just before, or just after, its ``at``-th write."""

    def __init__(self, bucket: str, endpoint: str, at: int, after: bool) -> None:
        config = Config(retries={"mode": "standard", "max_attempts": 3})
        super().__init__(bucket, "evidence", lambda: boto3.client("s3", endpoint_url=endpoint, config=config))
        self.at, self.after, self.writes = at, after, 0

    def put_bytes(self, key, data, sha256, retain_until):
        self.writes += 1
        if self.writes == self.at and not self.after:
            raise SimulatedKill(key)
        stored = super().put_bytes(key, data, sha256, retain_until)
        if self.writes == self.at and self.after:
            raise SimulatedKill(key)
        return stored

    def put_file(self, key, path, sha256, retain_until):
        return self.put_bytes(key, path.read_bytes(), sha256, retain_until)


def test_a_kill_at_any_write_leaves_a_chain_that_the_rerun_completes(
    s3_endpoint, aws_env, lock_bucket, tmp_path, monkeypatch
):
    monkeypatch.setattr(archive_module, "UPLOAD_THREADS", 1)  # one write at a time: every boundary is reached
    writes = len(SOURCES) * 2 + 2  # the items, the manifest, the link
    direct = store_at(s3_endpoint, lock_bucket)
    boundaries = [(at, after) for at in range(1, writes + 1) for after in (False, True)]
    for day, (at, after) in enumerate(boundaries):
        run = run_of(day)
        with pytest.raises(SimulatedKill):
            archive(KillingStore(lock_bucket, s3_endpoint, at, after), tmp_path / f"{day}-killed", run)
        rerun = archive(direct, tmp_path / f"{day}-rerun", run)
        # A kill before the link leaves nothing committed, and the rerun completes that same attempt;
        # a kill after it left the run committed, and the rerun finds that commit.
        assert rerun.attempt == 1, (at, after)
        assert rerun.adopted == (after and at == writes), (at, after)
    report = verified(direct, len(boundaries) - 1)
    assert report.exit_code == 0, report.errors
    assert not report.warnings  # every killed attempt was completed: nothing is left uncommitted
    assert len(chain_keys(direct, DAG)) == len(boundaries)


def test_a_kill_between_manifest_and_link_is_an_uncommitted_attempt(
    s3_endpoint, aws_env, lock_bucket, tmp_path, monkeypatch
):
    monkeypatch.setattr(archive_module, "UPLOAD_THREADS", 1)
    writes = len(SOURCES) * 2 + 2
    with pytest.raises(SimulatedKill):
        archive(KillingStore(lock_bucket, s3_endpoint, writes, after=False), tmp_path, run_of(0))
    direct = store_at(s3_endpoint, lock_bucket)
    report = verified(direct, 0)
    assert [problem.check for problem in report.warnings] == ["uncommitted_attempt"]
    assert "a manifest no chain link commits" in report.warnings[0].detail
    assert {problem.check for problem in report.errors} == {"calendar", "manifests"}  # nothing is committed


def test_one_run_archived_twice_at_once_commits_once(s3_endpoint, aws_env, fresh_bucket, tmp_path):
    for trial in range(4):
        store = store_at(s3_endpoint, fresh_bucket())
        run = run_of(0)
        barrier = threading.Barrier(2, timeout=30)
        bundles = stage(tmp_path / f"{trial}", run)  # the same staged bytes, as two tries of one task read them
        results: list = [None, None]

        def archive_once(index: int, store=store, run=run, barrier=barrier, results=results, bundles=bundles) -> None:
            barrier.wait()
            results[index] = archive_run(
                store,
                family="config",
                run=run,
                bundles=bundles,
                sources=SOURCES,
                retention_days=400,
                validation=PASSED,
                now=lambda: run.logical_date + timedelta(hours=1, seconds=index),
            )

        threads = [threading.Thread(target=archive_once, args=(index,)) for index in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert all(results), results
        assert results[0].manifest_key == results[1].manifest_key
        assert sorted(result.adopted for result in results) == [False, True]  # the other one says so
        assert len(chain_keys(store, DAG)) == 1
        assert verified(store, 0).exit_code == 0


TAMPERINGS = (
    "rewrite_item",
    "replay_item",
    "rewrite_manifest",
    "rewrite_link",
    "delete_item",
    "delete_manifest",
    "delete_link",
    "delete_tail",
    "add_outside_layout",
    "add_to_committed_folder",
    "add_uncommitted_attempt",
    "add_to_chain_folder",
    "forge_link_out_of_chain",
    "shorten_retention",
)


def tamper(kind: str, client, bucket: str, store: S3ObjectLockStore, rng: random.Random) -> str:
    """Tamper with the archive as someone with write access but no way around the lock; return the key."""
    links = [link for link in committed_links(store, DAG)]
    link = rng.choice(links)
    manifest = json.loads(store.read_bytes(link.manifest_key))
    item = rng.choice(manifest["items"])
    folder = link.manifest_key.rsplit("/", 1)[0]

    def put(key: str, body: bytes) -> str:
        client.put_object(Bucket=bucket, Key=f"evidence/{key}", Body=body)
        return key

    def delete(key: str) -> str:
        client.delete_object(Bucket=bucket, Key=f"evidence/{key}")
        return key

    if kind == "rewrite_item":
        return put(item["key"], store.read_bytes(item["key"]) + b"\n# edited\n")
    if kind == "replay_item":
        return put(item["key"], store.read_bytes(item["key"]))
    if kind == "rewrite_manifest":
        manifest["outcome"] = "passed" if manifest["outcome"] != "passed" else "failed"
        return put(link.manifest_key, json.dumps(manifest).encode())
    if kind == "rewrite_link":
        return put(link.key, json.dumps({**link.body, "manifest_sha256": "0" * 64}).encode())
    if kind == "delete_item":
        return delete(item["key"])
    if kind == "delete_manifest":
        return delete(link.manifest_key)
    if kind == "delete_link":
        return delete(link.key)
    if kind == "delete_tail":
        newest = links[0]
        delete(newest.manifest_key)
        return delete(newest.key)
    if kind == "add_outside_layout":
        return put(f"notes/{rng.randrange(1000)}.txt", b"not evidence\n")
    if kind == "add_to_committed_folder":
        return put(f"{folder}/repo-a/planted.json", b"{}\n")
    if kind == "add_uncommitted_attempt":
        run_folder = folder.rsplit("/", 1)[0]
        put(f"{run_folder}/attempt-009/repo-a/commit.json", b'{"commit":"forged"}\n')
        return put(f"{run_folder}/attempt-009/manifest.json", json.dumps({**manifest, "attempt": 9}).encode())
    if kind == "add_to_chain_folder":
        return put(f"_chain/{DAG}/README.txt", b"x\n")
    if kind == "forge_link_out_of_chain":
        return put(
            f"_chain/{DAG}/{len(links) + 1:010d}.json",
            json.dumps({**link.body, "sequence": len(links) + 1, "previous_link_sha256": "f" * 64}).encode(),
        )
    if kind == "shorten_retention":
        version_id = item["version_id"]
        client.put_object_retention(
            Bucket=bucket,
            Key=f"evidence/{item['key']}",
            VersionId=version_id,
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": datetime(2027, 1, 1, tzinfo=UTC)},
        )
        return item["key"]
    raise AssertionError(kind)


def detected(report, key: str) -> bool:
    """Verify names the tampered key in an error (an added attempt folder is named as uncommitted)."""
    return any(key in problem.key or key.startswith(problem.key) for problem in report.errors + report.warnings)


def tamper_trials(s3_endpoint, s3_client, fresh_bucket, tmp_path, kinds: list[str], seed: int) -> tuple[int, list]:
    rng = random.Random(seed)
    missed = []
    for index, kind in enumerate(kinds):
        bucket = fresh_bucket()
        store = store_at(s3_endpoint, bucket)
        for day in range(2):
            archive(store, tmp_path / f"{index}-{day}", run_of(day))
        assert verified(store, 1).exit_code == 0
        key = tamper(kind, s3_client, bucket, store, rng)
        report = verified(store, 1)
        if not detected(report, key) or (report.exit_code == 0 and kind != "add_uncommitted_attempt"):
            missed.append((kind, key, report.errors, report.warnings))
    return len(kinds) - len(missed), missed


def test_every_kind_of_tampering_is_detected(s3_endpoint, s3_client, aws_env, fresh_bucket, tmp_path):
    caught, missed = tamper_trials(s3_endpoint, s3_client, fresh_bucket, tmp_path, list(TAMPERINGS), seed=5)
    assert not missed, missed
    assert caught == len(TAMPERINGS)


def test_a_lost_source_staging_loses_only_that_source(s3_endpoint, aws_env, lock_bucket, tmp_path):
    from soc2_evidence.collectors import load_config
    from soc2_evidence.orchestration.pipeline import archive_bundles

    config_path = write_pipeline_config(
        tmp_path,
        [{"name": source.name, "kind": "config_repo", "repo": str(tmp_path), "globs": ["*"]} for source in SOURCES],
        store_url=f"s3://{lock_bucket}/evidence",
    )
    config = load_config(config_path)
    run = run_of(0)
    bundles = []
    for source in SOURCES:
        writer = bundle_writer(config.staging_dir, run, family="config", source=source.name, kind="config_repo")
        writer.add_json("commit.json", {"commit": source.name})
        bundles.append(writer.finish())
    lost = bundles[1].items[0].path
    lost.unlink()

    archived = archive_bundles(
        config,
        family="config",
        run=run,
        bundle_dirs=[str(bundle.directory) for bundle in bundles],
        validation_dir=None,
        now=lambda: run.logical_date + timedelta(hours=1),
    )

    statuses = {source["name"]: (source["status"], source["error"]) for source in archived.manifest["sources"]}
    assert statuses["repo-a"] == ("archived", None)
    assert statuses["repo-b"][0] == "staging_lost"
    assert str(bundles[1].directory) in statuses["repo-b"][1] and "commit.json" in statuses["repo-b"][1]
    assert [item["source"] for item in archived.manifest["items"]] == ["repo-a"]
    assert archived.outcome == "failed" and archived.manifest["failures"]["sources"] == ["repo-b"]


def table(rows: list[Figures]) -> str:
    lines = [
        "| Test | Verified complete | Failed (reported) | Reported complete but fail verify | "
        "Unknown version ids | Broken chains |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.label} | {row.verified} | {row.failed} | {row.complete_but_fail_verify} | "
            f"{row.unknown_version_ids} | {row.broken_chains} |"
        )
    return "\n".join(lines)


@pytest.mark.soak
def test_soak_archives_under_faults_and_random_tamperings(s3_endpoint, s3_client, aws_env, fresh_bucket, tmp_path):
    rows = [
        archive_under_faults(s3_endpoint, fresh_bucket(), tmp_path / "10", nights=20, rate=0.10, seed=11),
        archive_under_faults(s3_endpoint, fresh_bucket(), tmp_path / "30", nights=20, rate=0.30, seed=12),
    ]
    rng = random.Random(13)
    kinds = [rng.choice(TAMPERINGS) for _ in range(100)]
    caught, missed = tamper_trials(s3_endpoint, s3_client, fresh_bucket, tmp_path / "tamper", kinds, seed=14)
    print("\n" + table(rows))
    print(f"\n100 random tamperings ({len(set(kinds))} kinds): {caught} detected")
    for row in rows:
        assert row.complete_but_fail_verify == row.unknown_version_ids == row.broken_chains == 0, row
    assert not missed, missed


def test_a_manual_run_of_some_sources_expects_only_those(s3_endpoint, aws_env, lock_bucket, tmp_path):
    """The ``sources`` param limits what is expected: the others are not "not collected", but the run is
    ``partial``: a night is proven only by a run of every source."""
    from soc2_evidence.collectors import load_config
    from soc2_evidence.orchestration.pipeline import archive_bundles

    config_path = write_pipeline_config(
        tmp_path,
        [{"name": source.name, "kind": "config_repo", "repo": str(tmp_path), "globs": ["*"]} for source in SOURCES],
        store_url=f"s3://{lock_bucket}/evidence",
    )
    config = load_config(config_path)
    run = run_of(0)
    writer = bundle_writer(config.staging_dir, run, family="config", source="repo-a", kind="config_repo")
    writer.add_json("commit.json", {"commit": "repo-a"})
    bundle = writer.finish()

    archived = archive_bundles(
        config,
        family="config",
        run=run,
        bundle_dirs=[str(bundle.directory)],
        validation_dir=None,
        selected=["repo-a"],
        now=lambda: run.logical_date + timedelta(hours=1),
    )

    statuses = {source["name"]: source["status"] for source in archived.manifest["sources"]}
    assert statuses == {"repo-a": "archived", "repo-b": "not_selected"}
    assert archived.manifest["failures"]["sources"] == []
