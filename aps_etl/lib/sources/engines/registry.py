"""The source engine by its setting's name (APS_SOURCE_ENGINE): adding an engine is one
module beside this one and a line here."""

from __future__ import annotations

import datetime as dt

from aps_etl.lib.sources.engines.base import SourceEngine

# the setting's values; mysql is MariaDB's module (the same protocol, driver and SQL)
ENGINE_NAMES = ("postgresql", "mariadb", "mysql", "oracle", "sqlserver")
# the plant's wall clock: what a wall-clock source keeps unless told otherwise
DEFAULT_TIME_ZONE = "+09:00"


class UnknownEngine(ValueError):
    """An engine name that is not one of ENGINE_NAMES."""


def engine_for(name: str, time_zone: str | None = None) -> SourceEngine:
    """The engine called `name`; `time_zone` is the zone of a wall-clock source's
    timestamps (ignored by PostgreSQL, whose timestamptz are instants)."""
    from aps_etl.lib.sources.dialect import parse_zone

    key = name.strip().lower()
    if key == "postgresql":
        from aps_etl.lib.sources.engines.postgres import POSTGRES

        return POSTGRES
    zone: dt.tzinfo = parse_zone(time_zone or DEFAULT_TIME_ZONE)
    if key in ("mariadb", "mysql"):
        from aps_etl.lib.sources.engines.mariadb import MariaDB

        return MariaDB(zone, name="MariaDB" if key == "mariadb" else "MySQL")
    if key == "oracle":
        from aps_etl.lib.sources.engines.oracle import Oracle

        return Oracle(zone)
    if key == "sqlserver":
        from aps_etl.lib.sources.engines.sqlserver import SqlServer

        return SqlServer(zone)
    raise UnknownEngine(
        f"unknown source engine {name!r}: APS_SOURCE_ENGINE must be one of "
        f"{', '.join(ENGINE_NAMES)}"
    )
