"""PostgreSQL security configuration: roles, memberships, privileges, settings, pg_hba rules, extensions.

Options (:class:`Options`): ``conn_id`` (an Airflow ``postgres`` connection) or ``dsn`` (a libpq
connection string or URL), exactly one; ``superusers`` (roles approved to be superuser, default
``[postgres]``); ``connect_timeout`` (seconds, default 10).

Everything is read in one read-only REPEATABLE READ transaction, so every dataset and the
totals counted beside it describe the same moment. Roles come from ``pg_roles``; whether a
role has a password, and of which kind, is computed inside the server from ``pg_authid`` when
the collecting role may read it (``pg_roles`` shows every password as ``********``): only a
boolean and the hash's scheme leave the server, never the hash. What the collecting role may
not read (``pg_authid``, ``pg_hba_file_rules``, superuser-only settings) is recorded as such in
``server.json`` and ``settings.jsonl``, and the readability checks turn it into findings.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated, Any

import msgspec

from soc2_evidence.collectors import CollectContext
from soc2_evidence.collectors.support.postgres import connection_from_options
from soc2_evidence.core import config
from soc2_evidence.core.config import Problem, SourceConfig
from soc2_evidence.core.datasets import Dataset, may_be_empty, must_exist
from soc2_evidence.core.errors import CollectorError, describe
from soc2_evidence.core.evidence import rfc3339
from soc2_evidence.core.staging import BundleWriter

log = logging.getLogger(__name__)

KIND = "postgres_config"
FAMILY = "config"
VERSION = "1.0.0"
DEFAULT_SUPERUSERS = ("postgres",)
DEFAULT_CONNECT_TIMEOUT = 10
FETCH_ROWS = 1000


class Options(config.Options):
    conn_id: Annotated[str | None, msgspec.Meta(description="Airflow postgres connection; or set dsn")] = None
    dsn: Annotated[str | None, msgspec.Meta(description="libpq connection string or URL; or set conn_id")] = None
    superusers: Annotated[list[str], msgspec.Meta(description="Roles approved to be superuser")] = msgspec.field(
        default_factory=lambda: list(DEFAULT_SUPERUSERS)
    )
    connect_timeout: Annotated[config.PositiveInt, msgspec.Meta(description="Seconds")] = DEFAULT_CONNECT_TIMEOUT

    def problems(self) -> Iterator[Problem]:
        if self.conn_id and self.dsn:
            yield Problem((), "set only one of options 'conn_id' and 'dsn'")
        elif not (self.conn_id or self.dsn):
            yield Problem((), "set option 'conn_id' (an Airflow connection) or 'dsn'")


# Security-relevant settings present in every supported version (13 and later).
SECURITY_SETTINGS = (
    "authentication_timeout",
    "idle_in_transaction_session_timeout",
    "listen_addresses",
    "log_connections",
    "log_disconnections",
    "log_line_prefix",
    "log_statement",
    "logging_collector",
    "password_encryption",
    "port",
    "row_security",
    "shared_preload_libraries",
    "ssl",
    "ssl_ciphers",
    "ssl_min_protocol_version",
    "ssl_prefer_server_ciphers",
)

SERVER = Dataset(
    name="postgres_config.server",
    context={
        "collecting_role": "Names who read the server, for the auditor",
        "collecting_role_superuser": "Why pg_authid and pg_hba were readable; the readable_* flags are judged",
        "database": "Which database was connected to",
        "host": "Names the server in findings",
        "port": "Names the server in findings",
        "server_version": "Which version, for patching (not judged here)",
        "server_version_num": "Which version, as a number",
        "superuser_allow_list": "The allow-list roles.superuser_allowed was computed against",
    },
    existence=must_exist("exists", "The server's identity and what the collecting role could read are recorded"),
    item="server.json",
    key=("connection",),
    columns={
        "connection": "string",
        "host": "string",
        "port": "integer",
        "database": "string",
        "server_version": "string",
        "server_version_num": "integer",
        "collecting_role": "string",
        "collecting_role_superuser": "boolean",
        "superuser_allow_list": "array",
        "role_passwords_readable": "boolean",
        "hba_rules_readable": "boolean",
    },
    required=(
        "server_version",
        "server_version_num",
        "collecting_role",
        "role_passwords_readable",
        "hba_rules_readable",
    ),
    description="The server, the role that collected, and what that role could not read",
)
ROLES = Dataset(
    name="postgres_config.roles",
    context={
        "bypass_rls": "A powerful attribute; not judged yet (superusers and logins are)",
        "connection_limit": "Capacity, not access",
        "create_db": "A powerful attribute; not judged yet (superusers and logins are)",
        "create_role": "A powerful attribute; not judged yet (superusers and logins are)",
        "inherit": "How memberships apply; memberships are reviewed by people, not judged here",
        "replication": "A powerful attribute; not judged yet (superusers and logins are)",
        "valid_until": "Password expiry; no criterion here asks for one",
    },
    existence=must_exist("exists", "At least one role is read (a cluster always has its bootstrap superuser)"),
    item="roles.jsonl",
    key=("role",),
    columns={
        "role": "string",
        "login": "boolean",
        "superuser": "boolean",
        "superuser_allowed": "boolean",
        "create_role": "boolean",
        "create_db": "boolean",
        "replication": "boolean",
        "bypass_rls": "boolean",
        "inherit": "boolean",
        "connection_limit": "integer",
        "valid_until": "string",
        "has_password": "boolean",
        "password_type": "string",
    },
    required=("login", "superuser", "superuser_allowed", "create_role", "create_db", "replication", "bypass_rls"),
    value_sets={"password_type": ("scram-sha-256", "md5", "other")},
    total="roles",
    description="Every role with its attributes; has_password and password_type are null when pg_authid is unreadable",
)
MEMBERSHIPS = Dataset(
    name="postgres_config.memberships",
    context={
        "admin_option": "Who may grant the role on; memberships are reviewed by people",
    },
    existence=may_be_empty("A cluster need not grant roles to roles"),
    item="memberships.jsonl",
    key=("role", "member", "grantor"),
    columns={"role": "string", "member": "string", "grantor": "string", "admin_option": "boolean"},
    required=("admin_option",),
    total="memberships",
    description="Which role is a member of which, granted by whom, with or without admin option",
)
PRIVILEGES = Dataset(
    name="postgres_config.privileges",
    context={
        "default_acl": "Whether the grant comes from default privileges",
        "grantable": "Whether the grantee may grant it on",
        "owner": "The owner of the object, for remediation",
        "schema": "Where the object is",
    },
    existence=may_be_empty("Nothing granted beyond owners is the least-privilege goal"),
    item="privileges.jsonl",
    key=("object_type", "object", "grantee", "grantor", "privilege"),
    columns={
        "object_type": "string",
        "schema": "string",
        "object": "string",
        "owner": "string",
        "grantee": "string",
        "grantor": "string",
        "privilege": "string",
        "grantable": "boolean",
        "default_acl": "boolean",
    },
    required=("owner", "grantable", "default_acl"),
    value_sets={
        "object_type": (
            "database",
            "schema",
            "table",
            "partitioned_table",
            "view",
            "materialized_view",
            "sequence",
            "foreign_table",
        )
    },
    total="privileges",
    description="Every privilege on databases and on the schemas, tables, views and sequences of non-system "
    "schemas; owners' implicit privileges are listed too (default_acl)",
)
SETTINGS = Dataset(
    name="postgres_config.settings",
    context={
        "source": "Where the value comes from (file, default), for remediation",
        "unit": "The unit of the value",
    },
    existence=must_exist("exists", "The server's settings are read"),
    item="settings.jsonl",
    key=("name",),
    columns={"name": "string", "setting": "string", "unit": "string", "source": "string", "visible": "boolean"},
    required=("visible",),
    description="Security-relevant server settings; visible is false where the collecting role may not read one",
)
HBA_RULES = Dataset(
    name="postgres_config.hba_rules",
    context={
        "address": "Where a rule applies; the method is judged",
        "database": "Which databases a rule applies to; the method is judged",
        "error": "A line the server could not parse, shown as parsed",
        "netmask": "Where a rule applies; the method is judged",
        "options": "Method options (e.g. clientcert)",
        "type": "local, host, hostssl: the method is judged for every type",
        "user_name": "Which roles a rule applies to; the method is judged",
    },
    existence=may_be_empty("An unreadable pg_hba is a finding of postgres_config.server.hba_rules_readable"),
    item="hba_rules.jsonl",
    key=("line_number",),
    columns={
        "line_number": "integer",
        "type": "string",
        "database": "array",
        "user_name": "array",
        "address": "string",
        "netmask": "string",
        "auth_method": "string",
        "options": "array",
        "error": "string",
    },
    total="hba_rules",
    description="Client authentication rules as the server parsed pg_hba.conf (empty when unreadable: see server.json)",
)
EXTENSIONS = Dataset(
    name="postgres_config.extensions",
    context={
        "schema": "Where the extension is installed",
        "version": "Which version, for patching (not judged here)",
    },
    existence=may_be_empty("A database need not install extensions"),
    item="extensions.jsonl",
    key=("name",),
    columns={"name": "string", "version": "string", "schema": "string"},
    required=("version", "schema"),
    total="extensions",
    description="Installed extensions of the database",
)
DATASETS = (SERVER, ROLES, MEMBERSHIPS, PRIVILEGES, SETTINGS, HBA_RULES, EXTENSIONS)

_NON_SYSTEM_SCHEMA = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' "
    "AND n.nspname NOT LIKE 'pg\\_temp\\_%'"
)
# Whether a role has a password, and its scheme, computed in the server: the hash never leaves it.
_AUTH_COLUMNS = """
    (SELECT a.rolpassword IS NOT NULL FROM pg_authid a WHERE a.oid = r.oid) AS has_password,
    (SELECT CASE WHEN a.rolpassword IS NULL THEN NULL
                 WHEN a.rolpassword LIKE 'SCRAM-SHA-256$%%' THEN 'scram-sha-256'
                 WHEN a.rolpassword LIKE 'md5%%' THEN 'md5'
                 ELSE 'other' END
     FROM pg_authid a WHERE a.oid = r.oid) AS password_type"""
_NO_AUTH_COLUMNS = "NULL::boolean AS has_password, NULL::text AS password_type"
_ROLES = """
SELECT r.rolname AS role, r.rolcanlogin AS login, r.rolsuper AS superuser,
       r.rolname = ANY(%s) AS superuser_allowed, r.rolcreaterole AS create_role, r.rolcreatedb AS create_db,
       r.rolreplication AS replication, r.rolbypassrls AS bypass_rls, r.rolinherit AS inherit,
       r.rolconnlimit AS connection_limit,
       CASE WHEN isfinite(r.rolvaliduntil) THEN r.rolvaliduntil END AS valid_until,
       CASE WHEN NOT isfinite(r.rolvaliduntil) THEN r.rolvaliduntil::text END AS valid_until_special,
       {auth_columns}
