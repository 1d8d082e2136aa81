"""Validation with Great Expectations: each expectation passes on good data and names itself on bad data;
control exceptions become findings, accepted exceptions suppress until they expire, Data Docs open offline."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from soc2_evidence.core.datasets import Dataset, to_frame
from soc2_evidence.core.errors import ConfigError
from soc2_evidence.validation.calendar import evidence_calendar
from soc2_evidence.validation.controls import AcceptedException, apply_exceptions, load_control_map, load_exceptions

USERS = Dataset(
    name="tests.users",
    item="users.jsonl",
    key=("user",),
    columns={"user": "string", "mfa": "boolean", "keys": "integer", "state": "string"},
    required=("mfa",),
    value_sets={"state": ("active", "suspended")},
    total="users",
)
LOGICAL = datetime(2026, 11, 25, 2, tzinfo=UTC)
FRESH = {"fresh_after": LOGICAL - timedelta(hours=36), "fresh_before": LOGICAL + timedelta(hours=36)}
GOOD = [
    {"user": "alice", "mfa": True, "keys": 1, "state": "active"},
    {"user": "bob", "mfa": False, "keys": 0, "state": "suspended"},
]


@pytest.fixture(scope="module")
def validator(tmp_path_factory):
    from soc2_evidence.validation.gx import Validator

    return Validator(tmp_path_factory.mktemp("gx"))


def run(validator, records, *, collected_at="2026-11-25T03:00:00Z", total=None, controls=(), name=None):
    from soc2_evidence.validation.gx import Target

    dataset = replace(USERS, name=name or f"tests.users{next(_names)}")
    target = Target(
        source="src",
        dataset=dataset,
        frame=to_frame(dataset, records, collected_at),
        parameters={**FRESH, "reported_total": len(records) if total is None else total},
        controls=list(controls),
    )
    checks, _ = validator.validate(target)
    return dataset, {result.check.removeprefix(dataset.name + "."): result for result in checks}


_names = iter(range(10_000))


def failed(results):
    return sorted(check for check, result in results.items() if not result.success)


def test_good_data_passes_every_quality_expectation(validator):
    _, results = run(validator, GOOD)
    assert failed(results) == []
    assert set(results) == {
        "schema.columns",
        "schema.type.user",
        "schema.type.mfa",
        "schema.type.keys",
        "schema.type.state",
        "not_null.user",
        "not_null.mfa",
        "key.unique",
        "values.state",
        "freshness",
        "completeness",
    }


@pytest.mark.parametrize(
    ("records", "kwargs", "expected"),
    [
        pytest.param([{**GOOD[0], "extra": 1}, GOOD[1]], {}, ["schema.columns"], id="extra-column"),
        pytest.param(
            [{k: v for k, v in r.items() if k != "keys"} for r in GOOD],
            {},
            ["schema.columns", "schema.type.keys"],  # the type check cannot evaluate a missing column
            id="missing-column",
        ),
        pytest.param([{**GOOD[0], "keys": "1"}, GOOD[1]], {}, ["schema.type.keys"], id="wrong-type"),
        pytest.param([{**GOOD[0], "mfa": 1}, GOOD[1]], {}, ["schema.type.mfa"], id="int-is-not-bool"),
        pytest.param([{**GOOD[0], "user": None}, GOOD[1]], {}, ["not_null.user"], id="null-key"),
        pytest.param([{**GOOD[0], "mfa": None}, GOOD[1]], {}, ["not_null.mfa"], id="null-required"),
        pytest.param([GOOD[0], {**GOOD[1], "user": "alice"}], {}, ["key.unique"], id="duplicate-key"),
        pytest.param([GOOD[0], {**GOOD[1], "state": "deleted"}], {}, ["values.state"], id="value-outside-set"),
        pytest.param(GOOD, {"collected_at": "2026-11-28T03:00:00Z"}, ["freshness"], id="stale"),
        pytest.param(GOOD, {"total": 3}, ["completeness"], id="row-missing"),
    ],
)
def test_each_quality_expectation_names_itself(validator, records, kwargs, expected):
    _, results = run(validator, records, **kwargs)
    assert failed(results) == expected
    assert all(results[check].kind == "quality" for check in expected)
    assert results[expected[0]].detail


def test_control_expectation_reports_failing_rows(validator):
    from soc2_evidence.validation.gx import expectations

    control = expectations.ExpectColumnValuesToBeInSet(
        column="mfa", value_set=[True], meta={"check": "tests.users.mfa_enabled", "description": "MFA on"}
    )
    _, results = run(validator, GOOD, controls=[control])
    assert failed(results) == ["tests.users.mfa_enabled"]  # control checks keep the id they were given
    result = results["tests.users.mfa_enabled"]
    assert result.kind == "control"
    assert result.unexpected_rows == [1]


def test_empty_dataset_with_zero_reported_is_complete(validator):
    _, results = run(validator, [], total=0)
    assert failed(results) == []


def finding(check="config_repo.files.nothing_to_redact", source="repo", path="app.yaml"):
    return {"check": check, "source": source, "record_key": {"path": path}}


def exception(expires: date, **overrides) -> AcceptedException:
    fields = {
        "id": "EXC-1",
        "check": "config_repo.files.nothing_to_redact",
        "record": {"path": "app.yaml"},
        "reason": "sample data",
        "approver": "ciso@example.test",
        "expires": expires,
        "source": "repo",
    }
    return AcceptedException(**{**fields, **overrides})


def test_an_active_exception_accepts_a_finding_and_says_why():
    [result] = apply_exceptions([finding()], [exception(date(2026, 12, 31))], today=date(2026, 11, 25))
    assert result["status"] == "accepted"
    assert result["exception"]["reason"] == "sample data"
    assert result["exception"]["state"] == "active"


def test_an_expired_exception_no_longer_suppresses():
    [result] = apply_exceptions([finding()], [exception(date(2026, 11, 24))], today=date(2026, 11, 25))
    assert result["status"] == "open"
    assert result["exception"]["state"] == "expired"


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(finding(path="other.yaml"), id="other-record"),
        pytest.param(finding(source="other-repo"), id="other-source"),
        pytest.param(finding(check="config_repo.files.every_file_archived"), id="other-check"),
    ],
)
def test_an_exception_covers_only_its_record(other):
    [result] = apply_exceptions([other], [exception(date(2026, 12, 31))], today=date(2026, 11, 25))
    assert result["status"] == "open" and result["exception"] is None


def test_shipped_control_map_and_register_load():
    root = Path(__file__).resolve().parents[1] / "include" / "config"
    control_map = load_control_map(root / "controls.yaml")
    assert control_map.quality == ("CC2.1",)
    assert all(re.match(r"^(CC|A1)", criterion) for criteria in control_map.checks.values() for criterion in criteria)
    assert load_exceptions(root / "exceptions.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "quality: [CC2.1]\ndatasets: {a: [XX9]}\n",
            r":2: datasets\.a\[0\]: 'XX9' is not a Trust Services Criteria id \(e\.g\. CC6\.1, A1\.2\)$",
            id="bad-id",
        ),
        pytest.param("quality: []\n", r":1: quality: expected array of length >= 1, got \[\]$", id="empty"),
        pytest.param("- a\n", r":1: top level: expected a mapping, got a list$", id="not-mapping"),
        pytest.param(
            "quality: [CC2.1]\ndatasets:\n  1.5: [CC1.1]\n",
            r":2: datasets: expected str, got float as a key$",
            id="key",
        ),
    ],
)
def test_bad_control_map_is_one_located_line(tmp_path, text, message):
    """Each problem is ``file:line: key.path: what``, as in the pipeline's config file."""
    path = tmp_path / "controls.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="^" + re.escape(str(path)) + message):
        load_control_map(path)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        pytest.param(
            '{id: E, check: c, record: {k: 1}, reason: r, approver: a, expires: "soon"}',
            r":2: exceptions\[0\]\.expires: expected a YYYY-MM-DD date, got 'soon'$",
            id="not-a-date",
        ),
        pytest.param(
            '{id: E, check: c, record: {k: 1}, reason: r, approver: a, expires: "2026-02-30"}',
            r":2: exceptions\[0\]\.expires: expected a YYYY-MM-DD date, got '2026-02-30'$",
            id="quoted-impossible-date",
        ),
        pytest.param(
            "{id: E, check: c, record: {k: 1}, reason: r, approver: a, expires: 2026-02-30}",
            r": invalid YAML at line 2, column 72: '2026-02-30': day is out of range for month$",
            id="yaml-impossible-date",
        ),
        pytest.param(
            "{id: E, check: [c], record: {k: 1}, reason: r, approver: a, expires: 2026-02-28}",
            r":2: exceptions\[0\]\.check: expected str, got array$",
            id="wrong-type",
        ),
        pytest.param(
            "{id: E, check: c, record: {}, reason: r, approver: a, expires: 2026-02-28}",
            r":2: exceptions\[0\]\.record: expected object of length >= 1, got \{\}$",
            id="empty-record",
        ),
    ],
)
def test_bad_exceptions_register_is_one_located_line(tmp_path, entry, message):
    path = tmp_path / "exceptions.yaml"
    path.write_text(f"exceptions:\n  - {entry}\n")
    with pytest.raises(ConfigError, match="^" + re.escape(str(path)) + message):
        load_exceptions(path)


