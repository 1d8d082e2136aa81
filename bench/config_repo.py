"""Repository snapshot: the config_repo collector vs ``git archive | tar -x`` of the same tree.

A generated repository of 10,000 configuration files (about 200 MB of YAML-like text, one line
in 40 a credential to redact; ``--quick``: 500 files, 10 MB) plus one file over 200 MiB
(``--quick``: 32 MiB) is snapshotted by the real collector (hardened git, NUL-separated
listing, one streaming ``cat-file --batch``, redaction, staging with hashes) and extracted by
``git archive | tar -x``. Each runs in its own process, rounds interleaved, the fastest
counting (one round with ``--quick``). Ratio = our time / theirs. Target: <= 2.0x, on CPU
time (user + system, git and tar included): on this machine, 2 cores shared by several
sessions, wall time mostly measures who else is running; both are printed.

Memory: the collector's peak RSS (``getrusage`` ``ru_maxrss`` of its process) over its RSS
once imported, measured again with globs that leave the huge file out. Target: the huge file
adds at most ``max_file_bytes`` (1 MiB) to the peak, since it must be listed unread; what the
peak does grow with is the number of files (the listing and the bundle's item records), and
the line prints it per file.
"""

from __future__ import annotations

import json
import random
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import Result, bench_tempdir, run_command, verdict

NAME = "config_repo"
TARGET = 2.0
MAX_FILE_BYTES = 1024 * 1024
FILES, QUICK_FILES = 10_000, 500
FILE_BYTES = 20_000  # about: 10,000 files are about 200 MB
HUGE_BYTES, QUICK_HUGE_BYTES = 200 * 1024 * 1024 + 1, 32 * 1024 * 1024 + 1
ROUNDS, QUICK_ROUNDS = 3, 1
HUGE_PATH = "assets/huge.bin"
_ROOT = Path(__file__).resolve().parents[1]


def run(quick: bool = False) -> Result:
    files, huge = (QUICK_FILES, QUICK_HUGE_BYTES) if quick else (FILES, HUGE_BYTES)
    with bench_tempdir(NAME) as tmp:
        repo = make_repository(tmp / "repo", files, huge)
        theirs, ours = [], []
        for round_number in range(QUICK_ROUNDS if quick else ROUNDS):  # interleaved: noise slows both alike
            out = tmp / f"archive-{round_number}"
            out.mkdir()
            theirs.append(_timed_command(["sh", "-c", f"git -C {repo} archive HEAD | tar -x -C {out}"]))
            ours.append(_child(repo, tmp / f"staging-{round_number}", "**"))
        without_huge = _child(repo, tmp / "staging-without-huge", "conf/**")
    for measured in ours:
        if measured["archived"] != files or measured["listed"] != files + 1 or not measured["huge_unread"]:
            raise RuntimeError(f"collector listed {measured}; expected {files} archived and {HUGE_PATH} unread")
    best = min(ours, key=lambda measured: measured["seconds"])
    theirs_s = min(measured["seconds"] for measured in theirs)
    best_cpu = min(measured["cpu_seconds"] for measured in ours)
    theirs_cpu = min(measured["cpu_seconds"] for measured in theirs)
    ratio, cpu_ratio = best["seconds"] / theirs_s, best_cpu / theirs_cpu
    growth = max(measured["maxrss_mb"] - measured["baseline_mb"] for measured in ours)
    growth_without = without_huge["maxrss_mb"] - without_huge["baseline_mb"]
    huge_cost = growth - growth_without
    limit_mb = MAX_FILE_BYTES / 1024 / 1024
    passed = cpu_ratio <= TARGET and huge_cost <= limit_mb
    line = (
        f"{NAME}: collector {best_cpu:.2f} s CPU vs git archive | tar -x {theirs_cpu:.2f} s CPU -> {cpu_ratio:.2f}x "
        f"(target <= {TARGET:.1f}x; wall {best['seconds']:.2f} s vs {theirs_s:.2f} s -> {ratio:.2f}x); "
        f"peak RSS +{growth:.1f} MB over {best['baseline_mb']:.0f} MB imported, "
        f"+{growth_without:.1f} MB without the {huge / 1024 / 1024:.0f} MiB file: it adds {huge_cost:+.1f} MB "
        f"(target <= max_file_bytes, {limit_mb:.0f} MiB) {verdict(passed)} "
        f"[{files:,} files, {best['bytes'] / 1e6:.0f} MB read, {best['redactions']:,} redactions, "
        f"{growth * 1024 / (files + 1):.1f} KiB of peak RSS per listed file]"
    )
    return Result(NAME, line, passed)