FROM pg_roles r
ORDER BY r.rolname COLLATE "C"
"""
_MEMBERSHIPS = """
SELECT r.rolname AS role, m.rolname AS member, COALESCE(g.rolname, am.grantor::text) AS grantor,
       am.admin_option
FROM pg_auth_members am
JOIN pg_roles r ON r.oid = am.roleid
JOIN pg_roles m ON m.oid = am.member
LEFT JOIN pg_roles g ON g.oid = am.grantor
ORDER BY r.rolname COLLATE "C", m.rolname COLLATE "C", COALESCE(g.rolname, am.grantor::text) COLLATE "C"
"""
_PRIVILEGES = """
WITH objects AS (
    SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned_table' WHEN 'v' THEN 'view'
                          WHEN 'm' THEN 'materialized_view' WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign_table'
           END AS object_type,
           n.nspname AS schema, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS object,
           c.relowner AS owner,
           COALESCE(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner)) AS acl,
           c.relacl IS NULL AS default_acl
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND {non_system}
    UNION ALL
    SELECT 'schema', n.nspname, quote_ident(n.nspname), n.nspowner,
           COALESCE(n.nspacl, acldefault('n', n.nspowner)), n.nspacl IS NULL
    FROM pg_namespace n WHERE {non_system}
    UNION ALL
    SELECT 'database', NULL, quote_ident(d.datname), d.datdba,
           COALESCE(d.datacl, acldefault('d', d.datdba)), d.datacl IS NULL
    FROM pg_database d
)
SELECT o.object_type, o.schema, o.object, pg_get_userbyid(o.owner) AS owner,
       CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END AS grantee,
       pg_get_userbyid(a.grantor) AS grantor, a.privilege_type AS privilege, a.is_grantable AS grantable,
       o.default_acl
