"""pytest-benchmark wiring: the scale option, the shared servers and data sets, and the
session-finish hook that writes the results table."""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks import harness, report
from benchmarks.machine import embedded_version, load_average, machine_info, other_work

RESULTS = Path(os.environ.get("APS_BENCH_RESULTS", Path(__file__).parent / "results"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--bench-scale",
        default=os.environ.get("APS_BENCH_SCALE", "full"),
        choices=sorted(harness.SCALES),
        help="full: 1M and 10M source rows; smoke: the same cases at a few thousand rows",
    )
    # test_scale_out.py: the backfilled range (default 30 days x 1M rows, smoke 2 x 3,000)
    parser.addoption("--scaleout-days", type=int, help="days backfilled (test_scale_out.py)")
    parser.addoption("--scaleout-rows", type=int, help="source rows per day (test_scale_out.py)")


class Bench:
    """What the whole session shares: the scale, the servers, the data sets, the results."""

    def __init__(self, config: pytest.Config) -> None:
        self.scale = harness.SCALES[config.getoption("--bench-scale")]
        self.started = time.time()
        self.context: dict[str, Any] = {
            "started_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "load_start": load_average(),
            "other_work_start": other_work(),
            "command": " ".join(["pytest", *sys.argv[1:]]),
        }
        self.context["bytecode_compile_s"] = round(harness.compile_bytecode(), 1)
        self.measurements: list[harness.Measurement] = []
        self.datasets: dict[tuple[str, str], Any] = {}
        self.embedded: dict[str, harness.EmbeddedServer] = {}
        self.homes: dict[str, Path] = {}
        self._stack: harness.StackServer | None = None

    @property
    def stack(self) -> harness.StackServer:
        if self._stack is None:
            from aps_etl.env.stack import load_stack_env

            self._stack = harness.StackServer(load_stack_env())
        return self._stack

    def server(self, name: str, role: str):
        if name == "stack":
            return self.stack
        if role not in self.embedded:
            self.embedded[role] = harness.EmbeddedServer(role, self.scale.rows[role])
        return self.embedded[role]

    def dataset(self, role: str, server_name: str):
        key = (role, server_name)
        if key not in self.datasets:
            rows = self.scale.rows[role]
            if server_name == "embedded":
                # seeded exactly as the dev stack's: the same lots, hence the same rows
                lots = self.dataset(role, "stack").lots
                self.datasets[key] = self.server("embedded", role).prepare(role, rows, lots)
            else:
                self.datasets[key] = self.stack.prepare(role, rows)
        return self.datasets[key]

    def home(self, case: str) -> Path:
        if case not in self.homes:
            on_stack = harness.SERVER_OF_CASE[case] == "stack"
            home = harness.dagster_home(case, self.scale.name, self.stack if on_stack else None)
            harness.init_instance(home, "dev" if on_stack else "local")
            self.homes[case] = home
        return self.homes[case]

    def servers(self) -> dict[str, str]:
        from benchmarks.machine import server_versions

        versions = server_versions(self._stack.settings if self._stack else None)
        for server in self.embedded.values():
            try:
                versions["postgresql (embedded)"] = embedded_version(server.target_uri())
            except Exception as exc:
                versions["postgresql (embedded)"] = f"unknown ({type(exc).__name__})"
        return versions

    def finish(self) -> list[Path]:
        if not self.measurements:
            return []
        self.context["load_end"] = load_average()
        self.context["duration_min"] = (time.time() - self.started) / 60
        results = report.build(
            self.scale.name,
            self.scale.rows,
            machine_info(),
            self.servers(),
            {
                role: {
                    server: ds.as_json() for (r, server), ds in self.datasets.items() if r == role
                }
                for role in dict.fromkeys(r for r, _ in self.datasets)
            },
            [m.summary() for m in self.measurements],
            self.context,
        )
        paths = report.write(results, RESULTS)
        for server in self.embedded.values():
            server.close()
        return paths


def pytest_configure(config: pytest.Config) -> None:
    config.stash[BENCH_KEY] = Bench(config)


BENCH_KEY = pytest.StashKey[Bench]()


@pytest.fixture(scope="session")
def bench(pytestconfig: pytest.Config) -> Bench:
    return pytestconfig.stash[BENCH_KEY]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    paths = session.config.stash[BENCH_KEY].finish()
    if paths:
        session.config._bench_paths = paths  # type: ignore[attr-defined]


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    for path in getattr(config, "_bench_paths", []):
        terminalreporter.write_line(f"benchmark results: {path}")
