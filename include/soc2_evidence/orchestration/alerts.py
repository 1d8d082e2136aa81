"""Alerts: task failures for on-call, open findings for compliance.

Notifiers (plugins, tests) register with :func:`register_notifier`; each receives every alert
dict, whose ``kind`` is ``task_failure`` or ``findings``. Alerts never carry evidence content
or secrets, only names, counts and the error line.

Built in: when an Airflow connection ``soc2_evidence_alerts`` exists, every alert is also
POSTed as JSON to its host URL, with a one-line ``text`` (the shape Slack and most chat
webhooks accept).
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Notifier = Callable[[dict[str, Any]], None]
WEBHOOK_CONN_ID = "soc2_evidence_alerts"
WEBHOOK_TIMEOUT_SECONDS = 10


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
        "source": getattr(ti, "rendered_map_index", None),
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


def post_to_webhook(alert: dict[str, Any]) -> None:
    """POST the alert to the ``soc2_evidence_alerts`` connection's URL, if that connection exists."""
    try:
        from airflow.sdk import BaseHook

        connection = BaseHook.get_connection(WEBHOOK_CONN_ID)
    except Exception:  # no Airflow here, or no such connection: the webhook is optional
        return
    host = connection.host or ""
    url = host if "://" in host else f"https://{host}"
    if not url.startswith(("https://", "http://")):
        raise ValueError(f"connection {WEBHOOK_CONN_ID}: host must be an http(s) URL, got scheme of {url[:10]!r}")
    body = json.dumps({"text": summary_line(alert), **alert}, default=str).encode("utf-8")
    request = urllib.request.Request(  # noqa: S310 - http(s) only, checked above
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS):  # noqa: S310 - http(s) only
        pass


def summary_line(alert: dict[str, Any]) -> str:
    if alert["kind"] == "findings":
        return f"SOC 2 evidence: {alert.get('open')} open finding(s) in {alert.get('dag_id')}: {alert.get('manifest')}"
    where = f"{alert.get('dag_id')}.{alert.get('task_id')}" + (f" [{alert['source']}]" if alert.get("source") else "")
    return f"SOC 2 evidence task failed: {where} run {alert.get('run_id')}: {alert.get('error')}"


_notifiers: list[Notifier] = [post_to_webhook]


def _dispatch(alert: dict[str, Any]) -> None:
    for notifier in _notifiers:
        try:
            notifier(alert)
        except Exception:  # one broken notifier must not hide the alert from the others
            log.exception("notifier %r failed", notifier)
