"""Ticket export files (``ticket_export``): Jira JSON, GitHub JSON and Jira CSV, mutated from the shipped samples."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from fuzz.harness import FuzzTarget
from fuzz.payloads import EDGE_VALUES, collect_files, damaged, json_file

SAMPLES = Path(__file__).resolve().parents[1] / "include" / "samples" / "tickets"
BROWSE = "https://jira.example.com/browse/"
# The shipped configuration's entries (include/config/evidence.yaml), one per export format.
JIRA_FILES = [
    {
        "glob": "jira-changes.json",
        "format": "jira_json",
        "population": "changes",
        "browse_url": BROWSE,
        "fields": {"environment": "customfield_10101", "change_type": "customfield_10102"},
        "approved_statuses": ["Approved"],
        "implemented_statuses": ["Done", "Deployed"],
        "emergency_values": ["Emergency"],
        "emergency_review_days": 5,
    },
    {
        "glob": "jira-incidents.json",
        "format": "jira_json",
        "population": "incidents",
        "browse_url": BROWSE,
        "fields": {"severity": "priority", "post_mortem": "customfield_10110"},
    },
]
GITHUB_FILES = [
    {
        "glob": "github-pull-requests.json",
        "format": "github_json",
        "ticket_pattern": r"\bCHG-[0-9]+\b",
        "emergency_labels": ["emergency"],
        "emergency_review_days": 5,
        "required_checks": ["ci/build"],
    }
]
CSV_FILES = [
    {
        "glob": "jira-access-reviews.csv",
        "format": "jira_csv",
        "population": "access_reviews",
        "browse_url": BROWSE,
        "columns": {
            "system": "Custom field (System)",
            "period_start": "Custom field (Period start)",
            "period_end": "Custom field (Period end)",
            "decisions": "Custom field (Decisions)",
        },
    },
    {"glob": "jira-changes.csv", "format": "jira_csv", "population": "changes"},
    {"glob": "jira-incidents.csv", "format": "jira_csv", "population": "incidents"},
]


def _sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


def _run(files: list[dict[str, Any]]):
    def run(contents: dict[str, bytes]) -> None:
        collect_files("ticket_export", {"files": files}, contents, family="tickets")

    return run


def _csv_rows() -> list[list[str]]:
    return list(csv.reader(io.StringIO((SAMPLES / "jira-access-reviews.csv").read_text(encoding="utf-8"))))


# A change and an incident export in Jira's own CSV headers, for the other two populations.
CHANGES_CSV = [
    ["Issue key", "Summary", "Status", "Reporter", "Created", "Resolved", "Outward issue link"],
    ["CHG-1", "Rotate keys", "Done", "alice", "01/Oct/26 9:00 AM", "02/Oct/26 4:30 PM", "SEC-12"],
]
INCIDENTS_CSV = [
    ["Issue key", "Summary", "Status", "Priority", "Created", "Resolved"],
    ["INC-1", "Outage", "Done", "P1", "2026-10-01 09:00", "2026-10-01 11:00"],
]
_cells = st.one_of(st.sampled_from([value for value in EDGE_VALUES if isinstance(value, str)]), st.text(max_size=16))


@st.composite
def _mutated_csv(draw: st.DrawFn, rows: list[list[str]]) -> bytes:
    """The rows with cells replaced, rows cut short or lengthened, headers repeated; written as CSV."""
    rows = [list(row) for row in rows]
    for _ in range(draw(st.integers(0, 5))):
        row = rows[draw(st.integers(0, len(rows) - 1))]
        action = draw(st.sampled_from(("cell", "cell", "cell", "cut", "extend", "row")))
        if action == "cell" and row:
            row[draw(st.integers(0, len(row) - 1))] = draw(_cells)
        elif action == "cut":
            del row[draw(st.integers(0, len(row))) :]
        elif action == "extend":
            row.append(draw(_cells))
        else:
            rows.append([draw(_cells) for _ in range(draw(st.integers(0, 8)))])
    stream = io.StringIO()
    csv.writer(stream).writerows(rows)
    return draw(damaged(stream.getvalue().encode("utf-8")))


TARGETS = [
    FuzzTarget(
        "Jira JSON export",
        st.fixed_dictionaries(
            {
                "jira-changes.json": json_file(_sample("jira-changes.json")),
                "jira-incidents.json": json_file(_sample("jira-incidents.json")),
            }
        ),
        _run(JIRA_FILES),
    ),
    FuzzTarget(
        "GitHub JSON export",
        st.fixed_dictionaries({"github-pull-requests.json": json_file(_sample("github-pull-requests.json"))}),
        _run(GITHUB_FILES),
    ),
    FuzzTarget(
        "CSV export",
        st.fixed_dictionaries(
            {
                "jira-access-reviews.csv": _mutated_csv(_csv_rows()),
                "jira-changes.csv": _mutated_csv(CHANGES_CSV),
                "jira-incidents.csv": _mutated_csv(INCIDENTS_CSV),
            }
        ),
        _run(CSV_FILES),
    ),
]
