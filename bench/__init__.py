"""Benchmarks of soc2-evidence against the tools an engineer would otherwise reach for.

Run them with ``make bench`` or ``python -m bench [name ...] [--quick]``. Each benchmark is a
module here with a ``run(quick: bool) -> Result`` function; it works only on loopback and in
its own temporary directory under /tmp, which it removes, and stops any server it starts.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

BENCHMARKS = (
    "archive",
    "hashing",
    "dag_parse",
    "validation",
    "aws_snapshot",
    "restore_overhead",
    "tickets",
    "redaction_engine",
    "config_repo",
)
TEMP_ROOT = "/tmp"


@dataclass(frozen=True)
class Result:
    """One benchmark's outcome: the line to print and whether it met its target."""

    name: str
    line: str
    passed: bool


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def ratio_result(
    name: str, ours: str, ours_s: float, theirs: str, theirs_s: float, target: float, note: str = ""
) -> Result:
    """``ratio = theirs / ours``: above 1.0 means ours is faster."""
    ratio = theirs_s / ours_s
    passed = ratio >= target
    suffix = f" [{note}]" if note else ""
    line = (
        f"{name}: {ours} {ours_s:.2f} s vs {theirs} {theirs_s:.2f} s -> {ratio:.2f}x "
        f"(target >= {target:.1f}x) {verdict(passed)}{suffix}"
    )
    return Result(name, line, passed)


@contextlib.contextmanager
def bench_tempdir(name: str) -> Iterator[Path]:
    """A scratch directory under /tmp, removed however the benchmark ends."""
    with tempfile.TemporaryDirectory(prefix=f"soc2-bench-{name}-", dir=TEMP_ROOT) as path:
        yield Path(path)


def timed(function: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def best_of(runs: int, function: Callable[[], object]) -> tuple[float, object]:
    """The fastest of ``runs`` calls, and the value of the last call."""
    times = []
    value = None
    for _ in range(runs):
        elapsed, value = timed(function)
        times.append(elapsed)
    return min(times), value


def run_command(
    argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> tuple[float, str]:
    """Wall time of one subprocess, start to exit, and its output; raises if it fails."""
    start = time.perf_counter()
    completed = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {completed.returncode}: {completed.stderr.strip()[-2000:]}")
    return elapsed, completed.stdout


def time_command(argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None) -> float:
    return run_command(argv, env, cwd)[0]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


@contextlib.contextmanager
def isolated_aws_environ(tmp: Path) -> Iterator[None]:
    """Only the dummy credentials in the AWS environment: no profile, config file or instance
    metadata of this machine can change what a benchmark's boto3 or AWS CLI does."""
    from soc2_evidence.demo.local_services import DUMMY_AWS_ENV

    empty = tmp / "aws-empty-config"
    empty.touch()
    env = {
        **DUMMY_AWS_ENV,
        "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    with patched_environ(env, remove_prefix="AWS_"):
        yield


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str], remove_prefix: str = "") -> Iterator[None]:
    """Set ``values`` in ``os.environ`` (dropping variables that start with ``remove_prefix``); restore on exit."""
    saved = dict(os.environ)
    try:
        if remove_prefix:
            for key in [key for key in os.environ if key.startswith(remove_prefix)]:
                del os.environ[key]
        os.environ.update(values)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
