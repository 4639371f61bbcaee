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
import polars as pl
from sqlglot import exp

from aps_etl.lib.redaction import redact
from aps_etl.lib.sources.database import SourceError
from aps_etl.lib.sources.specs import DRIFT_POLICIES as POLICIES
from aps_etl.lib.sources.specs import DriftPolicy, ExtractSpec
from aps_etl.lib.type_map import sql_type

if TYPE_CHECKING:
    from aps_etl.lib.sources.database import SourceDatabase


# --- Type compatibility ------------------------------------------------------------------
#
# Declared Polars type -> the source types (PostgreSQL internal names of the base type)
# whose every value reaches the lake unchanged through the extract's explicit cast. A type
# outside the set is a type change, even where PostgreSQL would cast it: numeric -> integer
# rounds, bigint -> integer may overflow, text -> integer fails on the first non-number,
# timestamp without time zone -> timestamptz reads the wall clock in the session's zone.
ACCEPTED: dict[type[pl.DataType], frozenset[str]] = {
    pl.Int32: frozenset({"int2", "int4"}),
    pl.Int64: frozenset({"int2", "int4", "int8"}),
    # Every smallint/integer is exact in a double; a bigint beyond 2^53 is not.
    pl.Float64: frozenset({"float4", "float8", "int2", "int4"}),
    # Enums are accepted too: each label casts to text unchanged.
    pl.String: frozenset({"text", "varchar", "bpchar"}),
    pl.Boolean: frozenset({"bool"}),
    pl.Date: frozenset({"date"}),
}
# Datetime with a time zone (the specs' TS, UTC) <- timestamptz; naive <- timestamp.
ACCEPTED_DATETIME = {True: frozenset({"timestamptz"}), False: frozenset({"timestamp"})}
# numeric(p, s) is accepted for an integer when it has no fraction (s <= 0) and its p - s
# integer digits always fit, and for Float64 when its p significant digits survive a double.
NUMERIC_INTEGER_DIGITS: dict[type[pl.DataType], int] = {pl.Int32: 9, pl.Int64: 18}
FLOAT64_DIGITS = 15

# Internal names as format_type() spells them (for result columns of a query spec).
_SQL_NAME = {
    "int2": "smallint",
    "int4": "integer",
    "int8": "bigint",
    "float4": "real",
    "float8": "double precision",
    "bool": "boolean",
    "varchar": "character varying",
    "bpchar": "character",
    "timestamptz": "timestamp with time zone",
    "timestamp": "timestamp without time zone",
    "timetz": "time with time zone",
    "time": "time without time zone",
}
_NUMBERS = {"int2", "int4", "int8", "float4", "float8", "numeric"}
_TEXTS = {"text", "varchar", "bpchar"}
_KNOWN = _NUMBERS | _TEXTS | set(_SQL_NAME) | {"date"}


@dataclass(frozen=True)
class SourceType:
    """A source column's type: `name` is PostgreSQL's internal name of the base type
    (int4, numeric, timestamptz, ...), `display` how an operator reads it (numeric(12,3))."""

    name: str
    display: str
    precision: int | None = None  # numeric only, None when unconstrained
    scale: int | None = None
    enum: bool = False


def _time_zone(dtype: pl.DataType | type[pl.DataType]) -> str | None:
    # Specs declare classes (pl.Int64) and instances (pl.Datetime("us", "UTC")) alike.
    return dtype.time_zone if isinstance(dtype, pl.Datetime) else None


def declared_type_name(dtype: pl.DataType | type[pl.DataType]) -> str:
    """The PostgreSQL spelling of a declared type, for messages."""
    base = dtype.base_type()
    if base is pl.Datetime:
        zone = "with" if _time_zone(dtype) else "without"
        return f"timestamp {zone} time zone"
    return sql_type(dtype).postgres


def incompatibility(declared: pl.DataType | type[pl.DataType], found: SourceType) -> str | None:
    """None when `found` carries every value of the declared type unchanged, else why not."""
    base = declared.base_type()
    declared_name = declared_type_name(declared)  # also refuses unmapped dtypes
    if base is pl.Datetime:
        zoned = _time_zone(declared) is not None
        if found.name in ACCEPTED_DATETIME[zoned]:
            return None
        if zoned and found.name == "timestamp":
            return "no time zone: its wall-clock values would be read in the session's zone"
        if not zoned and found.name == "timestamptz":
            return "a time zone where a naive timestamp was declared"
        return f"not a {declared_name}"
    if found.name in ACCEPTED[base] or (base is pl.String and found.enum):
        return None
    if found.name == "numeric":
        if base in NUMERIC_INTEGER_DIGITS:
            if found.precision is None:
                return "unconstrained numeric: fractions would be rounded, values may overflow"
            if found.scale is not None and found.scale > 0:
                return "fractions would be rounded"
            if found.precision - (found.scale or 0) > NUMERIC_INTEGER_DIGITS[base]:
                return f"values may not fit {declared_name}"
            return None
        if base is pl.Float64:
            if found.precision is not None and found.precision <= FLOAT64_DIGITS:
                return None
            return f"more than {FLOAT64_DIGITS} significant digits would be rounded"
    if base in NUMERIC_INTEGER_DIGITS and found.name in _NUMBERS:
        if found.name.startswith("float"):
            return "fractions would be rounded"
        return f"values may not fit {declared_name}"
    if base is pl.Float64 and found.name == "int8":
        return f"integers beyond 2^53 are not exact in {declared_name}"
    if base in NUMERIC_INTEGER_DIGITS or base is pl.Float64:
        return "not a number" if found.name in _TEXTS or found.enum else f"not {declared_name}"
    return f"not {declared_name}"


# --- The report --------------------------------------------------------------------------


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
_TRANSIENT_MARKERS = ("IO:", "server closed", "terminating connection", "Connection refused")


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
    if policy not in POLICIES:
        raise ValueError(f"drift policy must be one of {POLICIES}, not {policy!r}")
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
            enums = _enum_types(cursor, {t for _, t, _ in described if t not in _KNOWN})
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
            display = _SQL_NAME.get(name[1:], name[1:]) + "[]"
        else:
            display = _SQL_NAME.get(name, name)
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
    transient = any(marker in message for marker in _TRANSIENT_MARKERS)
    return SourceError(
        f"schema drift check of {spec.name} failed on {source.describe()}: "
        f"{message.splitlines()[0]}",
        transient=transient,
    )
