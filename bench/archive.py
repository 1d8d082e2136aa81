"""Archive throughput: ``archive_run`` vs ``aws s3 cp --recursive``, both to one local moto server.

A bundle of 200 random files of 2.5 MiB (500 MiB; ``--quick``: 40 files, 100 MiB) is archived
with :func:`soc2_evidence.archive.run.archive_run` (fail-closed bucket check, 8 upload threads
with ChecksumSHA256, COMPLIANCE lock and IfNoneMatch, then the hash-chained manifest) and
copied with the AWS CLI, to separate prefixes of one Object Lock bucket on a moto server on
loopback. Ratio = CLI time / our time. Target: >= 1.0x (we are at least as fast as the CLI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench import Result, bench_tempdir, isolated_aws_environ, ratio_result, time_command, timed

NAME = "archive"
TARGET = 1.0
FILE_SIZE = 5 * 1024 * 1024 // 2  # 2.5 MiB, under the store's multipart threshold
FILES, QUICK_FILES = 200, 40
BUCKET = "bench-evidence"
SOURCE = "bench-blobs"
RETENTION_DAYS = 400


def run(quick: bool = False) -> Result:
    from soc2_evidence.demo.local_services import create_object_lock_bucket, moto_server

    files = QUICK_FILES if quick else FILES
    with bench_tempdir(NAME) as tmp:
        items = write_random_files(tmp / "bundle" / "items", files)
        aws = find_aws_cli(tmp)
        with moto_server(tmp / "moto.log") as endpoint, isolated_aws_environ(tmp):
            os.environ["AWS_ENDPOINT_URL_S3"] = endpoint
            import boto3

            client = boto3.client("s3")
            create_object_lock_bucket(client, BUCKET)
            bundle = staged_bundle(items.parent)

            cli_s = time_command(
                [
                    aws,
                    "--endpoint-url",
                    endpoint,
                    "s3",
                    "cp",
                    "--recursive",
                    str(items),
                    f"s3://{BUCKET}/cli/",
                    "--only-show-errors",
                ],
                env=dict(os.environ),
            )
            ours_s, archived = timed(lambda: archive_bundle(bundle))

            cli_count = count_objects(client, "cli/")
            ours_count = count_objects(client, "ours/")
            if cli_count != files or ours_count != files + 2:  # + manifest + chain link
                raise RuntimeError(f"expected {files} objects per upload, found cli={cli_count} ours={ours_count}")
            # Not the outcome: without a validation report the run is (rightly) archived as failed.
            if len(archived.manifest["items"]) != files:
                raise RuntimeError(f"manifest {archived.manifest_key} lists {len(archived.manifest['items'])} items")
    size_mib = files * FILE_SIZE / 1024 / 1024
    return ratio_result(
        NAME, "soc2-evidence", ours_s, "aws s3 cp", cli_s, TARGET, note=f"{files} files, {size_mib:.0f} MiB"
    )


def write_random_files(directory: Path, count: int) -> Path:
    """Random (incompressible) files, flushed to disk so write-back cannot land inside a timing."""
    directory.mkdir(parents=True)
    for index in range(count):
        with open(directory / f"blob-{index:03d}.bin", "wb") as stream:
            stream.write(os.urandom(FILE_SIZE))
            stream.flush()
            os.fsync(stream.fileno())
    return directory


def staged_bundle(directory: Path):
    """A finished bundle of the files in ``directory/items``, built as BundleWriter would, without redaction."""
    from soc2_evidence import __version__
    from soc2_evidence.core.evidence import EvidenceItem, RunContext, code_revision, rfc3339, utc_now
    from soc2_evidence.core.hashing import digest_file
    from soc2_evidence.core.staging import Bundle, StagedItem

    run = RunContext(
        dag_id="bench_archive",
        run_id="manual__2026-01-01T02:00:00+00:00",
        logical_date=datetime(2026, 1, 1, 2, tzinfo=UTC),
    )
    staged = []
    for path in sorted((directory / "items").iterdir()):
        digest = digest_file(path)
        item = EvidenceItem(
            family="config",
            source=SOURCE,
            name=path.name,
            media_type="application/octet-stream",
            sha256=digest.sha256,
            size=digest.size,
            collected_at=rfc3339(utc_now()),
            collector="bench",
            collector_version=__version__,
            code_revision=code_revision(),
            try_number=1,
            run=run,
        )
        staged.append(StagedItem(item, path))
    return Bundle(
        directory=directory,
        family="config",
        source=SOURCE,
        kind="bench",
        run=run,
        items=tuple(staged),
        redactions={},
        reported_totals={},
    )


def archive_bundle(bundle):
    from soc2_evidence.archive.run import SourceOutcome, archive_run
    from soc2_evidence.archive.stores.s3 import S3ObjectLockStore

    return archive_run(
        S3ObjectLockStore(BUCKET, "ours"),
        family="config",
        run=bundle.run,
        bundles=[bundle],
        sources=[SourceOutcome(name=SOURCE, kind="bench", status="archived")],
        retention_days=RETENTION_DAYS,
    )


def count_objects(client, prefix: str) -> int:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sum(len(page.get("Contents", [])) for page in pages)


def find_aws_cli(tmp: Path) -> str:
    """The installed ``aws`` (past a pyenv shim); else AWS CLI v1 pip-installed into a venv under ``tmp``."""
    found = shutil.which("aws")
    if found and "/.pyenv/shims/" in found:
        resolved = subprocess.run(["pyenv", "which", "aws"], capture_output=True, text=True, check=False)
        if resolved.returncode == 0 and resolved.stdout.strip():
            found = resolved.stdout.strip()
    if found:
        return found
    venv = tmp / "awscli-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "awscli"], check=True)
    return str(venv / "bin" / "aws")
