"""`aps-etl backfill`: a date range of the daily job, in one run in this process, or
(--policy) as a real Dagster backfill.

The range is submitted to the instance as an asset backfill of the daily job's assets, as
the UI's "Materialize..." does; the daemon's backfill loop splits it into runs by the
assets' backfill policy (APS_BACKFILL_POLICY, aps_etl/lib/partitions.py) and queues them; the
queued run coordinator starts them, side by side up to its limits (dagster.yaml's
run_coordinator). This waits for every run, printing each run's progress, and reports.

Who runs it: the deployment behind `--url` (APS_DAGSTER_URL: submitted through its
webserver's GraphQL API), else the dagster-daemon running on the instance, else a `dagster
dev` started for the duration on aps_etl/cli/backfill_location.py (the assets without the
schedules and sensors) with the policy asked for; a deployment splits it by its own code
location's setting. A backfill run by a dagster dev of the command's own ends with the
command, whatever ends it (a SIGKILLed command's is closed by the next one); a deployment's
goes on there. How, and what of it is Dagster's own process and what ours:
backfill_submit.py; the backfill on the instance (submit, wait, cancel, close):
backfill_runs.py; through a webserver: backfill_graphql.py; the daemon, watched or
started, and what a killed command's dagster dev left: backfill_daemon.py; the owner tag
that tells them apart: backfill_owner.py.
"""

from __future__ import annotations

import os
import time
from typing import Any

import click

from aps_etl.cli.params import Duration, PartitionKey, Refused, env_option, use_environment


def parse_policy(text: str) -> dict[str, str]:
    """`single-run`, `multi-run` or `multi-run:N` as the APS_BACKFILL_* settings."""
    from aps_etl.lib.partitions import BACKFILL_POLICY_VARIABLE, MAX_PARTITIONS_VARIABLE

    name, _, count = text.strip().lower().replace("_", "-").partition(":")
    if name == "single-run" and not count:
        # an inherited APS_BACKFILL_MAX_PARTITIONS_PER_RUN would be refused with single_run
        return {BACKFILL_POLICY_VARIABLE: "single_run", MAX_PARTITIONS_VARIABLE: ""}
    if name == "multi-run" and (not count or (count.isdigit() and int(count) >= 1)):
        return {BACKFILL_POLICY_VARIABLE: "multi_run", MAX_PARTITIONS_VARIABLE: count or "1"}
    raise ValueError(f"expected single-run, multi-run or multi-run:N (N >= 1 days): {text!r}")


class Policy(click.ParamType):
    """`--policy`: single-run, multi-run or multi-run:N, as the APS_BACKFILL_* settings."""

    name = "single-run|multi-run[:N]"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return self.name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, dict):
            return value
        try:
            return parse_policy(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@click.command(
    "backfill",
    help="Run the daily job over a date range: in one run here, or as a Dagster backfill "
    "split into parallel runs (--policy).",
    short_help="run the daily job over a date range (in one run, or --policy: a Dagster backfill)",
    epilog="""examples:

\b
  aps-etl backfill --from 2026-11-20 --to 2026-11-22
  aps-etl backfill --env dev --from 2026-11-01 --to 2026-11-30 --policy multi-run:5""",
)
@env_option()
@click.option("--from", "start", type=PartitionKey(), required=True, help="first day")
@click.option("--to", "end", type=PartitionKey(), required=True, help="last day")
@click.option(
    "--policy",
    type=Policy(),
    help="submit a Dagster backfill instead (the queued run coordinator and a "
    "dagster-daemon: the one running on the instance or behind --url, else a `dagster "
    "dev` started for the duration) with this backfill policy: multi-run:N is runs of at "
    "most N days (default 1) run side by side; waits, printing each run; exit 1 if any run fails",
)
@click.option(
    "--timeout",
    type=Duration(),
    help="with --policy: stop waiting after this long (e.g. 5400, 90m, 2h), exit 1. A "
    "backfill run by a dagster dev this command started is canceled with its runs; one run "
    "by a deployment goes on there",
)
@click.option(
    "--url",
    envvar="APS_DAGSTER_URL",
    help="with --policy: submit through this running Dagster webserver's GraphQL API "
    "(e.g. http://localhost:3000; env APS_DAGSTER_URL) and follow the backfill there; its "
    "deployment runs it. Behind the compose deployment's UI front: https://127.0.0.1:3443 "
    "with APS_DAGSTER_PASSWORD (user APS_DAGSTER_USER, default admin) and "
    "APS_DAGSTER_SSLROOTCERT=infra/.tls/ca.crt in the environment",
)
def command(
    env: str | None,
    start: str,
    end: str,
    policy: dict[str, str] | None,
    timeout: float | None,
    url: str | None,
) -> int:
    from aps_etl.cli import runner
    from aps_etl.lib.lake import parse_partition_key

    use_environment(env)
    if policy is not None:
        # Before anything imports the assets: they read their backfill policy when their
        # module is imported (aps_etl/lib/partitions.py), and this process imports them to
        # resolve the asset graph it submits (a bad inherited APS_BACKFILL_* would refuse
        # to load); the dagster-daemon it may start, and its code location, inherit it.
        os.environ.update(policy)
    from aps_etl.lib.partitions import configured_backfill_policy

    configured_backfill_policy()  # a bad APS_BACKFILL_* setting, named, before any work
    if parse_partition_key(end) < parse_partition_key(start):
        raise Refused(f"--to {end} is before --from {start}")
    if policy is not None:
        from aps_etl.cli.backfill_submit import dagster_backfill

        return dagster_backfill(start, end, timeout, url)
    if timeout is not None or url:
        raise Refused(f"--{'timeout' if timeout is not None else 'url'} applies to --policy "
                      "(a Dagster backfill)")  # fmt: skip
    import dagster as dg

    from aps_etl.lib.partitions import DAILY, chunks, single_run_max_days

    days = DAILY.get_partition_keys_in_range(dg.PartitionKeyRange(start, end))
    parts = chunks(list(days), single_run_max_days())
    instance = runner.dagster_instance()
    for number, part in enumerate(parts, 1):
        first, last = part[0], part[-1]
        of = f" (run {number} of {len(parts)}: at most {len(parts[0])} days a run, " \
            "APS_SINGLE_RUN_MAX_DAYS)" if len(parts) > 1 else ""  # fmt: skip
        started = time.perf_counter()
        print(f"job aps_daily for {first}...{last} in one run{of}: steps as they finish")
        result = runner.run_job(first, instance, last_partition=last, progress=print)
        runner.print_report(result, instance, f"{first}...{last}", time.perf_counter() - started)
        if not result.success:
            # later days wait: the master dimensions merge forward, day after day
            if number < len(parts):
                print(f"stopped: {parts[number][0]}...{parts[-1][-1]} not run")
            return 1
    return 0
