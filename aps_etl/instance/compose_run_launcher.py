"""DockerRunLauncher for the compose deployment (infra/docker/dagster.yaml).

Each run's container joins the deployment's own network and mounts its CA volume, both
named after the compose project (`APS_COMPOSE_PROJECT`, default `aps-etl`, set by
infra/docker/deploy): two deployments on one engine (a real one and the test's) keep apart,
and neither `deploy down` nor a new CA of one touches the other's runs. DockerRunLauncher's
`container_kwargs` are passed through as written, so the names are filled in here.

The daemon reaches the engine only through the Docker socket proxy (service `docker-api`,
`DOCKER_HOST`; infra/docker/haproxy/docker-api.cfg), which answers for containers named
`<project>-run-<run id>` and nothing else, and creates one only with the settings sent here.
So every call goes by that name: the base class creates through docker-py's high-level API,
which then inspects and starts the new container by its id, and looks a run's container up
by the id in the run's tags; those are the parts overridden below (creating and starting,
finding, terminating). Only the container settings the proxy allows are accepted.

The webserver calls `terminate` too (the UI's Terminate), through a proxy entrance that lets
it stop a run's container and nothing else, not even inspect it: a run's environment holds
the pipeline's credentials, which the webserver does not. So terminate stops by name without
looking the container up first.
"""

from __future__ import annotations

import os
from typing import Any

import docker.errors
from dagster._core.storage.tags import DOCKER_IMAGE_TAG
from dagster._core.utils import parse_env_var
from dagster_docker import DockerRunLauncher
from dagster_docker.docker_run_launcher import DOCKER_CONTAINER_ID_TAG

# What the proxy lets a run's container have (its create rule, docker_api.lua); labels and
# stop_timeout are the launcher's own.
CONTAINER_KWARGS = frozenset({"mem_limit", "volumes", "labels", "stop_timeout"})


class ComposeRunLauncher(DockerRunLauncher):
    def __init__(self, inst_data: Any = None, **config: Any) -> None:
        self.project = os.environ.get("APS_COMPOSE_PROJECT") or "aps-etl"
        container_kwargs = dict(config.pop("container_kwargs", None) or {})
        refused = sorted(set(container_kwargs) - CONTAINER_KWARGS)
        if refused:
            raise ValueError(
                f"run_launcher container_kwargs {', '.join(refused)}: the Docker socket proxy "
                "(infra/docker/haproxy/docker_api.lua) creates a run's container with "
                f"{', '.join(sorted(CONTAINER_KWARGS))} only"
            )
        # the deployment CA's certificate, for the verify-full connections
        volumes = list(container_kwargs.get("volumes", []))
        container_kwargs["volumes"] = [*volumes, f"{self.project}-ca:/tls:ro"]
        if not config.get("network") and not config.get("networks"):
            config["networks"] = [self.project]
        super().__init__(inst_data=inst_data, container_kwargs=container_kwargs, **config)

    def container_name(self, run_id: str) -> str:
        """The name of a run's container: the only containers the socket proxy answers for."""
        return f"{self.project}-run-{run_id}"

    @property
    def supports_resume_run(self) -> bool:
        # One container per run, named after it; resuming would need a second one (and run
        # monitoring resumes nothing here: max_resume_run_attempts is 0).
        return False

    def _launch_container_with_command(self, run, docker_image, command) -> None:
        """The base's launch, by the container's name: created with exactly the settings the
        proxy allows, then started by name (the base starts it by id)."""
        context = self.get_container_context(run)
        environment = dict(parse_env_var(v) for v in context.env_vars)
        environment["DAGSTER_RUN_JOB_NAME"] = run.job_name
        kwargs = dict(context.container_kwargs)
        labels = kwargs.get("labels") or {}
        if isinstance(labels, list):
            labels = {key: "" for key in labels}
        labels = {**labels, "dagster/run_id": run.run_id, "dagster/job_name": run.job_name}
        api = self._get_client(context).api
        name = self.container_name(run.run_id)
        host_config = api.create_host_config(
            network_mode=context.networks[0] if context.networks else self.project,
            binds=kwargs.get("volumes") or None,
            mem_limit=kwargs.get("mem_limit"),
        )
        created = api.create_container(
            image=docker_image,
            command=command,
            name=name,
            detach=True,
            environment=environment,
            labels=labels,
            host_config=host_config,
        )
        self._instance.report_engine_event(
            message=f"Launching run in a new container {name} ({created['Id']}) with image "
            f"{docker_image}",
            dagster_run=run,
            cls=self.__class__,
        )
        self._instance.add_run_tags(
            run.run_id, {DOCKER_CONTAINER_ID_TAG: created["Id"], DOCKER_IMAGE_TAG: docker_image}
        )
        api.start(name)

    def _get_container(self, run):
        """The run's container, found by its name and addressed by it (its model's id is the
        name), for the base's health check (run monitoring); None when it is gone."""
        if not run:
            return None
        client = self._get_client(self.get_container_context(run))
        name = self.container_name(run.run_id)
        try:
            attrs = client.api.inspect_container(name)
        except docker.errors.NotFound:
            return None
        return client.containers.prepare_model({**attrs, "Id": name})

    def terminate(self, run_id: str) -> bool:
        """The base's terminate, by the container's name and without inspecting it first."""
        run = self._instance.get_run_by_id(run_id)
        if not run or run.is_finished:
            return False
        self._instance.report_run_canceling(run)
        context = self.get_container_context(run)
        try:
            self._get_client(context).api.stop(
                self.container_name(run_id), timeout=context.container_kwargs.get("stop_timeout")
            )
        except docker.errors.NotFound:
            self._instance.report_engine_event(
                message="Unable to get docker container to send termination request to.",
                dagster_run=run,
                cls=self.__class__,
            )
            return False
        return True
