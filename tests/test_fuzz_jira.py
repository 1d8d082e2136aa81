"""A small budget of the Jira fuzzing (``make fuzz`` runs 10,000 cases per parser): nothing but our
own refusals may escape ``collect()`` for malformed or hostile Jira pages, Cloud or Data Center."""

from __future__ import annotations

import pytest

from fuzz.harness import run_target
from fuzz.targets_jira import TARGETS

CASES = 200


@pytest.mark.parametrize("target", TARGETS, ids=lambda target: target.name)
def test_malformed_jira_pages_are_refused_never_crash(target):
    result = run_target(target, CASES)
    assert result.cases == CASES
    assert result.unhandled == 0, f"{result.example}; sites: {dict(result.sites)}"
