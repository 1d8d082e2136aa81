"""The evidence model: canonical JSON, RFC 3339 times, retention dates, names, items and runs."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from soc2_evidence.core import evidence
from soc2_evidence.core.evidence import (
    FAMILIES,
    EvidenceItem,
    RunContext,
    canonical_json,
    check_name,
    parse_rfc3339,
    retain_until,
    rfc3339,
)

# --- canonical_json -----------------------------------------------------------------------

_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
)
JSON_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(_TEXT, children, max_size=5),
    max_leaves=25,
)


def _reordered(value, order):
    """The same JSON value, with every object's keys inserted in another order."""
    if isinstance(value, dict):
        keys = order(list(value))
        return {key: _reordered(value[key], order) for key in keys}
    if isinstance(value, list):
        return [_reordered(item, order) for item in value]
    return value


_ORDERS = {
    "reversed": lambda keys: keys[::-1],
    "sorted-descending": lambda keys: sorted(keys, reverse=True),
    "rotated": lambda keys: keys[1:] + keys[:1],
}


def _assert_objects_sorted(pairs):
    keys = [key for key, _ in pairs]
    assert keys == sorted(keys), f"object keys not sorted: {keys}"
    return dict(pairs)


@settings(max_examples=100, deadline=None, database=None)
@given(value=st.dictionaries(_TEXT, JSON_VALUES, max_size=8))
def test_canonical_json_is_independent_of_insertion_order(value):
    data = canonical_json(value)
    digest = hashlib.sha256(data).hexdigest()
    for order in _ORDERS.values():
        other = _reordered(value, order)
        assert other == value
        assert canonical_json(other) == data
        assert hashlib.sha256(canonical_json(other)).hexdigest() == digest


@settings(max_examples=100, deadline=None, database=None)
@given(value=JSON_VALUES)
def test_canonical_json_is_a_sorted_compact_newline_terminated_fixed_point(value):
    data = canonical_json(value)
    assert data.endswith(b"\n") and not data.endswith(b"\n\n")
    text = data.decode("utf-8")  # always valid UTF-8
    parsed = json.loads(text, object_pairs_hook=_assert_objects_sorted)
    assert parsed == value
    # Re-serialising the parsed value gives the same bytes: there is only one form.
    assert canonical_json(parsed) == data
    # No insignificant white space: the compact separators of json.dumps, nothing added.
    assert text[:-1] == json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


