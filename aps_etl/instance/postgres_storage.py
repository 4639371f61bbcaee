"""Dagster's PostgreSQL storages, holding their connection instead of opening one per call.

dagster-postgres gives every storage call (each of the ~250 events of a daily run) a new
connection unless the process is the webserver: a TCP connect, SCRAM authentication and
a server process fork, ~6 ms each on the dev stack, several per event: ~3 s of a 1M-row
daily run of ~11 s (benchmarks/). These subclasses
keep one pooled connection per storage (more under concurrency) in every process that
opens the instance: run workers, the daemon, the CLI. The webserver still applies its own
settings (optimize_for_webserver). infra/dagster-dev.yaml and infra/docker/dagster.yaml
name them as `run_storage`, `event_log_storage` and `schedule_storage`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dagster._serdes import ConfigurableClassData
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

if TYPE_CHECKING:
    from dagster_postgres.auth import PgTokenProvider

# Connections older than this are replaced (a restarted server, an idle-session timeout).
POOL_RECYCLE_S = 3600
# Beyond the one kept: concurrent calls (sensor threads of the daemon) open more for a moment.
MAX_OVERFLOW = 10


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
        previous = self._engine
        super().optimize_for_webserver(statement_timeout, pool_recycle, max_overflow)  # type: ignore[misc]
        if previous is not self._engine:
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


class PooledPostgresRunStorage(_Pooled, PostgresRunStorage):
    pass


class PooledPostgresEventLogStorage(_Pooled, PostgresEventLogStorage):
    pass


class PooledPostgresScheduleStorage(_Pooled, PostgresScheduleStorage):
    pass
