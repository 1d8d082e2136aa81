"""The pipeline's YAML files: the config loader (``evidence.yaml``), ``controls.yaml`` and ``exceptions.yaml``.

Each case is one of the three shipped files, mutated as data (wrong types, NaN, huge numbers, keys
dropped) and then as text (a value replaced by a raw YAML snippet: an impossible date such as
``2026-02-30``, a tag, an alias bomb, a complex key), loaded by the real loader from a file.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from fuzz.harness import FuzzTarget
from fuzz.payloads import DEEP, SCRATCH, mutated
from soc2_evidence.collectors import load_config
from soc2_evidence.validation.controls import load_control_map, load_exceptions

CONFIG_DIR = Path(__file__).resolve().parents[1] / "include" / "config"

# Raw YAML a person (or a merge gone wrong) can put where a value belongs.
SNIPPETS = (
    "2026-02-30",
    "2026-13-01 00:00:00",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "2026-02-30T00:00:00Z",
    ".nan",
    ".inf",
    "-.inf",
    "0x1F",
    "0o17",
    "1_000",
    "9" * 400,
    "1e400",
    "~",
    "yes",
    "!!binary aGVsbG8=",
    "!!python/object/apply:os.system ['true']",
    "!!set {a, b}",
    "!!timestamp 2026-02-30",
    "!!int x",
    "&a [*a]",
    "*undefined",
    "{? [a, b]: c}",
    "[[[[[[[[[[]]]]]]]]]]",
    "[" * DEEP + "]" * DEEP,
    "[" * DEEP,
    "{a: 1, a: 2}",
    "'unterminated",
    "\t- tab",
    "|\n  block",
)


def _shipped(name: str) -> Any:
    """A shipped file as data, its relative paths made absolute so the fuzzed copy can live elsewhere."""
    document = yaml.safe_load((CONFIG_DIR / name).read_text(encoding="utf-8"))
    if name == "evidence.yaml":
        for key in ("controls_file", "exceptions_file"):
            document["validation"][key] = str(CONFIG_DIR / document["validation"][key])
        for source in document["sources"]:
            if isinstance(source.get("location"), str) and source["location"].startswith(".."):
                source["location"] = str((CONFIG_DIR / source["location"]).resolve())
    return document


@st.composite
def _yaml_file(draw: st.DrawFn, name: str) -> tuple[str, str]:
    document = draw(mutated(_shipped(name), max_changes=3))
    text = yaml.safe_dump(document, allow_unicode=True, sort_keys=False, width=1_000)
    lines = text.splitlines()
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(lines) - 1))
        head, colon, _rest = lines[at].partition(": ")
        snippet = draw(st.sampled_from(SNIPPETS))
        lines[at] = f"{head}: {snippet}" if colon else f"{lines[at]} {snippet}"
    return name, "\n".join(lines) + "\n"


LOADERS = {
    "evidence.yaml": load_config,
    "controls.yaml": load_control_map,
    "exceptions.yaml": load_exceptions,
}


def _run(case: tuple[str, str]) -> None:
    name, text = case
    with tempfile.TemporaryDirectory(prefix="soc2-fuzz-", dir=SCRATCH) as scratch:
        path = Path(scratch) / name
        path.write_text(text, encoding="utf-8")
        LOADERS[name](path)


TARGETS = [
    FuzzTarget(
        "YAML config",
        st.one_of(_yaml_file("evidence.yaml"), _yaml_file("controls.yaml"), _yaml_file("exceptions.yaml")),
        _run,
    )
]
