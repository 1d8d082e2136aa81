"""Loading the pipeline's YAML configuration: defaults, environment overrides, paths and every mistake.

Every mistake an operator can make in the file is refused when it is loaded, with the file, the
line, the key path and what was expected, and all of them at once.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from soc2_evidence.cli import main
from soc2_evidence.collectors import KINDS, kind_specs, load_config
from soc2_evidence.core.config import DEFAULT_CONFIG_PATH, DEFAULT_RETENTION_DAYS, PROJECT_ROOT, PipelineConfig
from soc2_evidence.core.errors import ConfigError
from soc2_evidence.core.evidence import FAMILIES

UNSCHEDULED = "schedules: {config_snapshot: null, tickets: null, backup_test: null}\n"
MINIMAL = "store:\n  url: file:///srv/evidence\n" + UNSCHEDULED
MISSING_URL = "missing required key 'url' (s3://bucket/prefix or gs://bucket/prefix), or set EVIDENCE_STORE"
REPO_SOURCE = "  - {name: app, kind: config_repo, family: config, repo: .}\n"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch, tmp_path):
    for name in ("EVIDENCE_STORE", "EVIDENCE_CONFIG", "EVIDENCE_STAGING"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow-home"))


def write(tmp_path: Path, text: str, name: str = "evidence.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problem(path: Path, line: int, key: str, message: str) -> str:
    """A pattern for a one-problem ConfigError: the file and line, the key path, then the message."""
    return "^" + re.escape(f"{path}:{line}: {key}: {message}")


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    lines = str(caught.value).splitlines()
    return lines[1:] if len(lines) > 1 else lines


# --- valid configurations ---------------------------------------------------------------


EVERY_FAMILY = (
    "sources:\n"
    + REPO_SOURCE
    + "  - {name: t, kind: ticket_export, location: ., files: [{glob: x, format: github_json}]}\n"
    + "  - {name: b, kind: backup_results, location: .}\n"
)


def test_minimal_config_gets_defaults(tmp_path):
    path = write(tmp_path, "store:\n  url: file:///srv/evidence\n" + EVERY_FAMILY)
    config = load_config(path)
    assert isinstance(config, PipelineConfig)
    assert config.path == path.resolve()
    assert config.store_url == "file:///srv/evidence"
    assert config.aws_conn_id is None
    assert config.retention_days == DEFAULT_RETENTION_DAYS == 400
    assert config.staging_dir == tmp_path / "airflow-home" / "evidence-staging"
    assert config.redaction_secret_variable == "soc2_evidence_redaction_secret"
    assert config.schedules == {"config_snapshot": "0 2 * * *", "tickets": "30 2 * * *", "backup_test": "0 4 * * *"}
    assert [(source.name, source.family) for source in config.sources] == [
        ("app", "config"),
        ("t", "tickets"),
        ("b", "backup"),
    ]


def test_full_config(tmp_path):
    path = write(
        tmp_path,
        """
        store:
          url: s3://bucket/evidence
          aws_conn_id: aws_evidence
        retention_days: 730
        staging_dir: /var/evidence-staging
        redaction:
          secret_variable: my_secret_var
        schedules:
          config_snapshot: "0 2 * * *"
          tickets: null
          backup_test: "@daily"
        sources:
          - name: app-config
            kind: config_repo
            family: config
            repo: https://git.example/app.git
            ref: main
            globs: ["**/*.yaml"]
            max_file_bytes: 2048
          - name: backups.nightly
            kind: backup_results
            location: s3://backups/reports
        """,
    )
    config = load_config(path)
    assert config.store_url == "s3://bucket/evidence"
    assert config.aws_conn_id == "aws_evidence"
    assert config.retention_days == 730
    assert config.staging_dir == Path("/var/evidence-staging")
    assert config.redaction_secret_variable == "my_secret_var"
    assert config.schedules == {"config_snapshot": "0 2 * * *", "tickets": None, "backup_test": "@daily"}
    app, backups = config.sources
    assert (app.name, app.kind, app.family) == ("app-config", "config_repo", "config")
    assert (app.options.repo, app.options.ref, app.options.globs, app.options.max_file_bytes) == (
        "https://git.example/app.git",
        "main",
        ["**/*.yaml"],
        2048,
    )
    assert app.options.conn_id is None
    assert (backups.kind, backups.family, backups.options.location) == (
        "backup_results",
        "backup",
        "s3://backups/reports",
    )
    assert [source.name for source in config.sources_of("config")] == ["app-config"]
    assert config.sources_of("tickets") == []


def test_evidence_store_overrides_store_url(tmp_path, monkeypatch):
    path = write(tmp_path, MINIMAL)
    monkeypatch.setenv("EVIDENCE_STORE", "s3://override/prefix")
    assert load_config(path).store_url == "s3://override/prefix"


def test_empty_evidence_store_does_not_override(tmp_path, monkeypatch):
    path = write(tmp_path, MINIMAL)
    monkeypatch.setenv("EVIDENCE_STORE", "")
    assert load_config(path).store_url == "file:///srv/evidence"


def test_evidence_config_picks_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, "store: {url: 'file:///picked'}\n" + UNSCHEDULED, name="elsewhere/picked.yaml")
    monkeypatch.setenv("EVIDENCE_CONFIG", str(path))
    config = load_config()
    assert config.path == path.resolve()
    assert config.store_url == "file:///picked"


def test_explicit_path_beats_evidence_config(tmp_path, monkeypatch):
    env_file = write(tmp_path, "store: {url: 'file:///env'}\n" + UNSCHEDULED, name="env.yaml")
    monkeypatch.setenv("EVIDENCE_CONFIG", str(env_file))
    assert load_config(write(tmp_path, MINIMAL)).store_url == "file:///srv/evidence"


def test_without_evidence_config_the_shipped_file_is_used():
    assert load_config().path == DEFAULT_CONFIG_PATH.resolve()


@pytest.mark.parametrize(
    ("env", "in_file", "expected"),
    [
        pytest.param("/abs/from-env", "/abs/from-file", "/abs/from-env", id="env-wins"),
        pytest.param(None, "/abs/from-file", "/abs/from-file", id="file-absolute"),
        pytest.param(None, "staging", "{config_dir}/staging", id="file-relative-to-config"),
        pytest.param(None, "../up/staging", "{config_parent}/up/staging", id="file-relative-parent"),
        pytest.param(None, None, "{airflow_home}/evidence-staging", id="default-airflow-home"),
    ],
)
def test_staging_dir(tmp_path, monkeypatch, env, in_file, expected):
    config_dir = tmp_path / "conf"
    text = MINIMAL + (f"staging_dir: {in_file}\n" if in_file else "")
    path = write(config_dir, text)
    if env:
        monkeypatch.setenv("EVIDENCE_STAGING", env)
    expected_path = Path(
        expected.format(config_dir=config_dir, config_parent=tmp_path, airflow_home=tmp_path / "airflow-home")
    )
    # Relative paths are resolved against the config file, not the working directory.
    monkeypatch.chdir(tmp_path)
    assert load_config(path).staging_dir == expected_path


def test_resolve_path_is_relative_to_the_config_file(tmp_path, monkeypatch):
    path = write(tmp_path / "deep" / "conf", MINIMAL)
    monkeypatch.chdir(tmp_path)
    config = load_config(path)
    assert config.resolve_path("repo") == tmp_path / "deep" / "conf" / "repo"
    assert config.resolve_path("../../repos/app") == tmp_path / "repos" / "app"
    assert config.resolve_path(".") == tmp_path / "deep" / "conf"
    assert config.resolve_path("/abs/repo") == Path("/abs/repo")
    assert config.resolve_path("~/repo") == Path.home() / "repo"


def test_a_copy_in_another_folder_checks_its_relative_paths_against_that_folder(tmp_path, monkeypatch):
    """A copy of evidence.yaml elsewhere must not quietly point at other folders: loading it fails."""
    shipped = DEFAULT_CONFIG_PATH.read_text(encoding="utf-8")
    copy = write(tmp_path / "ops", shipped)
    monkeypatch.chdir(PROJECT_ROOT)  # the working directory plays no part
    found = problems_of(copy)
    folder = tmp_path / "ops"
    assert any(
        line.startswith(f"{copy}:")
        and "validation.controls_file: 'controls.yaml' does not exist: relative paths resolve against the config "
        f"file's folder, here {folder / 'controls.yaml'}"
        in line
        for line in found
    ), found
    assert any("sources[4].location: '../samples/tickets' does not exist" in line for line in found), found


# --- reading the file -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        pytest.param("store:\n  url: x\n\tbad: 1\n", 3, "found character '\\t' that cannot start any token", id="tab"),
        pytest.param("a: 1\nb: 2\nc: d: e\n", 3, "mapping values are not allowed here", id="mapping-in-scalar"),
        pytest.param("store:\n  url: x\n  -bad\n - y\n", 4, None, id="bad-indent"),
        pytest.param("store: [1, 2\n", 2, None, id="unclosed-flow"),
    ],
)
def test_invalid_yaml_names_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "evidence.yaml"
    path.write_text(text, encoding="utf-8")
    pattern = "^" + re.escape(f"{path}: ") + rf"invalid YAML at line {line}, column \d+: "
    if message:
        pattern += re.escape(message) + "$"
    with pytest.raises(ConfigError, match=pattern) as caught:
        load_config(path)
    assert isinstance(caught.value.__cause__, Exception)


def test_an_impossible_yaml_date_is_a_config_error_not_a_crash(tmp_path):
    """PyYAML fails building the date with no position; the loader finds the scalar and gives its line."""
    path = write(tmp_path, MINIMAL + "staging_dir: 2026-02-30\n")
    line = len(MINIMAL.splitlines()) + 1
    message = f"{path}: invalid YAML at line {line}, column 14: '2026-02-30': day is out of range for month"
    with pytest.raises(ConfigError, match="^" + re.escape(message) + "$"):
        load_config(path)


def test_a_path_with_a_nul_character_is_a_located_problem(tmp_path):
    path = write(tmp_path, MINIMAL + 'staging_dir: x\nvalidation: {controls_file: "a\\0b"}\n')
    with pytest.raises(
        ConfigError, match=r":\d+: validation\.controls_file: 'a\\x00b' is not a path: it contains a NUL"
    ):
        load_config(path)


@pytest.mark.parametrize("text", ["[" * 10_000 + "]" * 10_000, "a: " + "[" * 10_000, "a: " + "{a: " * 5_000])
def test_a_deeply_nested_file_is_a_config_error_quickly(tmp_path, text):
    """PyYAML recurses per level (RecursionError) and its pure-Python scanner is quadratic in bracket depth."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="^" + re.escape(f"{path}: invalid YAML")):
        load_config(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="^" + re.escape(f"{path}: cannot read config file: No such file")):
        load_config(path)


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError, match="^" + re.escape(f"{tmp_path}: cannot read config file: ")):
        load_config(tmp_path)


