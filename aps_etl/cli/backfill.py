"""`aps-etl backfill`: a date range of the daily job, in one run in this process, or
(--policy) as a real Dagster backfill.

The range is submitted to the instance as an asset backfill of the daily job's assets, as
the UI's "Materialize..." does; the daemon's backfill loop splits it into runs by the
assets' backfill policy (APS_BACKFILL_POLICY, aps_etl/lib/partitions.py) and queues them; the
queued run coordinator starts them, side by side up to its limits (dagster.yaml's
run_coordinator). This waits for every run, printing each run's progress, and reports.

When no dagster-daemon is running on the instance, one is started for the duration, on
aps_etl/cli/backfill_location.py (the assets without the schedules and sensors), with the
policy asked for. When one is running (a deployment), the backfill is its to run, split by
its own code location's setting.

A backfill run by a daemon of the command's own ends with the command, whatever ends it:
the daemon exiting, `--timeout`, Ctrl-C or SIGTERM cancel its runs (through the daemon's
code server, while it is up), stop the daemon and its run workers, and mark what is left
canceled, so that nothing stays "in progress" in the UI or blocks the next range. If the
command itself is killed (SIGKILL), its daemon gets SIGTERM from the kernel, and the next
`aps-etl backfill` on the instance closes the backfill it left (`close_abandoned`). A
deployment's daemon is only watched: the command says when its heartbeats stop.

The backfill on the instance (submit, wait, cancel, close): backfill_runs.py; the daemon of
the command's own and what a killed command's daemon left: backfill_daemon.py; the owner
tag that tells them apart: backfill_owner.py.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
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
    "dagster-daemon: the one running on the instance, else one started for the "
    "duration) with this backfill policy: multi-run:N is runs of at most N days (default "
    "1) run side by side; waits, printing each run; exit 1 if any run fails",
)
@click.option(
    "--timeout",
    type=Duration(),
    help="with --policy: stop waiting after this long (e.g. 5400, 90m, 2h), exit 1. A "
    "backfill run by a daemon this command started is canceled with its runs; one run by "
    "a deployment's daemon goes on there",
)
def command(
    env: str | None, start: str, end: str, policy: dict[str, str] | None, timeout: float | None
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
        return _dagster_backfill(start, end, timeout)
    if timeout is not None:
        raise Refused("--timeout applies to --policy (a Dagster backfill)")
    instance = runner.dagster_instance()
    started = time.perf_counter()
    print(f"job aps_daily for {start}...{end} in one run: steps as they finish")
    result = runner.run_job(start, instance, last_partition=end, progress=print)
    runner.print_report(result, instance, f"{start}...{end}", time.perf_counter() - started)
    return 0 if result.success else 1


def _dagster_backfill(start: str, end: str, timeout_s: float | None) -> int:
    """`backfill --policy`: submit, run under the queued coordinator and a daemon, wait."""
    import functools
    import signal

    from dagster._core.run_coordinator import QueuedRunCoordinator

    from aps_etl.cli import backfill_daemon as daemons
    from aps_etl.cli import backfill_owner as owners
    from aps_etl.cli import backfill_runs as backfills
    from aps_etl.cli import runner
    from aps_etl.lib.partitions import configured_backfill_policy

    env = os.environ["APS_ENV"]
    policy = configured_backfill_policy()  # refused by name before anything starts
    if env == "prod" and not os.environ.get("DAGSTER_HOME"):
        raise Refused("--policy on prod submits to the deployment's instance: set DAGSTER_HOME")
    instance = runner.dagster_instance()
    if not isinstance(instance.run_coordinator, QueuedRunCoordinator):
        raise Refused(
            f"--policy needs the queued run coordinator; {os.environ['DAGSTER_HOME']}"
            "/dagster.yaml has another"
        )
    if env == "local":  # run workers attach to it; this process keeps it up meanwhile
        from aps_etl.env.embedded import start_local_postgres

        start_local_postgres()
    from aps_etl.definitions import build_defs

    defs = build_defs(automation=False)
    days = backfills.daily_partitions(start, end)
    per_run = policy.max_partitions_per_run or len(days)
    how = f"runs of at most {per_run} day(s)" if policy.max_partitions_per_run else "one run"
    for left, days_closed in daemons.close_abandoned(instance):
        print(
            f"backfill {left} was left in flight by a killed aps-etl backfill: canceled"
            + (f" (its runs for {', '.join(days_closed)} too)" if days_closed else ""),
            flush=True,
        )
    running = daemons.daemon_running(instance)
    busy = daemons.another_commands_daemon(instance) if running else None
    if busy:
        raise backfills.BackfillError(busy)
    title = f"aps_daily {start}...{end}"
    # Submitted before a daemon of ours starts: its backfill loop's first pass (every 30 s)
    # finds it, instead of the one after.
    owner = None if running else owners.owner_id()
    backfill_id = backfills.submit(instance, defs, start, end, title, owner)
    print(
        f"backfill {backfill_id}: {len(days)} day(s) {start}...{end}, {how}, "
        f"submitted (Dagster instance {os.environ['DAGSTER_HOME']})",
        flush=True,
    )
    out = functools.partial(print, flush=True)
    timeout = None
    # SIGTERM (systemd, kill) ends the command as Ctrl-C does: through the cleanup below
    signal.signal(signal.SIGTERM, _interrupt)
    if running:
        print(
            "a dagster-daemon is running on this instance: it runs the backfill, split by its "
            "code location's APS_BACKFILL_POLICY",
            flush=True,
        )
        if timeout_s is not None:
            timeout = backfills.timeout_check(
                timeout_s,
                f"backfill {backfill_id} goes on in the deployment's daemon: follow or cancel "
                "it in the UI (Overview > Backfills)",
            )
        try:
            outcome = backfills.wait(
                instance, backfill_id, out,
                check=backfills.checks(daemons.heartbeat_watch(instance, out), timeout),
            )  # fmt: skip
        except backfills.BackfillStopped as exc:
            print(f"aps-etl backfill: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            backfills.cancel_if_untouched(instance, backfill_id)
            print(
                f"aps-etl backfill: interrupted; backfill {backfill_id} goes on in the "
                "deployment's daemon unless it had no run yet (then it is canceled)",
                file=sys.stderr,
            )
            return 130
        except BaseException:
            backfills.cancel_if_untouched(instance, backfill_id)
            raise
    else:
        log = Path(os.environ["DAGSTER_HOME"]) / "backfill-daemon.log"
        print(f"no dagster-daemon on this instance: starting one (log: {log})", flush=True)
        if timeout_s is not None:
            timeout = backfills.timeout_check(
                timeout_s, f"backfill {backfill_id} and its runs canceled"
            )
        try:
            with daemons.own_daemon(instance, dict(os.environ), log, backfill_id) as daemon:
                try:
                    outcome = backfills.wait(
                        instance, backfill_id, out,
                        check=backfills.checks(daemons.daemon_exit_check(daemon, log), timeout),
                    )  # fmt: skip
                except BaseException:
                    # a second Ctrl-C or SIGTERM must not cut the cleanup short
                    signal.signal(signal.SIGINT, signal.SIG_IGN)
                    signal.signal(signal.SIGTERM, signal.SIG_IGN)
                    # while its code server is up: running runs stop through it, cleanly
                    out("stopping: canceling the backfill's runs, then the daemon")
                    backfills.cancel_runs(instance, backfill_id, backfills.CANCEL_GRACE_S)
                    raise
        except BaseException as exc:
            # the daemon's whole process group is gone now: close what did not end
            why = str(exc) if isinstance(exc, backfills.BackfillStopped) else "interrupted"
            closed = backfills.close(instance, backfill_id, f"aps-etl backfill stopped: {why}")
            if closed:
                out(f"runs stopped before they ended, canceled: {', '.join(closed)}")
            if isinstance(exc, backfills.BackfillStopped):
                done = backfills.days_done(instance, backfill_id)
                print(f"aps-etl backfill: {exc}", file=sys.stderr)
                print(
                    f"backfill {backfill_id} CANCELED: days done {done or 'none'}; run the "
                    "command again for the rest (a day done again is replaced whole)",
                    file=sys.stderr,
                )
                return 1
            if isinstance(exc, KeyboardInterrupt):
                print(
                    f"aps-etl backfill: interrupted; backfill {backfill_id} CANCELED: days done "
                    f"{backfills.days_done(instance, backfill_id) or 'none'}",
                    file=sys.stderr,
                )
                return 130
            raise
    ok = sum(run.status == "SUCCESS" for run in outcome.runs)
    print(
        f"backfill {backfill_id} {outcome.status} in {outcome.seconds:.1f} s: "
        f"{len(outcome.runs)} run(s), {ok} succeeded, {len(outcome.runs) - ok} not"
    )
    if outcome.error:
        print(f"  {outcome.error}")
    expected = math.ceil(len(days) / per_run)
    if running and len(outcome.runs) != expected:
        print(f"  (--policy asked for {expected} run(s): the running daemon's setting differs)")
    return 0 if outcome.success else 1


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
