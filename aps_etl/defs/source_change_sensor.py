"""The source-change sensor: the MES changes under the lake's snapshots (late, corrected,
deleted rows); the days it changed are snapshotted, transformed and loaded again."""

import datetime as dt
import os
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any

import dagster as dg

from aps_etl.defs.alerts import AlertSettings
from aps_etl.defs.tick_alerts import alerting_tick
from aps_etl.lib.business_days import PartitionKeyError, parse_partition_key
from aps_etl.lib.lake import LakeResource
from aps_etl.lib.partitions import DAILY, PLAN_RUNS_NAME
from aps_etl.lib.postgres import PostgresConnection
from aps_etl.lib.sources.database import SourceDatabase
from aps_etl.lib.tags import SOURCE_CHANGE_TAG
from aps_etl.lib.warehouse.loaders import TargetLoader

SENSOR_NAME = "source_change_sensor"
RECONCILE_DAYS_VAR = "APS_RECONCILE_DAYS"
RECONCILE_INTERVAL_VAR = "APS_RECONCILE_INTERVAL_S"
DEFAULT_RECONCILE_DAYS = 7
DEFAULT_RECONCILE_INTERVAL_S = 600


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise ValueError(f"{name}={value!r} must be a whole number") from None


def _in_progress(instance: dg.DagsterInstance, job_name: str, partition: str) -> bool:
    return bool(
        instance.get_run_records(
            dg.RunsFilter(
                job_name=job_name,
                statuses=[
                    dg.DagsterRunStatus.QUEUED,
                    dg.DagsterRunStatus.NOT_STARTED,
                    dg.DagsterRunStatus.STARTING,
                    dg.DagsterRunStatus.STARTED,
                    dg.DagsterRunStatus.CANCELING,
                ],
                tags={"dagster/partition": partition},
            ),
            limit=1,
        )
    )


def _request(job: str, reason: str, partition: str, states: list) -> dg.RunRequest:
    """A run of `job` for `partition`, keyed by the source state that asked for it: the
    daemon launches it once per distinct change."""
    from aps_etl.lib.sources.changes import change_digest

    return dg.RunRequest(
        job_name=job,
        partition_key=partition,
        run_key=f"{reason}:{partition}:{change_digest(states)}",
        tags={SOURCE_CHANGE_TAG: ", ".join(sorted(s.table for s in states))},
    )


@dataclass
class SourceStates:
    """The source beside the lake's newest snapshots over some days."""

    daily: list  # PartitionState of each daily extract table and day
    todo: dict[str, list]  # the days to run again, with the states that say why
    plans: list  # PartitionState of each snapshotted plan run's tables


def source_states(
    source: SourceDatabase,
    lake: LakeResource,
    target: PostgresConnection,
    days: list[str],
    plan_runs: Container[str] | None = None,
) -> SourceStates:
    """The daily partitions of `days` and the plan runs of the window, beside the lake's
    newest snapshots and what was loaded: shared by the sensor and `aps-etl reconcile`.
    `plan_runs`: only these plan runs (the sensor: those with a partition); default all."""
    from aps_etl.defs.extract import extract_table
    from aps_etl.defs.scenarios.aps_input.assets import DAILY_SPECS, NAMESPACE
    from aps_etl.defs.scenarios.aps_plan.assets import NAMESPACE as PLAN_NAMESPACE
    from aps_etl.lib.sources.changes import (
        daily_states,
        days_to_run,
        plan_states,
        recent_plan_runs,
    )
    from aps_etl.lib.sources.mes import PLAN_EQUIPMENT, PLAN_PRODUCTION

    tables = {spec.name: extract_table(spec, NAMESPACE) for spec in DAILY_SPECS}
    daily = daily_states(source, lake, DAILY_SPECS, tables, days)
    todo = days_to_run(daily, target, NAMESPACE)
    run_ids = recent_plan_runs(source, days[0]) if days else []
    if plan_runs is not None:
        run_ids = [r for r in run_ids if r in plan_runs]
    plan_specs = (PLAN_PRODUCTION, PLAN_EQUIPMENT)
    plan_tables = {s.name: extract_table(s, PLAN_NAMESPACE, "run_id") for s in plan_specs}
    plans = plan_states(source, lake, plan_specs, plan_tables, run_ids)
    return SourceStates(daily, todo, plans)


