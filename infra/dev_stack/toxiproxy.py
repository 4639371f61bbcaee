"""Toxiproxy, the fault tests' TCP proxy (issue 29): it stands between the pipeline and each
service of the stack and resets, delays or refuses connections on request (its HTTP API).
Built once from its Go module into the cache, as MinIO is: no prebuilt binary can be
downloaded here. `@latest` on the module proxy resolves to v2.5.0 (2022); v2.12.0 is served
when asked for by name, hence the pin."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

MODULE = "github.com/Shopify/toxiproxy/v2"
VERSION = "v2.12.0"


class BuildError(RuntimeError):
    """The toolchain is missing or the build failed: the message names which."""


def server_binary(cache: Path) -> Path:
    """The toxiproxy server, built into `cache` the first time (about 30 s)."""
    binary = cache / f"toxiproxy-{VERSION}" / "server"
    if binary.exists():
        return binary
    go = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")
    if not go:
        raise BuildError("toxiproxy: building it needs a Go toolchain (>= 1.22) on PATH")
    cache.mkdir(parents=True, exist_ok=True)
    staging = binary.parent.with_name(binary.parent.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    log = cache / "toxiproxy-build.log"
    # GOTOOLCHAIN=local: the installed Go, never a downloaded one; the version stamp, or
    # the server reports "git"
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOBIN": str(staging)}
    with open(log, "w") as out:
        code = subprocess.run(
            [go, "install", "-ldflags", f"-X {MODULE}.Version={VERSION}",
             f"{MODULE}/cmd/server@{VERSION}"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        ).returncode  # fmt: skip
    if code != 0:
        tail = "\n".join(log.read_text().splitlines()[-20:])
        raise BuildError(f"toxiproxy: go install failed; tail of {log}:\n{tail}")
    shutil.rmtree(binary.parent, ignore_errors=True)
    try:
        staging.rename(binary.parent)  # whole or not at all
    except OSError:  # another process built it first
        shutil.rmtree(staging, ignore_errors=True)
    return binary
