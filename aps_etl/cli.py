"""The `aps-etl` command."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import warnings
from collections.abc import Sequence

ENVIRONMENTS = ("local", "dev", "prod")


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date (YYYY-MM-DD): {text!r}") from None


def _environment(text: str | None) -> str:
    env = text or os.environ.get("APS_ENV", "local")
    if env not in ENVIRONMENTS:
        raise SystemExit(f"aps-etl: unknown environment {env!r}; choose one of {ENVIRONMENTS}")
    return env


def source_owner_uri(env: str) -> str:
    """URI of the source `mes` database as a role that may create the contract tables."""
    if env == "local":
        from aps_etl.embedded import SOURCE_DB, start_embedded_postgres

        return start_embedded_postgres().uri(SOURCE_DB)
    if env == "dev":
        from aps_etl.stack_env import load_stack_env, postgres_uri

        values = load_stack_env()
        return postgres_uri(values, values["APS_MES_DB"], "mes_owner")
    raise SystemExit("aps-etl: seed-source fills a development source; it refuses env 'prod'")


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

    from aps_etl import demo

    env = _environment(args.env)
    os.environ["APS_ENV"] = env
    if env == "local":
        from aps_etl.devdata import seed_source
        from aps_etl.embedded import SOURCE_DB, local_home, start_embedded_postgres

        pg = start_embedded_postgres()
        print(f"embedded PostgreSQL ready (data in {local_home() / 'postgres'})")
        report = seed_source(
            pg.uri(SOURCE_DB), start_date=demo.DEMO_START, days=demo.DEMO_DAYS, seed=args.seed
        )
        _print_seed_report(env, report)
    partition = args.date or demo.DEMO_PARTITION
    from aps_etl.lake import parse_partition_key

    parse_partition_key(partition)
    instance = demo.dagster_instance()
    started = time.perf_counter()
    result = demo.run_job(partition, instance)
    demo.print_report(result, instance, partition, time.perf_counter() - started)
    if result.success:
        counts = demo.target_rows(partition)
        print("target PostgreSQL `aps` now holds for this partition:")
        for table, rows in counts.items():
            print(f"  {table:<28} {rows:>9,} rows")
        print(f"lake: {demo.lake_root()}   Dagster instance: {os.environ['DAGSTER_HOME']}")
    return 0 if result.success else 1


def _supersede(args: argparse.Namespace) -> int:
    """Explicit re-extraction: move a write-once extract partition aside, keeping it."""
    import logging

    from aps_etl.lake.layout import LakeTable
    from aps_etl.lake.supersede import supersede
    from aps_etl.settings import resources_for

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    env = _environment(args.env)
    lake = resources_for(env)["lake"]
    table = LakeTable("extract", args.job, args.table, partition_name=args.partition_name)
    for key in args.partitions:
        result = supersede(lake, table, key)
        print(f"superseded {result.moved_from}\n  old snapshot kept at {result.kept_at}")
    print("the next run of the job extracts these partitions afresh")
    return 0


def _backfill(args: argparse.Namespace) -> int:
    """A date range of the daily job in one run, recorded in the Dagster instance."""
    import time

    from aps_etl import demo
    from aps_etl.lake import parse_partition_key

    os.environ["APS_ENV"] = _environment(args.env)
    first, last = parse_partition_key(args.start), parse_partition_key(args.end)
    if last < first:
        raise SystemExit(f"aps-etl backfill: --to {args.end} is before --from {args.start}")
    instance = demo.dagster_instance()
    started = time.perf_counter()
    result = demo.run_job(args.start, instance, last_partition=args.end)
    demo.print_report(result, instance, f"{args.start}...{args.end}", time.perf_counter() - started)
    return 0 if result.success else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aps-etl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    default_start = dt.date.today() - dt.timedelta(days=3)

    seed = sub.add_parser("seed-source", help="fill the source `mes` with a synthetic factory")
    seed.add_argument("--env", choices=ENVIRONMENTS, help="default: $APS_ENV or local")
    seed.add_argument("--start-date", type=_date, default=default_start)
    seed.add_argument("--days", type=int, default=3)
    scale = seed.add_mutually_exclusive_group()
    scale.add_argument("--lots", type=int, help="number of lots")
    scale.add_argument("--rows", type=int, help="approximate total rows over all tables")
    seed.add_argument("--seed", type=int, default=42)
    seed.add_argument("--quiet", action="store_true", help="no progress bar")
    seed.set_defaults(func=_seed)

    run = sub.add_parser("run", help="run the daily job for one partition (default: embedded)")
    run.add_argument("--env", choices=ENVIRONMENTS, help="default: $APS_ENV or local")
    run.add_argument("--date", help="partition key YYYY-MM-DD (default: a day of the demo data)")
    run.add_argument("--seed", type=int, default=42)
    run.set_defaults(func=_run)

    backfill = sub.add_parser(
        "backfill", help="run the daily job over a date range, in one run (single-run backfill)"
    )
    backfill.add_argument("--env", choices=ENVIRONMENTS, help="default: $APS_ENV or local")
    backfill.add_argument("--from", dest="start", required=True, help="first day YYYY-MM-DD")
    backfill.add_argument("--to", dest="end", required=True, help="last day YYYY-MM-DD")
    backfill.set_defaults(func=_backfill)

    lake = sub.add_parser("lake", help="operator actions on the lake")
    lake_sub = lake.add_subparsers(dest="lake_command", required=True)
    sup = lake_sub.add_parser(
        "supersede", help="re-extract: move write-once extract partitions aside (kept)"
    )
    sup.add_argument("--env", choices=ENVIRONMENTS, help="default: $APS_ENV or local")
    sup.add_argument("--job", required=True, help="e.g. aps_input")
    sup.add_argument("--table", required=True, help="e.g. process_result")
    sup.add_argument("--partition-name", default="date", help="date (default) or run_id")
    sup.add_argument("partitions", nargs="+", help="partition keys, e.g. 2026-11-25")
    sup.set_defaults(func=_supersede)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # platformdirs warns about a missing XDG_RUNTIME_DIR on headless machines: noise.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
