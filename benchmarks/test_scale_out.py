"""Scale-out on the dev stack (issue 15, item 4).

(a) **A range backfilled with one command**: N business days of about R source rows each
(defaults: 30 x 1M at full scale, 2 x 3,000 at `--bench-scale=smoke`; `--scaleout-days`,
`--scaleout-rows` or APS_BENCH_SCALEOUT_DAYS / _ROWS) in a source database of their own,
run by `aps-etl backfill --env dev --policy P` through Trino: a Dagster backfill on the
case's PostgreSQL-backed instance (infra/dagster-dev.yaml: the queued run coordinator, two
runs at a time), with the dagster-daemon the command starts for it. P is single-run (the
whole range in one run), multi-run:1 (a run per day) and, at full scale,
multi-run:ceil(N/2) (two runs, side by side). Measured: the command's wall time (its
start to its exit, the daemon's start and stop included), the backfill's own time
(submitted to done), the peak memory of the command's whole process tree (the command,
the daemon, its code server and every run worker: the sum of their resident sizes,
sampled every 0.2 s), and each run's time.

(b) **Trino workers**: the 1M-row day of test_benchmarks.py (`day`, the `trino` case: a run
worker's `execute_job`) on a coordinator alone (0 workers: it schedules work on itself),
then 1 and 2 workers (the smoke scale: 1, the stack's own count). `infra/stack up trino`
with APS_STACK_TRINO_WORKERS=W brings the running cluster to W workers; the case checks
that Trino reports W active workers and is skipped, saying so, when the stack cannot give
them. The stack is
brought back to its default afterwards.

Results: benchmarks/results/scaleout/<UTC>-<scale>.{md,json} and latest-<scale>.*, with the
machine, the servers and the load average. Nothing here asserts a speed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from benchmarks import data, harness
from benchmarks.conftest import Bench
from benchmarks.machine import load_average, machine_info, server_versions

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESULTS = Path(os.environ.get("APS_BENCH_RESULTS", Path(__file__).parent / "results")) / "scaleout"
# Days of their own, far from the suite's (2026-10/11) and the other benchmarks' days
# (2026-06-01, 2026-07-01): the target tables are shared.
FIRST_DAY = {"full": dt.date(2026, 4, 1), "smoke": dt.date(2026, 5, 1)}
DEFAULTS = {"full": (30, 1_000_000), "smoke": (2, 3_000)}
# The smoke scale (part of make test) measures the cluster as the stack runs it: each other
# count restarts Trino, about a minute each, and proves nothing more about the benchmark.
WORKERS = {"full": (0, 1, 2), "smoke": (1,)}
SAMPLE_S = 0.2

_results: dict[str, Any] = {"backfill": [], "workers": []}


def _parameters(config: pytest.Config) -> tuple[str, int, int]:
    scale = config.getoption("--bench-scale")
    days, rows = DEFAULTS[scale]
    days = int(
        config.getoption("--scaleout-days") or os.environ.get("APS_BENCH_SCALEOUT_DAYS") or days
    )
    rows = int(
        config.getoption("--scaleout-rows") or os.environ.get("APS_BENCH_SCALEOUT_ROWS") or rows
    )
    return scale, days, rows


def _policies(scale: str, days: int) -> list[str]:
    """Single-run, a run per day, and (full scale) two runs of half the range each. The
    smoke scale, part of `make test`, keeps the first two."""
    policies = ["single-run", "multi-run:1"]
    if scale != "smoke":
        policies.append(f"multi-run:{math.ceil(days / 2)}")
    return list(dict.fromkeys(policies))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "policy" in metafunc.fixturenames:
        scale, days, _ = _parameters(metafunc.config)
        metafunc.parametrize("policy", _policies(scale, days))
    if "workers" in metafunc.fixturenames:
        scale, _, _ = _parameters(metafunc.config)
        metafunc.parametrize("workers", WORKERS[scale])


# ---- the data set: N days ----------------------------------------------------------------


def _day_reads(owner_uri: str, day: dt.date) -> int:
    run_id = data._plan_in_force(owner_uri, day)
    return sum(data._count_reads(owner_uri, data.day_reads(day, run_id)).values())


def prepare_days(stack: harness.StackServer, first: dt.date, days: int, rows: int) -> dict:
    """A source of `days` business days from `first`, each read as about `rows` rows by the
    daily job, in database bench_days_<days>x<rows>; reused when already there."""
    from aps_etl.devdata import seed_source

    database = f"bench_days_{days}x{rows}"
    data.ensure_stack_database(stack.settings, database)
    owner = stack.owner_uri(database)
    try:
        (meta,) = data._fetch(owner, f"select meta from {data.META_TABLE}")[0]
        found = json.loads(meta)
        if found.get("first") == first.isoformat() and found.get("days") == days:
            return found
    except Exception:
        pass
    middle = first + dt.timedelta(days=days // 2)

    def seed(lots: int) -> int:
        data._drop_views(owner)
        seed_source(owner, start_date=first, days=days, lots=lots, seed=data.SEED, progress=False)
        data._execute(owner, "analyze")
        return _day_reads(owner, middle)

    # rows read per day grow linearly with the lots: a pilot gives the slope
    pilot = max(60, rows * days // 400)
    lots = max(1, round(pilot * rows / max(seed(pilot), 1)))
    got = seed(lots)
    if abs(got - rows) > 0.05 * rows:
        lots = max(1, round(lots * rows / max(got, 1)))
        seed(lots)
    per_day = {
        (first + dt.timedelta(days=i)).isoformat(): _day_reads(owner, first + dt.timedelta(days=i))
        for i in range(days)
    }
    meta = {
        "database": database,
        "first": first.isoformat(),
        "days": days,
        "rows_per_day_asked": rows,
        "lots": lots,
        "reads_per_day": per_day,
        "rows": sum(per_day.values()),
    }
    data._execute(
        owner,
        f"create table {data.META_TABLE} (meta text)",
        f"insert into {data.META_TABLE} values ('{json.dumps(meta)}')",
    )
    return meta


def _clear_days(stack: harness.StackServer, first: str, last: str) -> None:
    days = (dt.date.fromisoformat(first), dt.date.fromisoformat(last))
    harness.delete_target_rows(stack, "day", "between $1 and $2", days)


def _loaded_rows(stack: harness.StackServer, first: str, last: str) -> int:
    from aps_etl.lib.warehouse.target import TARGET_SCHEMA, ident

    total = 0
    for table in harness.job_outputs("day"):
        (count,) = data._fetch(
            stack.target_uri(),
            f"select count(*) from {ident(TARGET_SCHEMA, table.name)} "
            f"where {ident(table.partition_column)} between date '{first}' and date '{last}'",
        )[0]
        total += count
    return total


# ---- measuring a process tree -----------------------------------------------------------


class TreePeak:
    """The peak of the summed resident size of a process and all its descendants."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak_mb = 0.0
        self.processes_at_peak = 0
        self.most_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            try:
                tree = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total = 0
            for process in tree:
                with contextlib.suppress(psutil.Error):
                    total += process.memory_info().rss
            self.most_processes = max(self.most_processes, len(tree))
            if total / 2**20 > self.peak_mb:
                self.peak_mb, self.processes_at_peak = total / 2**20, len(tree)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def _runs(home: Path, backfill_id: str) -> list[dict[str, Any]]:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_run_records(
            filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id})
        )
        return sorted(
            (
                {
                    "days": (
                        r.dagster_run.tags.get("dagster/asset_partition_range_start"),
                        r.dagster_run.tags.get("dagster/asset_partition_range_end"),
                    ),
                    "status": r.dagster_run.status.value,
                    "seconds": round((r.end_time or 0) - (r.start_time or 0), 1),
                    "started": round((r.start_time or 0) - r.create_timestamp.timestamp(), 1),
                }  # fmt: skip
                for r in records
            ),
            key=lambda run: run["days"],
        )


