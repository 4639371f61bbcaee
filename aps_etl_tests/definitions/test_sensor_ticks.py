"""Sensor ticks on the embedded default: a plan run whose run_id is not a safe partition
key is refused where it enters (named, alerted once, never added, never retried), the
plan runs beside it still get their snapshot, and a tick that fails for any reason alerts
(Slack stand-in: a real local HTTP server)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import dagster as dg
import pytest

from aps_etl.definitions import build_defs
from aps_etl.defs.alerts import AlertSettings
from aps_etl.defs.sensors import build_plan_run_sensor
from aps_etl.defs.source_change_sensor import build_source_change_sensor
from aps_etl.devdata import seed_source
from aps_etl.env.embedded import SOURCE_DB, start_embedded_postgres
from aps_etl.env.settings import resources_for
from aps_etl.lib.partitions import PLAN_RUNS_NAME
from aps_etl_tests.pipeline_harness import fetch

START = dt.date(2026, 11, 20)
# what a MES lets a planner type: a space, a path, another script, a quote
HOSTILE = ("R 2026-11-20 night", "R/../../extract", "R계획-01", "R'; drop table x; --")


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("sensor-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("APS_LOCAL_HOME", str(home))
        mp.setenv("APS_ENV", "local")
        mp.delenv("APS_LAKE_ROOT", raising=False)
        pg = start_embedded_postgres(home / "postgres")
        uri = pg.uri(SOURCE_DB)
        seed_source(uri, start_date=START, days=1, lots=30, seed=83, progress=False)
        resources = resources_for("local")
        yield {"source": uri, "resources": resources, "defs": build_defs(resources)}


def _add_plan_runs(uri: str, run_ids: tuple[str, ...], base_date: str = "2026-11-20") -> None:
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(uri) as connection, connection.cursor() as cursor:
        for run_id in run_ids:
            cursor.execute(
                "insert into plan_run (run_id, base_date, horizon_days, created_at, status) "
                "values ($1, $2::date, 7, now(), 'COMPLETED')",
                parameters=(run_id, base_date),
            )
        connection.commit()


def _settings(slack: Any) -> AlertSettings:
    return AlertSettings(
        slack_token="xoxb-test", slack_channel="#aps-alerts", slack_base_url=slack.base_url
    )


def _tick(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, resources: dict) -> Any:
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        return sensor(context)


def test_an_unsafe_plan_run_id_is_refused_named_and_alerted_once(plant, slack) -> None:
    completed = "select run_id from plan_run where status = 'COMPLETED'"
    known = [row["run_id"] for row in fetch(plant["source"], completed)]
    _add_plan_runs(plant["source"], HOSTILE)
    # a plan older than the plant's first business day (APS_FIRST_DAY, 2025-01-01) is no
    # partition: the sensor does not even list it
    _add_plan_runs(plant["source"], ("R20240601-01",), base_date="2024-06-01")
    instance = dg.DagsterInstance.ephemeral()
    sensor = build_plan_run_sensor(plant["defs"].resolve_job_def("aps_plan_snapshot"))
    resources = {"source": plant["resources"]["source"], "alert_settings": _settings(slack)}

    result = _tick(sensor, instance, resources)

    # the safe plan runs still become partitions and get their snapshot
    requested = sorted(r.partition_key for r in result.run_requests)
    assert requested == sorted(known) and known
    (added,) = result.dynamic_partitions_requests
    assert sorted(added.partition_keys) == sorted(known)
    # each hostile run_id named in one alert each, and nowhere added
    texts = [r["body"]["text"] for r in slack.requests]
    assert len(texts) == len(HOSTILE)
    for run_id in HOSTILE:
        assert sum(repr(run_id) in text for text in texts) == 1, run_id
    assert all("refused" in text for text in texts)

    # the next ticks: the hostile ones are neither added nor alerted again
    instance.add_dynamic_partitions(PLAN_RUNS_NAME, list(added.partition_keys))
    for _ in range(2):
        again = _tick(sensor, instance, resources)
        assert isinstance(again, dg.SkipReason)
        assert f"{len(HOSTILE)} refused" in (again.skip_message or "")
    assert len(slack.requests) == len(HOSTILE)
    assert set(instance.get_dynamic_partitions(PLAN_RUNS_NAME)) == set(known)


def _change_sensor(plant: dict, slack: Any) -> tuple[dg.SensorDefinition, dict[str, Any]]:
    """The source-change sensor over one day, and the resources of a healthy tick."""
    defs = plant["defs"]
    sensor = build_source_change_sensor(
        [defs.resolve_job_def("aps_daily"), defs.resolve_job_def("aps_plan_snapshot")],
        days=1,
        last_day=lambda: START,
    )
    res = plant["resources"]
    resources = {
        "source": res["source"],
        "lake": res["lake"],
        "loader": res["loader"],
        "alert_settings": _settings(slack),
    }
    return sensor, resources


def test_a_hostile_partition_added_before_does_not_fail_the_change_sensor(plant, slack) -> None:
    """As an older version would have left it: the key is left out, the tick runs."""
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(PLAN_RUNS_NAME, [HOSTILE[1]])
    sensor, resources = _change_sensor(plant, slack)
    out = _tick(sensor, instance, resources)
    requests = [] if isinstance(out, dg.SkipReason) else list(out)
    assert HOSTILE[1] not in {r.partition_key for r in requests}
    assert not slack.requests


def test_a_failing_tick_of_the_change_sensor_alerts_once_then_clears(plant, slack) -> None:
    from aps_etl.lib.sources.database import SourceDatabase, SourceError

    instance = dg.DagsterInstance.ephemeral()
    sensor, good = _change_sensor(plant, slack)
    # a MES that does not answer: nothing listens on port 9 here
    down = {
        **good,
        "source": SourceDatabase(
            database="mes", host="127.0.0.1", port=9, user="reader", password="pw-secret-1"
        ),
    }
    for _ in range(2):
        with pytest.raises(SourceError) as raised:
            _tick(sensor, instance, down)
        assert "pw-secret-1" not in str(raised.value)
    (alert,) = slack.requests
    assert "source_change_sensor: tick failed" in alert["body"]["text"]
    assert "pw-secret-1" not in alert["body"]["text"]

    _tick(sensor, instance, good)  # healthy again: the alert is cleared ...
    with pytest.raises(SourceError):
        _tick(sensor, instance, down)  # ... so a new outage alerts at once
    assert len(slack.requests) == 2
