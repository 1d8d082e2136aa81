"""Every fuzz target (``fuzz/targets_*.py``, whoever added it) with a small budget: no exception may escape.

``make fuzz`` runs 10,000 cases per parser; this runs 100, enough for each target's common mutations
(a wrong type, NaN, a deep body, an out-of-range time) on every ``make test``. A failure prints the
first payload that escaped and every crash site, as ``python -m fuzz`` does.
"""

from __future__ import annotations

import pytest

from fuzz.harness import discover, run_target

CASES = 100


@pytest.mark.parametrize("target", discover(), ids=lambda target: target.name)
def test_no_exception_escapes_a_parser(target):
    result = run_target(target, CASES)
    assert result.cases == CASES
    sites = ", ".join(f"{site} ({count})" for site, count in result.sites.most_common())
    assert result.unhandled == 0, f"{target.name}: {result.unhandled} unhandled at {sites}; first: {result.example}"
