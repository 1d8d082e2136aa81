"""Loading the pipeline's YAML configuration: defaults, environment overrides, paths and every error."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from soc2_evidence.collectors import KINDS
from soc2_evidence.core.config import (
    DEFAULT_CONFIG_PATH,
    DEFAULT_RETENTION_DAYS,
    PROJECT_ROOT,
    PipelineConfig,
    SourceConfig,
    load_config,
    read_schedule,
)
from soc2_evidence.core.errors import ConfigError
from soc2_evidence.core.evidence import FAMILIES

MINIMAL = "store:\n  url: file:///srv/evidence\n"


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


def error_for(path: Path, problem: str) -> str:
    """A pattern for a ConfigError message: the file, then the problem."""
    return "^" + re.escape(f"{path}: ") + problem


# --- valid configurations ---------------------------------------------------------------


def test_minimal_config_gets_defaults(tmp_path):
    path = write(tmp_path, MINIMAL)
    config = load_config(path)
    assert isinstance(config, PipelineConfig)
    assert config.path == path.resolve()
    assert config.store_url == "file:///srv/evidence"
    assert config.aws_conn_id is None
    assert config.retention_days == DEFAULT_RETENTION_DAYS == 400
    assert config.staging_dir == tmp_path / "airflow-home" / "evidence-staging"
    assert config.redaction_secret_variable == "soc2_evidence_redaction_secret"
    assert config.schedules == {}
    assert config.sources == ()


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
          backups: 30 3 * * *
        sources:
          - name: app-config
            kind: config_repo
            family: config
            repo: https://git.example/app.git
            ref: main
            globs: ["**/*.yaml"]
            max_file_bytes: 2048
          - name: backups.nightly
            kind: something_else
            family: backup
        """,
    )
    config = load_config(path)
    assert config.store_url == "s3://bucket/evidence"
    assert config.aws_conn_id == "aws_evidence"
    assert config.retention_days == 730
    assert config.staging_dir == Path("/var/evidence-staging")
    assert config.redaction_secret_variable == "my_secret_var"
    assert config.schedules == {"config_snapshot": "0 2 * * *", "backups": "30 3 * * *"}
    assert config.sources == (
        SourceConfig(
            name="app-config",
            kind="config_repo",
            family="config",
            options={
                "repo": "https://git.example/app.git",
                "ref": "main",
                "globs": ["**/*.yaml"],
                "max_file_bytes": 2048,
            },
        ),
        SourceConfig(name="backups.nightly", kind="something_else", family="backup", options={}),
    )
    assert [source.name for source in config.sources_of("config")] == ["app-config"]
    assert [source.name for source in config.sources_of("backup")] == ["backups.nightly"]
    assert config.sources_of("tickets") == []


def test_empty_file_needs_a_store(tmp_path, monkeypatch):
    path = write(tmp_path, "")
    with pytest.raises(ConfigError, match=error_for(path, r"store\.url is missing \(or set EVIDENCE_STORE\)$")):
        load_config(path)
    monkeypatch.setenv("EVIDENCE_STORE", "file:///from/env")
    assert load_config(path).store_url == "file:///from/env"


def test_evidence_store_overrides_store_url(tmp_path, monkeypatch):
    path = write(tmp_path, MINIMAL)
    monkeypatch.setenv("EVIDENCE_STORE", "s3://override/prefix")
    assert load_config(path).store_url == "s3://override/prefix"


def test_empty_evidence_store_does_not_override(tmp_path, monkeypatch):
    path = write(tmp_path, MINIMAL)
    monkeypatch.setenv("EVIDENCE_STORE", "")
    assert load_config(path).store_url == "file:///srv/evidence"


def test_evidence_config_picks_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, "store: {url: 'file:///picked'}\n", name="elsewhere/picked.yaml")
    monkeypatch.setenv("EVIDENCE_CONFIG", str(path))
    config = load_config()
    assert config.path == path.resolve()
    assert config.store_url == "file:///picked"


def test_explicit_path_beats_evidence_config(tmp_path, monkeypatch):
    monkeypatch.setenv("EVIDENCE_CONFIG", str(write(tmp_path, "store: {url: 'file:///env'}\n", name="env.yaml")))
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


