"""What the numbers were measured on: the machine, the software, the load around the run."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "dagster",
    "polars",
    "duckdb",
    "pyarrow",
    "adbc-driver-postgresql",
    "arrow-odbc",
    "trino",
    "dlt",
    "pandas",
    "sling-linux-amd64",
    "sqlalchemy",
    "psycopg2-binary",
    "pytest-benchmark",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def server_versions(stack_settings: dict[str, str] | None) -> dict[str, str]:
    """PostgreSQL and Trino as they answer, not as configured."""
    versions: dict[str, str] = {}
    if not stack_settings:
        return versions
    try:
        import adbc_driver_postgresql.dbapi as adbc

        from aps_etl.env.stack import postgres_uri

        uri = postgres_uri(stack_settings, stack_settings["APS_APS_DB"], "aps_loader")
        with adbc.connect(uri) as conn, conn.cursor() as cur:
            cur.execute("select current_setting('server_version')")
            versions["postgresql (dev stack)"] = cur.fetchone()[0]
    except Exception as exc:  # the report says so rather than failing
        versions["postgresql (dev stack)"] = f"unknown ({type(exc).__name__})"
    if stack_settings.get("APS_MARIADB_HOST"):
        try:
            from benchmarks.mariadb_source import server_version

            versions["mariadb (dev stack)"] = server_version(stack_settings)
        except Exception as exc:
            versions["mariadb (dev stack)"] = f"unknown ({type(exc).__name__})"
    try:
        from aps_etl.env.stack import trino_connect

        conn = trino_connect(stack_settings)
        cur = conn.cursor()
        cur.execute("SELECT node_version FROM system.runtime.nodes LIMIT 1")
        versions["trino"] = cur.fetchone()[0]
        conn.close()
    except Exception as exc:
        versions["trino"] = f"unknown ({type(exc).__name__})"
    return versions


def embedded_version(uri: str) -> str:
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(uri) as conn, conn.cursor() as cur:
        cur.execute("select current_setting('server_version')")
        return cur.fetchone()[0]


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def other_work() -> list[str]:
    """Other heavy processes at this moment (other pytest runs, seeding, ...): command
    names only, for the record."""
    try:
        out = subprocess.run(
            ["ps", "-eo", "pid,pcpu,rss,comm", "--sort=-pcpu"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()[1:]
    except (OSError, subprocess.CalledProcessError):
        return []
    busy = []
    for line in out:
        pid, cpu, rss, comm = line.split(None, 3)
        if float(cpu) >= 20 and int(pid) != os.getpid():
            busy.append(f"{comm} (pid {pid}, {cpu}% cpu, {int(rss) // 1024} MB)")
    return busy[:8]


def machine_info() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "cpu": _cpu_model(),
        "os": _os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": {p: _version(p) for p in PACKAGES},
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
