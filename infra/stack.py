"""Local dev stack: PostgreSQL, MinIO and Trino as plain processes on 127.0.0.1.

    infra/stack up|down|status [postgres|minio|trino ...]

State (data, logs, pid files, generated credentials in stack.env) lives in $APS_STACK_HOME
(default <repo>/.stack); downloaded and built binaries are cached outside the repo in
${XDG_CACHE_HOME:-~/.cache}/aps-etl so that a second clone starts fast. `down` only stops
processes whose pid file points at a process running from this state dir.

No password or secret key is ever printed: every message goes through `redact`, passwords
reach the services through files with mode 600 or the environment, never argv.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import s3fs

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from aps_etl.env.stack import (  # noqa: E402
    STACK_VARIABLES,
    parse_env_file,
    postgres_uri,
    trino_connect,
)

SERVICES = ("postgres", "minio", "trino")
HOST = "127.0.0.1"
DEFAULT_PORTS = {"pg": 55432, "minio": 59000, "console": 59001, "trino": 58080}
PORT_VARS = {
    "pg": "APS_STACK_PG_PORT",
    "minio": "APS_STACK_MINIO_PORT",
    "console": "APS_STACK_MINIO_CONSOLE_PORT",
    "trino": "APS_STACK_TRINO_PORT",
}
SERVICE_PORTS = {"postgres": ("pg",), "minio": ("minio", "console"), "trino": ("trino",)}

# MinIO community edition was archived in 2026. Its last release tag
# RELEASE.2025-10-15T17-29-55Z (v0.0.0-20251015172955-9e49d5e7a648) is refused (403) by the
# Go module proxy this project can reach, so the pin is the newest commit it serves: the
# archive commit of 2026-02-12. No prebuilt binary can be downloaded here, hence the build.
MINIO_MODULE = "github.com/minio/minio"
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"

# Trino comes as the full trino-server tarball from Maven: the mirror we can reach does not
# serve io.trino:trino-postgresql:476 (only 356/368/449), so trino-server-core + plugin zips
# is not an option. Only lib/, bin/ and the plugins we use are kept in the cache;
# geospatial because the PostgreSQL connector needs the Geometry type it registers.
TRINO_VERSION = "476"
# password-authenticators: the file authenticator (password.db) of the HTTPS client port.
TRINO_PLUGINS = ("hive", "postgresql", "geospatial", "password-authenticators")
TRINO_MIN_JAVA = 24
BUCKET = "data-lake"
TRINO_USER = "aps_etl"
# What Trino's processes get: its catalogs' database passwords and the key its nodes sign
# their internal requests with (the S3 keys go in as AWS_* variables, see Trino.launch).
TRINO_SECRETS = (
    "APS_MES_READER_PASSWORD",
    "APS_APS_LOADER_PASSWORD",
    "APS_TRINO_SHARED_SECRET_KEY",
)
TRINO_WORKERS_VAR = "APS_STACK_TRINO_WORKERS"
TRINO_MAX_WORKERS = 8
# Static configuration shared with the compose deployment: Trino's access rules and the
# MinIO policy of the user Trino reads the lake as.
INFRA_TRINO = REPO / "infra" / "trino"
LAKE_READER_POLICY = "aps-trino-lake-reader"
# Dagster's own storage (runs, event log, schedules; infra/dagster-dev.yaml): a database of
# its own, owned by a role that has no rights on mes or aps.
DAGSTER_DB = DAGSTER_ROLE = "dagster"


class StackError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


_secrets: list[str] = []


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


# ---------------------------------------------------------------- processes and ports


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


# ---------------------------------------------------------------- settings


@dataclass
class Stack:
    home: Path
    cache: Path
    ports: dict[str, int]
    env: dict[str, str]  # the stack.env values (empty before the first `up`)
    recorded: dict[str, str | None]  # ports in stack.env: where running services listen

    @property
    def env_file(self) -> Path:
        return self.home / "stack.env"


def load_stack() -> Stack:
    home = Path(os.environ.get("APS_STACK_HOME") or REPO / ".stack").resolve()
    cache_root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    existing = parse_env_file(home / "stack.env") if (home / "stack.env").exists() else {}
    _secrets.extend(v for k, v in existing.items() if _is_redacted(k) and v)
    # A port comes from its override, else from the settings of the stack already made here.
    console_file = home / "minio" / "console.port"  # the one port stack.env does not hold
    recorded = {
        "pg": existing.get("APS_PG_PORT"),
        "minio": existing.get("APS_S3_ENDPOINT", "").rpartition(":")[2] or None,
        "console": console_file.read_text().strip() if console_file.exists() else None,
        "trino": existing.get("APS_TRINO_PORT"),
    }
    ports: dict[str, int] = {}
    for key, var in PORT_VARS.items():
        raw = os.environ.get(var) or recorded.get(key) or str(DEFAULT_PORTS[key])
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            raise StackError(f"{var}={raw!r} is not a TCP port", code=2)
        ports[key] = int(raw)
    return Stack(home, Path(cache_root) / "aps-etl", ports, existing, recorded)


def _is_secret(key: str) -> bool:
    return key.endswith(("_PASSWORD", "_SECRET_KEY"))


def _is_redacted(key: str) -> bool:
    """Kept out of every message: the secrets, and the S3 access key (half a credential)."""
    return _is_secret(key) or key.endswith("_ACCESS_KEY")


def write_env(stack: Stack) -> None:
    """Writes stack.env: secrets generated once and kept, addresses from the current ports."""
    old = stack.env
    if not old and any((stack.home / s).exists() for s in SERVICES):
        # Data made with credentials we no longer have: new ones would lock us out.
        raise StackError(
            f"{stack.home} has service data but no stack.env; remove {stack.home} to start over"
        )
    p = stack.ports
    values = {
        "APS_PG_HOST": HOST,
        "APS_PG_PORT": str(p["pg"]),
        "APS_PG_SUPERUSER": "postgres",
        "APS_MES_DB": "mes",
        "APS_MES_OWNER_USER": "mes_owner",
        "APS_MES_READER_USER": "mes_reader",
        "APS_APS_DB": "aps",
        "APS_APS_LOADER_USER": "aps_loader",
        "APS_S3_ENDPOINT": f"http://{HOST}:{p['minio']}",
        "APS_S3_REGION": "us-east-1",
        "APS_S3_BUCKET": BUCKET,
        "APS_S3_ACCESS_KEY": old.get("APS_S3_ACCESS_KEY") or f"aps-{secrets.token_hex(6)}",
        "APS_TRINO_HOST": HOST,
        "APS_TRINO_PORT": str(p["trino"]),
        "APS_TRINO_USER": TRINO_USER,
        "APS_TRINO_HTTP_SCHEME": "https",
        "APS_TRINO_SSLROOTCERT": str(stack.home / "tls" / "ca.crt"),
        "APS_TRINO_S3_ACCESS_KEY": old.get("APS_TRINO_S3_ACCESS_KEY")
        or f"trino-lake-{secrets.token_hex(6)}",
        "APS_DAGSTER_PG_HOST": HOST,
        "APS_DAGSTER_PG_PORT": str(p["pg"]),
        "APS_DAGSTER_PG_USER": DAGSTER_ROLE,
    }
    for key in STACK_VARIABLES:
        if _is_secret(key):
            values[key] = old.get(key) or secrets.token_urlsafe(24)
    assert set(values) == set(STACK_VARIABLES), "out of sync with aps_etl.env.stack"
    text = "# Generated by infra/stack up. Secrets: keep this file private (mode 600).\n"
    text += "".join(f"{key}={values[key]}\n" for key in STACK_VARIABLES)
    stack.home.mkdir(parents=True, exist_ok=True)
    stack.home.chmod(0o755)  # the postgres OS user must reach its data dir below
    tmp = stack.env_file.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, stack.env_file)
    stack.env = values
    _secrets.extend(v for k, v in values.items() if _is_redacted(k))


@contextmanager
def locked(stack: Stack) -> Iterator[None]:
    """One `up`/`down` at a time per state dir."""
    stack.home.mkdir(parents=True, exist_ok=True)
    with open(stack.home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# ---------------------------------------------------------------- TLS


def write_private(path: Path, text: str) -> None:
    """Writes a file only its owner may read (mode 600 from the start)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def server_certificate(stack: Stack, directory: Path) -> tuple[Path, Path]:
    """server.crt and server.key in `directory`, for 127.0.0.1 and localhost, signed by the
    stack's CA (tls/ca.crt, made once; clients verify against it). Remade when the CA is
    newer than the certificate."""
    tls = stack.home / "tls"
    ca_cert, ca_key = tls / "ca.crt", tls / "ca.key"
    cert, key = directory / "server.crt", directory / "server.key"
    tls.mkdir(mode=0o755, parents=True, exist_ok=True)
    if not ca_cert.exists():
        say("tls: making the stack's certificate authority (tls/ca.crt)")
        run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
             "-keyout", str(ca_key), "-out", str(ca_cert), "-subj", "/CN=aps-etl dev stack CA"],
            "openssl (CA)",
        )  # fmt: skip
        ca_key.chmod(0o600)
    if not cert.exists() or cert.stat().st_mtime < ca_cert.stat().st_mtime:
        request = directory / "server.csr"
        run(
            ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
             "-out", str(request), "-subj", f"/CN={HOST}"],
            "openssl (server key)",
        )  # fmt: skip
        key.chmod(0o600)  # PostgreSQL refuses a key others can read
        extensions = directory / "server.ext"
        extensions.write_text(f"subjectAltName = IP:{HOST}, DNS:localhost\n")
        run(
            ["openssl", "x509", "-req", "-in", str(request), "-CA", str(ca_cert),
             "-CAkey", str(ca_key), "-CAcreateserial", "-days", "3650",
             "-out", str(cert), "-extfile", str(extensions)],
            "openssl (server certificate)",
        )  # fmt: skip
        request.unlink(missing_ok=True)
    return cert, key