_PLAIN_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(alphabet=st.characters(codec="utf-8"))
    | st.datetimes(timezones=st.just(UTC)),
    lambda children: (
        st.lists(children, max_size=5)
        | st.lists(children, max_size=3).map(tuple)
        | st.dictionaries(_TEXT, children, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, database=None)
@given(value=_PLAIN_VALUES)
def test_canonical_json_fast_path_writes_the_json_modules_bytes(value):
    """Plain values (no floats, sets or non-UTC datetimes) go through msgspec: the bytes must not change."""
    assert evidence._is_plain(value)
    expected = json.dumps(
        value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=evidence._json_default
    )
    assert canonical_json(value) == (expected + "\n").encode("utf-8")


@pytest.mark.parametrize(
    "value",
    [
        1.5,
        [1, 1e16],
        {"a": {"b": float("1e-05")}},
        {1: "int key"},
        {"tags": {"a"}},
        (2**70, 0.5),
        {"at": datetime(2026, 1, 2, 5, tzinfo=timezone(timedelta(hours=2)))},
        [date(2026, 1, 2)],
    ],
    ids=["float", "exponent", "nested-float", "int-key", "set", "tuple-with-float", "offset-datetime", "date"],
)
def test_canonical_json_fast_path_refuses_what_msgspec_writes_differently(value):
    assert not evidence._is_plain(value)


def test_canonical_json_subclasses_of_plain_types_take_the_json_path():
    import enum

    class Level(enum.IntEnum):
        HIGH = 3

    class Name(str):
        pass

    assert not evidence._is_plain({"level": Level.HIGH}) and not evidence._is_plain([Name("x")])
    assert canonical_json({"level": Level.HIGH, "name": Name("x")}) == b'{"level":3,"name":"x"}\n'


def test_canonical_json_exact_bytes():
    value = {"b": [1, 2, {"z": None, "a": True}], "a": "x", "c": {"y": 1.5, "x": "two words"}}
    assert canonical_json(value) == b'{"a":"x","b":[1,2,{"a":true,"z":null}],"c":{"x":"two words","y":1.5}}\n'


def test_canonical_json_keeps_non_ascii_as_utf8_bytes():
    value = {"name": "Zoë ☃ 日本語", "emoji": "🔐"}
    data = canonical_json(value)
    assert data == '{"emoji":"🔐","name":"Zoë ☃ 日本語"}\n'.encode()
    assert b"\\u" not in data
    assert "Zoë".encode() in data


def test_canonical_json_escapes_control_characters_only():
    assert canonical_json({"a": 'line\nbreak "quoted" \\ tab\t'}) == b'{"a":"line\\nbreak \\"quoted\\" \\\\ tab\\t"}\n'


def test_canonical_json_sorts_nested_keys_by_code_point():
    assert canonical_json({"b": 1, "B": 2, "a": 3, "é": 4, "_": 5}) == '{"B":2,"_":5,"a":3,"b":1,"é":4}\n'.encode()


def test_canonical_json_serialises_datetimes_dates_and_sets():
    value = {
        "utc": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "offset": datetime(2026, 1, 2, 5, 4, 5, 120000, tzinfo=timezone(timedelta(hours=2))),
        "day": date(2026, 1, 2),
        "tags": {"b", "a", "c"},
        "frozen": frozenset({3, 1, 2}),
    }
    assert canonical_json(value) == (
        b'{"day":"2026-01-02","frozen":[1,2,3],"offset":"2026-01-02T03:04:05.120000Z",'
        b'"tags":["a","b","c"],"utc":"2026-01-02T03:04:05Z"}\n'
    )


def test_canonical_json_rejects_naive_datetimes():
    with pytest.raises(ValueError, match=r"naive datetime .*timezone-aware"):
        canonical_json({"at": datetime(2026, 1, 2, 3, 4, 5)})


@pytest.mark.parametrize("value", [b"raw", {"nested": [b"\x00\x01"]}], ids=["top-level", "nested"])
def test_canonical_json_rejects_bytes(value):
    with pytest.raises(TypeError, match=r"bytes are not JSON evidence"):
        canonical_json(value)


def test_canonical_json_rejects_unknown_types():
    with pytest.raises(TypeError, match=r"object is not JSON serialisable"):
        canonical_json({"x": object()})


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "infinity"])
def test_canonical_json_rejects_non_json_floats(value):
    with pytest.raises(ValueError):
        canonical_json({"x": value})


# --- rfc3339 and retention ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        pytest.param(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05Z", id="utc-whole-seconds"),
        pytest.param(datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=UTC), "2026-01-02T03:04:05.000007Z", id="one-microsecond"),
        pytest.param(
            datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC), "2026-01-02T03:04:05.123456Z", id="microseconds"
        ),
        pytest.param(
            datetime(2026, 1, 1, 22, 0, tzinfo=timezone(timedelta(hours=-5))),
            "2026-01-02T03:00:00Z",
            id="negative-offset-crosses-midnight",
        ),
        pytest.param(
            datetime(2026, 1, 2, 5, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            "2026-01-02T00:00:00Z",
            id="half-hour-offset",
        ),
        pytest.param(datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), "1999-12-31T23:59:59Z", id="last-second"),
    ],
)
def test_rfc3339(moment, expected):
    assert rfc3339(moment) == expected
    assert parse_rfc3339(expected) == moment
    assert parse_rfc3339(expected).tzinfo == UTC


