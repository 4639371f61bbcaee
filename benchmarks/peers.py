"""The tools a user would pick instead, moving the same rows in a process of their own.

    python -m benchmarks.peers SPEC_JSON OUT_JSON

Every peer copies the data set's `bench_day` views (exactly the rows, with the declared
types, that our job reads from the source; see data.py) into its own schema of the
target database, stage by stage:

- `pandas`: the naive pipeline the PRD implies: `pandas.read_sql` over SQLAlchemy
  (psycopg2) -> `DataFrame.to_parquet` -> `read_parquet` + `DataFrame.to_sql`, all defaults;
- `dlt` / `dlt_pyarrow`: dlt's `sql_database` source -> its `postgres` destination,
  `write_disposition="replace"`, with its default backend (SQLAlchemy rows) and with
  `backend="pyarrow"`; dlt's own stages: extract, normalize (its load files), load;
- `sling`: Sling's Go engine (the one behind dagster-sling; PyPI `sling-linux-amd64`'s
  binary, run as the `sling` wrapper runs it), a replication of the views into the
  schema, `full-refresh`; it streams source to target with no Parquet in between (its
  Parquet targets want a DuckDB download, refused here), so its time is all "load";
- `floor`: ADBC read -> Parquet (zstd, as our lake) -> ADBC COPY; no orchestration, the
  least work that moves these rows through a Parquet file.

Each round starts from nothing: the peer's target schema dropped and dlt's pipeline state
removed (the parent does that, outside the timing).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

PEERS = ("pandas", "dlt", "dlt_pyarrow", "sling", "floor")
# Connection URIs arrive in the environment, never in the spec file.
SOURCE_VAR, TARGET_VAR = "APS_BENCH_SOURCE_URI", "APS_BENCH_TARGET_URI"
PEER_LABELS = {
    "pandas": "pandas read_sql -> to_parquet -> to_sql",
    "dlt": "dlt sql_database -> postgres (default backend)",
    "dlt_pyarrow": "dlt sql_database -> postgres (pyarrow backend)",
    "sling": "Sling PostgreSQL -> PostgreSQL (streamed, full-refresh)",
    "floor": "floor: ADBC read -> Parquet -> ADBC COPY",
}


def target_schema(peer: str, dataset: str) -> str:
    """The peer's schema in the target database, one per data set: runs of two scales
    (the smoke run, a full run) never share one."""
    return f"{dataset}_{peer}"


def sqlalchemy_url(uri: str) -> str:
    return "postgresql+psycopg2://" + uri.split("://", 1)[1]


def run_pandas(spec: dict[str, Any], work: Path) -> dict[str, float]:
    import pandas as pd
    import sqlalchemy as sa

    source = sa.create_engine(sqlalchemy_url(spec["source"]))
    target = sa.create_engine(sqlalchemy_url(spec["target"]))
    stages = {"extract": 0.0, "lake_write": 0.0, "load": 0.0}
    paths = {}
    for name in spec["tables"]:
        t = time.perf_counter()
        frame = pd.read_sql(f"select * from {spec['view_schema']}.{name}", source)
        stages["extract"] += time.perf_counter() - t
        t = time.perf_counter()
        paths[name] = work / f"{name}.parquet"
        frame.to_parquet(paths[name])
        stages["lake_write"] += time.perf_counter() - t
        del frame
    for name, path in paths.items():
        t = time.perf_counter()
        frame = pd.read_parquet(path)
        frame.to_sql(name, target, schema=spec["schema"], if_exists="replace", index=False)
        stages["load"] += time.perf_counter() - t
        del frame
    return stages


def dlt_credentials(uri: str) -> Any:
    """dlt's destination wants a host and a password; the embedded server's URI has a unix
    socket folder in its query string and no password (the socket is trusted): given a
    placeholder host and password, libpq still takes the socket from the query."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(uri)
    if parts.hostname or "host" not in parse_qs(parts.query):
        return uri
    user = parts.username or "postgres"
    return f"postgresql://{user}:trust@localhost{parts.path}?{parts.query}"


def run_dlt(spec: dict[str, Any], work: Path, backend: str) -> dict[str, float]:
    os.environ["RUNTIME__LOG_LEVEL"] = "WARNING"
    import dlt
    from dlt.sources.sql_database import sql_database

    pipeline = dlt.pipeline(
        pipeline_name=spec["schema"],
        pipelines_dir=str(work / "dlt"),
        destination=dlt.destinations.postgres(credentials=dlt_credentials(spec["target"])),
        dataset_name=spec["schema"],
        progress="log" if os.environ.get("APS_BENCH_VERBOSE") else None,
    )
    source = sql_database(
        credentials=sqlalchemy_url(spec["source"]),
        schema=spec["view_schema"],
        table_names=list(spec["tables"]),
        include_views=True,
        backend=backend,
    )
    stages = {}
    t = time.perf_counter()
    pipeline.extract(source, write_disposition="replace")
    stages["extract"] = time.perf_counter() - t
    t = time.perf_counter()
    pipeline.normalize()
    stages["lake_write"] = time.perf_counter() - t  # dlt's load files: its "lake"
    t = time.perf_counter()
    info = pipeline.load()
    info.raise_on_failed_jobs()
    stages["load"] = time.perf_counter() - t
    return stages