def test_relative_config_path_resolves_against_its_own_directory(tmp_path, monkeypatch):
    write(tmp_path / "conf", MINIMAL + "staging_dir: staging\n")
    monkeypatch.chdir(tmp_path)
    config = load_config("conf/evidence.yaml")
    assert config.path == tmp_path / "conf" / "evidence.yaml"
    assert config.resolve_path("repo") == tmp_path / "conf" / "repo"
    assert config.staging_dir == tmp_path / "conf" / "staging"


def test_source_options_are_everything_but_name_kind_family(tmp_path):
    path = write(
        tmp_path,
        MINIMAL
        + """
sources:
  - {name: a, kind: config_repo, family: config, repo: ., unknown_option: 1, globs: [x]}
""",
    )
    (source,) = load_config(path).sources
    assert source.options == {"repo": ".", "unknown_option": 1, "globs": ["x"]}


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        pytest.param("store:\n  url: x\n\tbad: 1\n", 3, "found character '\\t' that cannot start any token", id="tab"),
        pytest.param("a: 1\nb: 2\nc: d: e\n", 3, "mapping values are not allowed here", id="mapping-in-scalar"),
        pytest.param("store:\n  url: x\n  -bad\n - y\n", 4, None, id="bad-indent"),
        pytest.param("store: [1, 2\n", 2, None, id="unclosed-flow"),
    ],
)
def test_invalid_yaml_names_file_and_line(tmp_path, text, line, problem):
    path = tmp_path / "evidence.yaml"
    path.write_text(text, encoding="utf-8")
    pattern = error_for(path, rf"invalid YAML at line {line}, column \d+: ")
    if problem:
        pattern += re.escape(problem) + "$"
    with pytest.raises(ConfigError, match=pattern) as caught:
        load_config(path)
    assert isinstance(caught.value.__cause__, Exception)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=error_for(path, r"cannot read config file: No such file or directory$")):
        load_config(path)


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError, match=error_for(tmp_path, r"cannot read config file: ")):
        load_config(tmp_path)


def test_missing_evidence_config_file(tmp_path, monkeypatch):
    missing = tmp_path / "missing.yaml"
    monkeypatch.setenv("EVIDENCE_CONFIG", str(missing))
    with pytest.raises(ConfigError, match=error_for(missing, "cannot read config file")):
        load_config()


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    ("text", "kind"),
    [("- a\n- b\n", "list"), ("just a string\n", "str"), ("42\n", "int")],
    ids=["list", "string", "number"],
)
def test_top_level_must_be_a_mapping(tmp_path, text, kind):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=error_for(path, f"expected a mapping at the top level, got {kind}$")):
        load_config(path)


@pytest.mark.parametrize(
    ("extra", "unknown"),
    [
        ("stores: {}\n", "stores"),
        ("retention: 5\n", "retention"),
        ("source: []\nzzz: 1\n", "source, zzz"),
    ],
    ids=["typo-stores", "typo-retention", "two-unknown-sorted"],
)
def test_unknown_top_level_key(tmp_path, extra, unknown):
    path = write(tmp_path, MINIMAL + extra)
    with pytest.raises(ConfigError, match=error_for(path, re.escape(f"unknown key(s) in top level: {unknown}") + "$")):
        load_config(path)


def test_unknown_top_level_keys_of_mixed_types(tmp_path):
    path = write(tmp_path, MINIMAL + "1: a\nfoo: b\n")
    with pytest.raises(ConfigError, match=error_for(path, r"unknown key\(s\) in top level: 1, foo$")):
        load_config(path)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("retention_days: 5\n", id="no-store"),
        pytest.param("store: {}\n", id="empty-store"),
        pytest.param("store: {aws_conn_id: aws}\n", id="store-without-url"),
        pytest.param("store: {url: ''}\n", id="empty-url"),
        pytest.param("store: {url: 123}\n", id="url-not-a-string"),
        pytest.param("store: {url: null}\n", id="null-url"),
    ],
)
def test_missing_store_url(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=error_for(path, r"store\.url is missing \(or set EVIDENCE_STORE\)$")):
        load_config(path)


