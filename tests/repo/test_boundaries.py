"""The dependency rule the README states, checked on the source of every module in orchestrator/.

- ``orchestrator.core`` is pure: it imports no Kafka client, no RocksDB, no asyncio, no web
  server, and nothing from the rest of the package except ``orchestrator.errors`` (so nothing of
  ``orchestrator.reports`` either).
- ``orchestrator.reports`` is as pure, and imports nothing of the package but the core and
  ``orchestrator.errors`` (no runtime, no tool).
- aiokafka is imported only in ``runtime/``, ``admin/``, ``adapters/``, ``localkafka/`` and
  ``testing/``.
- rocksdict is imported only in ``runtime/store.py`` and the adapters' own store.
- nothing installed imports the benchmarks or the tests.

Imports are read from the syntax tree (module level and inside functions), so a lazy import in a
function counts too. Each rule is also run against a small tree that breaks it, so a probe that
can never fail would be noticed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "orchestrator"

KAFKA = ("aiokafka", "confluent_kafka", "kafka", "faust", "mode")
ASYNC = ("asyncio", "uvloop", "aiohttp")
CORE_MAY_IMPORT_FROM_PACKAGE = ("orchestrator.core", "orchestrator.errors")
REPORTS_MAY_IMPORT_FROM_PACKAGE = ("orchestrator.core", "orchestrator.reports", "orchestrator.errors")
AIOKAFKA_ROOMS = ("kafkaio", "runtime", "admin", "adapters", "localkafka", "testing")
ROCKSDICT_FILES = ("runtime/store.py", "runtime/dedup.py", "adapters/dedup.py")


def imports_of(path: Path) -> set[str]:
    """Every module name ``path`` imports, absolute (relative imports resolved against ``orchestrator``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise AssertionError(f"{path}: relative import (use the absolute orchestrator.* name)")
            if node.module:
                names.add(node.module)
    return names


def top(name: str) -> str:
    return name.split(".")[0]


def violations(package: Path) -> list[str]:
    """Every import in ``package`` that breaks the rule, as ``file: imports X``."""
    found: list[str] = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        room = rel.split("/")[0] if "/" in rel else ""
        for name in sorted(imports_of(path)):
            where = f"orchestrator/{rel}: imports {name}"
            if room == "core":
                if top(name) in KAFKA + ASYNC + ("rocksdict",):
                    found.append(f"{where} (the core is pure)")
                elif top(name) == "orchestrator" and not name.startswith(CORE_MAY_IMPORT_FROM_PACKAGE):
                    found.append(f"{where} (the core imports only itself and orchestrator.errors)")
            if room == "reports":
                if top(name) in KAFKA + ASYNC + ("rocksdict",):
                    found.append(f"{where} (reports are pure)")
                elif top(name) == "orchestrator" and not name.startswith(REPORTS_MAY_IMPORT_FROM_PACKAGE):
                    found.append(f"{where} (reports import only the core, themselves and orchestrator.errors)")
            if top(name) == "aiokafka" and room not in AIOKAFKA_ROOMS:
                found.append(f"{where} (aiokafka only in {', '.join(AIOKAFKA_ROOMS)})")
            if top(name) == "rocksdict" and rel not in ROCKSDICT_FILES:
                found.append(f"{where} (rocksdict only in {', '.join(ROCKSDICT_FILES)})")
            if top(name) in ("benchmarks", "tests"):
                found.append(f"{where} (the installed package never imports {top(name)})")
    return found


def test_the_package_keeps_the_dependency_rule() -> None:
    assert violations(PACKAGE) == []


@pytest.mark.parametrize(("rel", "source", "expected"), [
    ("core/bad.py", "import asyncio\n", "the core is pure"),
    ("core/bad.py", "def f():\n    from aiokafka import AIOKafkaConsumer\n", "the core is pure"),
    ("core/bad.py", "from orchestrator.runtime.store import STATE\n", "imports only itself"),
    ("core/bad.py", "from orchestrator.reports import graph\n", "imports only itself"),
    ("reports/bad.py", "from orchestrator.runtime.store import STATE\n", "reports import only the core"),
    ("reports/bad.py", "import asyncio\n", "reports are pure"),
    ("simulate.py", "import aiokafka\n", "aiokafka only in"),
    ("runtime/worker.py", "import rocksdict\n", "rocksdict only in"),
    ("cli.py", "from benchmarks import load\n", "never imports benchmarks"),
])
def test_the_probe_notices_each_kind_of_break(tmp_path: Path, rel: str, source: str, expected: str) -> None:
    bad = tmp_path / "orchestrator" / rel
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text(source, encoding="utf-8")
    (tmp_path / "orchestrator" / "runtime").mkdir(exist_ok=True)
    (tmp_path / "orchestrator" / "runtime" / "store.py").write_text("import rocksdict\n", encoding="utf-8")
    found = violations(tmp_path / "orchestrator")
    assert found and any(expected in f for f in found), found
