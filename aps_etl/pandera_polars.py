"""pandera's Polars API, imported as in an install without pandas.

pandera's package `__init__` imports pandas (and numpy) whenever pandas is installed, for
its pandas API, which this project does not use: ~0.4 s of every process that validates,
run workers included. The runtime image has no pandas (requirements-runtime.lock); the
dev venv has it for the benchmarks' pandas peer. pandera supports the polars-only install
(it registers its checks either way), so the import below hides pandas from pandera's
`__init__`, in this thread and only for that import. A process that already imported
pandas gets pandera's usual path; both validate the same (aps_etl_tests/test_validation.py).
"""

from __future__ import annotations

import importlib.abc
import sys
import threading
from importlib.machinery import ModuleSpec
from types import ModuleType


class _PandasAbsent(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self._thread = threading.get_ident()

    def find_spec(self, name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if name.partition(".")[0] == "pandas" and threading.get_ident() == self._thread:
            # the message pandera's __init__ recognises as "pandas is not installed"
            raise ModuleNotFoundError("No module named 'pandas'", name="pandas")
        return None


def _import() -> ModuleType:
    if "pandera.polars" in sys.modules or "pandas" in sys.modules:
        import pandera.polars

        return pandera.polars
    finder = _PandasAbsent()
    sys.meta_path.insert(0, finder)
    try:
        import pandera.polars
    finally:
        sys.meta_path.remove(finder)
    return pandera.polars


pa = _import()
