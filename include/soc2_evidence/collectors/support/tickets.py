"""Ticket evidence shared by the jira, github and ticket_export collectors: one schema per population.

Every ticket collector writes the same three populations, as JSON Lines, one record a line,
every record carrying every column (``None`` where it does not apply):

``changes.jsonl`` (a change: a Jira change ticket or a merged GitHub pull request)
    ``id`` (``CHG-12``, ``org/repo#42``), ``source`` (``jira``/``github``), ``url``, ``title``,
    ``status``, ``author``, ``created_at``, ``approvers`` (``[{approver, approved_at, via}]``, every
    approval including self-approvals), ``approved_before_merge`` (someone other than the author
    approved at or before the merge; None while not merged), ``merged_at``, ``merged_by``,
    ``merge_commit``, ``linked_tickets``, ``has_ticket``, ``emergency``, ``post_merge_review_at``
    (the first independent approval after the merge), ``emergency_reviewed_in_time`` (an emergency
    change approved before merge or reviewed within ``emergency_review_days``; False once that
    deadline has passed without a review; None for other changes), ``environment``,
    ``transitions`` (Jira status changes ``[{from, to, by, at}]``), ``required_checks``
    (``[{name, conclusion}]`` on the merged head), ``required_checks_succeeded``, ``deployments``.
``access_reviews.jsonl``
    ``id``, ``source``, ``url``, ``title``, ``status``, ``system``, ``reviewer``, ``period_start``,
    ``period_end``, ``completed_at``, ``decisions`` (one string per decision).
``incidents.jsonl``
    ``id``, ``source``, ``url``, ``title``, ``status``, ``severity``, ``opened_at``, ``resolved_at``,
    ``post_mortem``.

Times are RFC 3339 UTC; records hold them as UTC datetimes, which the canonical encoder writes
so. People are ``Display Name <id>`` (or the id alone), compared by id.

Completeness: nightly runs collect what changed in a window ``[start, end)`` that starts where the
last committed run's ``watermark.json`` ended, so the watermark advances only once the archive
holds the evidence (a failed run leaves it where it was). A full population for a period runs
on demand (DAG param ``full_population``) and on the first of each month (the previous month);
it writes ``window.json`` but no watermark, so the nightly chain is unaffected.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, NamedTuple

import msgspec

from soc2_evidence.collectors.support.http import RetryPolicy
from soc2_evidence.core import config
from soc2_evidence.core.datasets import Dataset
from soc2_evidence.core.errors import CollectorError
from soc2_evidence.core.evidence import rfc3339

POPULATIONS = ("changes", "access_reviews", "incidents")
SOURCES = ("jira", "github")
WATERMARK_ITEM = "watermark.json"
WINDOW_ITEM = "window.json"
DEFAULT_TICKET_PATTERN = r"\b[A-Z][A-Z0-9_]{1,9}-[1-9][0-9]*\b"
DEFAULT_EMERGENCY_REVIEW_DAYS = 5
DEFAULT_INITIAL_LOOKBACK_DAYS = 31
DEFAULT_OVERLAP_MINUTES = 60
DEFAULT_SETTLE_MINUTES = 10

CHANGE_COLUMNS = {
    "id": "string",
    "source": "string",
    "url": "string",
    "title": "string",
    "status": "string",
    "author": "string",
    "created_at": "string",
    "approvers": "array",
    "approved_before_merge": "boolean",
    "merged_at": "string",
    "merged_by": "string",
    "merge_commit": "string",
    "linked_tickets": "array",
    "has_ticket": "boolean",
    "emergency": "boolean",
    "post_merge_review_at": "string",
    "emergency_reviewed_in_time": "boolean",
    "environment": "string",
    "transitions": "array",
    "required_checks": "array",
    "required_checks_succeeded": "boolean",
    "deployments": "array",
}
ACCESS_REVIEW_COLUMNS = {
    "id": "string",
    "source": "string",
    "url": "string",
    "title": "string",
    "status": "string",
    "system": "string",
    "reviewer": "string",
    "period_start": "string",
    "period_end": "string",
    "completed_at": "string",
    "decisions": "array",
}
INCIDENT_COLUMNS = {
    "id": "string",
    "source": "string",
    "url": "string",
    "title": "string",
    "status": "string",
    "severity": "string",
    "opened_at": "string",
    "resolved_at": "string",
    "post_mortem": "string",
}
COLUMNS = {"changes": CHANGE_COLUMNS, "access_reviews": ACCESS_REVIEW_COLUMNS, "incidents": INCIDENT_COLUMNS}
_REQUIRED = {
    "changes": ("source", "title", "author", "approvers", "linked_tickets", "has_ticket", "emergency"),
    "access_reviews": ("source", "title", "decisions"),
    "incidents": ("source", "title", "opened_at"),
}
DESCRIPTIONS = {
    "changes": "Changes with their approvals, merge and linked tickets",
    "access_reviews": "Access reviews with reviewer, period, completion and decisions",
    "incidents": "Incidents with severity, open and resolve times and post-mortem",
}


def datasets(kind: str, populations: tuple[str, ...] = POPULATIONS) -> tuple[Dataset, ...]:
    """The datasets of a ticket collector: ``<kind>.<population>`` in ``<population>.jsonl``."""
    return tuple(
        Dataset(
            name=f"{kind}.{population}",
            item=f"{population}.jsonl",
            key=("id",),
            columns=COLUMNS[population],
            required=_REQUIRED[population],
            value_sets={"source": SOURCES},
            total=population,
            description=DESCRIPTIONS[population],
        )
        for population in populations
    )


def record(population: str, **values: Any) -> dict[str, Any]:
    """A population record; refuses a missing or unknown column, so every record has the full schema."""
    columns = COLUMNS[population]
    if values.keys() != columns.keys():
        missing, extra = sorted(columns.keys() - values.keys()), sorted(values.keys() - columns.keys())
        raise ValueError(f"{population} record: missing columns {missing}, unknown columns {extra}")
    return values


def control_expectations(dataset: Dataset) -> list[Any]:
    """The change controls, as findings: independent approval before merge (emergencies excepted),
    a linked ticket, the emergency review after the fact, and required checks passing at merge."""
    from great_expectations.expectations.row_conditions import Column

    from soc2_evidence.validation.gx import control, expectations

    if not dataset.name.endswith(".changes"):
        return []

    def expect(column: str, check: str, description: str, **kwargs: Any):
        """``column`` is true in every (matching) row."""
        return control(
            expectations.ExpectColumnValuesToBeInSet,
            dataset,
            check,
            description,
            column=column,
            value_set=[True],
            **kwargs,
        )

    return [
        expect(
            "approved_before_merge",
            "approved_before_merge",
            "Every merged change was approved by someone other than its author before it was merged",
            row_condition=Column("emergency") == False,  # noqa: E712 - builds a GX condition, not a comparison
        ),
        expect("has_ticket", "ticket_linked", "Every change links a ticket"),
        expect(
            "emergency_reviewed_in_time",
            "emergency_reviewed_in_time",
            "Every emergency change was reviewed by someone other than its author within the allowed days",
        ),
        expect(
            "required_checks_succeeded",
            "required_checks_succeeded",
            "Every merged change passed the branch's required status checks",
        ),
    ]


# --- people, times, tickets --------------------------------------------------------------------


class Person(NamedTuple):
    """Who did something: ``id`` compares (account id, login), ``label`` is what an auditor reads.

    A named tuple, not a dataclass: a population builds several per record, and a tuple is the
    cheapest immutable value Python makes.
    """

    id: str
    name: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name} <{self.id}>" if self.name and self.name != self.id else self.id


class Approval(NamedTuple):
    person: Person
    at: datetime | None
    via: str

    def to_dict(self) -> dict[str, Any]:
        return {"approver": self.person.label, "approved_at": self.at, "via": self.via}


def parse_time(value: Any, formats: tuple[str, ...] = ()) -> datetime | None:
    """An API or export time as an aware UTC datetime; naive times are taken as UTC; ``None`` stays None."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip()
        try:
            moment = datetime.fromisoformat(text)  # Python 3.11+: "Z", "+0000" and fractions too
        except ValueError:
            for pattern in formats:
                try:
                    moment = datetime.strptime(text, pattern)
                    break
                except ValueError:
                    continue
            else:
                raise ValueError(f"unrecognised time {text!r}") from None
    if moment.tzinfo is UTC:
        return moment
    try:
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is a valid time, but before the first UTC one
        raise ValueError(f"time {value!s} is out of range") from None