def test_store_must_be_a_mapping(tmp_path):
    path = write(tmp_path, "store: file:///srv/evidence\n")
    with pytest.raises(ConfigError, match=error_for(path, "store must be a mapping, got str$")):
        load_config(path)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("0", "0"),
        ("-1", "-1"),
        ('"x"', "'x'"),
        ('"30"', "'30'"),
        ("true", "True"),
        ("false", "False"),
        ("1.5", "1.5"),
        ("null", "None"),
        ("[30]", "[30]"),
    ],
    ids=["zero", "negative", "string", "numeric-string", "true", "false", "float", "null", "list"],
)
def test_invalid_retention_days(tmp_path, value, shown):
    path = write(tmp_path, MINIMAL + f"retention_days: {value}\n")
    pattern = error_for(path, re.escape(f"retention_days must be a whole number >= 1, got {shown}") + "$")
    with pytest.raises(ConfigError, match=pattern):
        load_config(path)


def test_retention_days_one_is_valid(tmp_path):
    assert load_config(write(tmp_path, MINIMAL + "retention_days: 1\n")).retention_days == 1


@pytest.mark.parametrize(
    ("section", "value", "kind"),
    [("redaction", "[a]", "list"), ("schedules", "'0 2 * * *'", "str"), ("redaction", "1", "int")],
    ids=["redaction-list", "schedules-string", "redaction-int"],
)
def test_sections_must_be_mappings(tmp_path, section, value, kind):
    path = write(tmp_path, MINIMAL + f"{section}: {value}\n")
    with pytest.raises(ConfigError, match=error_for(path, f"{section} must be a mapping, got {kind}$")):
        load_config(path)


@pytest.mark.parametrize(
    ("value", "kind"),
    [("{a: 1}", "dict"), ("name", "str"), ("3", "int")],
    ids=["mapping", "string", "number"],
)
def test_sources_must_be_a_list(tmp_path, value, kind):
    path = write(tmp_path, MINIMAL + f"sources: {value}\n")
    with pytest.raises(ConfigError, match=error_for(path, f"sources must be a list, got {kind}$")):
        load_config(path)


@pytest.mark.parametrize(
    ("entry", "index", "problem"),
    [
        pytest.param("{kind: config_repo, family: config}", 1, "needs a string 'name'", id="missing-name"),
        pytest.param("{name: b, family: config}", 1, "needs a string 'kind'", id="missing-kind"),
        pytest.param("{name: b, kind: config_repo}", 1, "needs a string 'family'", id="missing-family"),
        pytest.param("{name: '', kind: config_repo, family: config}", 1, "needs a string 'name'", id="empty-name"),
        pytest.param("{name: 7, kind: config_repo, family: config}", 1, "needs a string 'name'", id="numeric-name"),
        pytest.param("{name: b, kind: [x], family: config}", 1, "needs a string 'kind'", id="list-kind"),
        pytest.param("just-a-name", 1, "must be a mapping, got str", id="not-a-mapping"),
        pytest.param("[a, b]", 1, "must be a mapping, got list", id="list-entry"),
    ],
)
def test_source_entry_problems(tmp_path, entry, index, problem):
    path = write(tmp_path, MINIMAL + f"sources:\n  - {{name: a, kind: config_repo, family: config}}\n  - {entry}\n")
    with pytest.raises(ConfigError, match=error_for(path, re.escape(f"sources[{index}] {problem}") + "$")):
        load_config(path)


@pytest.mark.parametrize("family", ["logs", "Config", "configs"])
def test_bad_family(tmp_path, family):
    path = write(tmp_path, MINIMAL + f"sources:\n  - {{name: app, kind: config_repo, family: {family}}}\n")
    pattern = error_for(
        path, re.escape(f"source 'app': family must be one of config, backup, tickets, got '{family}'") + "$"
    )
    with pytest.raises(ConfigError, match=pattern):
        load_config(path)


@pytest.mark.parametrize(
    "name",
    ["../escape", "/abs", "has space", ".hidden", "a//b", "a..b"],
    ids=["traversal", "absolute", "space", "leading-dot", "empty-segment", "double-dot"],
)
def test_invalid_source_name(tmp_path, name):
    path = write(tmp_path, MINIMAL + f"sources:\n  - {{name: '{name}', kind: config_repo, family: config}}\n")
    pattern = error_for(path, re.escape(f"sources[0]: invalid source name {name!r}: use letters, digits"))
    with pytest.raises(ConfigError, match=pattern):
        load_config(path)


