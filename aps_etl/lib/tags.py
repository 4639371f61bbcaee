"""Every tag key aps-etl writes on runs and assets, in one place and under one prefix, so the
UI's filters, the instance's queue limits (dagster.yaml's `aps_etl/lane`) and our own
queries agree on the spelling."""

PREFIX = "aps_etl/"

# assets: which PRD scenario and which stage (extract, transform, validated, load, report)
SCENARIO_TAG = PREFIX + "scenario"
STAGE_TAG = PREFIX + "stage"
# asset checks: the freshness check of a daily load
FRESHNESS_TAG = PREFIX + "freshness"
# runs: the queue lane of the plan-snapshot job (one at a time; dagster.yaml)
PLAN_LANE_TAG = PREFIX + "lane"
# runs: what asked for a rerun of a day whose source rows changed (the sensor, reconcile)
SOURCE_CHANGE_TAG = PREFIX + "source_change"
# runs: who launched a backfill's runs, and which live command owns the backfill
LAUNCHED_BY_TAG = PREFIX + "launched_by"
BACKFILL_OWNER_TAG = PREFIX + "backfill_owner"
# runs: the worker process that runs it (run monitoring and `aps-etl doctor` check it)
WORKER_PID_TAG = PREFIX + "worker_pid"
WORKER_HOST_TAG = PREFIX + "worker_host"
WORKER_STARTED_TAG = PREFIX + "worker_started"