def ticket_keys(pattern: re.Pattern[str], *texts: str | None) -> list[str]:
    """Ticket keys mentioned in the texts, in order of first mention."""
    found: dict[str, None] = {}
    for text in texts:
        if text:
            found.update(dict.fromkeys(match[0] for match in pattern.finditer(text)))
    return list(found)


def approval_facts(
    author: Person | None,
    approvals: list[Approval],
    merged_at: datetime | None,
    emergency: bool,
    review_days: int,
    now: datetime,
) -> dict[str, Any]:
    """Whether someone other than the author approved before the merge, and the review after it.

    An approval without a time cannot show it came before the merge and does not count.
    """
    author_id = author.id if author else None
    independent = sorted(
        approval.at for approval in approvals if approval.at is not None and approval.person.id != author_id
    )
    if merged_at is None:
        return {"approved_before_merge": None, "post_merge_review_at": None, "emergency_reviewed_in_time": None}
    first_after = bisect.bisect_right(independent, merged_at)
    approved_before = first_after > 0
    review_at = independent[first_after] if first_after < len(independent) else None
    in_time = None
    if emergency:
        deadline = merged_at + timedelta(days=review_days)
        if approved_before or (review_at is not None and review_at <= deadline):
            in_time = True
        elif review_at is not None or now > deadline:
            in_time = False
    return {
        "approved_before_merge": approved_before,
        "post_merge_review_at": review_at,
        "emergency_reviewed_in_time": in_time,
    }


