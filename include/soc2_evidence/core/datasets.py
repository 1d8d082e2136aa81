"""Evidence datasets: the tabular shape of an evidence item, declared beside its collector.

A dataset names its item, key, columns with types, closed value sets, and the total its
source reported. The generic data-quality suite is built from this declaration; control
expectations are written as code by the collector. Nothing here imports Great Expectations.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COLLECTED_AT = "_collected_at"
# Python type names Great Expectations checks per value on object columns (bool is not an int here).
TYPE_NAMES: dict[str, tuple[str, ...]] = {
    "string": ("str",),
    "integer": ("int",),
    "number": ("int", "float"),
    "boolean": ("bool",),
    "object": ("dict",),
    "array": ("list",),
}


@dataclass(frozen=True)
class Existence:
    """A dataset's declared position on emptiness, so that no absence passes unexamined.

    Control checks run per record, so an empty dataset would pass every one of them. With
    ``check`` set, fewer than ``minimum`` records is a finding of ``<dataset>.<check>`` (the
    control is "at least one X exists") and ``reason`` is what the auditor reads. With ``check``
    None an empty dataset is allowed, and ``reason`` says why: nothing to judge is itself fine, or
    another check records the absence. Build one with :func:`must_exist` or :func:`may_be_empty`.
    """

    reason: str
    check: str | None = None
    minimum: int = 1


def must_exist(check: str, reason: str, minimum: int = 1) -> Existence:
    """Fewer than ``minimum`` records is a finding of ``<dataset>.<check>``, described by ``reason``."""
    return Existence(reason=reason, check=check, minimum=minimum)


def may_be_empty(reason: str) -> Existence:
    """An empty dataset passes, for ``reason``."""
    return Existence(reason=reason)


@dataclass(frozen=True)
class Dataset:
    """One tabular evidence dataset.

    ``records`` is the key of the record list inside a JSON item; ``None`` means the item is
    JSON Lines (one record a line) or, for a ``.json`` item, a single record. ``existence`` is its
    position on emptiness (the contract test refuses a dataset without one). ``context`` maps each
    column no control check reads to the reason it is collected (a test holds every other
    non-key column to be read by a check).
    """

    name: str
    item: str
    key: tuple[str, ...]
    columns: Mapping[str, str]
    records: str | None = None
    required: tuple[str, ...] = ()
    value_sets: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    total: str | None = None
    description: str = ""
    existence: Existence | None = None
    context: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        declared = (*self.key, *self.required, *self.value_sets, *self.context)
        unknown = [column for column in declared if column not in self.columns]
        if unknown:
            raise ValueError(f"dataset {self.name}: columns {unknown} are not declared")
        bad_types = {column: kind for column, kind in self.columns.items() if kind not in TYPE_NAMES}
        if bad_types:
            raise ValueError(f"dataset {self.name}: unknown column types {bad_types}; use {', '.join(TYPE_NAMES)}")


def load_records(dataset: Dataset, path: Path) -> list[dict[str, Any]]:
    """The dataset's records from a staged item, parsed as the dataset declares."""
    if path.suffix == ".jsonl" or (dataset.records is None and path.suffix != ".json"):
        with open(path, encoding="utf-8") as stream:
            return [json.loads(line) for line in stream if line.strip()]
    document = json.loads(path.read_bytes())
    if dataset.records is None:
        return [document]
    records = document.get(dataset.records) if isinstance(document, dict) else None
    if not isinstance(records, list):
        raise ValueError(f"{path.name}: no list of records under {dataset.records!r}")
    return records


def to_frame(dataset: Dataset, records: list[dict[str, Any]], collected_at: str):
    """A DataFrame of object columns, so type expectations see each value's own Python type.

    Columns are those present in the records (so a missing or extra column fails the schema
    expectation) plus ``_collected_at`` for freshness.
    """
    import pandas as pd

    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    if not records:
        names.update(dict.fromkeys(dataset.columns))
    frame = pd.DataFrame(
        {name: pd.Series([record.get(name) for record in records], dtype=object) for name in names},
        index=pd.RangeIndex(len(records)),
    )
    frame[COLLECTED_AT] = pd.Series([pd.Timestamp(collected_at)] * len(records), dtype="datetime64[us, UTC]")
    return frame
