"""Ticket populations end to end: the window and its watermark through a real archive, approval facts,
and reconciliation (control findings and data-quality failures) with Great Expectations."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from fake_apis import Connection, FakeJira, Reply, jira_issue, run_collector

from conftest import ROOT, write_pipeline_config
from soc2_evidence.collectors import source_config
from soc2_evidence.collectors.support import tickets
from soc2_evidence.collectors.support.tickets import Approval, Person, collection_window
from soc2_evidence.core.credentials import Credentials
from soc2_evidence.core.errors import CollectorError, ConfigError
from soc2_evidence.core.evidence import rfc3339

NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
NIGHT = datetime(2026, 11, 25, 2, 30, tzinfo=UTC)


def window(params=None, watermark=None, logical_date=NIGHT, **options):
    return collection_window("src", tickets.WindowOptions(**options), logical_date, params or {}, watermark, NOW)


def test_first_night_looks_back_and_stops_short_of_now():
    first = window()
    assert (first.mode, first.start, first.end) == (
        "incremental",
        datetime(2026, 10, 25, 2, 50, tzinfo=UTC),
        datetime(2026, 11, 25, 2, 50, tzinfo=UTC),
    )


def test_next_night_starts_at_the_watermark_less_the_overlap():
    mark = json.dumps({"mode": "incremental", "end": "2026-11-24T02:50:00Z"}).encode()
    following = window(watermark=mark, overlap_minutes=30, settle_minutes=0)
    assert following.start == datetime(2026, 11, 24, 2, 20, tzinfo=UTC)
    assert following.end == NOW
    assert "2026-11-24T02:50:00Z" in following.reason


def test_full_population_on_request_and_on_the_first_of_the_month():
    assert window({"full_population": True}).to_dict() == {
        "mode": "full",
        "start": "2026-10-01T00:00:00Z",
        "end": "2026-11-01T00:00:00Z",
        "reason": "requested",
    }
    requested = window({"full_population": True, "period_start": "2026-01-01", "period_end": "2026-07-01"})
    assert (requested.start.month, requested.end.month) == (1, 7)
    monthly = window(logical_date=datetime(2026, 12, 1, 2, 30, tzinfo=UTC))
    assert (monthly.mode, monthly.reason, monthly.start.month, monthly.end.month) == ("full", "monthly", 11, 12)
    assert (
        window(logical_date=datetime(2026, 12, 1, 2, 30, tzinfo=UTC), monthly_full_population=False).mode
        == "incremental"
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"full_population": True, "period_start": "2026-07-01"}, "must both be set"),
        ({"full_population": True, "period_start": "2026-07-01", "period_end": "2026-01-01"}, "start before end"),
        ({"full_population": True, "period_start": "July", "period_end": "2026-08-01"}, "unrecognised time 'July'"),
    ],
)
def test_bad_period_params(params, message):
    with pytest.raises(CollectorError, match=f"^source src: .*{message}"):
        window(params)


def test_an_unreadable_watermark_is_an_error_not_a_silent_restart():
    with pytest.raises(CollectorError, match=r"the committed watermark\.json is unreadable"):
        window(watermark=b"{}")


def at(hours: float) -> datetime:
    return NOW + timedelta(hours=hours)


@pytest.mark.parametrize(
    ("approvals", "merged", "emergency", "expected"),
    [
        pytest.param([("bob", -1)], 0, False, (True, None, None), id="approved-before"),
        pytest.param([("alice", -1)], 0, False, (False, None, None), id="self-approved"),
        pytest.param([("bob", None)], 0, False, (False, None, None), id="approval-without-time"),
        pytest.param([("bob", 1)], 0, False, (False, at(1), None), id="approved-after"),
        pytest.param([], None, False, (None, None, None), id="not-merged"),
        pytest.param([("bob", 24)], 0, True, (False, at(24), True), id="emergency-reviewed-in-time"),
        pytest.param([("bob", 24 * 6)], 0, True, (False, at(144), False), id="emergency-reviewed-late"),
        pytest.param([], -24 * 6, True, (False, None, False), id="emergency-never-reviewed"),
        pytest.param([], -24, True, (False, None, None), id="emergency-review-still-due"),
        pytest.param([("bob", -1)], 0, True, (True, None, True), id="emergency-approved-before"),
    ],
)
def test_approval_facts(approvals, merged, emergency, expected):
    facts = tickets.approval_facts(
        Person("alice"),
        [Approval(Person(who), at(hours) if hours is not None else None, "test") for who, hours in approvals],
        at(merged) if merged is not None else None,
        emergency,
        5,
        NOW,
    )
    before, review, in_time = expected
    assert facts == {
        "approved_before_merge": before,
        "post_merge_review_at": review,
        "emergency_reviewed_in_time": in_time,
    }


def test_ticket_keys_from_title_branch_and_body():
    pattern = re.compile(tickets.DEFAULT_TICKET_PATTERN)
    assert tickets.ticket_keys(pattern, "OPS-12 fix", "feature/OPS-12-and-SEC-3", "Closes SEC-3, see OPS-7") == [
        "OPS-12",
        "SEC-3",
        "OPS-7",
    ]


def test_a_ticket_pattern_that_does_not_compile_is_refused_at_load():
    with pytest.raises(ConfigError, match=r"^source src: ticket_pattern: not a valid regular expression: missing \)"):
        source_config("src", "github", {"repositories": ["acme/app"], "ticket_pattern": "("})


# --- reconciliation with Great Expectations ----------------------------------------------------------


@pytest.fixture(scope="module")
def settings():
    from datetime import date

    from soc2_evidence.validation.controls import load_control_map
    from soc2_evidence.validation.run import ValidationSettings

    return ValidationSettings(
        control_map=load_control_map(ROOT / "include" / "config" / "controls.yaml"),
        register=[],
        freshness_hours=48,
        calendar_days=3,
        today=date(2026, 11, 25),
    )


def test_reconciliation_findings_and_quality_failures(tmp_path, settings):
    """One validation of two sources: the samples' planted control exceptions become findings; a Jira
    population whose count disagrees with the API's total, with one issue twice, fails data quality."""
    from soc2_evidence.archive.stores import open_store
    from soc2_evidence.collectors import collector_for, load_config
    from soc2_evidence.core.config import DEFAULT_CONFIG_PATH
    from soc2_evidence.validation.run import summary_of, validate_run

    config = load_config(DEFAULT_CONFIG_PATH)
    [source] = [source for source in config.sources if source.kind == "ticket_export"]
    samples = run_collector(
        "ticket_export",
        msgspec.to_builtins(source.options),
        tmp_path / "staging",
        resolve_path=config.resolve_path,
        source="samples",
        now=NOW,
        logical_date=NIGHT,
    )
    issues = [jira_issue(n) for n in range(1, 6)]
    issues.append(jira_issue(3))  # Jira returned CHG-3 on two pages (it moved while paging)
    with FakeJira(issues) as jira:
        jira.fault(lambda r: r.path.endswith("approximate-count"), Reply(json={"count": 7}))
        moved = run_collector(
            "jira",
            {
                "conn_id": "jira",
                "url": jira.url,
                "deployment": "cloud",
                "page_size": 2,
                "populations": {"changes": {"jql": "project = CHG"}},
            },
            tmp_path / "staging",
            connections={"jira": Connection(login="bot@example.com", password="t0ken")},
            source="jira-moved",
            now=NOW,
            logical_date=NIGHT,
        )

    validation = validate_run(
        [samples, moved],
        samples.run,
        family="tickets",
        sources=["samples", "jira-moved"],
        store=open_store((tmp_path / "store").as_uri()),
        settings=settings,
        staging_root=tmp_path / "staging",
        checks_of=collector_for,
        now=lambda: NOW,
    )

    summary = summary_of(validation)
    findings_item = next(staged for staged in validation.items if staged.item.name == "findings.jsonl")
    findings = [json.loads(line) for line in findings_item.path.read_text().splitlines()]
    assert sorted((f["source"], f["check"], f["record_key"]["id"]) for f in findings) == [
        ("samples", "ticket_export.changes.approved_before_merge", "CHG-102"),
        ("samples", "ticket_export.changes.emergency_reviewed_in_time", "CHG-103"),
        ("samples", "ticket_export.changes.ticket_linked", "acme/payments#42"),
    ]
    assert all(finding["controls"] == ["CC8.1"] and finding["status"] == "open" for finding in findings)
    assert {"CC6.2", "CC6.3", "CC7.3", "CC8.1"} <= set(summary["controls"])
    failed = {(failure["source"], failure["check"]) for failure in summary["failures"]}
    assert failed == {("jira-moved", "jira.changes.completeness"), ("jira-moved", "jira.changes.key.unique")}


