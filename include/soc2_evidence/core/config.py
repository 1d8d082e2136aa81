"""The one YAML file that configures the pipeline: store, retention, schedules and sources.

``EVIDENCE_CONFIG`` points at another file; ``EVIDENCE_STORE`` overrides the store URL,
so the same file serves a laptop, CI and production.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from soc2_evidence.core.errors import ConfigError
from soc2_evidence.core.evidence import FAMILIES, check_name

PROJECT_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "include" / "config" / "evidence.yaml"
DEFAULT_RETENTION_DAYS = 400


@dataclass(frozen=True)
class SourceConfig:
    """One configured evidence source; ``options`` are checked by its collector."""

    name: str
    kind: str
    family: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineConfig:
    path: Path
    store_url: str
    aws_conn_id: str | None
    retention_days: int
    staging_dir: Path
    redaction_secret_variable: str
    controls_path: Path
    exceptions_path: Path
    freshness_hours: int
    calendar_days: int
    schedules: dict[str, str]
    sources: tuple[SourceConfig, ...]

    def sources_of(self, family: str) -> list[SourceConfig]:
        return [source for source in self.sources if source.family == family]

    def resolve_path(self, value: str) -> Path:
        """Relative paths in the config are relative to the config file, not the working directory."""
        path = Path(os.path.expanduser(value))
        return path if path.is_absolute() else (self.path.parent / path).resolve()


def config_path() -> Path:
    return Path(os.environ.get("EVIDENCE_CONFIG") or DEFAULT_CONFIG_PATH)


def read_schedule(dag_key: str, path: Path | None = None) -> str | None:
    """Just the schedule, for DAG files: parsing must stay cheap and never fail on source options."""
    try:
        raw = read_yaml(path or config_path())
    except ConfigError:
        return None
    schedules = raw.get("schedules") if isinstance(raw, dict) else None
    return schedules.get(dag_key) if isinstance(schedules, dict) else None


def load_config(path: str | Path | None = None) -> PipelineConfig:
    path = Path(path) if path else config_path()
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    _reject_unknown(
        path,
        "top level",
        raw,
        {"store", "retention_days", "staging_dir", "redaction", "validation", "schedules", "sources"},
    )

    store = _mapping(path, "store", raw.get("store", {}))
    store_url = os.environ.get("EVIDENCE_STORE") or store.get("url")
    if not store_url or not isinstance(store_url, str):
        raise ConfigError(f"{path}: store.url is missing (or set EVIDENCE_STORE)")

    retention_days = _positive_int(path, "retention_days", raw.get("retention_days", DEFAULT_RETENTION_DAYS))

    staging = os.environ.get("EVIDENCE_STAGING") or raw.get("staging_dir")
    if staging:
        staging_dir = Path(staging) if Path(staging).is_absolute() else (path.parent / staging).resolve()
    else:
        staging_dir = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")) / "evidence-staging"

    redaction = _mapping(path, "redaction", raw.get("redaction", {}))
    validation = _mapping(path, "validation", raw.get("validation", {}))
    _reject_unknown(
        path, "validation", validation, {"controls_file", "exceptions_file", "freshness_hours", "calendar_days"}
    )
    freshness_hours = _positive_int(path, "validation.freshness_hours", validation.get("freshness_hours", 48))
    calendar_days = _positive_int(path, "validation.calendar_days", validation.get("calendar_days", 31))
    schedules = _mapping(path, "schedules", raw.get("schedules", {}))

    sources_raw = raw.get("sources", [])
    if not isinstance(sources_raw, list):
        raise ConfigError(f"{path}: sources must be a list, got {type(sources_raw).__name__}")
    sources = tuple(_source(path, index, entry) for index, entry in enumerate(sources_raw))
    names = [source.name for source in sources]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"{path}: source names must be unique; repeated: {', '.join(duplicates)}")

    return PipelineConfig(
        path=path.resolve(),
        store_url=store_url,
        aws_conn_id=store.get("aws_conn_id"),
        retention_days=retention_days,
        staging_dir=staging_dir,
        redaction_secret_variable=redaction.get("secret_variable", "soc2_evidence_redaction_secret"),
        controls_path=(path.parent / validation.get("controls_file", "controls.yaml")).resolve(),
        exceptions_path=(path.parent / validation.get("exceptions_file", "exceptions.yaml")).resolve(),
        freshness_hours=freshness_hours,
        calendar_days=calendar_days,
        schedules={str(key): str(value) for key, value in schedules.items()},
        sources=sources,
    )


# libyaml's parser where PyYAML was built with it (the wheels are): the same safe loading, about ten
# times faster, which matters because every DAG file reads its schedule here at parse time. An
# invalid file is read again by the pure-Python loader, so its message is the same everywhere.
_FAST_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path) -> Any:
    """A YAML file of the pipeline's (config, controls, exceptions), safely loaded; errors name the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config file: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: config file is not UTF-8 text (byte {error.start})") from error
    try:
        return yaml.load(text, Loader=_FAST_SAFE_LOADER) or {}  # noqa: S506 - a safe loader, C or Python
    except yaml.YAMLError:
        pass
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from error


def _mapping(path: Path, name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {name} must be a mapping, got {type(value).__name__}")
    return value


def _positive_int(path: Path, name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{path}: {name} must be a whole number >= 1, got {value!r}")
    return value


def _reject_unknown(path: Path, where: str, value: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(value) - allowed, key=str)  # YAML keys need not be strings (1: x)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) in {where}: {', '.join(map(str, unknown))}")


def _source(path: Path, index: int, entry: Any) -> SourceConfig:
    where = f"sources[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{path}: {where} must be a mapping, got {type(entry).__name__}")
    for required in ("name", "kind", "family"):
        if not isinstance(entry.get(required), str) or not entry[required]:
            raise ConfigError(f"{path}: {where} needs a string '{required}'")
    name = entry["name"]
    try:
        check_name("source name", name)
    except ValueError as error:
        raise ConfigError(f"{path}: {where}: {error}") from error
    if entry["family"] not in FAMILIES:
        raise ConfigError(
            f"{path}: source {name!r}: family must be one of {', '.join(FAMILIES)}, got {entry['family']!r}"
        )
    options = {key: value for key, value in entry.items() if key not in ("name", "kind", "family")}
    return SourceConfig(name=name, kind=entry["kind"], family=entry["family"], options=options)
