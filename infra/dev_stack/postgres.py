"""PostgreSQL from Debian's packages: a cluster of the `postgres` OS user in the state
folder, TLS with the stack's CA, tuned for dev bulk loads; its databases, roles and grants
come from config.postgres_setup."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from aps_etl.env.stack import postgres_uri

from .common import HOST, StackError, log_tail, our_pid, run, say
from .config import DAGSTER, DAGSTER_DB, ROLES, Generated, postgres_setup, render_statement
from .state import Stack, server_certificate


class Postgres:
    name = "postgres"

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.dir = stack.home / "postgres"
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"

    def pid(self) -> int | None:
        return our_pid(self.data / "postmaster.pid", self.data)

    @staticmethod
    def bindir() -> Path | None:
        found = sorted(
            Path("/usr/lib/postgresql").glob("*/bin/postgres"),
            key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
        )
        return found[-1].parent if found else None

    def install(self) -> None:
        if self.bindir():
            return
        say("postgres: installing Debian's postgresql package (apt-get)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-q"], "apt-get update", env=env)
        run(["apt-get", "install", "-y", "-q", "postgresql"], "apt-get install", env=env)
        if not self.bindir():
            raise StackError("postgres: no /usr/lib/postgresql/*/bin/postgres after install")

    def as_postgres(self, *cmd: str, what: str) -> None:
        # postgres refuses to run as root; the cluster belongs to the `postgres` OS user.
        run(["runuser", "-u", "postgres", "--", *cmd], what, cwd=self.dir)

    def start(self) -> None:
        bindir = self.bindir()
        assert bindir
        self.dir.mkdir(mode=0o700, exist_ok=True)
        shutil.chown(self.dir, "postgres", "postgres")
        self.dir.chmod(0o700)
        check = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-w", str(self.dir)])
        if check.returncode != 0:
            raise StackError(
                f"postgres: the postgres OS user cannot reach {self.dir}; "
                "put APS_STACK_HOME where every parent directory is world-executable"
            )
        if not (self.data / "PG_VERSION").exists():
            say(f"postgres: creating a cluster in {self.data}")
            pwfile = self.dir / "initdb.pw"
            fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self.stack.env["APS_PG_SUPERUSER_PASSWORD"] + "\n")
            shutil.chown(pwfile, "postgres", "postgres")
            try:
                self.as_postgres(
                    str(bindir / "initdb"),
                    "-D", str(self.data),
                    "-U", self.stack.env["APS_PG_SUPERUSER"],
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    what="initdb",
                )  # fmt: skip
            finally:
                pwfile.unlink(missing_ok=True)
            with open(self.data / "postgresql.conf", "a") as f:
                f.write("\ninclude = 'aps_stack.conf'\n")
        run_dir = self.dir / "run"
        run_dir.mkdir(exist_ok=True)
        shutil.chown(run_dir, "postgres", "postgres")
        cert, key = self.tls_files()
        # Rewritten on every start so a port change applies. Tuned for dev bulk loads:
        # durability traded for speed (synchronous_commit off, minimal WAL).
        conf = f"""# written by infra/stack
listen_addresses = '{HOST}'
port = {self.stack.ports["pg"]}
unix_socket_directories = '{run_dir}'
password_encryption = 'scram-sha-256'
shared_buffers = '1GB'
work_mem = '64MB'
maintenance_work_mem = '512MB'
max_wal_size = '4GB'
checkpoint_timeout = '15min'
synchronous_commit = off
wal_level = minimal
max_wal_senders = 0
max_connections = 100
# TLS with a certificate of the stack's own CA (tls/ca.crt): clients may verify it
# (sslmode=verify-full, APS_PG_SSLROOTCERT), as production requires.
ssl = on
ssl_cert_file = '{cert}'
ssl_key_file = '{key}'
"""
        (self.data / "aps_stack.conf").write_text(conf)
        shutil.chown(self.data / "aps_stack.conf", "postgres", "postgres")
        try:
            self.as_postgres(
                str(bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                "-w", "-t", "60", "start",
                what="pg_ctl start",
            )  # fmt: skip
        except StackError as e:
            raise StackError(f"{e}\n  tail of {self.log}:\n{log_tail(self.log)}") from None
        self.setup()

    def tls_files(self) -> tuple[Path, Path]:
        """The server's certificate and key, signed by the stack's CA (made once)."""
        cert, key = server_certificate(self.stack, self.dir)
        for path in (cert, key):
            shutil.chown(path, "postgres", "postgres")
        return cert, key

    def setup(self) -> None:
        """Databases, roles and grants (config.postgres_setup, as compose's first start
        runs them); idempotent, so it runs on every `up`."""
        import psycopg2

        env = self.stack.env
        # Role and database names are our constants; passwords only go in as parameters.
        passwords = {role.name: env[role.password_var] for role in ROLES}
        for database, statements in postgres_setup():
            conn = psycopg2.connect(postgres_uri(env, database, "superuser"), connect_timeout=10)
            try:
                conn.autocommit = True  # CREATE DATABASE; `with conn` would open a transaction
                with conn.cursor() as cur:
                    # A failing statement is logged with its text, which may hold a PASSWORD.
                    cur.execute("SET log_min_error_statement = panic")
                    for statement in statements:
                        if isinstance(statement, Generated):
                            cur.execute(render_statement(statement.query, compose=False))
                            for (generated,) in cur.fetchall():
                                cur.execute(generated)
                        elif "password}" in statement:
                            cur.execute(render_statement(statement, compose=False), passwords)
                        else:
                            cur.execute(render_statement(statement, compose=False))
            finally:
                conn.close()

    def stop(self, pid: int) -> None:
        bindir = self.bindir()
        assert bindir
        self.as_postgres(
            str(bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop",
            what="pg_ctl stop",
        )  # fmt: skip

    def probe(self) -> str:
        """One query per database, each as the role that uses it."""
        import psycopg2

        env = self.stack.env
        for db, role in (
            ("mes", "mes_owner"),
            ("mes", "mes_reader"),
            ("aps", "aps_loader"),
            ("aps", "aps_stage_writer"),
            (DAGSTER_DB, DAGSTER.name),
        ):
            conn = psycopg2.connect(postgres_uri(env, db, role), connect_timeout=5)
            try:
                conn.cursor().execute("SELECT 1")
            finally:
                conn.close()
        return (
            "mes (mes_owner, mes_reader), aps (aps_loader, aps_stage_writer), dagster (dagster) ok"
        )

    def address(self) -> str:
        return f"{HOST}:{self.stack.ports['pg']}"
