"""Embedded services for a laptop with nothing running: an S3 API with Object Lock on loopback.

Used by ``make demo`` and by the tests, so both exercise the same setup.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

LOOPBACK = "127.0.0.1"
# moto accepts any credentials; these only satisfy boto3's signer and name themselves as fake.
DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "embedded-test",
    "AWS_SECRET_ACCESS_KEY": "embedded-test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def venv_tool(name: str) -> str:
    """A console script installed beside the running interpreter (the project's .venv)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


@contextlib.contextmanager
def moto_server(log_path: Path | None = None, startup_timeout: float = 30.0) -> Iterator[str]:
    """Run ``moto_server`` on a free loopback port; yield its endpoint URL; stop it on exit."""
    port = free_port()
    endpoint = f"http://{LOOPBACK}:{port}"
    argv = [venv_tool("moto_server"), "-H", LOOPBACK, "-p", str(port)]
    with _serve("moto_server", argv, f"{endpoint}/moto-api/", log_path, startup_timeout):
        yield endpoint


@contextlib.contextmanager
def gcs_emulator(log_path: Path | None = None, startup_timeout: float = 30.0) -> Iterator[str]:
    """Run ``gcp-storage-emulator`` (in memory) on a free loopback port; yield its URL for STORAGE_EMULATOR_HOST."""
    port = free_port()
    endpoint = f"http://{LOOPBACK}:{port}"
    argv = [venv_tool("gcp-storage-emulator"), "start", "--host", LOOPBACK, "--port", str(port), "--in-memory"]
    with _serve("gcp-storage-emulator", argv, f"{endpoint}/storage/v1/b", log_path, startup_timeout):
        yield endpoint


@contextlib.contextmanager
def _serve(name: str, argv: list[str], probe_url: str, log_path: Path | None, startup_timeout: float) -> Iterator[None]:
    """Start a server process, wait until ``probe_url`` answers, and stop the process however the block ends."""
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    process = subprocess.Popen(argv, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with code {process.returncode} before answering {probe_url}")
            try:
                urllib.request.urlopen(probe_url, timeout=1).close()  # noqa: S310 - loopback URL we built
                break
            except urllib.error.HTTPError:
                break  # it answers, if not with 200
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not answer {probe_url} within {startup_timeout:.0f}s") from None
                time.sleep(0.1)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log is not subprocess.DEVNULL:
            log.close()


def create_object_lock_bucket(client, bucket: str) -> None:
    """A bucket as the store requires it: Object Lock on (which turns versioning on)."""
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
