"""The embedded default's PostgreSQL: a server left behind by a deleted install is replaced."""

import shutil
import subprocess
import time
from pathlib import Path

from aps_etl.embedded import stop_orphaned_server


def _process_with_deleted_binary(tmp_path: Path) -> subprocess.Popen:
    binary = tmp_path / "postgres"
    shutil.copy("/bin/sleep", binary)
    process = subprocess.Popen([str(binary), "300"])
    time.sleep(0.2)
    binary.unlink()  # as when the checkout that ran it is deleted
    return process


def test_a_server_whose_binaries_are_gone_is_stopped(tmp_path: Path) -> None:
    process = _process_with_deleted_binary(tmp_path)
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    (pgdata / "postmaster.pid").write_text(f"{process.pid}\n{pgdata}\n")
    try:
        assert stop_orphaned_server(pgdata, wait_s=10)
        assert process.wait(timeout=10) != 0  # ended by the signal
    finally:
        process.kill()


def test_a_live_server_of_an_existing_install_is_left_alone(tmp_path: Path) -> None:
    process = subprocess.Popen(["/bin/sleep", "300"])
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    (pgdata / "postmaster.pid").write_text(f"{process.pid}\n{pgdata}\n")
    try:
        assert not stop_orphaned_server(pgdata, wait_s=1)
        assert process.poll() is None
    finally:
        process.kill()
    assert not stop_orphaned_server(tmp_path / "no-server")
