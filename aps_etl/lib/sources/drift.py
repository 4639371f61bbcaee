"""Source schema drift (PRD 6.2): the live source measured against an ExtractSpec's columns.

The declared `columns` of a spec are the contract. `detect_drift` reads what the source
has now and reports three kinds of change:

- added: a source column the spec does not declare. Harmless to the extract, which selects
  the declared columns by name (`ExtractSpec.select_sql`), so the lake never sees it;
- removed: a declared column the source no longer has. The extract would fail on it;
- changed: a declared column whose source type no longer carries every value unchanged
  through the extract's cast to the declared type (`ACCEPTED` below). The extract might
  fail, or worse succeed with other values (numeric(12,3) cast to integer rounds).

Where the source columns come from (the engine's `table_columns` / `query_columns`,
engines/), in the neutral type names of source_types.py:

- a spec with a `table` (every mode but `query` has one; a `query` spec may name one): the
  catalog. PostgreSQL: one query on pg_class / pg_attribute / pg_type, the table looked up
  in `schema` (`None`, the default: through the search_path, as the extract's own SELECT
  does; a schema-qualified `table` wins); views, materialized views, partitioned and
  foreign tables count as tables, domains are measured by their base type. MariaDB/MySQL:
  information_schema.COLUMNS of the current database (or `schema`).
- a `query` spec without a table: the query's result columns, with `{start}` / `{end}`
  filled by a fixed instant, without reading a row. PostgreSQL describes the prepared
  statement (ADBC `execute_schema`: Parse/Describe, nothing is executed; read-only
  replicas allow it); MariaDB answers `SELECT * FROM (query) q LIMIT 0` with its columns'
  types. These are exactly the columns the extract's subquery yields.

A table that does not exist is not drift: it raises SourceError naming it, as the extract
would. What to do about drift is a `DriftPolicy` (see `check_drift`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import dagster as dg
from sqlglot import exp

from aps_etl.lib.redaction import redact
from aps_etl.lib.sources.database import SourceError
from aps_etl.lib.sources.source_types import SourceType, declared_type_name, incompatibility
from aps_etl.lib.sources.specs import DRIFT_POLICIES, DriftPolicy, ExtractSpec, query_with_window

if TYPE_CHECKING:
    from aps_etl.lib.sources.database import SourceDatabase


@dataclass(frozen=True)
class AddedColumn:
    name: str
    source_type: str


@dataclass(frozen=True)
class RemovedColumn:
    name: str
    declared_type: str


@dataclass(frozen=True)
class TypeChange:
    name: str
    declared: str
    found: str
    reason: str


@dataclass(frozen=True)
class SchemaDrift:
    """How a source differs from its spec's declared columns; falsy when it does not."""

    extract: str  # the spec's name
    relation: str  # what was measured: "table process_result", "query of lot_history"
    columns: int  # declared columns checked
    added: tuple[AddedColumn, ...] = ()
    removed: tuple[RemovedColumn, ...] = ()
    changed: tuple[TypeChange, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    @property
    def breaking(self) -> bool:
        """Removed or changed columns: the extract fails, or delivers other values."""
        return bool(self.removed or self.changed)

    def describe(self) -> str:
        if not self:
            return f"source {self.relation} matches its declared contract ({self.columns} columns)"
        lines = [f"source {self.relation} drifted from its declared contract:"]
        lines += [f"  + added   {c.name} ({c.source_type})" for c in self.added]
        lines += [f"  - removed {c.name} (declared {c.declared_type})" for c in self.removed]
        lines += [
            f"  ~ changed {c.name}: declared {c.declared}, source now {c.found} ({c.reason})"
            for c in self.changed
        ]
        return "\n".join(lines)

    def metadata(self) -> dict[str, int | str]:
        """For Dagster output metadata: counts and the diff, never connection details."""
        return {
            "drift_added": len(self.added),
            "drift_removed": len(self.removed),
            "drift_changed": len(self.changed),
            "schema_drift": self.describe(),
        }


class SchemaDriftError(SourceError):
    """Drift that the policy does not tolerate; its message is the readable diff. Not
    transient: retrying will not bring a column back."""

    def __init__(self, drift: SchemaDrift) -> None:
        super().__init__(drift.describe(), transient=False)
        self.drift = drift


def compare(spec: ExtractSpec, relation: str, found: list[tuple[str, SourceType]]) -> SchemaDrift:
    """The drift of source columns `found` (in source order) from the spec's declaration."""
    source = dict(found)
    changed = []
    for name, dtype in spec.columns.items():
        if name in source and (reason := incompatibility(dtype, source[name])) is not None:
            changed.append(
                TypeChange(name, declared_type_name(dtype), source[name].display, reason)
            )
    return SchemaDrift(
        extract=spec.name,
        relation=relation,
        columns=len(spec.columns),
        added=tuple(AddedColumn(n, t.display) for n, t in found if n not in spec.columns),
        removed=tuple(
            RemovedColumn(n, declared_type_name(d))
            for n, d in spec.columns.items()
            if n not in source
        ),
        changed=tuple(changed),
    )


# --- Reading the source ------------------------------------------------------------------

# Any valid instant fills a query spec's window: its statement is described, not run.
_PROBE = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def detect_drift(
    source: SourceDatabase, spec: ExtractSpec, schema: str | None = None
) -> SchemaDrift:
    """The drift of the live source from `spec`'s declared columns (see the module doc).
    Raises SourceError when the table does not exist or the source cannot be read."""
    if spec.table:
        return _table_drift(source, spec, schema)
    return _query_drift(source, spec)


def check_drift(
    source: SourceDatabase,
    spec: ExtractSpec,
    policy: DriftPolicy,
    log: _Log | None = None,
    *,
    schema: str | None = None,
) -> SchemaDrift:
    """Detects drift and applies the policy; returns the drift (use `.metadata()`).

    - "warn": any drift is logged as a warning, the run goes on;
    - "fail": removed or changed columns raise SchemaDriftError (the readable diff); added
      columns alone are only warned about, since the extract never selects them.

    `log` defaults to Dagster's logger (the run's log inside an asset)."""
    if policy not in DRIFT_POLICIES:
        raise ValueError(f"drift policy must be one of {DRIFT_POLICIES}, not {policy!r}")
    drift = detect_drift(source, spec, schema)
    if policy == "fail" and drift.breaking:
        raise SchemaDriftError(drift)
    if drift:
        (log or dg.get_dagster_logger()).warning(drift.describe())
    return drift


class _Log(Protocol):
    def warning(self, msg: str, /) -> object: ...


def _table_drift(source: SourceDatabase, spec: ExtractSpec, schema: str | None) -> SchemaDrift:
    engine = source.source_engine
    table = exp.to_table(spec.source_table, dialect=engine.dialect.sqlglot)
    schema = table.db or schema
    name = f"{schema}.{table.name}" if schema else table.name
    shown = table.name if schema in (None, "public") else name
    try:
        with source.connect() as session:
            found = engine.table_columns(session, table.name, schema)
    except SourceError:
        raise
    except Exception as exc:
        raise _source_error(source, spec, exc) from None
    if found is None:
        raise SourceError(
            f"extract {spec.name}: source table {name!r} does not exist in {source.describe()}"
        )
    relation = f"table {shown}" if shown == spec.name else f"table {shown} (extract {spec.name})"
    return compare(spec, relation, found)


def _query_drift(source: SourceDatabase, spec: ExtractSpec) -> SchemaDrift:
    engine = source.source_engine
    bounds = {"start": engine.dialect.instant(_PROBE), "end": engine.dialect.instant(_PROBE)}
    sql = engine.dialect.render(query_with_window(spec, bounds))
    try:
        with source.connect() as session:
            found = engine.query_columns(session, sql)
    except SourceError:
        raise
    except Exception as exc:
        raise _source_error(source, spec, exc) from None
    return compare(spec, f"query of {spec.name}", found)


def _source_error(source: SourceDatabase, spec: ExtractSpec, exc: Exception) -> SourceError:
    message = redact(str(exc), [source.password])
    found = source.source_engine.explain(message)
    if found and found[0] == "table":
        return SourceError(
            f"extract {spec.name}: source table {found[1]!r} does not exist in {source.describe()}"
        )
    transient = source.source_engine.is_transient(message)
    first = " ".join(message.split())[:500]
    return SourceError(
        f"schema drift check of {spec.name} failed on {source.describe()}: {first}",
        transient=transient,
    )
