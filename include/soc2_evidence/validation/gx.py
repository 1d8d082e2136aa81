"""Great Expectations 1.x, as code: one suite pair, validation definitions and checkpoint per dataset.

Imported only inside tasks: Great Expectations takes seconds to import, and its INFO logging
and progress bars are kept out of task logs here.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soc2_evidence.core.datasets import COLLECTED_AT, TYPE_NAMES, Dataset

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
for _name in ("great_expectations", "great_expectations.core", "great_expectations.data_context"):
    logging.getLogger(_name).setLevel(logging.WARNING)

import great_expectations as gx  # noqa: E402 - after the environment and logging are set
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402

expectations = gx.expectations


@dataclass
class Target:
    """One dataset of one source, ready to validate."""

    source: str
    dataset: Dataset
    frame: Any
    parameters: dict[str, Any]
    controls: list[Any] = field(default_factory=list)


@dataclass
class CheckResult:
    check: str
    kind: str  # "quality" or "control"
    success: bool
    detail: str
    unexpected_rows: list[int]
    description: str = ""
    columns: list[str] = field(default_factory=list)
    expected: str = ""
    remediation: str = ""


def control(
    expectation: type, dataset: Dataset, check: str, description: str, *, remediation: str = "", **kwargs: Any
) -> Any:
    """A control expectation of ``dataset``: each row it fails is a finding of ``<dataset>.<check>``,
    told to the auditor by ``description`` (the check name is what controls.yaml maps to criteria),
    with ``remediation``: the one line an owner follows to close it."""
    meta = {"check": f"{dataset.name}.{check}", "description": description, "remediation": remediation}
    return expectation(meta=meta, **kwargs)


def existence_expectations(dataset: Dataset) -> list[Any]:
    """The dataset's existence expectation, if it declares one: too few records is a finding of the table.

    Per-record control checks pass an empty table by construction, so "at least one X exists" is
    judged here, as a control (a finding), not as data quality (the evidence itself is sound).
    """
    existence = dataset.existence
    if existence is None or existence.check is None:
        return []
    return [
        control(
            expectations.ExpectTableRowCountToBeBetween,
            dataset,
            existence.check,
            existence.reason,
            remediation=(
                f"Create what is missing ({dataset.description}), or point the source at the account, project, "
                "repository or path that holds it"
            ),
            min_value=existence.minimum,
        )
    ]


def quality_expectations(dataset: Dataset) -> list[Any]:
    """The data-quality suite every dataset gets: schema, keys, value sets, freshness, completeness."""
    name = dataset.name
    suite = [
        expectations.ExpectTableColumnsToMatchSet(
            column_set=[*dataset.columns, COLLECTED_AT], exact_match=True, meta={"check": f"{name}.schema.columns"}
        )
    ]
    for column, kind in dataset.columns.items():
        suite.append(
            expectations.ExpectColumnValuesToBeInTypeList(
                column=column, type_list=list(TYPE_NAMES[kind]), meta={"check": f"{name}.schema.type.{column}"}
            )
        )
    for column in dict.fromkeys((*dataset.key, *dataset.required)):
        suite.append(
            expectations.ExpectColumnValuesToNotBeNull(column=column, meta={"check": f"{name}.not_null.{column}"})
        )
    if len(dataset.key) == 1:
        suite.append(
            expectations.ExpectColumnValuesToBeUnique(column=dataset.key[0], meta={"check": f"{name}.key.unique"})
        )
    else:
        suite.append(
            expectations.ExpectCompoundColumnsToBeUnique(
                column_list=list(dataset.key), meta={"check": f"{name}.key.unique"}
            )
        )
    for column, values in dataset.value_sets.items():
        suite.append(
            expectations.ExpectColumnValuesToBeInSet(
                column=column, value_set=list(values), meta={"check": f"{name}.values.{column}"}
            )
        )
    suite.append(
        expectations.ExpectColumnValuesToBeBetween(
            column=COLLECTED_AT,
            min_value={"$PARAMETER": "fresh_after"},
            max_value={"$PARAMETER": "fresh_before"},
            meta={"check": f"{name}.freshness"},
        )
    )
    if dataset.total:
        suite.append(
            expectations.ExpectTableRowCountToEqual(
                value={"$PARAMETER": "reported_total"}, meta={"check": f"{name}.completeness"}
            )
        )
    return suite


class Validator:
    """A file-backed GX project in a work directory, whose Data Docs site is archived with the run."""

    def __init__(self, project_dir: Path) -> None:
        self.context = gx.get_context(mode="file", project_root_dir=str(project_dir))
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        site = self.context.variables.data_docs_sites["local_site"]
        site.setdefault("site_index_builder", {})["show_how_to_buttons"] = False
        self.context.variables.save()
        self.datasource = self.context.data_sources.add_or_update_pandas("evidence")
        self.docs_dir = Path(project_dir) / "gx" / "uncommitted" / "data_docs" / "local_site"

    def finish_docs(self) -> Path:
        """The run's Data Docs site, built once from every stored result, with GX's miscounted
        relative links repaired so a downloaded copy opens whole.

        Built here rather than by an UpdateDataDocsAction on each checkpoint, which would render
        the whole site again for every dataset. GX writes ``../`` one level short for the favicon
        of validation pages; a relative link that does not resolve but does with one more ``../``
        is rewritten. Nothing else changes.
        """
        self.context.build_data_docs()
        for page in self.docs_dir.rglob("*.html"):
            text = page.read_text(encoding="utf-8")
            repaired = _RELATIVE_LINK.sub(functools.partial(_repair, page), text)
            if repaired != text:
                page.write_text(repaired, encoding="utf-8")
        return self.docs_dir

    def validate(self, target: Target) -> tuple[list[CheckResult], dict[str, Any]]:
        """Run the target's quality and control suites in one checkpoint; return check results and raw JSON."""
        # No dots: Data Docs turns dots in suite names into folders and then miscounts its relative links.
        base = f"{target.source}.{target.dataset.name}".replace(".", "-")
        asset = self.datasource.add_dataframe_asset(name=base)
        batch = asset.add_batch_definition_whole_dataframe("whole")
        definitions = []
        for kind, suite_expectations in (
            ("quality", quality_expectations(target.dataset)),
            ("controls", target.controls),
        ):
            if not suite_expectations:
                continue
            suite = self.context.suites.add(gx.ExpectationSuite(name=f"{base}-{kind}", expectations=suite_expectations))
            definitions.append(
                self.context.validation_definitions.add(
                    gx.ValidationDefinition(name=f"{base}-{kind}", data=batch, suite=suite)
                )
            )
        checkpoint = self.context.checkpoints.add(
            gx.Checkpoint(
                name=base,
                validation_definitions=definitions,
                result_format={"result_format": "COMPLETE", "partial_unexpected_count": 20},
            )
        )
        result = checkpoint.run(batch_parameters={"dataframe": target.frame}, expectation_parameters=target.parameters)
        checks = []
        for run_result in result.run_results.values():
            kind = "quality" if run_result.suite_name.endswith("-quality") else "control"
            for expectation_result in run_result.results:
                config = expectation_result.expectation_config
                checks.append(
                    CheckResult(
                        check=config.meta["check"],
                        kind=kind,
                        success=bool(expectation_result.success),
                        detail=_detail(expectation_result),
                        unexpected_rows=list(expectation_result.result.get("unexpected_index_list") or []),
                        description=config.meta.get("description", ""),
                        columns=judged_columns(config.kwargs),
                        expected=expected_value(config.type, config.kwargs),
                        remediation=config.meta.get("remediation", ""),
                    )
                )
        return checks, result.describe_dict()


