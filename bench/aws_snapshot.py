"""AWS snapshot at scale: the aws collector over thousands of IAM users and S3 buckets, memory flat.

A moto server on loopback is seeded with 1,000 IAM users and 400 buckets and snapshotted, then
grown to 5,000 users and 2,000 buckets and snapshotted again (``--quick``: 100/40, then 500/200).
Every fifth user has an access key and every tenth a console password. Each snapshot is
``pipeline.extract_source`` in a fresh interpreter that reports its wall time and peak RSS
(``ru_maxrss``); a snapshot of the empty account first gives the baseline. The staged row
counts must equal what was seeded.

moto answers GetAccountAuthorizationDetails and ListBuckets in one page however many users and
buckets there are (AWS pages them), so the large run also holds one 5,000-user page AWS would
never send. Target: peak RSS grows by at most 0.5 KiB per added user or bucket from the small
to the large population; holding the records would cost more than that (a user record alone is
about 0.7 KiB as a Python dict). ``--quick`` adds too few resources to resolve less than an
allocator arena, so its bound is 2 KiB.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import Result, bench_tempdir, isolated_aws_environ, run_command, verdict

NAME = "aws_snapshot"
TARGET_KIB_PER_RESOURCE, QUICK_TARGET_KIB_PER_RESOURCE = 0.5, 2.0
SIZES = ((0, 0), (1_000, 400), (5_000, 2_000))
QUICK_SIZES = ((0, 0), (100, 40), (500, 200))
ACCOUNT = "111122223333"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/evidence-reader"
SOURCE = "aws-bench"
SEED_THREADS = 8
SEED_PASSWORD = "Bench-Console-Passw0rd"  # noqa: S105 - a made-up console password for moto
ROOT = Path(__file__).resolve().parents[1]


def run(quick: bool = False) -> Result:
    from soc2_evidence.demo.local_services import moto_server, s3_control_env

    sizes = QUICK_SIZES if quick else SIZES
    with bench_tempdir(NAME) as tmp, moto_server(tmp / "moto.log") as endpoint, isolated_aws_environ(tmp):
        os.environ.update(s3_control_env(endpoint), AWS_ENDPOINT_URL=endpoint)
        config = write_config(tmp)
        session = seed_session()
        measured = []
        users = buckets = 0
        seed_s = 0.0
        for target_users, target_buckets in sizes:
            started = time.perf_counter()
            seed(session, range(users, target_users), range(buckets, target_buckets))
            seed_s += time.perf_counter() - started
            users, buckets = target_users, target_buckets
            result = snapshot(config)
            if (result["users"], result["buckets"]) != (users, buckets):
                raise RuntimeError(
                    f"staged {result['users']} users and {result['buckets']} buckets, seeded {users} and {buckets}"
                )
            measured.append((users, buckets, result))
    (_, _, baseline), (small_users, small_buckets, small), (large_users, large_buckets, large) = measured
    growth_kib = large["maxrss_kib"] - small["maxrss_kib"]
    added = (large_users + large_buckets) - (small_users + small_buckets)
    per_resource = max(growth_kib, 0) / added
    target = QUICK_TARGET_KIB_PER_RESOURCE if quick else TARGET_KIB_PER_RESOURCE
    passed = per_resource <= target

    def mib(kib: int) -> str:
        return f"{kib / 1024:.1f} MiB"

    line = (
        f"{NAME}: {small_users} users + {small_buckets} buckets in {small['seconds']:.1f} s, peak RSS "
        f"{mib(small['maxrss_kib'])}; {large_users} + {large_buckets} in {large['seconds']:.1f} s "
        f"({(large_users + large_buckets) / large['seconds']:.0f} resources/s), peak RSS {mib(large['maxrss_kib'])} "
        f"(baseline {mib(baseline['maxrss_kib'])}) -> {per_resource:.2f} KiB per added resource "
        f"(target <= {target:.1f}) {verdict(passed)} [seeding {seed_s:.0f} s]"
    )
    return Result(NAME, line, passed)


def write_config(tmp: Path) -> Path:
    import yaml

    path = tmp / "evidence.yaml"
    document = {
        "store": {"url": (tmp / "store").as_uri()},
        "staging_dir": str(tmp / "staging"),
        "sources": [
            {
                "name": SOURCE,
                "kind": "aws",
                "family": "config",
                "accounts": [{"id": ACCOUNT, "role_arn": ROLE, "regions": ["us-east-1"]}],
            }
        ],
    }
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def seed_session():
    import boto3

    credentials = boto3.client("sts").assume_role(RoleArn=ROLE, RoleSessionName="bench-seed")["Credentials"]
    return boto3.session.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name="us-east-1",
    )


def seed(session, users: range, buckets: range) -> None:
    iam, s3 = session.client("iam"), session.client("s3")

    def user(number: int) -> None:
        name = f"user-{number:05d}"
        iam.create_user(UserName=name)
        if number % 5 == 0:
            iam.create_access_key(UserName=name)
        if number % 10 == 0:
            iam.create_login_profile(UserName=name, Password=SEED_PASSWORD)

    def bucket(number: int) -> None:
        s3.create_bucket(Bucket=f"bench-bucket-{number:05d}")

    with ThreadPoolExecutor(SEED_THREADS) as pool:
        list(pool.map(user, users))
        list(pool.map(bucket, buckets))


def snapshot(config: Path) -> dict:
    """``extract_source`` in a fresh interpreter: its wall time, peak RSS and staged totals."""
    command = [sys.executable, "-m", "bench.aws_snapshot", str(config)]
    _, out = run_command(command, env=dict(os.environ), cwd=ROOT)
    return json.loads(out.strip().splitlines()[-1])


def child(config_path: str) -> None:
    from datetime import UTC, datetime

    from soc2_evidence.collectors import load_config
    from soc2_evidence.core.evidence import RunContext
    from soc2_evidence.core.staging import Bundle
    from soc2_evidence.orchestration.pipeline import extract_source

    run = RunContext("bench_aws_snapshot", f"manual__{time.time_ns()}", datetime.now(UTC))
    started = time.perf_counter()
    summary = extract_source(load_config(config_path), SOURCE, run)
    seconds = time.perf_counter() - started
    totals = Bundle.load(summary["bundle"]).reported_totals
    report = {
        "seconds": seconds,
        "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "users": totals["iam_users"],
        "buckets": totals["s3_buckets"],
    }
    print(json.dumps(report))


if __name__ == "__main__":
    child(sys.argv[1])
