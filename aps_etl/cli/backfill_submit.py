"""`aps-etl backfill --policy`: where the backfill is submitted, who runs it, and what ends it.

- `--url` (APS_DAGSTER_URL): to that Dagster webserver's GraphQL API, followed there
  (backfill_graphql.py); its deployment runs it.
- A dagster-daemon heartbeating on the instance (a deployment): to the instance; the
  daemon runs it and is only watched (the command says when its heartbeats stop).
- Neither: to the instance, tagged with this command as its owner, then run by a `dagster
  dev` started for the duration (backfill_daemon.own_dagster_dev), which Dagster's own
  process supervises. It ends with the command, whatever ends it: dagster dev exiting,
  `--timeout`, Ctrl-C or SIGTERM cancel its runs (through its code server, while it is up),
  stop dagster dev and mark what is left canceled (exit 1, or 130 when interrupted), so that
  nothing stays "in progress" in the UI or blocks the next range. If the command is killed
  (SIGKILL), its dagster dev gets SIGTERM from the kernel, and the next command stops what
  is left of it and closes the backfill (backfill_daemon.close_abandoned). While one
  command's dagster dev runs, a second command on the instance is refused.
"""

from __future__ import annotations

import functools
import math
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from aps_etl.cli import backfill_daemon as daemons
from aps_etl.cli import backfill_owner as owners
from aps_etl.cli import backfill_runs as backfills
from aps_etl.cli.params import Refused

out = functools.partial(print, flush=True)


def dagster_backfill(start: str, end: str, timeout_s: float | None, url: str | None) -> int:
    """`backfill --policy`: submit, run under the queued coordinator and a daemon, wait."""
    from aps_etl.definitions import build_defs
    from aps_etl.lib.partitions import configured_backfill_policy

    env = os.environ["APS_ENV"]
    policy = configured_backfill_policy()  # refused by name before anything starts
    days = backfills.daily_partitions(start, end)
    per_run = policy.max_partitions_per_run or len(days)
    how = "one run" if per_run >= len(days) else f"runs of at most {per_run} day(s)"
    expected = math.ceil(len(days) / per_run)
    title = f"aps_daily {start}...{end}"
    if url:
        from aps_etl.cli import backfill_graphql as graphql

        defs = build_defs(automation=False)
        backfill_id = graphql.submit(url, defs, start, end, title)
        out(f"backfill {backfill_id}: {len(days)} day(s) {start}...{end}, submitted to the "
            f"Dagster webserver at {url}: its deployment runs it, split by its code "
            "location's APS_BACKFILL_POLICY")  # fmt: skip
        where = f"the deployment at {url}: follow or cancel it in the UI (Overview > Backfills)"
        return _watch(
            graphql.look_at(url, backfill_id), backfill_id, expected, where, timeout_s, None,
            functools.partial(graphql.cancel_if_untouched, url, backfill_id),
        )  # fmt: skip

    from dagster._core.run_coordinator import QueuedRunCoordinator

    from aps_etl.cli import runner

    if env == "prod" and not os.environ.get("DAGSTER_HOME"):
        raise Refused(
            "--policy on prod submits to the deployment's instance: set DAGSTER_HOME, or "
            "--url to its webserver"
        )
    instance = runner.dagster_instance()
    if not isinstance(instance.run_coordinator, QueuedRunCoordinator):
        raise Refused(
            f"--policy needs the queued run coordinator; {os.environ['DAGSTER_HOME']}"
            "/dagster.yaml has another"
        )
    if env == "local":  # run workers attach to it; this process keeps it up meanwhile
        from aps_etl.env.embedded import start_local_postgres

        start_local_postgres()
    defs = build_defs(automation=False)
    for left, days_closed in daemons.close_abandoned(instance):
        out(
            f"backfill {left} was left in flight by a killed aps-etl backfill: canceled"
            + (f" (its runs for {', '.join(days_closed)} too)" if days_closed else "")
        )
    busy = daemons.another_commands_dev(instance)
    if busy:
        raise backfills.BackfillError(busy)
    running = daemons.daemon_running(instance)
    # Submitted before a dagster dev of ours starts, with its owner: its backfill loop's
    # first pass finds it, and another command sees whose it is from the start.
    owner = None if running else owners.owner_id()
    backfill_id = backfills.submit(instance, defs, start, end, title, owner)
    out(f"backfill {backfill_id}: {len(days)} day(s) {start}...{end}, {how}, "
        f"submitted (Dagster instance {os.environ['DAGSTER_HOME']})")  # fmt: skip
    look = backfills.look_in(instance, backfill_id)
    if running:
        out("a dagster-daemon is running on this instance: it runs the backfill, split by its "
            "code location's APS_BACKFILL_POLICY")  # fmt: skip
        return _watch(
            look, backfill_id, expected, "the deployment's daemon: follow or cancel it in the "
            "UI (Overview > Backfills)", timeout_s, daemons.heartbeat_watch(instance, out),
            functools.partial(backfills.cancel_if_untouched, instance, backfill_id),
        )  # fmt: skip
    assert owner is not None
    return _run_in_own_dev(instance, backfill_id, owner, look, timeout_s)


