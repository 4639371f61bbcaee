"""`infra/docker/deploy up` refuses a settings file others may read (it holds every
password of the deployment) before it starts anything: no engine, no image, no container."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from aps_etl.env.stack import REPO_ROOT

DEPLOY = REPO_ROOT / "infra" / "docker" / "deploy"


def _up(env_file: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DEPLOY), "up"],
        env={
            **os.environ,
            "APS_COMPOSE_ENV_FILE": str(env_file),
            "APS_COMPOSE_PROJECT": "aps-etl-settings-test",
            "APS_COMPOSE_TLS_DIR": str(tmp_path / "tls"),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_settings_file_others_can_read_is_refused_by_name(tmp_path: Path, mode: int) -> None:
    env_file = tmp_path / "deploy.env"
    env_file.write_text("APS_MES_READER_PASSWORD=not-a-real-one\n")
    env_file.chmod(mode)
    done = _up(env_file, tmp_path)
    assert done.returncode == 1, done.stderr
    assert f"{env_file} is readable by others (mode {mode:o})" in done.stderr
    assert f"chmod 600 {env_file}" in done.stderr
    assert "not-a-real-one" not in done.stdout + done.stderr
    assert not (tmp_path / "tls").exists()  # nothing made, nothing started
