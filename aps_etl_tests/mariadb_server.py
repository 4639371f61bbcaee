"""A throwaway MariaDB for tests: Debian's mariadbd (scripts/test-tools installs it) on a
data dir in a temp folder and a free loopback port, with the dev stack's server options
(infra/dev_stack/mariadb.py: STRICT sql_mode, utf8mb4_nopad_bin, InnoDB) but no TLS, and a
test user with a random password. Stopped (SIGTERM, then SIGKILL) when the context ends."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aps_etl.devdata.load_mariadb import MariaDBTarget
from aps_etl.env.stack import REPO_ROOT

if str(REPO_ROOT / "infra") not in sys.path:
    sys.path.insert(0, str(REPO_ROOT / "infra"))

from dev_stack.mariadb import MARIADBD, server_options  # noqa: E402


@dataclass(frozen=True)
class ThrowawayMariaDB:
    port: int
    socket: Path
    user: str
    password: str

    def target(self, database: str) -> MariaDBTarget:
        return MariaDBTarget("127.0.0.1", self.port, database, self.user, self.password)

    def admin(self, script: str) -> str:
        """Runs statements as root over the socket (on stdin); raises on an error."""
        result = subprocess.run(
            ["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", "--batch"],
            input=script,
            capture_output=True,
            text=True,
        )
        if result.returncode:
            raise RuntimeError(f"mariadb: {result.stderr.strip()}")
        return result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def throwaway_mariadb(folder: Path) -> Iterator[ThrowawayMariaDB]:
    folder.mkdir(parents=True, exist_ok=True)
    data, run_dir, log = folder / "data", folder / "run", folder / "mariadb.log"
    data.mkdir()
    run_dir.mkdir()
    port = free_port()
    config = folder / "my.cnf"
    # As root: mariadbd runs as root only when told so (the temp folder is root's own).
    user = "user = root\n" if os.geteuid() == 0 else ""
    config.write_text(server_options(data, run_dir, port, log) + user)
    subprocess.run(
        ["mariadb-install-db", f"--defaults-file={config}",
         "--auth-root-authentication-method=socket", "--skip-test-db"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    with open(folder / "mariadbd.out", "wb") as out:
        process = subprocess.Popen(
            [str(MARIADBD), f"--defaults-file={config}"], stdout=out, stderr=subprocess.STDOUT
        )
    server = ThrowawayMariaDB(port, run_dir / "mariadbd.sock", "tester", secrets.token_hex(12))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                server.admin("SELECT 1;")
                break
            except RuntimeError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"throwaway mariadbd did not start: {log.read_text()[-2000:]}"
                    ) from None
                time.sleep(0.2)
        server.admin(
            f"CREATE USER '{server.user}'@'127.0.0.1' IDENTIFIED BY '{server.password}';\n"
            f"GRANT ALL PRIVILEGES ON *.* TO '{server.user}'@'127.0.0.1';\n"
        )
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
