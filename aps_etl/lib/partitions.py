"""The partitions every daily asset shares (business days in the plant's time zone, plan
runs), and how an asset handles one partition or several in one run."""

import os
import warnings
from collections.abc import Mapping
from datetime import date
from typing import Any

import dagster as dg

from aps_etl.lib.business_days import PLANT_TZ, PartitionKeyError, parse_partition_key

FIRST_DAY_VARIABLE = "APS_FIRST_DAY"
DEFAULT_FIRST_DAY = "2025-01-01"


def first_day() -> date:
    """The plant's first business day in the lake (APS_FIRST_DAY, default 2025-01-01): the
    first daily partition. A plant whose history starts earlier sets it."""
    raw = os.environ.get(FIRST_DAY_VARIABLE, "").strip() or DEFAULT_FIRST_DAY
    try:
        return parse_partition_key(raw)
    except PartitionKeyError as exc:
        raise PartitionKeyError(f"{FIRST_DAY_VARIABLE}: {exc}") from None


# Business day D is the Asia/Seoul calendar day; the key is its ISO date, the same string
# as the lake's `date=` folder. The first day is a deployment setting, read when the
# definitions load.
DAILY = dg.DailyPartitionsDefinition(start_date=first_day().isoformat(), timezone=PLANT_TZ)

# One partition per COMPLETED APS plan run, added by the plan_run sensor. The key is the
# run_id, the same string as the lake's `run_id=` folder.
PLAN_RUNS_NAME = "plan_run_id"
PLAN_RUNS = dg.DynamicPartitionsDefinition(name=PLAN_RUNS_NAME)


# BackfillPolicy is "beta" in Dagster 1.13 but is the documented way to single-run backfills.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`")

BACKFILL_POLICY_VARIABLE = "APS_BACKFILL_POLICY"
MAX_PARTITIONS_VARIABLE = "APS_BACKFILL_MAX_PARTITIONS_PER_RUN"
# The most days one run takes: a single run holds each day's frames at once, so a range of
# years in one run would hold years of rows. A run of a longer range is refused when it
# starts (lib/run_lock.py); `aps-etl backfill` splits a range into runs of this size.
SINGLE_RUN_MAX_DAYS_VARIABLE = "APS_SINGLE_RUN_MAX_DAYS"
DEFAULT_SINGLE_RUN_MAX_DAYS = 31
BACKFILL_POLICIES = ("single_run", "multi_run")


class BackfillPolicyError(ValueError):
    """A backfill setting the code location refuses to load with (names the variable)."""


def configured_backfill_policy() -> dg.BackfillPolicy:
    """How a backfill of daily partitions is split into runs, from the deployment's
    settings (read when the definitions load):

    - APS_BACKFILL_POLICY=single_run (default): the whole range in one run, up to
      APS_SINGLE_RUN_MAX_DAYS days (default 31): a run of a longer range is refused when it
      starts, naming the cap (`aps-etl backfill` splits the range into runs of that size);
    - APS_BACKFILL_POLICY=multi_run: runs of at most APS_BACKFILL_MAX_PARTITIONS_PER_RUN
      days (default 1), which the queue runs side by side (dagster.yaml's run_coordinator).
    """
    raw = os.environ.get(BACKFILL_POLICY_VARIABLE, "").strip() or "single_run"
    policy = raw.lower().replace("-", "_")
    if policy not in BACKFILL_POLICIES:
        raise BackfillPolicyError(
            f"{BACKFILL_POLICY_VARIABLE}={raw!r} is not one of {', '.join(BACKFILL_POLICIES)}"
        )
    count = os.environ.get(MAX_PARTITIONS_VARIABLE, "").strip()
    if policy == "single_run":
        if count:
            raise BackfillPolicyError(
                f"{MAX_PARTITIONS_VARIABLE}={count!r} applies to "
                f"{BACKFILL_POLICY_VARIABLE}=multi_run only (it is {raw!r})"
            )
        single_run_max_days()  # a bad APS_SINGLE_RUN_MAX_DAYS stops the definitions, named
        # Dagster's single_run (its CLI's --partition-range needs it); the cap is checked
        # when a run starts (lib/run_lock.py) and `aps-etl backfill` splits by it
        return dg.BackfillPolicy.single_run()
    try:
        per_run = int(count or "1")
    except ValueError:
        per_run = 0
    if per_run < 1:
        raise BackfillPolicyError(
            f"{MAX_PARTITIONS_VARIABLE}={count!r}: a whole number of days of at least 1"
        )
    return dg.BackfillPolicy.multi_run(per_run)


def single_run_max_days() -> int:
    """APS_SINGLE_RUN_MAX_DAYS, checked: the most days one run takes."""
    raw = os.environ.get(SINGLE_RUN_MAX_DAYS_VARIABLE, "").strip()
    try:
        days = int(raw or DEFAULT_SINGLE_RUN_MAX_DAYS)
    except ValueError:
        days = 0
    if days < 1:
        raise BackfillPolicyError(
            f"{SINGLE_RUN_MAX_DAYS_VARIABLE}={raw!r}: a whole number of days of at least 1"
        )
    return days


def chunks(days: list[str], size: int) -> list[list[str]]:
    """`days` in consecutive runs of at most `size` days."""
    return [days[i : i + size] for i in range(0, len(days), size)]


def backfill_policy(partitions_def: dg.PartitionsDefinition) -> dg.BackfillPolicy | None:
    """Daily assets take a date range in one run (UI backfills and the CLI's
    --partition-range), or in runs of N days with APS_BACKFILL_POLICY=multi_run; plan runs
    are snapshotted one run per run_id."""
    return (
        configured_backfill_policy()
        if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition)
        else None
    )


def per_partition(value: Any, keys: list[str]) -> dict[str, Any]:
    """An input as {key: frame}: the IO manager gives a dict for several partitions."""
    if isinstance(value, Mapping):
        return {key: value[key] for key in keys}
    return {key: value for key in keys}


def one_or_many(by_key: dict[str, Any]) -> Any:
    return next(iter(by_key.values())) if len(by_key) == 1 else by_key


def add_partition_metadata(
    context: Any, asset_key: dg.AssetKey, by_partition: Mapping[str, Mapping[str, Any]]
) -> None:
    """Each partition's own metadata on its own materialization: a range run records one
    materialization per partition, and without this each would carry the run's totals.
    `context`: the step's (AssetExecutionContext) or an IO manager's step context."""
    for partition, metadata in by_partition.items():
        context.add_asset_metadata(dict(metadata), asset_key=asset_key, partition_key=partition)
