"""Erasure on a real broker: replays re-send the erasure's first outputs, an erased customer is never
contacted again unless a new event arrives, and the worker counts invalid profile fields.

Customers of these tests: ``er.start`` enrols (an email at once, a push an hour later),
``profile.erased`` erases, a redelivered ``er.start`` (same event_id) must be ignored, and a new
``er.start`` (new event_id) enrols from nothing.
"""

from __future__ import annotations

import asyncio
import collections
import shutil
import signal
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from orchestrator.core.timeutil import parse_ts_ms
from tests.integration.harness import BOOTSTRAP, HERE, WorkerProcess, dumps, event, produce, read_all, total

JOURNEYS = HERE / "journeys-erasure"
OUTPUTS = ("actions.email", "actions.push", "suppressions", "decisions")
PARTITIONS = 4


async def committed_to_the_end(w: WorkerProcess, *, timeout_s: float = 240.0) -> None:
    """Wait until the worker's group has committed every message of ``<prefix>.events``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=f"{w.prefix}-orchestrator",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(w.topic("events"), p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        while True:
            done = {tp: await consumer.committed(tp) for tp in tps}
            if all((done[tp] or 0) >= ends[tp] for tp in tps):
                return
            if w.exit_code() is not None:
                raise AssertionError(f"worker died:\n{w.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"committed {done}, end {ends} after {timeout_s}s:\n{w.log_tail()}")
            await asyncio.sleep(0.2)
    finally:
        await consumer.stop()


async def rewind(w: WorkerProcess) -> None:
    """Commit offset 0 for every partition of ``<prefix>.events``: the next worker replays them all."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=f"{w.prefix}-orchestrator",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(w.topic("events"), p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.commit({tp: 0 for tp in tps})
    finally:
        await consumer.stop()


async def produce_fast(topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    """Send in order without waiting for each acknowledgement (idempotent: the order per key holds)."""
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=True, linger_ms=20)
    await producer.start()
    try:
        sent = [await producer.send(topic, value=value, key=key) for key, value in messages]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def restart(w: WorkerProcess, tmp_path) -> WorkerProcess:
    """Another worker on the same topics and data folder."""
    w2 = WorkerProcess(tmp_path, prefix=w.prefix, journeys=JOURNEYS, partitions=PARTITIONS)
    w2.data_dir = w.data_dir
    w2.env = {**w.env, "ORCH_WEB_PORT": str(w2.port)}
    return w2.start()


def by_content(records: list[dict[str, Any]], id_key: str, *, ignore: str | None = None,
               only: str | None = None) -> dict[str, set[Any]]:
    """Output id -> every distinct content seen under it (without the field ``ignore``), or every
    distinct value of the field ``only``."""
    out: dict[str, set[Any]] = collections.defaultdict(set)
    for r in records:
        v = r["value"]
        if id_key in v:
            out[v[id_key]].add(v.get(only) if only else dumps({k: x for k, x in v.items() if k != ignore}))
    return out


async def test_a_replayed_erasure_resends_its_first_outputs_and_decides_nothing_again(tmp_path):
    """Offsets rewound after a clean run, data folder wiped: every input is replayed from the changelog's
    state. An erasure and the new event after it in the same batch re-send exactly their first outputs;
    the new event's journey survives the replayed erasure."""
    run = uuid.uuid4().hex[:8]
    w = WorkerProcess(tmp_path, journeys=JOURNEYS, partitions=PARTITIONS).start()     # creates the topics
    w.stop()
    customers = [f"r-{run}-{i}" for i in range(24)]
    messages = []
    for c in customers:      # produced before the worker runs: each customer's three events come in one batch
        for e in (event(c, "er.start", eid=f"{c}-start"), event(c, "profile.erased", eid=f"{c}-erase"),
                  event(c, "er.start", eid=f"{c}-new")):
            messages.append((c.encode(), dumps(e)))
    await produce(w.topic("events"), messages)
    w2 = restart(w, tmp_path)
    try:
        await committed_to_the_end(w2)
    finally:
        assert w2.stop() == 0
    topics = [w.topic(t) for t in OUTPUTS]
    first = await read_all(topics)
    first_values = {dumps(r["value"]) for r in first}

    shutil.rmtree(w.data_dir)
    await rewind(w)
    w3 = restart(w, tmp_path)
    try:
        await committed_to_the_end(w3)
        replayed = total(w3.metrics(), "orch_replayed_outputs_total")
        both = await read_all(topics)
        # Decides nothing again: every record of the replay is a byte-identical copy of a first one.
        assert {dumps(r["value"]) for r in both} == first_values
        assert len(both) - len(first) == replayed > 0
        sups = [r["value"] for r in both if r["topic"] == w.topic("suppressions")]
        resent = collections.Counter(s["customer_id"] for s in sups)
        assert set(resent) == set(customers) and set(resent.values()) <= {1, 2}
        print(f"\n{replayed:.0f} outputs re-sent; erasures re-sent for {sum(v == 2 for v in resent.values())} "
              f"of {len(customers)} customers")
        # The new event's journey is still there after the replayed erasure: its goal ends it.
        await produce(w.topic("events"), [(c.encode(), dumps(event(c, "er.goal"))) for c in customers])
        goals = await read_all([w.topic("decisions")], until=lambda rs: sum(
            r["value"]["outcome"] == "goal" for r in rs) >= len(customers))
        assert sorted(r["value"]["customer_id"] for r in goals if r["value"]["outcome"] == "goal") == sorted(customers)
    finally:
        w3.stop()


