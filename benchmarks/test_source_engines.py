"""The day's source reads from PostgreSQL and from MariaDB in one run (issue 25, item 7).

The `day` data set (1M source rows at full scale, 3,000 at smoke) on the dev stack's
PostgreSQL, and the same day (same lots, same seed, the same rows) seeded into a database
of its own on the dev stack's MariaDB (mariadb_source.py). Every tool of engines.py reads
every SELECT of the day, each in a process of its own, measured like the peers (spawn to
the end of the work, the process's own peak RSS): our extract through `SourceDatabase` on
each engine, the raw ADBC and arrow-odbc floors, and Sling copying the same SELECTs
(views) into the target PostgreSQL. Nothing here asserts a speed; a tool that reads other
than the data set's rows fails its case.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import engines, harness, mariadb_source, peers, processes
from benchmarks.conftest import Bench

ROLE = "day"


@pytest.fixture(scope="module")
def sources(bench: Bench) -> dict[str, Any]:
    postgres = bench.dataset(ROLE, "stack")
    settings = bench.stack.settings
    mariadb, how = mariadb_source.prepare_day(settings, postgres)
    bench.datasets[(ROLE, "mariadb")] = mariadb
    bench.context["mariadb_database"] = (
        f"`{mariadb.name}` on the dev stack's MariaDB, {how}; granted to mes_owner (all) "
        "and mes_reader (SELECT, SHOW VIEW) each session"
    )
    reader = mariadb_source.target(settings, mariadb.name, mariadb_source.READER)
    secrets = {
        engines.PG_SOURCE_URI: bench.stack.reader_uri(postgres.name),
        engines.TARGET_URI: bench.stack.target_uri(),
        **{
            engines.MARIADB_PREFIX + key: str(value)
            for key, value in {
                "HOST": reader.host,
                "PORT": reader.port,
                "DB": reader.database,
                "USER": reader.user,
                "PASSWORD": reader.password,
                "SSLROOTCERT": reader.sslrootcert,
            }.items()
        },
    }
    return {"postgres": postgres, "mariadb": mariadb, "secrets": secrets}


@pytest.mark.parametrize("tool", engines.TOOLS)
def test_day_extract(tool: str, sources: dict[str, Any], bench: Bench, benchmark: Any) -> None:
    engine = engines.ENGINE_OF_TOOL[tool]
    dataset = sources[engine]
    postgres = sources["postgres"]
    measurement = harness.Measurement(
        key=f"engine/{tool}",
        kind="engine",
        tool=tool,
        label=engines.LABELS[tool],
        dataset=ROLE,
        server=f"stack {'PostgreSQL' if engine == 'postgres' else 'MariaDB'}",
        rows=dataset.rows,
    )
    bench.measurements.append(measurement)
    if dataset.reads != postgres.reads:  # the same day, row for row, or nothing to compare
        measurement.error = (
            f"the MariaDB day reads {dataset.reads}, the PostgreSQL day {postgres.reads}"
        )
        pytest.fail(measurement.error)
    sling = tool.startswith("sling_")
    schema = f"{dataset.name}_{tool}"
    target = sources["secrets"][engines.TARGET_URI]
    spec = {
        "tool": tool,
        "day": dataset.partition,
        "plan_in_force": dataset.plan_in_force,
        "mariadb_db": sources["mariadb"].name,
        "schema": schema,
        "work": str(harness.WORK / "engine_work" / f"{bench.scale.name}_{tool}"),
    }

    def setup():
        if sling:
            peers.prepare_target(target, "sling", schema)  # from nothing, as the peers
        return (), {}

    def run() -> None:
        name = f"{bench.scale.name}_engine_{tool}_{len(measurement.rounds)}"
        try:
            done = harness.run_process(
                "benchmarks.engines",
                spec,
                harness.WORK / "logs",
                name,
                secrets=sources["secrets"],
            )
        except processes.ChildFailed as exc:
            measurement.error = str(exc)
            return
        measurement.rounds.append(done)
        if sling:
            moved = peers.count_rows(target, schema, list(dataset.reads))
        else:
            moved = sum(done.result["rows"].values())
        if moved != dataset.rows:
            measurement.error = f"{tool} moved {moved} rows, the data set has {dataset.rows}"

    rounds = bench.scale.peer_rounds[ROLE] if sling else bench.scale.rounds[ROLE]
    benchmark.pedantic(run, setup=setup, rounds=rounds, iterations=1)
    if sling:
        peers.prepare_target(target, "sling", schema, keep=False)
    summary = measurement.summary()
    benchmark.extra_info.update(
        {k: summary.get(k) for k in ("rows", "wall_s", "stages_s", "rows_per_s", "peak_rss_mb")}
    )
    assert measurement.error is None, measurement.error
