"""`aps-etl run`: the daily job for one partition; on `local`, after seeding the embedded
source with the demo plant (runner.py: the instance, the run, the report)."""

from __future__ import annotations

import datetime as dt
import os
import time

import click

from aps_etl.cli.params import (
    PartitionKey,
    Refused,
    check_partition,
    env_option,
    option,
    use_environment,
)


@click.command(
    "run",
    help="Run the daily job for one partition (default: embedded).",
    short_help="run the daily job for one partition (default: embedded)",
    epilog="\b\nexample: aps-etl run --env dev --date 2026-11-21",
)
@env_option()
@option(
    "--date",
    type=PartitionKey(),
    help="business day YYYY-MM-DD (default: the demo day, or the newest day of a source "
    "seeded earlier)",
)
@option("--seed", type=int, default=42, help="random seed of the demo data")
@option(
    "--reseed",
    is_flag=True,
    help="local: replace a source seeded earlier with the demo data (default: keep it)",
)
def command(env: str | None, date: str | None, seed: int, reseed: bool) -> int:
    from aps_etl.cli import runner
    from aps_etl.cli.seed_source import print_seed_report

    env = use_environment(env)
    if reseed and env != "local":
        raise Refused(f"--reseed replaces the embedded demo source; env {env!r} has none")
    if env == "local":
        from aps_etl.devdata import seed_source
        from aps_etl.env.embedded import SOURCE_DB, local_home, start_local_postgres

        pg = start_local_postgres()
        print(f"embedded PostgreSQL ready (data in {local_home() / 'postgres'})")
        days = _source_days(pg.uri(SOURCE_DB))
        if days is None or reseed:
            report = seed_source(
                pg.uri(SOURCE_DB), start_date=runner.DEMO_START, days=runner.DEMO_DAYS, seed=seed
            )
            print_seed_report(env, report)
        else:
            oldest, newest = days
            print(
                f"source `mes` already seeded (lot events {oldest} to {newest}): kept; "
                "--reseed replaces it with the demo data"
            )
            demo = dt.date.fromisoformat(runner.DEMO_PARTITION)
            if date is None and not oldest <= demo <= newest:
                date = newest.isoformat()  # a source seeded for other days
    partition = check_partition(date or runner.DEMO_PARTITION)
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
    return runner.exit_status(result, instance)


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
