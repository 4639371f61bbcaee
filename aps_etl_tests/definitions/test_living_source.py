"""A living MES source end to end, on the embedded default and on the dev stack (Trino).

Five days are run; then past days change under the lake as a plant's MES changes them
(corrected, late, deleted and moved rows, updated_at going backwards and into the future,
an equipment interval corrected, a late HOLD, a day emptied by a lagging feed and
refilled later, a COMPLETED plan run edited). The source-change sensor is ticked as the
daemon would tick it and what it requests is run; at the end every target table equals
the independent reference SQL on the source again, with no manual step; every older
snapshot is still in the lake; the load log names the versions each table was built on.
The same once more through `aps-etl reconcile`.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import dagster as dg
import pytest

from aps_etl.cli.main import main as cli
from aps_etl.definitions import build_defs
from aps_etl.defs.alerts import AlertSettings
from aps_etl.defs.extract import extract_table
from aps_etl.defs.scenarios.aps_input.assets import DAILY_SPECS
from aps_etl.defs.source_change_sensor import build_source_change_sensor
from aps_etl.devdata import seed_source
from aps_etl.env.embedded import SOURCE_DB, TARGET_DB, start_embedded_postgres
from aps_etl.env.settings import resources_for
from aps_etl.env.stack import postgres_uri
from aps_etl.lib.lake import snapshots
from aps_etl.lib.sources.mes import PLAN_PRODUCTION
from aps_etl_tests import living_source as mes
from aps_etl_tests.pipeline_harness import (
    DAILY_TABLES,
    assert_rows_equal,
    fetch,
    reference_partition,
    run_daily,
    step_failures,
    target_partition,
)

START = dt.date(2026, 11, 20)
DAYS = [(START + dt.timedelta(days=i)).isoformat() for i in range(5)]
LAST = dt.date.fromisoformat(DAYS[-1])


def _environment(kind: str, request: pytest.FixtureRequest, tmp_path_factory, mp) -> dict:
    if kind == "local":
        home = tmp_path_factory.mktemp("living-home")
        mp.setenv("APS_LOCAL_HOME", str(home))
        mp.setenv("APS_ENV", "local")
        mp.delenv("APS_LAKE_ROOT", raising=False)
        pg = start_embedded_postgres(home / "postgres")
        return {
            "source": pg.uri(SOURCE_DB),
            "target": pg.uri(TARGET_DB),
            "owner": pg.uri(SOURCE_DB),
        }
    settings = request.getfixturevalue("stack_settings")
    run = uuid.uuid4().hex[:8]
    mp.setenv("APS_ENV", "dev")
    mp.setenv("APS_LAKE_ROOT", f"s3://{settings['APS_S3_BUCKET']}/tests/living-{run}")
    mp.setenv("APS_TRINO_LAKE_SCHEMA_PREFIX", f"l{run}_")
    owner = postgres_uri(settings, settings["APS_MES_DB"], "mes_owner")
    environment = {
        "source": owner,
        "owner": owner,
        "target": postgres_uri(settings, settings["APS_APS_DB"], "aps_loader"),
    }
    if kind == "dev-mariadb":
        # the pipeline reads the stack's MariaDB; the PostgreSQL `mes` is its twin, on
        # which the changes are made (then copied over) and the reference SQL runs
        from aps_etl_tests.mariadb_twin import stack_mariadb

        mp.setenv("APS_SOURCE_ENGINE", "mariadb")
        environment["twin_of"] = stack_mariadb(settings)
    return environment


def seeded_plant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The plant seeded and run for every day on `request.param`'s environment."""
    with pytest.MonkeyPatch.context() as mp:
        env = _environment(request.param, request, tmp_path_factory, mp)
        seed_source(env["owner"], start_date=START, days=5, lots=500, seed=11, progress=False)
        if "twin_of" in env:
            from aps_etl_tests.mariadb_twin import twin

            env["owner"] = twin(env["owner"], env.pop("twin_of"))
        kind = "dev" if request.param == "dev-mariadb" else request.param
        resources = resources_for(kind)
        defs = build_defs(resources)
        instance = dg.DagsterInstance.ephemeral()
        for day in DAYS:
            result = run_daily(resources, day, instance)
            assert result.success, f"{day}: {step_failures(result)}"
        yield {
            **env,
            "kind": kind,
            "resources": resources,
            "defs": defs,
            "instance": instance,
        }
        if kind == "dev":
            lake = resources["lake"].process_config_and_initialize()
            if lake.fs.exists(lake.root):
                lake.fs.rm(lake.root, recursive=True)


