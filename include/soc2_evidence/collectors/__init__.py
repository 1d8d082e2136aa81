"""Collectors: one module per source kind, each only collecting (checks live in validation).

A collector module defines ``KIND``, ``FAMILY``, ``VERSION``, ``Options`` (a
:class:`soc2_evidence.core.config.Options` Struct: its keys in the YAML file, checked when the
file is loaded) and ``collect(source, writer, context)``; it writes evidence through the writer
and returns nothing. Adding a source kind is adding one module here and its name to ``KINDS``.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec

from soc2_evidence.core import config
from soc2_evidence.core.credentials import Credentials
from soc2_evidence.core.errors import ConfigError
from soc2_evidence.core.evidence import utc_now

KINDS = (
    # configuration snapshots
    "config_repo",
    "aws",
    "gcs_config",
    "postgres_config",
    # backup tests
    "pg_restore",
    "aws_backup",
    "backup_results",
    # tickets
    "jira",
    "github",
    "ticket_export",
)


@dataclass(frozen=True)
class CollectContext:
    """What a collector may use besides its own options: paths and credentials, never the store.

    ``credentials`` turn the connection ids in a source's options into connections, AWS sessions
    and Google credentials (:mod:`soc2_evidence.core.credentials`); a collector never looks a
    connection up itself. ``params`` are the run's DAG params; ``last_committed_item(name)`` is the content of this
    source's item ``name`` in the last committed run where all of the source's items passed
    validation (None before one), read-only, for watermarks; ``sleep`` and ``now`` let tests run
    rate-limit waits and deadlines without waiting.
    """

    resolve_path: Callable[[str], Path]
    credentials: Credentials = field(default_factory=Credentials)
    params: Mapping[str, Any] = field(default_factory=dict)
    last_committed_item: Callable[[str], bytes | None] = lambda name: None
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], datetime] = utc_now


def collector_for(kind: str) -> ModuleType:
    if kind not in KINDS:
        raise ConfigError(f"unknown source kind {kind!r}; known kinds: {', '.join(KINDS)}")
    return importlib.import_module(f"soc2_evidence.collectors.{kind}")


def kind_spec(kind: str) -> config.KindSpec:
    """One kind's family and options type; imports only that kind's collector."""
    module = collector_for(kind)
    return config.KindSpec(family=module.FAMILY, options=module.Options)


def kind_specs() -> dict[str, config.KindSpec]:
    """Each kind's family and options type, as the config loader checks sources against them."""
    return {kind: kind_spec(kind) for kind in KINDS}


def load_config(path: str | Path | None = None) -> config.PipelineConfig:
    """The pipeline's YAML file (default ``EVIDENCE_CONFIG``, else the shipped one), every source checked."""
    return config.load_config(path, kind_specs())


def source_config(name: str, kind: str, options: Mapping[str, Any], family: str | None = None) -> config.SourceConfig:
    """One source built as the loader builds it, for code and tests that make a source without a file.

    Raises ConfigError naming every problem of ``options``, as loading the file would.
    """
    spec = kind_spec(kind)
    problems = list(config.check_value(dict(options), spec.options, ()))
    if problems:
        raise ConfigError(f"source {name}: " + "; ".join(map(_located, problems)))
    return config.SourceConfig(
        name=name, kind=kind, family=family or spec.family, options=msgspec.convert(dict(options), spec.options)
    )


def _located(problem: config.Problem) -> str:
    """A problem as ``key.path: message``; one of the whole source (no path) as its message alone."""
    return f"{config.key_path(problem.path)}: {problem.message}" if problem.path else problem.message
