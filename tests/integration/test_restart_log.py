"""A restarted worker that the consumer group drops logs one WARNING that says so, and no ERROR line.

After a restart, a worker restores its partitions in its first assignment, while aiokafka sends no
heartbeat; a restore longer than the session timeout (10 s) gets it dropped from the group, as a
stalled process does. Here the restarted worker is stopped (SIGSTOP) until the broker's group has
no member left, then continued: aiokafka then refuses its offset commit with UnknownMemberIdError
(one ERROR line per partition) and reports the expired heartbeat session, and the worker rejoins.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.integration.harness import BOOTSTRAP, WorkerProcess, dumps, event, produce, scrape, total

PARTITIONS = 4
BEFORE, DURING = 200, 200


class Group:
    """The broker's view of the worker's consumer group."""

    def __init__(self, group: str, topic: str) -> None:
        self.group, self.tps = group, [TopicPartition(topic, p) for p in range(PARTITIONS)]
        self.admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP)

    async def __aenter__(self) -> "Group":
        await self.admin.start()
        await self.consumer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def members(self) -> int:
        (response,) = await self.admin.describe_consumer_groups([self.group])
        _, _, _, _, _, members, *_ = response.groups[0]
        return len(members)

    async def behind(self) -> int:
        """Events of the topic the group has not committed yet."""
        committed = await self.admin.list_consumer_group_offsets(self.group, partitions=self.tps)
        ends = await self.consumer.end_offsets(self.tps)
        return sum(ends[tp] - (committed[tp].offset if tp in committed else 0) for tp in self.tps)


async def wait_for(condition, what: str, worker: WorkerProcess, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, f"{what} not within {timeout_s} s:\n{worker.log_tail()}"
        await asyncio.sleep(0.25)


def events(run: str, n: int, offset: int = 0) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(offset, offset + n):
        c = f"rs-{run}-{i % 50}"
        out.append((c.encode(), dumps(event(c, "cart.updated", props={"value": 10 + i % 90}))))
    return out


async def test_a_restarted_worker_dropped_by_its_group_logs_one_warning_and_no_error(tmp_path):
    run = uuid.uuid4().hex[:8]
    first = WorkerProcess(tmp_path, partitions=PARTITIONS).start()
    group, topic = f"{first.prefix}-orchestrator", first.topic("events")
    try:
        await produce(topic, events(run, BEFORE))
        first.wait_consumed(BEFORE)
    finally:
        first.stop()
    restarted = WorkerProcess(tmp_path, prefix=first.prefix, partitions=PARTITIONS)
    restarted.data_dir = first.data_dir
    restarted.env = {**first.env, "ORCH_WEB_PORT": str(restarted.port)}
    restarted.log_path = tmp_path / "restarted.log"
    restarted.start()
    try:
        async with Group(group, topic) as broker:
            async def assigned_everything() -> bool:
                return "partitions assigned: [0, 1, 2, 3]" in restarted.log_path.read_text()

            async def forgotten() -> bool:
                return await broker.members() == 0

            async def caught_up() -> bool:
                return await broker.members() == 1 and await broker.behind() == 0

            await wait_for(assigned_everything, "the first assignment", restarted)
            os.kill(restarted.pid, signal.SIGSTOP)
            try:
                await produce(topic, events(run, DURING, offset=BEFORE))
                await wait_for(forgotten, "the group dropping the stopped worker", restarted)
            finally:
                os.kill(restarted.pid, signal.SIGCONT)
            await wait_for(caught_up, "the rejoined worker committing every event", restarted)
        assert total(scrape(restarted.port) or {}, "orch_events_in_total") >= DURING
    finally:
        restarted.stop()
    lines = restarted.log_path.read_text().splitlines()
    assert not [line for line in lines if " ERROR " in line], "\n".join(lines)
    dropped = [line for line in lines if "dropped this worker" in line]
    assert len(dropped) == 1 and " WARNING " in dropped[0], "\n".join(lines)
    assert sum("partitions assigned" in line for line in lines) >= 2, "\n".join(lines)    # it rejoined
