"""Load a Python file of the repository that is not on the import path (a script, a role's filter plugin)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent


def load(relative_path: str, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / relative_path)
    assert spec is not None and spec.loader is not None, relative_path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