# ---- (a) a range backfilled with one command --------------------------------------------


def test_backfill_range(bench: Bench, policy: str, benchmark: Any, pytestconfig) -> None:
    scale, days, rows = _parameters(pytestconfig)
    stack = bench.stack
    first_day = FIRST_DAY[scale]
    source = prepare_days(stack, first_day, days, rows)
    first, last = source["first"], (first_day + dt.timedelta(days=days - 1)).isoformat()
    home = bench.homes.get("trino_scaleout")
    if home is None:  # the dev instance (infra/dagster-dev.yaml) in the benchmark's database
        home = harness.dagster_home("trino_scaleout", scale, stack)
        harness.init_instance(home, "dev")
        bench.homes["trino_scaleout"] = home
    tag = harness.new_run_tag()
    environ = {
        "APS_MES_DB": source["database"],
        "APS_LAKE_ROOT": f"s3://{stack.settings['APS_S3_BUCKET']}/bench/{tag}",
        "APS_TRINO_LAKE_SCHEMA_PREFIX": f"{tag}_",
    }
    from aps_etl.env.stack import export_stack_env

    env = {**os.environ, **export_stack_env(), **environ, "APS_ENV": "dev",
           "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO)}  # fmt: skip
    env.pop("APS_BACKFILL_POLICY", None)
    env.pop("APS_BACKFILL_MAX_PARTITIONS_PER_RUN", None)
    spec = {"environ": environ}
    log_dir = harness.WORK / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)

    # untimed: one day in one run creates the job's lake schemas and tables in Trino and
    # warms its JIT, as a deployment's first run ever does
    warm = subprocess.run(
        [str(BIN / "aps-etl"), "backfill", "--env", "dev", "--from", first, "--to", first],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    assert warm.returncode == 0, warm.stdout[-3000:] + warm.stderr[-3000:]
    harness.cleanup_our_round("trino", spec, stack, last=False)
    _clear_days(stack, first, last)
    result: dict[str, Any] = {}

    def one_round() -> None:
        log = log_dir / f"scaleout_{scale}_{policy.replace(':', '_')}.log"
        load = load_average()
        with log.open("w") as out:
            started = time.perf_counter()
            command = subprocess.Popen(
                [str(BIN / "aps-etl"), "backfill", "--env", "dev", "--from", first,
                 "--to", last, "--policy", policy],
                env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
            peak = TreePeak(command.pid)
            code = command.wait(timeout=6 * 3600)
            wall = time.perf_counter() - started
            peak.stop()
        text = log.read_text()
        assert code == 0, f"exit {code}; log {log}:\n{text[-4000:]}"
        found = re.search(r"^backfill (\S+):", text, re.M)
        assert found, text[-2000:]
        runs = _runs(home, found.group(1))
        # the command's own account: submitted -> the daemon marked the backfill done
        done = re.search(r"COMPLETED_SUCCESS in ([\d.]+) s", text)
        result.update(
            backfill_s=float(done.group(1)) if done else None,
            first_run_start_s=min((run["started"] for run in runs), default=None),
            policy=policy,
            days=days,
            rows_per_day_asked=rows,
            source_rows_read=source["rows"],
            wall_s=round(wall, 1),
            peak_tree_rss_mb=round(peak.peak_mb),
            processes_at_peak=peak.processes_at_peak,
            most_processes=peak.most_processes,
            runs=len(runs),
            run_seconds=[run["seconds"] for run in runs],
            failed_runs=sum(run["status"] != "SUCCESS" for run in runs),
            target_rows_loaded=_loaded_rows(stack, first, last),
            load_before=load,
            load_after=load_average(),
            log=str(log),
        )

    try:
        benchmark.pedantic(one_round, rounds=1, iterations=1)
    finally:
        harness.cleanup_our_round("trino", spec, stack, last=True)
    benchmark.extra_info.update(result)
    _results["backfill"].append(result)
    _write(bench, scale, days, rows)
    assert result["failed_runs"] == 0, result


# ---- (b) the 1M-row day on 0, 1, 2 Trino workers ----------------------------------------


def _active_workers() -> int:
    from aps_etl.env.settings import resources_for

    trino = resources_for("dev")["loader"].trino.process_config_and_initialize()
    ((count,),) = trino.execute(
        "select count(*) from system.runtime.nodes where coordinator = false and state = 'active'"
    )
    return int(count)


def _scale_trino(workers: int | None) -> subprocess.CompletedProcess:
    env = {**os.environ}
    env.pop("APS_STACK_TRINO_WORKERS", None)
    if workers is not None:
        env["APS_STACK_TRINO_WORKERS"] = str(workers)
    return subprocess.run(
        [str(REPO / "infra" / "stack"), "up", "trino"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


@pytest.fixture(scope="module")
def trino_default():
    yield
    _scale_trino(None)  # back to the stack's default worker count


def test_trino_workers(
    bench: Bench, workers: int, benchmark: Any, pytestconfig, trino_default
) -> None:
    scale = pytestconfig.getoption("--bench-scale")
    scaled = _scale_trino(workers)
    assert scaled.returncode == 0, scaled.stdout[-2000:] + scaled.stderr[-2000:]
    active = _active_workers()
    if active != workers:
        pytest.skip(
            f"Trino has {active} active worker(s), {workers} asked: this infra/stack does not "
            "scale Trino with APS_STACK_TRINO_WORKERS (branch issue15-trino)"
        )
    server = bench.server("stack", "day")
    dataset = bench.dataset("day", "stack")
    home = bench.home("trino")
    tag = harness.new_run_tag()
    spec = harness.our_spec("trino", dataset, server, home, tag)
    case = f"workers{workers}"
    harness.clear_target(dataset, server)
    try:
        harness.run_process("benchmarks.run_case", spec, harness.WORK / "logs", f"{case}_warm")
    finally:
        harness.cleanup_our_round("trino", spec, bench.stack, last=False)
    rounds: list[harness.Round] = []

    def one_round() -> None:
        harness.clear_target(dataset, server)
        try:
            rounds.append(
                harness.run_process(
                    "benchmarks.run_case", spec, harness.WORK / "logs", f"{case}_{len(rounds)}"
                )
            )
        finally:
            harness.cleanup_our_round(
                "trino", spec, bench.stack, last=len(rounds) >= bench.scale.rounds["day"]
            )

    benchmark.pedantic(one_round, rounds=bench.scale.rounds["day"], iterations=1)
    walls = sorted(r.wall for r in rounds)
    median = rounds[[r.wall for r in rounds].index(walls[(len(walls) - 1) // 2])]
    result = {
        "workers": workers,
        "active_workers": active,
        "rows": dataset.rows,
        "rounds": len(rounds),
        "wall_s": round(median.wall, 1),
        "walls_s": [round(w, 1) for w in walls],
        "stages_s": median.result.get("stages"),
        "peak_rss_mb": round(median.peak_rss_mb),
    }
    benchmark.extra_info.update(result)
    _results["workers"].append(result)
    _write(bench, scale, *_parameters(pytestconfig)[1:])


# ---- results ------------------------------------------------------------------------------


def _write(bench: Bench, scale: str, days: int, rows: int) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(bench.started))
    doc = {
        "scale": scale,
        "days": days,
        "rows_per_day": rows,
        "machine": machine_info(),
        "servers": server_versions(bench.stack.settings),
        "started_utc": bench.context["started_utc"],
        "load_start": bench.context["load_start"],
        "command": bench.context["command"],
        **_results,
    }
    text = json.dumps(doc, indent=1, default=str)
    md = _markdown(doc)
    for name in (f"{stamp}-{scale}", f"latest-{scale}"):
        (RESULTS / f"{name}.json").write_text(text)
        (RESULTS / f"{name}.md").write_text(md)


def _markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = [
        f"# Scale-out ({doc['scale']} scale), {doc['started_utc']}",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB RAM, {m['os']}, "
        f"Python {m['python']}; servers: "
        + ", ".join(f"{k} {v}" for k, v in doc["servers"].items())
        + f". Load average at start: {doc['load_start']}. Command: `{doc['command']}`.",
        "",
        f"## A range backfilled with one command: {doc['days']} days x ~{doc['rows_per_day']:,} "
        "source rows",
        "",
        "`aps-etl backfill --env dev --policy P` (Trino load, queued run coordinator with 2 "
        "runs at a time, the daemon it starts). Peak memory: the summed resident size of the "
        "command's whole process tree (command, daemon, code server, run workers).",
        "",
        "*wall*: the command, start to exit (its imports, the daemon's start and stop "
        "included); *backfill*: submitted to marked done by the daemon (its backfill loop "
        "looks every 30 s, so up to 30 s after the last run); *first run*: the quickest "
        "run's creation to its start (queue and worker start).",
        "",
        "| policy | source rows | runs | wall | backfill | first run | peak memory (tree) | "
        "processes at peak | run times (s) | target rows | failed runs | load before |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in doc["backfill"]:
        lines.append(
            f"| {r['policy']} | {r['source_rows_read']:,} | {r['runs']} | {r['wall_s']} s | "
            f"{r.get('backfill_s')} s | {r.get('first_run_start_s')} s | "
            f"{r['peak_tree_rss_mb']:,} MiB | {r['processes_at_peak']} | "
            f"{', '.join(map(str, r['run_seconds']))} | {r['target_rows_loaded']:,} | "
            f"{r['failed_runs']} | {r['load_before']} |"
        )
    lines += [
        "",
        "## One day through Trino on 0, 1, 2 workers",
        "",
        "The `trino` case of test_benchmarks.py (a run worker's `execute_job`), median round.",
        "",
        "| workers | source rows | wall | peak memory (run) | rounds |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in doc["workers"]:
        lines.append(
            f"| {r['workers']} | {r['rows']:,} | {r['wall_s']} s | {r['peak_rss_mb']:,} MiB | "
            f"{r['rounds']} |"
        )
    done = {r["workers"] for r in doc["workers"]}
    missing = [w for w in WORKERS[doc["scale"]] if w not in done]
    if missing:
        lines += [
            "",
            f"Not measured: {', '.join(map(str, missing))} worker(s): the stack did not report "
            "that many active workers (APS_STACK_TRINO_WORKERS needs infra/stack from branch "
            "issue15-trino).",
        ]
    return "\n".join(lines) + "\n"