def test_rfc3339_rejects_naive():
    with pytest.raises(ValueError, match=r"naive datetime"):
        rfc3339(datetime(2026, 1, 2))


@settings(database=None)
@given(moment=st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)))
def test_rfc3339_round_trips(moment):
    text = rfc3339(moment)
    assert text.endswith("Z")
    assert parse_rfc3339(text) == moment


@pytest.mark.parametrize(
    ("start", "days", "expected"),
    [
        pytest.param(
            datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC), 400, datetime(2027, 2, 5, 12, 0, 0, tzinfo=UTC), id="exact"
        ),
        pytest.param(
            datetime(2026, 1, 1, 12, 0, 0, 1, tzinfo=UTC),
            1,
            datetime(2026, 1, 2, 12, 0, 1, tzinfo=UTC),
            id="one-microsecond-rounds-up",
        ),
        pytest.param(
            datetime(2026, 1, 1, 23, 59, 59, 999999, tzinfo=UTC),
            1,
            datetime(2026, 1, 3, 0, 0, 0, tzinfo=UTC),
            id="rounds-over-midnight",
        ),
    ],
)
def test_retain_until(start, days, expected):
    assert retain_until(start, days) == expected


@settings(database=None)
@given(
    start=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    days=st.integers(min_value=1, max_value=3650),
)
def test_retain_until_rounds_up_to_whole_seconds_never_early(start, days):
    until = retain_until(start, days)
    assert until.microsecond == 0
    assert until >= start + timedelta(days=days)
    assert until - (start + timedelta(days=days)) < timedelta(seconds=1)


# --- check_name ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["a", "A1", "pipeline-config", "a.b_c-d", "files/conf/app.yaml", "files/_/x", "0day", "x/.hidden", "v1.2.3"],
)
def test_check_name_accepts(name):
    assert check_name("source name", name) == name


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("..", id="dotdot"),
        pytest.param("../etc/passwd", id="traversal-leading"),
        pytest.param("a/../b", id="traversal-middle"),
        pytest.param("a/..", id="traversal-trailing"),
        pytest.param("a..b", id="double-dot-in-segment"),
        pytest.param("/abs/path", id="leading-slash"),
        pytest.param("a/", id="trailing-slash"),
        pytest.param("a//b", id="empty-segment"),
        pytest.param("has space", id="space"),
        pytest.param("tab\there", id="tab"),
        pytest.param(".hidden", id="leading-dot"),
        pytest.param("-flag", id="leading-dash"),
        pytest.param("_x", id="leading-underscore"),
        pytest.param("a\\b", id="backslash"),
        pytest.param("a:b", id="colon"),
        pytest.param("zoë", id="non-ascii"),
        pytest.param("abc\n", id="trailing-newline"),
        pytest.param("a/./b", id="dot-segment"),
    ],
)
def test_check_name_rejects(name):
    with pytest.raises(ValueError, match=r"invalid source name"):
        check_name("source name", name)


# --- RunContext and EvidenceItem -----------------------------------------------------------


def _item(run: RunContext, **overrides) -> EvidenceItem:
    values = {
        "family": "config",
        "source": "pipeline-config",
        "name": "files/include/config/evidence.yaml",
        "media_type": "text/plain",
        "sha256": "a" * 64,
        "size": 123,
        "collected_at": "2026-11-25T02:00:01.5Z",
        "collector": "soc2_evidence.collectors.config_repo",
        "collector_version": "1.0.0",
        "code_revision": "0123abc",
        "try_number": 2,
        "run": run,
        "description": "evidence.yaml at 0123456789ab",
    }
    values.update(overrides)
    return EvidenceItem(**values)


