"""The ``evidence`` command: library calls behind a thin Click layer, errors translated at the edge.

Every :class:`EvidenceError` (a bad store URL, an unreachable endpoint, missing credentials, a
bad configuration file) is printed as one ``Error: ...`` line and exits 1, without a traceback:
the message already names what is wrong and where. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import click

from soc2_evidence.archive.stores import open_store
from soc2_evidence.core.errors import EvidenceError, describe
from soc2_evidence.core.evidence import FAMILIES


class _Commands(click.Group):
    """Click group whose commands' EvidenceErrors become one ``Error:`` line (click.ClickException)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EvidenceError as error:
            raise click.ClickException(describe(error)) from None


@click.group(cls=_Commands)
@click.version_option(package_name="soc2-evidence")
def main() -> None:
    """SOC 2 evidence archive tools."""


@main.command()
@click.option(
    "--store",
    "store_url",
    required=True,
    envvar="EVIDENCE_STORE",
    help="Store URL: s3://bucket/prefix or file:///path.",
)
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="First night to check (YYYY-MM-DD).")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Last night to check (YYYY-MM-DD).")
@click.option("--family", type=click.Choice(FAMILIES), help="Only this evidence family.")
@click.option(
    "--retention-days", type=click.IntRange(min=1), help="Policy to check locks against (default: each manifest's own)."
)
@click.option(
    "--copy",
    "is_copy",
    is_flag=True,
    help="The store is a downloaded copy (file://): it cannot lock, so that is a warning, not an error.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(store_url, since, until, family, retention_days, is_copy, as_json) -> None:
    """Prove the archive is intact: list every version, walk every chain, re-hash every object, check every lock.

    Exit codes: 0 when nothing was changed, removed or added and every night in the period has a
    run that passed; 1 on any integrity problem (a rewrite, a deletion, an added or unlocked object,
    a broken chain, a mutable store); 2 when the archive is intact but nights are missing or failed.
    The period ends, unless --until says otherwise, at the last night whose runs are due.

    Example:

        evidence verify --store s3://soc2-evidence/evidence --since 2026-01-01 --until 2026-12-31
    """
    from soc2_evidence.archive.verify import verify_store

    since_date: date | None = since.date() if since else None
    until_date: date | None = until.date() if until else None
    if since_date and until_date and since_date > until_date:
        raise click.UsageError("--since is after --until")
    report = verify_store(
        open_store(store_url),
        since=since_date,
        until=until_date,
        family=family,
        retention_days=retention_days,
        is_copy=is_copy,
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        _print_report(report)
    sys.exit(report.exit_code)


def _print_report(report) -> None:
    click.echo(f"store      {report.store}")
    click.echo(
        f"manifests  {report.manifests} in {len(report.chains)} chain(s): "
        + (", ".join(f"{dag} ({count})" for dag, count in sorted(report.chains.items())) or "none")
    )
    click.echo(f"objects    {report.objects_checked} re-hashed, {report.bytes_checked:,} bytes")
    for family, days in sorted(report.calendar.items()):
        counts = {status: list(days.values()).count(status) for status in ("passed", "failed", "missing")}
        click.echo(f"calendar   {family}: {len(days)} night(s), " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    for problem in report.warnings:
        click.echo(f"WARNING    {problem.check}: {problem.key}: {problem.detail}")
    for problem in report.errors:
        click.echo(f"ERROR      {problem.check}: {problem.key}: {problem.detail}")
    outcome = {
        0: "OK: archive verified, every night passed",
        1: f"FAILED: {len(report.errors)} problem(s), integrity not proven",
        2: f"INCOMPLETE: archive intact, but nights are missing or failed ({len(report.errors)} problem(s))",
    }
    click.echo("result     " + outcome[report.exit_code])


@main.group()
def config() -> None:
    """Check the pipeline's YAML configuration, or print its JSON Schema.

    Example:

        evidence config check && evidence config schema > include/config/evidence.schema.json
    """


@config.command("check")
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="EVIDENCE_CONFIG",
    help="The file to check (default: $EVIDENCE_CONFIG, else the shipped include/config/evidence.yaml).",
)
def config_check(path: Path | None) -> None:
    """List every problem of the configuration, one per line, and exit 1 if there is any.

    Each line names the file, the YAML line, the key path and what was expected; a misspelt key
    gets the nearest valid one. Relative paths are checked against the file's own folder.

    Example:

        evidence config check --file include/config/evidence.yaml
    """
    from soc2_evidence.collectors import kind_specs
    from soc2_evidence.core.config import check_config, config_path

    target = path or config_path()
    problems = check_config(target, kind_specs())
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        raise click.ClickException(f"{target}: {len(problems)} problem(s)")
    click.echo(f"{target}: OK")


@config.command("schema")
def config_schema() -> None:
    """Print the configuration's JSON Schema, generated from the types the loader checks against.

    Editors that speak the YAML language server use it through the ``# yaml-language-server:
    $schema=...`` line at the top of evidence.yaml.

    Example:

        evidence config schema > include/config/evidence.schema.json
    """
    from soc2_evidence.collectors import kind_specs
    from soc2_evidence.core.config import json_schema

    click.echo(json.dumps(json_schema(kind_specs()), indent=2, sort_keys=True))
