"""One benchmark case: one Dagster run of our job, in a process of its own.

    python -m benchmarks.run_case SPEC_JSON OUT_JSON

SPEC_JSON: {"env": "dev"|"local", "job": "aps_daily"|"aps_plan_snapshot",
"partition": key, "environ": {variables to set before aps_etl is imported}}.

The parent (benchmarks/harness.py) reads this process's peak RSS from its rusage; this
process writes the run's wall time, its per-step times from the run's event log and the
rows it read and loaded. The Dagster instance is a persistent one (SQLite under a
temporary DAGSTER_HOME, as `aps-etl run` keeps on the embedded default), so the run pays
for its event log like a real run does.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

PROCESS_STARTED = time.perf_counter()


def stage_of(step_key: str) -> str:
    if step_key.startswith("extract__"):
        return "extract"
    if step_key.startswith("load__"):
        return "load"
    return "transform"  # transforms, their checks, and the validation gates


def step_timings(instance: Any, run_id: str) -> dict[str, dict[str, float]]:
    """Per step: wall time (STEP_START..STEP_SUCCESS) and the part spent writing outputs to
    the lake (each STEP_OUTPUT..HANDLED_OUTPUT: the IO manager's handle_output)."""
    steps: dict[str, dict[str, float]] = defaultdict(lambda: {"seconds": 0.0, "lake_write": 0.0})
    started: dict[str, float] = {}
    last_output: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        key, kind, ts = event.step_key, event.event_type_value, entry.timestamp
        if kind == "STEP_START":
            started[key] = ts
        elif kind == "STEP_OUTPUT":
            last_output[key] = ts
        elif kind == "HANDLED_OUTPUT" and key in last_output:
            steps[key]["lake_write"] += ts - last_output.pop(key)
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and key in started:
            steps[key]["seconds"] = ts - started[key]
    return dict(steps)


def first_to_go() -> None:
    """Should the machine run out of memory (pandas at 10M rows holds whole tables as
    Python objects), the kernel kills the measured process, not a database or a Trino that
    other work on this machine relies on."""
    with contextlib.suppress(OSError):
        Path("/proc/self/oom_score_adj").write_text("1000")


def own_peak_rss_mb() -> float:
    """This process's peak resident memory since it started (VmHWM). Not rusage's
    ru_maxrss, which also counts the pages of the parent the process was forked from."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    """Diagnostics: this process's resident memory every 50 ms (epoch, MB)."""

    def __init__(self) -> None:
        import threading

        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE") / 1024 / 1024
        while not self._stop.wait(0.05):
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * page
            self.samples.append((time.time(), round(rss, 1)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def step_windows(instance: Any, run_id: str) -> dict[str, list[float]]:
    windows: dict[str, list[float]] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            windows[event.step_key] = [entry.timestamp, entry.timestamp]
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            windows.setdefault(event.step_key, [entry.timestamp, entry.timestamp])[1] = (
                entry.timestamp
            )
    return windows


def bench_job() -> Any:
    """The job under test, from the definitions of $APS_ENV (reconstructable)."""
    from aps_etl.definitions import build_defs
    from aps_etl.env.settings import resources_for

    return build_defs(resources_for(os.environ["APS_ENV"])).resolve_job_def(
        os.environ["APS_BENCH_JOB"]
    )


def main(spec_path: str, out_path: str) -> int:
    first_to_go()
    spec = json.loads(Path(spec_path).read_text())
    os.environ.update(spec.get("environ", {}))
    os.environ["APS_ENV"] = spec["env"]
    if spec["env"] == "dev":
        from aps_etl.env.stack import export_stack_env

        export_stack_env()  # the dev instance's storage settings, as aps_etl.cli.runner does
    home = spec.get("dagster_home")
    if not home:
        home = tempfile.mkdtemp(prefix="aps-bench-dagster-")
        Path(home, "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = home

    import dagster as dg

    if spec.get("init_only"):  # create or migrate the instance's storage, then stop
        dg.DagsterInstance.get().dispose()
        Path(out_path).write_text(json.dumps({"success": True}))
        return 0

    imported = time.perf_counter()
    instance = dg.DagsterInstance.get()
    os.environ["APS_BENCH_JOB"] = spec["job"]
    job = bench_job()  # built here, outside the timed run, as a code server has it loaded
    if spec["job"] == "aps_plan_snapshot":
        instance.add_dynamic_partitions("plan_run_id", [spec["partition"]])
    sampler = RssSampler()  # which step the peak memory belongs to (a 50 ms sample)
    profiler = None
    if spec.get("profile"):  # a cProfile of the run, for optimisation work
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    run_config = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    began = time.perf_counter()
    if spec.get("mode") == "execute_in_process":
        # as `aps-etl run` does; Dagster keeps every output in memory for the result object
        result = job.execute_in_process(
            partition_key=spec["partition"],
            instance=instance,
            raise_on_error=False,
            run_config=run_config,
        )
    else:
        # as a run worker does (the daemon, the UI), with the job's own executor (in
        # process: one process, steps in sequence, outputs only in the lake)
        result = dg.execute_job(
            dg.reconstructable(bench_job),
            instance=instance,
            run_config=run_config,
            tags={"dagster/partition": spec["partition"]},
            raise_on_error=False,
        )
    run_seconds = time.perf_counter() - began
    work_end_epoch = time.time()
    peak_rss_mb = own_peak_rss_mb()
    sampler.stop()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(spec["profile"])

    steps = step_timings(instance, result.run_id)
    windows = step_windows(instance, result.run_id)
    rss_by_step = {
        step: max((mb for ts, mb in sampler.samples if start <= ts <= end), default=0.0)
        for step, (start, end) in windows.items()
    }
    if spec.get("rss_trace"):
        Path(spec["rss_trace"]).write_text(
            json.dumps({"samples": sampler.samples, "steps": windows})
        )
    if spec.get("dump_events"):
        Path(spec["dump_events"]).write_text(
            "\n".join(
                f"{e.timestamp:.3f} {e.dagster_event.event_type_value if e.dagster_event else '-'}"
                f" {e.step_key} {(e.user_message or '')[:80]!r}"
                for e in instance.all_logs(result.run_id)
            )
        )
    stages: dict[str, float] = defaultdict(float)
    for key, timing in steps.items():
        stages[stage_of(key)] += timing["seconds"] - timing["lake_write"]
        stages["lake_write"] += timing["lake_write"]
    extracted = loaded = 0
    materializations: dict[str, dict[str, Any]] = {}
    for event in result.get_asset_materialization_events():
        path = event.asset_key.path
        metadata = event.materialization.metadata

        def value(name: str, metadata: Any = metadata) -> Any:
            item = metadata.get(name)
            return getattr(item, "value", item)

        rows = value("row_count") if path[0] != "load" else value("rows_loaded")
        if path[0] == "extract" and not value("reused"):
            extracted += rows or 0
        if path[0] == "load":
            loaded += rows or 0
        materializations["/".join(path)] = {
            "rows": rows,
            "duration_s": value("duration_s"),
            "load_seconds": value("load_seconds"),
            "step": event.step_key,
        }
    failures = {
        event.step_key: event.step_failure_data.error.message.strip()
        for event in result.all_events
        if event.is_step_failure and event.step_failure_data.error
    }
    Path(out_path).write_text(
        json.dumps(
            {
                "success": result.success,
                "work_end_epoch": work_end_epoch,
                "peak_rss_mb": peak_rss_mb,
                "failures": failures,
                "run_seconds": run_seconds,
                "import_seconds": imported - PROCESS_STARTED,
                "process_seconds": time.perf_counter() - PROCESS_STARTED,
                "stages": dict(stages),
                "orchestration": run_seconds - sum(t["seconds"] for t in steps.values()),
                "steps": steps,
                "extracted_rows": extracted,
                "loaded_rows": loaded,
                "materializations": materializations,
                "rss_by_step_mb": rss_by_step,
                "peak_step": max(rss_by_step, key=rss_by_step.get) if rss_by_step else None,
            },
            indent=1,
        )
    )
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
