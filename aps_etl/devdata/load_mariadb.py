"""The synthetic plant into a MariaDB/MySQL source (mes_source_mariadb.sql), over ODBC.

The same tables build_dataset makes for PostgreSQL, in the contract's MariaDB types: every
timestamp as the plant's wall-clock time in Asia/Seoul (naive DATETIME(6), microseconds
kept), booleans as 0/1. Loaded with arrow-odbc and MariaDB's ODBC driver ("MariaDB Unicode"),
which sends each chunk of rows as one bulk statement (parameter arrays).

Readers never see a half-loaded source: the tables are created and filled as
``<table>__new``, then one multi-table RENAME TABLE (atomic in MariaDB) puts all nine in
place of the old ones, which are dropped afterwards. InnoDB moves the foreign keys with
their tables: a new child's key follows its parent's rename, and the generated key names
(``<table>_ibfk_<n>``) follow the table's name, so the final DDL is the contract's.

Errors name host, port and database only: the password never reaches a message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from importlib import resources

import pyarrow as pa
import pyarrow.compute as pc

from .load import TABLES, SeedError, split_statements

PLANT_TIME_ZONE = "Asia/Seoul"
ODBC_DRIVER = "MariaDB Unicode"  # Debian's odbc-mariadb, in /etc/odbcinst.ini
NEW, OLD = "__new", "__old"
CHUNK_ROWS = 20_000  # rows per bulk statement


@dataclass(frozen=True)
class MariaDBTarget:
    """Where and as whom to load. ``sslrootcert``: the CA file the server's certificate is
    verified against (TLS required); None only for a test's own server on loopback."""

    host: str
    port: int
    database: str
    user: str
    password: str = field(repr=False)
    sslrootcert: str | None = None

    def describe(self) -> str:
        return f"host={self.host} port={self.port} db={self.database}"

    def connection_string(self) -> str:
        """The ODBC connection string, without user and password (passed on their own)."""
        text = (
            f"Driver={{{ODBC_DRIVER}}};Server={self.host};Port={self.port};"
            f"Database={self.database};"
        )
        if self.sslrootcert:
            # FORCETLS: no plain fallback; SSLVERIFY: the certificate and its host name.
            text += f"SSLCA={{{self.sslrootcert}}};SSLVERIFY=1;FORCETLS=1;"
        return text


def contract_sql_mariadb() -> str:
    """mes_source_mariadb.sql: the contract in MariaDB form, shipped with the package."""
    return (
        resources.files(__package__).joinpath("mes_source_mariadb.sql").read_text(encoding="utf-8")
    )


# The driver's error codes that have a plainer cause (MariaDB's client error numbers).
CAUSES = {
    1045: "wrong user or password",
    1044: "no access to the database",
    1049: "no such database",
    2002: "MariaDB unreachable",
    2003: "MariaDB unreachable",
    2005: "unknown host",
    2013: "connection lost",
    2026: "TLS failed",
}


def _one_line(exc: BaseException, target: MariaDBTarget) -> str:
    """The driver's diagnostic on one line, its cause first: arrow-odbc wraps it as
    "ODBC emitted an error calling '...': State: ..., Native error: N, Message: [ma-x]..."."""
    message = getattr(exc, "message", None)
    text = str(message() if callable(message) else exc).strip()
    code = re.search(r"Native error: (\d+)", text)
    text = re.sub(r"\[ma-[\d.]+\]", "", text.rpartition("Message: ")[2] or text)
    text = " ".join(text.split()) or type(exc).__name__
    if code and int(code[1]) in CAUSES:
        cause = CAUSES[int(code[1])]
        if int(code[1]) == 1045 and not target.sslrootcert:  # an account that REQUIREs SSL
            cause += ", or the account requires TLS (connected without: no CA file given)"
        text = f"{cause} ({text})"
    return text.replace(target.password, "***") if target.password else text


@contextmanager
def connect(target: MariaDBTarget, autocommit: bool = True) -> Iterator:
    import arrow_odbc

    try:
        conn = arrow_odbc.connect(
            target.connection_string(),
            user=target.user,
            password=target.password,
            login_timeout_sec=10,
            autocommit=autocommit,
        )
    except Exception as exc:  # arrow_odbc.Error: the driver's diagnostics
        detail = _one_line(exc, target)
        raise SeedError(f"cannot connect to MariaDB {target.describe()}: {detail}") from None
    yield conn  # arrow-odbc closes the connection when the object is freed


