"""The duplicate window on a real broker: outside the customer state, restored from its own changelog
when the worker's data folder is lost, and read from states written before it moved out of them."""

from __future__ import annotations

import shutil
import struct
import time
import uuid

import msgspec
from aiokafka import AIOKafkaProducer

from orchestrator.core import dedup
from tests.integration.harness import BOOTSTRAP, WorkerProcess, dumps, event, produce, read_all, total

PARTITIONS = 4


def restarted(w: WorkerProcess, tmp_path) -> WorkerProcess:
    again = WorkerProcess(tmp_path, prefix=w.prefix, partitions=PARTITIONS)
    again.data_dir = w.data_dir
    again.env = {**w.env, "ORCH_WEB_PORT": str(again.port)}
    return again.start()


def duplicates(w: WorkerProcess) -> float:
    return total(w.metrics(), 'orch_events_in_total{result=duplicate}')


async def test_a_redelivered_event_is_ignored_after_the_data_folder_is_lost(tmp_path):
    c = f"d-{uuid.uuid4().hex[:8]}"
    w = WorkerProcess(tmp_path, partitions=PARTITIONS).start()
    try:
        signup = dumps(event(c, "signup.completed", eid=f"{c}-e1", props={"plan": "pro"}))
        await produce(w.topic("events"), [(c.encode(), signup)])
        await read_all([w.topic("actions.email")], until=lambda rs: any(r["key"] == c for r in rs))
    finally:
        w.stop()
    shutil.rmtree(w.data_dir)                         # the volume is gone: states and window restored
    w2 = restarted(w, tmp_path)
    try:
        await produce(w2.topic("events"), [(c.encode(), signup)])          # redelivered: same event_id
        deadline = time.monotonic() + 60
        while duplicates(w2) < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert duplicates(w2) == 1
        emails = await read_all([w2.topic("actions.email")])
        assert len([r for r in emails if r["key"] == c]) == 1          # no second welcome email
    finally:
        w2.stop()


class _StateOf20261206(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A customer state as the worker wrote it before the window moved out: hashes of event ids and
    the seconds they were seen, inside the state."""
    profile: dict = {}
    seen_ids: bytes = b""
    seen_at: bytes = b""


async def test_event_ids_kept_in_a_state_written_before_still_count_as_seen(tmp_path):
    c = f"d-{uuid.uuid4().hex[:8]}"
    w = WorkerProcess(tmp_path, partitions=PARTITIONS).start()                # creates the topics
    w.stop()
    shutil.rmtree(w.data_dir)
    # The changelog record such a worker wrote for the customer: 8-byte due (none) + its msgpack state.
    old = bytes(8) + msgspec.msgpack.encode(_StateOf20261206(
        profile={"plan": "pro"}, seen_ids=dedup.event_hash(f"{c}-e1"), seen_at=struct.pack("<I", int(time.time()))))
    from orchestrator.kafkaio.clients import partition_for
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
    await producer.start()
    try:
        await producer.send_and_wait(w.topic("internal.state-changelog"), old, key=b"c" + c.encode(),
                                     partition=partition_for(c.encode(), PARTITIONS))
    finally:
        await producer.stop()
    w2 = restarted(w, tmp_path)
    try:
        signup = dumps(event(c, "signup.completed", eid=f"{c}-e1", props={"plan": "pro"}))
        fresh = dumps(event(c, "signup.completed", eid=f"{c}-e2", props={"plan": "pro"}))
        await produce(w2.topic("events"), [(c.encode(), signup), (c.encode(), fresh)])
        emails = await read_all([w2.topic("actions.email")], until=lambda rs: any(r["key"] == c for r in rs))
        mine = [r["value"] for r in emails if r["key"] == c]
        assert [e["trigger_event_id"] for e in mine] == [f"{c}-e2"]        # e1 was seen before the upgrade
        assert duplicates(w2) == 1
    finally:
        w2.stop()
