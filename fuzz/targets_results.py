"""Other backup tools' results (``backup_results``): JUnit XML, restore-result JSON and pgBackRest info."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from hypothesis import strategies as st

from fuzz.harness import FuzzTarget
from fuzz.payloads import EDGE_VALUES, NOW, collect_files, damaged, json_file

OPTIONS = {"rto_target_minutes": 30, "rpo_target_hours": 24, "expect_databases": ["orders", "crm", "main"]}
STOP = int(NOW.timestamp()) - 36_000

RESTORE_JSON = {
    "results": [
        {
            "database": "crm",
            "tool": "restore.py",
            "backup_key": "gs://backups/crm/crm.dump",
            "backup_at": "2026-11-01T03:00:00+00:00",
            "restore_started_at": "2026-11-02T02:00:00+00:00",
            "restore_finished_at": "2026-11-02T02:02:00+00:00",
            "phases": {"restore": 100, "verify": 20},
            "checks": [{"name": "smoke", "status": "passed", "detail": "42 customers"}],
            "outcome": "passed",
            "rto_target_seconds": 3600,
        },
        {"database": "orders", "restore_started_at": 1793584800, "checks": [], "error": "pg_restore exited 1"},
    ]
}
PGBACKREST = [
    {
        "name": "main",
        "status": {"code": 0, "message": "ok", "lock": {"backup": {"held": False}}},
        "cipher": "none",
        "db": [{"id": 1, "repo-key": 1, "system-id": 7301234567890123456, "version": "15"}],
        "backup": [
            {
                "label": "20260101-010000F",
                "type": "full",
                "error": False,
                "timestamp": {"start": STOP - 86_400 - 600, "stop": STOP - 86_400},
            },
            {
                "label": "20260101-010000F_20260102-010000I",
                "type": "incr",
                "error": False,
                "timestamp": {"start": STOP - 300, "stop": STOP},
            },
        ],
    }
]

# What an attacker puts in XML: entity expansion, an external entity, XInclude. Each must be refused or inert.
XML_ATTACKS = (
    '<?xml version="1.0"?><!DOCTYPE t [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">'
    '<!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;"><!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">]>'
    '<testsuite name="&f;" timestamp="2026-11-02T01:00:00"><testcase name="x"/></testsuite>',
    '<?xml version="1.0"?><!DOCTYPE t [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    '<testsuite name="&x;" timestamp="2026-11-02T01:00:00"><testcase name="x"/></testsuite>',
    '<testsuite xmlns:xi="http://www.w3.org/2001/XInclude" name="xi" timestamp="2026-11-02T01:00:00">'
    '<properties><property name="database" value="orders"/></properties>'
    '<xi:include href="file:///etc/passwd" parse="text"/><testcase name="x"/></testsuite>',
)
_values = st.one_of(
    st.sampled_from([str(value) for value in EDGE_VALUES if not isinstance(value, (list, dict))]),
    st.text(max_size=16).filter(lambda text: "\x00" not in text),
)
_attribute = st.one_of(st.none(), _values)


def _maybe(name: str, value: str | None) -> str:
    return "" if value is None else f" {name}={quoteattr(value)}"


@st.composite
def _junit(draw: st.DrawFn) -> bytes:
    """A restore report shaped as the operator scripts write it, with attribute values drawn hostile."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.sampled_from(XML_ATTACKS)).encode("utf-8")
    suites = []
    for index in range(draw(st.integers(0, 3))):
        timestamp = draw(st.one_of(st.just("2026-11-02T01:00:00"), _attribute))
        duration = draw(st.one_of(st.just("600.5"), _attribute))
        names = ["database", "tool", "backup_key", "backup_at", "phase.restore", "rto_target_seconds"]
        properties = "".join(
            f"<property{_maybe('name', draw(st.one_of(st.just(name), _attribute)))}"
            f"{_maybe('value', draw(st.one_of(st.just('orders'), _attribute)))}/>"
            for name in draw(st.lists(st.sampled_from(names), max_size=6))
        )
        cases = "".join(
            f"<testcase{_maybe('name', draw(_attribute))}>"
            + draw(st.sampled_from(["", "<failure/>", '<error message="x"/>', "<skipped>\n</skipped>"]))
            + "</testcase>"
            for _ in range(draw(st.integers(0, 3)))
        )
        suites.append(
            f"<testsuite{_maybe('name', f'restore {index}')}{_maybe('timestamp', timestamp)}"
            f"{_maybe('time', duration)}><properties>{properties}</properties>{cases}</testsuite>"
        )
    root = draw(st.sampled_from(["testsuites", "testsuites", "testsuite", "report"]))
    text = f"<{root}>{''.join(suites)}</{root}>" if root != "testsuite" else (suites or ["<testsuite/>"])[0]
    return draw(damaged(text.encode("utf-8")))


def _run(name: str):
    def run(content: bytes) -> None:
        collect_files("backup_results", OPTIONS, {name: content}, family="backup")

    return run


TARGETS = [
    FuzzTarget("JUnit", _junit(), _run("restore-report.xml")),
    FuzzTarget("restore JSON", json_file(RESTORE_JSON), _run("restore-results.json")),
    FuzzTarget("pgBackRest", json_file(PGBACKREST), _run("pgbackrest-info.json")),
]
