"""DockerRunLauncher for the compose deployment (infra/docker/dagster.yaml).

Each run's container joins the deployment's own network and mounts its CA volume, both
named after the compose project (`APS_COMPOSE_PROJECT`, default `aps-etl`, set by
infra/docker/deploy): two deployments on one engine (a real one and the test's) keep apart,
and neither `deploy down` nor a new CA of one touches the other's runs. DockerRunLauncher's
`container_kwargs` are passed through as written, so the names are filled in here.
"""

from __future__ import annotations

import os
from typing import Any

from dagster_docker import DockerRunLauncher


class ComposeRunLauncher(DockerRunLauncher):
    def __init__(self, inst_data: Any = None, **config: Any) -> None:
        project = os.environ.get("APS_COMPOSE_PROJECT") or "aps-etl"
        container_kwargs = dict(config.pop("container_kwargs", None) or {})
        # the deployment CA's certificate, for the verify-full connections
        volumes = list(container_kwargs.get("volumes", []))
        container_kwargs["volumes"] = [*volumes, f"{project}-ca:/tls:ro"]
        if not config.get("network") and not config.get("networks"):
            config["networks"] = [project]
        super().__init__(inst_data=inst_data, container_kwargs=container_kwargs, **config)
