"""A small budget of the GitHub fuzz target (``make fuzz`` runs 10,000): nothing but our own errors escapes."""

from __future__ import annotations

import json

from fuzz.harness import run_target
from fuzz.targets_github import TARGETS, base_world, run

CASES = 200


def staged(bundle, name: str):
    return next(item.path for item in bundle.items if item.item.name == name)


def test_the_unmutated_github_collects_every_merged_pull_request():
    """The fuzz target's GitHub is a working one: its mutations, not its base, make the cases fail."""
    world = {key: (status, headers, json.dumps(body).encode()) for key, (status, headers, body) in base_world().items()}
    bundle = run(world)
    changes = [json.loads(line) for line in staged(bundle, "changes.jsonl").read_text().splitlines()]
    assert [change["id"] for change in changes] == ["acme/app#4", "acme/app#3", "acme/app#1"]  # #2 was not merged
    assert all(change["approved_before_merge"] and change["linked_tickets"] for change in changes)
    card = json.loads(staged(bundle, "query-changes.json").read_bytes())
    assert (card["pages_read"], card["reported_total"], card["rows_archived"]) == (2, 3, 3)


def test_generated_github_responses_raise_nothing_but_evidence_errors():
    [target] = TARGETS
    result = run_target(target, CASES, seed=14)
    assert result.cases == CASES
    assert result.unhandled == 0, f"{result.example}; sites: {dict(result.sites)}"
