"""Every collected column of the configuration collectors is judged or documented.

A column that is staged but read by no check is a setting an auditor may assume we judged (S3
versioning was one). So for each dataset this test lists its columns: each is read by a control
check (its column, column pair or row condition), is part of the key (which names the resource in
every finding), or is marked context-only in ``Dataset.context`` with the reason it is collected.
A context-only column that a check reads is a stale marking and is refused too.
"""

from __future__ import annotations

from typing import Any

import pytest

from soc2_evidence.collectors import aws, gcs_config, postgres_config

KINDS = {"aws": aws, "gcs_config": gcs_config, "postgres_config": postgres_config}
DATASETS = [(kind, dataset) for kind, module in KINDS.items() for dataset in module.DATASETS]


def condition_columns(condition: Any) -> set[str]:
    """The columns a GX row condition reads (a comparison, a null test, or an and/or of them)."""
    if condition is None or isinstance(condition, str):
        return set()
    columns = set()
    if getattr(condition, "column", None) is not None:
        columns.add(condition.column.name)
    for part in getattr(condition, "conditions", None) or ():
        columns |= condition_columns(part)
    return columns


def columns_read(expectation: Any) -> set[str]:
    read = {getattr(expectation, name, None) for name in ("column", "column_A", "column_B")}
    read |= set(getattr(expectation, "column_list", None) or ())
    read |= condition_columns(getattr(expectation, "row_condition", None))
    return {column for column in read if column}


def judged(module, dataset) -> set[str]:
    return {column for expectation in module.control_expectations(dataset) for column in columns_read(expectation)}


@pytest.mark.parametrize(("kind", "dataset"), DATASETS, ids=[dataset.name for _, dataset in DATASETS])
def test_every_column_is_judged_or_documented(kind, dataset):
    read = judged(KINDS[kind], dataset)
    unjudged = sorted(set(dataset.columns) - read - set(dataset.key) - set(dataset.context))
    assert not unjudged, (
        f"{dataset.name}: column(s) {', '.join(unjudged)} are collected but no control check of "
        f"collectors/{kind}.py reads them: add a check, or mark each context-only in the Dataset's "
        "context={column: reason}"
    )
    stale = sorted(set(dataset.context) & read)
    assert not stale, f"{dataset.name}: column(s) {', '.join(stale)} are marked context-only but a check reads them"
    blank = sorted(column for column, reason in dataset.context.items() if not reason.strip())
    assert not blank, f"{dataset.name}: context-only column(s) {', '.join(blank)} give no reason"


@pytest.mark.parametrize(("kind", "dataset"), DATASETS, ids=[dataset.name for _, dataset in DATASETS])
def test_every_check_tells_the_owner_how_to_fix_it(kind, dataset):
    """A finding names the resource, the setting, the expected value, the criteria and the remediation line."""
    from soc2_evidence.validation.gx import existence_expectations

    for expectation in [*existence_expectations(dataset), *KINDS[kind].control_expectations(dataset)]:
        remediation = (expectation.meta or {}).get("remediation", "")
        assert remediation.strip(), f"{expectation.meta['check']} has no remediation line: pass remediation=..."


def test_the_introspection_sees_pairs_and_row_conditions():
    """Not vacuous: the users' MFA check reads console_access through its row condition, and the admin
    check reads a column pair."""
    read = judged(aws, aws.IAM_USERS)
    assert {"mfa_enabled", "console_access", "admin", "admin_allow_listed", "console_unused_days"} <= read
