"""The in-process paths' run retries: `aps-etl run`, `reconcile` and single-run backfills
run in this process, where Dagster's run retries cannot reach them (its daemon re-executes
only runs it can launch from their code location: "Run does not have an external job
origin"). They follow the same rule instead: a failed run that Dagster marked
`dagster/will_retry` (its failures outside the steps, or step failures that were all the
infrastructure's: defs/retry_hook.py), within `run_retries.max_retries` of the instance,
is re-executed from its failure, here, after a pause, saying so on one line. A run that will
not be re-executed after all (Ctrl-C during the pause) is unmarked, so its alert is sent.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import dagster as dg
from dagster._core.storage.tags import RETRY_NUMBER_TAG, TAGS_TO_MAYBE_OMIT_ON_RETRY

from aps_etl.defs.retries import retry_delay_s
from aps_etl.defs.retry_hook import RETRY_ON_STEP_FAILURE_TAG
from aps_etl.lib.failure_kind import FAILURE_KIND_TAG

JOB_NAME = "aps_daily"
WILL_RETRY_TAG = "dagster/will_retry"
# Tags of a failed run that describe that attempt, not the work: a re-execution starts
# without them (Dagster's own list, and the failure hook's verdict).
NOT_INHERITED = {*TAGS_TO_MAYBE_OMIT_ON_RETRY, FAILURE_KIND_TAG, RETRY_ON_STEP_FAILURE_TAG}


def daily_job() -> dg.JobDefinition:
    """The daily job of the current settings; module-level so Dagster can reconstruct it
    (`dg.reconstructable`) for a re-execution."""
    from aps_etl.definitions import build_defs

    return build_defs().resolve_job_def(JOB_NAME)


def first_failure(result: Any) -> str:
    """One line: the first failed step and its cause (no traceback)."""
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error is not None and error.cause is not None:
                error = error.cause
            lines = (error.message.strip() if error else "").splitlines()
            cause = lines[0] if lines else "failed"
            head, sep, rest = cause.partition(": ")  # "module.ErrorClass: what"
            cause = rest if sep and re.fullmatch(r"[\w.]+", head) else cause
            return f"step {event.step_key}: {cause[:200]}"
    return "the run failed outside its steps"


def retried(
    result: Any,
    instance: dg.DagsterInstance,
    *,
    say: Callable[[str], None] = print,
    watch: Callable[[str, Callable[[], Any]], Any] | None = None,
) -> Any:
    """`result` if it succeeded or is not to be retried, else the result of its
    re-executions from failure (at most the instance's `run_retries.max_retries`).
    `watch(tag value, execute)` runs `execute` with the caller's progress reporting for
    the run that carries `aps_etl/attempt=<tag value>`."""
    limit = instance.run_retries_max_retries if instance.run_retries_enabled else 0
    number = 0
    while not result.success:
        run = instance.get_run_by_id(result.run_id)
        if run is None or run.tags.get(WILL_RETRY_TAG) != "true":
            return result
        number += 1
        if number > limit:
            instance.add_run_tags(run.run_id, {WILL_RETRY_TAG: "false"})
            return result
        delay = retry_delay_s() * 2 ** (number - 1)
        say(
            f"run {run.run_id[:8]} failed on the infrastructure ({first_failure(result)}); "
            f"re-executing it from the failure in {delay:.0f} s (retry {number} of {limit})"
        )
        try:
            time.sleep(delay)
        except BaseException:
            # not re-executed after all: the run's failure is final, and alerted
            instance.add_run_tags(run.run_id, {WILL_RETRY_TAG: "false"})
            raise
        result = _reexecute(run, instance, number, watch)
    return result


def _reexecute(
    parent: dg.DagsterRun,
    instance: dg.DagsterInstance,
    number: int,
    watch: Callable[[str, Callable[[], Any]], Any] | None,
) -> Any:
    from aps_etl.lib.liveness import this_process

    attempt = f"{parent.root_run_id or parent.run_id}#{number}"
    tags = {k: v for k, v in parent.tags.items() if k not in NOT_INHERITED}
    tags |= this_process().tags() | {RETRY_NUMBER_TAG: str(number), "aps_etl/attempt": attempt}

    def execute() -> Any:
        return dg.execute_job(
            dg.reconstructable(daily_job),
            instance,
            tags=tags,
            raise_on_error=False,
            reexecution_options=dg.ReexecutionOptions.from_failure(parent.run_id, instance),
        )

    return watch(attempt, execute) if watch else execute()