# On the embedded default here; stack/test_living_source_dev.py runs the same tests on the
# dev stack.
@pytest.fixture(scope="module", params=["local"])
def plant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    yield from seeded_plant(request, tmp_path_factory)


def tick(plant: dict) -> list[dg.RunRequest]:
    """One evaluation of the sensor, as the daemon makes it."""
    defs = plant["defs"]
    sensor = build_source_change_sensor(
        [defs.resolve_job_def("aps_daily"), defs.resolve_job_def("aps_plan_snapshot")],
        days=7,
        last_day=lambda: LAST,
    )
    res = plant["resources"]
    with dg.build_sensor_context(
        instance=plant["instance"],
        resources={
            "source": res["source"],
            "lake": res["lake"],
            "loader": res["loader"],
            "alert_settings": AlertSettings(),
        },
        definitions=defs,
    ) as context:
        out = sensor(context)
    return [] if isinstance(out, dg.SkipReason) else list(out)


def run_requested(plant: dict, requests: list[dg.RunRequest]) -> dict[str, Any]:
    """Runs what the sensor asked for, as the daemon would launch it."""
    results = {}
    for request in requests:
        job = plant["defs"].resolve_job_def(request.job_name)
        results[f"{request.job_name}:{request.partition_key}"] = job.execute_in_process(
            partition_key=request.partition_key,
            instance=plant["instance"],
            tags=request.tags,
            raise_on_error=False,
        )
    return results


def lake_of(plant: dict):
    return plant["resources"]["lake"].process_config_and_initialize()


def assert_targets_match_the_source(plant: dict) -> None:
    for day in DAYS:
        date = dt.date.fromisoformat(day)
        for table in DAILY_TABLES:
            want = reference_partition(plant["source"], table, date)
            assert_rows_equal(table, target_partition(plant["target"], table, date), want)


@pytest.fixture(scope="module")
def living(plant):
    """Past days change; the sensor and the runs it requests bring the targets back."""
    uri = plant["owner"]
    before = {
        (spec.name, day): snapshots.history(lake_of(plant), extract_table(spec, "aps_input"), day)
        for spec in DAILY_SPECS
        for day in DAYS
    }
    changes = {
        "backwards": mes.correct_results(
            uri, DAYS[0], 1, updated_at="updated_at - interval '1 hour'"
        ),
        "future": mes.correct_results(
            uri, DAYS[0], 1, updated_at="now() + interval '2 days'", offset=1
        ),
        "corrected": mes.correct_results(uri, DAYS[1]),
        "moved": mes.move_result(uri, DAYS[1]),
        "late": mes.late_result(uri, DAYS[2]),
        "hold": mes.late_hold(uri, DAYS[2]),
        "deleted": mes.delete_result(uri, DAYS[3]),
        "idle": mes.idle_run_interval(uri, DAYS[3]),
        "emptied": mes.empty_day(uri, DAYS[4]),
    }
    first = tick(plant)
    first_runs = run_requested(plant, first)
    refilled = mes.refill_day(uri)
    second = tick(plant)
    second_runs = run_requested(plant, second)
    third = tick(plant)
    return {
        "before": before,
        "changes": changes,
        "first": first,
        "first_runs": first_runs,
        "refilled": refilled,
        "second": second,
        "second_runs": second_runs,
        "third": third,
    }


def test_the_sensor_requests_every_changed_day_once(living) -> None:
    requested = sorted(r.partition_key for r in living["first"])
    assert requested == DAYS, requested
    assert all(r.job_name == "aps_daily" and r.run_key for r in living["first"])
    assert "process_result" in living["first"][0].tags["aps_etl/source_change"]