async def test_sigkill_during_erasures_never_recontacts_an_erased_customer(tmp_path):
    """Load with erasures, redelivered pre-erasure events and new events; SIGKILL mid-stream, restart
    on a wiped data folder. No action for an erased customer after its erasure unless a new event
    arrives; one content per suppression_id and action_id; nothing lost."""
    run = uuid.uuid4().hex[:8]
    n = 2000
    customers = [f"k-{run}-{i}" for i in range(n)]
    renewed = set(customers[::2])                # these send a genuinely new event after the erasure
    starts, erasures, redeliveries = [], [], []
    for c in customers:
        k = c.encode()
        starts.append((k, dumps(event(c, "er.start", eid=f"{c}-start"))))
        erasures.append((k, dumps(event(c, "profile.erased", eid=f"{c}-erase"))))
        if c in renewed:                         # right behind the erasure: often in the same batch
            erasures.append((k, dumps(event(c, "er.start", eid=f"{c}-new"))))
        redeliveries.append((k, dumps(event(c, "er.start", eid=f"{c}-start"))))   # same event_id
    w = WorkerProcess(tmp_path, journeys=JOURNEYS, partitions=PARTITIONS).start()     # creates the topics
    w.stop()
    # All in before the worker runs, so it works through a backlog with batches in flight when killed.
    await produce_fast(w.topic("events"), starts + erasures + redeliveries)
    w1 = restart(w, tmp_path)
    try:
        w1.wait_consumed(n + len(erasures) // 2, timeout_s=180)       # in the middle of the erasures
        assert w1.stop(signal.SIGKILL) == -signal.SIGKILL
    finally:
        w1.stop()
    shutil.rmtree(w.data_dir, ignore_errors=True)
    w2 = restart(w, tmp_path)
    try:
        await committed_to_the_end(w2)
        replayed = total(w2.metrics(), "orch_replayed_outputs_total")
        records = await read_all([w.topic(t) for t in OUTPUTS])
    finally:
        w2.stop()
    print(f"\n{len(records)} output records; {replayed:.0f} re-sent from the journal after the SIGKILL")

    # The same id never carries different content. A replay whose state change had reached the changelog
    # re-sends the first record byte for byte; one whose state change had not (the worker died after
    # the outputs went out, before the changelog record did) is decided again from the earlier state:
    # same id and content, a later decision time. Anything else is a wrong output.
    redecided = {}
    for id_key, clock in (("suppression_id", "ts"), ("action_id", "decided_at")):
        contents = by_content([r for r in records if r["topic"] != w.topic("decisions")], id_key, ignore=clock)
        conflicts = {k: v for k, v in contents.items() if len(v) > 1}
        assert not conflicts, f"{len(conflicts)} {id_key}s with different contents, e.g. {next(iter(conflicts.items()))}"
        times = by_content([r for r in records if r["topic"] != w.topic("decisions")], id_key, only=clock)
        redecided[id_key] = sum(len(v) > 1 for v in times.values())
    print(f"decided again (state change lost with the worker): {redecided}")
    # No contact after the erasure (its latest decision, if it was decided again) unless a new event came.
    erased_at: dict[str, int] = {}
    cancels: dict[str, list[str]] = {}
    for r in records:
        v = r["value"]
        if r["topic"] == w.topic("suppressions") and v["reason"] == "erased":
            erased_at[v["customer_id"]] = max(erased_at.get(v["customer_id"], 0), parse_ts_ms(v["ts"]))
            cancels[v["customer_id"]] = v["cancels"]
    assert set(erased_at) == set(customers), f"{len(set(customers) - set(erased_at))} erasures lost"
    actions: dict[str, list[dict]] = collections.defaultdict(list)
    for r in records:
        if r["topic"].startswith(w.topic("actions.")):
            actions[r["value"]["customer_id"]].append(r["value"])
    entered_after = collections.Counter(
        r["value"]["customer_id"] for r in records if r["topic"] == w.topic("decisions")
        and r["value"]["outcome"] == "entered" and parse_ts_ms(r["value"]["ts"]) > erased_at[r["value"]["customer_id"]])
    # When each send was decided, in event time (the decision's ts; the action's decided_at is the worker's clock).
    sent_at = {r["value"]["action_id"]: parse_ts_ms(r["value"]["ts"]) for r in records
               if r["topic"] == w.topic("decisions") and r["value"]["outcome"] == "sent"}
    for c in customers:
        by_trigger = collections.defaultdict(set)
        for a in actions[c]:
            by_trigger[a["trigger_event_id"]].add(a["action_id"])
            if a["trigger_event_id"] == f"{c}-start":
                assert sent_at[a["action_id"]] <= erased_at[c], f"{c} contacted again after its erasure"
        [before] = by_trigger.pop(f"{c}-start")                       # nothing lost, one action
        assert cancels[c] == [before]                                 # and the erasure withdrew it
        if c in renewed:
            [after] = by_trigger.pop(f"{c}-new")                      # a new event: enrolled again
            assert after != before
        else:
            assert entered_after[c] == 0, f"{c} entered again after its erasure"
        assert not by_trigger, f"{c} contacted after its erasure by {sorted(by_trigger)}"


async def test_an_invalid_profile_timezone_is_counted_by_field(worker):
    key = "orch_invalid_profile_fields_total{field=timezone}"
    before, consumed = worker.metrics()[key], worker.consumed()
    c = f"tz-{uuid.uuid4().hex[:8]}"
    await produce(worker.topic("events"), [
        (c.encode(), dumps(event(c, "profile.updated", props={"timezone": "Mars/Olympus_Mons"}))),
        (c.encode(), dumps(event(c, "profile.updated", props={"timezone": "Europe/Oslo"}))),
    ])
    worker.wait_consumed(consumed + 2)
    metrics = worker.metrics()
    assert metrics[key] == before + 1                      # the valid one is not counted
    assert not any(c in name or "Mars" in name for name in metrics)