def test_non_utf8_file_is_a_config_error(tmp_path):
    path = tmp_path / "evidence.yaml"
    path.write_bytes(b"store:\n  url: file:///x\n# caf\xe9 (latin-1)\n")
    with pytest.raises(ConfigError, match="^" + re.escape(f"{path}: config file is not UTF-8 text (byte 29)")):
        load_config(path)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


# --- the mistakes operators make: each refused, with where and what ----------------------------------


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        pytest.param(
            "store:\n  url: s3://b/p\n  aws_connection_id: aws\n",
            3,
            "store.aws_connection_id",
            "unknown key 'aws_connection_id'; did you mean 'aws_conn_id'?; valid keys: "
            "url, aws_conn_id, immutable, abort_stale_uploads",
            id="store-aws-connection-id",
        ),
        pytest.param(
            "store: {url: s3://b/p}\nredaction:\n  secret_varaible: x\n",
            3,
            "redaction.secret_varaible",
            "unknown key 'secret_varaible'; did you mean 'secret_variable'?",
            id="redaction-secret-varaible",
        ),
        pytest.param(
            "store: {url: s3://b/p}\nschedules:\n  config_snapshots: '0 3 * * *'\n",
            3,
            "schedules.config_snapshots",
            "unknown key 'config_snapshots'; did you mean 'config_snapshot'?",
            id="schedules-config-snapshots",
        ),
        pytest.param(
            "store: {url: s3://b/p}\nretention: 5\n",
            2,
            "retention",
            "unknown key 'retention'; did you mean 'retention_days'?",
            id="top-level-retention",
        ),
        pytest.param(
            "store: {url: s3://b/p}\nretention_days: '30'\n",
            2,
            "retention_days",
            "expected int, got str",
            id="retention-days-string",
        ),
        pytest.param(
            "store: {url: s3://b/p}\nretention_days: 0\n",
            2,
            "retention_days",
            "expected int >= 1, got 0",
            id="retention-days-zero",
        ),
        pytest.param("store: s3://b/p\n", 1, "store", "expected a mapping, got a string", id="store-not-a-mapping"),
        pytest.param(
            "store: {url: s3://b/p}\nsources: {a: 1}\n",
            2,
            "sources",
            "expected array, got object",
            id="sources-mapping",
        ),
        pytest.param(
            "store: {url: s3://b/p}\nschedules: {backup_test: 'every night'}\n",
            2,
            "schedules.backup_test",
            "'every night' is not a 5-field cron expression (minute hour day month weekday) or a preset",
            id="bad-cron",
        ),
    ],
)
def test_a_misspelt_or_mistyped_key_is_refused(tmp_path, text, line, key, message):
    path = write(tmp_path, text + ("" if "schedules" in text else UNSCHEDULED))
    with pytest.raises(ConfigError, match=problem(path, line, key, message)):
        load_config(path)


