"""`aps-etl backfill --policy` run in the background by the backfill tests, its output
collected line by line, its dagster dev and that one's daemon found among its children."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from aps_etl.env.stack import REPO_ROOT

BIN = Path(sys.executable).parent


class _Command:
    """`aps-etl backfill --policy` in the background, its output collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        import threading

        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [str(BIN / "aps-etl"), "backfill", "--env", "local", *args],
            env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.output:
            assert self.process.poll() is None or text in self.output, self.output[-3000:]
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.output[-3000:]}"
            time.sleep(0.2)

    def dev(self) -> int:
        """The `dagster dev` this command started."""
        import psutil

        (dev,) = [
            child
            for child in psutil.Process(self.process.pid).children()
            if "dagster dev" in " ".join(child.cmdline())
        ]
        return dev.pid

    def daemon(self) -> int:
        """The dagster-daemon that dagster dev started (its child)."""
        import psutil

        (daemon,) = [
            child
            for child in psutil.Process(self.dev()).children()
            if "dagster._daemon" in " ".join(child.cmdline())
        ]
        return daemon.pid

    def finish(self, timeout_s: float = 300) -> int:
        code = self.process.wait(timeout_s)
        self._reader.join(10)
        return code
