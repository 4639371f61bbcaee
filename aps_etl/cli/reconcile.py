"""`aps-etl reconcile`: the source beside the lake's newest snapshots for the last N days;
without --dry-run, the changed days are snapshotted, transformed and loaded again. The
states are the source-change sensor's (defs/source_change_sensor.py: source_states)."""

from __future__ import annotations

import datetime as dt

import click

from aps_etl.cli.params import (
    IsoDate,
    check_partition,
    env_option,
    option,
    resolved,
    use_environment,
)


@click.command(
    "reconcile",
    help="Compare the source with the lake's newest snapshots of the last days and bring "
    "changed days up to date (snapshot, transform, load).",
    short_help="compare the source with the lake's snapshots; bring changed days up to date",
    epilog="\b\nexample: aps-etl reconcile --env dev --days 7 --dry-run",
)
@env_option()
@option("--days", type=click.IntRange(min=1), default=7, help="business days to check (default 7)")
@option("--until", type=IsoDate(), help="last day of the window (default: yesterday, plant time)")
@option("--dry-run", is_flag=True, help="only report; exit 1 if anything changed")
def command(env: str | None, days: int, until: dt.date | None, dry_run: bool) -> int:
    from aps_etl.defs.source_change_sensor import source_states
    from aps_etl.lib.business_days import business_days, last_complete_day
    from aps_etl.lib.partitions import first_day

    env = use_environment(env)
    last = dt.date.fromisoformat(check_partition(until.isoformat())) if until else None
    # never before the plant's first business day (APS_FIRST_DAY): those days are no
    # partitions, and running one would write a day the UI cannot show
    window = [
        d
        for d in business_days(last or last_complete_day(), days)
        if dt.date.fromisoformat(d) >= first_day()
    ]
    found = resolved(env)
    source, lake, target = found["source"], found["lake"], found["target"]
    states = source_states(source, lake, target, window)
    print(f"source `mes` ({env}) beside the lake {lake.root}, {window[0]}..{window[-1]}")
    _print_states(states.daily, "daily partitions", states.todo)
    _print_states(states.plans, "plan-run snapshots (immutable)")
    plan_ok = all(s.status != "changed" for s in states.plans)
    if dry_run or not states.todo:
        return 0 if not states.todo and plan_ok else 1
    from aps_etl.cli import runner
    from aps_etl.lib.tags import SOURCE_CHANGE_TAG

    instance = runner.dagster_instance()
    failed = []
    for day in sorted(states.todo):
        result = runner.run_job(day, instance, tags={SOURCE_CHANGE_TAG: "aps-etl reconcile"})
        print(f"{day}: aps_daily run {result.run_id} {'succeeded' if result.success else 'FAILED'}")
        if not result.success:
            failed.append(day)
            for event in result.all_events:
                if event.is_step_failure and event.step_failure_data.error:
                    print(f"  {event.step_key}: {event.step_failure_data.error.message.strip()}")
    states = source_states(source, lake, target, window)
    _print_states(states.daily, "after reconciling", states.todo)
    changed = any(s.status == "changed" for s in states.plans)
    return 0 if not states.todo and not failed and not changed else 1


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
