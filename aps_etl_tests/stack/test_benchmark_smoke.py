"""The whole benchmark (benchmarks/, `make bench`) at a few thousand rows, so that it cannot
rot: every case and every peer runs on the dev stack and the embedded default, and the
results table is written with every ratio. Nothing here looks at a speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from aps_etl.env.stack import REPO_ROOT

pytestmark = pytest.mark.stack

REPO = REPO_ROOT
# The smoke plan (benchmarks/harness.py SMOKE_PLAN): every case once, no warm-up round
CASES = {"day/trino", "day/embedded", "day/trino_cli", "plan/trino"}
# (data set, server) pairs the peers run on: where our cases run
PEER_SETS = 3
PEERS = ("pandas", "dlt", "dlt_pyarrow", "sling", "floor")
STAGES = {"extract", "lake_write", "transform", "load", "orchestration", "startup"}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, stack_settings) -> dict:
    out = tmp_path_factory.mktemp("bench-results")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks", "--bench-scale=smoke",
         "-p", "no:cacheprovider", "-q"],
        cwd=REPO,
        env={**os.environ, "APS_BENCH_RESULTS": str(out)},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert (out / "latest-smoke.md").exists()
    results = json.loads((out / "latest-smoke.json").read_text())
    results["scaleout"] = json.loads((out / "scaleout" / "latest-smoke.json").read_text())
    return results


def test_every_case_ran_with_its_stages_rows_and_memory(results) -> None:
    ours = {m["key"]: m for m in results["measurements"] if m["kind"] == "ours"}
    assert set(ours) == CASES
    for key, m in ours.items():
        assert m["error"] is None, (key, m["error"])
        assert set(m["stages_s"]) == STAGES, key
        assert m["rows"] > 1000 and m["rows_per_s"] > 0 and m["peak_rss_mb"] > 50, key
        assert m["run_s"] < m["wall_s"], key
        loaded = m["rounds"][0]["result"]["loaded_rows"]
        assert loaded > 0, f"{key} loaded nothing"


def test_every_peer_moved_every_row(results) -> None:
    peers = [m for m in results["measurements"] if m["kind"] == "peer"]
    # each peer on each data set and server where one of our cases ran
    assert len(peers) == len(PEERS) * PEER_SETS
    for m in peers:
        assert m["error"] is None, (m["key"], m["error"])
        assert m["wall_s"] > 0 and set(m["stages_s"]) >= {"extract", "lake_write", "load"}


def test_the_table_gives_our_ratio_to_every_peer_and_the_machine(results) -> None:
    pairs = {(c["case"], c["peer"]) for c in results["comparisons"] if c["ratio"]}
    assert pairs == {(case, peer) for case in CASES for peer in PEERS}
    machine = results["machine"]
    assert machine["cores"] and machine["memory_gb"] and machine["packages"]["dagster"]
    assert "trino" in results["servers"] and results["rows"]["day"] < 100_000
    # the same rows on both servers: the embedded source is seeded like the stack's
    datasets = results["datasets"]["day"]
    assert datasets["stack"]["reads"] == datasets["embedded"]["reads"]


def test_the_living_source_cases_ran(results) -> None:
    living = {m["key"]: m for m in results["measurements"] if m["kind"] == "living"}
    assert set(living) == {
        "living/sensor_check",
        "living/full_resnapshot",
        "living/incremental_resnapshot",
    }
    for key, m in living.items():
        assert m["error"] is None and m["wall_s"] > 0, key
    per_table = living["living/sensor_check"]["stages_s"]
    assert {"process_result", "lot_history", "product"} <= set(per_table)
    methods = living["living/incremental_resnapshot"]["rounds"][0]["result"]["methods"]
    assert methods["process_result"] == "new/incremental", methods
    assert methods["product"] == "current/full", methods


def test_the_launched_path_and_the_swap_cases_ran(results) -> None:
    launched = {m["key"]: m for m in results["measurements"] if m["kind"] == "launched"}
    assert set(launched) == {"launched/day/trino"}  # the smoke's one (SMOKE_PLAN)
    for key, m in launched.items():
        assert m["error"] is None and m["rounds"], key
        stages = m["rounds"][0]["result"]["stages"]
        assert set(stages) == {"queue", "worker start", "run"}, key
        assert all(v >= 0 for v in stages.values()) and m["wall_s"] > stages["run"], key
    swaps = {m["tool"]: m for m in results["measurements"] if m["kind"] == "swap"}
    assert set(swaps) == {"ours", "naive", "detach_concurrently", "row_replace"}
    seen = {k: m["rounds"][0]["result"]["day_seen_other_than_whole"] for k, m in swaps.items()}
    assert seen["ours"] == [], seen  # never a day half there or missing


def test_the_merge_cases_ran_and_merged_exactly_the_changes(results) -> None:
    """benchmarks/test_merge.py: the pipeline's merge and Trino's MERGE change the same rows
    (1% updated, 0.1% new, 0.1% gone); the full replace rewrites every row."""
    merges = {m["tool"]: m for m in results["measurements"] if m["kind"] == "merge"}
    assert set(merges) == {"ours_shipped", "ours", "trino_merge", "replace"}
    for way, m in merges.items():
        assert m["error"] is None and m["rounds"] and m["rounds"][0]["wall_s"] > 0, way
    rows = merges["ours"]["rows"]
    # the snapshot: ids shifted by rows // 1000, every step-th id's capacity changed
    gone, step = rows // 1000, rows // max(1, rows // 100)
    updated = rows // step - gone // step
    ours = merges["ours"]["rounds"][0]["result"]
    assert ours == {"inserted": gone, "updated": updated, "deleted": gone}
    # the pipeline's way: Trino wrote the new and changed rows only
    shipped = merges["ours_shipped"]["rounds"][0]["result"]
    assert shipped == {**ours, "shipped": gone + updated}
    trino = merges["trino_merge"]["rounds"][0]["result"]
    assert trino == {"merged": gone + updated, "deleted": gone}


def test_a_range_is_backfilled_single_run_and_multi_run_through_trino(results) -> None:
    """benchmarks/test_scale_out.py: the range in one run and in a run per day, every run
    succeeded, every day loaded; the worker counts the stack could give were measured."""
    scaleout = results["scaleout"]
    by_policy = {r["policy"]: r for r in scaleout["backfill"]}
    assert set(by_policy) == {"single-run", "multi-run:1"}
    days = scaleout["days"]
    assert by_policy["single-run"]["runs"] == 1 and by_policy["multi-run:1"]["runs"] == days
    for policy, r in by_policy.items():
        assert r["failed_runs"] == 0 and r["target_rows_loaded"] > 0, policy
        assert r["peak_tree_rss_mb"] > 100 and r["wall_s"] > 0, policy
    loaded = {r["target_rows_loaded"] for r in by_policy.values()}
    assert len(loaded) == 1, f"the same days loaded different rows: {by_policy}"
    assert scaleout["workers"], "no Trino worker count measured"
    assert scaleout["machine"]["cores"]
