"""What loading the definitions costs: the processes that load them and never run a step
(the webserver, the daemon, the code server's sensor ticks, `aps-etl doctor`) do not import
what only a step needs. pandas (~0.7 s cold) arrives through pyarrow.dataset, which both
dagster-polars and ADBC's DB-API import, and through pandera; all three are imported by the
steps that use them (benchmarks/results/startup/ has the measurements)."""

from __future__ import annotations

import json
import subprocess
import sys

from aps_etl.env.stack import REPO_ROOT

NOT_AT_LOAD = ("pandas", "pandera", "dagster_polars", "pyarrow.dataset", "adbc_driver_manager")


def _modules_after(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "APS_ENV": "local"},
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_loading_the_definitions_imports_no_pandas_nor_step_only_libraries() -> None:
    loaded = _modules_after("import aps_etl.definitions")
    assert "aps_etl.definitions" in loaded and "dagster" in loaded
    assert sorted(m for m in NOT_AT_LOAD if m in loaded) == []


def test_the_probe_sees_what_a_step_imports() -> None:
    """The same probe after what a load step does first: the libraries are there (the test
    above could not pass by looking in the wrong process)."""
    loaded = _modules_after(
        "import aps_etl.definitions\nimport adbc_driver_postgresql.dbapi\n"
        "import pandera.polars\n"
        "from aps_etl.lib.lake.io_manager import LakeIOManager"
    )
    assert set(NOT_AT_LOAD) <= loaded