def test_duplicate_source_names(tmp_path):
    sources = "".join(
        f"  - {{name: {name}, kind: config_repo, family: {family}}}\n"
        for name, family in [("b", "config"), ("a", "config"), ("b", "backup"), ("c", "config"), ("a", "tickets")]
    )
    path = write(tmp_path, MINIMAL + "sources:\n" + sources)
    with pytest.raises(ConfigError, match=error_for(path, r"source names must be unique; repeated: a, b$")):
        load_config(path)


def test_non_utf8_file_is_a_config_error(tmp_path):
    path = tmp_path / "evidence.yaml"
    path.write_bytes(b"store:\n  url: file:///x\n# caf\xe9 (latin-1)\n")
    with pytest.raises(ConfigError, match=error_for(path, "")):
        load_config(path)


# --- read_schedule ------------------------------------------------------------------------------


def test_read_schedule(tmp_path):
    path = write(tmp_path, MINIMAL + "schedules:\n  config_snapshot: '0 2 * * *'\n  backups: '@daily'\n")
    assert read_schedule("config_snapshot", path) == "0 2 * * *"
    assert read_schedule("backups", path) == "@daily"
    assert read_schedule("tickets", path) is None


def test_read_schedule_uses_evidence_config(tmp_path, monkeypatch):
    path = write(tmp_path, "schedules: {config_snapshot: '15 1 * * *'}\n")
    monkeypatch.setenv("EVIDENCE_CONFIG", str(path))
    assert read_schedule("config_snapshot") == "15 1 * * *"


def test_read_schedule_ignores_the_rest_of_the_file(tmp_path):
    # DAG parsing must not fail because a source is misconfigured, or the store is missing.
    path = write(tmp_path, "schedules: {config_snapshot: '0 2 * * *'}\nsources: 7\nretention_days: x\nbogus: 1\n")
    assert read_schedule("config_snapshot", path) == "0 2 * * *"


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"schedules:\n  a: '0 2 * * *'\n\tb: x\n", id="invalid-yaml"),
        pytest.param(b"- schedules\n", id="top-level-list"),
        pytest.param(b"plain string\n", id="top-level-string"),
        pytest.param(b"schedules: '0 2 * * *'\n", id="schedules-not-a-mapping"),
        pytest.param(b"schedules: [config_snapshot]\n", id="schedules-list"),
        pytest.param(b"", id="empty-file"),
        pytest.param(b"schedules:\n", id="schedules-null"),
    ],
)
def test_read_schedule_returns_none_on_a_broken_file(tmp_path, content):
    path = tmp_path / "evidence.yaml"
    path.write_bytes(content)
    assert read_schedule("config_snapshot", path) is None


def test_read_schedule_returns_none_for_a_missing_file(tmp_path):
    assert read_schedule("config_snapshot", tmp_path / "missing.yaml") is None
    assert read_schedule("config_snapshot", tmp_path) is None


def test_read_schedule_returns_none_for_a_non_utf8_file(tmp_path):
    path = tmp_path / "evidence.yaml"
    path.write_bytes(b"schedules:\n  config_snapshot: '0 2 * * *' # caf\xe9\n")
    assert read_schedule("config_snapshot", path) is None


# --- the shipped configuration --------------------------------------------------------------------


def test_shipped_config_loads():
    config = load_config(DEFAULT_CONFIG_PATH)
    assert config.path == DEFAULT_CONFIG_PATH.resolve()
    assert config.store_url
    assert config.retention_days >= 365, "SOC 2 Type 2 needs at least a year of evidence"
    assert config.sources, "the shipped config should demonstrate at least one source"
    for source in config.sources:
        assert source.kind in KINDS
        assert source.family in FAMILIES
        if source.kind == "config_repo" and "://" not in source.options["repo"]:
            assert config.resolve_path(source.options["repo"]).is_dir()


def test_shipped_config_repo_path_is_the_project():
    config = load_config(DEFAULT_CONFIG_PATH)
    local_repos = [
        config.resolve_path(source.options["repo"])
        for source in config.sources
        if source.kind == "config_repo" and "://" not in source.options["repo"]
    ]
    assert PROJECT_ROOT in local_repos


def test_shipped_config_schedules_are_cron_or_presets():
    config = load_config(DEFAULT_CONFIG_PATH)
    assert config.schedules
    for key, schedule in config.schedules.items():
        assert read_schedule(key, DEFAULT_CONFIG_PATH) == schedule
        assert schedule.startswith("@") or len(schedule.split()) == 5, schedule
