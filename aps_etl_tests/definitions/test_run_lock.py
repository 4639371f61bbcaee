"""Bounds on what one run takes, on the embedded default with the CLI's own in-process
runs, which the run queue never sees: one run per day at a time, whatever started it
(aps_etl/lib/run_lock.py; a run of a day another run holds does not start, says which run
holds it, and writes nothing; the lock goes with the holder's process, killed or not), and
at most APS_SINGLE_RUN_MAX_DAYS days a run."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from aps_etl.cli.main import main as cli
from aps_etl.devdata import seed_source
from aps_etl.env.embedded import SOURCE_DB, TARGET_DB, start_embedded_postgres
from aps_etl.env.settings import resources_for
from aps_etl.env.stack import REPO_ROOT
from aps_etl.lib.run_lock import holding
from aps_etl_tests.pipeline_harness import fetch

START = dt.date(2026, 11, 20)
DAYS = ("2026-11-20", "2026-11-21")
LOADS = "select count(*) as n from aps_load_log"


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("lock-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("APS_LOCAL_HOME", str(home))
        mp.setenv("APS_ENV", "local")
        mp.delenv("APS_LAKE_ROOT", raising=False)
        mp.delenv("DAGSTER_HOME", raising=False)
        pg = start_embedded_postgres(home / "postgres")
        seed_source(pg.uri(SOURCE_DB), start_date=START, days=2, lots=40, seed=7, progress=False)
        yield {"home": home, "target": pg.uri(TARGET_DB), "resources": resources_for("local")}


def _loads(plant: dict) -> int:
    try:
        return fetch(plant["target"], LOADS)[0]["n"]
    except Exception:  # before the first load made the table
        return 0


def test_a_day_held_by_another_run_does_not_start_and_names_the_holder(plant, capsys) -> None:
    target = plant["resources"]["loader"].target
    before = _loads(plant)
    with holding(target, "aps_daily", [DAYS[1]], "11111111-2222-3333-4444-555555555555"):
        rc = cli(["run", "--date", DAYS[1]])
        out = capsys.readouterr().out
        assert rc == 1, out
        assert (
            f"the run did not start: aps_daily {DAYS[1]} is already being run by run "
            "11111111-2222-3333-4444-555555555555 since " in out
        ), out
        # a single-run backfill whose range covers the day is refused the same way
        rc = cli(["backfill", "--from", DAYS[0], "--to", DAYS[1]])
        out = capsys.readouterr().out
        assert rc == 1 and f"aps_daily {DAYS[1]} is already being run by run 1111" in out, out
        assert _loads(plant) == before  # nothing written by either
        # another day is not held
        assert cli(["run", "--date", DAYS[0]]) == 0
    capsys.readouterr()
    assert cli(["run", "--date", DAYS[1]]) == 0  # released with the holder's session
    assert _loads(plant) > before


def test_a_run_in_another_process_holds_its_day_until_it_ends_even_killed(
    plant, capsys, tmp_path: Path
) -> None:
    marker = tmp_path / "failpoint"
    env = {
        **os.environ,
        "APS_FAILPOINT": "load.filled",  # stops there, holding its day, until killed
        "APS_FAILPOINT_MARKER": str(marker),
    }
    first = subprocess.Popen(
        [str(REPO_ROOT / ".venv" / "bin" / "aps-etl"), "run", "--date", DAYS[0]],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert first.poll() is None, first.stdout.read() if first.stdout else ""
            assert time.monotonic() < deadline, "the first run never reached its failpoint"
            time.sleep(0.2)
        rc = cli(["run", "--date", DAYS[0]])
        out = capsys.readouterr().out
        assert rc == 1, out
        holder = re.search(
            rf"aps_daily {DAYS[0]} is already being run by run ([0-9a-f-]{{36}})", out
        )
        assert holder, out
        # the holder named is the first process's run, as the instance knows it
        from aps_etl.cli.runner import dagster_instance

        run = dagster_instance().get_run_by_id(holder.group(1))
        assert run is not None and run.tags.get("dagster/partition") == DAYS[0]
        assert run.status.value == "STARTED"
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert cli(["run", "--date", DAYS[0]]) == 0  # the killed run's lock went with it


def test_the_lock_is_the_partitions_whatever_job_runs_it() -> None:
    """A UI "Materialize" of some of a day's assets runs as Dagster's own asset job: it
    takes the same lock as that day's aps_daily."""
    from aps_etl.lib.run_lock import lock_name

    assert lock_name("aps_daily", "2026-11-21") == lock_name("__ASSET_JOB", "2026-11-21")
    assert lock_name("aps_plan_snapshot", "APS-20261121-0524") != lock_name(
        "aps_daily", "2026-11-21"
    )


def test_a_range_longer_than_the_cap_runs_in_runs_of_at_most_that_many_days(
    plant, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("APS_SINGLE_RUN_MAX_DAYS", "1")
    before = _loads(plant)
    assert cli(["backfill", "--from", DAYS[0], "--to", DAYS[1]]) == 0
    out = capsys.readouterr().out
    for number, day in enumerate(DAYS, 1):
        assert f"job aps_daily for {day}...{day} in one run (run {number} of 2:" in out, out
    assert out.count("succeeded in") == 2, out
    assert _loads(plant) > before
    monkeypatch.setenv("APS_SINGLE_RUN_MAX_DAYS", "a month")
    assert cli(["backfill", "--from", DAYS[0], "--to", DAYS[1]]) == 2
    assert "APS_SINGLE_RUN_MAX_DAYS='a month'" in capsys.readouterr().err


def test_a_run_over_more_days_than_the_cap_does_not_start(plant, monkeypatch) -> None:
    """A range run as Dagster's single_run backfill or `dagster asset materialize
    --partition-range` makes it: refused when it starts, naming the cap, nothing written."""
    from aps_etl.cli.runner import dagster_instance, run_job

    monkeypatch.setenv("APS_SINGLE_RUN_MAX_DAYS", "1")
    before = _loads(plant)
    result = run_job(DAYS[0], dagster_instance(), last_partition=DAYS[1])
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "RESOURCE_INIT_FAILURE"]
    error = failure.event_specific_data.error
    while error.cause is not None:
        error = error.cause
    assert f"this run covers 2 days ({DAYS[0]}...{DAYS[1]}); a run takes at most 1" in (
        error.message
    )
    assert "APS_SINGLE_RUN_MAX_DAYS" in error.message
    assert _loads(plant) == before
