"""The code location loads, as `dagster dev` and the webserver load it."""

import subprocess
import sys

import dagster as dg


def test_definitions_load() -> None:
    from aps_etl.definitions import defs

    assert isinstance(defs, dg.Definitions)
    defs.get_repository_def().load_all_definitions()


def test_dagster_cli_lists_the_code_location() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", "aps_etl.definitions"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