@pytest.mark.parametrize(
    "tz",
    [UTC, timezone(timedelta(hours=-7)), timezone(timedelta(hours=9, minutes=30))],
    ids=["utc", "minus-7", "plus-9h30"],
)
def test_run_context_round_trips(tz):
    run = RunContext(
        dag_id="evidence_config_snapshot",
        run_id="manual__2026-11-25T02:00:00+00:00",
        logical_date=datetime(2026, 11, 25, 2, 0, 0, 250, tzinfo=tz),
        data_interval_start=datetime(2026, 11, 24, 2, tzinfo=tz),
        data_interval_end=datetime(2026, 11, 25, 2, tzinfo=tz),
    )
    data = json.loads(canonical_json(run.to_dict()))
    assert data["logical_date"].endswith("Z")
    assert RunContext.from_dict(data) == run


def test_run_context_without_interval_round_trips():
    run = RunContext(dag_id="d", run_id="r", logical_date=datetime(2026, 1, 1, tzinfo=UTC))
    data = run.to_dict()
    assert data["data_interval"] == {"start": None, "end": None}
    assert RunContext.from_dict(data) == run
    assert RunContext.from_dict({k: v for k, v in data.items() if k != "data_interval"}) == run


@pytest.mark.parametrize(
    ("logical_date", "night"),
    [
        pytest.param(datetime(2026, 11, 25, 2, tzinfo=UTC), date(2026, 11, 25), id="utc"),
        pytest.param(
            datetime(2026, 11, 25, 23, 30, tzinfo=timezone(timedelta(hours=-5))), date(2026, 11, 26), id="west-of-utc"
        ),
        pytest.param(
            datetime(2026, 11, 26, 0, 30, tzinfo=timezone(timedelta(hours=2))), date(2026, 11, 25), id="east-of-utc"
        ),
        pytest.param(datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), date(2026, 12, 31), id="last-instant"),
    ],
)
def test_run_context_night_is_the_utc_date(logical_date, night):
    assert RunContext(dag_id="d", run_id="r", logical_date=logical_date).night == night


def test_evidence_item_round_trips(run_context):
    item = _item(run_context)
    data = item.to_dict()
    assert data["run"] == run_context.to_dict()
    assert data["family"] == "config" and data["try_number"] == 2
    # Through the bytes that actually get written, too.
    restored = EvidenceItem.from_dict(json.loads(canonical_json(data)))
    assert restored == item
    assert restored.to_dict() == data


def test_evidence_item_from_dict_ignores_unknown_fields(run_context):
    data = {**_item(run_context).to_dict(), "added_in_a_later_version": 1}
    assert EvidenceItem.from_dict(data) == _item(run_context)


@pytest.mark.parametrize("family", ["logs", "", "Config", "configs"])
def test_evidence_item_rejects_unknown_family(run_context, family):
    with pytest.raises(ValueError, match=r"unknown evidence family .*expected one of config, backup, tickets"):
        _item(run_context, family=family)


def test_evidence_item_from_dict_rejects_unknown_family(run_context):
    data = {**_item(run_context).to_dict(), "family": "logs"}
    with pytest.raises(ValueError, match=r"unknown evidence family 'logs'"):
        EvidenceItem.from_dict(data)


@pytest.mark.parametrize(
    ("field", "value", "pattern"),
    [
        ("source", "../x", r"invalid source name '\.\./x'"),
        ("source", "a b", r"invalid source name 'a b'"),
        ("name", "/etc/passwd", r"invalid evidence name '/etc/passwd'"),
        ("name", "files/../../x", r"invalid evidence name"),
    ],
)
def test_evidence_item_checks_names(run_context, field, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        _item(run_context, **{field: value})


def test_every_family_is_accepted(run_context):
    assert {_item(run_context, family=family).family for family in FAMILIES} == set(FAMILIES)


def test_code_revision_prefers_the_environment(monkeypatch):
    monkeypatch.setenv("EVIDENCE_CODE_REVISION", "rev-from-env")
    evidence.code_revision.cache_clear()
    try:
        assert evidence.code_revision() == "rev-from-env"
    finally:
        evidence.code_revision.cache_clear()
