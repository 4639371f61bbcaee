"""The partitions every daily asset shares: business days in the plant's time zone."""

import dagster as dg

from aps_etl.calendar import PLANT_TZ

# Business day D is the Asia/Seoul calendar day; the key is its ISO date, the same string
# as the lake's `date=` folder.
DAILY = dg.DailyPartitionsDefinition(start_date="2025-01-01", timezone=PLANT_TZ)

# One partition per COMPLETED APS plan run, added by the plan_run sensor. The key is the
# run_id, the same string as the lake's `run_id=` folder.
PLAN_RUNS = dg.DynamicPartitionsDefinition(name="plan_run_id")
