"""The Trino server's installation, shared by every checkout: the trino-server tarball of
Maven Central unpacked (with only the plugins we use) into the cache, and the JDK to run it
with. infra/docker/build puts both into the compose image."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from .common import StackError, run, say

# Trino comes as the full trino-server tarball from Maven: the mirror we can reach does not
# serve io.trino:trino-postgresql:476 (only 356/368/449), so trino-server-core + plugin zips
# is not an option. Only lib/, bin/ and the plugins we use are kept in the cache;
# geospatial because the PostgreSQL connector needs the Geometry type it registers.
TRINO_VERSION = "476"
# password-authenticators: the file authenticator (password.db) of the HTTPS client port;
# mariadb: the MariaDB form of the source (catalog mes_mariadb), from the same tarball, no
# download of its own. A cache made before a plugin was added gets it from the tarball in
# ~/.m2 (see install).
TRINO_PLUGINS = ("hive", "postgresql", "mariadb", "geospatial", "password-authenticators")
TRINO_MIN_JAVA = 24


def is_lts(feature: int) -> bool:
    """Java's long-term-support releases: 21, 25, then every fourth (two years)."""
    return feature >= 21 and (feature - 21) % 4 == 0


def java_home(root: Path = Path("/usr/lib/jvm")) -> Path:
    """The JDK Trino runs on (here and in the compose image): the newest long-term-support
    JDK >= 24 under `root` (Trino 476 needs 24; 25 is the LTS that gets updates), else the
    newest JDK >= 24."""
    found: list[tuple[bool, int, Path]] = []
    for release in root.glob("*/release"):
        match = re.search(r'^JAVA_VERSION="(\d+)', release.read_text(), re.M)
        home = release.parent
        if match and int(match[1]) >= TRINO_MIN_JAVA and (home / "bin/java").exists():
            feature = int(match[1])
            found.append((is_lts(feature), feature, home))
    if not found:
        raise StackError(
            f"trino: Trino {TRINO_VERSION} needs a JDK >= {TRINO_MIN_JAVA} under {root} "
            "(e.g. Temurin 25); none found"
        )
    return max(found)[2]


def install(cache: Path) -> Path:
    """trino-server in the cache (once: Maven download, unpack, prune); its folder."""
    install_dir = cache / f"trino-server-{TRINO_VERSION}"
    java_home()
    if all((install_dir / "plugin" / p).is_dir() for p in TRINO_PLUGINS):
        return install_dir
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
    say(f"trino: unpacking into {install_dir}")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".trino-unpack-{os.getpid()}"
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
        if (install_dir / "lib").is_dir():
            # An older cache without a plugin we now use: add it, change nothing else
            # (another checkout's Trino may be running from this folder).
            for plugin in (root / "plugin").iterdir():
                if not (install_dir / "plugin" / plugin.name).exists():
                    plugin.rename(install_dir / "plugin" / plugin.name)
        else:
            shutil.rmtree(install_dir, ignore_errors=True)
            root.rename(install_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return install_dir
