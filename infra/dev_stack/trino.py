"""Trino from the trino-server tarball of Maven Central, on a JDK >= 24: a coordinator
serving clients over HTTPS with a password, plus APS_STACK_TRINO_WORKERS workers, each node
a launcher process with its own etc/ (rendered by config.trino_files), data and ports."""

from __future__ import annotations

import json
import os
import ssl
from functools import partial
from pathlib import Path

from aps_etl.env.stack import trino_connect

from . import trino_install
from .common import (
    HOST,
    INFRA_TRINO,
    PORT_VARS,
    StackError,
    alive,
    base_env,
    http_get,
    log_tail,
    our_pid,
    port_free,
    port_owner,
    run,
    say,
    stop_pid,
    wait_until,
    write_private,
)
from .config import TRINO_USER, TrinoNodeConfig, trino_files
from .state import Stack, server_certificate

# What Trino's processes get: its catalogs' database passwords and the key its nodes sign
# their internal requests with (the S3 keys go in as AWS_* variables, see Trino.launch).
TRINO_SECRETS = (
    "APS_MES_READER_PASSWORD",
    "APS_APS_STAGE_WRITER_PASSWORD",
    "APS_MARIADB_READER_PASSWORD",
    "APS_TRINO_SHARED_SECRET_KEY",
)
TRINO_WORKERS_VAR = "APS_STACK_TRINO_WORKERS"
TRINO_MAX_WORKERS = 8


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
        self.install_dir = stack.cache / f"trino-server-{trino_install.TRINO_VERSION}"
        self.coordinator = TrinoNode(self, 0)

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
        return trino_install.java_home()

    def install(self) -> None:
        trino_install.install(self.stack.cache)

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
        """Writes the node's etc/ from config.trino_files, for this stack's ports and paths."""
        (node.etc / "catalog").mkdir(parents=True, exist_ok=True)
        for name, text in self.rendered(node, workers).items():
            (node.etc / name).write_text(text)

    def catalogs_changed(self, workers: int) -> bool:
        """Whether the running coordinator's catalogs differ from what config.py renders now
        (a catalog added, a database port moved): Trino reads them only when it starts."""
        node = self.coordinator
        wanted = {n: t for n, t in self.rendered(node, workers).items() if n.startswith("catalog/")}
        present = {f"catalog/{p.name}": p.read_text() for p in node.etc.glob("catalog/*")}
        return wanted != present

    def rendered(self, node: TrinoNode, workers: int) -> dict[str, str]:
        """The node's etc/ files, by path, for this stack's ports and paths."""
        p, env = self.stack.ports, self.stack.env
        # Memory: coordinator + 2 workers (2 + 4 + 4 GB heap) fit beside PostgreSQL
        # (shared_buffers 1 GB) and MinIO on a 24 GB machine. Alone, the coordinator also
        # runs the queries and gets the single node's 6 GB. query.max-memory-per-node plus
        # Trino's heap headroom (30% of -Xmx) must stay below -Xmx.
        if node.coordinator:
            heap, per_node = ("2G", "1GB") if workers else ("6G", "3GB")
        else:
            heap, per_node = "4G", "2GB"
        files = trino_files(
            TrinoNodeConfig(
                environment="aps_dev",
                node_id=node.node_id,
                coordinator=node.coordinator,
                workers=workers,
                http_port=node.wanted_port,
                https_port=p["trino"],
                keystore=str(self.keystore),
                discovery_uri=f"http://{HOST}:{self.coordinator.http_port()}",
                heap=heap,
                max_memory=f"{max(3, 2 * workers)}GB",
                max_memory_per_node=per_node,
                data_dir=str(node.data),
                bind_ip=HOST,
                # No TLS verification towards PostgreSQL here (the driver's sslmode=prefer).
                postgres_url=f"jdbc:postgresql://{HOST}:{p['pg']}",
                postgres_options="",
                mes_reader_user=env["APS_MES_READER_USER"],
                aps_stage_writer_user=env["APS_APS_STAGE_WRITER_USER"],
                aps_write_batch_size=None,  # Trino's default, 1000
                # MariaDB Connector/J 3: TLS, the certificate checked against the stack's CA
                # and for the host name (127.0.0.1 is in its subjectAltName).
                mariadb_url=f"jdbc:mariadb://{HOST}:{p['mariadb']}"
                f"?sslMode=verify-full&serverSslCert={env['APS_MARIADB_SSLROOTCERT']}",
                mariadb_reader_user=env["APS_MARIADB_READER_USER"],
                s3_endpoint=env["APS_S3_ENDPOINT"],
                s3_region=env["APS_S3_REGION"],
                password_file=str(node.etc / "password.db"),
                rules_file=str(INFRA_TRINO / "rules.json"),
                header="",
            )
        )
        return files

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
        if self.pid() and self.catalogs_changed(count):
            say("trino: restarting the cluster for its changed catalogs")
            self.stop_workers()
            self.stop_node(self.coordinator)
            restart_coordinator = True
        elif self.pid() and not (config.exists() and include in config.read_text()):
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
        return {str(row[0]) for row in rows}

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
