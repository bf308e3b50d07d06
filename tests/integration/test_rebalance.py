"""Timers move with their partitions: a second worker joins, the first leaves, every timer fires once."""

from __future__ import annotations

import collections
import uuid
from pathlib import Path

from tests.integration.harness import HERE, WorkerProcess, dumps, event, produce, read_all

CUSTOMERS = 400


async def test_timers_fire_once_after_a_rebalance_to_another_worker(tmp_path: Path):
    run = uuid.uuid4().hex[:8]
    a = WorkerProcess(tmp_path / "a", journeys=HERE / "journeys-kill")
    (tmp_path / "a").mkdir()
    a.start()
    b = None
    try:
        customers = [f"rb-{run}-{i}" for i in range(CUSTOMERS)]
        await produce(a.topic("events"), [(c.encode(), dumps(event(c, "kill.test", props={"n": i})))
                                           for i, c in enumerate(customers)])
        a.wait_consumed(CUSTOMERS)                 # every customer now waits 10 s on worker A
        (tmp_path / "b").mkdir()
        b = WorkerProcess(tmp_path / "b", prefix=a.prefix, journeys=HERE / "journeys-kill")
        b.env = {**a.env, "ORCH_WEB_PORT": str(b.port), "ORCH_DATA_DIR": str(b.data_dir)}
        b.start()                                  # joins the group: partitions are split
        a.stop()                                   # leaves: B takes everything, state from the changelog
        records = await read_all([a.topic("actions.ads")],
                                 until=lambda rs: {r["key"] for r in rs} >= set(customers), timeout_s=180)
        fired_by_b = b.metrics().get("orch_timers_fired_total{}", 0)
    finally:
        a.stop()
        if b is not None:
            b.stop()
    per_customer = collections.defaultdict(set)
    for r in records:
        per_customer[r["key"]].add(r["value"]["action_id"])
    assert set(per_customer) == set(customers)
    assert all(len(ids) == 1 for ids in per_customer.values())
    assert fired_by_b > 0, "worker B fired no timer: the rebalance was not exercised"