def run_floor(spec: dict[str, Any], work: Path) -> dict[str, float]:
    import adbc_driver_postgresql.dbapi as adbc
    import pyarrow.parquet as pq

    stages = {"extract": 0.0, "lake_write": 0.0, "load": 0.0}
    paths = {}
    with adbc.connect(spec["source"]) as conn, conn.cursor() as cur:
        for name in spec["tables"]:
            t = time.perf_counter()
            cur.execute(f"select * from {spec['view_schema']}.{name}")
            table = cur.fetch_arrow_table()
            stages["extract"] += time.perf_counter() - t
            t = time.perf_counter()
            paths[name] = work / f"{name}.parquet"
            pq.write_table(table, paths[name], compression="zstd")
            stages["lake_write"] += time.perf_counter() - t
            del table
    with adbc.connect(spec["target"]) as conn, conn.cursor() as cur:
        for name, path in paths.items():
            t = time.perf_counter()
            table = pq.read_table(path)
            cur.adbc_ingest(name, table, mode="create", db_schema_name=spec["schema"])
            conn.commit()
            stages["load"] += time.perf_counter() - t
            del table
    return stages


def sling_binary() -> str:
    """The binary of PyPI's `sling-linux-amd64` (the `sling` wrapper would download one;
    SLING_BINARY points it here)."""
    import sling_linux_amd64

    return str(Path(sling_linux_amd64.__file__).parent / "bin" / "sling-linux-amd64")


def _no_tls(uri: str) -> str:
    """Sling asks for an explicit sslmode; the servers here are local, without TLS."""
    if "sslmode=" in uri:
        return uri
    return uri + ("&" if "?" in uri else "?") + "sslmode=disable"


def run_sling(spec: dict[str, Any], work: Path) -> dict[str, float]:
    import subprocess

    import yaml

    replication = {
        "source": "APS_BENCH_SLING_SOURCE",
        "target": "APS_BENCH_SLING_TARGET",
        "defaults": {"mode": "full-refresh", "object": f"{spec['schema']}.{{stream_table}}"},
        "streams": {f"{spec['view_schema']}.{name}": {} for name in spec["tables"]},
    }
    path = work / "replication.yaml"
    path.write_text(yaml.safe_dump(replication))
    env = {
        **os.environ,
        # connections by name from the environment: no credentials in the file
        "APS_BENCH_SLING_SOURCE": _no_tls(spec["source"]),
        "APS_BENCH_SLING_TARGET": _no_tls(spec["target"]),
        "SLING_HOME_DIR": str(work / "sling_home"),
        "SLING_DISABLE_TELEMETRY": "true",
        "SLING_BINARY": sling_binary(),
    }
    t = time.perf_counter()
    done = subprocess.run(
        [sling_binary(), "run", "-r", str(path)], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-2000:]
        for secret in (spec["source"], spec["target"]):
            tail = tail.replace(secret, "***")
        raise RuntimeError(f"sling failed:\n{tail}")
    return {"extract": 0.0, "lake_write": 0.0, "load": time.perf_counter() - t}


def prepare_target(target_uri: str, peer: str, schema: str, *, keep: bool = True) -> None:
    """Drops the peer's schema; dlt recreates its own, the floor and pandas get theirs
    back (unless `keep` is false: the copy is removed after the last round)."""
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(target_uri) as conn, conn.cursor() as cur:
        cur.execute(f"drop schema if exists {schema} cascade")
        if keep and peer in ("pandas", "floor"):
            cur.execute(f"create schema {schema}")
        conn.commit()


def count_rows(target_uri: str, schema: str, tables: list[str]) -> int:
    import adbc_driver_postgresql.dbapi as adbc

    total = 0
    with adbc.connect(target_uri) as conn, conn.cursor() as cur:
        for name in tables:
            cur.execute(f"select count(*) from {schema}.{name}")
            total += cur.fetchone()[0]
        conn.commit()
    return total


def main(spec_path: str, out_path: str) -> int:
    from benchmarks.run_case import first_to_go

    first_to_go()
    spec = json.loads(Path(spec_path).read_text())
    spec["source"], spec["target"] = os.environ[SOURCE_VAR], os.environ[TARGET_VAR]
    work = Path(spec["work"])
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    began = time.perf_counter()
    peer = spec["peer"]
    if peer == "pandas":
        stages = run_pandas(spec, work)
    elif peer == "dlt":
        stages = run_dlt(spec, work, "sqlalchemy")
    elif peer == "dlt_pyarrow":
        stages = run_dlt(spec, work, "pyarrow")
    elif peer == "sling":
        stages = run_sling(spec, work)
    elif peer == "floor":
        stages = run_floor(spec, work)
    else:
        raise SystemExit(f"unknown peer {peer!r}; one of {', '.join(PEERS)}")
    seconds = time.perf_counter() - began
    work_end_epoch = time.time()
    from benchmarks.run_case import own_peak_rss_mb

    peak_rss_mb = own_peak_rss_mb()
    shutil.rmtree(work, ignore_errors=True)
    Path(out_path).write_text(
        json.dumps(
            {
                "success": True,
                "seconds": seconds,
                "work_end_epoch": work_end_epoch,
                "peak_rss_mb": peak_rss_mb,
                "stages": stages,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
