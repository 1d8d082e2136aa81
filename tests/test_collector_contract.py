"""One contract over every collector kind: what the pipeline and validation use from a collector module,
and that include/config/controls.yaml maps exactly the datasets and control checks the kinds declare.

Adding a collector is one module in include/soc2_evidence/collectors/, one entry in controls.yaml
(its datasets and checks) and one source in the YAML file; this test catches what is missed. A
missing check mapping would otherwise crash validation only on the first night that check fails
(``ControlMap.for_check`` is called for findings alone).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import re
from functools import cache
from types import ModuleType

import pytest

from conftest import ROOT
from soc2_evidence import collectors
from soc2_evidence.core.datasets import Dataset
from soc2_evidence.core.evidence import FAMILIES
from soc2_evidence.validation import calendar
from soc2_evidence.validation.controls import ControlMap, load_control_map

CONTROLS = ROOT / "include" / "config" / "controls.yaml"
WHERE = "include/soc2_evidence/collectors"
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")


@cache
def control_map() -> ControlMap:
    return load_control_map(CONTROLS)


def module_of(kind: str) -> ModuleType:
    name = f"soc2_evidence.collectors.{kind}"
    assert importlib.util.find_spec(name) is not None, (
        f"collector kind {kind!r} is registered in KINDS ({WHERE}/__init__.py) but {WHERE}/{kind}.py does not exist: "
        f"add the module or remove {kind!r} from KINDS"
    )
    return importlib.import_module(name)


def checks_of(owner: str, datasets, control_expectations) -> dict[str, list[str]]:
    """Each dataset's control check names, existence check included, as validation builds them
    (``meta["check"]``, from gx.control)."""
    from soc2_evidence.validation.gx import existence_expectations

    checks = {}
    for dataset in datasets:
        names = []
        for expectation in [*existence_expectations(dataset), *control_expectations(dataset)]:
            check = (expectation.meta or {}).get("check")
            assert check, (
                f"{owner}: a control expectation of {dataset.name} has no meta['check']: build it with gx.control"
            )
            assert check.startswith(dataset.name + "."), (
                f"{owner}: control check {check!r} of {dataset.name} is not named '{dataset.name}.<check>'"
            )
            names.append(check)
        checks[dataset.name] = names
    return checks


@cache
def declared() -> dict[str, dict[str, list[str]]]:
    """Per owner (every kind, and validation's own calendar): dataset name -> its control check names."""
    owners = {
        kind: checks_of(f"collector {kind}", module_of(kind).DATASETS, module_of(kind).control_expectations)
        for kind in collectors.KINDS
    }
    owners["validation (calendar)"] = checks_of(
        "validation (calendar)", [calendar.CALENDAR], calendar.control_expectations
    )
    return owners


@pytest.mark.parametrize("kind", collectors.KINDS)
def test_the_module_defines_what_the_pipeline_uses(kind):
    module = module_of(kind)
    path = f"{WHERE}/{kind}.py"
    missing = [
        name
        for name in ("KIND", "FAMILY", "VERSION", "DATASETS", "collect", "control_expectations")
        if not hasattr(module, name)
    ]
    assert not missing, f"collector {kind}: {path} does not define {', '.join(missing)}"
    assert kind == module.KIND, f"collector {kind}: {path} has KIND = {module.KIND!r}; it must be {kind!r}, its name"
    assert module.FAMILY in FAMILIES, (
        f"collector {kind}: FAMILY = {module.FAMILY!r} in {path} is none of {', '.join(FAMILIES)} (core/evidence.py)"
    )
    assert isinstance(module.VERSION, str) and SEMVER.match(module.VERSION), (
        f"collector {kind}: VERSION = {module.VERSION!r} in {path} is not a semantic version such as '1.0.0'"
    )
    assert callable(module.collect), f"collector {kind}: collect in {path} is not callable"
    try:
        inspect.signature(module.collect).bind("source", "writer", "context")
    except TypeError as error:
        pytest.fail(f"collector {kind}: collect in {path} must take (source, writer, context): {error}")
    assert callable(module.control_expectations), f"collector {kind}: control_expectations in {path} is not callable"


@pytest.mark.parametrize("kind", collectors.KINDS)
def test_datasets_are_validatable_and_named_for_their_kind(kind):
    """validation/run.py reads ``DATASETS`` (each item must be staged) and ``control_expectations(dataset)``."""
    module = module_of(kind)
    path = f"{WHERE}/{kind}.py"
    assert isinstance(module.DATASETS, tuple) and module.DATASETS, (
        f"collector {kind}: DATASETS in {path} must be a non-empty tuple of core.datasets.Dataset"
    )
    for dataset in module.DATASETS:
        assert isinstance(dataset, Dataset), f"collector {kind}: {dataset!r} in DATASETS ({path}) is not a Dataset"
        assert dataset.name.startswith(kind + "."), (
            f"collector {kind}: dataset {dataset.name!r} must be named '{kind}.<dataset>': "
            "check names and their control mappings are built from it"
        )
    for attribute in ("name", "item"):
        values = [getattr(dataset, attribute) for dataset in module.DATASETS]
        repeated = sorted({value for value in values if values.count(value) > 1})
        assert not repeated, f"collector {kind}: two datasets in {path} share the {attribute} {', '.join(repeated)}"


@pytest.mark.parametrize("kind", [*collectors.KINDS, "calendar"])
def test_every_dataset_declares_its_position_on_emptiness(kind):
    """Per-record checks pass an empty dataset, so each dataset says whether empty is a finding or why it is fine."""
    datasets = [calendar.CALENDAR] if kind == "calendar" else module_of(kind).DATASETS
    for dataset in datasets:
        existence = dataset.existence
        assert existence is not None, (
            f"{kind}: dataset {dataset.name} declares no position on emptiness: add existence=must_exist(check, "
            "reason) (an empty dataset is a finding) or existence=may_be_empty(reason) (why empty is fine) to its "
            "Dataset (core/datasets.py)"
        )
        assert existence.reason.strip(), f"{kind}: dataset {dataset.name}: existence has no reason"
        assert existence.minimum >= 1, f"{kind}: dataset {dataset.name}: existence minimum must be at least 1"


@pytest.mark.parametrize("owner", [*collectors.KINDS, "validation (calendar)"])
def test_every_dataset_and_check_is_mapped_to_criteria(owner):
    mapping = control_map()
    datasets = declared()[owner]
    unmapped = [name for name in datasets if name not in mapping.datasets]
    assert not unmapped, (
        f"{owner}: dataset(s) {', '.join(unmapped)} have no criteria; add under 'datasets:' in "
        f"include/config/controls.yaml, e.g. '  {unmapped[0]}: [CC6.1]'"
    )
    checks = [check for names in datasets.values() for check in names]
    unmapped = [check for check in checks if check not in mapping.checks]
    assert not unmapped, (
        f"{owner}: control check(s) {', '.join(unmapped)} have no criteria, so validation would fail with a "
        f"ConfigError the first night one finds something; add under 'checks:' in include/config/controls.yaml, "
        f"e.g. '  {unmapped[0]}: [CC6.1]'"
    )


def test_controls_yaml_maps_nothing_that_no_kind_declares():
    mapping = control_map()
    datasets = {name for owner in declared().values() for name in owner}
    checks = {check for owner in declared().values() for names in owner.values() for check in names}
    stale = sorted(set(mapping.datasets) - datasets)
    assert not stale, (
        f"include/config/controls.yaml maps dataset(s) {', '.join(stale)} under 'datasets:' that no collector's "
        "DATASETS declares: remove the mapping, or add the dataset to its collector"
    )
    stale = sorted(set(mapping.checks) - checks)
    assert not stale, (
        f"include/config/controls.yaml maps check(s) {', '.join(stale)} under 'checks:' that no collector's "
        "control_expectations builds: remove the mapping (and any exception naming it), or add the check"
    )


def test_every_collector_module_is_registered():
    modules = {
        module.name
        for module in pkgutil.iter_modules(collectors.__path__)
        if not module.ispkg and not module.name.startswith("_")
    }
    unregistered = sorted(modules - set(collectors.KINDS))
    assert not unregistered, (
        f"{', '.join(f'{WHERE}/{name}.py' for name in unregistered)} not registered: add "
        f"{', '.join(map(repr, unregistered))} to KINDS in {WHERE}/__init__.py (helpers belong in {WHERE}/support/)"
    )
    assert len(set(collectors.KINDS)) == len(collectors.KINDS), f"KINDS in {WHERE}/__init__.py lists a kind twice"


def test_every_shipped_exception_names_a_check_that_exists():
    """An exception for a check no kind builds would never match a finding: it is stale, not accepted risk."""
    from soc2_evidence.validation.controls import load_exceptions

    checks = {check for owner in declared().values() for names in owner.values() for check in names}
    path = ROOT / "include" / "config" / "exceptions.yaml"
    stale = [
        f"{exception.id} ({exception.check})" for exception in load_exceptions(path) if exception.check not in checks
    ]
    assert not stale, f"include/config/exceptions.yaml: exception(s) {', '.join(stale)} name no check any kind builds"
