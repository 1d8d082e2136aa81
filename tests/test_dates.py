"""Date logic at month, year and leap-day boundaries, on injected clocks.

Every expected value here was worked out by hand (the comments show the sums), not by running
the code under test. The instants: the last second of 2026, the first of 2027, the night after,
the eve of a leap day, the leap day itself (2028-02-29), the day after it, and 2100-03-01
(2100 is not a leap year: divisible by 100, not by 400).
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from types import SimpleNamespace

import pytest

from conftest import bundle_writer, commit_night
from soc2_evidence.archive.layout import attempt_prefix, run_prefix
from soc2_evidence.core.evidence import RunContext, retain_until
from soc2_evidence.validation.calendar import evidence_calendar


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def run_at(logical: str, run_id: str = "scheduled__night") -> RunContext:
    return RunContext("evidence_config_snapshot", run_id, at(logical))


# --- the ticket collection window -----------------------------------------------------------------


# Full windows: the whole previous month, its end exclusive.
DECEMBER_2026 = ("full", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z")
FEBRUARY_2028 = ("full", "2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z")  # 29 days
FEBRUARY_2100 = ("full", "2100-02-01T00:00:00Z", "2100-03-01T00:00:00Z")  # 28 days


def watermark(end: str) -> bytes:
    return json.dumps({"mode": "incremental", "end": end}).encode()


@pytest.mark.parametrize(
    ("logical", "now", "mark", "expected"),
    [
        # The last second of a month is not the 1st: incremental, ending 10 settle minutes before now.
        (
            "2026-12-31T23:59:59Z",
            "2027-01-01T00:30:00Z",
            "2026-12-30T23:50:00Z",
            ("incremental", "2026-12-30T22:50:00Z", "2027-01-01T00:20:00Z"),
        ),
        # The 1st, at midnight and at 03:00: the whole previous month, December 2026.
        (
            "2027-01-01T00:00:00Z",
            "2027-01-01T00:30:00Z",
            None,
            DECEMBER_2026,
        ),
        (
            "2027-01-01T03:00:00Z",
            "2027-01-01T03:30:00Z",
            None,
            DECEMBER_2026,
        ),
        # A UTC night is what counts: 2026-12-31 20:00 at UTC-5 is 2027-01-01 01:00 UTC.
        (
            "2026-12-31T20:00:00-05:00",
            "2027-01-01T01:30:00Z",
            None,
            DECEMBER_2026,
        ),
        # The eve of the leap day, from the watermark less the 60 overlap minutes.
        (
            "2028-02-28T23:00:00Z",
            "2028-02-28T23:40:00Z",
            "2028-02-27T23:30:00Z",
            ("incremental", "2028-02-27T22:30:00Z", "2028-02-28T23:30:00Z"),
        ),
        # The leap day, first run: 31 lookback days before 2028-02-29T02:50 is 2028-01-29T02:50.
        (
            "2028-02-29T00:00:00Z",
            "2028-02-29T03:00:00Z",
            None,
            ("incremental", "2028-01-29T02:50:00Z", "2028-02-29T02:50:00Z"),
        ),
        # The day after: all of February 2028, leap day included.
        (
            "2028-03-01T00:00:00Z",
            "2028-03-01T03:00:00Z",
            None,
            FEBRUARY_2028,
        ),
        # 2100 is no leap year: February 2100 ends on the 28th, so March starts 28 days after February.
        (
            "2100-03-01T00:00:00Z",
            "2100-03-01T03:00:00Z",
            None,
            FEBRUARY_2100,
        ),
    ],
)
def test_ticket_window_at_boundaries(logical, now, mark, expected):
    from soc2_evidence.collectors.support.tickets import WindowOptions, collection_window

    window = collection_window("src", WindowOptions(), at(logical), {}, watermark(mark) if mark else None, at(now))
    assert (window.mode, window.to_dict()["start"], window.to_dict()["end"]) == expected
    assert window.reason == (
        "monthly"
        if expected[0] == "full"
        else f"since the committed watermark {mark}"
        if mark
        else "first run: no committed watermark"
    )


@pytest.mark.parametrize(
    ("now", "start"),
    [
        # Without the monthly full window, a first run looks back 31 days from 10 minutes before now.
        ("2028-03-01T03:00:00Z", "2028-01-30T02:50:00Z"),  # 29 days of February 2028, then 2 of January
        ("2100-03-01T03:00:00Z", "2100-01-29T02:50:00Z"),  # 28 days of February 2100, then 3 of January
        ("2027-01-01T00:05:00Z", "2026-11-30T23:55:00Z"),  # December's 31 days, back across the year
    ],
)
def test_first_run_lookback_across_february_and_the_year(now, start):
    from soc2_evidence.collectors.support.tickets import WindowOptions, collection_window

    window = collection_window("src", WindowOptions(monthly_full_population=False), at(now), {}, None, at(now))
    assert (window.mode, window.to_dict()["start"]) == ("incremental", start)
    assert window.end - window.start == timedelta(days=31)


@pytest.mark.parametrize(
    ("params", "start", "end"),
    [
        ({"full_population": True}, "2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z"),  # the previous month
        (
            {"full_population": True, "period_start": "2028-02-29", "period_end": "2028-03-01"},
            "2028-02-29T00:00:00Z",
            "2028-03-01T00:00:00Z",
        ),
        (
            {"full_population": True, "period_start": "2026-12-31", "period_end": "2027-01-02"},
            "2026-12-31T00:00:00Z",
            "2027-01-02T00:00:00Z",
        ),
    ],
)
def test_a_requested_full_population_on_the_day_after_the_leap_day(params, start, end):
    from soc2_evidence.collectors.support.tickets import WindowOptions, collection_window

    window = collection_window(
        "src", WindowOptions(), at("2028-03-01T02:00:00Z"), params, None, at("2028-03-01T03:00:00Z")
    )
    assert window.to_dict() == {"mode": "full", "start": start, "end": end, "reason": "requested"}


# --- validation: freshness, the calendar, exceptions, today -----------------------------------------------


@pytest.mark.parametrize(
    ("logical", "hours", "after", "before"),
    [
        ("2026-12-31T23:59:59Z", 48, "2026-12-29T23:59:59Z", "2027-01-02T23:59:59Z"),
        ("2027-01-01T00:00:00Z", 1, "2026-12-31T23:00:00Z", "2027-01-01T01:00:00Z"),
        ("2028-02-28T23:00:00Z", 24, "2028-02-27T23:00:00Z", "2028-02-29T23:00:00Z"),
        ("2028-03-01T00:00:00Z", 48, "2028-02-28T00:00:00Z", "2028-03-03T00:00:00Z"),  # 2 days back: 29th, 28th
        ("2100-03-01T00:00:00Z", 48, "2100-02-27T00:00:00Z", "2100-03-03T00:00:00Z"),  # ... 28th, 27th
    ],
)
def test_freshness_window(logical, hours, after, before):
    from soc2_evidence.validation.run import freshness_window

    assert freshness_window(at(logical), hours) == {"fresh_after": at(after), "fresh_before": at(before)}


@pytest.mark.parametrize(
    ("collected_at", "fresh"),
    [
        ("2028-03-01T23:59:59Z", True),  # 47:59:59 after the leap day's midnight
        ("2028-03-02T00:00:00Z", True),  # exactly 48 hours: the bound is inclusive
        ("2028-03-02T00:00:01Z", False),
        ("2028-02-27T00:00:00Z", True),
        ("2028-02-26T23:59:59Z", False),  # 48 hours and a second before
    ],
)
def test_freshness_is_checked_by_great_expectations_around_the_leap_day(tmp_path_factory, collected_at, fresh):
    from soc2_evidence.core.datasets import Dataset, to_frame
    from soc2_evidence.validation.gx import Target, Validator
    from soc2_evidence.validation.run import freshness_window

    dataset = Dataset(
        name=f"tests.leap{collected_at[:19].replace(':', '').replace('-', '')}",
        item="leap.jsonl",
        key=("id",),
        columns={"id": "string"},
        description="one record",
    )
    target = Target(
        source="src",
        dataset=dataset,
        frame=to_frame(dataset, [{"id": "a"}], collected_at),
        parameters={**freshness_window(at("2028-02-29T00:00:00Z"), 48), "reported_total": None},
        controls=[],
    )
    checks, _ = Validator(tmp_path_factory.mktemp("gx")).validate(target)
    assert {check.check: check.success for check in checks}[f"{dataset.name}.freshness"] is fresh


@pytest.mark.parametrize(
    ("night", "archived", "expected"),
    [
        # Across the year: the three nights before 2027-01-01 are the last three of 2026.
        (
            date(2027, 1, 1),
            ["2026-12-29", "2026-12-31"],
            [("2026-12-29", "passed"), ("2026-12-30", "missing"), ("2026-12-31", "passed")],
        ),
        # The three nights before 2028-03-01 include the leap day.
        (
            date(2028, 3, 1),
            ["2028-02-27", "2028-02-28"],
            [("2028-02-27", "passed"), ("2028-02-28", "passed"), ("2028-02-29", "missing")],
        ),
        # ... and before 2100-03-01 they do not: there is no 2100-02-29.
        (
            date(2100, 3, 1),
            ["2100-02-26", "2100-02-28"],
            [("2100-02-26", "passed"), ("2100-02-27", "missing"), ("2100-02-28", "passed")],
        ),
    ],
)
def test_evidence_calendar_at_boundaries(tmp_path, night, archived, expected):
    from soc2_evidence.archive.stores import open_store

    store = open_store((tmp_path / "store").as_uri())
    for each in archived:
        commit_night(store, tmp_path / "staging", each, {"repo": "archived"})
    commit_night(store, tmp_path / "staging", night.isoformat(), {"repo": "archived"})  # not before itself

    records = evidence_calendar(store, "config", "evidence_config_snapshot", ["repo"], night, days=3)
    assert [(record["night"], record["status"]) for record in records] == expected


@pytest.mark.parametrize(
    ("today", "state"),
    [
        (date(2028, 2, 28), "active"),
        (date(2028, 2, 29), "active"),  # the expiry day itself still counts
        (date(2028, 3, 1), "expired"),
    ],
)
def test_an_exception_expiring_on_the_leap_day(today, state):
    from soc2_evidence.validation.controls import AcceptedException, apply_exceptions

    exception = AcceptedException("EXC-1", "x.y", {"id": "1"}, "reason", "approver", date(2028, 2, 29))
    [finding] = apply_exceptions([{"check": "x.y", "source": "s", "record_key": {"id": "1"}}], [exception], today)
    assert (finding["exception"]["state"], finding["status"]) == (state, "accepted" if state == "active" else "open")


@pytest.mark.parametrize(
    ("now", "today"),
    [
        ("2026-12-31T23:59:59Z", date(2026, 12, 31)),
        ("2027-01-01T00:00:00Z", date(2027, 1, 1)),
        ("2026-12-31T20:00:00-05:00", date(2027, 1, 1)),  # 01:00 UTC
        ("2028-02-29T00:00:00Z", date(2028, 2, 29)),
    ],
)
def test_validation_today_is_the_utc_date_of_the_injected_clock(now, today):
    from soc2_evidence.validation.run import today_utc

    assert today_utc(lambda: at(now)) == today


# --- retention and the archive's date layout -------------------------------------------------------------


@pytest.mark.parametrize(
    ("collected", "days", "until"),
    [
        # 2028-02-29 + 366 days = 2029-03-01 (there is no 2029-02-29), + 34 = 2029-04-04.
        ("2028-02-29T00:00:00Z", 400, "2029-04-04T00:00:00Z"),
        ("2028-02-29T00:00:00Z", 365, "2029-02-28T00:00:00Z"),
        # 2027-01-01 + 365 = 2028-01-01, + 35 = 2028-02-05.
        ("2027-01-01T00:00:00Z", 400, "2028-02-05T00:00:00Z"),
        ("2027-01-01T03:00:00Z", 400, "2028-02-05T03:00:00Z"),
        # 2026-12-31 + 365 = 2027-12-31, + 35 = 2028-02-04; half a second before midnight rounds up into the 5th.
        ("2026-12-31T23:59:59.500000Z", 400, "2028-02-05T00:00:00Z"),
        ("2026-12-31T23:59:59Z", 400, "2028-02-04T23:59:59Z"),
        ("2028-02-28T23:00:00Z", 1, "2028-02-29T23:00:00Z"),
        ("2028-03-01T00:00:00Z", 365, "2029-03-01T00:00:00Z"),
        ("2100-02-28T12:00:00Z", 1, "2100-03-01T12:00:00Z"),
        ("2100-03-01T00:00:00Z", 400, "2101-04-05T00:00:00Z"),  # + 365 = 2101-03-01, + 35 = 2101-04-05
    ],
)
def test_retain_until_is_collected_plus_retention_rounded_up(collected, days, until):
    assert retain_until(at(collected), days) == at(until)


@pytest.mark.parametrize(
    ("logical", "folder"),
    [
        ("2026-12-31T23:59:59Z", "config/2026/12/31"),
        ("2027-01-01T00:00:00Z", "config/2027/01/01"),
        ("2027-01-01T03:00:00Z", "config/2027/01/01"),
        ("2026-12-31T20:00:00-05:00", "config/2027/01/01"),  # the UTC night
        ("2028-02-28T23:00:00Z", "config/2028/02/28"),
        ("2028-02-29T00:00:00Z", "config/2028/02/29"),
        ("2028-03-01T00:00:00Z", "config/2028/03/01"),
        ("2100-03-01T00:00:00Z", "config/2100/03/01"),
    ],
)
def test_archive_date_layout(logical, folder):
    run = run_at(logical, "scheduled__2027-01-01T00:00:00+00:00")
    assert run_prefix("config", run) == f"{folder}/scheduled__2027-01-01T00_00_00_00_00"
    assert attempt_prefix("config", run, 2) == f"{folder}/scheduled__2027-01-01T00_00_00_00_00/attempt-002"


@pytest.mark.parametrize(
    ("logical", "collected", "folder", "until"),
    [
        ("2028-02-29T00:00:00Z", "2028-02-29T01:00:00Z", "config/2028/02/29", "2029-04-04T01:00:00Z"),
        ("2026-12-31T23:59:59Z", "2027-01-01T00:30:00Z", "config/2026/12/31", "2028-02-05T00:30:00Z"),
    ],
)
def test_an_archived_run_on_an_injected_clock(tmp_path, logical, collected, folder, until):
    """The night's folder comes from the logical date; every retain-until from the collection time."""
    from soc2_evidence.archive.run import SourceOutcome, archive_run
    from soc2_evidence.archive.stores import open_store

    run = run_at(logical)
    clock = lambda: at(collected)  # noqa: E731
    writer = bundle_writer(tmp_path / "staging", run, family="config", source="repo", kind="config_repo", now=clock)
    writer.add_json("commit.json", {"commit": "abc"})
    archived = archive_run(
        open_store((tmp_path / "store").as_uri()),
        family="config",
        run=run,
        bundles=[writer.finish()],
        sources=[SourceOutcome("repo", "config_repo", "archived")],
        retention_days=400,
        validation={"status": "passed", "failures": [], "controls": []},
        allow_mutable_store=True,
        now=clock,
    )
    assert archived.manifest_key == f"{folder}/scheduled__night/attempt-001/manifest.json"
    [item] = archived.manifest["items"]
    assert (item["collected_at"], item["retain_until"]) == (collected, until)
    assert archived.manifest["committed_at"] == collected


