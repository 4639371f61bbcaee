"""Schema application and bulk load into the source database (ADBC, binary COPY).

The whole replace (drop, create, COPY of every table, comments) runs in one transaction:
readers see either the previous data set or the new one, never a half-loaded source. The
foreign keys are re-created after the COPY inside that transaction (see
detach_foreign_keys); primary keys, checks and indexes stay in place throughout.
Connection errors name host, port and database only: the URI (and its password) never
reaches a message, a log line or an exception chain.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from importlib import resources
from urllib.parse import parse_qs, quote, unquote, urlsplit

import adbc_driver_postgresql.dbapi as pg
import pyarrow as pa

# Contract tables in dependency order (referenced tables first).
TABLES = (
    "product",
    "route_step",
    "equipment",
    "lot_history",
    "process_result",
    "equipment_event",
    "plan_run",
    "plan_production",
    "plan_equipment",
)


class SeedError(RuntimeError):
    """Seeding failed; the message never contains credentials."""


def contract_sql() -> str:
    """mes_source.sql, a verbatim copy of the customer's contract shipped with the package."""
    return resources.files(__package__).joinpath("mes_source.sql").read_text(encoding="utf-8")


def split_statements(sql: str) -> list[str]:
    """Splits a script on ';' outside quotes and comments (ADBC runs one statement a call)."""
    statements, buf = [], []
    i, n = 0, len(sql)
    open_quote: str | None = None
    while i < n:
        c = sql[i]
        if open_quote:
            buf.append(c)
            if c == open_quote:
                open_quote = None
        elif c in ("'", '"'):
            open_quote = c
            buf.append(c)
        elif sql.startswith("--", i):
            i = sql.find("\n", i)
            if i < 0:
                break
            continue
        elif c == ";":
            statements.append("".join(buf).strip())
            buf = []
        else:
            buf.append(c)
        i += 1
    statements.append("".join(buf).strip())
    return [s for s in statements if s]


def _conninfo(uri: str) -> dict[str, str]:
    """libpq settings of a URI (``postgresql://user:pw@host:port/db?k=v``) or of a
    ``key=value`` string; unparsable input gives what could be read."""
    if "://" not in uri:
        return {k: v.strip("'") for k, v in re.findall(r"(\w+)\s*=\s*('[^']*'|\S+)", uri)}
    info: dict[str, str] = {}
    with suppress(ValueError):  # e.g. a bad port: keep what was read before
        parts = urlsplit(uri)
        info["password"] = unquote(parts.password or "")
        info["host"] = unquote(parts.hostname or "")
        info["port"] = str(parts.port or "")
        info["dbname"] = unquote(parts.path.lstrip("/"))
        info.update({k: v[0] for k, v in parse_qs(parts.query).items()})
    return {k: v for k, v in info.items() if v}


def describe_target(uri: str) -> str:
    """host=..., port=..., db=...: enough to find the server, nothing secret."""
    info = _conninfo(uri)
    host = info.get("host", "localhost")
    return f"host={host} port={info.get('port', '5432')} db={info.get('dbname', '(default)')}"


def _scrub(message: str, uri: str) -> str:
    message = message.replace(uri, "<uri>")
    passwords = {_conninfo(uri).get("password", "")}
    with suppress(ValueError):  # the user-info one, even when the query sets another
        passwords.add(unquote(urlsplit(uri).password or ""))
    for password in passwords - {""}:
        for form in {password, quote(password, safe="")}:
            message = message.replace(form, "***")
    return message


@contextmanager
def connect(uri: str) -> Iterator[pg.Connection]:
    try:
        conn = pg.connect(uri)
    except Exception as exc:  # driver errors: OperationalError, ProgrammingError, ...
        detail = _scrub(str(exc).strip(), uri)
        # from None: the driver's exception is not chained, so nothing else can leak.
        raise SeedError(f"cannot connect to PostgreSQL {describe_target(uri)}: {detail}") from None
    try:
        yield conn
    finally:
        conn.close()


def existing_tables(cur: pg.Cursor) -> list[str]:
    names = ", ".join(f"'{t}'" for t in TABLES)  # constants, not user input
    cur.execute(
        "select table_name from information_schema.tables "
        f"where table_schema = current_schema() and table_name in ({names})"
    )
    return [row[0] for row in cur.fetchall()]


def prepare_schema(cur: pg.Cursor, *, replace: bool) -> None:
    """replace: drop and recreate the contract tables. Otherwise create them when absent and
    accept existing ones only when all are there and empty (never mix two data sets)."""
    if replace:
        # No CASCADE: a foreign view on these tables makes this fail loudly, not vanish.
        cur.execute("drop table if exists " + ", ".join(reversed(TABLES)))
        present: list[str] = []
    else:
        present = existing_tables(cur)
    if not present:
        for statement in split_statements(contract_sql()):
            cur.execute(statement)
        return
    missing = sorted(set(TABLES) - set(present))
    if missing:
        raise SeedError(f"source schema is incomplete (missing {', '.join(missing)}); use replace")
    for table in TABLES:
        cur.execute(f"select exists (select 1 from {table})")
        if cur.fetchone()[0]:
            raise SeedError(f"table {table} already holds data; use replace=True to reseed")


def detach_foreign_keys(cur: pg.Cursor) -> list[tuple[str, str, str]]:
    """Drops the contract tables' foreign keys and returns (table, name, definition) to
    re-add them after the COPY. A key added to a filled table is validated by one join,
    whereas COPY into a table with the key fires a check per row (about 3x slower at 1M
    rows). Same name and definition: the final DDL is the contract's."""
    tables = ", ".join(f"'{t}'" for t in TABLES)
    cur.execute(
        "select conrelid::regclass::text, quote_ident(conname), pg_get_constraintdef(oid) "
        f"from pg_constraint where contype = 'f' and conrelid = any(array[{tables}]::regclass[]) "
        "order by oid"
    )
    keys = [(t, n, d) for t, n, d in cur.fetchall()]
    for table, name, _ in keys:
        cur.execute(f"alter table {table} drop constraint {name}")
    return keys


def attach_foreign_keys(cur: pg.Cursor, keys: list[tuple[str, str, str]]) -> None:
    for table, name, definition in keys:
        cur.execute(f"alter table {table} add constraint {name} {definition}")


def comment_tables(cur: pg.Cursor, text: str) -> None:
    literal = "'" + text.replace("'", "''") + "'"
    for table in TABLES:
        cur.execute(f"comment on table {table} is {literal}")


def load_tables(
    uri: str,
    tables: dict[str, pa.Table],
    *,
    replace: bool,
    comment: str,
    on_table: Callable[[str, int], None] = lambda name, rows: None,
) -> None:
    """Prepares the schema and COPYs every table inside one transaction."""
    with connect(uri) as conn:
        try:
            with conn.cursor() as cur:
                prepare_schema(cur, replace=replace)
                comment_tables(cur, comment)
                keys = detach_foreign_keys(cur)
                for name in TABLES:
                    cur.adbc_ingest(name, tables[name], mode="append")
                    on_table(name, tables[name].num_rows)
                attach_foreign_keys(cur, keys)
                on_table("foreign keys", len(keys))
            conn.commit()
        except SeedError:
            conn.rollback()
            raise
        except Exception as exc:
            conn.rollback()
            detail = _scrub(str(exc).strip(), uri)
            raise SeedError(
                f"loading the source at {describe_target(uri)} failed: {detail}"
            ) from None
