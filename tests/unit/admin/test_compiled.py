"""The compiled build (orchestrator/compiled.py, setup.py): compiled modules run only when built from
the sources as they are, the plain-Python build is what runs otherwise, both decide the same, and an
install without a C compiler is the plain-Python build."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import orjson
import pytest

from orchestrator import compiled

ROOT = Path(__file__).resolve().parents[3]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != compiled.PURE_ENV}
    return {**env, **extra}


def _package(tmp_path: Path) -> Path:
    """A package folder holding a source for every compiled module."""
    package = tmp_path / "orchestrator"
    for module in compiled.MODULES:
        source = compiled.source_of(module, package)
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(f"# {module}\n")
    return package


def test_compiled_modules_run_only_with_a_manifest_of_their_sources_as_they_are(tmp_path):
    package = _package(tmp_path)
    assert "not compiled at install" in compiled.why_not_compiled(package, {})
    engine = compiled.source_of("orchestrator.core.engine", package)
    engine.with_name("engine" + EXTENSION_SUFFIXES[0]).write_bytes(b"")     # an install that stopped half-way
    assert "without _compiled.json" in compiled.why_not_compiled(package, {})
    (package / compiled.MANIFEST).write_text(orjson.dumps(compiled.manifest_for(package)).decode())
    assert compiled.why_not_compiled(package, {}) is None
    assert compiled.why_not_compiled(package, {compiled.PURE_ENV: "1"}) == "ORCH_PURE_PYTHON is set"
    assert compiled.why_not_compiled(package, {compiled.PURE_ENV: "0"}) is None
    engine.write_text("# edited after the install\n")
    assert compiled.why_not_compiled(package, {}) == (
        "orchestrator.core.engine changed since the install compiled it (reinstall: make venv)")
    (package / compiled.MANIFEST).write_text("{not json")
    assert compiled.why_not_compiled(package, {}) == "_compiled.json is unreadable"


def _imported(env: dict[str, str], cwd: Path) -> dict[str, str]:
    """What a new process imports, started in ``cwd`` (outside the repository: as the installed
    `orchestrator` command runs anywhere)."""
    code = ("import orjson, orchestrator.compiled as c, orchestrator.core.engine as e, orchestrator.runtime.batch as b;"
            "print(orjson.dumps({'build': c.BUILD, 'describe': c.describe(), 'engine': e.__file__,"
            " 'batch': b.__file__}).decode())")
    env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return orjson.loads(done.stdout)


def test_with_orch_pure_python_every_compiled_module_runs_from_its_source(tmp_path):
    seen = _imported(_env(ORCH_PURE_PYTHON="1"), tmp_path)
    assert seen["build"] == "python" and seen["describe"] == "plain Python: ORCH_PURE_PYTHON is set"
    assert seen["engine"].endswith("engine.py") and seen["batch"].endswith("batch.py")


def test_the_compiled_build_runs_its_extension_modules_from_any_folder(tmp_path):
    reason = compiled.why_not_compiled(environ={})
    if reason is not None:
        pytest.skip(f"this install is the plain-Python build: {reason}")
    seen = _imported(_env(), tmp_path)
    assert seen["build"] == "compiled" and seen["describe"] == "compiled (mypyc)"
    assert compiled.is_extension(Path(seen["engine"])) and compiled.is_extension(Path(seen["batch"]))


def test_both_builds_decide_the_same_on_the_benchmark_backlog():
    def digest(env: dict[str, str]) -> str:
        done = subprocess.run([sys.executable, "-m", "benchmarks.identical", "--events", "4000", "--json"], cwd=ROOT,
                              env=env, capture_output=True, text=True, check=True)
        result = orjson.loads(done.stdout)
        assert result["records"] > 1000
        return result["digest"]
    assert digest(_env()) == digest(_env(ORCH_PURE_PYTHON="1"))


def _copy_for_build(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(ROOT / "orchestrator", tree / "orchestrator",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", compiled.MANIFEST))
    return tree


def _built(tree: Path) -> list[str]:
    return sorted(p.name for p in tree.rglob("*") if compiled.is_extension(p) or p.name == compiled.MANIFEST)


def test_an_install_without_a_c_compiler_is_the_plain_python_build(tmp_path):
    pytest.importorskip("mypyc.build", reason="mypy is one of the test dependencies (pyproject.toml)")
    tree = _copy_for_build(tmp_path)
    done = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tree,
                          env=_env(CC="/nonexistent/cc", LDSHARED="/nonexistent/cc -shared"),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "the C build failed" in done.stderr and "installing the plain-Python build" in done.stderr
    assert _built(tree) == []                       # no extension module, no manifest: sources run


def test_orch_pure_python_at_install_builds_nothing(tmp_path):
    tree = _copy_for_build(tmp_path)
    done = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tree,
                          env=_env(ORCH_PURE_PYTHON="1"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ORCH_PURE_PYTHON is set; installing the plain-Python build" in done.stderr
    assert _built(tree) == []
