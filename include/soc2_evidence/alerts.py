"""Alerts: task failures for on-call, open findings for compliance.

Notifiers (plugins, tests) register with :func:`register_notifier`; each receives every alert
dict, whose ``kind`` is ``task_failure`` or ``findings``. Alerts never carry evidence content
or secrets, only names, counts and the error line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Notifier = Callable[[dict[str, Any]], None]
_notifiers: list[Notifier] = []


def register_notifier(notifier: Notifier) -> None:
    if notifier not in _notifiers:
        _notifiers.append(notifier)


def build_alert(context: dict[str, Any]) -> dict[str, Any]:
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    error = context.get("exception")
    map_index = getattr(ti, "map_index", -1)
    return {
        "kind": "task_failure",
        "dag_id": getattr(ti, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": getattr(dag_run, "run_id", None),
        "map_index": map_index if map_index is not None and map_index >= 0 else None,
        "try_number": getattr(ti, "try_number", None),
        "error": f"{type(error).__name__}: {error}" if error else "unknown error",
        "runbook": "see the DAG's documentation (Docs tab) for what to do",
    }


def on_task_failure(context: dict[str, Any]) -> None:
    """Airflow ``on_failure_callback``: log the alert, then hand it to every registered notifier."""
    alert = build_alert(context)
    log.error(
        "evidence task failed: dag=%s task=%s run=%s map_index=%s: %s",
        alert["dag_id"],
        alert["task_id"],
        alert["run_id"],
        alert["map_index"],
        alert["error"],
    )
    _dispatch(alert)


def notify_findings(summary: dict[str, Any]) -> None:
    """Open control exceptions of a run: the run succeeded, but compliance needs to look."""
    alert = {"kind": "findings", **summary}
    log.warning(
        "open findings: dag=%s open=%s accepted=%s manifest=%s",
        alert.get("dag_id"),
        alert.get("open"),
        alert.get("accepted"),
        alert.get("manifest"),
    )
    _dispatch(alert)


def _dispatch(alert: dict[str, Any]) -> None:
    for notifier in _notifiers:
        try:
            notifier(alert)
        except Exception:  # one broken notifier must not hide the alert from the others
            log.exception("notifier %r failed", notifier)
