"""`aps-etl backfill --policy --url` (APS_DAGSTER_URL): the range submitted through a real
Dagster webserver's GraphQL API, started here on a free port and a temporary DAGSTER_HOME,
and followed there. No daemon runs beside it: the backfill stays REQUESTED, which is what
the refusals, the timeout and Ctrl-C are checked against (the faults test runs one through
a `dagster dev`)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from aps_etl_tests.backfill_command import _Command
from aps_etl_tests.unit.test_backfill_policy import BIN, REPO

DAYS = ["2026-11-20", "2026-11-21", "2026-11-22"]


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A dagster-webserver serving the backfill location on its own instance: (url, home)."""
    from aps_etl.cli.backfill_daemon import free_port
    from aps_etl.instance.sqlite_storage import write_local_instance_config

    root = tmp_path_factory.mktemp("webserver")
    home = root / "dagster"
    home.mkdir()
    write_local_instance_config(home, REPO / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APS_", "DAGSTER_HOME"))}
    env.update(APS_ENV="local", APS_LOCAL_HOME=str(root), DAGSTER_HOME=str(home))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (root / "webserver.log").open("w") as log:
        process = subprocess.Popen(
            [str(BIN / "dagster-webserver"), "-m", "aps_etl.cli.backfill_location",
             "-d", str(REPO), "-h", "127.0.0.1", "-p", str(port)],
            env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while True:
            assert process.poll() is None, (root / "webserver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (root / "webserver.log").read_text()[-3000:]
            try:
                urllib.request.urlopen(f"{url}/server_info", timeout=5).read()
                break
            except OSError:
                time.sleep(0.5)
        yield url, home
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)


def _backfill(home: Path, backfill_id: str):  # type: ignore[no-untyped-def]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return instance.get_backfill(backfill_id)


def test_a_range_submitted_through_the_webserver_is_the_daily_jobs_asset_backfill(
    webserver: tuple[str, Path],
) -> None:
    from aps_etl.cli import backfill_graphql as graphql
    from aps_etl.cli import backfill_runs as backfills
    from aps_etl.definitions import build_defs
    from aps_etl.defs.jobs import aps_daily
    from aps_etl.env.settings import resources_for

    url, home = webserver
    defs = build_defs(resources_for("local"), automation=False)
    backfill_id = graphql.submit(url, defs, DAYS[0], DAYS[-1], "through graphql")

    # on the webserver's instance, as the instance path submits it
    backfill = _backfill(home, backfill_id)
    assert backfill is not None and backfill.is_asset_backfill
    assert backfill.status.value == "REQUESTED" and backfill.title == "through graphql"
    assert backfill.tags["aps_etl/launched_by"] == "aps-etl backfill"
    assert backfill.description == f"aps-etl backfill --from {DAYS[0]} --to {DAYS[-1]}"
    assert set(backfill.asset_selection) == set(
        aps_daily.selection.resolve(defs.resolve_asset_graph())
    )
    data = backfill.asset_backfill_data
    assert data is not None
    targeted = {key.partition_key for key in data.target_subset.iterate_asset_partitions()}
    assert targeted == set(DAYS)

    # followed through the webserver: no daemon, so no run
    snapshot = graphql.look_at(url, backfill_id)()
    assert (snapshot.status, snapshot.runs, snapshot.error) == ("REQUESTED", [], "")
    # a range overlapping it is refused, naming it; a disjoint one is not
    with pytest.raises(backfills.BackfillError, match=f"backfill {backfill_id} .*2026-11-22"):
        graphql.submit(url, defs, "2026-11-22", "2026-11-24", "overlaps")
    other = graphql.submit(url, defs, "2026-11-23", "2026-11-23", "disjoint")
    # untouched (no run yet): canceled through the webserver
    for submitted in (backfill_id, other):
        graphql.cancel_if_untouched(url, submitted)
        cancelled = _backfill(home, submitted)
        assert cancelled is not None
        assert cancelled.status.value in ("CANCELING", "CANCELED")
    with pytest.raises(backfills.BackfillError, match="no-such-backfill"):
        graphql.look_at(url, "no-such-backfill")()


def test_an_unreachable_webserver_is_named_in_one_line(tmp_path: Path) -> None:
    from aps_etl.cli.backfill_daemon import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APS_", "DAGSTER_HOME"))}
    env.update(APS_LOCAL_HOME=str(tmp_path), APS_DAGSTER_URL=url)
    done = subprocess.run(
        [str(BIN / "aps-etl"), "backfill", "--env", "local", "--from", DAYS[0], "--to", DAYS[0],
         "--policy", "multi-run"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    # a service's fault, not bad input (docs/operations.md): exit status 3
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"the Dagster webserver at {url}" in done.stderr and "Traceback" not in done.stderr
    # --url alone is the single-run path's refusal
    done = subprocess.run(
        [str(BIN / "aps-etl"), "backfill", "--env", "local", "--from", DAYS[0], "--to", DAYS[0]],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2 and "--url applies to --policy" in done.stderr


def test_the_cli_submits_through_the_url_and_follows_the_backfill_there(
    webserver: tuple[str, Path], tmp_path: Path
) -> None:
    """The command's own environment has another home: the backfill lands in the
    webserver's instance only. --timeout leaves it to the deployment; Ctrl-C cancels it
    while it has no run."""
    url, home = webserver
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APS_", "DAGSTER_HOME"))}
    env.update(APS_LOCAL_HOME=str(tmp_path), APS_DAGSTER_URL=url)
    timed = subprocess.run(
        [str(BIN / "aps-etl"), "backfill", "--env", "local", "--from", "2026-11-25",
         "--to", "2026-11-25", "--policy", "multi-run", "--timeout", "3s"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = timed.stdout + timed.stderr
    assert timed.returncode == 1, output
    assert f"submitted to the Dagster webserver at {url}" in output
    assert "not done after --timeout 3 s: backfill" in output
    assert f"goes on in the deployment at {url}" in output
    backfill_id = output.split("backfill ", 1)[1].split(":", 1)[0]
    left = _backfill(home, backfill_id)
    assert left is not None and left.status.value == "REQUESTED", output
    assert not (tmp_path / "dagster").exists(), "the command used an instance of its own"

    interrupted = _Command(["--from", "2026-11-26", "--to", "2026-11-26", "--policy",
                            "multi-run"], env)  # fmt: skip
    interrupted.wait_for(f"submitted to the Dagster webserver at {url}")
    interrupted.process.send_signal(signal.SIGINT)
    assert interrupted.finish() == 130, interrupted.output
    assert "interrupted; backfill" in interrupted.output
    backfill_id = interrupted.output.split("backfill ", 1)[1].split(":", 1)[0]
    canceled = _backfill(home, backfill_id)
    assert canceled is not None and canceled.status.value in ("CANCELING", "CANCELED")
