"""Dagster's DefaultRunLauncher with the worker health check that run monitoring needs.

The default launcher cannot say whether a run's worker still lives, so run monitoring
leaves a run whose process was killed STARTED forever, and no alert fires. This one answers
from the worker's pid (run_health.py); a run whose worker is gone is marked FAILURE by the
daemon within `run_monitoring.poll_interval_seconds`, the failure sensor alerts, and run
retries re-run it (a crash, not a failed step).
"""

from __future__ import annotations

from dagster._core.launcher import DefaultRunLauncher
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus

from aps_etl.instance.run_health import worker_alive


class MonitoredRunLauncher(DefaultRunLauncher):
    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run) -> CheckRunHealthResult:  # type: ignore[override]
        state, why = worker_alive(self._instance, run)
        if state is False:
            return CheckRunHealthResult(WorkerStatus.FAILED, why)
        # Alive, or not knowable from here: never fail a run on a guess.
        return CheckRunHealthResult(WorkerStatus.RUNNING, why)
