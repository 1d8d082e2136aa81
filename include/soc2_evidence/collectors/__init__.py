"""Collectors: one module per source kind, each only collecting (checks live in validation).

A collector module defines ``KIND``, ``FAMILY``, ``VERSION`` and
``collect(source, writer, context)``; it writes evidence through the writer and returns
nothing. Adding a source kind is adding one module here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from soc2_evidence.exceptions import ConfigError

KINDS = ("config_repo",)


@dataclass(frozen=True)
class CollectContext:
    """What a collector may use besides its own options: paths and credentials, never the store."""

    resolve_path: Callable[[str], Path]
    get_connection: Callable[[str], Any]


def collector_for(kind: str) -> ModuleType:
    if kind not in KINDS:
        raise ConfigError(f"unknown source kind {kind!r}; known kinds: {', '.join(KINDS)}")
    return importlib.import_module(f"soc2_evidence.collectors.{kind}")