def test_an_emptied_day_is_refused_then_loaded_when_its_rows_arrive(plant, living) -> None:
    emptied = living["first_runs"][f"aps_daily:{DAYS[4]}"]
    assert not emptied.success
    message = step_failures(emptied)["extract__aps_input"]
    assert f"extract process_result for {DAYS[4]} has 0 rows" in message, message
    assert "looks incomplete" in message
    # the refusal is a failed completeness check of the extract, with its counts
    (check,) = [
        e
        for e in emptied.get_asset_check_evaluations()
        if e.asset_key.path[-1] == "process_result" and e.check_name == "completeness"
    ]
    assert not check.passed and check.metadata["rows"].value == 0
    passed = {
        (e.asset_key.path[-1], e.check_name)
        for e in emptied.get_asset_check_evaluations()
        if e.passed
    }
    assert ("lot_history", "source_rules") in passed and ("product", "completeness") in passed
    for day in DAYS[:4]:
        assert living["first_runs"][f"aps_daily:{day}"].success, step_failures(
            living["first_runs"][f"aps_daily:{day}"]
        )
    # refilled: the day's lot_history snapshot of the failed run was never loaded, so the
    # day runs again even though process_result is as it was
    assert [r.partition_key for r in living["second"]] == [DAYS[4]]
    (rerun,) = living["second_runs"].values()
    assert rerun.success, step_failures(rerun)
    assert living["third"] == [], "the sensor keeps requesting after convergence"


def test_every_target_table_equals_the_reference_again(plant, living) -> None:
    assert_targets_match_the_source(plant)


def test_older_snapshots_stay_and_each_change_made_a_new_version(plant, living) -> None:
    lake = lake_of(plant)
    for (table, day), old in living["before"].items():
        now = snapshots.history(lake, extract_table_named(table), day)
        assert [s.version for s in now] == list(range(1, len(now) + 1))
        assert [(s.version, s.uri, s.fingerprint) for s in now[: len(old)]] == [
            (s.version, s.uri, s.fingerprint) for s in old
        ], f"{table} {day}: an older snapshot changed"
        for snap in now:  # still readable, each version whole
            frame = snapshots.scan(lake, extract_table_named(table), snap).collect()
            assert frame.height == snap.rows
    versions = {
        day: snapshots.history(lake, extract_table_named("process_result"), day) for day in DAYS
    }
    for day in DAYS[:4]:
        assert len(versions[day]) == 2, f"{day}: {[s.version for s in versions[day]]}"
    # a correction with updated_at moving forward is merged in; the rest re-extract fully
    assert versions[DAYS[1]][-1].method == "full"  # a row moved out of the day
    assert versions[DAYS[2]][-1].method == "incremental"  # a late row
    assert versions[DAYS[2]][-1].delta_rows == 2  # the late row and the one moved in
    assert versions[DAYS[3]][-1].method == "full"  # a deleted row
    assert versions[DAYS[0]][-1].method == "full"  # updated_at went backwards
    # the emptied day: refused, so its first snapshot stays the one in force
    assert len(versions[DAYS[4]]) == 1


def extract_table_named(name: str):
    return extract_table(next(s for s in DAILY_SPECS if s.name == name), "aps_input")


def test_the_load_log_names_the_snapshot_versions(plant, living) -> None:
    lake = lake_of(plant)
    for day in DAYS:
        rows = fetch(
            plant["target"],
            "select distinct on (table_name) table_name, rows, snapshots::text as snapshots, "
            "dagster_run_id from aps_load_log where partition_key = $1 "
            "order by table_name, load_id desc",
            day,
        )
        assert {r["table_name"] for r in rows} == set(DAILY_TABLES)
        newest = snapshots.newest(lake, extract_table_named("process_result"), day)
        for row in rows:
            built_on = json.loads(row["snapshots"])
            # tables not built on the day's passes: WIP, lead time, the master dimensions
            if row["table_name"] in ("aps_input_wip", "aps_input_lead_time") or row[
                "table_name"
            ].startswith("aps_dim_"):
                assert "aps_input/process_result" not in built_on
                continue
            used = built_on["aps_input/process_result"]
            assert used["version"] == newest.version and used["uri"] == newest.uri
            assert used["fingerprint"]["checksum"] == newest.fingerprint.checksum
            loaded = target_partition(
                plant["target"], row["table_name"], dt.date.fromisoformat(day)
            )
            assert row["rows"] == len(loaded)