def _watch(
    look: Callable[[], backfills.Snapshot],
    backfill_id: str,
    expected: int,
    where: str,
    timeout_s: float | None,
    watch: Callable[[float], None] | None,
    cancel_if_untouched: Callable[[], None],
) -> int:
    """A backfill a deployment runs: waited for; --timeout and Ctrl-C leave it there (it is
    canceled only when it has no run yet)."""
    timeout = None
    if timeout_s is not None:
        timeout = backfills.timeout_check(timeout_s, f"backfill {backfill_id} goes on in {where}")
    # SIGTERM (systemd, kill) ends the command as Ctrl-C does
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        outcome = backfills.wait(look, backfill_id, out, check=backfills.checks(watch, timeout))
    except backfills.BackfillStopped as exc:
        print(f"aps-etl backfill: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        cancel_if_untouched()
        print(
            f"aps-etl backfill: interrupted; backfill {backfill_id} goes on in {where} unless "
            "it had no run yet (then it is canceled)",
            file=sys.stderr,
        )
        return 130
    except BaseException:
        cancel_if_untouched()
        raise
    return _report(outcome, expected)


def _run_in_own_dev(
    instance: dg.DagsterInstance,
    backfill_id: str,
    owner: str,
    look: Callable[[], backfills.Snapshot],
    timeout_s: float | None,
) -> int:
    """The backfill run by a dagster dev of the command's own, ended with the command."""
    log = Path(os.environ["DAGSTER_HOME"]) / "backfill-dagster-dev.log"
    out(f"no dagster-daemon on this instance: starting dagster dev (log: {log})")
    timeout = None
    if timeout_s is not None:
        timeout = backfills.timeout_check(
            timeout_s, f"backfill {backfill_id} and its runs canceled"
        )
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with daemons.own_dagster_dev(instance, dict(os.environ), log, owner) as (dev, url):
            out(f"dagster dev is up, its UI at {url}")
            try:
                outcome = backfills.wait(
                    look, backfill_id, out,
                    check=backfills.checks(daemons.dev_exit_check(dev, log), timeout),
                )  # fmt: skip
            except BaseException:
                # a second Ctrl-C or SIGTERM must not cut the cleanup short
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                # while its code server is up: running runs stop through it, cleanly (on
                # SIGTERM, dagster dev's code server would let them run to their end)
                out("stopping: canceling the backfill's runs, then dagster dev")
                backfills.cancel_runs(instance, backfill_id, backfills.CANCEL_GRACE_S)
                raise
    except BaseException as exc:
        # dagster dev and every process it started are gone now: close what did not end
        why = str(exc) if isinstance(exc, backfills.BackfillStopped) else "interrupted"
        closed = backfills.close(instance, backfill_id, f"aps-etl backfill stopped: {why}")
        if closed:
            out(f"runs stopped before they ended, canceled: {', '.join(closed)}")
        done = backfills.days_done(instance, backfill_id) or "none"
        if isinstance(exc, backfills.BackfillStopped):
            print(f"aps-etl backfill: {exc}", file=sys.stderr)
            print(
                f"backfill {backfill_id} CANCELED: days done {done}; run the command again "
                "for the rest (a day done again is replaced whole)",
                file=sys.stderr,
            )
            return 1
        if isinstance(exc, KeyboardInterrupt):
            print(
                f"aps-etl backfill: interrupted; backfill {backfill_id} CANCELED: days done {done}",
                file=sys.stderr,
            )
            return 130
        raise
    return _report(outcome, expected=None)


def _report(outcome: backfills.Outcome, expected: int | None) -> int:
    ok = sum(run.status == "SUCCESS" for run in outcome.runs)
    print(
        f"backfill {outcome.backfill_id} {outcome.status} in {outcome.seconds:.1f} s: "
        f"{len(outcome.runs)} run(s), {ok} succeeded, {len(outcome.runs) - ok} not"
    )
    if outcome.error:
        print(f"  {outcome.error}")
    if expected is not None and len(outcome.runs) != expected:
        print(f"  (--policy asked for {expected} run(s): the running daemon's setting differs)")
    return 0 if outcome.success else 1


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
