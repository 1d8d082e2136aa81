"""The SOC 2 control mapping (one YAML file) and the exceptions register (another).

Every dataset and every control expectation maps to Trust Services Criteria, so manifests can
list the criteria their evidence supports and auditors can find evidence by control.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import msgspec

from soc2_evidence.core import config
from soc2_evidence.core.errors import ConfigError

CRITERION = re.compile(r"^(CC[1-9]\.[1-9]|A1\.[1-3]|C1\.[12]|PI1\.[1-5]|P[1-8]\.[1-9])$")


@dataclass(frozen=True)
class ControlMap:
    path: Path
    quality: tuple[str, ...]
    datasets: dict[str, tuple[str, ...]]
    checks: dict[str, tuple[str, ...]]

    def for_dataset(self, dataset: str) -> tuple[str, ...]:
        if dataset not in self.datasets:
            raise ConfigError(f"{self.path}: dataset {dataset!r} has no control mapping under 'datasets'")
        return self.datasets[dataset]

    def for_check(self, check: str) -> tuple[str, ...]:
        if check not in self.checks:
            raise ConfigError(f"{self.path}: control expectation {check!r} has no mapping under 'checks'")
        return self.checks[check]


Criteria = Annotated[list[str], msgspec.Meta(min_length=1, description="Trust Services Criteria ids, e.g. CC6.1")]


class ControlsFile(config.Section):
    """``controls.yaml``: the criteria of data-quality checks, of each dataset, and of each control expectation."""

    quality: Criteria
    datasets: dict[str, Criteria] = msgspec.field(default_factory=dict)
    checks: dict[str, Criteria] = msgspec.field(default_factory=dict)

    def problems(self) -> Iterator[config.Problem]:
        lists = [(("quality",), self.quality)]
        lists += [(("datasets", name), criteria) for name, criteria in self.datasets.items()]
        lists += [(("checks", name), criteria) for name, criteria in self.checks.items()]
        for where, criteria in lists:
            for index, item in enumerate(criteria):
                if not CRITERION.match(item):
                    problem = f"{item!r} is not a Trust Services Criteria id (e.g. CC6.1, A1.2)"
                    yield config.Problem((*where, index), problem)


def load_control_map(path: Path) -> ControlMap:
    file = config.load_typed_file(path, ControlsFile)
    return ControlMap(
        path=path,
        quality=tuple(file.quality),
        datasets={name: tuple(criteria) for name, criteria in file.datasets.items()},
        checks={name: tuple(criteria) for name, criteria in file.checks.items()},
    )


@dataclass(frozen=True)
class AcceptedException:
    """A finding that management accepted: which record, under which check, why, by whom, until when."""

    id: str
    check: str
    record: dict[str, Any]
    reason: str
    approver: str
    expires: date
    source: str | None = None

    def matches(self, finding: dict[str, Any]) -> bool:
        return (
            finding["check"] == self.check
            and (self.source is None or finding["source"] == self.source)
            and finding["record_key"] == self.record
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "check": self.check,
            "source": self.source,
            "record": self.record,
            "reason": self.reason,
            "approver": self.approver,
            "expires": self.expires.isoformat(),
        }


Text = Annotated[str, msgspec.Meta(min_length=1)]


class ExceptionEntry(config.Section):
    """One accepted exception as written in ``exceptions.yaml``; ``expires`` is a YYYY-MM-DD date."""

    id: Text
    check: Text
    record: Annotated[dict[str, Any], msgspec.Meta(min_length=1, description="The finding's key columns")]
    reason: Text
    approver: Text
    expires: date
    source: Text | None = None


class ExceptionsFile(config.Section):
    exceptions: list[ExceptionEntry] = msgspec.field(default_factory=list)

    def problems(self) -> Iterator[config.Problem]:
        first: dict[str, int] = {}
        for index, entry in enumerate(self.exceptions):
            if entry.id in first:
                yield config.Problem(
                    ("exceptions", index, "id"), f"id {entry.id!r} is also used by exceptions[{first[entry.id]}]"
                )
            first.setdefault(entry.id, index)


def load_exceptions(path: Path) -> list[AcceptedException]:
    file = config.load_typed_file(path, ExceptionsFile)
    return [
        AcceptedException(
            id=entry.id,
            check=entry.check,
            record=entry.record,
            reason=entry.reason,
            approver=entry.approver,
            expires=entry.expires,
            source=entry.source,
        )
        for entry in file.exceptions
    ]


def apply_exceptions(
    findings: list[dict[str, Any]], register: list[AcceptedException], today: date
) -> list[dict[str, Any]]:
    """Mark findings covered by an unexpired exception ``accepted``; an expired one no longer suppresses."""
    for finding in findings:
        finding["status"] = "open"
        finding["exception"] = None
        for exception in register:
            if exception.matches(finding):
                state = "active" if today <= exception.expires else "expired"
                finding["exception"] = {**exception.to_dict(), "state": state}
                if state == "active":
                    finding["status"] = "accepted"
                    break
    return findings
