from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.harness import BOOTSTRAP, WorkerProcess, broker_reachable


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def kafka() -> str:
    if not broker_reachable():
        pytest.fail(f"no Kafka broker at {BOOTSTRAP}: run `make test` (it starts one) or `make kafka-up` first",
                    pytrace=False)
    return BOOTSTRAP


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory):
    w = WorkerProcess(Path(tmp_path_factory.mktemp("worker"))).start()
    yield w
    w.stop()