@pytest.mark.parametrize("with_env", [False, True], ids=["store-url-unset", "evidence-store-set"])
def test_store_uri_instead_of_url_is_named_even_when_evidence_store_is_set(tmp_path, monkeypatch, with_env):
    if with_env:
        monkeypatch.setenv("EVIDENCE_STORE", "s3://from/env")
    path = write(tmp_path, "store:\n  uri: s3://b/p\n" + UNSCHEDULED)
    found = problems_of(path)
    assert (
        f"{path}:2: store.uri: unknown key 'uri'; did you mean 'url'?; valid keys: "
        "url, aws_conn_id, immutable, abort_stale_uploads" in found
    )
    missing = (
        f"{path}:1: store: missing required key 'url' (s3://bucket/prefix or gs://bucket/prefix), or set EVIDENCE_STORE"
    )
    assert (missing in found) is not with_env


def test_glob_instead_of_globs_is_refused_rather_than_archiving_the_whole_repository(tmp_path):
    path = write(
        tmp_path, MINIMAL + "sources:\n  - name: app\n    kind: config_repo\n    repo: .\n    glob: ['*.yaml']\n"
    )
    with pytest.raises(
        ConfigError, match=problem(path, 8, "sources[0].glob", "unknown key 'glob'; did you mean 'globs'?")
    ):
        load_config(path)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        pytest.param(
            "{name: exports, kind: ticket_export, family: config, location: .,"
            " files: [{glob: x, format: github_json}]}",
            "kind ticket_export collects tickets evidence, not config: set family: tickets "
            "(its DAG is evidence_tickets)",
            id="ticket-export-under-config",
        ),
        pytest.param(
            "{name: app, kind: config_repo, family: backup, repo: .}",
            "kind config_repo collects config evidence, not backup: set family: config "
            "(its DAG is evidence_config_snapshot)",
            id="config-repo-under-backup",
        ),
    ],
)
def test_a_family_that_differs_from_the_collectors_is_refused(tmp_path, source, message):
    path = write(tmp_path, MINIMAL + f"sources:\n  - {source}\n")
    with pytest.raises(ConfigError, match=problem(path, 5, "sources[0].family", message)):
        load_config(path)


