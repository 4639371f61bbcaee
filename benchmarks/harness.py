"""Running cases and peers, each in a process of its own, and measuring them.

Every measurement is one child process: its wall time from spawn to the end of its work
(what a user waits for: interpreter start, imports and the work), its peak resident memory
(the process's own high-water mark, VmHWM: the job process and nothing else), and what the
child reported about its stages.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import data, peers
from benchmarks.processes import REPO, Round, run_process
from benchmarks.servers import WORK, EmbeddedServer, StackServer

# Our cases and the PostgreSQL server each runs against (the peers run on the same one).
CASES = {
    "trino": "aps-etl, dev stack (MinIO lake, Trino load)",
    "embedded": "aps-etl, embedded default (local lake, ADBC COPY load)",
    # the same run as `aps-etl run` starts it: execute_in_process, which keeps every
    # output in memory for its result object (a diagnostic of memory, at 10M rows)
    "trino_cli": "aps-etl run's execute_in_process, dev stack (Trino load)",
}
SERVER_OF_CASE = {"trino": "stack", "embedded": "embedded", "trino_cli": "stack"}
# the cases of test_launched_path.py: the same runs, queued and run by the daemon
SERVER_OF_CASE.update({f"{case}_launched": SERVER_OF_CASE[case] for case in ("trino", "embedded")})


# In order: each data set is prepared once, then every case and peer runs on it.
PLAN = (
    ("day", ("trino", "embedded")),
    ("plan", ("trino",)),
    ("day_large", ("trino", "embedded", "trino_cli")),
    ("tiny", ("trino", "embedded")),
)
# The smoke scale (part of `make test`): every case and every peer once, on the fewest data
# sets. `day_large` is the same code as `day` at a few thousand rows, so its one case of its
# own (aps-etl run's execute_in_process) runs on `day` instead.
SMOKE_PLAN = (
    ("day", ("trino", "embedded", "trino_cli")),
    ("plan", ("trino",)),
)


@dataclass(frozen=True)
class Scale:
    name: str
    rows: dict[str, int]  # data set role -> source rows
    rounds: dict[str, int]  # data set role -> rounds of each of our cases
    peer_rounds: dict[str, int]
    # an untimed run of each case first (Trino's JIT warm, the lake tables created): what a
    # measurement needs, not a run that only proves every case still works
    warmup: bool = True
    plan: tuple[tuple[str, tuple[str, ...]], ...] = PLAN


def items(scale: Scale) -> list[tuple[str, str, str]]:
    """(data set role, "ours" | peer, case | server), in the order they run."""
    out: list[tuple[str, str, str]] = []
    for role, cases in scale.plan:
        if role not in scale.rows:
            continue
        out += [(role, "ours", case) for case in cases]
        if scale.peer_rounds[role]:
            for server in dict.fromkeys(SERVER_OF_CASE[case] for case in cases):
                out += [(role, peer, server) for peer in peers.PEERS]
    return out


SCALES = {
    "full": Scale(
        "full",
        # `tiny`: our job alone on a day of a few thousand rows, what a run costs whatever
        # the data (it bounds every ratio at small scale)
        rows={"day": 1_000_000, "plan": 1_000_000, "day_large": 10_000_000, "tiny": 3_000},
        rounds={"day": 3, "plan": 3, "day_large": 1, "tiny": 5},
        peer_rounds={"day": 2, "plan": 2, "day_large": 1, "tiny": 0},
    ),
    # the whole benchmark at a few thousand rows: the test suite's smoke run
    "smoke": Scale(
        "smoke",
        rows={"day": 3_000, "plan": 3_000},
        rounds={"day": 1, "plan": 1},
        peer_rounds={"day": 1, "plan": 1},
        warmup=False,
        plan=SMOKE_PLAN,
    ),
}


@dataclass
class Measurement:
    """One case or peer on one data set: its rounds, summarised by the median round."""

    key: str
    kind: str  # "ours" or "peer"
    tool: str
    label: str
    dataset: str
    server: str  # "stack" or "embedded"
    rows: int
    rounds: list[Round] = field(default_factory=list)
    error: str | None = None

    def median_round(self) -> Round | None:
        if not self.rounds:
            return None
        ordered = sorted(self.rounds, key=lambda r: r.wall)
        return ordered[(len(ordered) - 1) // 2]

    def summary(self) -> dict[str, Any]:
        best = self.median_round()
        out: dict[str, Any] = {
            "key": self.key,
            "kind": self.kind,
            "tool": self.tool,
            "label": self.label,
            "dataset": self.dataset,
            "server": self.server,
            "rows": self.rows,
            "error": self.error,
            "rounds": [
                {
                    "wall_s": round(r.wall, 3),
                    "peak_rss_mb": round(r.peak_rss_mb, 1),
                    "load_before": r.load_before,
                    "result": r.result,
                }  # fmt: skip
                for r in self.rounds
            ],
        }
        if best is None:
            return out
        walls = [r.wall for r in self.rounds]
        result = best.result
        stages = dict(result.get("stages", {}))
        if self.kind == "ours":
            stages["orchestration"] = result.get("orchestration", 0.0)
            stages["startup"] = best.wall - result.get("run_seconds", best.wall)
        else:
            stages["startup/other"] = best.wall - sum(stages.values())
        out.update(
            {
                "wall_s": round(best.wall, 3),
                "wall_min_s": round(min(walls), 3),
                "wall_max_s": round(max(walls), 3),
                "wall_stdev_s": round(statistics.pstdev(walls), 3),
                "run_s": round(result["run_seconds"], 3) if "run_seconds" in result else None,
                "stages_s": {k: round(v, 3) for k, v in stages.items()},
                "rows_per_s": round(self.rows / best.wall) if best.wall else None,
                "peak_rss_mb": round(max(r.peak_rss_mb for r in self.rounds), 1),
            }
        )
        if self.kind == "ours":
            out["load_detail"] = load_detail(result)
            peak = max(self.rounds, key=lambda r: r.peak_rss_mb).result
            out["peak_step"] = peak.get("peak_step")
        return out


def load_detail(result: dict[str, Any]) -> dict[str, Any]:
    """The loads as the loader timed them: rows and seconds per target table, and the
    throughput of the largest one (for the pass-through: Trino's own insert rate)."""
    loads = {
        key.split("/")[-1]: m
        for key, m in result.get("materializations", {}).items()
        if key.startswith("load/")
    }
    if not loads:
        return {}
    largest = max(loads.values(), key=lambda m: m.get("rows") or 0)
    seconds = largest.get("load_seconds") or 0.0
    return {
        "tables": {
            k: {"rows": m.get("rows"), "load_s": m.get("load_seconds")} for k, m in loads.items()
        },  # fmt: skip
        "largest_rows": largest.get("rows"),
        "largest_load_s": seconds,
        "largest_rows_per_s": round((largest.get("rows") or 0) / seconds) if seconds else None,
    }


# ---- the servers ----------------------------------------------------------------------


# ---- our job ---------------------------------------------------------------------------


def dagster_home(case: str, scale: str, stack: StackServer | None) -> Path:
    """A persistent Dagster instance per case, as a user's: SQLite for the embedded
    default (dagster.yaml), PostgreSQL for dev (infra/dagster-dev.yaml)."""
    home = WORK / f"dagster_{scale}_{case}"
    home.mkdir(parents=True, exist_ok=True)
    if case.startswith("trino"):
        assert stack is not None
        database = stack.ensure_dagster_database()
        text = (REPO / "infra/dagster-dev.yaml").read_text()
        text = text.replace("db_name: dagster", f"db_name: {database}")
        (home / "dagster.yaml").write_text(text)
    else:  # as `aps-etl run` makes its home
        from aps_etl.instance.sqlite_storage import write_local_instance_config

        write_local_instance_config(home, REPO / "dagster.yaml")
    return home


def init_instance(home: Path, env: str) -> None:
    """Creates (or migrates) the instance's storage once, outside the timed rounds."""
    spec = {"dagster_home": str(home), "env": env, "init_only": True}
    run_process("benchmarks.run_case", spec, WORK / "logs", f"init_{home.name}")


def our_spec(
    case: str,
    dataset: data.DataSet,
    server: StackServer | EmbeddedServer,
    home: Path,
    run_tag: str,
) -> dict[str, Any]:
    job = "aps_plan_snapshot" if dataset.kind == "plan" else "aps_daily"
    if case.startswith("trino"):
        assert isinstance(server, StackServer)
        bucket = server.settings["APS_S3_BUCKET"]
        environ = {
            "APS_MES_DB": dataset.name,
            "APS_LAKE_ROOT": f"s3://{bucket}/bench/{run_tag}",
            "APS_TRINO_LAKE_SCHEMA_PREFIX": f"{run_tag}_",
        }
        env = "dev"
    else:
        assert isinstance(server, EmbeddedServer)
        environ = {
            "APS_LOCAL_HOME": str(server.home),
            "APS_LAKE_ROOT": str(WORK / "lakes" / run_tag),
        }
        env = "local"
    return {
        "env": env,
        "job": job,
        "partition": dataset.partition,
        "dagster_home": str(home),
        "environ": environ,
        "mode": "execute_in_process" if case == "trino_cli" else "execute_job",
    }


def job_outputs(kind: str) -> list[Any]:
    from aps_etl.defs.registry import DAILY_RUN, PLAN_RUN, outputs_of_run

    return [table for _, table in outputs_of_run(PLAN_RUN if kind == "plan" else DAILY_RUN)]


def clear_target(dataset: data.DataSet, server: StackServer | EmbeddedServer) -> None:
    """Before each round: the partition's rows gone from every target table of the job and
    the tables vacuumed, so that every round loads into the same state, as each peer
    round starts from an empty schema (a rerun over dead rows costs more)."""
    from aps_etl.lib.business_days import parse_partition_key

    value: Any = dataset.partition
    if dataset.kind != "plan":
        value = parse_partition_key(dataset.partition)
    delete_target_rows(server, dataset.kind, "= $1", (value,))


def delete_target_rows(
    server: StackServer | EmbeddedServer, kind: str, predicate: str, parameters: tuple
) -> None:
    """Rows whose partition column matches `predicate` ($1, $2 ...) gone from every target
    table of the job that exists, and the tables vacuumed."""
    import adbc_driver_postgresql.dbapi as adbc

    from aps_etl.lib.warehouse.target import TARGET_SCHEMA, ident

    with adbc.connect(server.target_uri(), autocommit=True) as conn, conn.cursor() as cur:
        for table in job_outputs(kind):
            cur.execute(
                "select 1 from information_schema.tables where table_schema = $1 "
                "and table_name = $2",
                parameters=(TARGET_SCHEMA, table.name),
            )
            if not cur.fetchall():
                continue
            name = ident(TARGET_SCHEMA, table.name)
            column = ident(table.partition_column)
            cur.execute(f"delete from {name} where {column} {predicate}", parameters=parameters)
            cur.execute(f"vacuum (analyze) {name}")


def compile_bytecode() -> float:
    """Compiles every module once, as pip does when it installs: this machine sets
    PYTHONDONTWRITEBYTECODE=1 and uv installs without .pyc, so each process would
    otherwise compile dagster and the rest from source (seconds per process, for every
    tool). Returns the seconds it took (fast when everything is up to date)."""
    import sysconfig

    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "-j", "0",
         sysconfig.get_paths()["purelib"], str(REPO / "aps_etl"), str(REPO / "benchmarks")],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return time.perf_counter() - started


