"""Which failed runs are run again: those whose every step failure was the infrastructure's.

Dagster's run retries (dagster.yaml `run_retries`, max 2) re-execute a failed run from its
failure. With `retry_on_asset_or_op_failure: false` they retry only failures outside the
steps (a lost worker, a resource that could not start); with `true` they would also retry a
validation failure, which fails the same way twice. This hook decides per run instead: at
each step failure it records the kind of the failure (lib/failure_kind.py), the worst so
far, and sets Dagster's own per-run switch `dagster/retry_on_asset_or_op_failure` from it,
which Dagster reads when the run fails. The in-process paths (`aps-etl run`, `reconcile`,
single-run backfills) follow the same verdict (aps_etl/cli/run_retry.py).
"""

from __future__ import annotations

import dagster as dg

from aps_etl.lib.failure_kind import FAILURE_KIND_TAG, kind_of, worst

RETRY_ON_STEP_FAILURE_TAG = "dagster/retry_on_asset_or_op_failure"


@dg.failure_hook(name="mark_failure_kind")
def mark_failure_kind(context: dg.HookContext) -> None:
    instance = context.instance
    run = instance.get_run_by_id(context.run_id)
    before = run.tags.get(FAILURE_KIND_TAG) if run else None
    verdict = (
        worst(before, kind_of(context.op_exception)) if before else kind_of(context.op_exception)
    )
    instance.add_run_tags(
        context.run_id,
        {
            FAILURE_KIND_TAG: verdict,
            RETRY_ON_STEP_FAILURE_TAG: "true" if verdict == "transient" else "false",
        },
    )
    context.log.info(f"step {context.step_key} failed: {verdict} failure")