# --- ages: access keys, recovery points, restore tests --------------------------------------------------


@pytest.mark.parametrize(
    ("created", "now", "days"),
    [
        ("2028-02-28T23:00:00Z", "2028-03-01T22:59:59Z", 1),  # 47:59:59 across the leap day
        ("2028-02-28T23:00:00Z", "2028-03-01T23:00:00Z", 2),
        ("2027-12-31T23:59:59Z", "2028-12-31T23:59:59Z", 366),  # a leap year
        ("2099-03-01T00:00:00Z", "2100-03-01T00:00:00Z", 365),  # not one
        ("2026-12-31T23:59:59Z", "2027-01-01T00:00:00Z", 0),
    ],
)
def test_access_key_age_in_whole_days(created, now, days):
    from soc2_evidence.collectors import aws

    iam = SimpleNamespace(call=lambda operation, **kwargs: {"AccessKeyLastUsed": {}})
    key = {"AccessKeyId": "AKIAEXAMPLEKEY0001", "UserName": "carol", "Status": "Active", "CreateDate": at(created)}
    record = aws._access_key_record(
        SimpleNamespace(account_id="123456789012"),
        iam,
        SimpleNamespace(max_access_key_age_days=90, max_unused_days=45),
        at(now),
        key,
    )
    assert record["age_days"] == days
    assert record["unused_days"] == days  # never used: unused since it was created


