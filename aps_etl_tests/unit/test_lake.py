"""The lake IO manager: Hive layout, metadata, write-once extracts, crash safety, on a local
folder and on MinIO (the dev stack)."""

import dataclasses
import datetime as dt
import subprocess
import sys
import textwrap
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from aps_etl.lib.business_days import PartitionKeyError
from aps_etl.lib.lake import LakeResource, LakeTable, lineage, snapshots
from aps_etl.lib.lake.atomic import write_parquet
from aps_etl.lib.lake.io_manager import LakeIOManager
from aps_etl.lib.lake.snapshots import SnapshotConflict
from aps_etl.lib.sources.fingerprint import Fingerprint

DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01")
EXTRACT = LakeTable("extract", "aps_input", "things", immutable=True)
TRANSFORM = LakeTable("transform", "aps_input", "summary", partition_column="base_date")


@dg.asset(partitions_def=DAILY, metadata=EXTRACT.as_metadata())
def things(context: dg.AssetExecutionContext) -> pl.LazyFrame:
    n = int(context.run.tags.get("rows", "1000"))
    return pl.LazyFrame({"i": pl.int_range(n, eager=True)}).with_columns(
        day=pl.lit(context.partition_key)
    )


@dg.asset(partitions_def=DAILY, metadata=TRANSFORM.as_metadata())
def summary(context: dg.AssetExecutionContext, things: pl.LazyFrame) -> pl.LazyFrame:
    day = dt.date.fromisoformat(context.partition_key)
    return things.select(n=pl.len(), total=pl.col("i").sum()).with_columns(base_date=pl.lit(day))


# On a local folder here; stack/test_lake_on_minio.py runs the same tests on MinIO.
@pytest.fixture(params=["local"])
def lake(tmp_path: Path) -> LakeResource:
    return LakeResource(root=str(tmp_path / "lake"))


def materialize(lake: LakeResource, assets: list, key: str, rows: int = 1000):
    return dg.materialize(
        assets,
        partition_key=key,
        resources={"io_manager": LakeIOManager(lake=lake)},
        tags={"rows": str(rows)},
        raise_on_error=False,
    )


def metadata_of(result, asset: str) -> dict:
    (event,) = [
        e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == asset
    ]
    return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}


DECLARED = dg.TableSchema(columns=[dg.TableColumn("n", "bigint", description="rows")])


@dg.asset(
    partitions_def=DAILY,
    metadata={**TRANSFORM.as_metadata(), "dagster/column_schema": DECLARED},
)
def declared_summary(context: dg.AssetExecutionContext, things: pl.LazyFrame) -> pl.LazyFrame:
    day = dt.date.fromisoformat(context.partition_key)
    return things.select(n=pl.len()).with_columns(base_date=pl.lit(day))


def test_a_declared_column_schema_is_not_replaced_by_the_parquet_one(tmp_path: Path) -> None:
    """The UI keeps showing a declared output's descriptions after it ran."""
    lake = LakeResource(root=str(tmp_path / "lake"))
    result = materialize(lake, [things, declared_summary], "2026-11-25", rows=10)
    assert result.success
    assert "dagster/column_schema" not in metadata_of(result, "declared_summary")
    assert "dagster/column_schema" in metadata_of(result, "things")  # undeclared: the Parquet's


