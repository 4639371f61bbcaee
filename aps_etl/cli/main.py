"""The `aps-etl` command."""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

ENVIRONMENTS = ("local", "dev", "prod")
# seed-source fills a development source only
SEED_ENVIRONMENTS = ("local", "dev")
# Bad input or an unusable setting: one line naming the cause, exit status 2.
USAGE_EXIT = 2


class UsageError(Exception):
    """Input the command refuses, with the reason (printed as one line, exit status 2)."""


def _partition(text: str) -> str:
    """A daily partition key the job can run: a real date, from the plant's first day
    (APS_FIRST_DAY) to the last complete business day."""
    from aps_etl.lib.business_days import parse_partition_key
    from aps_etl.lib.partitions import FIRST_DAY_VARIABLE, first_day
    from aps_etl.lib.sources.changes import last_complete_day

    day = parse_partition_key(text)
    if day < first_day():
        raise UsageError(
            f"{text} is before the plant's first business day {first_day()} "
            f"({FIRST_DAY_VARIABLE}); set it earlier if the plant's history starts earlier"
        )
    if day > last_complete_day():
        raise UsageError(
            f"{text} has not ended yet in the plant's time zone: the last complete "
            f"business day is {last_complete_day()}"
        )
    return text


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date (YYYY-MM-DD): {text!r}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1: {text!r}")
    return value


