"""The day data set in MariaDB form: the same lots, the same seed, the same rows as the
PostgreSQL set (data.py), in a database of its own on the dev stack's MariaDB
(`bench_<set>_<rows>`, never the shared `mes`).

The stack's `mes_owner` holds rights on `mes.*` only (infra/dev_stack/mariadb.py), so it
cannot create a database: the database is created, and the two roles are granted on it
(mes_owner everything, mes_reader SELECT and SHOW VIEW, as on `mes`), by MariaDB's root
over the server's socket in the stack's state folder, authenticated by the OS user, the
way `infra/stack` administers the server (statements on stdin, no password anywhere).
`infra/stack up` revokes every grant but those on `mes` from both roles, so this runs
again at the start of every benchmark session (idempotent). The seeding itself goes over
verified TLS as mes_owner, as `aps-etl seed-source --engine mariadb` does.

The contract's MariaDB form carries the index on lot_history that the job's lot_history read
needs there (mes_source_mariadb.sql says why); the database gets one view per source read
(`bench_day__<read>`: the job's own SELECT in MariaDB's dialect, exactly the rows it
reads), which Sling copies, and a table `bench_day___dataset` holding the data set's
description (to reuse a seeded set across sessions).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from typing import Any

from aps_etl.devdata import MariaDBTarget, seed_source
from aps_etl.devdata.load_mariadb import connect, query
from aps_etl.env.stack import stack_home
from aps_etl.lib.sources.engines.registry import engine_for
from benchmarks import data

VIEW_PREFIX = "bench_day__"
# A data set seeded before the contract's MariaDB form had its lot_history index (kept in
# its description, so such a set is seeded again).
LOT_INDEX = "lot_history_lot_end in mes_source_mariadb.sql"
META_TABLE = "bench_day___dataset"
OWNER, READER = "APS_MARIADB_OWNER", "APS_MARIADB_READER"


def dialect() -> Any:
    """The MariaDB engine's dialect at the plant's default zone (+09:00), as the job's."""
    return engine_for("mariadb").dialect


def target(settings: dict[str, str], database: str, role: str = OWNER) -> MariaDBTarget:
    return MariaDBTarget(
        host=settings["APS_MARIADB_HOST"],
        port=int(settings["APS_MARIADB_PORT"]),
        database=database,
        user=settings[f"{role}_USER"],
        password=settings[f"{role}_PASSWORD"],
        sslrootcert=settings["APS_MARIADB_SSLROOTCERT"],
    )


def _admin(script: str) -> None:
    """Runs `script` as MariaDB's root over the stack's socket (infra/stack's admin path)."""
    options = stack_home() / "mariadb" / "admin.cnf"
    if not options.exists():
        raise RuntimeError(
            f"no {options}: the dev stack's MariaDB is not set up here (infra/stack up mariadb)"
        )
    done = subprocess.run(
        ["mariadb", f"--defaults-file={options}", "--batch"],
        input=script,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"MariaDB administration failed: {done.stderr.strip()[-500:]}")


def ensure_database(settings: dict[str, str], database: str) -> str:
    """`database` with the two roles granted on it as on `mes`, by MariaDB's root. Returns
    whether mes_owner could have made it itself (its grants, before ours)."""
    with connect(target(settings, settings["APS_MARIADB_DB"])) as conn:
        grants = [g for (g,) in query(conn, "SHOW GRANTS")]
    if any("ALL PRIVILEGES ON *.*" in g for g in grants):
        how = "mes_owner may create it (all privileges on *.*)"
    elif any(f"ON `{database}`.*" in g for g in grants):
        how = (
            "mes_owner holds an earlier session's grant on it (the stack itself grants it "
            "mes.* only: root created it over the stack's socket)"
        )
    else:  # the stack grants mes_owner `mes`.* only
        how = (
            "created by MariaDB's root over the stack's socket (mes_owner may not: the stack "
            "grants it mes.* only)"
        )
    host = settings["APS_MARIADB_HOST"]
    owner_user, reader_user = settings[f"{OWNER}_USER"], settings[f"{READER}_USER"]
    # the grants every session: `infra/stack up` revokes all but those on `mes`
    _admin(
        f"CREATE DATABASE IF NOT EXISTS `{database}` "
        "CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin;\n"
        f"GRANT ALL PRIVILEGES ON `{database}`.* TO '{owner_user}'@'{host}';\n"
        f"GRANT SELECT, SHOW VIEW ON `{database}`.* TO '{reader_user}'@'{host}';\n"
    )
    return how


def _existing(owner: MariaDBTarget) -> dict[str, Any] | None:
    try:
        with connect(owner) as conn:
            rows = query(conn, f"SELECT meta FROM `{META_TABLE}`")
    except Exception:
        return None
    return json.loads(rows[0][0]) if rows else None


def prepare_day(settings: dict[str, str], like: data.DataSet) -> tuple[data.DataSet, str]:
    """The day of `like` (the PostgreSQL set) seeded into MariaDB with the same lots and
    seed; reused when already there. Its reads are counted on MariaDB itself, through the
    job's own SELECTs in MariaDB's dialect. Also returns how the database was made."""
    database = like.name
    how = ensure_database(settings, database)
    owner = target(settings, database)
    existing = _existing(owner)
    if (
        existing
        and existing["partition"] == like.partition
        and existing["lots"] == like.lots
        and existing["target_rows"] == like.target_rows
        and existing.get("index") == LOT_INDEX
    ):
        for key in ("rows", "created", "index"):
            existing.pop(key, None)
        return data.DataSet(**existing), how
    day = dt.date.fromisoformat(like.partition)
    with connect(owner) as conn:  # the views and the description go first
        views = query(
            conn,
            "SELECT table_name FROM information_schema.views WHERE table_schema = DATABASE()",
        )
        for (name,) in views:
            conn.execute(f"DROP VIEW `{name}`")
        conn.execute(f"DROP TABLE IF EXISTS `{META_TABLE}`")
    report = seed_source(
        owner, start_date=day, days=1, lots=like.lots, seed=data.SEED, progress=False
    )
    reads = data.day_reads(day, like.plan_in_force, dialect())
    counts: dict[str, int] = {}
    with connect(owner) as conn:
        conn.execute("ANALYZE TABLE " + ", ".join(f"`{t}`" for t in report.rows))
        for name, sql in reads.items():
            counts[name] = int(query(conn, f"SELECT COUNT(*) FROM ({sql}) q")[0][0])
            conn.execute(f"CREATE VIEW `{VIEW_PREFIX}{name}` AS {sql}")
        dataset = data.DataSet(
            name=database,
            kind="day",
            target_rows=like.target_rows,
            partition=like.partition,
            lots=like.lots,
            seed_rows=report.total_rows,
            reads=counts,
            plan_in_force=like.plan_in_force,
        )
        meta = json.dumps({**dataset.as_json(), "created": how, "index": LOT_INDEX})
        meta = meta.replace("\\", "\\\\").replace("'", "''")
        conn.execute(f"CREATE TABLE `{META_TABLE}` (meta TEXT)")
        conn.execute(f"INSERT INTO `{META_TABLE}` VALUES ('{meta}')")
    return dataset, how


def server_version(settings: dict[str, str]) -> str:
    with connect(target(settings, settings["APS_MARIADB_DB"], READER)) as conn:
        return str(query(conn, "SELECT VERSION()")[0][0])
