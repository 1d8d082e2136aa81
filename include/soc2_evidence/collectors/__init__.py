"""Collectors: one module per source kind, each only collecting (checks live in validation).

A collector module defines ``KIND``, ``FAMILY``, ``VERSION`` and
``collect(source, writer, context)``; it writes evidence through the writer and returns
nothing. Adding a source kind is adding one module here.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from soc2_evidence.core.credentials import Credentials
from soc2_evidence.core.errors import CollectorError, ConfigError
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


def reject_unknown_options(where: str, options: Mapping[str, Any], known: Iterable[str]) -> None:
    """A misspelt option must fail loudly rather than be ignored: name it, and the options that exist."""
    known = sorted(known)
    unknown = sorted(set(options) - set(known), key=str)
    if unknown:
        raise CollectorError(f"{where}: unknown option(s) {', '.join(map(str, unknown))}; known: {', '.join(known)}")