def _timed_command(argv: list[str]) -> dict:
    """Wall and CPU time (user + system, of the command and all it waited for) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = run_command(argv)[0]
    return {"seconds": seconds, "cpu_seconds": _cpu_seconds(resource.RUSAGE_CHILDREN) - _cpu(before)}


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def _cpu_seconds(who: int) -> float:
    return _cpu(resource.getrusage(who))


def make_repository(path: Path, files: int, huge: int) -> Path:
    """A one-commit repository built with ``git fast-import``: text files in 100 folders and one huge binary."""
    path.mkdir(parents=True)
    run_command(["git", "init", "-q", "-b", "main", str(path)])
    importer = subprocess.Popen(
        ["git", "-C", str(path), "fast-import", "--quiet"], stdin=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert importer.stdin
    write = importer.stdin.write
    generator = random.Random(13)
    templates = [_document(generator) for _ in range(64)]
    write(b"commit refs/heads/main\ncommitter Bench <bench@example.test> 1767225600 +0000\ndata 6\nbench\n")
    for index in range(files):
        content = f"# file {index}\n".encode() + templates[index % len(templates)]
        write(f"M 100644 inline conf/{index % 100:02d}/service-{index:05d}.yaml\ndata {len(content)}\n".encode())
        write(content + b"\n")
    chunk = generator.randbytes(1024 * 1024)
    write(f"M 100644 inline {HUGE_PATH}\ndata {huge}\n".encode())
    for offset in range(0, huge, len(chunk)):
        write(chunk[: huge - offset])
    write(b"\n")
    importer.stdin.close()
    if importer.wait() != 0:
        raise RuntimeError(f"git fast-import failed: {importer.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
    return path


def _document(generator: random.Random) -> bytes:
    """About ``FILE_BYTES`` of service configuration, one line in 40 a credential."""
    lines, size = [], 0
    while size < FILE_BYTES:
        number = generator.randrange(1_000_000)
        if len(lines) % 40 == 39:
            line = f"  db_password: Pw{generator.getrandbits(64):016x}\n"
        else:
            line = f"  setting_{number}: value-{generator.getrandbits(48):012x} # tuned {number % 97}\n"
        lines.append(line)
        size += len(line)
    return ("service:\n" + "".join(lines)).encode()


def _child(repo: Path, staging: Path, glob: str) -> dict:
    """One collector run in a fresh process, so its peak RSS is its own."""
    completed = subprocess.run(
        [sys.executable, "-m", "bench.config_repo", str(repo), str(staging), glob],
        cwd=_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"collector child failed ({completed.returncode}): {completed.stderr.strip()[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _main(repo: Path, staging: Path, glob: str) -> None:
    from soc2_evidence.collectors import CollectContext, config_repo, source_config
    from soc2_evidence.core.evidence import RunContext
    from soc2_evidence.core.redaction import Redactor
    from soc2_evidence.core.staging import BundleWriter

    def clock() -> datetime:
        return datetime(2026, 1, 1, 2, tzinfo=UTC)

    baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
    cpu_before = _cpu_seconds(resource.RUSAGE_SELF) + _cpu_seconds(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    writer = BundleWriter(
        staging,
        family="config",
        source="repo-bench",
        kind="config_repo",
        run=RunContext("evidence_config", "bench", clock()),
        try_number=1,
        collector=config_repo.__name__,
        collector_version=config_repo.VERSION,
        redactor=Redactor(b"bench-key"),
        now=clock,
    )
    options = {"repo": str(repo), "max_file_bytes": MAX_FILE_BYTES, "globs": [glob]}
    config_repo.collect(
        source_config("repo-bench", "config_repo", options),
        writer,
        CollectContext(resolve_path=Path, now=clock),
    )
    bundle = writer.finish()
    seconds = time.perf_counter() - started
    cpu_seconds = _cpu_seconds(resource.RUSAGE_SELF) + _cpu_seconds(resource.RUSAGE_CHILDREN) - cpu_before
    listing = json.loads(next(staged.path for staged in bundle.items if staged.item.name == "files.json").read_bytes())
    records = listing["files"]
    huge = next((record for record in records if record["path"] == HUGE_PATH), None)
    result = {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "baseline_mb": baseline_mb,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "listed": len(records),
        "archived": sum(record["archived"] for record in records),
        "huge_unread": huge is not None and huge["sha256"] is None and not huge["archived"],
        "bytes": sum(record["size"] for record in records if record["sha256"]),
        "redactions": sum(record["redactions"] or 0 for record in records),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    _main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
