"""Finding the user's App that ``--app`` names: ``module:attribute`` on the import path, or
``path/to/file.py:attribute``, a plain file anywhere. A file is how users of the one-file
executable, which has no site-packages, bring their handlers."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from actorq.errors import InvalidInput


def load_app(spec: str) -> Any:
    """``module:attribute`` or ``path/to/file.py:attribute`` (default attribute ``app``) -> the
    App object. Inside the executable a file may import the standard library, what the
    executable bundles and the files beside it."""
    target, _, attr = spec.partition(":")
    try:
        module = _import_file(target) if target.endswith(".py") else _import_module(target)
    except ImportError as exc:
        raise InvalidInput(f"cannot import {target!r}: {exc}") from exc
    try:
        return getattr(module, attr or "app")
    except AttributeError:
        raise InvalidInput(f"{target!r} has no attribute {attr or 'app'!r}") from None


def _import_module(name: str) -> ModuleType:
    sys.path.insert(0, ".")
    return importlib.import_module(name)


def _import_file(path: str) -> ModuleType:
    file = Path(path).resolve()
    spec = importlib.util.spec_from_file_location(file.stem, file)
    if not file.is_file() or spec is None or spec.loader is None:
        raise InvalidInput(f"--app {path!r}: no such Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[file.stem] = module  # as an import would: attrs and pickle look it up by name
    sys.path.insert(0, str(file.parent))  # its neighbours import as for `python file.py`
    spec.loader.exec_module(module)
    return module
