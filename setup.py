"""The install's one build step beyond pyproject.toml: the hot path compiled with mypyc.

``pip install .`` (or ``-e .``, as ``make venv`` does) compiles the modules listed in
``orchestrator/compiled.py`` to C extension modules and writes ``orchestrator/_compiled.json`` (the
SHA-256 of each source compiled). Where mypyc cannot compile them (no C compiler, a failed build) or
``ORCH_PURE_PYTHON=1`` is set, the install goes on without them and says so: the package is the same
plain-Python package, only slower (docs/operations.md#the-compiled-build).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def _compiled_module():
    spec = importlib.util.spec_from_file_location("_orch_compiled", ROOT / "orchestrator" / "compiled.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


COMPILED = _compiled_module()


def _warn(text: str) -> None:
    print(f"orchestrator: {text}; installing the plain-Python build", file=sys.stderr)


def extensions() -> list:
    if COMPILED.pure_requested():
        _warn(f"{COMPILED.PURE_ENV} is set")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        _warn("mypyc is not available")
        return []
    sources = [str(COMPILED.source_of(m, ROOT / "orchestrator").relative_to(ROOT)) for m in COMPILED.MODULES]
    try:
        # The rest of the package and the libraries are read for their types, not compiled; a library
        # without types (aiokafka, rocksdict) is Any to the compiled code.
        return mypycify(["--ignore-missing-imports", "--follow-imports=silent", *sources], opt_level="3",
                        group_name="orchestrator.native")   # its shared library inside the package
    except (Exception, SystemExit) as exc:    # mypyc exits on a type error
        _warn(f"mypyc could not compile the hot path ({exc})")
        return []


class OptionalBuildExt(build_ext):
    """Builds the compiled modules if it can, then records what it compiled; a failure to compile
    leaves the plain-Python package (and no manifest, so nothing stale is ever run)."""

    def run(self) -> None:
        target = ROOT / "orchestrator" if self.inplace else Path(self.build_lib) / "orchestrator"
        (target / COMPILED.MANIFEST).unlink(missing_ok=True)
        if self.inplace:
            # An editable install builds beside the sources: the extension modules of an earlier
            # install go first, so a module no longer compiled cannot shadow its source.
            for path in [*ROOT.glob("orchestrator__mypyc.*"), *(ROOT / "orchestrator").rglob("*")]:
                if COMPILED.is_extension(path):
                    path.unlink()
        if not self.extensions:
            return
        try:
            super().run()
        except Exception as exc:            # no compiler, or it failed: CCompilerError, DistutilsExecError...
            _warn(f"the C build failed ({type(exc).__name__}: {exc})")
            return
        target.mkdir(parents=True, exist_ok=True)
        (target / COMPILED.MANIFEST).write_text(json.dumps(COMPILED.manifest_for(ROOT / "orchestrator"), indent=1))

    def get_outputs(self) -> list[str]:
        outputs = super().get_outputs()
        if self.extensions:
            outputs.append(str(Path(self.build_lib) / "orchestrator" / COMPILED.MANIFEST))
        return outputs


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
