"""MariaDB from Debian's packages: the MariaDB/MySQL form of the source MES. A server of the
`mysql` OS user with its data dir in the state folder, on 127.0.0.1 only, TLS required with
a certificate of the stack's CA, STRICT sql_mode, the time zone tables loaded, no anonymous
users and no `test` database; database `mes` with the roles mes_owner (everything on mes.*)
and mes_reader (SELECT and SHOW VIEW on mes.*), their passwords generated into stack.env.

Administration goes through the server's unix socket in the state folder as MariaDB's root,
authenticated by the OS user (unix_socket): root has no password and no TCP login. Every
statement reaches the `mariadb` client on stdin and every password sits in an option file of
mode 600: neither is ever in a process's argv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from functools import partial
from pathlib import Path

from .common import (
    HOST,
    StackError,
    alive,
    base_env,
    log_tail,
    our_pid,
    run,
    say,
    spawn,
    stop_pid,
    wait_until,
    write_private,
)
from .config import MES_DB, MES_OWNER, MES_READER, READER_STATEMENT_TIMEOUT_S
from .state import Stack, server_certificate

MARIADBD = Path("/usr/sbin/mariadbd")
OS_USER = "mysql"
# Exact comparison as in PostgreSQL: case- and trailing-space-sensitive.
CHARSET, COLLATION = "utf8mb4", "utf8mb4_nopad_bin"
# STRICT: a bad value is refused, never truncated or coerced (zero dates included).
SQL_MODE = (
    "STRICT_TRANS_TABLES,STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,"
    "ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
)


def server_options(data: Path, run_dir: Path, port: int, log: Path) -> str:
    """The [mariadbd] options every server of ours runs with (the stack's, a test's own):
    loopback only, no DNS, STRICT, utf8mb4 with the binary no-pad collation, InnoDB."""
    return f"""[mariadbd]
