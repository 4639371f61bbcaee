"""`aps-etl backfill --policy multi-run` killed, sent SIGTERM and robbed of its dagster dev's
daemon with a run going, on the embedded default: nothing left in flight, then the range runs
through; then a deployment (a `dagster dev` started here) runs a backfill submitted to its
instance and one submitted through its webserver (--url)."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest

from aps_etl_tests.backfill_command import _Command
from aps_etl_tests.pipeline_harness import (
    DAILY_TABLES,
    assert_rows_equal,
    reference_partition,
    target_partition,
)
from aps_etl_tests.unit.test_backfill_policy import BIN, DAYS, REPO, START


def _gone(pid: int, timeout_s: float) -> bool:
    import psutil

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.5)
    return False


def _group_gone(pgid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.5)
    return False


# Real dagster devs for about five minutes, processes killed: make test runs it, make unit
# does not.
@pytest.mark.faults
def test_a_multi_run_backfill_survives_kills_then_runs_each_day_in_a_run_of_its_own(
    tmp_path: Path,
) -> None:
    """`aps-etl backfill --policy multi-run:1` on the embedded default: the project's
    dagster.yaml (queued run coordinator, SQLite), a `dagster dev` started for the duration.

    A backfill run by the command's own dagster dev ends with the command, whatever ends it,
    and the range can be run again at once:
    1. the command is killed (SIGKILL) with a run going: its dagster dev gets SIGTERM and
       exits; the next command stops what is left of it (its code server lets its runs go
       on) and closes the backfill;
    2. the command gets SIGTERM (systemd, kill) with a run going: it cancels the runs,
       stops its dagster dev, exits 130;
    3. dagster dev's daemon is killed (SIGKILL): dagster dev stops the rest and exits, the
       command says so and exits 1, its runs canceled.
    Then the range runs through: three runs, one per day, all succeed, and every day's target
    equals the contract."""
    from aps_etl.devdata import seed_source
    from aps_etl.env.embedded import SOURCE_DB, TARGET_DB, start_embedded_postgres

    home = tmp_path / "local"
    pg = start_embedded_postgres(home / "postgres")
    seed_source(pg.uri(SOURCE_DB), start_date=START, days=3, lots=300, progress=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APS_", "DAGSTER_HOME"))}
    env.update(APS_LOCAL_HOME=str(home), APS_RETRY_DELAY_S="0.5")
    args = ["--from", DAYS[0], "--to", DAYS[-1], "--policy", "multi-run:1"]

    def in_flight() -> tuple[list[str], list[str]]:
        from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES

        with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
            backfills = [
                b.backfill_id
                for b in instance.get_backfills()
                if b.status.value in ("REQUESTED", "CANCELING", "FAILING")
            ]
            runs = instance.get_runs(dg.RunsFilter(statuses=NOT_FINISHED_STATUSES))
            return backfills, [r.run_id for r in runs]

    # 1. the command killed
    killed = _Command(args, env)
    killed.wait_for(" STARTED")
    first_dev = killed.dev()
    killed.process.kill()
    killed.finish()
    assert _gone(first_dev, 90), "dagster dev outlived its command"

    # 2. SIGTERM: the left backfill is closed first, then this one canceled cleanly
    termed = _Command(args, env)
    termed.wait_for("was left in flight by a killed aps-etl backfill: canceled")
    # its code server lets its run go on: what was left of its session is stopped
    assert _group_gone(first_dev, 5), "the killed command's code server or run worker stayed"
    termed.wait_for(" STARTED")
    dev = termed.dev()
    termed.process.terminate()
    assert termed.finish() == 130, termed.output
    assert "interrupted; backfill" in termed.output and "CANCELED" in termed.output
    assert _group_gone(dev, 10), "dagster dev or one of its processes stayed"
    assert in_flight() == ([], []), termed.output

    # 3. the daemon killed under the command
    orphaned = _Command([*args, "--timeout", "15m"], env)
    orphaned.wait_for(" STARTED")
    dev = orphaned.dev()
    os.kill(orphaned.daemon(), signal.SIGKILL)
    assert orphaned.finish() == 1, orphaned.output
    assert "the dagster dev this command started exited" in orphaned.output
    assert "run the command again for the rest" in orphaned.output
    assert _group_gone(dev, 10), "dagster dev's code server or run worker stayed"
    assert in_flight() == ([], []), orphaned.output

    done = subprocess.run(
        [str(BIN / "aps-etl"), "backfill", "--env", "local", "--from", DAYS[0], "--to", DAYS[-1],
         "--policy", "multi-run:1"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    output = done.stdout + done.stderr
    log = home / "dagster" / "backfill-dagster-dev.log"
    assert done.returncode == 0, output + (log.read_text()[-3000:] if log.exists() else "")
    assert "no dagster-daemon on this instance: starting dagster dev" in output
    assert "COMPLETED_SUCCESS" in output and "3 run(s), 3 succeeded" in output
    assert "left in flight" not in output
    assert in_flight() == ([], [])
    found = re.search(r"^backfill (\S+): ", output, re.M)
    assert found, output
    backfill_id = found.group(1)

    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    try:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        assert len(runs) == 3, [r.tags for r in runs]
        assert {run.tags.get("aps_etl/launched_by") for run in runs} == {"aps-etl backfill"}
        days = {
            run.tags["dagster/asset_partition_range_start"]
            for run in runs
            if run.tags["dagster/asset_partition_range_end"]
            == run.tags["dagster/asset_partition_range_start"]
        }
        assert days == set(DAYS)
        assert {run.status for run in runs} == {dg.DagsterRunStatus.SUCCESS}
        # each printed as it went
        for run in runs:
            assert f"run {run.run_id[:8]}" in output
        # Whether two of them overlap in time depends on how busy the machine is (on a
        # loaded CI machine each run finished before the daemon launched the next): the
        # queue's limits that allow it are checked above, the overlap is measured in
        # benchmarks/test_scale_out.py.
        records = instance.get_run_records(
            filters=dg.RunsFilter(run_ids=[run.run_id for run in runs])
        )
        assert all(r.start_time and r.end_time for r in records)

        # A deployment already running on the instance (a dagster dev started here): the
        # command leaves the backfill to its daemon, submitted to the instance, or through
        # its webserver with --url. A day the source has no rows for: its run fails (the
        # completeness guard), the command says which step (and, from the instance, why),
        # and exits 1.
        from aps_etl.cli.backfill_daemon import daemon_running, free_port

        deployment_env = {**env, "APS_ENV": "local", "DAGSTER_HOME": str(home / "dagster"),
                          "APS_BACKFILL_POLICY": "multi_run"}  # fmt: skip
        url = f"http://127.0.0.1:{free_port()}"
        with (home / "deployment.log").open("w") as deployment_log:
            deployment = subprocess.Popen(
                [str(BIN / "dagster"), "dev", "-m", "aps_etl.cli.backfill_location",
                 "-h", "127.0.0.1", "-p", url.rsplit(":", 1)[1]],
                env=deployment_env, cwd=REPO, stdout=deployment_log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 180
            while not daemon_running(instance):
                assert time.monotonic() < deadline, "the deployment's daemon did not start"
                time.sleep(0.5)
            failed = subprocess.run(
                [str(BIN / "aps-etl"), "backfill", "--env", "local", "--from", "2026-11-24",
                 "--to", "2026-11-24", "--policy", "multi-run"],
                env=env, cwd=REPO, capture_output=True, text=True, timeout=900,
            )  # fmt: skip
            through_url = subprocess.run(
                [str(BIN / "aps-etl"), "backfill", "--env", "local", "--from", "2026-11-25",
                 "--to", "2026-11-25", "--policy", "multi-run", "--url", url],
                env=env, cwd=REPO, capture_output=True, text=True, timeout=900,
            )  # fmt: skip
        finally:
            deployment.send_signal(signal.SIGTERM)
            deployment.wait(60)
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert "a dagster-daemon is running on this instance" in failed.stdout
        assert "starting dagster dev" not in failed.stdout
        assert "FAILURE" in failed.stdout and "extract__aps_input" in failed.stdout
        assert "1 run(s), 0 succeeded" in failed.stdout
        assert through_url.returncode == 1, through_url.stdout + through_url.stderr
        assert f"submitted to the Dagster webserver at {url}" in through_url.stdout
        assert "starting dagster dev" not in through_url.stdout
        assert "FAILURE" in through_url.stdout and "extract__aps_input" in through_url.stdout
        assert "1 run(s), 0 succeeded" in through_url.stdout
        assert in_flight() == ([], [])
    finally:
        instance.dispose()
    for day in DAYS:
        date = dt.date.fromisoformat(day)
        for table in DAILY_TABLES:
            want = reference_partition(pg.uri(SOURCE_DB), table, date)
            assert_rows_equal(table, target_partition(pg.uri(TARGET_DB), table, date), want)
