"""A code location for the run-monitoring test: one job whose run sleeps (its worker is
killed mid-run) and the project's own failure-alert sensor."""

import time

import dagster as dg

from aps_etl.defs.alerts import alert_resources_from_env, build_alert_sensor


@dg.op
def wait_a_while() -> None:
    time.sleep(600)


@dg.job
def sleepy() -> None:
    wait_a_while()


defs = dg.Definitions(
    jobs=[sleepy], sensors=[build_alert_sensor()], resources=alert_resources_from_env()
)
