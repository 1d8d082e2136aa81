"""Strategies shared by the fuzz targets: hostile values, mutations of a real document, and a file-fed collect.

A mutation keeps most of a real payload's shape (so the parser gets past its first checks) and
changes a few places: a value of the wrong type, an out-of-range number or date, NaN, a key
removed, a 10,000-deep nesting, or bytes cut short. That is how real exports go wrong, and it
reaches the code behind the first ``isinstance`` test, which purely random JSON never does.
"""

from __future__ import annotations

import atexit
import copy
import functools
import json
import os
import pickle
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from soc2_evidence.collectors import CollectContext, collector_for, source_config
from soc2_evidence.core.config import SourceConfig
from soc2_evidence.core.evidence import RunContext
from soc2_evidence.core.redaction import Redactor
from soc2_evidence.core.staging import BundleWriter

# The collectors' injected clock: fuzzing never reads the real one, so a case replays the same on any date.
NOW = datetime(2026, 11, 2, 3, 0, tzinfo=UTC)
DEEP = 10_000  # nesting levels of the deepest body: far past Python's recursion limit
# A case's files and staging live in memory where the machine offers it: 10,000 cases make and
# remove some 50,000 directories, and on a busy disk removing them took a third of the time.
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 - private temporary directories in it

# Values the issue found crashing parsers, and their neighbours.
EDGE_VALUES = (
    None,
    True,
    False,
    0,
    -1,
    2**63,
    10**400,
    -(10**400),
    1e20,
    1e308,
    float("nan"),
    float("inf"),
    float("-inf"),
    "",
    " ",
    "3",
    "yesterday",
    "soon",
    "main",
    "NaN",
    "Infinity",
    "1e20",
    "1e400",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "2026-02-30T00:00:00Z",
    "2026-02-30",
    "2026-10-06T14:50:00Z",
    "2026-10-05T08:00:00.000+0000",
    "01/Oct/26 9:00 AM",
    "\x00",
    "é" * 3,
    [],
    {},
    [None],
    {"": None},
    [[]],
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
HOSTILE = st.one_of(
    st.sampled_from(EDGE_VALUES),
    _scalars,
    st.recursive(
        _scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
        max_leaves=6,
    ),
)


def paths(document: Any, prefix: tuple = ()) -> list[tuple]:
    """Every place in a JSON document, the root included: keys of objects, indexes of lists."""
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            found += paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += paths(value, (*prefix, index))
    return found


# Stands for the deep nesting until the document is written, so drawing and replaying stay shallow.
_DEEP_MARK = "\x00deep\x00"
_DEEP_JSON = json.dumps(_DEEP_MARK).encode("utf-8")


def _apply(document: Any, path: tuple, action: str, value: Any) -> Any:
    """``document`` with one change at ``path``: ``replace`` it, ``drop`` it, or nest it ``deep``."""
    if not path:
        return _DEEP_MARK if action == "deep" else value
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if action == "drop":
        del parent[last]
    else:
        parent[last] = _DEEP_MARK if action == "deep" else value
    return document


def mutated(base: Any, *, max_changes: int = 4) -> st.SearchStrategy[Any]:
    """``base`` (copied) with up to ``max_changes`` changes in places drawn from its own paths.

    The places are the base's, listed once: a place that an earlier change removed is skipped.
    """
    places = paths(base)
    frozen = pickle.dumps(base)  # a copy per case: faster than deepcopy, and keeps YAML's dates

    @st.composite
    def mutation(draw: st.DrawFn) -> Any:
        document = pickle.loads(frozen)  # noqa: S301 - our own bytes, pickled just above
        for _ in range(draw(st.integers(0, max_changes))):
            path = places[draw(st.integers(0, len(places) - 1))]
            action = draw(st.sampled_from(("replace",) * 5 + ("drop", "drop", "deep")))
            if action == "drop" and not path:
                continue
            # A copy: EDGE_VALUES' lists and dicts are shared, and a later change must not reach them (or loop).
            value = copy.deepcopy(draw(HOSTILE)) if action == "replace" else None
            try:
                document = _apply(document, path, action, value)
            except (KeyError, IndexError, TypeError):  # an earlier change removed or replaced this place
                continue
        return document

    return mutation()


def to_json(document: Any) -> bytes:
    """JSON text as a careless exporter writes it: Python's encoder, NaN and Infinity as bare tokens."""
    return json.dumps(document, allow_nan=True).encode("utf-8").replace(_DEEP_JSON, b"[" * DEEP + b"]" * DEEP)


@st.composite
def damaged(draw: st.DrawFn, text: bytes) -> bytes:
    """Bytes of a file as a failed transfer leaves them: cut short, a byte changed, or not UTF-8."""
    action = draw(st.sampled_from(("keep", "keep", "truncate", "flip", "latin1")))
    if action == "truncate" and text:
        return text[: draw(st.integers(0, len(text) - 1))]
    if action == "flip" and text:
        at = draw(st.integers(0, len(text) - 1))
        return text[:at] + bytes([draw(st.integers(0, 255))]) + text[at + 1 :]
    if action == "latin1":
        return text + b"\xe9\xff"
    return text


def json_file(base: Any) -> st.SearchStrategy[bytes]:
    """A file holding a mutation of ``base``, sometimes damaged as bytes."""
    return mutated(base).map(to_json).flatmap(damaged)


def collect_files(kind: str, options: dict[str, Any], files: dict[str, bytes], *, family: str) -> None:
    """Run the ``kind`` collector's ``collect()`` over ``files``, written to its ``location`` folder.

    The folder, the staging root and the typed source are made once per kind and options: building
    the source (type checks) and making and removing the folders cost more than most cases.
    The writer clears the previous case's bundle itself, as a retried task's does.
    """
    folder, staging, source = _workspace(kind, json.dumps(options, sort_keys=True))
    for stale in folder.iterdir():
        stale.unlink()
    for name, data in files.items():
        (folder / name).write_bytes(data)
        os.utime(folder / name, (NOW.timestamp(), NOW.timestamp()))  # a file's time is evidence too
    collector = collector_for(kind)
    writer = BundleWriter(
        staging,
        family=family,
        source=source.name,
        kind=kind,
        run=RunContext(f"evidence_{family}", "fuzz", NOW),
        try_number=1,
        collector=collector.__name__,
        collector_version=collector.VERSION,
        redactor=Redactor(),
        now=lambda: NOW,
    )
    collector.collect(source, writer, CollectContext(resolve_path=Path, now=lambda: NOW, sleep=_no_sleep))
    writer.finish()


@functools.cache
def _workspace(kind: str, options: str) -> tuple[Path, Path, SourceConfig]:
    """A folder of files, a staging root and the source reading the folder; removed when the process ends."""
    scratch = Path(tempfile.mkdtemp(prefix="soc2-fuzz-", dir=SCRATCH))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    folder = scratch / "files"
    folder.mkdir()
    return folder, scratch / "staging", source_config("fuzzed", kind, {**json.loads(options), "location": str(folder)})


def _no_sleep(seconds: float) -> None:
    """Fuzzing never waits: a collector's backoff is recorded by nobody and skipped."""
