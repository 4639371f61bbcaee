"""The PRD §11 KPIs, measured from the Dagster instance's own run records.

Per job over the last N days: runs, success rate (target >= 99%), failures by cause (the
failing step and its error class), first-run against rerun time per partition (the
reprocessing time the PRD wants halved) and, for the daily job, each day's freshness lag:
from the end of the business day to its first successful load. `aps-etl report` prints it;
the `etl_report` asset shows the same table in the UI.
"""

# No `from __future__ import annotations`: Dagster reads the report asset's context
# annotation at definition time.

import datetime as dt
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from aps_etl.defs.registry import DAILY_RUN, PLAN_RUN
from aps_etl.lib.business_days import PLANT_TZ, PLANT_UTC_OFFSET

SUCCESS_TARGET = 0.99
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


@dataclass
class JobReport:
    job: str
    runs: int = 0
    succeeded: int = 0
    failed: int = 0
    causes: Counter[str] = field(default_factory=Counter)
    first_run_s: list[float] = field(default_factory=list)
    rerun_s: list[float] = field(default_factory=list)
    # business day -> hours from the day's end to its first successful run's end
    lag_h: dict[str, float] = field(default_factory=dict)
    # business days of the window without a successful run (daily job)
    missing: list[str] = field(default_factory=list)

    @property
    def success_rate(self) -> float | None:
        finished = self.succeeded + self.failed
        return self.succeeded / finished if finished else None


def _partitions(run: dg.DagsterRun) -> list[str]:
    """The partitions a run covered: its one key, or each day of a single-run backfill."""
    tags = run.tags
    if "dagster/partition" in tags:
        return [tags["dagster/partition"]]
    if RANGE_START in tags:
        try:
            start = dt.date.fromisoformat(tags[RANGE_START])
            end = dt.date.fromisoformat(tags.get(RANGE_END, tags[RANGE_START]))
        except ValueError:
            return [tags[RANGE_START]]
        return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
    return []


def _cause(instance: dg.DagsterInstance, run_id: str) -> str:
    """The failing step and its error class ("extract__aps_input: SourceError")."""
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = record.dagster_event
        data = event.step_failure_data if event else None
        error = data.error if data else None
        if error is not None:
            # a user error wraps the real one: name the cause's class
            cls = error.cause.cls_name if error.cause is not None else error.cls_name
            return f"{event.step_key}: {cls}"  # type: ignore[union-attr]
    return "run failed outside a step (launch, worker or orchestration)"


def compute(
    instance: dg.DagsterInstance,
    days: int = 30,
    now: dt.datetime | None = None,
    jobs: tuple[str, ...] = (DAILY_RUN, PLAN_RUN),
) -> list[JobReport]:
    now = now or dt.datetime.now(dt.UTC)
    since = now - dt.timedelta(days=days)
    reports = []
    for job in jobs:
        report = JobReport(job)
        records = instance.get_run_records(
            dg.RunsFilter(job_name=job, created_after=since),
            order_by="create_timestamp",
            ascending=True,
        )
        # partition -> [(status, seconds spent on it, end time)], oldest run first; a
        # range run's time is shared equally by its days
        by_partition: dict[str, list[tuple[Any, float | None, float | None]]] = defaultdict(list)
        for record in records:
            run = record.dagster_run
            report.runs += 1
            if run.status == dg.DagsterRunStatus.SUCCESS:
                report.succeeded += 1
            elif run.status == dg.DagsterRunStatus.FAILURE:
                report.failed += 1
                report.causes[_cause(instance, run.run_id)] += 1
            covered = _partitions(run)
            took = (
                (record.end_time - record.start_time) / max(len(covered), 1)
                if record.start_time and record.end_time
                else None
            )
            for partition in covered:
                by_partition[partition].append((run.status, took, record.end_time))
        success = dg.DagsterRunStatus.SUCCESS
        for partition, runs in by_partition.items():
            # the reprocessing time: every successful run after a partition's first run
            # (a rerun, or the recovery of a failed day); the first run's own time apart
            first_status, first_took, _ = runs[0]
            if first_status == success and first_took is not None:
                report.first_run_s.append(first_took)
            report.rerun_s.extend(t for st, t, _ in runs[1:] if st == success and t is not None)
            done = [end for st, _, end in runs if st == success and end]
            if job == DAILY_RUN and done:
                try:
                    day = dt.date.fromisoformat(partition)
                except ValueError:
                    continue
                day_end = dt.datetime.combine(
                    day + dt.timedelta(days=1), dt.time(), PLANT_UTC_OFFSET
                )
                report.lag_h[partition] = (min(done) - day_end.timestamp()) / 3600
        if job == DAILY_RUN:
            # the business days of the window that no run loaded yet
            last = (now.astimezone(PLANT_UTC_OFFSET) - dt.timedelta(days=1)).date()
            window = [last - dt.timedelta(days=i) for i in range(days)]
            report.missing = sorted(
                d.isoformat() for d in window if d.isoformat() not in report.lag_h
            )
        reports.append(report)
    return reports


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} s" if values else "-"