# ---------------------------------------------------------------- PostgreSQL


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
        """Databases, roles and grants; idempotent, so it runs on every `up`."""
        import psycopg2

        env = self.stack.env
        # Role and database names are our constants; passwords only go in as parameters.
        owner, reader, loader, dagster = "mes_owner", "mes_reader", "aps_loader", DAGSTER_ROLE
        passwords = {
            owner: env["APS_MES_OWNER_PASSWORD"],
            reader: env["APS_MES_READER_PASSWORD"],
            loader: env["APS_APS_LOADER_PASSWORD"],
            dagster: env["APS_DAGSTER_PG_PASSWORD"],
        }

        def connect(database: str) -> psycopg2.extensions.connection:
            conn = psycopg2.connect(postgres_uri(env, database, "superuser"), connect_timeout=10)
            conn.autocommit = True  # CREATE DATABASE; note `with conn` would open a transaction
            # A failing statement is logged with its text, which may hold a PASSWORD.
            conn.cursor().execute("SET log_min_error_statement = panic")
            return conn

        conn = connect("postgres")
        with conn.cursor() as cur:
            for role, password in passwords.items():
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                verb = "ALTER" if cur.fetchone() else "CREATE"
                # Plain login roles, also when one was created by hand with more rights.
                cur.execute(
                    f"{verb} ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                    "NOREPLICATION NOBYPASSRLS PASSWORD %s",
                    (password,),
                )
            databases = (("mes", env["APS_PG_SUPERUSER"]), ("aps", loader), (DAGSTER_DB, dagster))
            for db, db_owner in databases:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
                if not cur.fetchone():
                    cur.execute(f"CREATE DATABASE {db}")
                # aps_loader owns aps and dagster owns dagster, hence their schema public
                # (owner pg_database_owner): Dagster creates and migrates its own tables.
                cur.execute(f"ALTER DATABASE {db} OWNER TO {db_owner}")
                # Only the roles granted below may connect; no TEMP for the others either.
                cur.execute(f"REVOKE ALL ON DATABASE {db} FROM PUBLIC")
            cur.execute(f"GRANT CONNECT, TEMPORARY ON DATABASE mes TO {owner}")
            cur.execute(f"GRANT CONNECT ON DATABASE mes TO {reader}")
            cur.execute(f"ALTER ROLE {reader} SET default_transaction_read_only = on")
            for role in (owner, reader):
                cur.execute(f"ALTER ROLE {role} IN DATABASE mes SET search_path = mes, public")
        conn.close()
        conn = connect("mes")
        with conn.cursor() as cur:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS mes AUTHORIZATION {owner}")
            cur.execute(f"ALTER SCHEMA mes OWNER TO {owner}")
            cur.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            cur.execute(f"GRANT USAGE ON SCHEMA mes TO {reader}")
            cur.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA mes TO {reader}")
            cur.execute(
                f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA mes "
                f"GRANT SELECT ON TABLES TO {reader}"
            )
        conn.close()
        conn = connect(DAGSTER_DB)
        with conn.cursor() as cur:
            cur.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")  # the owner only
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
            (DAGSTER_DB, "dagster"),
        ):
            conn = psycopg2.connect(postgres_uri(env, db, role), connect_timeout=5)
            try:
                conn.cursor().execute("SELECT 1")
            finally:
                conn.close()
        return "mes (mes_owner, mes_reader), aps (aps_loader), dagster (dagster) ok"

    def address(self) -> str:
        return f"{HOST}:{self.stack.ports['pg']}"


