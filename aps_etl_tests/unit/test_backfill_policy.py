"""The backfill policy setting (APS_BACKFILL_POLICY) and `aps-etl backfill --policy`: a
range as a real Dagster backfill, split into runs by the daemon, run by the queue."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from aps_etl.env.stack import REPO_ROOT

REPO = REPO_ROOT
BIN = Path(sys.executable).parent

POLICIES = """
import json
from aps_etl.definitions import defs
from aps_etl.env.stack import REPO_ROOT
found = {}
for node in defs.resolve_asset_graph().asset_nodes:
    if node.partitions_def is None:
        continue
    policy = node.backfill_policy
    found[node.key.to_user_string()] = [
        type(node.partitions_def).__name__,
        policy.policy_type.value if policy else None,
        policy.max_partitions_per_run if policy else None,
    ]
print(json.dumps(found))
"""


def _policies(**settings: str) -> dict[str, list]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("APS_BACKFILL_", "APS_SINGLE_RUN_"))
    }
    done = subprocess.run(
        [sys.executable, "-c", POLICIES],
        env={**env, "APS_ENV": "local", **settings},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_daily_asset_takes_the_configured_backfill_policy() -> None:
    default = _policies()
    multi = _policies(APS_BACKFILL_POLICY="multi_run", APS_BACKFILL_MAX_PARTITIONS_PER_RUN="3")
    daily = [key for key, (kind, _, _) in multi.items() if kind == "DailyPartitionsDefinition"]
    assert len(daily) >= 20, multi  # extracts, transforms, gate and loads of every scenario
    assert default.keys() == multi.keys()
    for key in daily:
        assert default[key][1:] == ["SINGLE_RUN", None], key
        assert multi[key][1:] == ["MULTI_RUN", 3], key
    # plan runs (dynamic partitions) are one run per run_id whatever the setting
    for key, (kind, policy, _) in multi.items():
        if kind != "DailyPartitionsDefinition":
            assert policy is None, key
    one = _policies(APS_BACKFILL_POLICY="multi-run")  # N defaults to 1
    assert {tuple(one[key][1:]) for key in daily} == {("MULTI_RUN", 1)}


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"APS_BACKFILL_POLICY": "parallel"}, "APS_BACKFILL_POLICY='parallel'"),
        (
            {"APS_BACKFILL_POLICY": "multi_run", "APS_BACKFILL_MAX_PARTITIONS_PER_RUN": "0"},
            "APS_BACKFILL_MAX_PARTITIONS_PER_RUN='0'",
        ),
        (
            {"APS_BACKFILL_POLICY": "multi_run", "APS_BACKFILL_MAX_PARTITIONS_PER_RUN": "two"},
            "APS_BACKFILL_MAX_PARTITIONS_PER_RUN='two'",
        ),
        ({"APS_BACKFILL_MAX_PARTITIONS_PER_RUN": "5"}, "applies to APS_BACKFILL_POLICY=multi_run"),
        ({"APS_SINGLE_RUN_MAX_DAYS": "0"}, "APS_SINGLE_RUN_MAX_DAYS='0'"),
    ],
)
def test_a_bad_backfill_setting_stops_the_definitions_by_name(
    settings: dict[str, str], named: str
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("APS_BACKFILL_")},
        "APS_ENV": "local",
        **settings,
    }
    loaded = subprocess.run(
        [sys.executable, "-c", "import aps_etl.definitions"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert loaded.returncode != 0
    assert f"BackfillPolicyError: {named}" in loaded.stderr or named in loaded.stderr
    # the CLI refuses it in one line, exit status 2, before any work
    cli = subprocess.run(
        [str(BIN / "aps-etl"), "backfill", "--from", "2026-11-20", "--to", "2026-11-22"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 2, cli.stdout + cli.stderr
    assert named in cli.stderr and "Traceback" not in cli.stderr
    assert "job aps_daily" not in cli.stdout


def test_the_cli_policy_option_is_checked() -> None:
    from aps_etl.cli.backfill import parse_policy

    # single-run also clears a per-run count inherited from the environment, which
    # single_run would refuse
    assert parse_policy("single-run") == {
        "APS_BACKFILL_POLICY": "single_run",
        "APS_BACKFILL_MAX_PARTITIONS_PER_RUN": "",
    }
    assert parse_policy("multi-run") == {
        "APS_BACKFILL_POLICY": "multi_run",
        "APS_BACKFILL_MAX_PARTITIONS_PER_RUN": "1",
    }
    assert parse_policy("multi_run:7")["APS_BACKFILL_MAX_PARTITIONS_PER_RUN"] == "7"
    for bad in ("multi-run:0", "multi-run:x", "single-run:2", "parallel"):
        with pytest.raises(ValueError, match="multi-run:N"):
            parse_policy(bad)


@pytest.mark.parametrize(
    "config",
    [REPO / "dagster.yaml", REPO / "infra/dagster-dev.yaml", REPO / "infra/docker/dagster.yaml"],
    ids=lambda p: p.parent.name + "/" + p.name,
)
def test_the_queue_runs_disjoint_backfill_runs_side_by_side(config: Path) -> None:
    """One run per partition and per first day of a range; nothing holds all the runs of
    one backfill to one at a time."""
    queue = yaml.safe_load(config.read_text())["run_coordinator"]["config"]
    limits = {limit["key"]: limit for limit in queue["tag_concurrency_limits"]}
    per_value = {"applyLimitPerUniqueValue": True}
    assert limits["dagster/partition"] == {
        "key": "dagster/partition",
        "value": per_value,
        "limit": 1,
    }
    assert limits["dagster/asset_partition_range_start"]["value"] == per_value
    assert limits["dagster/asset_partition_range_start"]["limit"] == 1
    assert "dagster/backfill" not in limits
    assert queue["max_concurrent_runs"] >= 2


START = dt.date(2026, 11, 20)
DAYS = ("2026-11-20", "2026-11-21", "2026-11-22")


def test_a_range_overlapping_a_backfill_in_flight_is_refused(tmp_path: Path) -> None:
    """Only the queue's per-value limits stand between two backfills' runs: the command
    submits no range that overlaps one still in flight."""
    from aps_etl.cli import backfill_runs as backfills
    from aps_etl.definitions import build_defs
    from aps_etl.env.settings import resources_for

    defs = build_defs(resources_for("local"), automation=False)
    with dg.DagsterInstance.ephemeral() as instance:
        first = backfills.submit(instance, defs, "2026-11-20", "2026-11-24", "first")
        with pytest.raises(backfills.BackfillError, match=f"backfill {first} .*2026-11-23"):
            backfills.submit(instance, defs, "2026-11-23", "2026-11-26", "second")
        backfills.submit(instance, defs, "2026-11-25", "2026-11-26", "disjoint")
        # a backfill whose daemon never came is canceled, not left for a later daemon
        backfills.cancel_if_untouched(instance, first)
        backfill = instance.get_backfill(first)
        assert backfill is not None and backfill.status.value == "CANCELED"
        backfills.submit(instance, defs, "2026-11-23", "2026-11-24", "after it")


def test_waiting_on_a_backfill_no_daemon_picks_up_says_so(monkeypatch) -> None:
    from aps_etl.cli import backfill_runs as backfills
    from aps_etl.definitions import build_defs
    from aps_etl.env.settings import resources_for

    monkeypatch.setattr(backfills, "NO_RUN_HINT_S", 0)
    defs = build_defs(resources_for("local"), automation=False)
    with dg.DagsterInstance.ephemeral() as instance:
        backfill_id = backfills.submit(instance, defs, "2026-11-20", "2026-11-21", "waits")
        lines: list[str] = []

        def out(line: str) -> None:  # the hint, then an operator cancels it
            lines.append(line)
            backfills.cancel_if_untouched(instance, backfill_id)

        look = backfills.look_in(instance, backfill_id)
        outcome = backfills.wait(look, backfill_id, out, poll_s=0.05)
    assert "no run yet" in lines[0], lines
    assert outcome.status == "CANCELED" and not outcome.runs and not outcome.success


def test_an_owner_is_gone_only_when_surely_gone() -> None:
    from aps_etl.cli import backfill_owner as owners

    me = json.loads(owners.owner_id())
    assert not owners.owner_gone(json.dumps(me))
    assert me["started"] > 0, "the start time makes a reused pid tell"
    later = {**me, "started": me["started"] + 5}  # a later process with the same pid
    assert owners.owner_gone(json.dumps(later))
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert owners.owner_gone(json.dumps({**me, "pid": child.pid}))
    # another host's process cannot be looked at: it is taken as alive
    assert not owners.owner_gone(json.dumps({**me, "pid": child.pid, "host": "elsewhere"}))
    assert not owners.owner_gone("garbage")


def test_a_backfill_left_by_a_killed_command_is_closed_and_frees_its_days(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The command's own dagster dev died with it: its queued runs would wait for no one, its
    days would refuse every overlapping range, and what is left of its processes (a code
    server letting its runs go on) would run beside the next command's. The next command
    stops them, closes the backfill and settles the heartbeats its daemon left."""
    from dagster._core.storage.tags import BACKFILL_ID_TAG, PARTITION_NAME_TAG
    from dagster._daemon.types import DaemonHeartbeat

    from aps_etl.cli import backfill_daemon as daemons
    from aps_etl.cli import backfill_owner as owners
    from aps_etl.cli import backfill_runs as backfills
    from aps_etl.definitions import build_defs
    from aps_etl.env.settings import resources_for

    defs = build_defs(resources_for("local"), automation=False)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = json.dumps({**json.loads(owners.owner_id()), "pid": child.pid})
    # what its dagster dev left: a process carrying its owner mark (a code server, a run
    # worker), and one carrying another's, which is not touched
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    left_behind = subprocess.Popen(sleeper, env={**os.environ, owners.OWNER_ENV: dead})
    bystander = subprocess.Popen(sleeper, env={**os.environ, owners.OWNER_ENV: "another"})
    monkeypatch.setattr(daemons, "HEARTBEAT_INTERVAL_S", 1)
    # the queued run coordinator: its daemon is one the instance needs (daemon_running)
    queued = {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}
    try:
        with dg.instance_for_test(overrides={"run_coordinator": queued}) as instance:
            left = backfills.submit(instance, defs, "2026-11-20", "2026-11-21", "left", dead)
            alive = backfills.submit(
                instance, defs, "2026-11-23", "2026-11-23", "alive", owners.owner_id()
            )
            theirs = backfills.submit(instance, defs, "2026-11-24", "2026-11-24", "deployment")
            runs = {}
            for day, status in (
                ("2026-11-20", dg.DagsterRunStatus.SUCCESS),
                # not launched yet (a QUEUED run needs a code location's origin to be made
                # here; the faults test leaves real queued runs)
                ("2026-11-21", dg.DagsterRunStatus.NOT_STARTED),
            ):
                run = dg.DagsterRun(
                    job_name="__ASSET_JOB",
                    run_id=f"run-{day}",
                    status=status,
                    tags={BACKFILL_ID_TAG: left, PARTITION_NAME_TAG: day},
                )
                instance.add_run(run)
                runs[day] = run.run_id
            with pytest.raises(backfills.BackfillError, match=left):
                backfills.submit(instance, defs, "2026-11-21", "2026-11-22", "blocked")
            # its daemon's last heartbeats read as a running daemon for a minute: the next
            # command would leave its backfill to no one
            for daemon_type in daemons.DAEMONS:
                instance.add_daemon_heartbeat(
                    DaemonHeartbeat(time.time(), daemon_type, "its-daemon", [])
                )
            assert daemons.daemon_running(instance)

            assert daemons.close_abandoned(instance) == [(left, ["2026-11-21"])]
            assert left_behind.poll() is not None, "what the killed command left still runs"
            assert bystander.poll() is None, "another owner's process was stopped"
            assert instance.get_daemon_heartbeats() == {}
            # a live daemon (a deployment's) beating after the leftovers were stopped: its
            # heartbeats are not touched
            since = time.time()
            instance.add_daemon_heartbeat(DaemonHeartbeat(time.time(), "BACKFILL", "deploy", []))
            instance.add_daemon_heartbeat(
                DaemonHeartbeat(time.time(), "QUEUED_RUN_COORDINATOR", "deploy", [])
            )
            assert not daemons.settle_heartbeats(instance, since, interval_s=1)
            assert set(instance.get_daemon_heartbeats()) == set(daemons.DAEMONS)

            statuses = {b.backfill_id: b.status.value for b in instance.get_backfills()}
            assert statuses[left] == "CANCELED"
            assert statuses[alive] == "REQUESTED" and statuses[theirs] == "REQUESTED"
            queued = instance.get_run_by_id(runs["2026-11-21"])
            done = instance.get_run_by_id(runs["2026-11-20"])
            assert queued is not None and queued.status == dg.DagsterRunStatus.CANCELED
            assert done is not None and done.status == dg.DagsterRunStatus.SUCCESS
            backfills.submit(instance, defs, "2026-11-21", "2026-11-22", "after it")
            assert daemons.close_abandoned(instance) == []

            # A live command's own dagster dev runs `alive`: a second command must not start
            # a daemon beside it nor leave its backfill to it (it stops with the first
            # command), and is told whose it is; once it is done, nothing is refused.
            busy = daemons.another_commands_dev(instance)
            assert busy and f"pid {os.getpid()}" in busy and alive in busy, busy
            backfills.close(instance, alive, "done")
            assert daemons.another_commands_dev(instance) is None
    finally:
        for process in (left_behind, bystander):
            process.kill()
            process.wait()


