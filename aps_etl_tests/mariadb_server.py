"""A throwaway MariaDB server for tests that need one of their own (Debian's mariadbd in a
temporary folder, on a free port, TLS off): the engine's SQL and reader against the real
server, without the dev stack. scripts/test-tools installs mariadb-server."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

MARIADBD = "/usr/sbin/mariadbd"


@dataclass(frozen=True)
class MariaDBServer:
    port: int
    socket: Path
    reader: str = "reader"
    reader_password: str = "reader-pw"  # a throwaway server's, gone with the test
    database: str = "mes"

    def sql(self, script: str, *, database: str | None = None) -> str:
        """Runs a script as root through the socket (in `database`, default the test's);
        returns what it prints."""
        done = subprocess.run(
            ["mariadb", "--no-defaults", "-S", str(self.socket), "-uroot", "-N", "-B",
             database if database is not None else self.database],
            input=script, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"mariadb: {done.stderr.strip().splitlines()[-1]}")
        return done.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def mariadb_server(folder: Path) -> Iterator[MariaDBServer]:
    if not Path(MARIADBD).exists() or not shutil.which("mariadb-install-db"):
        raise RuntimeError("mariadb-server is not installed: scripts/test-tools installs it")
    data, sock = folder / "data", folder / "mariadb.sock"
    subprocess.run(
        ["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
         "--auth-root-authentication-method=socket", "--skip-test-db"],
        check=True, capture_output=True,
    )  # fmt: skip
    port = _free_port()
    process = subprocess.Popen(
        [MARIADBD, "--no-defaults", f"--datadir={data}", f"--socket={sock}", f"--port={port}",
         "--bind-address=127.0.0.1", "--skip-name-resolve", "--user=root",
         f"--log-error={folder / 'error.log'}", f"--pid-file={folder / 'mariadbd.pid'}",
         "--innodb-buffer-pool-size=64M"],
    )  # fmt: skip
    try:
        server = MariaDBServer(port=port, socket=sock)
        deadline = time.monotonic() + 30
        while True:
            try:
                server.sql("select 1", database="mysql")
                break
            except RuntimeError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (folder / "error.log").read_text()[-2000:]
                    raise RuntimeError(f"mariadbd did not start: {log}") from None
                time.sleep(0.2)
        subprocess.run(
            ["mariadb", "--no-defaults", "-S", str(sock), "-uroot"],
            input=f"create database {server.database}; "
            f"create user {server.reader}@'%' identified by '{server.reader_password}'; "
            f"grant select, show view on {server.database}.* to {server.reader}@'%';",
            text=True, check=True, capture_output=True,
        )  # fmt: skip
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