# --- options -----------------------------------------------------------------------------------


class WindowOptions(config.Options):
    """How a run picks its window: see :func:`collection_window`."""

    monthly_full_population: Annotated[
        bool, msgspec.Meta(description="On the 1st of a month, collect the whole previous month")
    ] = True
    settle_minutes: config.NonNegativeInt = DEFAULT_SETTLE_MINUTES
    overlap_minutes: config.NonNegativeInt = DEFAULT_OVERLAP_MINUTES
    initial_lookback_days: config.PositiveInt = DEFAULT_INITIAL_LOOKBACK_DAYS


class ApiOptions(WindowOptions):
    """What every ticket API source shares: the window, paging and the HTTP retry policy."""

    tries: config.PositiveInt = RetryPolicy.tries
    timeout_seconds: config.PositiveSeconds = RetryPolicy.timeout_seconds
    max_rate_limit_wait_seconds: config.PositiveSeconds = RetryPolicy.max_wait_seconds
    max_pages: config.PositiveInt = RetryPolicy.max_pages
    page_size: config.PositiveInt = 100
    ca_bundle: config.LocalPath | None = None

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            tries=self.tries,
            timeout_seconds=float(self.timeout_seconds),
            max_wait_seconds=float(self.max_rate_limit_wait_seconds),
            max_pages=self.max_pages,
        )


def pattern_problems(name: str, pattern: str) -> Iterator[config.Problem]:
    """A regular expression option that does not compile, as a problem at load time."""
    try:
        re.compile(pattern)
    except re.error as error:
        yield config.Problem((name,), f"not a valid regular expression: {error}")


# --- the window: incremental from the watermark, or a full period --------------------------------


@dataclass(frozen=True)
class Window:
    """What a run collects: changes in ``[start, end)`` (incremental) or a whole period (full)."""

    mode: str  # "incremental" or "full"
    start: datetime
    end: datetime
    reason: str

    @property
    def full(self) -> bool:
        return self.mode == "full"

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "start": rfc3339(self.start), "end": rfc3339(self.end), "reason": self.reason}


def open_window(source: str, options: WindowOptions, writer: Any, context: Any, what: str) -> Window:
    """The run's collection window, archived as evidence before anything is collected."""
    window = collection_window(
        source,
        options,
        writer.run.logical_date,
        context.params,
        context.last_committed_item(WATERMARK_ITEM),
        context.now(),
    )
    writer.add_json(WINDOW_ITEM, window.to_dict(), description=f"The window of {what} this run collected")
    return window


def collection_window(
    source: str,
    options: WindowOptions,
    logical_date: datetime,
    params: Mapping[str, Any],
    watermark: bytes | None,
    now: datetime,
) -> Window:
    """The run's window. Full on request (params) or on the 1st of a month; else incremental.

    Incremental windows end a few minutes before now (``settle_minutes``: search indexes lag) and
    start at the last committed watermark less ``overlap_minutes`` (clock skew, JQL's minute
    precision and time zone); with no watermark yet, ``initial_lookback_days`` before the end.
    """
    if params.get("full_population"):
        start, end = _period(source, params, logical_date)
        return Window("full", start, end, "requested")
    if options.monthly_full_population and logical_date.astimezone(UTC).day == 1:
        start, end = previous_month(logical_date)
        return Window("full", start, end, "monthly")
    settle, overlap, lookback = options.settle_minutes, options.overlap_minutes, options.initial_lookback_days
    end = (now - timedelta(minutes=settle)).replace(second=0, microsecond=0)
    if watermark is None:
        return Window("incremental", end - timedelta(days=lookback), end, "first run: no committed watermark")
    try:
        previous = parse_time(json.loads(watermark)["end"])
    except (ValueError, KeyError, TypeError) as error:
        raise CollectorError(f"source {source}: the committed {WATERMARK_ITEM} is unreadable: {error}") from error
    start = min(previous - timedelta(minutes=overlap), end)
    return Window("incremental", start, end, f"since the committed watermark {rfc3339(previous)}")


def previous_month(moment: datetime) -> tuple[datetime, datetime]:
    first = moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = (first - timedelta(days=1)).replace(day=1)
    return start, first


def _period(source: str, params: Mapping[str, Any], logical_date: datetime) -> tuple[datetime, datetime]:
    """``period_start``/``period_end`` params (dates; the end is exclusive), else the previous month."""
    raw_start, raw_end = params.get("period_start"), params.get("period_end")
    if not raw_start and not raw_end:
        return previous_month(logical_date)
    try:
        start, end = parse_time(raw_start), parse_time(raw_end)
    except ValueError as error:
        raise CollectorError(f"source {source}: params period_start/period_end: {error}") from error
    if start is None or end is None or start >= end:
        raise CollectorError(
            f"source {source}: params period_start and period_end must both be set, start before end "
            f"(got {raw_start!r}, {raw_end!r})"
        )
    return start, end
