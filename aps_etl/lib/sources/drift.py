"""Source schema drift (PRD 6.2): the live source measured against an ExtractSpec's columns.

The declared `columns` of a spec are the contract. `detect_drift` reads what the source
has now and reports three kinds of change:

- added: a source column the spec does not declare. Harmless to the extract, which selects
  the declared columns by name (`ExtractSpec.select_sql`), so the lake never sees it;
- removed: a declared column the source no longer has. The extract would fail on it;
- changed: a declared column whose source type no longer carries every value unchanged
  through the extract's cast to the declared type (`ACCEPTED` below). The extract might
  fail, or worse succeed with other values (numeric(12,3) cast to integer rounds).

Where the source columns come from:

- a spec with a `table` (every mode but `query` has one; a `query` spec may name one): the
  catalog, in one query on pg_class / pg_attribute / pg_type. The table is looked up in
  `schema` (default public; a schema-qualified `table` wins; `schema=None` resolves it
  through the search_path, as the extract's own SELECT does). Views, materialized views,
  partitioned and foreign tables count as tables. Domains are measured by their base type.
- a `query` spec without a table: the query's result columns, as PostgreSQL describes the
  prepared statement (ADBC `execute_schema`: Parse/Describe, nothing is executed and no
  row is read; read-only replicas allow it), with `{start}` / `{end}` filled by a fixed
  timestamptz. These are exactly the columns the extract's subquery yields, whatever the
  query's shape; types come as the base type's name, with precision/scale for numeric.

A table that does not exist is not drift: it raises SourceError naming it, as the extract
would. What to do about drift is a `DriftPolicy` (see `check_drift`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import dagster as dg
from sqlglot import exp

from aps_etl.lib.redaction import redact
from aps_etl.lib.sources.database import SourceError, is_transient
from aps_etl.lib.sources.source_types import (
    KNOWN_TYPES,
    SQL_NAMES,
    SourceType,
    declared_type_name,
    incompatibility,
)
from aps_etl.lib.sources.specs import DRIFT_POLICIES, DriftPolicy, ExtractSpec

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

# One row per column of the relation (one row with a null column for a table without any,
# none when there is no such table). Domains are resolved to their base type and typmod.
_CATALOG_SQL = """
select a.attname::text as column_name,
       format_type(a.atttypid, a.atttypmod) as display,
       coalesce(b.typname, t.typname)::text as type_name,
       case when t.typtype = 'd' then t.typtypmod else a.atttypmod end as type_mod,
       coalesce(b.typtype, t.typtype)::text as type_kind
from pg_class c
left join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
left join pg_type t on t.oid = a.atttypid
left join pg_type b on t.typtype = 'd' and b.oid = t.typbasetype
where c.oid = to_regclass({regclass})
  and c.relkind in ('r', 'p', 'v', 'm', 'f')
order by a.attnum
"""
# Any valid timestamptz fills a query spec's window: its statement is described, not run.
_PROBE_TS = "CAST('2000-01-01T00:00:00+00:00' AS TIMESTAMPTZ)"


def detect_drift(
    source: SourceDatabase, spec: ExtractSpec, schema: str | None = "public"
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
    schema: str | None = "public",
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
    table = exp.to_table(spec.source_table, dialect="postgres")  # = spec.table: called when set
    schema = table.db or schema
    name = f"{schema}.{table.name}" if schema else table.name
    shown = table.name if schema in (None, "public") else name
    parts = [table.name] if schema is None else [schema, table.name]
    regclass = "format({}, {})".format(
        _literal(".".join(["%I"] * len(parts))), ", ".join(_literal(p) for p in parts)
    )
    try:
        rows = source.fetch_arrow(_CATALOG_SQL.format(regclass=regclass)).to_pylist()
    except SourceError:
        raise
    except Exception as exc:
        raise _source_error(source, spec, exc) from None
    if not rows:
        raise SourceError(
            f"extract {spec.name}: source table {name!r} does not exist in {source.describe()}"
        )
    found = [
        (
            row["column_name"],
            _source_type(
                row["type_name"],
                row["type_mod"],
                display=row["display"],
                enum=row["type_kind"] == "e",
            ),
        )
        for row in rows
        if row["column_name"] is not None
    ]
    relation = f"table {shown}" if shown == spec.name else f"table {shown} (extract {spec.name})"
    return compare(spec, relation, found)


def _query_drift(source: SourceDatabase, spec: ExtractSpec) -> SchemaDrift:
    sql = spec.query.format(start=_PROBE_TS, end=_PROBE_TS)  # type: ignore[union-attr]
    with source.connect() as connection, connection.cursor() as cursor:  # type: ignore[attr-defined]
        try:
            result = cursor.adbc_execute_schema(sql)
            described = []
            for field in result:
                meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
                typmod = meta.get("POSTGRESQL:typmod")
                described.append(
                    (field.name, meta.get("POSTGRESQL:type", ""), int(typmod) if typmod else -1)
                )
            enums = _enum_types(cursor, {t for _, t, _ in described if t not in KNOWN_TYPES})
        except Exception as exc:
            raise _source_error(source, spec, exc) from None
    found = [(n, _source_type(t, m, enum=t in enums)) for n, t, m in described]
    return compare(spec, f"query of {spec.name}", found)


def _enum_types(cursor: object, names: set[str]) -> set[str]:
    """Which of these type names are enums (a query's description names types only)."""
    if not names:
        return set()
    listed = ", ".join(_literal(n) for n in sorted(names))
    cursor.execute(  # type: ignore[attr-defined]
        f"select typname::text from pg_type where typtype = 'e' and typname in ({listed})"
    )
    return {row[0] for row in cursor.fetchall()}  # type: ignore[attr-defined]


def _source_type(
    name: str, typmod: int | None, *, display: str | None = None, enum: bool = False
) -> SourceType:
    precision = scale = None
    if name == "numeric" and typmod is not None and typmod >= 4:
        # PostgreSQL's numeric typmod: ((precision << 16) | (scale & 0x7ff)) + 4, the scale
        # an 11-bit signed number (negative scales exist since PostgreSQL 15).
        packed = typmod - 4
        precision = (packed >> 16) & 0xFFFF
        scale = packed & 0x7FF
        scale = scale - 0x800 if scale & 0x400 else scale
    if display is None:
        if precision is not None:
            display = f"numeric({precision},{scale})"
        elif name.startswith("_"):
            display = SQL_NAMES.get(name[1:], name[1:]) + "[]"
        else:
            display = SQL_NAMES.get(name, name)
    return SourceType(name, display, precision, scale, enum)


def _literal(value: str) -> str:
    return exp.Literal.string(value).sql(dialect="postgres")


def _source_error(source: SourceDatabase, spec: ExtractSpec, exc: Exception) -> SourceError:
    message = redact(str(exc), [source.password])
    missing = re.search(r'relation "([^"]+)" does not exist', message)
    if missing:
        return SourceError(
            f"extract {spec.name}: source table {missing.group(1)!r} does not exist in "
            f"{source.describe()}"
        )
    transient = is_transient(message)
    return SourceError(
        f"schema drift check of {spec.name} failed on {source.describe()}: "
        f"{message.splitlines()[0]}",
        transient=transient,
    )
