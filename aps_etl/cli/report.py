"""`aps-etl report`: the PRD §11 KPIs from the Dagster instance's run records
(aps_etl/defs/report.py)."""

from __future__ import annotations

import os

import click

from aps_etl.cli.params import env_option, option, use_environment


@click.command(
    "report",
    help="The PRD §11 KPIs from the Dagster instance: success rate, failures by cause, "
    "first-run vs rerun time, freshness lag per day.",
    short_help="the PRD §11 KPIs from the Dagster instance",
    epilog="\b\nexample: aps-etl report --env dev --days 30",
)
@env_option()
@option("--days", type=click.IntRange(min=1), default=30, help="days back from now")
def command(env: str | None, days: int) -> int:
    from aps_etl.cli import runner
    from aps_etl.defs import report as etl_report

    use_environment(env)
    instance = runner.dagster_instance()
    print(f"Dagster instance: {os.environ['DAGSTER_HOME']}")
    print(etl_report.render(etl_report.compute(instance, days=days), days), end="")
    return 0