# --- the watermark advances only once the archive commits ----------------------------------------------


def test_watermark_advances_only_after_a_committed_passing_run(tmp_path):
    """Four runs of one night on an injected clock (the 25th: no monthly full window), whatever today is."""
    from soc2_evidence.collectors import load_config
    from soc2_evidence.core.evidence import RunContext
    from soc2_evidence.orchestration.pipeline import archive_bundles, extract_source, validate_staged

    (tmp_path / "exceptions.yaml").write_text("exceptions: []\n")
    with FakeJira([jira_issue(n) for n in range(1, 4)]) as jira:

        def night(number: int, settle_minutes: int, *, archive: bool = True) -> dict:
            source = {
                "name": "jira-changes",
                "kind": "jira",
                "family": "tickets",
                "conn_id": "jira",
                "url": jira.url,
                "deployment": "cloud",
                "settle_minutes": settle_minutes,
                "populations": {"changes": {"jql": "project = CHG"}},
            }
            validation = {
                "controls_file": str(ROOT / "include" / "config" / "controls.yaml"),
                "exceptions_file": str(tmp_path / "exceptions.yaml"),
            }
            config = load_config(write_pipeline_config(tmp_path, [source], validation=validation))
            run = RunContext("evidence_tickets", f"manual__{number}", NIGHT)
            clock = lambda: NOW + timedelta(minutes=number)  # noqa: E731 - each run a minute after the last
            staged = extract_source(
                config,
                "jira-changes",
                run,
                credentials=Credentials(lambda _: Connection(login="bot@example.com", password="t0ken")),
                now=clock,
            )
            if archive:
                validation = validate_staged(
                    config, family="tickets", run=run, bundle_dirs=[staged["bundle"]], now=clock
                )
                archive_bundles(
                    config,
                    family="tickets",
                    run=run,
                    bundle_dirs=[staged["bundle"]],
                    validation_dir=validation["bundle"],
                    now=clock,
                )
            return json.loads(
                (
                    tmp_path
                    / "staging"
                    / "evidence_tickets"
                    / f"manual__{number}"
                    / "jira-changes"
                    / "try-1"
                    / "items"
                    / "window.json"
                ).read_text()
            )

        first = night(1, settle_minutes=180)
        assert first["reason"] == "first run: no committed watermark"
        assert first["end"] == "2026-11-25T00:01:00Z"  # 03:01 less 180 settle minutes
        second = night(2, settle_minutes=120, archive=False)  # extracted, never archived
        assert second["start"] == _minus_hour(first["end"])  # the first night committed and passed
        jira.fault(lambda r: r.path.endswith("approximate-count"), Reply(json={"count": 99}))  # fails completeness
        third = night(3, settle_minutes=60)
        assert third["start"] == _minus_hour(first["end"])  # the second night never committed
        fourth = night(4, settle_minutes=0, archive=False)
        assert fourth["start"] == _minus_hour(first["end"])  # the third night was archived as failed