def test_a_scheduled_family_without_sources_is_refused_and_null_leaves_it_unscheduled(tmp_path):
    """The config DAG would otherwise commit a 'passed' night that collected nothing."""
    text = "store: {url: s3://b/p}\nschedules: {tickets: null, backup_test: null}\nsources: []\n"
    path = write(tmp_path, text)
    message = (
        "no source has family config, so evidence_config_snapshot would archive an empty night as passed: "
        "add a config source, or set schedules.config_snapshot: null to leave it unscheduled"
    )
    with pytest.raises(ConfigError, match=problem(path, 2, "schedules.config_snapshot", message)):
        load_config(path)
    unscheduled = write(tmp_path, text.replace("{tickets: null", "{config_snapshot: null, tickets: null"), "ok.yaml")
    assert load_config(unscheduled).schedules["config_snapshot"] is None


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        pytest.param(
            "ticket_exprt",
            "unknown source kind 'ticket_exprt'; did you mean 'ticket_export'?; known kinds: aws,",
            id="typo",
        ),
        pytest.param("s3", "unknown source kind 's3'; known kinds: ", id="unknown"),
    ],
)
def test_an_unknown_kind_is_refused_with_the_known_ones(tmp_path, kind, message):
    path = write(tmp_path, MINIMAL + f"sources:\n  - {{name: a, kind: {kind}}}\n")
    with pytest.raises(ConfigError, match=problem(path, 5, "sources[0].kind", message)):
        load_config(path)


