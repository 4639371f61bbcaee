"""The code location `aps-etl backfill --policy` serves to the dagster-daemon it starts when
none is running: the assets, jobs, checks and resources of aps_etl.definitions, without
its schedules and sensors (that daemon runs the backfill, not the deployment's automation).
The backfill policy is the one APS_BACKFILL_POLICY sets (aps_etl/lib/partitions.py)."""

from aps_etl.definitions import build_defs

defs = build_defs(automation=False)