def test_waiting_on_a_deployment_daemon_says_when_its_heartbeats_stop_and_resume() -> None:
    from dagster._daemon.types import DaemonHeartbeat

    from aps_etl.cli import backfill_daemon as daemons

    queued = {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}
    with dg.instance_for_test(overrides={"run_coordinator": queued}) as instance:
        lines: list[str] = []
        watch = daemons.heartbeat_watch(instance, lines.append, every_s=10)
        watch(5)  # not yet time to look
        assert lines == []
        watch(10)
        assert "has not heartbeaten" in lines[-1]
        watch(20)  # said once, not at every look
        assert len(lines) == 1
        for daemon in daemons.DAEMONS:
            instance.add_daemon_heartbeat(
                DaemonHeartbeat(time.time(), daemon, "deployment", errors=[])
            )
        watch(30)
        assert lines[-1].endswith("the deployment's dagster-daemon is back"), lines


def test_timeout_is_a_duration_and_needs_the_policy() -> None:
    from aps_etl.cli import backfill_runs as backfills
    from aps_etl.cli.params import parse_duration as _duration

    assert [_duration(t) for t in ("90", "90s", "30m", "2h", "1.5h")] == [90, 90, 1800, 7200, 5400]
    for bad in ("0", "-5m", "soon", "2d", "", "nan", "infm"):
        with pytest.raises(Exception, match="duration like"):
            _duration(bad)
    check = backfills.timeout_check(60, "what becomes of it")
    check(59.9)
    with pytest.raises(backfills.BackfillStopped, match="--timeout 60 s: what becomes of it"):
        check(60.1)
    refused = subprocess.run(
        [str(BIN / "aps-etl"), "backfill", "--from", "2026-11-20", "--to", "2026-11-21",
         "--timeout", "5m"],
        env={**os.environ, "APS_ENV": "local"}, cwd=REPO, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert refused.returncode == 2 and "--timeout applies to --policy" in refused.stderr
    assert "job aps_daily" not in refused.stdout
