"""Streaming populations: the read-ahead of pages, and the interpreter settings it changes only while it runs."""

from __future__ import annotations

import gc
import sys
import threading

import pytest

from conftest import bundle_writer
from soc2_evidence.collectors.support import http
from soc2_evidence.collectors.support.http import read_ahead


def test_read_ahead_yields_every_page_in_order_fetched_off_the_callers_thread():
    fetched_on = []

    def pages():
        for number in range(5):
            fetched_on.append(threading.current_thread().name)
            yield [number]

    assert list(read_ahead(pages())) == [[0], [1], [2], [3], [4]]
    assert all(name.startswith("read-ahead") for name in fetched_on)


def test_read_ahead_shortens_the_switch_interval_only_while_it_runs():
    before = sys.getswitchinterval()
    seen = []

    def pages():
        for number in range(3):
            seen.append(sys.getswitchinterval())
            yield number

    for _ in read_ahead(pages()):
        seen.append(sys.getswitchinterval())
    assert set(seen) == {min(before, http.READ_AHEAD_SWITCH_SECONDS)}
    assert sys.getswitchinterval() == before


def test_read_ahead_puts_the_switch_interval_back_after_an_error_or_an_early_stop():
    before = sys.getswitchinterval()

    def failing():
        yield 1
        raise RuntimeError("page 2: HTTP 500")

    pages = read_ahead(failing())
    assert next(pages) == 1
    with pytest.raises(RuntimeError, match="page 2"):
        next(pages)
    assert sys.getswitchinterval() == before

    stopped = read_ahead(iter(range(100)))
    assert next(stopped) == 0
    stopped.close()
    assert sys.getswitchinterval() == before


def test_read_ahead_collects_cycles_rarely_only_while_it_runs():
    before = gc.get_threshold()
    seen = []

    def pages():
        for number in range(3):
            seen.append(gc.get_threshold())
            yield number

    for _ in read_ahead(pages()):
        seen.append(gc.get_threshold())
    assert set(seen) == {(max(before[0], http.READ_AHEAD_GC_THRESHOLD), *before[1:])}
    assert gc.get_threshold() == before

    def failing():
        yield 1
        raise RuntimeError("page 2: HTTP 500")

    with pytest.raises(RuntimeError, match="page 2"):
        list(read_ahead(failing()))
    assert gc.get_threshold() == before


def test_jsonl_streaming_leaves_the_cycle_collector_alone(tmp_path, run_context):
    """AWS snapshots stream boto3 responses, which do make cycles: the writer must not delay their collection."""
    writer = bundle_writer(tmp_path, run_context, family="config", source="aws", kind="aws")
    before = gc.get_threshold()
    during = []

    def records():
        for number in range(3):
            during.append(gc.get_threshold())
            yield {"id": number}

    writer.add_jsonl("users.jsonl", records())
    assert set(during) == {before}
