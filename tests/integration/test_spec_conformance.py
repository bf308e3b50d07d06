"""SPEC §1-§3 on the wire, checked as an outside reviewer would: a real worker on the real broker,
events produced with plain aiokafka, every output read back with its key and partition.

One worker for the module (``worker`` in conftest: the journeys and policies of tests/integration).
"""

from __future__ import annotations

import re
import time
import uuid

import orjson
from aiokafka import AIOKafkaProducer

from orchestrator.core.timeutil import format_ts, parse_ts_ms
from orchestrator.kafkaio.clients import partition_for
from tests.integration.harness import BOOTSTRAP, dumps, event, produce, read_all

PARTITIONS = 4                   # the harness's ORCH_PARTITIONS
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
DECISION_KEYS = {"customer_id", "journey", "journey_version", "node", "channel", "outcome", "detail", "ts"}


def cid() -> str:
    return f"c-{uuid.uuid4().hex[:10]}"


def of(records, customer):
    return [r for r in records if r["value"].get("customer_id") == customer]


async def test_outputs_are_keyed_by_customer_id_on_its_partition_whatever_the_event_key(worker):
    """§1: actions, decisions and suppressions are keyed by customer_id, whatever key (here none)
    the producer used; §3: the action after a wait names the event that enrolled (SPEC's example:
    `email_reminder`, after `wait_1h`, carries `trigger_event_id: e-9f1c`)."""
    customer = cid()
    cart = event(customer, "cart.updated", props={"value": 80.5, "category": "shoes"})
    await produce(worker.topic("events"), [(None, dumps(cart))])
    emails = await read_all([worker.topic("actions.email")], until=lambda rs: len(of(rs, customer)) >= 1)
    [email] = of(emails, customer)
    await produce(worker.topic("events"), [(b"not-the-customer", dumps(event(customer, "order.completed")))])

    home = partition_for(customer.encode(), PARTITIONS)
    assert (email["key"], email["partition"]) == (customer, home)
    a = email["value"]
    assert (a["node"], a["template"], a["params"]) == ("email_reminder", "cart-reminder-1", {"cart_value": 80.5})
    assert a["trigger_event_id"] == cart["event_id"]           # not a timer's own id
    assert a["event_ts"] == format_ts(cart["ts"])
    assert TS.match(a["decided_at"]) and parse_ts_ms(a["decided_at"]) >= cart["ts"] + 2000   # after the 2 s wait

    sups = await read_all([worker.topic("suppressions")], until=lambda rs: len(of(rs, customer)) >= 1)
    [sup] = of(sups, customer)
    assert (sup["key"], sup["partition"]) == (customer, home)
    s = sup["value"]
    assert (s["reason"], s["journey"], s["channels"]) == ("goal", "it-cart", ["ads", "web", "sms"])
    assert s["cancels"][0] == a["action_id"]     # (and the 4 s timeout's push, on a slow machine)
    assert s["suppression_id"].startswith("s-") and TS.match(s["ts"])

    decisions = await read_all([worker.topic("decisions")],
                               until=lambda rs: any(r["value"]["outcome"] == "goal" for r in of(rs, customer)))
    mine = of(decisions, customer)
    assert {(r["key"], r["partition"]) for r in mine} == {(customer, home)}
    outcomes = [r["value"]["outcome"] for r in mine]
    assert outcomes[:2] == ["entered", "sent"] and outcomes[-1] == "goal" and set(outcomes[2:-1]) <= {"sent"}
    assert [r["value"]["action_id"] for r in mine if r["value"]["outcome"] == "sent"] == s["cancels"]
    for r in mine:
        v = r["value"]
        assert set(v) == DECISION_KEYS | ({"action_id"} if v["outcome"] == "sent" else set())
        assert TS.match(v["ts"]) and v["journey"] == "it-cart" and v["journey_version"] == 1
    assert mine[1]["value"]["action_id"] == a["action_id"] and mine[1]["value"]["channel"] == "email"


async def test_dead_letters_carry_the_original_key_topic_partition_offset_and_text(worker):
    """§3: DeadLetter `{reason, detail, topic, partition, offset, raw, ts}`, keyed by the original
    key, for each rule of §2 a producer can break with well-formed JSON."""
    run = uuid.uuid4().hex[:8]
    now = int(time.time() * 1000)
    c = cid()
    bad = {
        "future_timestamp": {**event(c, "page.viewed"), "ts": now + 10 * 60_000},
        "invalid_feedback": event(c, "message.opened", props={"channel": "email"}),       # no action_id
        "invalid_schema": {**event(c, "page.viewed"), "ts": now // 1000},                 # seconds, not ms
    }
    sent: dict[str, tuple[str, int, int, bytes]] = {}
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
    await producer.start()
    try:
        for i, (reason, body) in enumerate(bad.items()):
            key, raw = f"{run}-{reason}", orjson.dumps(body)
            md = await producer.send_and_wait(worker.topic("events"), raw, key=key.encode(), partition=i % PARTITIONS)
            sent[reason] = (key, md.partition, md.offset, raw)
    finally:
        await producer.stop()

    keys = {k for k, *_ in sent.values()}
    dlq = await read_all([worker.topic("dlq")], until=lambda rs: {r["key"] for r in rs} >= keys)
    by_key = {r["key"]: r["value"] for r in dlq if r["key"] in keys}
    for reason, (key, partition, offset, raw) in sent.items():
        d = by_key[key]
        assert set(d) == {"reason", "detail", "topic", "partition", "offset", "raw", "ts"}
        assert d["reason"] == reason, d
        assert (d["topic"], d["partition"], d["offset"]) == (worker.topic("events"), partition, offset)
        assert d["raw"] == raw.decode()
        assert d["detail"] and TS.match(d["ts"]) and abs(parse_ts_ms(d["ts"]) - now) < 10 * 60_000
    assert "looks like seconds" in by_key[sent["invalid_schema"][0]]["detail"]
    assert "action_id" in by_key[sent["invalid_feedback"][0]]["detail"]