def query(conn, sql: str) -> list[tuple]:
    """The rows of a query (small results: catalog lookups, checks)."""
    rows: list[tuple] = []
    for batch in conn.read_arrow_batches(sql, max_text_size=4096):
        rows += [tuple(r.values()) for r in batch.to_pylist()]
    return rows


def to_mariadb(table: pa.Table) -> pa.Table:
    """A contract table in the MariaDB types: UTC instants as Asia/Seoul wall-clock naive
    timestamps (microseconds kept), booleans as 0/1."""
    columns = []
    for column in table.columns:
        if pa.types.is_timestamp(column.type):
            local = column.cast(pa.timestamp("us", tz=column.type.tz or "UTC"))
            local = local.cast(pa.timestamp("us", tz=PLANT_TIME_ZONE))
            columns.append(pc.local_timestamp(local))
        elif pa.types.is_boolean(column.type):
            columns.append(column.cast(pa.int8()))
        else:
            columns.append(column)
    return pa.table(columns, names=table.column_names)


def contract_statements(suffix: str, comment: str) -> list[str]:
    """The contract's CREATE TABLEs for tables named ``<table><suffix>`` (foreign keys
    pointing at the suffixed tables too), each with the seed's comment."""
    names = "|".join(TABLES)
    pattern = re.compile(rf"\b(CREATE TABLE|REFERENCES) ({names})\b")
    literal = "'" + comment.replace("\\", "\\\\").replace("'", "\\'") + "'"
    statements = []
    for statement in split_statements(contract_sql_mariadb()):
        renamed = pattern.sub(lambda m: f"{m[1]} {m[2]}{suffix}", statement)
        statements.append(f"{renamed} COMMENT = {literal}")
    return statements


def _drop(conn, tables: list[str]) -> None:
    """Drops tables that may reference each other (leftovers of an earlier failed load, the
    old set after the swap): foreign key checks off in this session only for the drop."""
    if not tables:
        return
    conn.execute("SET SESSION foreign_key_checks = 0")
    try:
        conn.execute("DROP TABLE IF EXISTS " + ", ".join(f"`{t}`" for t in tables))
    finally:
        conn.execute("SET SESSION foreign_key_checks = 1")


def load_tables_mariadb(
    target: MariaDBTarget,
    tables: dict[str, pa.Table],
    *,
    replace: bool,
    comment: str,
    on_table: Callable[[str, int], None] = lambda name, rows: None,
    chunk_rows: int = CHUNK_ROWS,
) -> None:
    """Creates ``<table>__new``, fills it, swaps all nine in with one RENAME TABLE.

    replace=False loads only where no contract table holds a row (never mixes two data
    sets); the swap is the same either way."""
    with connect(target) as conn:
        try:
            present = {
                name
                for (name,) in query(
                    conn,
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = DATABASE()",
                )
            }
            if not replace:
                for name in TABLES:
                    if name in present and query(conn, f"SELECT 1 FROM `{name}` LIMIT 1"):
                        raise SeedError(
                            f"table {name} already holds data; use replace=True to reseed"
                        )
            _drop(conn, [t + s for s in (NEW, OLD) for t in TABLES if t + s in present])
            for statement in contract_statements(NEW, comment):
                conn.execute(statement)
            for name in TABLES:
                data = to_mariadb(tables[name])
                if data.num_rows:
                    conn.from_table_to_db(data, f"`{name}{NEW}`", chunk_size=chunk_rows)
                on_table(name, data.num_rows)
            renames = [f"`{t}` TO `{t}{OLD}`" for t in TABLES if t in present]
            renames += [f"`{t}{NEW}` TO `{t}`" for t in TABLES]
            conn.execute("RENAME TABLE " + ", ".join(renames))
            on_table("swapped in", len(TABLES))
            _drop(conn, [t + OLD for t in TABLES if t in present])
        except SeedError:
            raise
        except Exception as exc:
            detail = _one_line(exc, target)
            with suppress(Exception):  # the half-filled staging tables, if we still can
                _drop(conn, [t + NEW for t in TABLES])
            raise SeedError(
                f"loading the MariaDB source at {target.describe()} failed: {detail}"
            ) from None
