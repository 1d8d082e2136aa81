"""The SOC 2 control mapping (one YAML file) and the exceptions register (another).

Every dataset and every control expectation maps to Trust Services Criteria, so manifests can
list the criteria their evidence supports and auditors can find evidence by control.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from soc2_evidence.core.config import read_yaml
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


def load_control_map(path: Path) -> ControlMap:
    raw = _read(path)
    quality = _criteria(path, "quality", raw.get("quality"))
    sections = {}
    for section in ("datasets", "checks"):
        entries = raw.get(section) or {}
        if not isinstance(entries, dict):
            raise ConfigError(f"{path}: '{section}' must be a mapping of name to criteria")
        sections[section] = {str(name): _criteria(path, f"{section}.{name}", value) for name, value in entries.items()}
    return ControlMap(path=path, quality=quality, datasets=sections["datasets"], checks=sections["checks"])


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


def load_exceptions(path: Path) -> list[AcceptedException]:
    raw = _read(path)
    entries = raw.get("exceptions") or []
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: 'exceptions' must be a list")
    register = []
    for index, entry in enumerate(entries):
        where = f"{path}: exceptions[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a mapping")
        missing = [name for name in ("id", "check", "record", "reason", "approver", "expires") if not entry.get(name)]
        if missing:
            raise ConfigError(f"{where} is missing {', '.join(missing)}")
        if not isinstance(entry["record"], dict):
            raise ConfigError(f"{where}: 'record' must map key columns to values")
        expires = entry["expires"]
        if not isinstance(expires, date):
            try:
                expires = date.fromisoformat(str(expires))
            except ValueError as error:
                raise ConfigError(f"{where}: expires {entry['expires']!r} is not a YYYY-MM-DD date") from error
        register.append(
            AcceptedException(
                id=str(entry["id"]),
                check=str(entry["check"]),
                record=entry["record"],
                reason=str(entry["reason"]),
                approver=str(entry["approver"]),
                expires=expires,
                source=entry.get("source"),
            )
        )
    ids = [exception.id for exception in register]
    repeated = sorted({value for value in ids if ids.count(value) > 1})
    if repeated:
        raise ConfigError(f"{path}: exception ids must be unique; repeated: {', '.join(repeated)}")
    return register


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


def _read(path: Path) -> dict[str, Any]:
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


def _criteria(path: Path, where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{path}: {where} must be a non-empty list of criteria such as CC6.1")
    bad = [item for item in value if not isinstance(item, str) or not CRITERION.match(item)]
    if bad:
        raise ConfigError(f"{path}: {where}: {bad} are not Trust Services Criteria ids (e.g. CC6.1, A1.2)")
    return tuple(value)
