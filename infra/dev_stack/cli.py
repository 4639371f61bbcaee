"""The commands of infra/stack: `up`, `down` and `status` over the selected services, and
`render`, which writes (or with --check compares) the compose deployment's files that
config.py generates."""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor

from . import REPO
from .common import (
    HOST,
    PORT_VARS,
    SERVICE_PORTS,
    SERVICES,
    StackError,
    port_free,
    port_owner,
    redact,
    say,
)
from .config import compose_files
from .mariadb import MariaDB
from .minio import Minio
from .postgres import Postgres
from .state import Stack, load_stack, locked, write_env
from .trino import Trino

Service = Postgres | MariaDB | Minio | Trino


def services(stack: Stack, names: list[str]) -> list[Service]:
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        raise StackError(
            f"unknown service{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"valid services: {', '.join(SERVICES)}",
            code=2,
        )
    classes: dict[str, type[Service]] = {
        "postgres": Postgres,
        "mariadb": MariaDB,
        "minio": Minio,
        "trino": Trino,
    }
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
    # apt-get's installs one after another (it allows one at a time); MinIO's Go build (CPU)
    # and Trino's Maven download (network) side by side: a cold `up` waits for the longer
    missing = [svc for svc in selected if not svc.pid()]
    for svc in missing:
        if not isinstance(svc, Minio | Trino):
            svc.install()
    with ThreadPoolExecutor(max_workers=2) as pool:
        for done in [pool.submit(s.install) for s in missing if isinstance(s, Minio | Trino)]:
            done.result()
    with locked(stack):
        write_env(stack)
        for svc in selected:
            t0 = time.monotonic()
            pid = svc.pid()
            if pid:
                if isinstance(svc, Postgres | MariaDB | Minio):
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


def render(check: bool) -> int:
    """Writes the compose files config.py renders; with --check, lists the stale ones."""
    stale = []
    for path, text in compose_files(REPO).items():
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path.relative_to(REPO))
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for path in stale:
        say(f"{'out of date' if check else 'written'}: {path}")
    return 1 if check and stale else 0


USAGE = f"usage: infra/stack up|down|status [{'|'.join(SERVICES)} ...] | render [--check]"


def main(argv: list[str]) -> int:
    if argv and argv[0] == "render" and set(argv[1:]) <= {"--check"}:
        return render("--check" in argv)
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