FROM objects o CROSS JOIN LATERAL aclexplode(o.acl) a
"""
_PRIVILEGES_LISTING = """
SELECT * FROM ({privileges}) p
ORDER BY p.object_type COLLATE "C", p.object COLLATE "C", p.grantee COLLATE "C", p.grantor COLLATE "C",
         p.privilege COLLATE "C"
"""
_SETTINGS = """
SELECT w.name, s.setting, s.unit, s.source, s.name IS NOT NULL AS visible
FROM unnest(%s::text[]) AS w(name) LEFT JOIN pg_settings s ON s.name = w.name
ORDER BY w.name COLLATE "C"
"""
_HBA_RULES = """
SELECT line_number, type, database, user_name, address, netmask, auth_method, options, error
FROM pg_hba_file_rules ORDER BY line_number
"""
_EXTENSIONS = """
SELECT e.extname AS name, e.extversion AS version, n.nspname AS schema
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
ORDER BY e.extname COLLATE "C"
"""


def collect(source: SourceConfig, writer: BundleWriter, context: CollectContext) -> None:
    import psycopg

    superusers = source.options.superusers
    target = _Target.of(source, context)
    try:
        connection = psycopg.connect(**target.parameters, row_factory=psycopg.rows.dict_row)
    except psycopg.Error as error:
        raise CollectorError(
            f"source {source.name}: cannot connect to PostgreSQL at {target.where}: {target.scrub(error)}"
        ) from error
    with connection:
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        connection.read_only = True
        reading = SERVER
        try:
            with connection.transaction():
                server = _server(connection, sorted(superusers))
                writer.add_json(SERVER.item, server, description=SERVER.description)
                for reading, query, parameters, counted in _reads(server, superusers):
                    if reading is HBA_RULES and not server["hba_rules_readable"]:
                        log.warning(
                            "source %s: role %s may not read pg_hba_file_rules; recorded in %s",
                            source.name,
                            server["collecting_role"],
                            SERVER.item,
                        )
                        writer.add_jsonl(reading.item, [], description=reading.description)
                        writer.report_total(reading.total, 0)
                        continue
                    if counted is not None:
                        total = connection.execute(counted).fetchone()["n"]
                        writer.report_total(reading.total, total)
                    records = _stream(connection, reading, query, parameters)
                    writer.add_jsonl(reading.item, records, description=reading.description)
        except psycopg.Error as error:
            raise CollectorError(
                f"source {source.name}: PostgreSQL at {target.where}: reading {reading.item} failed: "
                f"{target.scrub(error)}"
            ) from error


def _reads(server: dict[str, Any], superusers: list[str]) -> list[tuple[Dataset, Any, tuple, Any]]:
    """Per dataset: the listing query, its parameters, and the query counting its rows (None: not counted)."""
    from psycopg import sql

    def count(rows: sql.Composable) -> sql.Composable:
        return sql.SQL("SELECT count(*) AS n FROM {}").format(rows)

    def catalog(table: str) -> sql.Composable:
        return count(sql.Identifier("pg_catalog", table))

    auth_columns = _AUTH_COLUMNS if server["role_passwords_readable"] else _NO_AUTH_COLUMNS
    privileges = sql.SQL(_PRIVILEGES).format(non_system=sql.SQL(_NON_SYSTEM_SCHEMA))
    return [
        (ROLES, sql.SQL(_ROLES).format(auth_columns=sql.SQL(auth_columns)), (superusers,), catalog("pg_roles")),
        (MEMBERSHIPS, sql.SQL(_MEMBERSHIPS), (), catalog("pg_auth_members")),
        (
            PRIVILEGES,
            sql.SQL(_PRIVILEGES_LISTING).format(privileges=privileges),
            (),
            count(sql.SQL("({}) p").format(privileges)),
        ),
        (SETTINGS, sql.SQL(_SETTINGS), (list(SECURITY_SETTINGS),), None),
        (HBA_RULES, sql.SQL(_HBA_RULES), (), catalog("pg_hba_file_rules")),
        (EXTENSIONS, sql.SQL(_EXTENSIONS), (), catalog("pg_extension")),
    ]


def control_expectations(dataset: Dataset) -> list[Any]:
    """Control checks on the server's configuration: findings, not failures, when they do not hold."""
    from great_expectations.expectations.row_conditions import Column

    from soc2_evidence.validation.gx import control, expectations

    in_set = expectations.ExpectColumnValuesToBeInSet
    if dataset is SERVER:
        return [
            control(
                in_set,
                dataset,
                "role_passwords_readable",
                "The collecting role can tell which roles have passwords (it may read pg_authid)",
                remediation="Grant the collecting role SELECT on pg_authid, or collect as a superuser",
                column="role_passwords_readable",
                value_set=[True],
            ),
            control(
                in_set,
                dataset,
                "hba_rules_readable",
                "The collecting role can read the client authentication rules (pg_hba_file_rules)",
                remediation="Grant the collecting role SELECT on pg_hba_file_rules (or collect as a superuser)",
                column="hba_rules_readable",
                value_set=[True],
            ),
        ]
    if dataset is ROLES:
        return [
            control(
                in_set,
                dataset,
                "superuser_allowed",
                "Only roles on the source's superuser allow-list are superusers",
                remediation="ALTER ROLE ... NOSUPERUSER, or add the role to superuser_allow_list after review",
                column="superuser_allowed",
                value_set=[True],
                row_condition=Column("superuser") == True,  # noqa: E712 - builds a GX condition
            ),
            control(
                in_set,
                dataset,
                "login_has_password",
                "Every role that can log in has a password (PostgreSQL stores no empty password)",
                remediation="Set a password (ALTER ROLE ... PASSWORD) or remove LOGIN from the role",
                column="has_password",
                value_set=[True],
                row_condition=Column("login") == True,  # noqa: E712 - builds a GX condition
            ),
            control(
                in_set,
                dataset,
                "scram_passwords",
                "Every stored password is a SCRAM-SHA-256 verifier, none an MD5 hash",
                remediation="With password_encryption = scram-sha-256, set the password again: it is stored as SCRAM",
                column="password_type",
                value_set=["scram-sha-256"],
            ),
        ]
    if dataset is SETTINGS:
        return [
            control(
                in_set,
                dataset,
                "ssl_on",
                "The server accepts TLS connections (ssl = on)",
                remediation="Set ssl = on with a certificate and key in postgresql.conf, then reload",
                column="setting",
                value_set=["on"],
                row_condition=Column("name") == "ssl",
            ),
            control(
                in_set,
                dataset,
                "scram_password_encryption",
                "New passwords are stored as SCRAM-SHA-256 verifiers (password_encryption)",
                remediation="Set password_encryption = scram-sha-256 in postgresql.conf, then reload",
                column="setting",
                value_set=["scram-sha-256"],
                row_condition=Column("name") == "password_encryption",
            ),
            control(
                in_set,
                dataset,
                "connections_logged",
                "Every connection is logged (log_connections; PostgreSQL 18 also takes a list of stages)",
                remediation="Set log_connections = on in postgresql.conf, then reload",
                column="setting",
                value_set=["on", "all", "receipt,authentication,authorization"],
                row_condition=Column("name") == "log_connections",
            ),
            control(
                in_set,
                dataset,
                "disconnections_logged",
                "Every session end is logged with its duration (log_disconnections)",
                remediation="Set log_disconnections = on in postgresql.conf, then reload",
                column="setting",
                value_set=["on"],
                row_condition=Column("name") == "log_disconnections",
            ),
            control(
                in_set,
                dataset,
                "ddl_logged",
                "Schema changes are logged (log_statement is ddl, mod or all)",
                remediation="Set log_statement = ddl in postgresql.conf, then reload",
                column="setting",
                value_set=["ddl", "mod", "all"],
                row_condition=Column("name") == "log_statement",
            ),
            control(
                in_set,
                dataset,
                "setting_readable",
                "The collecting role can read every security setting (an unreadable one cannot be judged)",
                remediation="Grant the collecting role pg_read_all_settings",
                column="visible",
                value_set=[True],
            ),
        ]
    if dataset is HBA_RULES:
        return [
            control(
                expectations.ExpectColumnValuesToNotBeInSet,
                dataset,
                "no_trust_or_cleartext",
                "No client authentication rule admits without a password (trust) or takes one in clear text",
                remediation="Change the method of the pg_hba.conf line to scram-sha-256 (or cert), then reload",
                column="auth_method",
                value_set=["trust", "password"],
            )
        ]
    if dataset is PRIVILEGES:
        return [
            control(
                expectations.ExpectColumnValuesToNotBeInSet,
                dataset,
                "no_public_grants",
                "No table, view or sequence privilege is granted to PUBLIC (every role)",
                remediation="REVOKE the privilege FROM PUBLIC and grant it to the roles that need it",
                column="grantee",
                value_set=["PUBLIC"],
                row_condition=Column("object_type").is_not_in(["database", "schema"]),
            )
        ]
    return []


