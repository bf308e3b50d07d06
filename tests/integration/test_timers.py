"""Waits and wait_for with timeouts, through a real worker and real Kafka (second-scale waits)."""

from __future__ import annotations

import uuid

from orchestrator.core.timeutil import parse_ts_ms
from tests.integration.harness import dumps, event, produce, read_all


def cid() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def of(records, customer):
    return [r for r in records if r["value"].get("customer_id") == customer]


async def test_no_open_means_push_at_the_timeout(worker):
    customer = cid()
    cart = event(customer, "cart.updated", props={"value": 80.5})
    await produce(worker.topic("events"), [(customer.encode(), dumps(cart))])
    [email] = of(await read_all([worker.topic("actions.email")], until=lambda rs: len(of(rs, customer)) >= 1),
                 customer)
    assert email["value"]["params"] == {"cart_value": 80.5}
    [push] = of(await read_all([worker.topic("actions.push")], until=lambda rs: len(of(rs, customer)) >= 1),
                customer)
    decisions = await read_all([worker.topic("decisions")],
                               until=lambda rs: any(r["value"]["outcome"] == "exited" for r in of(rs, customer)))
    mine = [r["value"] for r in of(decisions, customer)]
    assert [d["outcome"] for d in mine] == ["entered", "sent", "sent", "exited"]
    # Event time: the email is decided exactly 2 s after the cart's ts, the push exactly 4 s after the email
    # (the timeout), however soon the worker got to them; and neither before its time on the wall clock.
    sent = [parse_ts_ms(d["ts"]) for d in mine if d["outcome"] == "sent"]
    assert sent == [cart["ts"] + 2000, cart["ts"] + 6000]
    assert parse_ts_ms(email["value"]["decided_at"]) >= sent[0]
    assert parse_ts_ms(push["value"]["decided_at"]) >= sent[1]


async def test_open_within_the_timeout_means_no_push(worker):
    customer = cid()
    await produce(worker.topic("events"), [(customer.encode(), dumps(event(customer, "cart.updated",
                                                                           props={"value": 99})))])
    [email] = of(await read_all([worker.topic("actions.email")], until=lambda rs: len(of(rs, customer)) >= 1),
                 customer)
    opened = event(customer, "message.opened", props={"action_id": email["value"]["action_id"], "channel": "email"})
    await produce(worker.topic("events"), [(customer.encode(), dumps(opened))])
    decisions = await read_all([worker.topic("decisions")],
                               until=lambda rs: any(r["value"]["outcome"] == "exited" for r in of(rs, customer)))
    assert [r["value"]["outcome"] for r in of(decisions, customer)] == ["entered", "sent", "exited"]
    # The exit cancelled the timeout: a customer who entered later and timed out proves the
    # timeout has passed, and this one still got no push.
    other = cid()
    await produce(worker.topic("events"), [(other.encode(), dumps(event(other, "cart.updated",
                                                                        props={"value": 60})))])
    await read_all([worker.topic("actions.push")], until=lambda rs: len(of(rs, other)) >= 1)
    pushes = await read_all([worker.topic("actions.push")])
    assert of(pushes, customer) == []


async def test_feedback_about_another_action_does_not_count(worker):
    customer = cid()
    await produce(worker.topic("events"), [(customer.encode(), dumps(event(customer, "cart.updated",
                                                                           props={"value": 70})))])
    await read_all([worker.topic("actions.email")], until=lambda rs: len(of(rs, customer)) >= 1)
    stranger = event(customer, "message.opened", props={"action_id": "a-not-ours", "channel": "email"})
    await produce(worker.topic("events"), [(customer.encode(), dumps(stranger))])
    await read_all([worker.topic("actions.push")], until=lambda rs: len(of(rs, customer)) >= 1)


async def test_goal_cancels_the_pending_wait(worker):
    customer = cid()
    await produce(worker.topic("events"), [(customer.encode(), dumps(event(customer, "cart.updated",
                                                                           props={"value": 60})))])
    await produce(worker.topic("events"), [(customer.encode(), dumps(event(customer, "order.completed")))])
    decisions = await read_all([worker.topic("decisions")],
                               until=lambda rs: any(r["value"]["outcome"] == "goal" for r in of(rs, customer)))
    assert [r["value"]["outcome"] for r in of(decisions, customer)] == ["entered", "goal"]
    # A later customer's full run proves timers kept firing past this one's would-be due time.
    other = cid()
    await produce(worker.topic("events"), [(other.encode(), dumps(event(other, "cart.updated",
                                                                        props={"value": 60})))])
    await read_all([worker.topic("actions.push")], until=lambda rs: len(of(rs, other)) >= 1)
    emails = await read_all([worker.topic("actions.email")])
    assert of(emails, customer) == []
