"""Errors at the Airflow edge: permanent ones fail the task at once, transient ones retry, bugs keep their traceback.

A permanent error (a bad configuration, a 404, a denied permission, an unreadable payload) is
answered the same way on every try, so retrying it only delays the alert by the whole backoff.
It becomes ``AirflowFailException`` (no retries) with one line naming the source. A
:class:`TransientError` is re-raised as it is, and the task's retries with backoff apply.
Anything that is not an :class:`EvidenceError` is a bug: it propagates untouched, traceback and all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from airflow.sdk.exceptions import AirflowFailException

from soc2_evidence.core.errors import EvidenceError, describe, is_permanent


def for_airflow(error: BaseException, where: str) -> BaseException:
    """The exception a task should raise for ``error``: a one-line ``AirflowFailException`` or ``error`` itself."""
    if not is_permanent(error):
        return error
    line = describe(error)
    return AirflowFailException(line if line.startswith(where) else f"{where}: {line}")


@contextlib.contextmanager
def airflow_edge(where: str) -> Iterator[None]:
    """Run a task body, raising what :func:`for_airflow` says; ``where`` names the source or the task."""
    try:
        yield
    except EvidenceError as error:
        mapped = for_airflow(error, where)
        if mapped is error:
            raise
        raise mapped from None  # the line says it all; the chained traceback would bury it