def test_a_changed_plan_run_fails_its_check_run_for_the_alert(plant, living) -> None:
    lake = lake_of(plant)
    table = extract_table(PLAN_PRODUCTION, "aps_plan", "run_id")
    # the plans in force of the five days were snapshotted by the KPI step
    folders = lake.fs.ls(lake.uri("extract", "job_name=aps_plan"), detail=False)
    run_id = sorted(str(f).rsplit("run_id=", 1)[-1] for f in folders)[-1]
    plant["instance"].add_dynamic_partitions("plan_run_id", [run_id])
    assert tick(plant) == []
    mes.change_plan(plant["owner"], run_id, +1)
    try:
        requests = tick(plant)
        assert [(r.job_name, r.partition_key) for r in requests] == [("aps_plan_snapshot", run_id)]
        (result,) = run_requested(plant, requests).values()
        assert not result.success
        message = step_failures(result)["extract__aps_plan"]
        assert f"plan_production of plan run {run_id} changed in the source" in message
        assert "immutable" in message
        assert [s.version for s in snapshots.history(lake, table, run_id)] == [1]
        # the same source state asks for the same run (the daemon runs a run_key once)
        assert [r.run_key for r in tick(plant)] == [r.run_key for r in requests]
    finally:
        mes.change_plan(plant["owner"], run_id, -1)
    assert tick(plant) == []


def test_reconcile_brings_changed_days_back(plant, living, capsys) -> None:
    uri = plant["owner"]
    mes.correct_results(uri, DAYS[2], 3, offset=20)
    mes.delete_result(uri, DAYS[3])
    mes.late_result(uri, DAYS[1])
    mes.move_result(uri, DAYS[0])  # into DAYS[1]
    mes.idle_run_interval(uri, DAYS[4])
    args = ["reconcile", "--env", plant["kind"], "--until", DAYS[-1], "--days", "7"]
    assert cli([*args, "--dry-run"]) == 1
    out = capsys.readouterr().out
    for day, table in [
        (DAYS[0], "process_result"),
        (DAYS[1], "process_result"),
        (DAYS[2], "process_result"),
        (DAYS[3], "process_result"),
        (DAYS[4], "equipment_event"),
    ]:
        assert f"{day}  {table:<16} changed" in out, out
    before = {
        day: snapshots.history(lake_of(plant), extract_table_named("process_result"), day)
        for day in DAYS
    }
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert "after reconciling" in out and "changed" not in out.split("after reconciling")[1]
    assert cli([*args, "--dry-run"]) == 0
    assert_targets_match_the_source(plant)
    for day in DAYS[:4]:  # one new version each, the older ones kept
        after = snapshots.history(lake_of(plant), extract_table_named("process_result"), day)
        assert [s.uri for s in after[:-1]] == [s.uri for s in before[day]]
        assert len(after) == len(before[day]) + 1


def test_reconcile_never_reaches_before_the_first_business_day(plant, capsys, monkeypatch) -> None:
    """--days 7 from the last day, with the plant's history starting two days before it:
    only the days from APS_FIRST_DAY on are compared (and would be run)."""
    monkeypatch.setenv("APS_FIRST_DAY", DAYS[-3])
    args = ["reconcile", "--env", plant["kind"], "--until", DAYS[-1], "--days", "7"]
    cli([*args, "--dry-run"])
    out = capsys.readouterr().out
    assert f", {DAYS[-3]}..{DAYS[-1]}\n" in out, out
    assert all(f"  {day}  " not in out for day in DAYS[:-3]), out


def test_a_forced_full_snapshot_run_takes_every_table_again(plant, living) -> None:
    """Run config `snapshots: full`: the operator's lever when the source was corrected
    behind the fingerprint's back (updated_at left as it was)."""
    lake = lake_of(plant)
    day = DAYS[2]
    before = {
        s.name: snapshots.newest(lake, extract_table(s, "aps_input"), day) for s in DAILY_SPECS
    }
    result = run_daily(
        plant["resources"],
        day,
        plant["instance"],
        run_config={"ops": {"extract__aps_input": {"config": {"snapshots": "full"}}}},
    )
    assert result.success, step_failures(result)
    for spec in DAILY_SPECS:
        after = snapshots.newest(lake, extract_table(spec, "aps_input"), day)
        assert after.version == before[spec.name].version + 1, spec.name
        assert (after.method, after.fingerprint) == ("full", before[spec.name].fingerprint)
    assert_targets_match_the_source(plant)
