"""Imports point down only, and only orchestration imports Airflow: read from the source with ``ast``.

Layers, lowest first: core < archive < validation < collectors < orchestration. ``cli`` and
``demo`` are edges above them all: the demo may import anything, and nothing in the package
imports the demo (only tests and benches do). Imports inside functions count like any other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "soc2_evidence"
PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "include" / PACKAGE
LAYERS = ("core", "archive", "validation", "collectors", "orchestration", "cli", "demo")
AIRFLOW_LAYER = "orchestration"


def module_name(path: Path, root: Path) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    """The layer of a module of the package; the package's own ``__init__`` (its version) is core."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "core"


def imported_names(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module an ``import`` or ``from ... import`` names, anywhere in the tree, with its line.

    ``from package import name`` yields ``package.name`` too, since ``name`` may be a module.
    """
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            names.append((node.lineno, base))
            names += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*"]
    return sorted(names)


def violations(root: Path) -> list[str]:
    """One message per forbidden import under ``root`` (a package directory), naming module, line and import."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        layer = layer_of(module)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        seen = set()
        for line, name in imported_names(tree, module, path.name == "__init__.py"):
            top = name.split(".")[0]
            if top == "airflow" and layer != AIRFLOW_LAYER:
                problem = f"{module}:{line}: imports {name}; only {root.name}.{AIRFLOW_LAYER} may import airflow"
            elif top == root.name and layer != "demo":
                target = layer_of(name)
                if LAYERS.index(target) <= LAYERS.index(layer):
                    continue
                problem = f"{module}:{line}: imports {name}; {layer} may not import {target}, a higher layer"
            else:
                continue
            key = (line, top, layer_of(name) if top == root.name else top)
            if key not in seen:  # ``from a.b import c`` names a.b and a.b.c: report the line once
                seen.add(key)
                problems.append(problem)
    return problems


def test_the_package_keeps_its_layers() -> None:
    problems = violations(PACKAGE_ROOT)
    assert not problems, "forbidden imports:\n" + "\n".join(problems)


def write_package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / PACKAGE
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param(
            {"archive/stores/__init__.py": "def f():\n    from airflow.sdk import BaseHook\n"},
            [
                "soc2_evidence.archive.stores:2: imports airflow.sdk; "
                "only soc2_evidence.orchestration may import airflow"
            ],
            id="airflow-inside-a-function",
        ),
        pytest.param(
            {"collectors/aws.py": "import airflow\n"},
            ["soc2_evidence.collectors.aws:1: imports airflow; only soc2_evidence.orchestration may import airflow"],
            id="plain-airflow-import",
        ),
        pytest.param(
            {"validation/run.py": "\n\nfrom soc2_evidence.collectors import collector_for\n"},
            [
                "soc2_evidence.validation.run:3: imports soc2_evidence.collectors; "
                "validation may not import collectors, a higher layer"
            ],
            id="validation-imports-collectors",
        ),
        pytest.param(
            {"core/config.py": "import soc2_evidence.archive.layout\n"},
            [
                "soc2_evidence.core.config:1: imports soc2_evidence.archive.layout; "
                "core may not import archive, a higher layer"
            ],
            id="core-imports-archive",
        ),
        pytest.param(
            {"orchestration/tasks.py": "from soc2_evidence import demo\n"},
            [
                "soc2_evidence.orchestration.tasks:1: imports soc2_evidence.demo; "
                "orchestration may not import demo, a higher layer"
            ],
            id="nothing-imports-the-demo",
        ),
        pytest.param(
            {"cli.py": "from soc2_evidence.demo.run import main\n"},
            ["soc2_evidence.cli:1: imports soc2_evidence.demo.run; cli may not import demo, a higher layer"],
            id="cli-imports-the-demo",
        ),
        pytest.param(
            {"archive/run.py": "from ..collectors import aws\n"},
            [
                "soc2_evidence.archive.run:1: imports soc2_evidence.collectors; "
                "archive may not import collectors, a higher layer"
            ],
            id="relative-import",
        ),
        pytest.param(
            {
                "demo/run.py": "import airflow\nfrom soc2_evidence.orchestration import tasks\n",
                "orchestration/tasks.py": "from airflow.sdk import task\nfrom soc2_evidence.core import errors\n",
                "collectors/jira.py": "from soc2_evidence.collectors.support import http\nimport soc2_evidence\n",
                "cli.py": "from soc2_evidence.archive.stores import open_store\n",
            },
            ["soc2_evidence.demo.run:1: imports airflow; only soc2_evidence.orchestration may import airflow"],
            id="allowed-imports",
        ),
    ],
)
def test_forbidden_imports_are_named(tmp_path: Path, files: dict[str, str], expected: list[str]) -> None:
    assert violations(write_package(tmp_path, files)) == expected