def cleanup_our_round(
    case: str, spec: dict[str, Any], stack: StackServer | None, *, last: bool = True
) -> None:
    """Removes the round's lake files: every round extracts anew. The Trino lake schemas
    and tables (and their registered partitions, whose folders the next round rewrites)
    stay until the `last` round, as in production, where a job's first run ever creates
    them and every later day only registers its partition."""
    root = spec["environ"]["APS_LAKE_ROOT"]
    if not case.startswith("trino"):
        shutil.rmtree(root, ignore_errors=True)
        return
    assert stack is not None
    import s3fs

    from aps_etl.env.stack import trino_settings
    from aps_etl.lib.warehouse.lake_catalog import drop_lake_schemas
    from aps_etl.lib.warehouse.trino import TrinoResource

    settings = stack.settings
    fs = s3fs.S3FileSystem(
        key=settings["APS_S3_ACCESS_KEY"],
        secret=settings["APS_S3_SECRET_KEY"],
        client_kwargs={
            "endpoint_url": settings["APS_S3_ENDPOINT"],
            "region_name": settings["APS_S3_REGION"],
        },  # fmt: skip
        use_listings_cache=False,
    )
    if fs.exists(root):
        fs.rm(root, recursive=True)
    if not last:
        return
    drop_lake_schemas(
        TrinoResource(**trino_settings(settings)),
        spec["environ"]["APS_TRINO_LAKE_SCHEMA_PREFIX"],
    )


def new_run_tag() -> str:
    return f"b{uuid.uuid4().hex[:10]}"


# ---- peers -----------------------------------------------------------------------------


def peer_secrets(dataset: data.DataSet, server: StackServer | EmbeddedServer) -> dict[str, str]:
    return {
        peers.SOURCE_VAR: server.reader_uri(dataset.name),
        peers.TARGET_VAR: server.target_uri(),
    }


def peer_spec(peer: str, dataset: data.DataSet) -> dict[str, Any]:
    return {
        "peer": peer,
        "schema": peers.target_schema(peer, dataset.name),
        "view_schema": data.VIEW_SCHEMA,
        "tables": list(dataset.reads),
        "work": str(WORK / "peer_work" / f"{dataset.name}_{peer}"),
    }
