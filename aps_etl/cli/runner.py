"""`aps-etl run`: the main job for one partition, with a report of what it did.

On the embedded default it first seeds the source with a fixed synthetic plant, so the same
command gives the same numbers on every machine; the partition is a full day inside it.
Runs are recorded in a persistent Dagster instance (`$DAGSTER_HOME`, default
`.aps-etl/dagster`), so `dagster dev` shows them afterwards.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import dagster as dg
from dagster._core.errors import DagsterHomeNotSetError
from dagster._core.utils import make_new_run_id

from aps_etl.env.embedded import local_home
from aps_etl.env.stack import REPO_ROOT
from aps_etl.instance.sqlite_storage import write_local_instance_config

DEMO_START = dt.date(2026, 11, 20)
DEMO_DAYS = 3
DEMO_PARTITION = "2026-11-21"
JOB_NAME = "aps_daily"


def dagster_instance() -> dg.DagsterInstance:
    """The persistent instance: $DAGSTER_HOME, else one per environment under .aps-etl/:
    `local` keeps SQLite (dagster.yaml), `dev` the stack's PostgreSQL
    (infra/dagster-dev.yaml), so dev runs never land in the local instance."""
    env = os.environ.get("APS_ENV", "local")
    if env == "dev":
        from aps_etl.env.stack import export_stack_env

        export_stack_env()  # the dev instance's storage settings come from the stack
    if not os.environ.get("DAGSTER_HOME"):
        home = local_home() / ("dagster-dev" if env == "dev" else "dagster")
        if env == "dev":
            home.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(REPO_ROOT / "infra/dagster-dev.yaml", home / "dagster.yaml")
        else:
            write_local_instance_config(home, REPO_ROOT / "dagster.yaml")
        os.environ["DAGSTER_HOME"] = str(home)
    try:
        return dg.DagsterInstance.get()
    except (dg.DagsterInvariantViolationError, DagsterHomeNotSetError) as exc:
        from aps_etl.env.settings import ConfigurationError

        first = (str(exc).splitlines() or [""])[0]
        raise ConfigurationError(f"the Dagster instance: {first}") from None


@dataclass
class StageReport:
    asset: str
    rows: int | None = None
    path: str | None = None
    seconds: float | None = None
    extra: dict[str, str] = field(default_factory=dict)


def run_job(
    partition_key: str,
    instance: dg.DagsterInstance | None = None,
    last_partition: str | None = None,
    tags: dict[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dg.ExecuteInProcessResult:
    """One run of the daily job: one partition, or [partition_key, last_partition] as a
    single-run backfill in this process (whatever APS_BACKFILL_POLICY says: that splits
    backfills the daemon runs, `aps-etl backfill --policy`). `progress` gets a line per
    step as it finishes."""
    from aps_etl.definitions import build_defs

    # the resources of $APS_ENV as it is now (the module's `defs` was built at import)
    job = build_defs().resolve_job_def(JOB_NAME)
    target: dict = {"partition_key": partition_key}
    if last_partition and last_partition != partition_key:
        target = {
            "tags": {
                "dagster/asset_partition_range_start": partition_key,
                "dagster/asset_partition_range_end": last_partition,
            }
        }
    # The worker is this process: run monitoring and `aps-etl doctor` mark the run FAILURE
    # (and alert) if it dies mid-run, as they do for runs the daemon launched.
    from aps_etl.lib.liveness import this_process

    target["tags"] = {**target.get("tags", {}), **this_process().tags(), **(tags or {})}
    instance = instance or dagster_instance()
    run_id = make_new_run_id()
    watcher = (
        StepProgress(instance, run_id, len(job.nodes_in_topological_order), progress)
        if progress
        else None
    )
    try:
        result = job.execute_in_process(
            **target,
            instance=instance,
            run_id=run_id,
            raise_on_error=False,
            # Every event is in the instance for the UI; the console gets the steps as
            # they finish and each warning in one line (`progress`), and the report after
            # the run: not Dagster's console lines, whose errors carry stack traces.
            run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        )
    finally:
        if watcher:
            watcher.stop()
    # an infrastructure failure is re-executed from the failure, as the daemon would
    from aps_etl.cli import run_retry

    steps = len(job.nodes_in_topological_order)

    def watch(attempt: str, execute: Callable[[], dg.JobExecutionResult]) -> Any:
        if not progress:
            return execute()
        child = StepProgress(instance, _run_tagged(instance, attempt), steps, progress)
        try:
            return execute()
        finally:
            child.stop()

    return run_retry.retried(result, instance, say=progress or print, watch=watch)


def _run_tagged(instance: dg.DagsterInstance, attempt: str) -> Callable[[], str | None]:
    """The id of the run tagged `aps_etl/attempt=<attempt>`, once it exists."""

    def find() -> str | None:
        runs = instance.get_run_ids(dg.RunsFilter(tags={"aps_etl/attempt": attempt}), limit=1)
        return runs[0] if runs else None

    return find


class StepProgress:
    """Reports each step of a run as it finishes ([k/N], seconds since the start, the step,
    its materializations), read from the instance's event log by a background thread: the
    run itself is not touched."""

    KINDS = ("STEP_SUCCESS", "STEP_FAILURE", "STEP_UP_FOR_RETRY", "ASSET_MATERIALIZATION")

    def __init__(
        self,
        instance: dg.DagsterInstance,
        run_id: str | Callable[[], str | None],
        steps: int,
        out: Callable[[str], None],
    ) -> None:
        # a run id, or how to find it once it exists (a re-execution's: run_retry.py)
        self._instance, self._steps, self._out = instance, steps, out
        self._run_id = run_id if isinstance(run_id, str) else None
        self._find = None if isinstance(run_id, str) else run_id
        self._done = 0
        self._cursor: str | None = None
        self._materialized: Counter[str] = Counter()
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="aps-etl-progress", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            self._poll()
        self._poll()  # the last steps

    def _poll(self) -> None:
        from dagster._core.events import DagsterEventType

        types = {DagsterEventType(kind).value for kind in self.KINDS}
        if self._run_id is None and self._find is not None:
            self._run_id = self._find()
        if self._run_id is None:
            return
        try:
            records = self._instance.get_records_for_run(self._run_id, cursor=self._cursor)
        except Exception:  # the run may not be stored yet: try again at the next tick
            return
        self._cursor = records.cursor or self._cursor
        for record in records.records:
            entry = record.event_log_entry
            event = entry.dagster_event
            level = entry.level
            if isinstance(level, str):
                level = logging.getLevelName(level.upper())
            if event is None and isinstance(level, int) and level >= logging.WARNING:
                # a warning of the run (the project's loggers, Dagster's): its first line
                lines = (entry.user_message or "").strip().splitlines()
                self._out(f"  warning: {lines[0][:240] if lines else ''}")
                continue
            if event is None or event.step_key is None or event.event_type_value not in types:
                continue
            kind = event.event_type_value
            if kind == "ASSET_MATERIALIZATION":
                self._materialized[event.step_key] += 1
                continue
            if kind != "STEP_UP_FOR_RETRY":
                self._done += 1
            state = {"STEP_SUCCESS": "done", "STEP_FAILURE": "FAILED"}.get(kind, "retrying")
            made = self._materialized[event.step_key]
            width = 20  # the bar: the run's steps, done so far
            filled = round(width * min(self._done, self._steps) / max(self._steps, 1))
            self._out(
                f"  [{'#' * filled}{'.' * (width - filled)}] "
                f"[{self._done}/{self._steps}] {time.monotonic() - self._started:6.1f} s  "
                f"{event.step_key:<52} {state}"
                + (f" ({made} materialization{'s' if made > 1 else ''})" if made else "")
            )

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)  # its last poll prints before the report


def step_seconds(
    result: dg.ExecuteInProcessResult, instance: dg.DagsterInstance
) -> dict[str, float]:
    """Wall time of each step, from the run's event log."""
    started: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for entry in instance.all_logs(result.run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            started[event.step_key] = entry.timestamp
        elif (
            event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in started
        ):
            seconds[event.step_key] = entry.timestamp - started[event.step_key]
    return seconds


def stage_reports(
    result: dg.ExecuteInProcessResult, instance: dg.DagsterInstance
) -> list[StageReport]:
    seconds = step_seconds(result, instance)
    reports: dict[str, StageReport] = {}
    for event in result.get_asset_materialization_events():
        # a range run records one materialization per partition, each with its own rows
        asset = event.materialization.asset_key.to_user_string()
        metadata = event.materialization.metadata
        rows = metadata.get("row_count") or metadata.get("rows_loaded")
        # row_count / rows_loaded are MetadataValue.int: the value is an int
        count = cast("int | None", getattr(rows, "value", rows))
        reused = bool(getattr(metadata.get("reused"), "value", False))
        seen = reports.get(asset)
        if seen is not None:
            if count is not None:
                seen.rows = (seen.rows or 0) + count
            if not reused:
                seen.extra.pop("reused", None)
            continue
        path = metadata.get("parquet_path") or metadata.get("target_table")
        reports[asset] = StageReport(
            asset=asset,
            rows=count,
            path=str(getattr(path, "value", path)) if path is not None else None,
            seconds=seconds.get(event.step_key or ""),
            extra={"reused": "reused"} if reused else {},
        )
    return list(reports.values())


def print_report(
    result: dg.ExecuteInProcessResult,
    instance: dg.DagsterInstance,
    partition_key: str,
    seconds: float,
) -> None:
    status = "succeeded" if result.success else "FAILED"
    print(f"\njob {JOB_NAME} for partition {partition_key} {status} in {seconds:.1f} s")
    order = {"extract": 0, "transform": 1, "validated": 2, "load": 3}
    reports = stage_reports(result, instance)
    width = max((len(r.asset) for r in reports), default=40)
    for report in sorted(reports, key=lambda r: (order[r.asset.split("/")[0]], r.asset)):
        rows = f"{report.rows:>9,} rows" if report.rows is not None else " " * 14
        took = f"{report.seconds:6.2f} s" if report.seconds is not None else " " * 8
        note = " (snapshot current: source unchanged)" if report.extra.get("reused") else ""
        print(f"  {report.asset:<{width}} {rows} {took}  {report.path or ''}{note}")
    if not result.success:
        for event in result.all_events:
            if event.is_step_failure:
                error = event.step_failure_data.error
                print(f"  step {event.step_key} failed: {error.message.strip() if error else ''}")
            elif event.event_type_value == "RESOURCE_INIT_FAILURE":
                # e.g. the day's run lock held by another run (lib/run_lock.py): the cause
                # at the bottom of Dagster's "Error executing resource_fn" chain
                error = getattr(event.event_specific_data, "error", None)
                while error is not None and error.cause is not None:
                    error = error.cause
                cause = error.message.strip() if error else "see the run's events"
                head, sep, rest = cause.partition(": ")  # "module.ErrorClass: what"
                cause = rest if sep and re.fullmatch(r"[\w.]+", head) else cause
                print(f"  the run did not start: {cause}")


def exit_status(result: dg.ExecuteInProcessResult, instance: dg.DagsterInstance) -> int:
    """0 succeeded; 3 failed only on services' faults (retries spent); 1 otherwise."""
    if result.success:
        return 0
    from aps_etl.cli.faults import FAULT_EXIT
    from aps_etl.lib.failure_kind import FAILURE_KIND_TAG

    run = instance.get_run_by_id(result.run_id)
    return FAULT_EXIT if run and run.tags.get(FAILURE_KIND_TAG) == "transient" else 1


def target_rows(partition_key: str) -> dict[str, int]:
    """Rows per target table for the partition, read back from PostgreSQL; a merged table
    (the master dimensions) counts all its rows, "(all)" after its name. A dropped
    connection is tried again (the run's outcome is what counts, not the report's)."""
    from aps_etl.lib.failure_kind import kind_of

    for attempt in range(4):
        try:
            return _target_rows(partition_key)
        except Exception as exc:
            if kind_of(exc) != "transient" or attempt == 3:
                raise
            time.sleep(2**attempt)
    raise AssertionError("unreachable")


def _target_rows(partition_key: str) -> dict[str, int]:
    from aps_etl.defs.registry import DAILY_RUN, outputs_of_run
    from aps_etl.env.settings import resources_for
    from aps_etl.lib.warehouse.merge import is_merge
    from aps_etl.lib.warehouse.target import TARGET_SCHEMA, ident

    target = resources_for()["loader"].target.process_config_and_initialize()  # resolves EnvVars
    counts = {}
    with target.connect() as connection, connection.cursor() as cursor:
        for _, table in outputs_of_run(DAILY_RUN):
            if is_merge(table):
                cursor.execute(f"select count(*) from {ident(TARGET_SCHEMA, table.name)}")
                counts[f"{table.name} (all)"] = cursor.fetchone()[0]
                continue
            cursor.execute(
                f"select count(*) from {ident(TARGET_SCHEMA, table.name)} where base_date = $1",
                parameters=(dt.date.fromisoformat(partition_key),),
            )
            counts[table.name] = cursor.fetchone()[0]
    return counts


def lake_root() -> str:
    """The lake of the current environment (a folder, or s3://bucket[/prefix])."""
    from aps_etl.env.settings import resources_for

    return resources_for()["lake"].root
