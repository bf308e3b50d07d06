"""Where a partition just assigned starts, on a real broker: at the offsets committed once the previous
owner is fenced, whatever the client looked up before that.

aiokafka looks up a partition's committed offset as soon as the partition is assigned, before the
worker's rebalance listener has fenced the previous owner (exactly-once) and without ``require_stable``:
while that owner's last transaction is being completed, the lookup answers the offsets before it. The
fault suite's exactly-once scale-down caught the result (inputs of that transaction dead-lettered twice)
a few times in ten runs. Here the stale lookup is made certain: the worker below has its client start
at offset 0 and return those records to the poll loop before the assignment goes on, while offset
``COMMITTED`` is what the group has committed.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from orchestrator.config import Settings
from orchestrator.core import load_policies
from orchestrator.kafkaio.topics import ensure_topics
from orchestrator.runtime.worker import Worker
from orchestrator.testing.net import free_port
from tests.integration.harness import BOOTSTRAP, read_committed
from tests.integration.test_lag import JOURNEYS, POLICIES

BAD = 20            # events that are not JSON: each one is dead-lettered, naming its offset
COMMITTED = 12      # the group's committed offset on partition 0 when the worker starts


class StaleLookup(Worker):
    """A worker whose client started partition 0 at offset 0 (what a lookup made before the previous
    owner's last transaction was visible leads to) and has returned records from there to the poll
    loop, which waits for the assignment to finish."""

    async def _assigned(self, partitions: set[int]) -> None:
        self.consumer.seek(TopicPartition(self.settings.topics.events, 0), 0)
        lookup = self.consumer.committed

        async def after_the_records(tp: TopicPartition) -> int | None:
            deadline = time.monotonic() + 30
            while not self._deciding and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert self._deciding, "the poll loop got no records while the assignment went on"
            return await lookup(tp)

        self.consumer.committed = after_the_records           # type: ignore[method-assign]
        try:
            await super()._assigned(partitions)
        finally:
            del self.consumer.committed


async def dead_lettered(topic: str, want: int, timeout_s: float) -> list[int]:
    """The input offsets named by the dead-letter records a committed reader sees."""
    return sorted(await read_committed([topic], want, timeout_s, lambda _, m: orjson.loads(m.value)["offset"]))


async def run_from_stale_lookup(tmp_path, guarantee: str) -> list[int]:
    prefix = f"it-{uuid.uuid4().hex[:10]}"
    settings = Settings(bootstrap=BOOTSTRAP, topic_prefix=prefix, partitions=1, data_dir=str(tmp_path / "data"),
                        journeys=str(JOURNEYS), policies=str(POLICIES), web_port=free_port(),
                        processing_guarantee=guarantee)
    await ensure_topics(settings, load_policies(str(POLICIES)).channels)
    events = TopicPartition(settings.topics.events, 0)
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
    await producer.start()
    try:
        for i in range(BAD):
            await producer.send_and_wait(events.topic, f"not json {i}".encode(), key=b"c1", partition=0)
    finally:
        await producer.stop()
    group = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=settings.app_id, enable_auto_commit=False)
    await group.start()
    try:
        group.assign([events])
        await group.commit({events: COMMITTED})
    finally:
        await group.stop()

    worker = StaleLookup(settings)
    running = asyncio.ensure_future(worker.run())
    try:
        return await dead_lettered(settings.topics.dlq, BAD - COMMITTED, timeout_s=60)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 60)


async def test_exactly_once_starts_at_the_offset_committed_after_fencing_not_at_the_clients_lookup(tmp_path):
    assert await run_from_stale_lookup(tmp_path, "exactly-once") == list(range(COMMITTED, BAD))


async def test_at_least_once_starts_at_the_committed_offset_too(tmp_path):
    assert await run_from_stale_lookup(tmp_path, "at-least-once") == list(range(COMMITTED, BAD))