# ---------------------------------------------------------------- MinIO


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
        env.update(
            MINIO_ROOT_USER=self.stack.env["APS_S3_ACCESS_KEY"],
            MINIO_ROOT_PASSWORD=self.stack.env["APS_S3_SECRET_KEY"],
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
        fs = self.fs()
        if not fs.exists(BUCKET):
            fs.mkdir(BUCKET)
        self.lake_reader()

    def lake_reader(self) -> None:
        """The MinIO user Trino reads the lake as (APS_TRINO_S3_ACCESS_KEY), never the root
        keys. Its policy (infra/trino/lake-reader-policy.json) allows Get and List on the
        bucket; writes only under _trino_metastore/, because Trino's file metastore keeps
        the lake tables' schemas, tables and registered partitions there (CREATE SCHEMA,
        CREATE TABLE and register_partition write those files). Idempotent."""
        from minio import MinioAdmin
        from minio.credentials import StaticProvider

        env = self.stack.env
        policy = INFRA_TRINO / "lake-reader-policy.json"
        if f"arn:aws:s3:::{BUCKET}" not in policy.read_text():
            raise StackError(f"minio: {policy} is not about bucket {BUCKET}")
        admin = MinioAdmin(
            endpoint=f"{HOST}:{self.stack.ports['minio']}",
            credentials=StaticProvider(env["APS_S3_ACCESS_KEY"], env["APS_S3_SECRET_KEY"]),
            secure=False,
        )
        admin.policy_add(LAKE_READER_POLICY, policy_file=policy)
        admin.user_add(env["APS_TRINO_S3_ACCESS_KEY"], env["APS_TRINO_S3_SECRET_KEY"])
        admin.policy_set(LAKE_READER_POLICY, user=env["APS_TRINO_S3_ACCESS_KEY"])

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


# ---------------------------------------------------------------- Trino


class TrinoNode:
    """One Trino server: the coordinator (in trino/) or worker N (in trino/worker-N/), each
    with its own etc/, data/, node.id, pid file, log and internal HTTP port."""

    def __init__(self, trino: Trino, index: int) -> None:
        self.index = index
        self.coordinator = index == 0
        self.name = "coordinator" if self.coordinator else f"worker-{index}"
        self.node_id = f"aps-dev-{self.name}"
        self.dir = trino.dir if self.coordinator else trino.dir / self.name
        self.etc = self.dir / "etc"
        self.data = self.dir / "data"
        self.pid_file = self.dir / "trino.pid"
        self.log = self.dir / "server.log"
        self.port_file = self.dir / "http.port"  # where it listens, recorded at start
        # Derived from the client port: coordinator's internal port +1, worker N's +1+N.
        self.wanted_port = trino.stack.ports["trino"] + 1 + index

    def pid(self) -> int | None:
        return our_pid(self.pid_file, self.etc)

    def http_port(self) -> int:
        """The node's plain-HTTP port: node-to-node traffic only (see Trino.configure)."""
        if self.pid() and self.port_file.exists():
            return int(self.port_file.read_text())
        return self.wanted_port

    def ready(self) -> bool:
        status, body = http_get(f"http://{HOST}:{self.http_port()}/v1/info")
        return status == 200 and json.loads(body).get("starting") is False


class Trino:
    """A Trino cluster: a coordinator serving clients over HTTPS with password authentication
    and file-based access control (infra/trino/rules.json), plus APS_STACK_TRINO_WORKERS
    workers (default 1). Nodes talk to each other over plain HTTP on loopback, each request
    signed with the shared secret (internal-communication.shared-secret)."""

    name = "trino"

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.dir = stack.home / "trino"
        self.tls = self.dir / "tls"
        self.keystore = self.tls / "keystore.pem"
        self.install_dir = stack.cache / f"trino-server-{TRINO_VERSION}"
        self.coordinator = TrinoNode(self, 0)
        # kept for callers that knew the single-node layout (tests kill it by pid)
        self.pid_file, self.log, self.etc = (
            self.coordinator.pid_file,
            self.coordinator.log,
            self.coordinator.etc,
        )

    @staticmethod
    def wanted_workers() -> int:
        raw = os.environ.get(TRINO_WORKERS_VAR, "").strip() or "1"
        if not raw.isdigit() or int(raw) > TRINO_MAX_WORKERS:
            raise StackError(
                f"{TRINO_WORKERS_VAR}={raw!r}: give a number of workers from 0 to "
                f"{TRINO_MAX_WORKERS}",
                code=2,
            )
        return int(raw)

    def pid(self) -> int | None:
        return self.coordinator.pid()

    def workers(self, count: int) -> list[TrinoNode]:
        return [TrinoNode(self, i) for i in range(1, count + 1)]

    def running_workers(self) -> list[TrinoNode]:
        """Workers started here earlier, whatever APS_STACK_TRINO_WORKERS says now."""
        found = []
        for path in sorted(self.dir.glob("worker-*")):
            index = path.name.removeprefix("worker-")
            if index.isdigit() and (node := TrinoNode(self, int(index))).pid():
                found.append(node)
        return found

    @staticmethod
    def java_home() -> Path:
        """The oldest JDK >= 24 under /usr/lib/jvm (Trino 476 is tested on 24)."""
        found: list[tuple[int, Path]] = []
        for release in Path("/usr/lib/jvm").glob("*/release"):
            match = re.search(r'^JAVA_VERSION="(\d+)', release.read_text(), re.M)
            home = release.parent
            if match and int(match[1]) >= TRINO_MIN_JAVA and (home / "bin/java").exists():
                found.append((int(match[1]), home))
        if not found:
            raise StackError(
                f"trino: Trino {TRINO_VERSION} needs a JDK >= {TRINO_MIN_JAVA} under /usr/lib/jvm "
                "(e.g. Temurin 24/25); none found"
            )
        return min(found)[1]

    def install(self) -> None:
        self.java_home()
        if all((self.install_dir / "plugin" / p).is_dir() for p in TRINO_PLUGINS):
            return
        m2 = Path.home() / ".m2/repository/io/trino/trino-server" / TRINO_VERSION
        tarball = m2 / f"trino-server-{TRINO_VERSION}.tar.gz"
        if not tarball.exists():
            if not shutil.which("mvn"):
                say("trino: installing Maven (apt-get)")
                env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
                run(["apt-get", "update", "-q"], "apt-get update", env=env)
                run(["apt-get", "install", "-y", "-q", "maven"], "apt-get install maven", env=env)
            say(f"trino: downloading trino-server {TRINO_VERSION} with Maven (~820 MB, once)")
            run(
                [
                    "mvn", "-q", "-B", "dependency:get",
                    f"-Dartifact=io.trino:trino-server:{TRINO_VERSION}:tar.gz",
                    "-Dtransitive=false",
                ],
                "mvn dependency:get",
            )  # fmt: skip
        say(f"trino: unpacking into {self.install_dir}")
        self.stack.cache.mkdir(parents=True, exist_ok=True)
        tmp = self.stack.cache / f".trino-unpack-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            # Unpacked whole, then pruned: the tarball stores shared jars as hard links
            # across plugin dirs, so extracting only plugin/hive + plugin/postgresql with
            # --wildcards fails on links whose target is in a skipped plugin.
            run(["tar", "xzf", str(tarball), "-C", str(tmp)], "tar xzf trino-server")
            root = tmp / f"trino-server-{TRINO_VERSION}"
            for plugin in (root / "plugin").iterdir():
                if plugin.name not in TRINO_PLUGINS:
                    shutil.rmtree(plugin)
            if (self.install_dir / "lib").is_dir():
                # An older cache without a plugin we now use: add it, change nothing else
                # (another checkout's Trino may be running from this folder).
                for plugin in (root / "plugin").iterdir():
                    if not (self.install_dir / "plugin" / plugin.name).exists():
                        plugin.rename(self.install_dir / "plugin" / plugin.name)
            else:
                shutil.rmtree(self.install_dir, ignore_errors=True)
                root.rename(self.install_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def check_ports(self) -> None:
        """The internal ports of the nodes `up` will start must be free (before anything)."""
        for node in [self.coordinator, *self.workers(self.wanted_workers())]:
            if not node.pid() and not port_free(node.wanted_port):
                raise StackError(
                    f"trino: the {node.name}'s internal port {node.wanted_port} (derived from "
                    f"{PORT_VARS['trino']}={self.stack.ports['trino']}) is in use by "
                    f"{port_owner(node.wanted_port)}; stop it or set {PORT_VARS['trino']}"
                )

    def secure_files(self) -> None:
        """The HTTPS keystore (a certificate of the stack's CA, its key) and password.db."""
        import bcrypt

        self.tls.mkdir(mode=0o700, parents=True, exist_ok=True)
        cert, key = server_certificate(self.stack, self.tls)
        if not self.keystore.exists() or self.keystore.stat().st_mtime < cert.stat().st_mtime:
            # Trino 476 reads a PEM keystore: the private key and the certificate chain.
            write_private(self.keystore, key.read_text() + cert.read_text())
        password = self.stack.env["APS_TRINO_PASSWORD"].encode()
        db = self.coordinator.etc / "password.db"
        current = db.read_text().strip().partition(":")[2].encode() if db.exists() else b""
        if not (current and bcrypt.checkpw(password, current.replace(b"$2y$", b"$2b$", 1))):
            # Trino's file authenticator wants bcrypt as htpasswd writes it ($2y$, cost >= 8);
            # $2b$ (Python's bcrypt) is the same algorithm under another name.
            hashed = bcrypt.hashpw(password, bcrypt.gensalt(10)).replace(b"$2b$", b"$2y$", 1)
            write_private(db, f"{TRINO_USER}:{hashed.decode()}\n")

    def configure(self, node: TrinoNode, workers: int) -> None:
        p, env = self.stack.ports, self.stack.env
        pg = f"jdbc:postgresql://{HOST}:{p['pg']}"
        discovery = f"http://{HOST}:{self.coordinator.http_port()}"
        # Memory: coordinator + 2 workers (2 + 4 + 4 GB heap) fit beside PostgreSQL
        # (shared_buffers 1 GB) and MinIO on a 24 GB machine. Alone, the coordinator also
        # runs the queries and gets the single node's 6 GB. query.max-memory-per-node plus
        # Trino's heap headroom (30% of -Xmx) must stay below -Xmx.
        if node.coordinator:
            heap, per_node = ("2G", "1GB") if workers else ("6G", "3GB")
        else:
            heap, per_node = "4G", "2GB"
        total = f"{max(3, 2 * workers)}GB"
        if node.coordinator:
            # The client port serves HTTPS only, with password authentication; the plain
            # HTTP port is for the workers (announcements, tasks), whose requests carry a
            # token signed with the shared secret. Trino refuses passwords over plain HTTP.
            # With workers, the coordinator only plans and schedules (include-coordinator
            # false): queries run on the workers as in a production cluster, and table
            # scans do not compete with scheduling for the coordinator's small heap.
            role = f"""
coordinator=true
node-scheduler.include-coordinator={"false" if workers else "true"}
http-server.http.port={node.wanted_port}
http-server.https.enabled=true
http-server.https.port={p["trino"]}
http-server.https.keystore.path={self.keystore}
http-server.authentication.type=PASSWORD
"""
        else:
            role = f"""
coordinator=false
http-server.http.port={node.wanted_port}
"""
        files = {
            "node.properties": f"""
node.environment=aps_dev
node.id={node.node_id}
node.data-dir={node.data}
# HTTP server and announced address on loopback only
node.bind-ip={HOST}
node.internal-address={HOST}
""",
            # Flags as in Trino's deployment docs.
            "jvm.config": f"""
-server
-Xmx{heap}
-XX:+UseG1GC
-XX:G1HeapRegionSize=32M
-XX:+ExplicitGCInvokesConcurrent
-XX:+ExitOnOutOfMemoryError
-XX:-OmitStackTraceInFastThrow
-XX:ReservedCodeCacheSize=256M
-XX:PerMethodRecompilationCutoff=10000
-XX:PerBytecodeRecompilationCutoff=10000
-XX:+EnableDynamicAgentLoading
-Djdk.attach.allowAttachSelf=true
-Djdk.nio.maxCachedBufferSize=2000000
-Dfile.encoding=UTF-8
-Duser.timezone=UTC
""",
            "config.properties": role.lstrip()
            + f"""discovery.uri={discovery}
internal-communication.shared-secret=${{ENV:APS_TRINO_SHARED_SECRET_KEY}}
query.max-memory={total}
query.max-memory-per-node={per_node}
""",
            "log.properties": "io.trino=INFO\n",
            # Defaults kept on purpose: insert.non-transactional-insert.enabled=false (writes
            # go to a temp table, then one INSERT ... SELECT, so a failed load leaves nothing
            # behind) and write.batch-size=1000.
            "catalog/mes.properties": f"""
connector.name=postgresql
connection-url={pg}/{env["APS_MES_DB"]}
connection-user={env["APS_MES_READER_USER"]}
connection-password=${{ENV:APS_MES_READER_PASSWORD}}
""",
            "catalog/aps.properties": f"""
connector.name=postgresql
connection-url={pg}/{env["APS_APS_DB"]}
connection-user={env["APS_APS_LOADER_USER"]}
connection-password=${{ENV:APS_APS_LOADER_PASSWORD}}
""",
            # Hive tables over the Parquet lake; the file metastore lives in the bucket next
            # to the data, so the lake is self-contained. No S3 keys here: Trino's Bootstrap
            # logs every catalog property and redacts s3.aws-secret-key but not
            # s3.aws-access-key, so both come from the AWS SDK's environment variables
            # (see `launch`), as an IAM role's would in production.
            "catalog/lake.properties": f"""
connector.name=hive
hive.metastore=file
hive.metastore.catalog.dir=s3://{BUCKET}/_trino_metastore
fs.native-s3.enabled=true
s3.endpoint={env["APS_S3_ENDPOINT"]}
s3.region={env["APS_S3_REGION"]}
s3.path-style-access=true
hive.timestamp-precision=MICROSECONDS
hive.non-managed-table-writes-enabled=true
hive.allow-register-partition-procedure=true
""",
        }
        if node.coordinator:
            files["password-authenticator.properties"] = f"""
password-authenticator.name=file
file.password-file={node.etc / "password.db"}
"""
            # What the pipeline's user may do: infra/trino/rules.json (shared with compose).
            files["access-control.properties"] = f"""
access-control.name=file
security.config-file={INFRA_TRINO / "rules.json"}
security.refresh-period=10s
"""
        (node.etc / "catalog").mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (node.etc / name).write_text(text.lstrip())

    def launch(self, node: TrinoNode, workers: int) -> None:
        node.dir.mkdir(parents=True, exist_ok=True)
        node.dir.chmod(0o700)
        node.data.mkdir(exist_ok=True)
        self.configure(node, workers)
        # A stale pid file (pid() said it is not Trino) would make the launcher refuse.
        node.pid_file.unlink(missing_ok=True)
        node.port_file.write_text(f"{node.wanted_port}\n")
        java = self.java_home()
        env = base_env()
        env["JAVA_HOME"] = str(java)
        env["PATH"] = f"{java / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
        # Only the secrets Trino uses (${ENV:...} and the AWS SDK's credential chain): the
        # catalogs' database passwords, the nodes' shared secret, and the keys of the
        # read-only MinIO user (never MinIO's root keys).
        secrets_env = self.stack.env
        env.update({k: secrets_env[k] for k in TRINO_SECRETS})
        env["AWS_ACCESS_KEY_ID"] = secrets_env["APS_TRINO_S3_ACCESS_KEY"]
        env["AWS_SECRET_ACCESS_KEY"] = secrets_env["APS_TRINO_S3_SECRET_KEY"]
        run(
            [
                str(self.install_dir / "bin/launcher"), "start",
                f"--etc-dir={node.etc}",
                f"--data-dir={node.data}",
                f"--pid-file={node.pid_file}",
                f"--launcher-log-file={node.dir / 'launcher.log'}",
                f"--server-log-file={node.log}",
            ],
            f"trino launcher start ({node.name})",
            env=env,
            cwd=node.dir,
        )  # fmt: skip

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        self.coordinator.etc.mkdir(parents=True, exist_ok=True)
        self.secure_files()
        self.scale(restart_coordinator=True)

    def scale(self, restart_coordinator: bool = False) -> None:
        """Brings the cluster to APS_STACK_TRINO_WORKERS workers: starts the missing ones,
        stops the extra ones, restarts the coordinator when its scheduling changes (with or
        without workers), then waits until the coordinator sees every worker active."""
        count = self.wanted_workers()
        config = self.coordinator.etc / "config.properties"
        include = "node-scheduler.include-coordinator=" + ("false" if count else "true")
        if self.pid() and not (config.exists() and include in config.read_text()):
            say(f"trino: restarting the coordinator for {count} workers")
            self.stop_node(self.coordinator)
            restart_coordinator = True
        wanted = self.workers(count)
        for node in self.running_workers():
            if node.index > count:
                pid = node.pid()
                self.stop_node(node)
                say(f"trino: {node.name} stopped (pid {pid}): {TRINO_WORKERS_VAR}={count}")
        started = []
        if restart_coordinator or not self.pid():
            self.secure_files()
            self.launch(self.coordinator, count)
            started.append(self.coordinator)
        for node in wanted:
            if not node.pid():
                self.launch(node, count)
                started.append(node)
        for node in started:
            check = self.ready if node.coordinator else node.ready
            if not wait_until(check, 300, partial(alive, node.pid_file)):
                why = "not ready after 300s" if alive(node.pid_file) else "exited while starting"
                raise StackError(
                    f"trino: {node.name} {why}; tail of {node.log}:\n{log_tail(node.log)}"
                )
            if not node.coordinator:
                say(f"trino: {node.name} started (pid {node.pid()}) on {HOST}:{node.http_port()}")
        expected = {n.node_id for n in wanted}
        if not wait_until(lambda: self.active_workers() == expected, 180, lambda: True):
            raise StackError(
                f"trino: the coordinator sees workers {sorted(self.active_workers())}, "
                f"not {sorted(expected)}, after 180s; tail of {self.coordinator.log}:\n"
                f"{log_tail(self.coordinator.log)}"
            )

    def active_workers(self) -> set[str]:
        """The node ids of the workers the coordinator sees active."""
        try:
            rows = self.query(
                "SELECT node_id FROM system.runtime.nodes "
                "WHERE NOT coordinator AND state = 'active'"
            )
        except Exception:
            return {"?"}  # not answering yet
        return {row[0] for row in rows}

    def query(self, sql: str) -> list[list[object]]:
        conn = trino_connect(self.stack.env, request_timeout=30)
        try:
            cur = conn.cursor()
            cur.execute(sql)
            return cur.fetchall()
        finally:
            conn.close()

    def ready(self) -> bool:
        ca = ssl.create_default_context(cafile=str(self.stack.home / "tls" / "ca.crt"))
        status, body = http_get(f"https://{HOST}:{self.stack.ports['trino']}/v1/info", ca)
        return status == 200 and json.loads(body).get("starting") is False

    def stop_node(self, node: TrinoNode) -> None:
        pid = node.pid()
        if pid:
            stop_pid(pid, f"{self.name} {node.name}", 60)  # SIGTERM: Trino shuts down
        node.pid_file.unlink(missing_ok=True)

    def stop_workers(self) -> None:
        for node in self.running_workers():
            pid = node.pid()
            self.stop_node(node)
            say(f"trino: {node.name} stopped (pid {pid})")

    def stop(self, pid: int) -> None:
        self.stop_workers()
        self.stop_node(self.coordinator)

    def probe(self) -> str:
        if not self.ready():
            raise StackError("/v1/info does not say starting=false")
        for catalog in ("aps", "lake"):  # the catalogs the pipeline's user may use
            self.query(f"SELECT 1 FROM {catalog}.information_schema.schemata LIMIT 1")
        workers = self.running_workers()
        active = self.active_workers()
        missing = [w.name for w in workers if w.node_id not in active]
        if missing:
            raise StackError(f"workers running but not active: {', '.join(missing)}")
        listed = ", ".join(f"{w.name} pid {w.pid()} on {HOST}:{w.http_port()}" for w in workers)
        return f"https + password; SELECT via aps, lake ok; {len(active)} worker(s) active" + (
            f" ({listed})" if listed else ""
        )

    def address(self) -> str:
        return f"{HOST}:{self.stack.ports['trino']} (https)"


Service = Postgres | Minio | Trino


# ---------------------------------------------------------------- commands


def services(stack: Stack, names: list[str]) -> list[Service]:
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        raise StackError(
            f"unknown service{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"valid services: {', '.join(SERVICES)}",
            code=2,
        )
    classes = {"postgres": Postgres, "minio": Minio, "trino": Trino}
    return [classes[n](stack) for n in SERVICES if not names or n in names]


def up(stack: Stack, selected: list[Service]) -> int:
    started = time.monotonic()
    if any(isinstance(svc, Trino) for svc in selected):
        Trino.wanted_workers()  # a bad APS_STACK_TRINO_WORKERS is refused first
    # Before anything is installed, written or started: every port we need must be ours.
    for svc in selected:
        for key in SERVICE_PORTS[svc.name]:
            port = stack.ports[key]
            if svc.pid():
                was = stack.recorded.get(key)
                if was and int(was) != port:
                    raise StackError(
                        f"{svc.name} is running on port {was}, not {port}; "
                        f"run `infra/stack down {svc.name}` first to move it"
                    )
                continue
            if not port_free(port):
                raise StackError(
                    f"{svc.name}: port {port} on {HOST} is in use by {port_owner(port)}, "
                    f"not by this stack ({stack.home}); stop it or set {PORT_VARS[key]}"
                )
        if isinstance(svc, Trino):
            svc.check_ports()
    for svc in selected:
        if not svc.pid():
            svc.install()
    with locked(stack):
        write_env(stack)
        for svc in selected:
            t0 = time.monotonic()
            pid = svc.pid()
            if pid:
                if isinstance(svc, Postgres | Minio):
                    svc.setup()  # idempotent: heals a half-finished earlier `up`
                else:
                    svc.scale()  # to APS_STACK_TRINO_WORKERS workers
                    if svc.pid() != pid:  # the coordinator's scheduling changed
                        say(f"{svc.name}: restarted (pid {svc.pid()}) on {svc.address()}")
                        continue
                say(f"{svc.name}: already running (pid {pid}) on {svc.address()}")
                continue
            svc.start()
            pid = svc.pid()
            say(
                f"{svc.name}: started (pid {pid}) on {svc.address()} [{time.monotonic() - t0:.1f}s]"
            )
    say(f"stack up [{time.monotonic() - started:.1f}s]; settings in {stack.env_file}")
    return 0


def down(stack: Stack, selected: list[Service]) -> int:
    with locked(stack):
        for svc in reversed(selected):
            if isinstance(svc, Trino):
                svc.stop_workers()  # also when the coordinator is gone already
            pid = svc.pid()
            if not pid:
                say(f"{svc.name}: not running")
                continue
            svc.stop(pid)
            say(f"{svc.name}: stopped (pid {pid})")
    return 0


def status(stack: Stack, selected: list[Service]) -> int:
    failed = 0
    for svc in selected:
        pid = svc.pid()
        if not pid:
            say(f"{svc.name:<9} stopped")
            failed += 1
            continue
        try:
            detail = svc.probe()
            say(f"{svc.name:<9} healthy    pid {pid}  {svc.address()}  {detail}")
        except Exception as e:  # any probe failure is reported, not raised
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            say(f"{svc.name:<9} unhealthy  pid {pid}  {svc.address()}  {reason}")
            failed += 1
    return 1 if failed else 0


USAGE = f"usage: infra/stack up|down|status [{'|'.join(SERVICES)} ...]"


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("up", "down", "status") or "-h" in argv or "--help" in argv:
        print(USAGE, file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        stack = load_stack()
        selected = services(stack, argv[1:])
        command = {"up": up, "down": down, "status": status}[argv[0]]
        return command(stack, selected)
    except StackError as e:
        print(f"error: {redact(str(e))}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # unexpected: still no traceback that could carry a secret
        print(f"error: {type(e).__name__}: {redact(str(e))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