class _Target:
    """Where to connect, as libpq parameters, and how to name it without its password."""

    def __init__(self, parameters: dict[str, Any]) -> None:
        self.parameters = parameters
        self.password = parameters.get("password")
        host = parameters.get("host") or "the default host"
        port = f":{parameters['port']}" if parameters.get("port") else ""
        database = f"/{parameters['dbname']}" if parameters.get("dbname") else ""
        self.where = f"{host}{port}{database}"

    @classmethod
    def of(cls, source: SourceConfig, context: CollectContext) -> _Target:

        options: Options = source.options
        database = connection_from_options(
            source.name,
            {"conn_id": options.conn_id, "dsn": options.dsn},
            "conn_id",
            "dsn",
            context.credentials.connection,
            required=True,
        )
        parameters = dict(database.params)
        if database.password:
            parameters["password"] = database.password
        return cls({**parameters, "connect_timeout": options.connect_timeout})

    def scrub(self, error: BaseException) -> str:
        """The one-line description of ``error``, also without this connection's password (libpq may echo it)."""
        return describe(error, known_secrets=(self.password,))


def _server(connection, superusers: list[str]) -> dict[str, Any]:
    row = connection.execute(
        """
        SELECT current_setting('server_version') AS server_version,
               current_setting('server_version_num')::int AS server_version_num,
               current_user AS collecting_role,
               (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS collecting_role_superuser,
               has_table_privilege('pg_catalog.pg_authid', 'SELECT') AS role_passwords_readable,
               has_table_privilege('pg_catalog.pg_hba_file_rules', 'SELECT')
                 AND has_function_privilege('pg_catalog.pg_hba_file_rules()', 'EXECUTE') AS hba_rules_readable
        """
    ).fetchone()
    info = connection.info
    # Built from its parts, never from the DSN: the password cannot reach evidence this way.
    return {
        "connection": f"postgresql://{info.user}@{info.host}:{info.port}/{info.dbname}",
        "host": info.host,
        "port": int(info.port),
        "database": info.dbname,
        "superuser_allow_list": superusers,
        **row,
    }


def _stream(connection, dataset: Dataset, query: Any, parameters: tuple) -> Iterator[dict[str, Any]]:
    """Rows through a server-side cursor: memory stays flat however many there are."""
    with connection.cursor(name=f"soc2_evidence_{dataset.name.rsplit('.', 1)[-1]}") as cursor:
        cursor.itersize = FETCH_ROWS
        cursor.execute(query, parameters or None)
        for row in cursor:
            if "valid_until" in row:
                valid_until, special = row.pop("valid_until"), row.pop("valid_until_special")
                row["valid_until"] = rfc3339(valid_until) if valid_until is not None else special
            yield row
