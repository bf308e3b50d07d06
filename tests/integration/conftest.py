from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import BOOTSTRAP, WorkerProcess, broker_reachable


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


# The tests' topic prefixes: a short word and random hex (``it-3f9a1c2b7d``); not the benchmark's,
# the soak's or the chaos suite's, which may run beside the tests and delete their own.
TEST_PREFIX = re.compile(r"^(?!bench-|soak-|cx-)[a-z]+-[0-9a-f]{6,}(?:[.-]|$)")


async def _topics() -> set[str]:
    from aiokafka.admin import AIOKafkaAdminClient
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def _delete(names: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=120_000)
    await admin.start()
    try:
        for i in range(0, len(names), 200):
            await admin.delete_topics(names[i:i + 200], timeout_ms=120_000)
    finally:
        await admin.close()


@pytest.fixture(scope="session", autouse=True)
def kafka() -> Iterator[str]:
    if not broker_reachable():
        pytest.fail(f"no Kafka broker at {BOOTSTRAP}: run `make test` (it starts one) or `make kafka-up` first",
                    pytrace=False)
    before = asyncio.run(_topics())
    yield BOOTSTRAP
    # The local broker keeps its data between runs: the topics this session created (test prefixes
    # only) are deleted, or every `make test` would leave hundreds behind for the next run's clients
    # to fetch metadata of. Another cluster's topics are left alone.
    if BOOTSTRAP.split(",")[0].split(":")[0] in ("localhost", "127.0.0.1"):
        made = sorted(t for t in asyncio.run(_topics()) - before if TEST_PREFIX.match(t))
        if made:
            asyncio.run(_delete(made))


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory):
    w = WorkerProcess(Path(tmp_path_factory.mktemp("worker"))).start()
    yield w
    w.stop()
