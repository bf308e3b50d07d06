"""The compiled hot path: which modules the install compiles with mypyc, and whether this process
runs them compiled (docs/operations.md#the-compiled-build).

The install (``setup.py``) compiles the modules in :data:`MODULES` to C extension modules with mypyc
where mypyc and a C compiler are present, and writes a manifest beside them (``_compiled.json``:
each module with the SHA-256 of the source it was compiled from). Where there is no compiler, the
compile fails or ``ORCH_PURE_PYTHON=1`` is set at install, it installs them as plain Python.

At import (``orchestrator/__init__.py`` calls :func:`select`), the compiled modules run only if the
manifest names every module of :data:`MODULES` with the hash of its source as it is now. Otherwise
(no manifest, a source edited since the install, or ``ORCH_PURE_PYTHON=1`` in the environment) all
of them run from their ``.py`` sources: a finder placed first on ``sys.meta_path`` loads those
instead of the extension modules beside them. All or none, because compiled modules call each
other's functions directly, not through the import system. Both builds decide the same: the same
source, type-checked by mypy, compiled or interpreted.

Imports only the standard library: ``setup.py`` loads this file on its own, before the package is
installed.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

# The batch path's hot modules: the engine and what it calls per event, and the worker's per-event
# steps (validation, the batch's customer states, the duplicate window, the journal, the records out).
# Each must pass mypy as it is compiled (``mypyc`` refuses a module with a type error) and must not define the types msgspec
# decodes into (a Struct's metaclass is not a native class; a compiled NamedTuple keeps no field
# types for msgspec): events.py, state.py and runtime/journalcodec.py stay plain Python.
MODULES: tuple[str, ...] = (
    "orchestrator.core.activity",
    "orchestrator.core.catalog",
    "orchestrator.core.dedup",
    "orchestrator.core.engine",
    "orchestrator.core.gate",
    "orchestrator.core.ids",
    "orchestrator.core.journeys",
    "orchestrator.core.localtime",
    "orchestrator.core.namespaces",
    "orchestrator.core.expressions",
    "orchestrator.core.timeutil",
    "orchestrator.core.validation",
    "orchestrator.runtime.batch",
    "orchestrator.runtime.collector",
    "orchestrator.runtime.counters",
    "orchestrator.runtime.eventtime",
    "orchestrator.runtime.ingest",
    "orchestrator.runtime.journal",
    "orchestrator.runtime.transaction",
    "orchestrator.runtime.window",
)
MANIFEST = "_compiled.json"
PURE_ENV = "ORCH_PURE_PYTHON"
PACKAGE_DIR = Path(__file__).resolve().parent

# What this process runs: "compiled", or "python" with the reason (set by :func:`select`).
BUILD = "python"
REASON = "not selected yet"


def source_of(module: str, package_dir: Path = PACKAGE_DIR) -> Path:
    """The ``.py`` file of ``module`` (a dotted name under ``orchestrator``)."""
    return package_dir.joinpath(*module.split(".")[1:]).with_suffix(".py")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_for(package_dir: Path = PACKAGE_DIR) -> dict[str, Any]:
    """The manifest the install writes after a successful compile of :data:`MODULES`."""
    return {"compiler": "mypyc", "modules": {m: digest(source_of(m, package_dir)) for m in MODULES}}


def is_extension(path: Path) -> bool:
    """Whether ``path`` is a C extension module (``engine.cpython-311-x86_64-linux-gnu.so``...)."""
    return path.name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def pure_requested(environ: Any = os.environ) -> bool:
    """``ORCH_PURE_PYTHON`` set (and not ``0``): plain Python asked for, at install or at run time."""
    return environ.get(PURE_ENV, "") not in ("", "0")


def _compiled_present(package_dir: Path) -> bool:
    return any(is_extension(p) for m in MODULES for source in [source_of(m, package_dir)]
               for p in source.parent.glob(source.stem + ".*"))


def why_not_compiled(package_dir: Path = PACKAGE_DIR, environ: Any = os.environ) -> str | None:
    """``None`` if the compiled modules may run; otherwise why the sources run instead."""
    import json
    if pure_requested(environ):
        return f"{PURE_ENV} is set"
    path = package_dir / MANIFEST
    if not path.exists():
        if _compiled_present(package_dir):
            return f"compiled modules without {MANIFEST} (an install that did not finish)"
        return "not compiled at install (no mypyc or no C compiler, or ORCH_PURE_PYTHON=1 at install)"
    try:
        recorded = json.loads(path.read_bytes())["modules"]
    except (ValueError, KeyError, TypeError):
        return f"{MANIFEST} is unreadable"
    for module in MODULES:
        if recorded.get(module) != digest(source_of(module, package_dir)):
            return f"{module} changed since the install compiled it (reinstall: make venv)"
    return None


class SourceFinder(importlib.abc.MetaPathFinder):
    """Loads the modules of :data:`MODULES` from their ``.py`` sources, never the extension modules
    beside them."""

    def __init__(self, package_dir: Path = PACKAGE_DIR) -> None:
        self.package_dir = package_dir

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, source_of(fullname, self.package_dir))


def select() -> str:
    """Choose once, before any module of :data:`MODULES` is imported, what this process runs; returns
    :data:`BUILD`."""
    global BUILD, REASON
    if any(isinstance(f, SourceFinder) for f in sys.meta_path) or BUILD == "compiled":
        return BUILD
    reason = why_not_compiled()
    if reason is None:
        BUILD, REASON = "compiled", "mypyc"
    else:
        BUILD, REASON = "python", reason
        sys.meta_path.insert(0, SourceFinder())
    return BUILD


def describe() -> str:
    """One line for ``orchestrator --version`` and the worker's start log."""
    return "compiled (mypyc)" if BUILD == "compiled" else f"plain Python: {REASON}"
