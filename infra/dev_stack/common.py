"""What every part of the dev stack shares: addresses and ports, the error it reports,
messages with secrets redacted, helper commands, and supervision of the server processes
(pid files that point at our own processes, free ports, stopping, detached starts)."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

from . import REPO

SERVICES = ("postgres", "mariadb", "minio", "trino")
HOST = "127.0.0.1"
DEFAULT_PORTS = {"pg": 55432, "mariadb": 53306, "minio": 59000, "console": 59001, "trino": 58080}
PORT_VARS = {
    "pg": "APS_STACK_PG_PORT",
    "mariadb": "APS_STACK_MARIADB_PORT",
    "minio": "APS_STACK_MINIO_PORT",
    "console": "APS_STACK_MINIO_CONSOLE_PORT",
    "trino": "APS_STACK_TRINO_PORT",
}
SERVICE_PORTS = {
    "postgres": ("pg",),
    "mariadb": ("mariadb",),
    "minio": ("minio", "console"),
    "trino": ("trino",),
}
# Static files shared with the compose deployment: Trino's access rules and the MinIO
# policy of the user Trino reads the lake as.
INFRA_TRINO = REPO / "infra" / "trino"


class StackError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


_secrets: list[str] = []


def add_secrets(values: Iterable[str]) -> None:
    """Values `redact` hides from now on."""
    _secrets.extend(v for v in values if v)


def redact(text: str) -> str:
    for value in _secrets:
        text = text.replace(value, "***")
    return text


def say(message: str) -> None:
    print(redact(message), flush=True)


def log_tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return f"(no log at {path})"
    tail = path.read_text(errors="replace").splitlines()[-lines:]
    return redact("\n".join(f"    {line}" for line in tail))


def run(cmd: list[str], what: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Runs a helper command; on failure raises with its (redacted) output, not a traceback."""
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()[-20:]
        raise StackError(f"{what} failed (exit {result.returncode}):\n" + "\n".join(output))
    return result


def wait_until(check: Callable[[], bool], timeout: float, alive: Callable[[], bool]) -> bool:
    """Polls `check` until it is true; gives up early when the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        if not alive():
            return False
        time.sleep(0.5)
    return check()


def http_get(
    url: str, context: ssl.SSLContext | None = None, timeout: float = 2.0
) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return response.status, response.read()
    except Exception:
        return 0, b""


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def our_pid(pid_file: Path, marker: Path) -> int | None:
    """The pid in `pid_file` if that process is alive and runs from our state (`marker`)."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    # The marker path as a whole argument or path prefix: /x/stack must not match /x/stack2.
    return pid if re.search(re.escape(str(marker)) + r"(/|\s)", cmdline(pid)) else None


def alive(pid_file: Path) -> bool:
    """Whether the pid in `pid_file` still runs (while starting: it may not have exec'd yet)."""
    try:
        return not _zombie(int(pid_file.read_text().split()[0]))
    except (OSError, ValueError, IndexError):
        return False


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # ignore TIME_WAIT leftovers
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def port_owner(port: int) -> str:
    try:
        out = subprocess.run(
            ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True
        ).stdout
    except OSError:
        return "another process"
    found = re.search(r'\("([^"]+)",pid=(\d+)', out)
    return f"{found[1]} (pid {found[2]})" if found else "another process"


def stop_pid(pid: int, name: str, timeout: float) -> None:
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _zombie(pid):
            return
        time.sleep(0.3)
    say(f"{name}: did not stop within {timeout:.0f}s, killing pid {pid}")
    os.kill(pid, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def spawn(cmd: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Starts a detached server (own session, so it outlives us) logging to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def base_env() -> dict[str, str]:
    """What a server inherits: enough to run, none of the caller's other variables."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER")
    return {k: os.environ[k] for k in keep if k in os.environ}


def write_private(path: Path, text: str) -> None:
    """Writes a file only its owner may read (mode 600 from the start)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