def render(reports: list[JobReport], days: int) -> str:
    """The KPIs as Markdown (the CLI prints it, the UI renders it)."""
    lines = [
        f"## ETL KPIs (PRD §11), last {days} days",
        "",
        "| job | runs | succeeded | failed | success rate | first run (median) | rerun (median) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in reports:
        rate = r.success_rate
        shown = "-" if rate is None else f"{rate:.1%}"
        if rate is not None and rate < SUCCESS_TARGET:
            shown += f" (below {SUCCESS_TARGET:.0%})"
        lines.append(
            f"| {r.job} | {r.runs} | {r.succeeded} | {r.failed} | {shown} "
            f"| {_median(r.first_run_s)} | {_median(r.rerun_s)} |"
        )
    for r in reports:
        if r.causes:
            lines += ["", f"### Failures of {r.job} by cause", "", "| cause | runs |", "|---|---:|"]
            lines += [f"| {cause} | {n} |" for cause, n in r.causes.most_common()]
    daily = next((r for r in reports if r.job == DAILY_RUN and r.lag_h), None)
    if daily:
        lines += [
            "",
            "### Freshness: from the end of the business day to its first load",
            "",
            "| day | lag |",
            "|---|---:|",
        ]
        lines += [f"| {day} | {h:.1f} h |" for day, h in sorted(daily.lag_h.items())]
    daily = next((r for r in reports if r.job == DAILY_RUN), None)
    if daily and daily.missing:
        shown = ", ".join(daily.missing[-10:])
        more = f" (the latest 10 of {len(daily.missing)})" if len(daily.missing) > 10 else ""
        lines += ["", f"Business days not loaded in the window{more}: {shown}"]
    return "\n".join(lines) + "\n"


def build_report_asset() -> dg.AssetsDefinition:
    @dg.asset(
        key=dg.AssetKey(["ops", "etl_report"]),
        group_name="operations",
        description="The PRD §11 KPIs over the last 30 days, from the instance's run records: "
        "success rate, failures by cause, first-run vs rerun time, freshness lag.",
        kinds={"dagster"},
    )
    def etl_report(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        reports = compute(context.instance, days=30)
        daily = next(r for r in reports if r.job == DAILY_RUN)
        metadata: dict[str, Any] = {"report": dg.MetadataValue.md(render(reports, 30))}
        if daily.success_rate is not None:
            metadata["daily_success_rate"] = dg.MetadataValue.float(daily.success_rate)
        return dg.MaterializeResult(metadata=metadata)

    return etl_report


REPORT_JOB = "etl_report"


def build_report_schedule() -> dg.ScheduleDefinition:
    """The KPIs refreshed every morning at 07:00 Asia/Seoul, after the daily deadline:
    the UI's table is never older than a day."""
    job = dg.define_asset_job(
        REPORT_JOB,
        selection=dg.AssetSelection.assets(dg.AssetKey(["ops", "etl_report"])),
        executor_def=dg.in_process_executor,
        description="The PRD §11 KPIs (ops/etl_report).",
    )
    return dg.ScheduleDefinition(
        job=job,
        cron_schedule="0 7 * * *",
        execution_timezone=PLANT_TZ,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