def test_every_problem_of_the_register_is_reported_on_its_own_line(tmp_path):
    path = tmp_path / "exceptions.yaml"
    entry = "{id: E, check: c, record: {k: 1}, reason: r, approver: a, expires: 2026-02-28}"
    path.write_text(f"exceptions:\n  - {{id: E, check: c}}\n  - {entry}\n  - {entry}\n")
    with pytest.raises(ConfigError) as raised:
        load_exceptions(path)
    assert str(raised.value).splitlines() == [
        f"{path}: 4 problems",
        *(
            f"{path}:2: exceptions[0]: missing required key '{key}'"
            for key in ("record", "reason", "approver", "expires")
        ),
    ]
    path.write_text(f"exceptions:\n  - {entry}\n  - {entry}\n")
    with pytest.raises(
        ConfigError, match="^" + re.escape(f"{path}:3: exceptions[1].id: id 'E' is also used by exceptions[0]")
    ):
        load_exceptions(path)


def test_unmapped_check_is_a_config_error(tmp_path):
    path = tmp_path / "controls.yaml"
    path.write_text("quality: [CC2.1]\n")
    with pytest.raises(ConfigError, match=r"control expectation 'x\.y' has no mapping under 'checks'"):
        load_control_map(path).for_check("x.y")


def test_calendar_marks_gaps_and_starts_at_a_sources_first_night(tmp_path):
    from conftest import commit_night
    from soc2_evidence.archive.stores import open_store

    store = open_store((tmp_path / "store").as_uri())
    commit_night(store, tmp_path / "staging", "2026-11-21", {"a": "archived"})
    commit_night(store, tmp_path / "staging", "2026-11-23", {"a": "archived", "b": "extraction_failed"})
    commit_night(store, tmp_path / "staging", "2026-11-24", {"a": "archived", "b": "archived"}, failed_items=("b",))

    records = evidence_calendar(store, "config", "evidence_config_snapshot", ["a", "b"], date(2026, 11, 25), days=5)

    table = {(r["night"], r["source"]): r["status"] for r in records}
    assert table == {
        ("2026-11-21", "a"): "passed",
        ("2026-11-22", "a"): "missing",
        ("2026-11-23", "a"): "passed",
        ("2026-11-24", "a"): "passed",
        ("2026-11-23", "b"): "failed",
        ("2026-11-24", "b"): "failed",
    }


