"""A case or a peer run in a child process of its own, its wall time and peak memory measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.machine import load_average

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Round:
    wall: float
    peak_rss_mb: float
    load_before: list[float]
    result: dict[str, Any]


class ChildFailed(RuntimeError):
    pass


def run_process(
    module: str,
    spec: dict[str, Any],
    work: Path,
    log_name: str,
    secrets: dict[str, str] | None = None,
) -> Round:
    """Runs `python -m module spec out` and measures it. `secrets` reach the child as
    environment variables, never through the spec file."""
    work.mkdir(parents=True, exist_ok=True)
    spec_path, out_path = work / f"{log_name}.spec.json", work / f"{log_name}.out.json"
    log_path = work / f"{log_name}.log"
    spec_path.write_text(json.dumps(spec))
    out_path.unlink(missing_ok=True)
    env = {**os.environ, **(secrets or {}), "PYTHONPATH": str(REPO)}
    load_before = load_average()
    with log_path.open("w") as log:
        spawned = time.time()
        started = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-m", module, str(spec_path), str(out_path)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
    result = json.loads(out_path.read_text()) if out_path.exists() else {}
    if child.returncode != 0 or not result.get("success"):
        tail = log_path.read_text()[-3000:]
        failures = json.dumps(result.get("failures", {}), indent=1)[:3000]
        raise ChildFailed(
            f"{module} exited {child.returncode} (log {log_path}):\n{failures}\n{tail}"
        )
    # The wall time ends where the work ends: what the child does afterwards to report
    # (reading its own event log back) is ours, not the job's.
    result["exit_wall_s"] = wall
    if "work_end_epoch" in result:
        wall = result["work_end_epoch"] - spawned
    # The child's own peak (VmHWM); ru_maxrss (KiB) would include the pages of this
    # process it was forked from, before it exec'd.
    result["ru_maxrss_mb"] = usage.ru_maxrss / 1024
    peak = result.get("peak_rss_mb") or usage.ru_maxrss / 1024
    return Round(wall, peak, load_before, result)
