"""pandera imported without pandas (aps_etl/pandera_polars.py): a run worker's imports stay
free of pandas, and validation reports the same violations as with pandera's usual path."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas  # noqa: F401  (this process takes pandera's usual path, pandas first)

from aps_etl_tests.test_aps_input_logic import CT_SCHEMA, D, wip_frame

# Violations of several kinds: null key, range, row rule, duplicate grain, dtype.
PROBE = """
import json, sys
import aps_etl.definitions  # what a run worker imports
out = {"pandas": "pandas" in sys.modules}
from aps_etl.output_tables import validate
from aps_etl_tests.test_pandera_import import cases  # (imports pandas: after the look)
out["reports"] = [sorted(map(list, validate(t, df).counts.items())) for t, df in cases()]
print(json.dumps(out, default=str))
"""


def cases() -> list[tuple[object, object]]:
    import polars as pl

    from aps_etl.domains.aps_input import APS_INPUT_CYCLE_TIME, APS_INPUT_WIP

    wip = wip_frame(
        [
            (D, None, "S10", "PHOTO", 2, 45, 1, 25),
            (D, "P1", "S20", "ETCH", 3, 74, -2, 25),
            (D, "P1", "S20", "ETCH", 3, 74, 0, 25),
        ]
    )
    ct = pl.DataFrame(
        [(D, "P1", "S20", "ETCH", 2, 50, 50, 0, 50.0, 59.0, 58.0, 45.5, 50.0 / 45.5)],
        schema=CT_SCHEMA,
        orient="row",
    )
    return [
        (APS_INPUT_WIP, wip),
        (APS_INPUT_WIP, wip[2:].with_columns(pl.col("wip_qty").cast(pl.Int32))),
        (APS_INPUT_CYCLE_TIME, ct),
    ]


def test_worker_imports_skip_pandas_and_validate_the_same() -> None:
    from aps_etl.output_tables import validate

    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    fresh = json.loads(done.stdout.strip().splitlines()[-1])
    assert fresh["pandas"] is False
    here = [sorted(map(list, validate(t, df).counts.items())) for t, df in cases()]
    assert fresh["reports"] == json.loads(json.dumps(here, default=str))
    assert all(fresh["reports"])  # every case found its violations
