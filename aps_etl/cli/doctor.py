"""`aps-etl doctor`: what killed runs left behind (doctor_findings.py), listed and, with
--fix, removed."""

from __future__ import annotations

import click

from aps_etl.cli.params import env_option, resolved, use_environment


@click.command(
    "doctor",
    help="List what killed runs left behind (dead STARTED runs, stage tables, orphan "
    "partitions, temp files, Trino queries); --fix removes them.",
    short_help="list (--fix: remove) what killed runs left behind",
    epilog="\b\nexample: aps-etl doctor --env dev --fix",
)
@env_option()
@click.option("--fix", is_flag=True, help="fail dead runs (alerting), drop and remove leftovers")
@click.option(
    "--all", "unowned", is_flag=True, help="also stages that record no owner (older versions)"
)
def command(env: str | None, fix: bool, unowned: bool) -> int:
    from aps_etl.cli import runner
    from aps_etl.cli.doctor_findings import examine, print_findings
    from aps_etl.env.settings import resources_for

    env = use_environment(env)
    found = resolved(env)
    loader = resources_for(env)["loader"]
    trino = loader.trino.process_config_and_initialize() if loader.trino else None
    instance = runner.dagster_instance()
    findings = examine(instance, found["target"], found["lake"], trino, fix=fix, unowned=unowned)
    print_findings(findings, fix=fix)
    return 0 if all(f.fixed for f in findings) else 1
