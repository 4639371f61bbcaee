"""A settings file written before a secret joined infra/.env.example (APS_UI_ADMIN_PASSWORD:
the UI front's password) gains it at the next `deploy env` or `deploy up`, random, the file
still private and every other value untouched; a secret present but empty is left for
compose to refuse by name."""

from __future__ import annotations

import subprocess
from pathlib import Path

from aps_etl.env.stack import REPO_ROOT

DEPLOY = REPO_ROOT / "infra" / "docker" / "deploy"


def _deploy_env(env_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DEPLOY), "env"],
        env={"PATH": "/usr/bin:/bin", "APS_COMPOSE_ENV_FILE": str(env_file)},
        capture_output=True,
        text=True,
        check=False,
    )


def _values(env_file: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in env_file.read_text().splitlines())


def test_a_secret_the_file_lacks_is_added_and_the_rest_kept(tmp_path: Path) -> None:
    env_file = tmp_path / "infra.env"
    assert _deploy_env(env_file).returncode == 0
    before = _values(env_file)
    assert len(before["APS_UI_ADMIN_PASSWORD"]) >= 16
    # as an infra/.env of before the UI's front: no such line; and one left empty
    kept = {k: v for k, v in before.items() if k != "APS_UI_ADMIN_PASSWORD"}
    kept["APS_TRINO_PASSWORD"] = ""
    env_file.write_text("".join(f"{k}={v}\n" for k, v in kept.items()))
    done = _deploy_env(env_file)
    assert done.returncode == 0, done.stderr
    assert "adding a random APS_UI_ADMIN_PASSWORD" in done.stderr
    after = _values(env_file)
    assert len(after["APS_UI_ADMIN_PASSWORD"]) >= 16
    assert after["APS_UI_ADMIN_PASSWORD"] != before["APS_UI_ADMIN_PASSWORD"]
    assert {k: v for k, v in after.items() if k != "APS_UI_ADMIN_PASSWORD"} == kept
    assert env_file.stat().st_mode & 0o077 == 0
    # nothing more to add: the file stays as it is
    text = env_file.read_text()
    assert _deploy_env(env_file).returncode == 0
    assert env_file.read_text() == text