def test_a_relative_path_that_does_not_exist_is_refused(tmp_path):
    path = write(tmp_path / "conf", MINIMAL + "sources:\n  - {name: app, kind: config_repo, repo: ../missing}\n")
    message = (
        "'../missing' does not exist: relative paths resolve against the config file's folder, "
        f"here {tmp_path / 'missing'}"
    )
    with pytest.raises(ConfigError, match=problem(path, 5, "sources[0].repo", message)):
        load_config(path)


def test_urls_and_absolute_paths_are_left_to_the_collector(tmp_path):
    sources = (
        "  - {name: a, kind: config_repo, repo: https://git.example/app.git}\n"
        "  - {name: b, kind: config_repo, repo: 'git@github.com:acme/app.git'}\n"
        "  - {name: c, kind: config_repo, repo: /nowhere/on/this/machine}\n"
    )
    assert [source.name for source in load_config(write(tmp_path, MINIMAL + "sources:\n" + sources)).sources] == [
        "a",
        "b",
        "c",
    ]


@pytest.mark.parametrize(
    ("entry", "key", "message"),
    [
        pytest.param("{kind: config_repo, repo: .}", "sources[1]", "needs a string 'name'", id="missing-name"),
        pytest.param("{name: '', kind: config_repo, repo: .}", "sources[1]", "needs a string 'name'", id="empty-name"),
        pytest.param(
            "{name: b, repo: .}", "sources[1].kind", "unknown source kind None; known kinds: ", id="missing-kind"
        ),
        pytest.param(
            "just-a-name",
            "sources[1]",
            "expected a mapping with name, kind and family, got a string",
            id="not-a-mapping",
        ),
        pytest.param(
            "{name: b, kind: config_repo, family: logs, repo: .}",
            "sources[1].family",
            "family must be one of config, backup, tickets, got 'logs'",
            id="bad-family",
        ),
        pytest.param(
            "{name: '../escape', kind: config_repo, repo: .}",
            "sources[1].name",
            "invalid source name '../escape': use letters, digits",
            id="traversal-name",
        ),
        pytest.param(
            "{name: app, kind: config_repo, repo: .}",
            "sources[1].name",
            "source name 'app' is also used by sources[0]",
            id="duplicate-name",
        ),
    ],
)
def test_source_entry_problems(tmp_path, entry, key, message):
    path = write(tmp_path, MINIMAL + "sources:\n" + REPO_SOURCE + f"  - {entry}\n")
    with pytest.raises(ConfigError, match=problem(path, 6, key, message)):
        load_config(path)