def test_validate_run_stages_the_proof_and_data_docs_open_from_a_copy(tmp_path, run_context):
    """The validation bundle, archived to a store and copied elsewhere, opens with relative links only."""
    import shutil
    from html.parser import HTMLParser
    from urllib.parse import urlparse

    from conftest import make_repo, write_pipeline_config
    from soc2_evidence.archive.run import SourceOutcome, archive_run
    from soc2_evidence.archive.stores import open_store
    from soc2_evidence.collectors import collector_for, load_config
    from soc2_evidence.core.evidence import RunContext
    from soc2_evidence.core.staging import Bundle
    from soc2_evidence.orchestration.pipeline import extract_source
    from soc2_evidence.validation.run import ValidationSettings, summary_of, validate_run

    root = Path(__file__).resolve().parents[1] / "include" / "config"
    repo = make_repo(tmp_path / "repo", {"app.yaml": "password: hunter2\n", "ok.yaml": "mfa: true\n"})
    config = load_config(
        write_pipeline_config(
            tmp_path, [{"name": "repo", "kind": "config_repo", "family": "config", "repo": str(repo)}]
        )
    )
    run = RunContext(run_context.dag_id, "manual__now", run_context.logical_date)
    clock = lambda: run.logical_date + timedelta(hours=1)  # noqa: E731 - collected an hour after the night
    staged = Bundle.load(extract_source(config, "repo", run, now=clock)["bundle"])
    store = open_store(config.store_url)
    settings = ValidationSettings(
        control_map=load_control_map(root / "controls.yaml"),
        register=[
            AcceptedException(
                "EXC-1", "config_repo.files.nothing_to_redact", {"path": "app.yaml"}, "test", "a", date(2000, 1, 1)
            )
        ],
        freshness_hours=48,
        calendar_days=7,
        today=run.night,
    )

    validation = validate_run(
        [staged],
        run,
        family="config",
        sources=["repo"],
        store=store,
        settings=settings,
        staging_root=config.staging_dir,
        checks_of=collector_for,
        now=clock,
    )

    summary = summary_of(validation)
    assert summary["status"] == "passed"
    assert summary["findings"] == {"open": 1, "accepted": 0}  # the exception expired in 2000
    assert summary["exceptions"] == {"applied": [], "expired": ["EXC-1"]}
    names = {staged_item.item.name for staged_item in validation.items}
    assert {"calendar.jsonl", "findings.jsonl", "exceptions.json", "results.json", "summary.json"} <= names
    assert "data-docs/index.html" in names

    archived = archive_run(
        store,
        family="config",
        run=run,
        bundles=[staged, validation],
        sources=[SourceOutcome("repo", "config_repo", "archived")],
        retention_days=400,
        validation=summary,
        allow_mutable_store=True,  # a file store, so the copy below is a plain directory copy
        now=clock,
    )
    copy = tmp_path / "downloaded-copy"
    shutil.copytree(tmp_path / "store", copy)
    docs = copy / archived.manifest_key.rsplit("/", 1)[0] / "validation" / "data-docs"

    class Links(HTMLParser):
        def __init__(self):
            super().__init__()
            self.links = []

        def handle_starttag(self, tag, attrs):
            self.links += [value for name, value in attrs if name in ("href", "src") and value]

    pages = list(docs.rglob("*.html"))
    assert len(pages) >= 3  # index, suites, validation results
    # Built once per run, the site still has a result page for every suite that was validated.
    results = [page for page in pages if page.relative_to(docs).parts[0] == "validations"]
    assert {page.relative_to(docs).parts[1] for page in results} >= {"repo-config_repo-files-quality"}
    for page in pages:
        parser = Links()
        parser.feed(page.read_text())
        for link in parser.links:
            parsed = urlparse(link)
            if parsed.scheme or link.startswith("#"):
                continue  # external assets (CDN styles) and in-page anchors
            assert not link.startswith("/"), f"{page}: absolute link {link}"
            target = (page.parent / parsed.path).resolve()
            assert target.is_file(), f"{page.relative_to(docs)} links to missing {link}"
    index = (docs / "index.html").read_text()
    assert "repo-config_repo-files-quality" in index
