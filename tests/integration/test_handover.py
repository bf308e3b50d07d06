"""Graceful hand-overs replay nothing: a worker joining and one leaving cause no duplicate outputs.

A partition leaving a worker (another member joins, or the worker stops on SIGTERM) waits until
every batch it decided is acknowledged and committed, so the next owner starts exactly after it.
"""

from __future__ import annotations

import asyncio
import collections
import uuid
from pathlib import Path

from tests.integration.harness import WorkerProcess, dumps, event, produce, read_all

CUSTOMERS = 1200
CHUNKS = 4


async def test_join_and_graceful_leave_send_every_action_exactly_once(tmp_path: Path):
    run = uuid.uuid4().hex[:8]
    customers = [f"ho-{run}-{i}" for i in range(CUSTOMERS)]
    messages = [(c.encode(), dumps(event(c, "signup.completed", props={"plan": "pro"}))) for c in customers]
    chunk = CUSTOMERS // CHUNKS
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = WorkerProcess(tmp_path / "a").start()
    b = WorkerProcess(tmp_path / "b", prefix=a.prefix)
    b.env = {**a.env, "ORCH_WEB_PORT": str(b.port), "ORCH_DATA_DIR": str(b.data_dir)}
    try:
        await produce(a.topic("events"), messages[:chunk])
        a.wait_consumed(chunk)
        producing = asyncio.ensure_future(produce(a.topic("events"), messages[chunk:2 * chunk]))
        await asyncio.to_thread(b.start)           # joins while A is busy: partitions are split
        await producing
        await produce(a.topic("events"), messages[2 * chunk:3 * chunk])
        a.stop()                                   # SIGTERM: A hands everything to B
        await produce(a.topic("events"), messages[3 * chunk:])
        records = await read_all([a.topic("actions.email")],
                                 until=lambda rs: {r["key"] for r in rs} >= set(customers), timeout_s=120)
        b_consumed = b.consumed()
    finally:
        a.stop()
        b.stop()
    copies = collections.Counter(r["value"]["action_id"] for r in records)
    per_customer = collections.defaultdict(set)
    for r in records:
        per_customer[r["key"]].add(r["value"]["action_id"])
    assert set(per_customer) == set(customers)
    assert all(len(ids) == 1 for ids in per_customer.values())
    assert [aid for aid, n in copies.items() if n > 1] == [], "an action was sent twice"
    assert b_consumed > 0, "worker B consumed nothing: the hand-over was not exercised"