def test_every_problem_is_reported_at_once_in_line_order(tmp_path):
    path = write(
        tmp_path,
        """\
        store:
          uri: s3://b/p
        retention_days: -1
        schedules: {config_snapshot: null, tickets: null}
        sources:
          - name: app
            kind: config_repo
            repo: ./missing
            glob: [x]
          - name: exports
            kind: ticket_exprt
        """,
    )
    found = problems_of(path)
    assert [line.split(": ", 2)[0:2] for line in found] == [
        [f"{path}:1", "store"],
        [f"{path}:2", "store.uri"],
        [f"{path}:3", "retention_days"],
        [f"{path}:4", "schedules.backup_test"],
        [f"{path}:8", "sources[0].repo"],
        [f"{path}:9", "sources[0].glob"],
        [f"{path}:11", "sources[1].kind"],
    ]
    with pytest.raises(ConfigError, match="^" + re.escape(f"{path}: 7 problems\n")):
        load_config(path)


# --- the CLI and the schema -----------------------------------------------------------------------


def test_config_check_lists_every_problem_and_exits_non_zero(tmp_path):
    path = write(tmp_path, "store:\n  uri: s3://b/p\nredaction: {secret_varaible: x}\n" + UNSCHEDULED)
    result = CliRunner().invoke(main, ["config", "check", "--file", str(path)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{path}:1: store: {MISSING_URL}",
        f"{path}:2: store.uri: unknown key 'uri'; did you mean 'url'?; valid keys: "
        "url, aws_conn_id, immutable, abort_stale_uploads",
        f"{path}:3: redaction.secret_varaible: unknown key 'secret_varaible'; did you mean 'secret_variable'?; "
        "valid keys: secret_variable",
        f"Error: {path}: 3 problem(s)",
    ]


def test_config_check_passes_the_shipped_file():
    result = CliRunner().invoke(main, ["config", "check", "--file", str(DEFAULT_CONFIG_PATH)])
    assert result.exit_code == 0, result.output
    assert result.output == f"{DEFAULT_CONFIG_PATH}: OK\n"


def test_config_check_reports_invalid_yaml_in_one_line(tmp_path):
    path = write(tmp_path, "store:\n  url: x\n\tbad: 1\n")
    result = CliRunner().invoke(main, ["config", "check", "--file", str(path)])
    assert result.exit_code == 1
    assert result.output.splitlines()[0].startswith(f"{path}: invalid YAML at line 3, column ")
    assert "Traceback" not in result.output


def test_the_schema_is_generated_from_the_types_and_the_shipped_file_validates():
    jsonschema = pytest.importorskip("jsonschema")
    result = CliRunner().invoke(main, ["config", "schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.output)
    committed = json.loads((DEFAULT_CONFIG_PATH.parent / "evidence.schema.json").read_text(encoding="utf-8"))
    assert schema == committed, "include/config/evidence.schema.json is stale: run evidence config schema > it"
    import yaml

    shipped = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))
    jsonschema.validate(shipped, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**shipped, "store": {"uri": "s3://b/p"}}, schema)
    source_kinds = {entry["properties"]["kind"]["enum"][0] for entry in _source_variants(schema)}
    assert source_kinds == set(KINDS)


def _source_variants(schema: dict) -> list[dict]:
    definitions = schema["$defs"]
    items = definitions["evidence_config"]["properties"]["sources"]["items"]
    return [definitions[ref["$ref"].rsplit("/", 1)[1]] for ref in items["anyOf"]]


def test_the_shipped_file_carries_the_schema_line_for_editors():
    first = DEFAULT_CONFIG_PATH.read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=./evidence.schema.json"


# --- the shipped configuration --------------------------------------------------------------------


def test_shipped_config_loads():
    config = load_config(DEFAULT_CONFIG_PATH)
    assert config.path == DEFAULT_CONFIG_PATH.resolve()
    assert config.store_url
    assert config.retention_days >= 365, "SOC 2 Type 2 needs at least a year of evidence"
    specs = kind_specs()
    for family in FAMILIES:
        assert config.sources_of(family), f"the shipped config should demonstrate a {family} source"
    for source in config.sources:
        assert source.family == specs[source.kind].family


def test_shipped_config_repo_path_is_the_project():
    config = load_config(DEFAULT_CONFIG_PATH)
    local_repos = [
        config.resolve_path(source.options.repo)
        for source in config.sources
        if source.kind == "config_repo" and "://" not in source.options.repo
    ]
    assert PROJECT_ROOT in local_repos