def test_hive_layout_and_metadata(lake: LakeResource) -> None:
    result = materialize(lake, [things, summary], "2026-11-25", rows=12_345)
    assert result.success
    extract_uri = lake.uri("extract/job_name=aps_input/date=2026-11-25/things/data.parquet")
    transform_uri = lake.uri("transform/job_name=aps_input/date=2026-11-25/summary/data.parquet")
    assert lake.fs.exists(extract_uri) and lake.fs.exists(transform_uri)
    meta = metadata_of(result, "things")
    # a LazyFrame output still records its row count (read from the Parquet footer)
    assert meta["row_count"] == meta["dagster/partition_row_count"] == 12_345
    assert meta["parquet_path"] == extract_uri
    assert meta["size_bytes"] > 0
    assert [c.name for c in meta["dagster/column_schema"].columns] == ["i", "day"]
    assert pl.read_parquet(
        transform_uri, storage_options=lake.polars_storage_options()
    ).to_dicts() == [
        {"n": 12_345, "total": 12_345 * 12_344 // 2, "base_date": dt.date(2026, 11, 25)}
    ]


def test_extract_partitions_are_write_once(lake: LakeResource) -> None:
    assert materialize(lake, [things], "2026-11-24", rows=10).success
    uri = lake.uri(*EXTRACT.file_parts("2026-11-24"))
    before = lake.fs.cat_file(uri)
    second = materialize(lake, [things], "2026-11-24", rows=99)
    assert not second.success
    (failure,) = [e for e in second.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.cause.message
    assert "ImmutablePartitionError" in message and uri in message
    assert lake.fs.cat_file(uri) == before


def test_transform_partitions_are_overwritten(lake: LakeResource) -> None:
    write_parquet(
        lake, TRANSFORM.file_parts("2026-11-24"), pl.DataFrame({"a": [1]}), immutable=False
    )
    write_parquet(
        lake, TRANSFORM.file_parts("2026-11-24"), pl.DataFrame({"a": [2, 3]}), immutable=False
    )
    uri = lake.uri(*TRANSFORM.file_parts("2026-11-24"))
    assert pl.read_parquet(uri, storage_options=lake.polars_storage_options())["a"].to_list() == [
        2,
        3,
    ]


def _fp(rows: int, checksum: str) -> Fingerprint:
    return Fingerprint(rows, None, checksum, "row")


def test_snapshot_versions_sit_side_by_side_and_the_newest_is_read(lake: LakeResource) -> None:
    key = "2026-11-23"
    first = snapshots.write(
        lake, EXTRACT, key, pl.DataFrame({"i": [1, 2]}), version=1, fingerprint=_fp(2, "7")
    )
    assert first.uri.endswith("/date=2026-11-23/things/data.parquet")  # the pre-versions path
    second = snapshots.write(
        lake, EXTRACT, key, pl.DataFrame({"i": [1, 2, 3]}), version=2, fingerprint=_fp(3, "9"),
        method="incremental", base_version=1, delta_rows=1, run_id="r2",
    )  # fmt: skip
    assert second.uri.endswith("/things/data.v2.parquet")
    found = snapshots.history(lake, EXTRACT, key)
    assert [(s.version, s.rows, s.fingerprint) for s in found] == [
        (1, 2, _fp(2, "7")),
        (2, 3, _fp(3, "9")),
    ]
    assert (found[1].method, found[1].base_version, found[1].delta_rows, found[1].run_id) == (
        "incremental", 1, 1, "r2",
    )  # fmt: skip
    assert snapshots.newest_uri(lake, EXTRACT, key) == second.uri
    # a temp file left by a killed writer is never taken for a version
    lake.fs.pipe_file(lake.uri(*EXTRACT.partition_parts(key), ".tmp-dead.parquet"), b"junk")
    assert list(snapshots.versions(lake, EXTRACT, key)) == [1, 2]
    # the IO manager hands downstream assets the newest version
    result = materialize(lake, [things.to_source_asset(), summary], key)
    assert result.success
    out = pl.read_parquet(
        lake.uri(*TRANSFORM.file_parts(key)), storage_options=lake.polars_storage_options()
    )
    assert out["n"].to_list() == [3]


def test_delta_versions_resolve_to_whole_versions(lake: LakeResource) -> None:
    key = "2026-11-25"
    rows = pl.DataFrame({"k": [1, 2, 3], "v": ["a", "b", "c"]})
    v1 = snapshots.write(lake, EXTRACT, key, rows, version=1, fingerprint=_fp(3, "1"))
    v2 = snapshots.write(
        lake, EXTRACT, key, pl.DataFrame({"k": [2, 4], "v": ["B", "d"]}), version=2,
        fingerprint=_fp(4, "2"), method="incremental", base_version=1, delta_rows=2,
        delta_key=("k",),
    )  # fmt: skip
    v3 = snapshots.write(
        lake, EXTRACT, key, pl.DataFrame({"k": [4], "v": ["D"]}), version=3,
        fingerprint=_fp(4, "3"), method="incremental", base_version=2, delta_rows=1,
        delta_key=("k",),
    )  # fmt: skip
    assert v2.uri.endswith("/things/delta.v2.parquet") and v2.is_delta and not v1.is_delta
    assert [s.version for s in snapshots.chain(lake, EXTRACT, v3)] == [1, 2, 3]

    def rows_of(snapshot) -> list[tuple]:
        return sorted(snapshots.scan(lake, EXTRACT, snapshot).collect().rows())

    assert rows_of(v1) == [(1, "a"), (2, "b"), (3, "c")]
    assert rows_of(v2) == [(1, "a"), (2, "B"), (3, "c"), (4, "d")]
    assert rows_of(v3) == [(1, "a"), (2, "B"), (3, "c"), (4, "D")]
    newest = snapshots.newest(lake, EXTRACT, key)
    assert (newest.version, newest.rows, newest.delta_rows) == (3, 4, 1)
    # a delta whose base is gone is an error that names it, never a partial read
    lake.fs.rm(v1.uri)
    with pytest.raises(FileNotFoundError, match="builds on version 1"):
        snapshots.scan(lake, EXTRACT, newest)


def test_a_snapshot_version_is_written_once_even_by_racing_writers(lake: LakeResource) -> None:
    key = "2026-11-24"
    frames = [pl.DataFrame({"i": list(range(n))}) for n in (5, 6, 7, 8)]

    def attempt(frame: pl.DataFrame) -> str:
        try:
            snapshots.write(lake, EXTRACT, key, frame, version=1, fingerprint=None)
            return "won"
        except SnapshotConflict:
            return "lost"

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(attempt, frames))
    assert sorted(outcomes) == ["lost", "lost", "lost", "won"]
    winner = frames[outcomes.index("won")]
    kept = pl.read_parquet(
        snapshots.newest_uri(lake, EXTRACT, key), storage_options=lake.polars_storage_options()
    )
    assert kept.equals(winner)


def _failing_frame() -> pl.LazyFrame:
    def explode(batch: pl.DataFrame) -> pl.DataFrame:
        raise RuntimeError("source connection lost mid-stream")

    return pl.LazyFrame({"a": list(range(10))}).map_batches(explode, schema={"a": pl.Int64})


def test_a_failed_write_leaves_no_partition_and_keeps_the_previous_one(lake: LakeResource) -> None:
    parts = EXTRACT.file_parts("2026-11-22")
    with pytest.raises(Exception, match="source connection lost"):
        write_parquet(lake, parts, _failing_frame(), immutable=True)
    assert not lake.fs.exists(lake.uri(*parts))  # nothing a reader could take as complete

    overwrite = TRANSFORM.file_parts("2026-11-22")
    write_parquet(lake, overwrite, pl.DataFrame({"a": [1, 2]}), immutable=False)
    with pytest.raises(Exception, match="source connection lost"):
        write_parquet(lake, overwrite, _failing_frame(), immutable=False)
    kept = pl.read_parquet(lake.uri(*overwrite), storage_options=lake.polars_storage_options())
    assert kept["a"].to_list() == [1, 2]
    visible = [p.rsplit("/", 1)[-1] for p in lake.fs.ls(lake.uri(*overwrite[:-1]))]
    assert [name for name in visible if not name.startswith((".", "_"))] == ["data.parquet"]


def test_a_killed_process_leaves_no_partition(lake: LakeResource, tmp_path: Path) -> None:
    """SIGKILL in the middle of streaming the Parquet file: the partition does not exist."""
    script = tmp_path / "crash.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, signal, polars as pl
            from aps_etl.lib.lake import LakeResource, LakeTable
            from aps_etl.lib.lake.atomic import write_parquet
            lake = LakeResource.model_validate({lake.model_dump()!r})
            calls = 0
            def crash_midway(batch):
                global calls
                calls += 1
                if calls == 3:
                    os.kill(os.getpid(), signal.SIGKILL)
                return batch
            frame = pl.LazyFrame({{"a": pl.int_range(3_000_000, eager=True)}}).map_batches(
                crash_midway, schema={{"a": pl.Int64}}, streamable=True)
            write_parquet(lake, LakeTable("extract", "aps_input", "things").file_parts(
                "2026-11-21"), frame, immutable=True)
            print("finished")
            """
        )
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert "finished" not in done.stdout
    assert not lake.fs.exists(lake.uri(*EXTRACT.file_parts("2026-11-21")))
    # and a reader is told it is missing
    result = materialize(lake, [things, summary], "2026-11-21")
    assert result.success  # the extract is simply taken again


def test_missing_upstream_partition_is_named(lake: LakeResource) -> None:
    result = dg.materialize(
        [summary, things.to_source_asset()],
        partition_key="2026-11-20",
        resources={"io_manager": LakeIOManager(lake=lake)},
        raise_on_error=False,
    )
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    text = str(failure.step_failure_data.error)
    assert "no snapshot of things in the lake for 2026-11-20" in text
    assert "date=2026-11-20/things)" in text


@pytest.mark.parametrize("key", ["2026-1-5", "20261125", "2026-02-30", "../etc", ""])
def test_malformed_partition_key_is_named(key: str) -> None:
    with pytest.raises(PartitionKeyError, match="invalid partition key"):
        EXTRACT.file_parts(key)


def test_one_output_for_several_partitions_is_split_by_its_partition_column(tmp_path: Path) -> None:
    lake = LakeResource(root=str(tmp_path / "lake"))
    days = [dt.date(2026, 11, 1) + dt.timedelta(days=i) for i in range(3)]

    @dg.asset(
        partitions_def=DAILY,
        metadata=TRANSFORM.as_metadata(),
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def summary(context: dg.AssetExecutionContext) -> pl.DataFrame:
        return pl.DataFrame({"base_date": days * 2, "v": list(range(6))})

    result = dg.materialize(
        [summary],
        resources={"io_manager": LakeIOManager(lake=lake)},
        tags={
            "dagster/asset_partition_range_start": "2026-11-01",
            "dagster/asset_partition_range_end": "2026-11-03",
        },
    )
    assert result.success
    for i, day in enumerate(days):
        frame = pl.read_parquet(lake.uri(*TRANSFORM.file_parts(day.isoformat())))
        assert frame["v"].to_list() == [i, i + 3]
    # one materialization per partition, each with its own file's numbers
    by_day = {
        e.partition: {k: getattr(v, "value", v) for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }
    assert sorted(by_day) == [d.isoformat() for d in days]
    for day, meta in by_day.items():
        assert meta["row_count"] == meta["dagster/partition_row_count"] == 2
        assert meta["parquet_path"] == lake.uri(*TRANSFORM.file_parts(day))


def test_a_long_chain_or_a_big_change_is_written_whole(
    lake: LakeResource, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "2026-11-26"
    base = snapshots.write(
        lake, EXTRACT, key, pl.DataFrame({"k": range(100)}), version=1, fingerprint=_fp(100, "1")
    )
    assert snapshots.delta_allowed(lake, EXTRACT, base, 25)
    assert not snapshots.delta_allowed(lake, EXTRACT, base, 26)  # over a quarter of the rows
    monkeypatch.setattr(snapshots, "MAX_DELTA_ROWS", 10)
    assert not snapshots.delta_allowed(lake, EXTRACT, base, 11)
    monkeypatch.setattr(snapshots, "MAX_DELTAS", 2)
    newest = base
    for version in (2, 3):
        newest = snapshots.write(
            lake, EXTRACT, key, pl.DataFrame({"k": [version]}), version=version,
            fingerprint=_fp(100, str(version)), method="incremental",
            base_version=version - 1, delta_rows=1, delta_key=("k",),
        )  # fmt: skip
    # version 3 rests on two deltas: a third in a row is not allowed
    assert snapshots.delta_allowed(lake, EXTRACT, base, 1)
    assert not snapshots.delta_allowed(lake, EXTRACT, newest, 1)
    # legacy snapshots (no fingerprint) never take a delta
    legacy = dataclasses.replace(base, fingerprint=None)
    assert not snapshots.delta_allowed(lake, EXTRACT, legacy, 1)


def test_inputs_load_as_annotated_and_outputs_carry_dagster_polars_metadata(
    tmp_path: Path,
) -> None:
    """dagster-polars' typed loading is kept: `pl.DataFrame` is collected, an unannotated
    input stays a LazyFrame (ours: dagster-polars would collect it), the `columns` input
    metadata selects columns; a DataFrame output gets its sample rows."""
    lake = LakeResource(root=str(tmp_path / "lake"))
    seen: dict[str, Any] = {}

    def one(name: str, ins: dict) -> Callable:
        table = dataclasses.replace(TRANSFORM, table=name)
        return dg.asset(name=name, partitions_def=DAILY, metadata=table.as_metadata(), ins=ins)

    @one("eager", {"things": dg.AssetIn("things")})
    def eager(context: dg.AssetExecutionContext, things: pl.DataFrame) -> pl.DataFrame:
        seen["eager"] = type(things)
        day = dt.date.fromisoformat(context.partition_key)
        return things.select(n=pl.len()).with_columns(base_date=pl.lit(day))

    @one("lazy", {"things": dg.AssetIn("things")})
    def lazy(context: dg.AssetExecutionContext, things) -> None:  # noqa: ANN001
        seen["lazy"] = type(things)

    @one("narrow", {"things": dg.AssetIn("things", metadata={"columns": ["i"]})})
    def narrow(context: dg.AssetExecutionContext, things: pl.LazyFrame) -> None:
        seen["narrow"] = things.collect_schema().names()

    result = materialize(lake, [things, eager, lazy, narrow], "2026-11-23", rows=7)
    assert result.success
    assert seen == {"eager": pl.DataFrame, "lazy": pl.LazyFrame, "narrow": ["i"]}
    meta = metadata_of(result, "eager")
    assert meta["dagster/partition_row_count"] == meta["row_count"] == 1
    assert {"table", "dagster/column_schema", "estimated_size_mb"} <= set(meta)
    assert "stats" not in meta  # describe(): 3% of a 1M-row day (LakeIOManager.get_metadata)


@dg.asset(partitions_def=DAILY, metadata=TRANSFORM.as_metadata(), name="summary")
def summary_overtaken(
    context: dg.AssetExecutionContext, lake: LakeResource, things: pl.LazyFrame
) -> pl.LazyFrame:
    """`summary` in a run that loses a race: its input (v1) is read, then the source
    changes (v2) and a newer run rebuilds the partition from v2 before this one writes."""
    key = context.partition_key
    newer = snapshots.write(
        lake, EXTRACT, key, pl.DataFrame({"i": [1, 2, 3]}), version=2, fingerprint=_fp(3, "9")
    )
    write_parquet(
        lake,
        TRANSFORM.file_parts(key),
        pl.DataFrame({"n": [3]}),
        immutable=False,
        metadata=lineage.footer(lineage.of_snapshot(EXTRACT, newer)),
    )
    day = dt.date.fromisoformat(key)
    # built from v1, as `summary` computes it
    return things.select(n=pl.len(), total=pl.col("i").sum()).with_columns(base_date=pl.lit(day))


def test_a_transform_never_replaces_a_partition_built_from_newer_snapshots(
    lake: LakeResource,
) -> None:
    key = "2026-11-20"
    snapshots.write(
        lake, EXTRACT, key, pl.DataFrame({"i": [1, 2]}), version=1, fingerprint=_fp(2, "7")
    )
    uri = lake.uri(*TRANSFORM.file_parts(key))
    late = dg.materialize(
        [things.to_source_asset(), summary_overtaken],
        partition_key=key,
        resources={"io_manager": LakeIOManager(lake=lake), "lake": lake},
        raise_on_error=False,
    )
    assert not late.success
    (failure,) = [e for e in late.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.cause.message
    assert "OlderInputsError" in message and uri in message
    assert "aps_input/things v2 (this run read v1)" in message
    # the newer run's partition is in place, not rolled back
    read = pl.read_parquet(uri, storage_options=lake.polars_storage_options())
    assert (
        read["n"].to_list() == [3]
        and lineage.read_file(lake, uri)[1]["aps_input/things"]["version"] == 2
    )
    # a run that reads the newest snapshot (the same as the partition's) replaces it
    assert materialize(lake, [things.to_source_asset(), summary], key).success
    assert lineage.read_file(lake, uri)[1]["aps_input/things"]["version"] == 2
