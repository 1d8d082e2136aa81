"""Hashing throughput: ``soc2_evidence.core.hashing.digest_file`` vs ``openssl dgst -sha256``.

Both hash the same 1 GiB file (``--quick``: 256 MiB) from a warm page cache, best of 3 each;
the two digests must agree. Ratio = openssl time / our time. Target: >= 0.9x (our streaming
SHA-256 is within 10% of OpenSSL's command-line tool).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from bench import Result, bench_tempdir, best_of, ratio_result, time_command

NAME = "hashing"
TARGET = 0.9
BLOCK = 64 * 1024 * 1024
SIZE, QUICK_SIZE = 1024 * 1024 * 1024, 256 * 1024 * 1024
RUNS, QUICK_RUNS = 3, 2


def run(quick: bool = False) -> Result:
    from soc2_evidence.core.hashing import digest_file

    size = QUICK_SIZE if quick else SIZE
    runs = QUICK_RUNS if quick else RUNS
    with bench_tempdir(NAME) as tmp:
        path = write_file(tmp / "evidence.bin", size)
        warm_page_cache(path)

        ours_s, digest = best_of(runs, lambda: digest_file(path))
        argv = ["openssl", "dgst", "-sha256", "-r", str(path)]
        openssl_s = min(time_command(argv) for _ in range(runs))
        theirs = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()[0]

        if digest.sha256 != theirs or digest.size != size:
            raise RuntimeError(f"digests disagree: ours {digest.sha256} ({digest.size} bytes), openssl {theirs}")
    return ratio_result(
        NAME, "digest_file", ours_s, "openssl dgst", openssl_s, TARGET, note=f"{size // 2**20} MiB, best of {runs}"
    )


def write_file(path: Path, size: int) -> Path:
    """Random-looking content, fast to write: one random block repeated."""
    block = os.urandom(BLOCK)
    with open(path, "wb") as stream:
        for _ in range(size // BLOCK):
            stream.write(block)
        stream.flush()
        os.fsync(stream.fileno())  # write-back must not land inside a timing
    return path


def warm_page_cache(path: Path) -> None:
    with open(path, "rb", buffering=0) as stream:
        buffer = bytearray(BLOCK)
        while stream.readinto(buffer):
            pass