def judged_columns(kwargs: dict[str, Any]) -> list[str]:
    """The columns an expectation judges (not those of its row condition): the setting in effect of a finding."""
    names = [kwargs.get(name) for name in ("column", "column_A", "column_B")] + list(kwargs.get("column_list") or [])
    return [name for name in names if name]


def expected_value(kind: str, kwargs: dict[str, Any]) -> str:
    """What an expectation of type ``kind`` asks of a value, in words an auditor reads beside the value found."""
    if kwargs.get("value_pairs_set") is not None:
        pairs = ", ".join(f"({a}, {b})" for a, b in kwargs["value_pairs_set"])
        return f"({kwargs['column_A']}, {kwargs['column_B']}) one of {pairs}"
    if kwargs.get("column_A") and kwargs.get("column_B"):
        return f"{kwargs['column_B']} {'<=' if kwargs.get('or_equal') else '<'} {kwargs['column_A']}"
    if kwargs.get("value_set") is not None:
        values = list(kwargs["value_set"])
        if "not_be_in_set" in kind:
            return f"none of {values!r}"
        return f"= {values[0]!r}" if len(values) == 1 else f"one of {values!r}"
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    subject = "rows" if "table_row_count" in kind else ""
    if low is not None and high is not None:
        return f"between {low} and {high}"
    if low is not None:
        return f">= {low} {subject}".rstrip()
    if high is not None:
        return f"<= {high} {subject}".rstrip()
    return "not null" if kwargs.get("column") else ""


_RELATIVE_LINK = re.compile(r'(?P<attr>(?:href|src)=")(?P<link>\.\./[^"#?]*)"')


def _repair(page: Path, match: re.Match[str]) -> str:
    link = match["link"]
    if not (page.parent / link).exists() and (page.parent / ("../" + link)).exists():
        link = "../" + link
    return f'{match["attr"]}{link}"'


def _detail(expectation_result: Any) -> str:
    if expectation_result.success:
        return ""
    info = expectation_result.exception_info or {}
    if info.get("raised_exception"):
        return f"could not evaluate: {info.get('exception_message')}"
    result = expectation_result.result
    config = expectation_result.expectation_config
    if "observed_value" in result:
        return f"observed {result['observed_value']!r} ({config.type})"
    count = result.get("unexpected_count")
    sample = result.get("partial_unexpected_list") or []
    return f"{count} unexpected value(s), e.g. {sample[:5]!r} ({config.type})"
