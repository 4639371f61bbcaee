"""MinIO, the lake's object store: built once from its Go module into the cache, run from
the state folder with root keys of its own (minio/root.env), set up as the compose
deployment's is (infra/docker/minio-init.py): the bucket, versioned under extract/, the
pipeline's user (the keys of stack.env) and the read-only user Trino reads the lake as."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING

from . import REPO
from .common import (
    HOST,
    INFRA_TRINO,
    StackError,
    base_env,
    http_get,
    log_tail,
    our_pid,
    say,
    spawn,
    stop_pid,
    wait_until,
)
from .config import BUCKET
from .state import Stack, minio_root

if TYPE_CHECKING:
    import s3fs

# MinIO community edition was archived in 2026. Its last release tag
# RELEASE.2025-10-15T17-29-55Z (v0.0.0-20251015172955-9e49d5e7a648) is refused (403) by the
# Go module proxy this project can reach, so the pin is the newest commit it serves: the
# archive commit of 2026-02-12. No prebuilt binary can be downloaded here, hence the build.
MINIO_MODULE = "github.com/minio/minio"
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"
MINIO_INIT = REPO / "infra" / "docker" / "minio-init.py"
PIPELINE_POLICY = REPO / "infra" / "docker" / "lake-pipeline-policy.json"
LAKE_READER_POLICY = INFRA_TRINO / "lake-reader-policy.json"


@cache
def minio_init() -> ModuleType:
    """infra/docker/minio-init.py, compose's MinIO setup, as a module: the dev stack's
    MinIO is set up by the same functions."""
    spec = importlib.util.spec_from_file_location("minio_init", MINIO_INIT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


class Minio:
    name = "minio"

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.dir = stack.home / "minio"
        self.data = self.dir / "data"
        self.log = self.dir / "minio.log"
        self.pid_file = self.dir / "minio.pid"
        self.binary = stack.cache / f"minio-{MINIO_VERSION}" / "minio"

    def pid(self) -> int | None:
        return our_pid(self.pid_file, self.data)

    def install(self) -> None:
        if self.binary.exists():
            return
        go = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")
        if not go:
            raise StackError("minio: building it needs a Go toolchain (>= 1.24) on PATH")
        build_log = self.stack.cache / "minio-build.log"
        say(f"minio: building {MINIO_MODULE}@{MINIO_VERSION} with Go (once, several minutes)")
        self.stack.cache.mkdir(parents=True, exist_ok=True)
        gobin = self.binary.parent.with_name(self.binary.parent.name + ".tmp")
        shutil.rmtree(gobin, ignore_errors=True)
        # GOTOOLCHAIN=local: use the installed Go, never fetch another toolchain.
        env = {**os.environ, "GOTOOLCHAIN": "local", "GOBIN": str(gobin)}
        with open(build_log, "w") as out:
            code = subprocess.run(
                [go, "install", f"{MINIO_MODULE}@{MINIO_VERSION}"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            ).returncode
        if code != 0:
            raise StackError(
                f"minio: go install failed; tail of {build_log}:\n{log_tail(build_log)}"
            )
        shutil.rmtree(self.binary.parent, ignore_errors=True)
        gobin.rename(self.binary.parent)  # appears whole or not at all

    def start(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        env = base_env()
        root_user, root_password = minio_root(self.stack)
        env.update(
            MINIO_ROOT_USER=root_user,
            MINIO_ROOT_PASSWORD=root_password,
            MINIO_UPDATE="off",
        )
        port, console = self.stack.ports["minio"], self.stack.ports["console"]
        proc = spawn(
            [
                str(self.binary), "server",
                "--anonymous",  # keeps credentials out of its log
                "--address", f"{HOST}:{port}",
                "--console-address", f"{HOST}:{console}",
                "--certs-dir", str(self.dir / "certs"),
                str(self.data),
            ],
            env, self.log, self.dir,
        )  # fmt: skip
        self.pid_file.write_text(f"{proc.pid}\n")
        (self.dir / "console.port").write_text(f"{console}\n")
        live = f"http://{HOST}:{port}/minio/health/live"
        if not wait_until(lambda: http_get(live)[0] == 200, 60, lambda: proc.poll() is None):
            why = "not live after 60s" if proc.poll() is None else "exited while starting"
            raise StackError(f"minio: {why}; tail of {self.log}:\n{log_tail(self.log)}")
        self.setup()

    def setup(self) -> None:
        """As MinIO's root, with compose's minio-init functions: the bucket, versioned but
        for its prefixes other than extract/; the pipeline's user (APS_S3_ACCESS_KEY, the
        compose pipeline's policy: read and write the lake, delete no extract) and Trino's
        (APS_TRINO_S3_ACCESS_KEY, infra/trino/lake-reader-policy.json: read the lake, write
        only its file metastore under _trino_metastore/). No logs bucket: the dev instance
        keeps its compute logs under DAGSTER_HOME (infra/dagster-dev.yaml). Idempotent."""
        init, env = minio_init(), self.stack.env
        policies = (PIPELINE_POLICY, LAKE_READER_POLICY)
        if init.LAKE_BUCKET != BUCKET or any(f":::{BUCKET}" not in p.read_text() for p in policies):
            raise StackError(f"minio: {MINIO_INIT} and the policies must be about bucket {BUCKET}")
        init.setup(
            f"{HOST}:{self.stack.ports['minio']}",
            *minio_root(self.stack),
            init.lake_users(env, PIPELINE_POLICY, LAKE_READER_POLICY),
            logs_bucket=False,
        )

    def fs(self) -> s3fs.S3FileSystem:
        import s3fs  # here, not at the top: it is slow to import and only `up`/`status` need it

        env = self.stack.env
        return s3fs.S3FileSystem(
            key=env["APS_S3_ACCESS_KEY"],
            secret=env["APS_S3_SECRET_KEY"],
            endpoint_url=env["APS_S3_ENDPOINT"],
            client_kwargs={"region_name": env["APS_S3_REGION"]},
            skip_instance_cache=True,
        )

    def stop(self, pid: int) -> None:
        stop_pid(pid, self.name, 30)
        self.pid_file.unlink(missing_ok=True)

    def probe(self) -> str:
        self.fs().ls(BUCKET, refresh=True)
        return f"bucket {BUCKET} listed"

    def address(self) -> str:
        return f"{HOST}:{self.stack.ports['minio']} (console {self.stack.ports['console']})"
