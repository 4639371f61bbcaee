"""The lake's IO manager as the definitions name it: a factory that builds the real one
(io_manager.py, on dagster-polars) only when a step runs. dagster-polars imports
`pyarrow.dataset`, which imports pandas (0.7 s of a cold `import aps_etl.definitions`);
the processes that load the definitions and never run a step (the webserver, the daemon,
the code server's sensors and schedules, `aps-etl doctor`) do not pay it.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from aps_etl.lib.lake.storage import LakeResource
from aps_etl.lib.run_lock import RunLock


class LakeIOManagerFactory(dg.ConfigurableIOManagerFactory):
    """Polars frames as Hive-partitioned Parquet in the lake (LakeIOManager)."""

    lake: LakeResource
    # One run per (job, partition) at a time: held from the run's set-up to its end
    # (lib/run_lock.py). Every step writes through this factory, so every run takes it.
    run_lock: RunLock | None = None

    def create_io_manager(self, context: dg.InitResourceContext) -> Any:
        from aps_etl.lib.lake.io_manager import LakeIOManager

        manager = LakeIOManager(lake=self.lake)
        manager.setup_for_execution(context)
        return manager
