"""The day's source reads from PostgreSQL and from MariaDB, each tool in a process of its own.

    python -m benchmarks.engines SPEC_JSON OUT_JSON

Every tool reads every SELECT of `data.day_reads` for the data set's day (the seven
extracts of scenario 1 and the snapshot of the plan in force: the job's own SELECTs, in
the engine's dialect), one after the other on one connection:

- `ours_postgres` / `ours_mariadb`: `SourceDatabase(engine=...).extract(spec, start, end)`
  (or `key=` for the plan snapshot): the job's extract read, one consistent snapshot
  transaction per read, the rows typed as declared (MariaDB's wall clocks to UTC
  instants), a Polars frame; then, as its own stage, the frame written to a local Parquet
  file as the lake writes it (zstd, statistics). What the daily job's extract step does
  without its drift check, fingerprint, source checks and upload, and one read at a time
  (the job runs three side by side);
- `floor_postgres`: a raw ADBC read of the same PostgreSQL SELECTs into Arrow, written to
  Parquet (zstd): peers.run_floor's read half;
- `floor_mariadb`: a raw arrow-odbc read of the same MariaDB SELECTs (MariaDB's ODBC
  driver, verified TLS, the transfer parameters our engine uses) into Arrow, written to
  Parquet (zstd): no session settings, no transaction, no type conversion;
- `sling_mariadb` / `sling_postgres`: Sling's Go engine copying the views of those SELECTs
  (`bench_day__<read>` in MariaDB, `bench_day.<read>` in PostgreSQL) into a schema of the
  target PostgreSQL, `full-refresh`, as the `sling` peer of peers.py is measured (Sling
  streams source to target, no Parquet in between: its time is all "load").

Connection settings arrive in the environment (APS_BENCH_ENGINE_*), never in the spec.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TOOLS = (
    "ours_postgres",
    "ours_mariadb",
    "floor_postgres",
    "floor_mariadb",
    "sling_postgres",
    "sling_mariadb",
)
LABELS = {
    "ours_postgres": "aps-etl SourceDatabase.extract, PostgreSQL (ADBC) -> Parquet",
    "ours_mariadb": "aps-etl SourceDatabase.extract, MariaDB (arrow-odbc) -> Parquet",
    "floor_postgres": "floor: raw ADBC read of the PostgreSQL SELECTs -> Parquet",
    "floor_mariadb": "floor: raw arrow-odbc read of the MariaDB SELECTs -> Parquet",
    "sling_postgres": "Sling PostgreSQL -> PostgreSQL (streamed, full-refresh)",
    "sling_mariadb": "Sling MariaDB -> PostgreSQL (streamed, full-refresh)",
}
ENGINE_OF_TOOL = {tool: tool.split("_", 1)[1] for tool in TOOLS}
# the environment a tool's process gets its connections from (set by the parent)
PG_SOURCE_URI = "APS_BENCH_ENGINE_PG_URI"  # the PostgreSQL set, as mes_reader
TARGET_URI = "APS_BENCH_ENGINE_TARGET_URI"  # the target database, as aps_loader (Sling)
MARIADB_VARS = ("HOST", "PORT", "DB", "USER", "PASSWORD", "SSLROOTCERT")
MARIADB_PREFIX = "APS_BENCH_ENGINE_MARIADB_"


def mariadb_settings() -> dict[str, str]:
    return {k.lower(): os.environ[MARIADB_PREFIX + k] for k in MARIADB_VARS}


def _reads(spec: dict[str, Any], engine: str) -> dict[str, str]:
    from aps_etl.lib.sources.engines.registry import engine_for
    from benchmarks.data import day_reads

    day = dt.date.fromisoformat(spec["day"])
    dialect = engine_for("postgresql" if engine == "postgres" else "mariadb").dialect
    return day_reads(day, spec["plan_in_force"], dialect)


def run_ours(spec: dict[str, Any], work: Path, engine: str) -> tuple[dict[str, float], dict]:
    from aps_etl.lib.business_days import business_day_window
    from aps_etl.lib.sources.database import SourceDatabase
    from aps_etl.lib.sources.mes import DAILY_SOURCES, PLAN_EQUIPMENT, PLAN_PRODUCTION

    if engine == "postgres":
        from urllib.parse import unquote, urlsplit

        uri = urlsplit(os.environ[PG_SOURCE_URI])
        source = SourceDatabase(
            database=uri.path.lstrip("/"),
            host=uri.hostname,
            port=uri.port,
            user=unquote(uri.username or ""),
            password=unquote(uri.password or ""),
        )
    else:
        m = mariadb_settings()
        source = SourceDatabase(
            engine="mariadb",
            host=m["host"],
            port=int(m["port"]),
            database=m["db"],
            user=m["user"],
            password=m["password"],
            sslmode="verify-full",
            sslrootcert=m["sslrootcert"],
        )
    start, end = business_day_window(dt.date.fromisoformat(spec["day"]))
    jobs: list[tuple[Any, dict[str, Any]]] = [
        (s, {"start": start, "end": end}) for s in DAILY_SOURCES
    ]
    if spec["plan_in_force"]:
        jobs += [(s, {"key": spec["plan_in_force"]}) for s in (PLAN_PRODUCTION, PLAN_EQUIPMENT)]
    stages = {"extract": 0.0, "lake_write": 0.0}
    rows: dict[str, int] = {}
    per_read: dict[str, float] = {}
    for extract_spec, window in jobs:
        t = time.perf_counter()
        frame = source.extract(extract_spec, **window)
        took = time.perf_counter() - t
        stages["extract"] += took
        per_read[extract_spec.name] = took
        rows[extract_spec.name] = frame.height
        t = time.perf_counter()
        path = work / f"{extract_spec.name}.parquet"
        frame.write_parquet(path, compression="zstd", statistics=True)  # as the lake writes
        stages["lake_write"] += time.perf_counter() - t
        del frame
    return stages, {"rows": rows, "extract_per_read_s": per_read}


def run_floor_postgres(spec: dict[str, Any], work: Path) -> tuple[dict[str, float], dict]:
    import adbc_driver_postgresql.dbapi as adbc
    import pyarrow.parquet as pq

    stages = {"extract": 0.0, "lake_write": 0.0}
    rows: dict[str, int] = {}
    per_read: dict[str, float] = {}
    with adbc.connect(os.environ[PG_SOURCE_URI]) as conn, conn.cursor() as cur:
        for name, sql in _reads(spec, "postgres").items():
            t = time.perf_counter()
            cur.execute(sql)
            table = cur.fetch_arrow_table()
            per_read[name] = time.perf_counter() - t
            stages["extract"] += per_read[name]
            rows[name] = table.num_rows
            t = time.perf_counter()
            pq.write_table(table, work / f"{name}.parquet", compression="zstd")
            stages["lake_write"] += time.perf_counter() - t
            del table
        conn.commit()
    return stages, {"rows": rows, "extract_per_read_s": per_read}


def run_floor_mariadb(spec: dict[str, Any], work: Path) -> tuple[dict[str, float], dict]:
    import arrow_odbc
    import pyarrow as pa
    import pyarrow.parquet as pq

    from aps_etl.lib.sources.engines.base import Endpoint
    from aps_etl.lib.sources.engines.mariadb import MAX_TEXT_BYTES
    from aps_etl.lib.sources.engines.registry import engine_for

    m = mariadb_settings()
    endpoint = Endpoint(
        database=m["db"], host=m["host"], port=int(m["port"]), user=m["user"],
        password=m["password"], tls="verify-full", ca_file=m["sslrootcert"],
    )  # fmt: skip
    connection_string = engine_for("mariadb").connection_string(endpoint)  # type: ignore[attr-defined]
    stages = {"extract": 0.0, "lake_write": 0.0}
    rows: dict[str, int] = {}
    per_read: dict[str, float] = {}
    conn = arrow_odbc.connect(
        connection_string, user=m["user"], password=m["password"], login_timeout_sec=10
    )
    for name, sql in _reads(spec, "mariadb").items():
        t = time.perf_counter()
        reader = conn.read_arrow_batches(sql, batch_size=65_536, max_text_size=MAX_TEXT_BYTES)
        table = pa.Table.from_batches(list(reader), schema=reader.schema)
        per_read[name] = time.perf_counter() - t
        stages["extract"] += per_read[name]
        rows[name] = table.num_rows
        t = time.perf_counter()
        pq.write_table(table, work / f"{name}.parquet", compression="zstd")
        stages["lake_write"] += time.perf_counter() - t
        del table
    return stages, {"rows": rows, "extract_per_read_s": per_read}


def sling_mariadb_url() -> str:
    """Sling's MySQL connection (Go's mysql driver) with TLS verified against the stack's
    CA: `tls=true` checks the chain and the host name against the system's roots, which
    Go reads from SSL_CERT_FILE (set to the stack's CA in run_sling). Sling's own
    `cert_ca_file` is ignored by this build's MySQL connector (tried: it connects without
    TLS, which the server refuses; `tls=custom` is an unknown config name)."""
    from urllib.parse import quote

    m = mariadb_settings()
    return (
        f"mysql://{quote(m['user'], safe='')}:{quote(m['password'], safe='')}@{m['host']}:"
        f"{m['port']}/{m['db']}?tls=true"
    )


def run_sling(spec: dict[str, Any], work: Path, engine: str) -> tuple[dict[str, float], dict]:
    import yaml

    from benchmarks.peers import _no_tls, sling_binary

    names = list(_reads(spec, engine))
    tls: dict[str, str] = {}
    if engine == "postgres":
        streams = {f"bench_day.{name}": {"object": f"{spec['schema']}.{name}"} for name in names}
        source = _no_tls(os.environ[PG_SOURCE_URI])
    else:
        from benchmarks.mariadb_source import VIEW_PREFIX

        streams = {
            f"{spec['mariadb_db']}.{VIEW_PREFIX}{name}": {"object": f"{spec['schema']}.{name}"}
            for name in names
        }
        source = sling_mariadb_url()
        tls["SSL_CERT_FILE"] = mariadb_settings()["sslrootcert"]  # Go's x509 roots
    replication = {
        "source": "APS_BENCH_SLING_SOURCE",
        "target": "APS_BENCH_SLING_TARGET",
        "defaults": {"mode": "full-refresh"},
        "streams": streams,
    }
    path = work / "replication.yaml"
    path.write_text(yaml.safe_dump(replication))
    env = {
        **os.environ,
        "APS_BENCH_SLING_SOURCE": source,
        "APS_BENCH_SLING_TARGET": _no_tls(os.environ[TARGET_URI]),
        "SLING_HOME_DIR": str(work / "sling_home"),
        "SLING_DISABLE_TELEMETRY": "true",
        "SLING_BINARY": sling_binary(),
        **tls,
    }
    t = time.perf_counter()
    done = subprocess.run(
        [sling_binary(), "run", "-r", str(path)], env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - t
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-2000:]
        for secret in (source, os.environ[TARGET_URI], mariadb_settings()["password"]):
            tail = tail.replace(secret, "***")
        raise RuntimeError(f"sling failed:\n{tail}")
    return {"extract": 0.0, "lake_write": 0.0, "load": seconds}, {}


def main(spec_path: str, out_path: str) -> int:
    from benchmarks.run_case import first_to_go, own_peak_rss_mb

    first_to_go()
    spec = json.loads(Path(spec_path).read_text())
    work = Path(spec["work"])
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    began = time.perf_counter()
    tool = spec["tool"]
    engine = ENGINE_OF_TOOL[tool]
    if tool.startswith("ours_"):
        stages, detail = run_ours(spec, work, engine)
    elif tool == "floor_postgres":
        stages, detail = run_floor_postgres(spec, work)
    elif tool == "floor_mariadb":
        stages, detail = run_floor_mariadb(spec, work)
    elif tool.startswith("sling_"):
        stages, detail = run_sling(spec, work, engine)
    else:
        raise SystemExit(f"unknown tool {tool!r}; one of {', '.join(TOOLS)}")
    seconds = time.perf_counter() - began
    work_end_epoch = time.time()
    peak_rss_mb = own_peak_rss_mb()
    parquet_bytes = sum(p.stat().st_size for p in work.glob("*.parquet"))
    shutil.rmtree(work, ignore_errors=True)
    Path(out_path).write_text(
        json.dumps(
            {
                "success": True,
                "seconds": seconds,
                "work_end_epoch": work_end_epoch,
                "peak_rss_mb": peak_rss_mb,
                "stages": stages,
                "parquet_bytes": parquet_bytes,
                **detail,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
