"""`aps-etl run` runs its day in this process, where Dagster's daemon cannot retry it: a run
that fails on the infrastructure is re-executed from its failure by the command itself,
saying so on one line, and the day ends exact (issue 29). A run that fails on its data is
not re-executed.

The fault is the target database's: it stops accepting connections, and its sessions are
ended, while the run holds its filled stages (failpoint `load.filled`), for longer than the
load step's own retries last; it comes back when the command announces the re-execution.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import threading
import time
from pathlib import Path

import dagster as dg
import psycopg2

from aps_etl.lib.failure_kind import FAILURE_KIND_TAG
from aps_etl_tests.pipeline_harness import (
    DAILY_TABLES,
    assert_rows_equal,
    reference_partition,
    target_partition,
)
from aps_etl_tests.unit.test_backfill_policy import BIN, REPO, START

DAY = "2026-11-21"


def _admin(uri: str, *statements: str) -> None:
    conn = psycopg2.connect(uri)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    finally:
        conn.close()


def test_aps_etl_run_reexecutes_a_run_the_infrastructure_failed(tmp_path: Path) -> None:
    from aps_etl.devdata import seed_source
    from aps_etl.env.embedded import SOURCE_DB, TARGET_DB, start_embedded_postgres

    home = tmp_path / "local"
    pg = start_embedded_postgres(home / "postgres")
    seed_source(pg.uri(SOURCE_DB), start_date=START, days=3, lots=300, progress=False)
    marker = tmp_path / "failpoint"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APS_", "DAGSTER_HOME"))}
    env.update(
        APS_LOCAL_HOME=str(home),
        APS_RETRY_DELAY_S="1",  # the load step's retries: 1, 3 and 7 s; the run's: 1 s
        APS_FAILPOINT="load.filled",
        APS_FAILPOINT_MARKER=str(marker),
        APS_FAILPOINT_SLEEP_S="3",
    )
    command = subprocess.Popen(
        [str(BIN / "aps-etl"), "run", "--date", DAY],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    output: list[str] = []
    blocked = threading.Event()

    def block_at_the_failpoint() -> None:
        while not marker.exists():
            if command.poll() is not None:
                return
            time.sleep(0.05)
        # the target goes away: no new session, the open ones ended
        _admin(
            pg.uri(SOURCE_DB),
            f"alter database {TARGET_DB} allow_connections false",
            f"select pg_terminate_backend(pid) from pg_stat_activity where datname = '{TARGET_DB}'",
        )
        blocked.set()

    blocker = threading.Thread(target=block_at_the_failpoint, daemon=True)
    blocker.start()
    try:
        assert command.stdout is not None
        for line in command.stdout:
            output.append(line)
            if "re-executing it from the failure" in line:
                _admin(pg.uri(SOURCE_DB), f"alter database {TARGET_DB} allow_connections true")
        status = command.wait(timeout=600)
    finally:
        if command.poll() is None:
            command.kill()
        _admin(pg.uri(SOURCE_DB), f"alter database {TARGET_DB} allow_connections true")
    text = "".join(output)
    assert blocked.is_set(), text
    assert status == 0, text
    retry_lines = [line for line in output if "re-executing it from the failure" in line]
    assert len(retry_lines) == 1 and "(retry 1 of 2)" in retry_lines[0], text
    assert "failed on the infrastructure (step load__aps_daily: cannot connect to" in retry_lines[0]
    assert "Traceback" not in text and "Stack Trace" not in text
    assert "  warning: could not drop 11 unswapped stages" in text  # one line

    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": DAY}))
        assert len(runs) == 2, [r.tags for r in runs]
        retry, first = runs  # newest first
        assert first.status == dg.DagsterRunStatus.FAILURE
        assert first.tags.get(FAILURE_KIND_TAG) == "transient"
        assert first.tags.get("dagster/will_retry") == "true"
        assert retry.status == dg.DagsterRunStatus.SUCCESS
        assert retry.parent_run_id == first.run_id
        assert retry.tags.get("dagster/retry_number") == "1"
        assert FAILURE_KIND_TAG not in retry.tags
    # the day is exact, loaded once
    day = dt.date.fromisoformat(DAY)
    for table in DAILY_TABLES:
        want = reference_partition(pg.uri(SOURCE_DB), table, day)
        assert_rows_equal(table, target_partition(pg.uri(TARGET_DB), table, day), want)


def test_a_run_its_data_failed_is_not_reexecuted(tmp_path: Path) -> None:
    """A day with no source rows fails its completeness guard: a permanent failure, one
    run, exit 1, and its alert is not held back (will_retry false)."""
    from aps_etl.devdata import seed_source
    from aps_etl.env.embedded import SOURCE_DB, start_embedded_postgres

    home = tmp_path / "local"
    pg = start_embedded_postgres(home / "postgres")
    seed_source(pg.uri(SOURCE_DB), start_date=START, days=1, lots=50, progress=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APS_", "DAGSTER_HOME"))}
    env.update(APS_LOCAL_HOME=str(home), APS_RETRY_DELAY_S="0")
    empty_day = "2026-11-24"
    done = subprocess.run(
        [str(BIN / "aps-etl"), "run", "--date", empty_day],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    text = done.stdout + done.stderr
    assert done.returncode == 1, text
    assert "re-executing" not in text
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": empty_day}))
        assert len(runs) == 1, text
        assert runs[0].tags.get(FAILURE_KIND_TAG) == "permanent", runs[0].tags
        assert runs[0].tags.get("dagster/will_retry") == "false"


def test_a_fault_that_outlasts_the_retries_ends_in_exit_status_3(tmp_path: Path) -> None:
    """The target stays away: the run is re-executed twice (run_retries.max_retries), then
    the command ends with exit status 3, a service's fault, and the last attempt is marked
    for its alert (will_retry false)."""
    from aps_etl.devdata import seed_source
    from aps_etl.env.embedded import SOURCE_DB, TARGET_DB, start_embedded_postgres

    home = tmp_path / "local"
    pg = start_embedded_postgres(home / "postgres")
    seed_source(pg.uri(SOURCE_DB), start_date=START, days=3, lots=50, progress=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APS_", "DAGSTER_HOME"))}
    env.update(APS_LOCAL_HOME=str(home), APS_RETRY_DELAY_S="0.2")
    _admin(pg.uri(SOURCE_DB), f"alter database {TARGET_DB} allow_connections false")
    try:
        done = subprocess.run(
            [str(BIN / "aps-etl"), "run", "--date", DAY],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        _admin(pg.uri(SOURCE_DB), f"alter database {TARGET_DB} allow_connections true")
    text = done.stdout + done.stderr
    assert done.returncode == 3, text
    assert "(retry 1 of 2)" in text and "(retry 2 of 2)" in text and "retry 3" not in text
    assert "Traceback" not in text and "Stack Trace" not in text
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": DAY}))
        assert [r.status for r in runs] == [dg.DagsterRunStatus.FAILURE] * 3
        assert runs[0].tags.get("dagster/will_retry") == "false"  # the last: alerted
        assert all(r.tags.get("dagster/will_retry") == "true" for r in runs[1:])
