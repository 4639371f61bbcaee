"""infra/dev_stack/config.py is the one source of Trino's and PostgreSQL's configuration:
the compose deployment's checked-in files are exactly what it renders, and hold no secret."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from aps_etl.env.stack import REPO_ROOT as REPO

if str(REPO / "infra") not in sys.path:
    sys.path.insert(0, str(REPO / "infra"))

from dev_stack import config  # noqa: E402


def _properties(text: str) -> dict[str, str]:
    pairs = (line.partition("=") for line in text.splitlines())
    return {k: v for k, _, v in pairs if k.strip() and not k.startswith(("#", "-"))}


def test_the_compose_files_are_what_config_renders() -> None:
    stale = [
        str(path.relative_to(REPO))
        for path, text in config.compose_files(REPO).items()
        if not path.exists() or path.read_bytes() != text.encode()
    ]
    assert not stale, f"out of date, run `infra/stack render`: {stale}"
    # and nothing else lies in the folder compose mounts as Trino's etc/
    trino = REPO / "infra" / "docker" / "trino"
    rendered = {p for p in config.compose_files(REPO) if p.is_relative_to(trino)}
    assert {p for p in trino.rglob("*") if p.is_file()} == rendered


def test_render_check_passes_on_the_checked_in_files() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dev_stack", "render", "--check"],
        env={"PYTHONPATH": str(REPO / "infra"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_secret_is_rendered() -> None:
    for path, text in config.compose_files(REPO).items():
        if path.suffix != ".properties":
            continue
        for key, value in _properties(text).items():
            if re.search(r"password(?!-file|-authenticator)|secret|aws", key, re.I):
                assert value.startswith("${ENV:"), f"{path}: {key} is not a placeholder"
    script = config.postgres_init_script()
    assert re.findall(r"PASSWORD \S+", script) == [
        f"PASSWORD :'{role.name}_pw';" for role in config.ROLES
    ]
    for role in config.ROLES:
        assert f"\\getenv {role.name}_pw {role.password_var}\n" in script


def test_both_deployments_render_the_same_trino_settings() -> None:
    """Only the settings that name a place (hosts, ports, paths) or a sizing differ."""
    dev = config.TrinoNodeConfig(
        **{
            **config.COMPOSE_TRINO.__dict__,
            "environment": "aps_dev",
            "data_dir": "/stack/trino/data",
            "bind_ip": "127.0.0.1",
            "aps_write_batch_size": None,
            "header": "",
        }
    )
    dev_files, compose_files = config.trino_files(dev), config.trino_files(config.COMPOSE_TRINO)
    assert dev_files.keys() == compose_files.keys()
    target_specific = {
        "node.environment",
        "node.data-dir",
        "node.bind-ip",
        "node.internal-address",
        "write.batch-size",
    }
    for name in dev_files:
        a, b = _properties(dev_files[name]), _properties(compose_files[name])
        assert {k: v for k, v in a.items() if k not in target_specific} == {
            k: v for k, v in b.items() if k not in target_specific
        }, name


def test_the_postgres_statements_render_for_each_target() -> None:
    for database, statements in config.postgres_setup():
        for statement in statements:
            text = statement.query if isinstance(statement, config.Generated) else statement
            dev = config.render_statement(text, compose=False)
            compose = config.render_statement(text, compose=True)
            assert "{" not in dev and ":'" not in dev and ':"' not in dev, (database, dev)
            assert "%(" not in compose and "{" not in compose, (database, compose)


def test_trino_runs_on_the_newest_lts_jdk(tmp_path) -> None:
    """Not the oldest JDK that starts Trino: the newest long-term-support one (security
    updates), a newer short-term one only when no LTS >= 24 is there."""
    from dev_stack.trino_install import StackError, java_home

    def jdk(name: str, version: str) -> None:
        home = tmp_path / name
        (home / "bin").mkdir(parents=True)
        (home / "bin" / "java").write_text("")
        (home / "release").write_text(f'JAVA_VERSION="{version}"\n')

    with pytest.raises(StackError, match="needs a JDK >= 24"):
        java_home(tmp_path)
    jdk("openjdk-17", "17.0.12")
    jdk("temurin-24", "24.0.2")
    assert java_home(tmp_path).name == "temurin-24"  # the only one Trino 476 starts on
    jdk("temurin-26", "26.0.1")
    jdk("temurin-25", "25.0.1")
    assert java_home(tmp_path).name == "temurin-25"  # LTS over a newer short-term release
    jdk("temurin-29", "29")
    assert java_home(tmp_path).name == "temurin-29"
