"""How a transform's output should reach the lake: collected in the step, validated, then
written (what transforms.py does), or handed to the IO manager as a LazyFrame, streamed to
Parquet (sink) and validated by reading the file back. Measured on a lake a real run left
(its extract snapshots), for scenario §10.1's transforms.

    python -m benchmarks.collect_or_sink LAKE_ROOT DAY [ROUNDS]

Prints one line per output table: rows, and the median seconds of each path.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from typing import Any

import polars as pl


def main(root: str, day: str, rounds: int = 5) -> None:
    from aps_etl.defs.scenarios.aps_input import logic
    from aps_etl.defs.scenarios.aps_input.schema import OUTPUTS
    from aps_etl.defs.transforms import logic_inputs
    from aps_etl.lib.business_days import parse_partition_key
    from aps_etl.lib.lake import LakeResource, LakeTable, snapshots
    from aps_etl.lib.lake.atomic import write_parquet
    from aps_etl.lib.output_tables import validate

    lake = LakeResource(root=root)
    scratch = LakeResource(root=tempfile.mkdtemp(prefix="collect-or-sink-"))
    date = parse_partition_key(day)

    def inputs(names: list[str]) -> dict[str, Any]:
        frames: dict[str, Any] = {}
        for name in names:
            table = LakeTable("extract", "aps_input", name, immutable=True)
            found = snapshots.newest(lake, table, day)
            assert found is not None, f"no snapshot of {name} for {day} under {root}"
            frames[name] = snapshots.scan(lake, table, found)
        return frames

    print(f"{'table':<24} {'rows':>8} {'collect+validate+write':>24} {'sink+read+validate':>20}")
    for output in OUTPUTS:
        fn = getattr(logic, output.name)
        names = logic_inputs(fn)
        parts = ("transform", "job_name=aps_input", f"date={day}", output.name, "data.parquet")
        times: dict[str, list[float]] = {"collect": [], "sink": []}
        rows = 0
        for _ in range(rounds):
            for path in ("collect", "sink"):  # alternating: the same machine state for both
                frames = inputs(names)  # fresh scans: no cached plan between rounds
                started = time.perf_counter()
                if path == "collect":
                    df = fn(**frames, day=date).collect()
                    assert validate(output, df).ok
                    write_parquet(scratch, parts, df, immutable=False)
                else:
                    written = write_parquet(scratch, parts, fn(**frames, day=date), immutable=False)
                    df = pl.read_parquet(written.uri)
                    assert validate(output, df).ok
                times[path].append(time.perf_counter() - started)
                rows = df.height
        print(
            f"{output.name:<24} {rows:>8,} {statistics.median(times['collect']):>24.3f} "
            f"{statistics.median(times['sink']):>20.3f}"
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:4]))