def _policy(text: str) -> dict[str, str]:
    from aps_etl.cli.backfill import parse_policy

    try:
        return parse_policy(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _environment(text: str | None) -> str:
    env = text or os.environ.get("APS_ENV", "local")
    if env not in ENVIRONMENTS:
        raise UsageError(f"unknown environment {env!r} (APS_ENV); choose one of {ENVIRONMENTS}")
    return env


def source_owner_uri(env: str) -> str:
    """URI of the source `mes` database as a role that may create the contract tables."""
    if env == "local":
        from aps_etl.env.embedded import SOURCE_DB, start_local_postgres

        return start_local_postgres().uri(SOURCE_DB)
    if env == "dev":
        from aps_etl.env.stack import load_stack_env, postgres_uri

        values = load_stack_env()
        return postgres_uri(values, values["APS_MES_DB"], "mes_owner")
    raise UsageError(
        f"seed-source fills a development source ({', '.join(SEED_ENVIRONMENTS)}), not {env!r}"
    )


def _seed(args: argparse.Namespace) -> int:
    env = _environment(args.env)
    uri = source_owner_uri(env)
    from aps_etl.devdata import seed_source

    report = seed_source(
        uri,
        start_date=args.start_date,
        days=args.days,
        lots=args.lots,
        target_rows=args.rows,
        seed=args.seed,
        progress=not args.quiet,
    )
    _print_seed_report(env, report)
    return 0


def _print_seed_report(env: str, report: object) -> None:
    rows: dict[str, int] = report.rows  # type: ignore[attr-defined]
    print(f"seeded source `mes` ({env}) in {report.seconds:.1f} s:")  # type: ignore[attr-defined]
    for table, count in rows.items():
        print(f"  {table:<16} {count:>10,} rows")
    print(f"  {'total':<16} {sum(rows.values()):>10,} rows")


def _run(args: argparse.Namespace) -> int:
    """The main job for one partition; on `local`, after seeding the embedded source."""
    import time

    from aps_etl.cli import run as runner

    env = _environment(args.env)
    os.environ["APS_ENV"] = env
    if args.date is not None:
        _partition(args.date)  # refused before anything is seeded or run
    if args.reseed and env != "local":
        raise UsageError(f"--reseed replaces the embedded demo source; env {env!r} has none")
    if env == "local":
        from aps_etl.devdata import seed_source
        from aps_etl.env.embedded import SOURCE_DB, local_home, start_local_postgres

        pg = start_local_postgres()
        print(f"embedded PostgreSQL ready (data in {local_home() / 'postgres'})")
        days = _source_days(pg.uri(SOURCE_DB))
        if days is None or args.reseed:
            report = seed_source(
                pg.uri(SOURCE_DB),
                start_date=runner.DEMO_START,
                days=runner.DEMO_DAYS,
                seed=args.seed,
            )
            _print_seed_report(env, report)
        else:
            oldest, newest = days
            print(
                f"source `mes` already seeded (lot events {oldest} to {newest}): kept; "
                "--reseed replaces it with the demo data"
            )
            demo = dt.date.fromisoformat(runner.DEMO_PARTITION)
            if args.date is None and not oldest <= demo <= newest:
                args.date = newest.isoformat()  # a source seeded for other days
    partition = _partition(args.date or runner.DEMO_PARTITION)
    instance = runner.dagster_instance()
    started = time.perf_counter()
    print(f"job aps_daily for {partition}: steps as they finish")
    result = runner.run_job(partition, instance, progress=print)
    runner.print_report(result, instance, partition, time.perf_counter() - started)
    if result.success:
        counts = runner.target_rows(partition)
        print("target PostgreSQL `aps` now holds for this partition:")
        for table, rows in counts.items():
            print(f"  {table:<28} {rows:>9,} rows")
        print(f"lake: {runner.lake_root()}   Dagster instance: {os.environ['DAGSTER_HOME']}")
    return 0 if result.success else 1


def _source_days(uri: str) -> tuple[dt.date, dt.date] | None:
    """The first and last business days with lot events in a seeded source; None when
    it holds none."""
    from aps_etl.devdata.load import connect, existing_tables
    from aps_etl.lib.business_days import PLANT_TZ

    with connect(uri) as conn, conn.cursor() as cur:
        if "lot_history" not in existing_tables(cur):
            return None
        day = f"(event_ts at time zone '{PLANT_TZ}')::date"
        cur.execute(f"select min({day}), max({day}) from lot_history")
        oldest, newest = cur.fetchone()
        conn.rollback()
    return None if newest is None else (oldest, newest)


def _resolved(env: str) -> dict:
    """The environment's source and lake, configuration resolved (EnvVars read)."""
    from aps_etl.env.settings import resources_for

    resources = resources_for(env)
    resolved = {
        name: resources[name].process_config_and_initialize() for name in ("source", "lake")
    }
    resolved["target"] = resources["loader"].target.process_config_and_initialize()
    return resolved


def _history(args: argparse.Namespace) -> int:
    """Every snapshot of one extract partition, oldest first."""
    from aps_etl.lib.lake import snapshots
    from aps_etl.lib.lake.layout import LakeTable

    env = _environment(args.env)
    lake = _resolved(env)["lake"]
    table = LakeTable("extract", args.job, args.table, partition_name=args.partition_name)
    found = snapshots.history(lake, table, args.partition)
    if not found:
        print(f"no snapshot of {args.job}/{args.table} for {args.partition} in {lake.root}")
        return 1
    print(f"snapshots of {args.job}/{args.table} {args.partition_name}={args.partition}:")
    for snap in found:
        fp = snap.fingerprint.describe() if snap.fingerprint else "no fingerprint (legacy)"
        newest = "  <- newest, read by transforms" if snap is found[-1] else ""
        how = snap.method
        if snap.method == "incremental":
            how = f"delta: {snap.delta_rows} changed rows on version {snap.base_version}"
        print(f"  v{snap.version:<3} taken {snap.taken_at or '?':<25} {how}{newest}")
        print(f"       {snap.rows:,} rows; source fingerprint: {fp}")
        print(f"       {snap.uri}")
    return 0


def _print_states(states: list, title: str, todo: dict | None = None) -> None:
    from collections import Counter

    counts = Counter(s.status for s in states)
    print(f"{title}: " + (", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none"))
    for s in states:
        if s.status == "current":
            continue
        had = (
            f"snapshot v{s.snapshot.version} {s.snapshot.rows:,} rows"
            if s.snapshot
            else "no snapshot"
        )
        print(f"  {s.partition}  {s.table:<16} {s.status:<8} {had}; source {s.source.rows:,} rows")
    for day, stale in sorted((todo or {}).items()):
        for s in stale:
            if s.status == "current":
                print(
                    f"  {day}  {s.table:<16} not loaded: snapshot v{s.snapshot.version} is newer "
                    "than the one the day's tables were loaded from"
                )


def _reconcile(args: argparse.Namespace) -> int:
    """The source beside the lake's newest snapshots for the last N days; without
    --dry-run, the changed days are snapshotted, transformed and loaded again."""
    from aps_etl.lib.sources.changes import business_days, last_complete_day

    env = _environment(args.env)
    os.environ["APS_ENV"] = env
    if args.days < 1:
        raise UsageError("--days must be at least 1")
    until = dt.date.fromisoformat(_partition(args.until.isoformat())) if args.until else None
    until = until or last_complete_day()
    days = business_days(until, args.days)
    resolved = _resolved(env)
    daily, plans, todo = _states(resolved, days)
    print(f"source `mes` ({env}) beside the lake {resolved['lake'].root}, {days[0]}..{days[-1]}")
    _print_states(daily, "daily partitions", todo)
    _print_states(plans, "plan-run snapshots (immutable)")
    plan_ok = all(s.status != "changed" for s in plans)
    if args.dry_run or not todo:
        return 0 if not todo and plan_ok else 1
    from aps_etl.cli import run as runner

    instance = runner.dagster_instance()
    failed = []
    for day in sorted(todo):
        from aps_etl.lib.tags import SOURCE_CHANGE_TAG

        result = runner.run_job(day, instance, tags={SOURCE_CHANGE_TAG: "aps-etl reconcile"})
        print(f"{day}: aps_daily run {result.run_id} {'succeeded' if result.success else 'FAILED'}")
        if not result.success:
            failed.append(day)
            for event in result.all_events:
                if event.is_step_failure and event.step_failure_data.error:
                    print(f"  {event.step_key}: {event.step_failure_data.error.message.strip()}")
    daily, plans, todo = _states(resolved, days)
    _print_states(daily, "after reconciling", todo)
    return 0 if not todo and not failed and all(s.status != "changed" for s in plans) else 1


def _states(resolved: dict, days: list[str]) -> tuple[list, list, dict]:
    from aps_etl.defs.extract import extract_table
    from aps_etl.defs.scenarios.aps_input.assets import DAILY_SPECS, NAMESPACE
    from aps_etl.defs.scenarios.aps_plan.assets import NAMESPACE as PLAN_NAMESPACE
    from aps_etl.lib.sources.changes import daily_states, days_to_run, plan_states, recent_plan_runs
    from aps_etl.lib.sources.mes import PLAN_EQUIPMENT, PLAN_PRODUCTION

    source, lake = resolved["source"], resolved["lake"]
    tables = {spec.name: extract_table(spec, NAMESPACE) for spec in DAILY_SPECS}
    daily = daily_states(source, lake, DAILY_SPECS, tables, days)
    todo = days_to_run(daily, resolved["target"], NAMESPACE)
    run_ids = recent_plan_runs(source, days[0])
    specs = (PLAN_PRODUCTION, PLAN_EQUIPMENT)
    plan_tables = {s.name: extract_table(s, PLAN_NAMESPACE, "run_id") for s in specs}
    return daily, plan_states(source, lake, specs, plan_tables, run_ids), todo


def _backfill(args: argparse.Namespace) -> int:
    """A date range of the daily job: in one run in this process, or (--policy) as a
    Dagster backfill that the daemon splits into runs and the queue runs side by side."""
    import time

    from aps_etl.cli import run as runner
    from aps_etl.lib.lake import parse_partition_key

    os.environ["APS_ENV"] = _environment(args.env)
    if args.policy is not None:
        # before anything imports the assets: their backfill policy is read at import
        os.environ.update(args.policy)
    from aps_etl.lib.partitions import configured_backfill_policy

    configured_backfill_policy()  # a bad APS_BACKFILL_* setting, named, before any work
    first = parse_partition_key(_partition(args.start))
    last = parse_partition_key(_partition(args.end))
    if last < first:
        raise UsageError(f"--to {args.end} is before --from {args.start}")
    if args.policy is not None:
        return _dagster_backfill(args)
    if args.timeout is not None:
        raise UsageError("--timeout applies to --policy (a Dagster backfill)")
    instance = runner.dagster_instance()
    started = time.perf_counter()
    print(f"job aps_daily for {args.start}...{args.end} in one run: steps as they finish")
    result = runner.run_job(args.start, instance, last_partition=args.end, progress=print)
    runner.print_report(
        result, instance, f"{args.start}...{args.end}", time.perf_counter() - started
    )
    return 0 if result.success else 1


def _dagster_backfill(args: argparse.Namespace) -> int:
    """`backfill --policy`: submit, run under the queued coordinator and a daemon, wait."""
    import functools
    import signal

    from dagster._core.run_coordinator import QueuedRunCoordinator

    from aps_etl.cli import backfill as backfills
    from aps_etl.cli import run as runner
    from aps_etl.lib.partitions import configured_backfill_policy

    env = os.environ["APS_ENV"]
    policy = configured_backfill_policy()  # refused by name before anything starts
    if env == "prod" and not os.environ.get("DAGSTER_HOME"):
        raise UsageError("--policy on prod submits to the deployment's instance: set DAGSTER_HOME")
    instance = runner.dagster_instance()
    if not isinstance(instance.run_coordinator, QueuedRunCoordinator):
        raise UsageError(
            f"--policy needs the queued run coordinator; {os.environ['DAGSTER_HOME']}"
            "/dagster.yaml has another"
        )
    if env == "local":  # run workers attach to it; this process keeps it up meanwhile
        from aps_etl.env.embedded import start_local_postgres

        start_local_postgres()
    from aps_etl.definitions import build_defs

    defs = build_defs(automation=False)
    days = backfills.daily_partitions(args.start, args.end)
    per_run = policy.max_partitions_per_run or len(days)
    how = f"runs of at most {per_run} day(s)" if policy.max_partitions_per_run else "one run"
    for left, days_closed in backfills.close_abandoned(instance):
        print(
            f"backfill {left} was left in flight by a killed aps-etl backfill: canceled"
            + (f" (its runs for {', '.join(days_closed)} too)" if days_closed else ""),
            flush=True,
        )
    running = backfills.daemon_running(instance)
    busy = backfills.another_commands_daemon(instance) if running else None
    if busy:
        raise backfills.BackfillError(busy)
    title = f"aps_daily {args.start}...{args.end}"
    # Submitted before a daemon of ours starts: its backfill loop's first pass (every 30 s)
    # finds it, instead of the one after.
    owner = None if running else backfills.owner_id()
    backfill_id = backfills.submit(instance, defs, args.start, args.end, title, owner)
    print(
        f"backfill {backfill_id}: {len(days)} day(s) {args.start}...{args.end}, {how}, "
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
        if args.timeout is not None:
            timeout = backfills.timeout_check(
                args.timeout,
                f"backfill {backfill_id} goes on in the deployment's daemon: follow or cancel "
                "it in the UI (Overview > Backfills)",
            )
        try:
            outcome = backfills.wait(
                instance, backfill_id, out,
                check=backfills.checks(backfills.heartbeat_watch(instance, out), timeout),
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
        if args.timeout is not None:
            timeout = backfills.timeout_check(
                args.timeout, f"backfill {backfill_id} and its runs canceled"
            )
        try:
            with backfills.own_daemon(instance, dict(os.environ), log, backfill_id) as daemon:
                try:
                    outcome = backfills.wait(
                        instance, backfill_id, out,
                        check=backfills.checks(backfills.daemon_exit_check(daemon, log), timeout),
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


def _duration(text: str) -> float:
    """Seconds from `90`, `90s`, `30m` or `2h`."""
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        seconds = 0
    if not (0 < seconds < math.inf):  # nan and inf would never time out
        raise argparse.ArgumentTypeError(f"expected a duration like 5400, 90m or 2h: {text!r}")
    return seconds


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _report(args: argparse.Namespace) -> int:
    """The PRD §11 KPIs from the instance's run records (etl_report.py)."""
    from aps_etl.cli import run as runner
    from aps_etl.defs import report as etl_report

    env = _environment(args.env)
    os.environ["APS_ENV"] = env
    if args.days < 1:
        raise UsageError("--days must be at least 1")
    instance = runner.dagster_instance()
    print(f"Dagster instance: {os.environ['DAGSTER_HOME']}")
    print(etl_report.render(etl_report.compute(instance, days=args.days), args.days), end="")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    """Leftovers of killed runs: dead runs, stages, orphan partitions, temp files, queries."""
    from aps_etl.cli import doctor
    from aps_etl.cli import run as runner
    from aps_etl.env.settings import resources_for

    env = _environment(args.env)
    os.environ["APS_ENV"] = env
    resolved = _resolved(env)
    loader = resources_for(env)["loader"]
    trino = loader.trino.process_config_and_initialize() if loader.trino else None
    instance = runner.dagster_instance()
    findings = doctor.examine(
        instance, resolved["target"], resolved["lake"], trino, fix=args.fix, unowned=args.all
    )
    doctor.print_findings(findings, fix=args.fix)
    return 0 if all(f.fixed for f in findings) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aps-etl",
        description="aps-etl: the APS ETL's operator commands (Dagster runs on the instance "
        "of $DAGSTER_HOME, or the project's own on the embedded default).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_SubParser)
    default_start = dt.date.today() - dt.timedelta(days=3)

    seed = sub.add_parser(
        "seed-source",
        help="fill the source `mes` with a synthetic factory",
        epilog="example: aps-etl seed-source --env dev --days 5 --rows 1000000",
    )
    seed.add_argument(
        "--env", choices=SEED_ENVIRONMENTS, help="default: $APS_ENV or local (never prod)"
    )
    seed.add_argument("--start-date", type=_date, default=default_start, help="first day")
    seed.add_argument("--days", type=_positive, default=3, help="days of plant history")
    scale = seed.add_mutually_exclusive_group()
    scale.add_argument("--lots", type=_positive, help="number of lots")
    scale.add_argument("--rows", type=_positive, help="approximate total rows over all tables")
    seed.add_argument("--seed", type=int, default=42, help="random seed: same seed, same data")
    seed.add_argument("--quiet", action="store_true", help="no progress bar")
    seed.set_defaults(func=_seed)

    run = sub.add_parser(
        "run",
        help="run the daily job for one partition (default: embedded)",
        epilog="example: aps-etl run --env dev --date 2026-11-21",
    )
    _env_option(run)
    run.add_argument(
        "--date",
        help="business day YYYY-MM-DD (default: the demo day, or the newest day of a source "
        "seeded earlier)",
    )
    run.add_argument("--seed", type=int, default=42, help="random seed of the demo data")
    run.add_argument(
        "--reseed",
        action="store_true",
        help="local: replace a source seeded earlier with the demo data (default: keep it)",
    )
    run.set_defaults(func=_run)

    backfill = sub.add_parser(
        "backfill",
        help="run the daily job over a date range: in one run here, or as a Dagster "
        "backfill split into parallel runs (--policy)",
        epilog="examples:\n  aps-etl backfill --from 2026-11-20 --to 2026-11-22\n"
        "  aps-etl backfill --env dev --from 2026-11-01 --to 2026-11-30 --policy multi-run:5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _env_option(backfill)
    backfill.add_argument("--from", dest="start", required=True, help="first day YYYY-MM-DD")
    backfill.add_argument("--to", dest="end", required=True, help="last day YYYY-MM-DD")
    backfill.add_argument(
        "--policy",
        type=_policy,
        metavar="single-run|multi-run[:N]",
        help="submit a Dagster backfill instead (the queued run coordinator and a "
        "dagster-daemon: the one running on the instance, else one started for the "
        "duration) with this backfill policy: multi-run:N is runs of at most N days (default "
        "1) run side by side; waits, printing each run; exit 1 if any run fails",
    )
    backfill.add_argument(
        "--timeout",
        type=_duration,
        metavar="DURATION",
        help="with --policy: stop waiting after this long (e.g. 5400, 90m, 2h), exit 1. A "
        "backfill run by a daemon this command started is canceled with its runs; one run by "
        "a deployment's daemon goes on there",
    )
    backfill.set_defaults(func=_backfill)

    lake = sub.add_parser("lake", help="operator actions on the lake")
    lake_sub = lake.add_subparsers(dest="lake_command", required=True)
    hist = lake_sub.add_parser(
        "history",
        help="the snapshots of one extract partition, with their fingerprints",
        epilog="example: aps-etl lake history --job aps_input --table process_result 2026-11-21",
    )
    _env_option(hist)
    hist.add_argument("--job", required=True, help="lake namespace, e.g. aps_input")
    hist.add_argument("--table", required=True, help="e.g. process_result")
    hist.add_argument("--partition-name", default="date", help="date (default) or run_id")
    hist.add_argument("partition", help="partition key, e.g. 2026-11-21")
    hist.set_defaults(func=_history)

    rec = sub.add_parser(
        "reconcile",
        epilog="example: aps-etl reconcile --env dev --days 7 --dry-run",
        help="compare the source with the lake's newest snapshots of the last days and "
        "bring changed days up to date (snapshot, transform, load)",
    )
    _env_option(rec)
    rec.add_argument("--days", type=_positive, default=7, help="business days to check (default 7)")
    rec.add_argument(
        "--until", type=_date, help="last day of the window (default: yesterday, plant time)"
    )
    rec.add_argument(
        "--dry-run", action="store_true", help="only report; exit 1 if anything changed"
    )
    rec.set_defaults(func=_reconcile)

    report = sub.add_parser(
        "report",
        epilog="example: aps-etl report --env dev --days 30",
        help="the PRD §11 KPIs from the Dagster instance: success rate, failures by cause, "
        "first-run vs rerun time, freshness lag per day",
    )
    _env_option(report)
    report.add_argument("--days", type=_positive, default=30, help="days back from now")
    report.set_defaults(func=_report)

    doc = sub.add_parser(
        "doctor",
        epilog="example: aps-etl doctor --env dev --fix",
        help="list what killed runs left behind (dead STARTED runs, stage tables, orphan "
        "partitions, temp files, Trino queries); --fix removes them",
    )
    _env_option(doc)
    doc.add_argument(
        "--fix", action="store_true", help="fail dead runs (alerting), drop and remove leftovers"
    )
    doc.add_argument(
        "--all", action="store_true", help="also stages that record no owner (older versions)"
    )
    doc.set_defaults(func=_doctor)
    return parser


EXAMPLES = """examples:
  aps-etl run                                   the demo day on the embedded default
  aps-etl run --env dev --date 2026-11-21       one day on the dev stack
  aps-etl backfill --from 2026-11-20 --to 2026-11-22
  aps-etl reconcile --dry-run                   what changed in the source, last 7 days
  aps-etl lake history --job aps_input --table process_result 2026-11-21
  aps-etl doctor --fix                          clean up after killed runs
  aps-etl report --days 30                      success rate, reruns, freshness lag
"""


def _env_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", choices=ENVIRONMENTS, help="default: $APS_ENV or local")


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless its help already says it (or it has none)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


class _SubParser(argparse.ArgumentParser):
    """Subcommands show their defaults in --help."""

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(**kwargs)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    # platformdirs warns about a missing XDG_RUNTIME_DIR on headless machines: noise.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    args = build_parser().parse_args(argv)
    from aps_etl.lib.business_days import PartitionKeyError

    try:
        # Loading the settings reads APS_FIRST_DAY and the like: refused by name as well.
        from aps_etl.cli.backfill import BackfillError
        from aps_etl.devdata.load import SeedError
        from aps_etl.env.settings import ConfigurationError
        from aps_etl.env.stack import StackSettingsMissing
        from aps_etl.lib.partitions import BackfillPolicyError
        from aps_etl.lib.postgres import DatabaseError
    except PartitionKeyError as exc:
        print(f"aps-etl {args.command}: {exc}", file=sys.stderr)
        return USAGE_EXIT
    refused = (
        UsageError,
        PartitionKeyError,
        ConfigurationError,
        StackSettingsMissing,
        DatabaseError,
        SeedError,
        BackfillError,
        BackfillPolicyError,
    )
    try:
        return args.func(args)
    except refused as exc:
        # the cause in one line, not a traceback (the services' errors name no secret)
        print(f"aps-etl {args.command}: {exc}", file=sys.stderr)
        return USAGE_EXIT


if __name__ == "__main__":
    sys.exit(main())
