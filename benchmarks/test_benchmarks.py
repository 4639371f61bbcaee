"""The benchmark: our job and the peers, data set by data set, on the same machine in one
run. Run it with `make bench` (or `.venv/bin/pytest benchmarks`; `--bench-scale=smoke` for
the few-thousand-row version the test suite runs). Nothing here asserts a speed: the
results table (benchmarks/results/latest.md) states every target met or missed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from benchmarks import harness, peers, processes
from benchmarks.conftest import Bench


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "item" in metafunc.fixturenames:
        scale = harness.SCALES[metafunc.config.getoption("--bench-scale")]
        items = harness.items(scale)
        metafunc.parametrize("item", items, ids=[_id(i) for i in items])


def _id(item: tuple[str, str, str]) -> str:
    role, tool, where = item
    return f"{role}-{where}" if tool == "ours" else f"{role}-{where}-{tool}"


def test_benchmark(item: tuple[str, str, str], benchmark: Any, bench: Bench) -> None:
    role, tool, where = item
    if tool == "ours":
        measurement = _ours(bench, role, where, benchmark)
    else:
        measurement = _peer(bench, role, tool, where, benchmark)
    summary = measurement.summary()
    benchmark.extra_info.update(
        {
            k: summary.get(k)
            for k in ("rows", "wall_s", "run_s", "stages_s", "rows_per_s", "peak_rss_mb")
        }
    )
    assert measurement.error is None, measurement.error


def _ours(bench: Bench, role: str, case: str, benchmark: Any) -> harness.Measurement:
    server_name = harness.SERVER_OF_CASE[case]
    server = bench.server(server_name, role)
    dataset = bench.dataset(role, server_name)
    home = bench.home(case)
    stack = bench.stack if server_name == "stack" else None
    measurement = harness.Measurement(
        key=f"{role}/{case}",
        kind="ours",
        tool=case,
        label=f"{role} {_rows(dataset.rows)}: {harness.CASES[case]}",
        dataset=role,
        server=server_name,
        rows=dataset.rows,
    )
    bench.measurements.append(measurement)

    # One lake root and Trino schema prefix for all rounds of the case: the untimed
    # warm-up creates the lake tables, as a job's first run ever does, and each timed
    # round is a later day's run (its lake files removed after it, see cleanup_our_round).
    run_tag = harness.new_run_tag()
    rounds = bench.scale.rounds[role]

    def setup():
        harness.clear_target(dataset, server)
        spec = harness.our_spec(case, dataset, server, home, run_tag)
        return (spec,), {}

    def run(spec: dict[str, Any]) -> None:
        name = f"{bench.scale.name}_{role}_{case}_{len(measurement.rounds)}"
        try:
            measurement.rounds.append(
                harness.run_process("benchmarks.run_case", spec, harness.WORK / "logs", name)
            )
        except processes.ChildFailed as exc:
            measurement.error = str(exc)

    def teardown(spec: dict[str, Any]) -> None:
        last = measurement.error is not None or len(measurement.rounds) >= rounds
        harness.cleanup_our_round(case, spec, stack, last=last)

    # Untimed, first: Trino's JIT compiles its operators on first use (a server up for a
    # while has them), and the job's lake tables get created.
    if bench.scale.warmup:
        _warm_up(bench, role, case, setup, measurement, stack)
    if measurement.error is None:
        benchmark.pedantic(run, setup=setup, teardown=teardown, rounds=rounds, iterations=1)
    else:
        benchmark.extra_info["error"] = measurement.error[:500]
    return measurement


def _warm_up(
    bench: Bench,
    role: str,
    case: str,
    setup: Callable[[], tuple[tuple[dict[str, Any]], dict]],
    measurement: harness.Measurement,
    stack: Any,
) -> None:
    (spec,), _ = setup()
    try:
        harness.run_process(
            "benchmarks.run_case",
            spec,
            harness.WORK / "logs",
            f"{bench.scale.name}_{_id((role, 'ours', case))}_warmup",
        )
    except processes.ChildFailed as exc:
        measurement.error = f"warm-up run failed: {exc}"
    finally:
        harness.cleanup_our_round(case, spec, stack, last=measurement.error is not None)


def _peer(bench: Bench, role: str, peer: str, server_name: str, benchmark: Any):
    server = bench.server(server_name, role)
    dataset = bench.dataset(role, server_name)
    secrets = harness.peer_secrets(dataset, server)
    spec = harness.peer_spec(peer, dataset)
    measurement = harness.Measurement(
        key=f"{role}/{server_name}/{peer}",
        kind="peer",
        tool=peer,
        label=peers.PEER_LABELS[peer],
        dataset=role,
        server=server_name,
        rows=dataset.rows,
    )
    bench.measurements.append(measurement)

    def setup():
        peers.prepare_target(secrets[peers.TARGET_VAR], peer, spec["schema"])
        return (), {}

    def run() -> None:
        name = f"{bench.scale.name}_{role}_{server_name}_{peer}_{len(measurement.rounds)}"
        try:
            measurement.rounds.append(
                harness.run_process(
                    "benchmarks.peers", spec, harness.WORK / "logs", name, secrets=secrets
                )
            )
        except processes.ChildFailed as exc:
            measurement.error = str(exc)
            return
        moved = peers.count_rows(secrets[peers.TARGET_VAR], spec["schema"], spec["tables"])
        if moved != dataset.rows:
            measurement.error = f"{peer} moved {moved} rows, the data set has {dataset.rows}"

    benchmark.pedantic(run, setup=setup, rounds=bench.scale.peer_rounds[role], iterations=1)
    # the copy is not kept: the next round or data set starts from nothing
    peers.prepare_target(secrets[peers.TARGET_VAR], peer, spec["schema"], keep=False)
    return measurement


def _rows(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n:,}"
