"""`aps-etl seed-source`: fill a development source `mes` with a synthetic factory, in
PostgreSQL (the default) or, with --engine mariadb, in the dev stack's MariaDB."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from aps_etl.devdata import MariaDBTarget

from aps_etl.cli.params import (
    SEED_ENVIRONMENTS,
    Choice,
    IsoDate,
    Refused,
    env_option,
    environment,
    option,
)

ENGINES = ("postgresql", "mariadb")


def source_owner_uri(env: str) -> str:
    """URI of the source `mes` database as a role that may create the contract tables."""
    if env == "local":
        from aps_etl.env.embedded import SOURCE_DB, start_local_postgres

        return start_local_postgres().uri(SOURCE_DB)
    if env == "dev":
        from aps_etl.env.stack import load_stack_env, postgres_uri

        values = load_stack_env()
        return postgres_uri(values, values["APS_MES_DB"], "mes_owner")
    raise Refused(
        f"seed-source fills a development source ({', '.join(SEED_ENVIRONMENTS)}), not {env!r}"
    )


def source_owner_mariadb(env: str, values: Mapping[str, str] | None = None) -> MariaDBTarget:
    """The dev stack's MariaDB `mes` as mes_owner, over TLS verified against the stack's CA
    (`values`: the stack's settings, read from its file when not given)."""
    if env != "dev":
        raise Refused(f"--engine mariadb fills the dev stack's MariaDB (--env dev), not {env!r}")
    from aps_etl.devdata import MariaDBTarget
    from aps_etl.env.stack import load_stack_env

    values = load_stack_env() if values is None else values
    return MariaDBTarget(
        host=values["APS_MARIADB_HOST"],
        port=int(values["APS_MARIADB_PORT"]),
        database=values["APS_MARIADB_DB"],
        user=values["APS_MARIADB_OWNER_USER"],
        password=values["APS_MARIADB_OWNER_PASSWORD"],
        sslrootcert=values["APS_MARIADB_SSLROOTCERT"],
    )


def print_seed_report(env: str, report: object, engine: str = "postgresql") -> None:
    rows: dict[str, int] = report.rows  # type: ignore[attr-defined]
    where = env if engine == "postgresql" else f"{env}, {engine}"
    print(f"seeded source `mes` ({where}) in {report.seconds:.1f} s:")  # type: ignore[attr-defined]
    for table, count in rows.items():
        print(f"  {table:<16} {count:>10,} rows")
    print(f"  {'total':<16} {sum(rows.values()):>10,} rows")


def _three_days_ago() -> dt.date:
    return dt.date.today() - dt.timedelta(days=3)


@click.command(
    "seed-source",
    help="Fill the source `mes` with a synthetic factory.",
    short_help="fill the source `mes` with a synthetic factory",
    epilog="\b\nexample: aps-etl seed-source --env dev --days 5 --rows 1000000"
    "\n         aps-etl seed-source --env dev --engine mariadb",
)
@env_option(seed=True)
@option(
    "--engine",
    type=Choice(ENGINES),
    default="postgresql",
    metavar="ENGINE",
    help="postgresql, or mariadb: the dev stack's MariaDB (--env dev)",
)
@option("--start-date", type=IsoDate(), default=_three_days_ago, help="first day")
@option("--days", type=click.IntRange(min=1), default=3, help="days of plant history")
@option("--lots", type=click.IntRange(min=1), help="number of lots (or --rows)")
@option(
    "--rows", type=click.IntRange(min=1), help="approximate total rows over all tables (or --lots)"
)
@option("--seed", type=int, default=42, help="random seed: same seed, same data")
@option("--quiet", is_flag=True, help="no progress bar")
def command(
    env: str | None,
    engine: str,
    start_date: dt.date,
    days: int,
    lots: int | None,
    rows: int | None,
    seed: int,
    quiet: bool,
) -> int:
    if lots is not None and rows is not None:
        raise click.UsageError("--lots and --rows are either-or: give one")
    env = environment(env)
    uri = source_owner_uri(env) if engine == "postgresql" else source_owner_mariadb(env)
    from aps_etl.devdata import seed_source

    report = seed_source(
        uri,
        start_date=start_date,
        days=days,
        lots=lots,
        target_rows=rows,
        seed=seed,
        progress=not quiet,
    )
    print_seed_report(env, report, engine)
    return 0
