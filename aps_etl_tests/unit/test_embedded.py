"""The embedded default's PostgreSQL: a server left behind by a deleted install is replaced."""

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from aps_etl.env.embedded import stop_orphaned_server


def _server_like(binary: Path, pgdata: Path) -> subprocess.Popen:
    """A process that looks like a postgres serving `pgdata`: a copy of Python named
    `postgres`, told `-D <pgdata>` (Python ignores the arguments after its code)."""
    shutil.copy(Path(sys.executable).resolve(), binary)
    process = subprocess.Popen(
        [str(binary), "-S", "-c", "import time; time.sleep(300)", "-D", str(pgdata)],
        # SIGINT's default action, as a real postgres handles it: a shell's background
        # job (CI under nohup or `&`) inherits SIGINT ignored, and so would Python
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    (pgdata / "postmaster.pid").write_text(f"{process.pid}\n{pgdata}\n")
    time.sleep(0.3)
    return process


def test_a_server_whose_binaries_are_gone_is_stopped(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    binary = tmp_path / "postgres"
    process = _server_like(binary, pgdata)
    binary.unlink()  # as when the checkout that ran it is deleted
    try:
        assert stop_orphaned_server(pgdata, wait_s=10)
        assert process.wait(timeout=10) != 0  # ended by the signal
    finally:
        process.kill()


def test_a_server_of_an_existing_install_or_another_folder_is_left_alone(
    tmp_path: Path,
) -> None:
    pgdata, other = tmp_path / "pgdata", tmp_path / "other"
    pgdata.mkdir()
    other.mkdir()
    binary = tmp_path / "postgres"
    process = _server_like(binary, pgdata)
    try:
        assert not stop_orphaned_server(pgdata, wait_s=1)  # its binary still exists
        binary.unlink()
        # a pid file naming a process that serves another folder (a reused pid)
        (other / "postmaster.pid").write_text(f"{process.pid}\n{other}\n")
        assert not stop_orphaned_server(other, wait_s=1)
        assert process.poll() is None
    finally:
        process.kill()
    assert not stop_orphaned_server(tmp_path / "no-server")
