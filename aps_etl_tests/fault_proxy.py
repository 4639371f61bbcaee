"""A real TCP fault proxy (Toxiproxy, infra/dev_stack/toxiproxy.py) between the pipeline and
the dev stack's services, for the fault tests (issue 29).

One proxy per connection the pipeline opens: the source, the target and Dagster's storage
(three proxies to the one PostgreSQL server, so each can fail alone), the lake (MinIO) and
Trino. `env()` gives the settings that point a process at the proxies instead of the
services (the process environment overlays the stack's settings: aps_etl/env/stack.py).
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "infra"))
from dev_stack.toxiproxy import server_binary  # noqa: E402

SERVICES = ("source", "target", "dagster", "lake", "trino")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class FaultProxy:
    api: str
    process: subprocess.Popen
    upstream: dict[str, tuple[str, int]]
    listen: dict[str, int] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)

    # ---- the API -------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.api + path, method=method, data=data)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def create(self) -> None:
        for name, (host, port) in self.upstream.items():
            self.listen[name] = free_port()
            self._call("POST", "/proxies", {
                "name": name, "listen": f"127.0.0.1:{self.listen[name]}",
                "upstream": f"{host}:{port}", "enabled": True,
            })  # fmt: skip

    def env(self, settings: Mapping[str, str]) -> dict[str, str]:
        """The stack settings that send the pipeline through the proxies."""
        lake = urlsplit(settings["APS_S3_ENDPOINT"])
        return {
            "APS_SOURCE_PG_HOST": "127.0.0.1",
            "APS_SOURCE_PG_PORT": str(self.listen["source"]),
            "APS_TARGET_PG_HOST": "127.0.0.1",
            "APS_TARGET_PG_PORT": str(self.listen["target"]),
            "APS_DAGSTER_PG_PORT": str(self.listen["dagster"]),
            "APS_S3_ENDPOINT": f"{lake.scheme}://{lake.hostname}:{self.listen['lake']}",
            "APS_TRINO_PORT": str(self.listen["trino"]),
        }

    # ---- faults --------------------------------------------------------------------------
    def down(self, service: str, seconds: float) -> None:
        """The service away: open connections closed, new ones refused, for `seconds`."""
        self.faults.append({"at": time.time(), "service": service, "down_s": seconds})
        self._call("POST", f"/proxies/{service}", {"enabled": False})
        time.sleep(seconds)
        self._call("POST", f"/proxies/{service}", {"enabled": True})

    def resets(self, service: str, toxicity: float, after_ms: int = 500) -> None:
        """A share of the service's new connections reset `after_ms` into their life."""
        self._call("POST", f"/proxies/{service}/toxics", {
            "name": "resets", "type": "reset_peer", "stream": "downstream",
            "toxicity": toxicity, "attributes": {"timeout": after_ms},
        })  # fmt: skip

    def latency(self, service: str, ms: int, jitter_ms: int = 0) -> None:
        self._call("POST", f"/proxies/{service}/toxics", {
            "name": "latency", "type": "latency", "stream": "downstream",
            "attributes": {"latency": ms, "jitter": jitter_ms},
        })  # fmt: skip

    def clear(self) -> None:
        for name in self.upstream:
            self._call("POST", f"/proxies/{name}", {"enabled": True})
            for toxic in self._call("GET", f"/proxies/{name}/toxics") or []:
                self._call("DELETE", f"/proxies/{name}/toxics/{toxic['name']}")

    @contextmanager
    def outages(self, every_s: float, down_s: float, seed: int) -> Iterator[list[dict]]:
        """In the background: every `every_s` one service, at random, down for `down_s`.
        Yields the list of the outages injected (filled as they happen)."""
        stop = threading.Event()
        rng = random.Random(seed)
        injected: list[dict] = []

        def loop() -> None:
            while not stop.wait(rng.uniform(0.5, 1.5) * every_s):
                self.down(rng.choice(list(self.upstream)), down_s)
                injected.append(self.faults[-1])

        thread = threading.Thread(target=loop, name="fault-proxy-outages", daemon=True)
        thread.start()
        try:
            yield injected
        finally:
            stop.set()
            thread.join(timeout=down_s + 5)


def upstreams(settings: Mapping[str, str]) -> dict[str, tuple[str, int]]:
    pg = (settings["APS_PG_HOST"], int(settings["APS_PG_PORT"]))  # the source's and target's
    dagster = (settings["APS_DAGSTER_PG_HOST"], int(settings["APS_DAGSTER_PG_PORT"]))
    lake = urlsplit(settings["APS_S3_ENDPOINT"])
    return {
        "source": pg,
        "target": pg,
        "dagster": dagster,
        "lake": (lake.hostname or "127.0.0.1", lake.port or 80),
        "trino": (settings["APS_TRINO_HOST"], int(settings["APS_TRINO_PORT"])),
    }


@contextmanager
def fault_proxy(settings: Mapping[str, str], log: Path) -> Iterator[FaultProxy]:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aps-etl"
    binary = server_binary(cache)
    upstream = upstreams(settings)  # a missing setting fails before anything starts
    port = free_port()
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(binary), "-host", "127.0.0.1", "-port", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        proxy = FaultProxy(f"http://127.0.0.1:{port}", process, upstream)
        deadline = time.monotonic() + 30
        while True:
            try:
                proxy._call("GET", "/version")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"toxiproxy did not start; see {log}") from None
                time.sleep(0.1)
        proxy.create()
        yield proxy
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
