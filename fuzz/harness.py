"""Run fuzz targets and count what escapes them.

A target passes a case when the parser returns or raises one of our ``EvidenceError`` s (a
refusal that names the source and field). Anything else, including a ``RecursionError`` or an
``OverflowError``, is an unhandled exception; it is counted by crash site (the innermost frame in
our package), so a table shows how many distinct bugs there are, not how many cases hit one.
"""

from __future__ import annotations

import importlib
import pkgutil
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soc2_evidence.core.errors import EvidenceError

PACKAGE_ROOT = str(Path(__file__).resolve().parents[1] / "include" / "soc2_evidence")


@dataclass(frozen=True)
class FuzzTarget:
    """One parser: ``run`` feeds it one payload drawn from ``strategy``."""

    name: str
    strategy: st.SearchStrategy[Any]
    run: Callable[[Any], None]


@dataclass
class FuzzResult:
    name: str
    cases: int = 0
    unhandled: int = 0
    sites: Counter[str] = field(default_factory=Counter)
    example: str | None = None


def discover() -> list[FuzzTarget]:
    """Every target of every ``fuzz/targets_*.py`` module, in module order."""
    import fuzz

    targets: list[FuzzTarget] = []
    for module in sorted(pkgutil.iter_modules(fuzz.__path__), key=lambda info: info.name):
        if module.name.startswith("targets_"):
            targets += importlib.import_module(f"fuzz.{module.name}").TARGETS
    return targets


def run_target(target: FuzzTarget, cases: int, *, seed: int = 0) -> FuzzResult:
    """Feed ``cases`` payloads to the target (deterministically for a seed), counting unhandled exceptions."""
    result = FuzzResult(target.name)

    @settings(
        max_examples=cases,
        database=None,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(payload=target.strategy)
    def property_(payload: Any) -> None:
        result.cases += 1
        try:
            target.run(payload)
        except EvidenceError:
            pass
        except Exception as error:  # the point of fuzzing: count what escapes, do not stop at it
            result.unhandled += 1
            site = _crash_site(error)
            result.sites[site] += 1
            if result.example is None:
                result.example = f"{type(error).__name__} at {site}: {str(error)[:200]} (payload {payload!r:.300})"

    property_._hypothesis_internal_use_seed = seed  # type: ignore[attr-defined]
    property_()
    return result


def _crash_site(error: BaseException) -> str:
    """The innermost frame of the traceback that is in our package (else the innermost of all)."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [frame for frame in frames if frame.filename.startswith(PACKAGE_ROOT)]
    frame = (ours or frames or [None])[-1]
    if frame is None:
        return type(error).__name__
    return f"{type(error).__name__} {Path(frame.filename).name}:{frame.lineno}"