def _minus_hour(moment: str) -> str:
    return rfc3339(tickets.parse_time(moment) - timedelta(hours=1))


def test_the_tickets_dag_shape_and_params():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "tickets.py"))
    assert not bag.import_errors
    dag = bag.dags["evidence_tickets"]
    assert set(dag.task_ids) == {
        "list_sources",
        "extract",
        "validate_and_archive.validate",
        "validate_and_archive.archive",
    }
    assert dag.params["full_population"] is False
    assert dag.params["period_start"] is None and dag.params["period_end"] is None
    assert "Runbook" in dag.doc_md and "full_population" in dag.doc_md
    assert [outlet.name for outlet in dag.get_task("validate_and_archive.archive").outlets] == ["soc2_evidence_tickets"]


# --- streamed records skip the redaction walk only when it could change nothing ----------------------

_FRAGMENTS = [
    "password",
    "PASSWORD=",
    "passed",
    "Pass: x1",
    "\u017fecret: x",  # long s: case-insensitively "secret"
    "to\u212aen=abc",  # Kelvin sign: case-insensitively "token"
    "api_key: 1",
    "AKIA" + "A" * 16,
    "ASIA" + "7" * 16,
    "akia" + "a" * 16,  # lower case: not an access key id
    "private-key=k",
    "apikey",
    "aws_secret_access_key=" + "a" * 40,
    "https://user:pw@host/x",
    "://",
    "@",
    "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----",
    "credential",
    " ",
    ":",
    "=",
    "\n",
    '"',
    "\u00e9",
    "CHG-12",
]


def _values():
    from hypothesis import strategies as st

    text = st.lists(st.sampled_from(_FRAGMENTS), max_size=4).map("".join)
    keys = st.sampled_from(["id", "title", "db_password", "token_type", "note"]) | text
    return st.recursive(
        st.none() | st.booleans() | st.integers() | text,
        lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=3),
        max_leaves=8,
    )


def test_streamed_records_are_redacted_exactly_as_by_the_full_walk():
    """The writer's shortcut (no candidate in the record's JSON: write it as is) equals the full walk."""
    from hypothesis import given, settings

    from soc2_evidence.core.evidence import canonical_json
    from soc2_evidence.core.redaction import DETECTORS, Redactor, may_hold_secret

    class FullWalk(Redactor):
        def redact_text(self, text: str) -> str:  # every detector, no shortcut
            for detector in DETECTORS:
                text = detector.pattern.sub(self._replacer(detector), text)
            return text

    @settings(max_examples=300, deadline=None)
    @given(_values())
    def check(value):
        walked = FullWalk(b"k")
        expected = canonical_json(walked.redact_value(value))
        if not may_hold_secret(canonical_json(value).decode("utf-8")):
            assert expected == canonical_json(value) and not walked.counts
        shortcut = Redactor(b"k")
        assert canonical_json(shortcut.redact_value(value)) == expected
        assert shortcut.counts == walked.counts

    check()
