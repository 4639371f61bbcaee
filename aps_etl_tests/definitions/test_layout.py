"""The package's layout holds: the import contracts of pyproject.toml pass, a wrong import
breaks them, the top of aps_etl/ is only the code location and its packages, and no
module outside devdata/ grows past 400 lines."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aps_etl.env.stack import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
MAX_LINES = 400


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root), "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_import_contracts_hold() -> None:
    done = _lint_imports(REPO_ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # plain code reaching up into the Dagster objects
        ("aps_etl/lib/scratch.py", "from aps_etl.defs import jobs\n", "cli -> definitions"),
        # a Dagster object reaching into the environments
        ("aps_etl/defs/scratch.py", "from aps_etl.env import settings\n", "cli -> definitions"),
        # one scenario reaching into another
        (
            "aps_etl/defs/scenarios/aps_kpi/scratch.py",
            "from aps_etl.defs.scenarios.aps_input import logic\n",
            "never import each other",
        ),
        # pure logic importing Dagster
        (
            "aps_etl/defs/scenarios/aps_plan/logic.py",
            "import dagster\n",
            "plain Polars/DuckDB",
        ),
        # a cycle between two modules of one package
        ("aps_etl/lib/warehouse/target.py", "from aps_etl.lib.warehouse import swap\n", "cycle"),
    ],
)
def test_a_wrong_import_breaks_a_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(
        REPO_ROOT / "aps_etl", copy / "aps_etl", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPO_ROOT / "pyproject.toml", copy / "pyproject.toml")
    target = copy / module
    target.write_text((target.read_text() if target.exists() else "") + line)
    done = _lint_imports(copy)
    assert done.returncode != 0, done.stdout
    broken = [b for b in done.stdout.split("\n") if b.endswith("BROKEN")]
    assert any(contract in b for b in broken), done.stdout


def test_the_top_of_the_package_is_the_code_location_and_its_packages() -> None:
    top = sorted(p.name for p in (REPO_ROOT / "aps_etl").iterdir() if p.name != "__pycache__")
    loose = [n for n in top if n.endswith(".py") and n not in ("__init__.py", "definitions.py")]
    assert not loose, f"modules at the top of aps_etl/: {loose}"
    packages = {n for n in top if (REPO_ROOT / "aps_etl" / n / "__init__.py").exists()}
    assert packages == {"cli", "defs", "devdata", "env", "instance", "lib"}


def test_each_package_says_what_it_holds_and_may_import() -> None:
    for name in ("cli", "defs", "env", "instance", "lib"):
        doc = (REPO_ROOT / "aps_etl" / name / "__init__.py").read_text()
        assert doc.startswith('"""') and "import" in doc, name


def test_no_module_outside_devdata_is_over_400_lines() -> None:
    roots = [REPO_ROOT / "aps_etl", REPO_ROOT / "infra", REPO_ROOT / "benchmarks"]
    too_long = {
        str(p.relative_to(REPO_ROOT)): n
        for root in roots
        for p in root.rglob("*.py")
        if "devdata" not in p.parts
        and not p.name.startswith("test_")
        and (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not too_long, too_long


def test_dg_checks_and_lists_the_definitions(tmp_path: Path) -> None:
    """Dagster's own project tool loads the code location from [tool.dg] (embedded default)."""
    dg_cli = Path(sys.executable).parent / "dg"
    env = {"PATH": f"{dg_cli.parent}:/usr/bin:/bin", "HOME": str(tmp_path), "APS_ENV": "local"}
    check = subprocess.run(
        [str(dg_cli), "check", "defs"], cwd=REPO_ROOT, env=env, capture_output=True,
        text=True, timeout=300, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert "All definitions loaded successfully" in check.stdout + check.stderr
    listed = subprocess.run(
        [str(dg_cli), "list", "defs", "--json"], cwd=REPO_ROOT, env=env, capture_output=True,
        text=True, timeout=300, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    defs = json.loads(listed.stdout)
    from aps_etl.definitions import defs as location

    graph = location.resolve_asset_graph()
    assert {a["asset_key"] for a in defs["assets"]} == {
        k.to_user_string() for k in graph.get_all_asset_keys()
    }
    assert {j["name"] for j in defs["jobs"]} >= {"aps_daily", "aps_plan_snapshot"}
    assert {s["name"] for s in defs["sensors"]} >= {"source_change_sensor"}