@pytest.mark.parametrize(
    ("newest", "now", "hours", "met"),
    [
        ("2028-02-28T23:00:00Z", "2028-03-01T03:00:00Z", 28.0, False),  # the leap day's 24 hours are counted
        ("2028-02-29T23:30:00Z", "2028-03-01T03:00:00Z", 3.5, True),
        ("2026-12-31T03:00:00Z", "2027-01-01T03:00:00Z", 24.0, True),  # the target is inclusive
        ("2100-02-28T03:00:00Z", "2100-03-01T03:00:00Z", 24.0, True),  # no 2100-02-29 in between
    ],
)
def test_recovery_point_age_and_rpo(newest, now, hours, met):
    from soc2_evidence.collectors import aws_backup

    entry = {
        "record": {
            "region": "eu-north-1",
            "resource_arn": "arn:db",
            "resource_type": "RDS",
            "recovery_point_arn": "rp",
        },
        "created": at(newest),
    }
    record = aws_backup._protected_resource(entry, at(now), 24)
    assert (record["age_hours"], record["rpo_met"]) == (hours, met)


@pytest.mark.parametrize(
    ("tested", "now", "hours", "recent"),
    [
        ("2028-02-28T03:00:00Z", "2028-03-01T03:00:00Z", 48.0, False),
        ("2028-02-28T03:00:00Z", "2028-02-29T03:00:00Z", 24.0, True),
        ("2026-12-31T12:00:00Z", "2027-01-01T06:00:00Z", 18.0, True),
    ],
)
def test_restore_test_coverage_age(tested, now, hours, recent):
    from soc2_evidence.collectors import backup_results, source_config

    newest = {"tested_at": tested, "outcome": "passed"}
    record = backup_results._coverage(
        "orders",
        True,
        newest,
        at(now),
        source_config("b", "backup_results", {"location": "s3://b/r", "max_test_age_hours": 24}).options,
    )
    assert (record["age_hours"], record["tested_recently"]) == (hours, recent)


