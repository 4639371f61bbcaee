"""Dagster's PostgreSQL storages, holding their connection instead of opening one per call.

dagster-postgres gives every storage call (each of the ~250 events of a daily run) a new
connection unless the process is the webserver: a TCP connect, SCRAM authentication and
a server process fork, ~6 ms each on the dev stack, several per event: ~3 s of a 1M-row
daily run of ~11 s (benchmarks/). These subclasses
keep one pooled connection per storage (more under concurrency) in every process that
opens the instance: run workers, the daemon, the CLI. The webserver still applies its own
settings (optimize_for_webserver). infra/dagster-dev.yaml and infra/docker/dagster.yaml
name them as `run_storage`, `event_log_storage` and `schedule_storage`.

They also ride out a dropped connection (a failover, a restarted container, a firewall
that drops idle connections; issue 29): the pool pings a connection before handing it out
(`pool_pre_ping`), libpq's keepalives and `tcp_user_timeout` notice a peer that went away
silently, and every read or idempotent call is run again whole when its connection drops
(storage_retry.py). The two writes that are not idempotent as Dagster wrote them are made
so: a run and its tags are inserted in one transaction, and a retried event first looks
for the row its lost attempt may have committed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from dagster._core.errors import DagsterRunAlreadyExists
from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.storage.event_log import SqlEventLogStorageTable
from dagster._core.storage.runs.schema import RunsTable, RunTagsTable
from dagster._serdes import ConfigurableClassData
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage
from dagster_postgres.utils import (
    create_pg_engine,
    get_token_provider_from_config,
    pg_url_from_config,
    set_pg_statement_timeout,
)

from aps_etl.instance.storage_retry import retry_call, retry_safe_calls

if TYPE_CHECKING:
    from dagster_postgres.auth import PgTokenProvider

# Connections older than this are replaced (a restarted server, an idle-session timeout).
POOL_RECYCLE_S = 3600
# Beyond the one kept: concurrent calls (sensor threads of the daemon) open more for a moment.
MAX_OVERFLOW = 10
# Two kept: `aps-etl run`'s progress reader polls the event log while the run writes it;
# with one, each overlap opened a throwaway connection (a new handshake to fail).
POOL_SIZE = 2
# libpq: a connect that hangs fails in 10 s (then is retried); a peer that vanished without
# a word (a failed-over host, a firewall's dropped state) is noticed within about a minute.
CONNECT_ARGS: dict[str, Any] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,  # ms of unacknowledged data
}


class _Pooled:
    """Mixin: a pooled engine right after construction, and no leaked pool when the
    webserver replaces it."""

    _engine: Any

    if TYPE_CHECKING:
        # the constructor of the dagster-postgres storage each subclass also derives from
        def __init__(
            self,
            postgres_url: str,
            should_autocreate_tables: bool = True,
            inst_data: ConfigurableClassData | None = None,
            token_provider: PgTokenProvider | None = None,
        ) -> None: ...

    def _pool(self) -> None:
        # statement_timeout 0: no limit, as without pooling (runs may wait on locks)
        self.optimize_for_webserver(  # type: ignore[attr-defined]
            statement_timeout=0, pool_recycle=POOL_RECYCLE_S, max_overflow=MAX_OVERFLOW
        )

    def optimize_for_webserver(
        self, statement_timeout: int, pool_recycle: int, max_overflow: int
    ) -> None:
        """dagster-postgres' webserver engine (kept connections, a statement timeout) with
        the settings above, in every process."""
        previous = self._engine
        connect_args = dict(CONNECT_ARGS)
        if options := previous.url.query.get("options"):
            connect_args["options"] = options
        self._engine = create_pg_engine(
            self.postgres_url,  # type: ignore[attr-defined]
            self._token_provider,  # type: ignore[attr-defined]
            isolation_level="AUTOCOMMIT",
            pool_size=POOL_SIZE,
            max_overflow=max_overflow,
            pool_recycle=pool_recycle,
            pool_pre_ping=True,
            connect_args=connect_args,
        )
        if statement_timeout:
            sa.event.listen(
                self._engine,
                "connect",
                lambda connection, _: set_pg_statement_timeout(connection, statement_timeout),
            )
        previous.dispose()

    def dispose(self) -> None:
        super().dispose()  # type: ignore[misc]
        self._engine.dispose()  # the kept connection closes with the instance

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Any):
        # dagster-postgres's own from_config_value builds its base class, not `cls`
        storage = cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )
        storage._pool()
        return storage


@retry_safe_calls
class PooledPostgresRunStorage(_Pooled, PostgresRunStorage):
    def add_run(self, dagster_run: DagsterRun) -> DagsterRun:
        def attempt(n: int) -> DagsterRun:
            try:
                return super(PooledPostgresRunStorage, self).add_run(dagster_run)
            except DagsterRunAlreadyExists:
                if n > 1 and self.has_run(dagster_run.run_id):
                    return dagster_run  # the attempt whose answer was lost committed it
                raise

        return retry_call(attempt, "add_run")

    def _core_add_run(self, col_values: dict[str, Any], tags: Any) -> None:
        # One transaction (Dagster's are two autocommit statements): a retry finds the run
        # with all its tags or nothing.
        with (
            self.connect() as conn,
            conn.execution_options(isolation_level="READ COMMITTED").begin(),
        ):
            try:
                conn.execute(RunsTable.insert().values(**col_values))
            except sa_exc.IntegrityError as exc:
                raise DagsterRunAlreadyExists from exc
            run_id = col_values["run_id"]
            if tags:
                rows = [{"run_id": run_id, "key": k, "value": v} for k, v in tags.items()]
                conn.execute(RunTagsTable.insert(), rows)


@retry_safe_calls
class PooledPostgresEventLogStorage(_Pooled, PostgresEventLogStorage):
    def store_event(self, event: EventLogEntry) -> None:
        """dagster-postgres' store_event, each part retried whole. The insert commits on its
        own: if its answer is lost, the retry finds the committed row (the serialized event
        holds its timestamp: unique within a run) instead of writing the event twice. The
        NOTIFY that followed is left out: nothing has listened to it since Dagster's event
        watcher polls."""
        row = self._event_to_row(event)
        table = SqlEventLogStorageTable

        def insert(n: int) -> int:
            with self._connect() as conn:
                if n > 1:
                    found = conn.execute(
                        sa.select(table.c.id)
                        .where(table.c.run_id == row["run_id"])
                        .where(table.c.event == row["event"])
                    ).scalar()
                    if found is not None:
                        return int(found)
                inserted = conn.execute(table.insert().values(**row).returning(table.c.id))
                return int(inserted.scalar_one())

        event_id = retry_call(insert, "store_event")
        dagster_event = event.dagster_event
        if dagster_event is None:
            return
        if dagster_event.event_type in ASSET_EVENTS and dagster_event.asset_key:

            def index(_n: int) -> None:
                with self.index_transaction() as conn:  # all or nothing; upserts
                    self._store_asset_event_tags(conn, [event], [event_id])
                    self._store_asset_event(conn, event, event_id)

            retry_call(index, "store_event (asset index)")
        if dagster_event.event_type in ASSET_CHECK_EVENTS:
            retry_call(
                lambda _n: self.store_asset_check_event(event, event_id),
                "store_event (asset check)",
            )


@retry_safe_calls
class PooledPostgresScheduleStorage(_Pooled, PostgresScheduleStorage):
    pass