def source_change_requests(
    instance: dg.DagsterInstance,
    source: SourceDatabase,
    lake: LakeResource,
    target: PostgresConnection,
    days: list[str],
    log: Any = None,
) -> list[dg.RunRequest]:
    """A run of aps_daily for each day whose source changed under its newest snapshots,
    and a run of aps_plan_snapshot for each snapshotted plan run whose rows changed (that
    run fails on purpose, with the reason, and the failure alert goes out)."""
    requests = []
    # Plan runs of the window: immutable by contract, so a change is an error to alert on.
    known = _safe_plan_partitions(instance, log)
    states = source_states(source, lake, target, days, plan_runs=known)
    for day, changed in sorted(states.todo.items()):
        if _in_progress(instance, "aps_daily", day):
            if log:
                log.info(f"{day}: source changed, but a run of it is in progress; next tick")
            continue
        names = ", ".join(sorted(s.table for s in changed))
        if log:
            log.info(f"{day}: newest snapshots of {names} differ from the source or the load")
        requests.append(_request("aps_daily", "source-change", day, changed))
    by_run: dict[str, list] = {}
    for state in states.plans:
        if state.status == "changed" and state.snapshot and state.snapshot.fingerprint:
            by_run.setdefault(state.partition, []).append(state)
    for run_id, changed in sorted(by_run.items()):
        if log:
            log.warning(f"plan run {run_id} changed after its snapshot (immutable)")
        requests.append(_request("aps_plan_snapshot", "plan-changed", run_id, changed))
    return requests


def _safe_plan_partitions(instance: dg.DagsterInstance, log: Any = None) -> set[str]:
    """The plan-run partitions whose keys are safe lake folder names. The plan sensor adds
    no other since it checks them; one added by an older version is left out (named),
    rather than failing every tick inside the lake's layout."""
    from aps_etl.lib.lake.layout import check_partition_key

    safe = set()
    for key in instance.get_dynamic_partitions(PLAN_RUNS_NAME):
        try:
            safe.add(check_partition_key("run_id", key))
        except PartitionKeyError as exc:
            if log:
                log.warning(f"plan-run partition left out of the comparison: {exc}")
    return safe


def build_source_change_sensor(
    jobs: list[Any],
    *,
    days: int | None = None,
    last_day: Callable[[], dt.date] | None = None,
    interval_s: int | None = None,
) -> dg.SensorDefinition:
    """Compares the source with the newest snapshots of the last `days` business days
    (APS_RECONCILE_DAYS, default 7) every `interval_s` (APS_RECONCILE_INTERVAL_S, default
    600 s) and runs what changed. A source it cannot read fails the tick, naming the table."""
    from aps_etl.lib.business_days import business_days, last_complete_day

    window = days if days is not None else _env_int(RECONCILE_DAYS_VAR, DEFAULT_RECONCILE_DAYS)
    if window < 1:
        raise ValueError(f"{RECONCILE_DAYS_VAR} must be at least 1, got {window}")
    interval = interval_s or _env_int(RECONCILE_INTERVAL_VAR, DEFAULT_RECONCILE_INTERVAL_S)

    @dg.sensor(
        name=SENSOR_NAME,
        jobs=jobs,
        minimum_interval_seconds=interval,
        description=f"Every {interval} s: the source's fingerprint of each table and business "
        f"day of the last {window} days beside the newest snapshot in the lake; a day whose "
        "source changed (corrected, late, deleted rows) gets a new snapshot and is "
        "transformed and loaded again. A COMPLETED plan run whose rows changed is "
        "reported by a failing run (immutable by contract).",
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def source_change_sensor(
        context: dg.SensorEvaluationContext,
        source: SourceDatabase,
        lake: LakeResource,
        loader: TargetLoader,
        alert_settings: AlertSettings,
    ):
        first_day = parse_partition_key(DAILY.get_first_partition_key() or "2025-01-01")
        until = (last_day or last_complete_day)()
        check = [d for d in business_days(until, window) if parse_partition_key(d) >= first_day]
        # A source or lake that cannot be read raises: the tick fails, visibly, with the
        # reason, and alerts (once an hour while it lasts).
        with alerting_tick(context.instance, SENSOR_NAME, alert_settings):
            requests = source_change_requests(
                context.instance, source, lake, loader.target, check, context.log
            )
        if not requests:
            return dg.SkipReason(f"source unchanged under the snapshots of {check[0]}..{check[-1]}")
        return requests

    return source_change_sensor
