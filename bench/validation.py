"""Validation cost: the Great Expectations quality suite vs the same checks hand-written in pandas.

Both check one 1,000,000-row population (``--quick``: 100,000) with the generated data-quality
suite of a four-column dataset: exact column set, per-value types, key not null and unique,
a required column, a closed value set, freshness and completeness. Both see the same DataFrame
and must agree that it passes. Ratio = GX time / pandas time, the fastest of three interleaved
rounds each. Target: <= 2.0x. The Data Docs site, which the pipeline builds once per run after
every dataset is validated, is timed and printed apart: the pandas side has nothing like it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from bench import Result, bench_tempdir, verdict

NAME = "validation"
TARGET = 2.0
ROWS, QUICK_ROWS = 1_000_000, 100_000
ROUNDS = 3
STATES = ("active", "suspended")


def run(quick: bool = False) -> Result:
    from soc2_evidence.core.datasets import Dataset, to_frame
    from soc2_evidence.validation.gx import Target, Validator

    rows = QUICK_ROWS if quick else ROWS
    dataset = Dataset(
        name="bench.users",
        item="users.jsonl",
        key=("user",),
        columns={"user": "string", "mfa": "boolean", "keys": "integer", "state": "string"},
        required=("mfa",),
        value_sets={"state": STATES},
        total="users",
    )
    records = [
        {"user": f"user-{number:07d}", "mfa": number % 7 != 0, "keys": number % 3, "state": STATES[number % 2]}
        for number in range(rows)
    ]
    logical = datetime(2026, 11, 25, 2, tzinfo=UTC)
    frame = to_frame(dataset, records, "2026-11-25T03:00:00Z")
    parameters = {
        "fresh_after": logical - timedelta(hours=48),
        "fresh_before": logical + timedelta(hours=48),
        "reported_total": rows,
    }
    gx_times, docs_times, pandas_times = [], [], []
    with bench_tempdir(NAME) as tmp:
        for round_number in range(ROUNDS):  # interleaved; the fastest round of each counts
            validator = Validator(tmp / f"gx-{round_number}")
            started = time.perf_counter()
            checks, _ = validator.validate(Target(source="bench", dataset=dataset, frame=frame, parameters=parameters))
            gx_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            validator.finish_docs()
            docs_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            pandas_ok = hand_written(frame, dataset, parameters)
            pandas_times.append(time.perf_counter() - started)
            gx_ok = all(check.success for check in checks)
            if not (gx_ok and pandas_ok):
                raise RuntimeError(f"the two validations disagree or fail: GX {gx_ok}, pandas {pandas_ok}")
    gx_s, docs_s, pandas_s = min(gx_times), min(docs_times), min(pandas_times)
    ratio = gx_s / pandas_s
    passed = ratio <= TARGET
    line = (
        f"{NAME}: GX suite {gx_s:.2f} s vs hand-written pandas {pandas_s:.2f} s -> {ratio:.2f}x "
        f"(target <= {TARGET:.1f}x) {verdict(passed)} [{rows:,} rows, {len(checks)} expectations; "
        f"the run's Data Docs, built once after every dataset, {docs_s:.2f} s more]"
    )
    return Result(NAME, line, passed)


def hand_written(frame, dataset, parameters) -> bool:
    """The same expectations, written the way an engineer would without GX."""
    from soc2_evidence.core.datasets import COLLECTED_AT, TYPE_NAMES

    ok = set(frame.columns) == {*dataset.columns, COLLECTED_AT}
    for column, kind in dataset.columns.items():
        values = frame[column].dropna()
        ok &= bool(values.map(lambda value: type(value).__name__).isin(TYPE_NAMES[kind]).all())
    for column in (*dataset.key, *dataset.required):
        ok &= not frame[column].isna().any()
    ok &= frame[dataset.key[0]].is_unique
    for column, values in dataset.value_sets.items():
        ok &= bool(frame[column].dropna().isin(values).all())
    collected = frame[COLLECTED_AT]
    ok &= bool(collected.between(parameters["fresh_after"], parameters["fresh_before"]).all())
    ok &= len(frame) == parameters["reported_total"]
    return ok