@pytest.mark.parametrize(
    ("backup", "restored", "seconds"),
    [
        ("2028-02-28T23:00:00Z", "2028-03-01T01:00:00Z", 26 * 3600.0),
        ("2100-02-28T23:00:00Z", "2100-03-01T01:00:00Z", 2 * 3600.0),
        ("2026-12-31T23:59:59Z", "2027-01-01T00:00:00.250000Z", 1.25),
    ],
)
def test_rpo_seconds_between_backup_and_restore(backup, restored, seconds):
    from soc2_evidence.collectors.support.restore_results import seconds_between

    assert seconds_between(at(backup), at(restored)) == seconds


# --- the demo's default night ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "night"),
    [
        ("2027-01-01T00:00:00Z", date(2026, 12, 31)),
        ("2026-12-31T23:59:59Z", date(2026, 12, 30)),
        ("2027-01-01T03:00:00+05:00", date(2026, 12, 30)),  # 22:00 UTC on the 31st
        ("2028-03-01T00:00:00Z", date(2028, 2, 29)),
        ("2028-02-29T03:00:00Z", date(2028, 2, 28)),
        ("2100-03-01T00:00:00Z", date(2100, 2, 28)),
    ],
)
def test_the_demo_runs_yesterday_by_the_injected_clock(now, night):
    from soc2_evidence.demo.run import yesterday

    assert yesterday(at(now)) == night


# --- no test reads the real clock ---------------------------------------------------------------------------


def test_no_test_reads_the_real_clock():
    """A result that depends on today fails on some day of the year: tests inject a clock instead."""
    import re
    from pathlib import Path

    pattern = re.compile(r"\b(datetime|date)\.(now|today|utcnow)\(")
    hits = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(Path(__file__).parent.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if pattern.search(line)
    ]
    assert not hits, "tests read the real clock; inject one (now=..., today=...) instead:\n" + "\n".join(hits)