datadir = {data}
socket = {run_dir / "mariadbd.sock"}
pid-file = {run_dir / "mariadbd.pid"}
log-error = {log}
bind-address = {HOST}
port = {port}
skip-name-resolve
skip-log-bin
character-set-server = {CHARSET}
collation-server = {COLLATION}
sql-mode = {SQL_MODE}
default-storage-engine = InnoDB
local-infile = OFF
# dev bulk loads: durability traded for speed, as the stack's PostgreSQL does
innodb-buffer-pool-size = 512M
innodb-log-file-size = 256M
innodb-flush-log-at-trx-commit = 2
max-allowed-packet = 256M
"""


def sql_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def install_packages(what: str) -> None:
    """mariadb-server and mariadb-client from Debian's packages when mariadbd is missing."""
    if MARIADBD.exists() and shutil.which("mariadb"):
        return
    say(f"{what}: installing Debian's mariadb-server package (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], "apt-get update", env=env)
    packages = ["mariadb-server", "mariadb-client"]
    run(["apt-get", "install", "-y", "-q", *packages], "apt-get install", env=env)
    if not MARIADBD.exists():
        raise StackError(f"{what}: no {MARIADBD} after installing mariadb-server")


class MariaDB:
    name = "mariadb"

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.dir = stack.home / "mariadb"
        self.data = self.dir / "data"
        self.run_dir = self.dir / "run"
        self.log = self.dir / "mariadb.log"
        self.config = self.dir / "my.cnf"
        self.admin_config = self.dir / "admin.cnf"  # root over the socket: no password

    def pid(self) -> int | None:
        return our_pid(self.run_dir / "mariadbd.pid", self.dir)

    def install(self) -> None:
        install_packages(self.name)

    def start(self) -> None:
        self.dir.mkdir(mode=0o700, exist_ok=True)
        self.run_dir.mkdir(exist_ok=True)
        cert, key = server_certificate(self.stack, self.dir)
        fresh = not (self.data / "mysql").is_dir()
        if fresh:
            say(f"mariadb: creating a data dir in {self.data}")
            shutil.rmtree(self.data, ignore_errors=True)  # a half-made one from a failed up
            self.data.mkdir()
        # Rewritten on every start so a port change applies.
        self.config.write_text(
            "# written by infra/stack\n"
            + server_options(self.data, self.run_dir, self.stack.ports["mariadb"], self.log)
            + f"""user = {OS_USER}
# TLS with a certificate of the stack's own CA (tls/ca.crt): clients verify it
# (APS_MARIADB_SSLROOTCERT); connections over TCP must use TLS.
ssl-ca = {self.stack.home / "tls" / "ca.crt"}
ssl-cert = {cert}
ssl-key = {key}
require-secure-transport = ON
"""
        )
        write_private(
            self.admin_config,
            f"[client]\nuser = root\nsocket = {self.run_dir / 'mariadbd.sock'}\n",
        )
        for path in [self.dir, *self.dir.rglob("*")]:
            shutil.chown(path, OS_USER, OS_USER)
        if subprocess.run(["runuser", "-u", OS_USER, "--", "test", "-w", str(self.dir)]).returncode:
            raise StackError(
                f"mariadb: the {OS_USER} OS user cannot reach {self.dir}; "
                "put APS_STACK_HOME where every parent directory is world-executable"
            )
        if fresh:
            run(
                ["mariadb-install-db", f"--defaults-file={self.config}",
                 "--auth-root-authentication-method=socket", "--skip-test-db"],
                "mariadb-install-db",
                cwd=self.dir,
            )  # fmt: skip
        (self.run_dir / "mariadbd.pid").unlink(missing_ok=True)
        process = spawn(
            [str(MARIADBD), f"--defaults-file={self.config}"],
            base_env(),
            self.dir / "mariadbd.out",
            self.dir,
        )
        started = time.monotonic()
        if not wait_until(self.answers, 60, lambda: process.poll() is None):
            why = "exited while starting" if process.poll() is not None else "no answer in 60s"
            raise StackError(f"mariadb: {why}; tail of {self.log}:\n{log_tail(self.log)}")
        if not wait_until(lambda: self.pid() is not None, 10, partial(alive, self.pid_file)):
            raise StackError(f"mariadb: answers but wrote no pid file ({self.pid_file})")
        if fresh:
            say(f"mariadb: server up in {time.monotonic() - started:.1f}s, first setup")
        self.setup()

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "mariadbd.pid"

    def answers(self) -> bool:
        result = subprocess.run(
            ["mariadb-admin", f"--defaults-file={self.admin_config}", "--connect-timeout=2",
             "ping"],
            capture_output=True,
            text=True,
        )  # fmt: skip
        return result.returncode == 0

    def admin(self, script: str, what: str) -> str:
        """Runs `script` as root over the socket (statements on stdin); its output."""
        return run(
            ["mariadb", f"--defaults-file={self.admin_config}", "--batch", "--skip-column-names"],
            what,
            input=script,
        ).stdout

    def setup(self) -> None:
        """Time zone tables, no anonymous user, no `test`, database `mes` and the two roles
        with their grants; idempotent, so it runs on every `up`."""
        zones_loaded = self.admin("SELECT count(*) FROM mysql.time_zone_name;", "mariadb: zones")
        if zones_loaded.strip() in ("", "0"):
            zones = run(
                ["mariadb-tzinfo-to-sql", "/usr/share/zoneinfo"], "mariadb-tzinfo-to-sql"
            ).stdout
            self.admin("USE mysql;\n" + zones, "mariadb: loading the time zone tables")
        anonymous = self.admin(
            "SELECT CONCAT(QUOTE(user), '@', QUOTE(host)) FROM mysql.user WHERE user = '';",
            "mariadb: anonymous users",
        ).split()
        env = self.stack.env
        script = [f"DROP USER {account};" for account in anonymous]
        script += [
            "DROP DATABASE IF EXISTS test;",
            f"CREATE DATABASE IF NOT EXISTS {MES_DB} CHARACTER SET {CHARSET} COLLATE {COLLATION};",
            f"ALTER DATABASE {MES_DB} CHARACTER SET {CHARSET} COLLATE {COLLATION};",
        ]
        for role, password_var, privileges, limit in (
            (MES_OWNER, "APS_MARIADB_OWNER_PASSWORD", "ALL PRIVILEGES", 0),
            # the reader's statements bounded as on PostgreSQL (config.py); MariaDB has no
            # per-user limit on an idle transaction
            (MES_READER, "APS_MARIADB_READER_PASSWORD", "SELECT, SHOW VIEW",
             READER_STATEMENT_TIMEOUT_S),
        ):  # fmt: skip
            account = f"{sql_literal(role.name)}@{sql_literal(HOST)}"
            password = sql_literal(env[password_var])
            script += [
                f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {password} REQUIRE SSL;",
                f"ALTER USER {account} IDENTIFIED BY {password} REQUIRE SSL "
                f"WITH MAX_STATEMENT_TIME {limit};",
                # Exactly these rights, also when someone granted more by hand.
                f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {account};",
                f"GRANT {privileges} ON {MES_DB}.* TO {account};",
            ]
        self.admin("\n".join(script) + "\n", "mariadb: roles and grants")

    def stop(self, pid: int) -> None:
        stop_pid(pid, self.name, 60)  # SIGTERM: a clean shutdown

    def probe(self) -> str:
        """A TLS login (server certificate verified against the stack's CA) per role."""
        env = self.stack.env
        for role, password_var in (
            (MES_OWNER, "APS_MARIADB_OWNER_PASSWORD"),
            (MES_READER, "APS_MARIADB_READER_PASSWORD"),
        ):
            options = self.dir / f"probe-{role.name}.cnf"
            write_private(
                options,
                f"""[client]
host = {env["APS_MARIADB_HOST"]}
port = {env["APS_MARIADB_PORT"]}
user = {role.name}
password = {env[password_var]}
database = {env["APS_MARIADB_DB"]}
ssl-ca = {env["APS_MARIADB_SSLROOTCERT"]}
ssl-verify-server-cert
connect-timeout = 5
""",
            )
            try:
                cipher = run(
                    ["mariadb", f"--defaults-file={options}", "--batch", "--skip-column-names",
                     "-e", "SELECT variable_value FROM information_schema.session_status "
                     "WHERE variable_name = 'Ssl_version'"],
                    f"mariadb: TLS login as {role.name}",
                ).stdout.strip()  # fmt: skip
            finally:
                options.unlink(missing_ok=True)
            if not cipher:
                raise StackError(f"mariadb: {role.name} logged in without TLS")
        return f"mes (mes_owner, mes_reader) over {cipher}, certificate verified ok"

    def address(self) -> str:
        return f"{HOST}:{self.stack.ports['mariadb']}"
