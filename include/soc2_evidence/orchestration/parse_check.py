"""The configuration check DAG files run at parse time, remembered between parses of the same inputs.

Airflow parses every DAG file in a fresh process every 30 s or so. Checking the file whole imports
every collector (for its ``Options``), which costs more than a DAG file may add to a parse. The
outcome of a check depends only on the file's bytes, the package's code and the environment
overrides, so a *passed* check is remembered under a fingerprint of exactly those; any change to
any of them checks the file again. A failed check is never remembered: it raises every time, and
Airflow shows it as the DAG's import error. What a remembered check cannot see (a relative path
deleted since) is still caught when a task loads the file, and fails that task at once.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import soc2_evidence

PACKAGE_ROOT = Path(soc2_evidence.__file__).parent
OVERRIDES = ("EVIDENCE_STORE", "EVIDENCE_STAGING")


def checked_schedules(path: Path, memory: Path) -> dict[str, str | None]:
    """The schedules of the config file at ``path``, checked whole unless ``memory`` holds a passed check
    of these very inputs."""
    fingerprint = _fingerprint(path)
    remembered = _recall(memory, fingerprint)
    if remembered is not None:
        return remembered
    from soc2_evidence.collectors import load_config

    schedules = load_config(path).schedules
    _remember(memory, fingerprint, schedules)
    return schedules


def _fingerprint(path: Path) -> str | None:
    """The file's bytes, every module of the package (path, size, mtime) and the overrides; None when the
    file cannot be read (the full check then says why)."""
    digest = hashlib.sha256()
    try:
        digest.update(path.read_bytes())
    except OSError:
        return None
    digest.update(str(path.resolve()).encode())
    for name in OVERRIDES:
        digest.update(f"\0{name}={os.environ.get(name, '')}".encode())
    for module in sorted(PACKAGE_ROOT.rglob("*.py")):
        stat = module.stat()
        digest.update(f"\0{module}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _recall(memory: Path, fingerprint: str | None) -> dict[str, str | None] | None:
    if fingerprint is None:
        return None
    try:
        remembered = json.loads(memory.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(remembered, dict) or remembered.get("fingerprint") != fingerprint:
        return None
    schedules = remembered.get("schedules")
    return schedules if isinstance(schedules, dict) else None


def _remember(memory: Path, fingerprint: str | None, schedules: dict[str, str | None]) -> None:
    """Written whole or not at all (a temporary file renamed); a place that cannot be written only costs speed."""
    if fingerprint is None:
        return
    try:
        memory.parent.mkdir(parents=True, exist_ok=True)
        partial = memory.with_name(f"{memory.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps({"fingerprint": fingerprint, "schedules": schedules}), encoding="utf-8")
        os.replace(partial, memory)
    except OSError:
        return
