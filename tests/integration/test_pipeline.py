"""The whole path on a real broker: events in, actions/suppressions/decisions/dead letters out."""

from __future__ import annotations

import subprocess
import sys
import uuid

import orjson

from tests.integration.harness import dumps, event, produce, read_all, total

ACTION_KEYS = {"action_id", "customer_id", "channel", "template", "params", "journey", "journey_version", "node",
               "trigger_event_id", "event_ts", "decided_at"}
DLQ_KEYS = {"reason", "detail", "topic", "partition", "offset", "raw", "ts"}
SUPPRESSION_KEYS = {"suppression_id", "customer_id", "channels", "journey", "reason", "cancels", "ts"}


def cid() -> str:
    return f"c-{uuid.uuid4().hex[:10]}"


def of(records, customer):
    return [r for r in records if r["value"].get("customer_id") == customer]


async def test_console_script_event_becomes_an_email_action(worker, tmp_path):
    customer = cid()
    e = event(customer, "signup.completed", props={"plan": "pro"})
    path = tmp_path / "events.jsonl"
    path.write_bytes(dumps(event(customer, "profile.updated", props={"first_name": "Ada"})) + b"\n" + dumps(e) + b"\n")
    subprocess.run([sys.executable, "-m", "orchestrator", "produce", str(path)], env=worker.env, check=True,
                   capture_output=True, timeout=60)

    records = await read_all([worker.topic("actions.email")], until=lambda rs: len(of(rs, customer)) >= 1)
    [action] = of(records, customer)
    assert action["key"] == customer
    value = action["value"]
    assert set(value) == ACTION_KEYS
    assert value["channel"] == "email" and value["template"] == "welcome-1"
    assert value["params"] == {"plan": "pro", "name": "Ada"}   # profile update applied first
    assert value["journey"] == "it-welcome" and value["journey_version"] == 1
    assert value["trigger_event_id"] == e["event_id"]
    assert value["action_id"].startswith("a-")


async def test_bad_messages_between_valid_events_are_dead_lettered(worker):
    a, b = cid(), cid()
    before = worker.consumed()
    no_customer = event("x", "signup.completed")
    del no_customer["customer_id"]
    wrong_type = event(a, "signup.completed")
    wrong_type["customer_id"] = 42
    huge = event(a, "signup.completed", props={"blob": "x" * 1_000_000})
    messages = [
        (a.encode(), dumps(event(a, "signup.completed", props={"plan": "free"}))),
        (b"k1", b'{"event_id": "e-bad", "customer_id": '),
        (b"k2", dumps(wrong_type)),
        (b"k3", dumps(huge)),
        (None, dumps(no_customer)),
        (b.encode(), dumps(event(b, "signup.completed", props={"plan": "pro"}))),
    ]
    await produce(worker.topic("events"), messages)
    worker.wait_consumed(before + len(messages))

    dlq = await read_all([worker.topic("dlq")],
                         until=lambda rs: {r["key"] for r in rs} >= {"k1", "k2", "k3", None})
    by_key = {r["key"]: r["value"] for r in dlq if r["key"] in ("k1", "k2", "k3") or r["key"] is None}
    assert by_key["k1"]["reason"] == "invalid_json"
    assert by_key["k2"]["reason"] == "invalid_schema" and "customer_id" in by_key["k2"]["detail"]
    assert by_key["k3"]["reason"] == "too_large"
    assert by_key[None]["reason"] == "invalid_schema" and "customer_id" in by_key[None]["detail"]
    for value in by_key.values():
        assert set(value) == DLQ_KEYS
        assert value["topic"] == worker.topic("events")
        assert isinstance(value["offset"], int) and isinstance(value["partition"], int)
    assert len(by_key["k3"]["raw"]) <= 4096          # a 1 MB body is not copied whole
    assert by_key["k1"]["raw"] == '{"event_id": "e-bad", "customer_id": '

    actions = await read_all([worker.topic("actions.email")],
                             until=lambda rs: len(of(rs, a)) >= 1 and len(of(rs, b)) >= 1)
    assert [r["value"]["params"]["plan"] for r in of(actions, a)] == ["free"]
    assert [r["value"]["params"]["plan"] for r in of(actions, b)] == ["pro"]


async def test_a_record_the_worker_cannot_decide_is_dead_lettered_engine_error_and_counted(worker):
    # A record on the internal topic that no worker wrote: before, logged and its offset committed, kept nowhere.
    a, stranger = cid(), cid()
    errors_before = total(worker.metrics(), "orch_engine_errors_total")
    await produce(worker.topic("internal.events-by-customer"), [(stranger.encode(), b"\x92\xa3not an event")])
    dlq = await read_all([worker.topic("dlq")], until=lambda rs: any(r["key"] == stranger for r in rs))
    [dead] = [r["value"] for r in dlq if r["key"] == stranger]
    assert set(dead) == DLQ_KEYS and dead["reason"] == "engine_error"
    assert dead["topic"] == worker.topic("internal.events-by-customer")
    assert "decoding a record of the internal topic" in dead["detail"]
    assert total(worker.metrics(), "orch_engine_errors_total") == errors_before + 1
    # The partition goes on.
    await produce(worker.topic("events"), [(a.encode(), dumps(event(a, "signup.completed", props={"plan": "x"})))])
    await read_all([worker.topic("actions.email")], until=lambda rs: len(of(rs, a)) >= 1)


async def test_state_is_per_customer_whatever_the_message_key(worker):
    """Two sign-ups of one customer under different keys: re-entry is `never`, so one email only."""
    customer = cid()
    before = worker.consumed()
    first = event(customer, "signup.completed", props={"plan": "free"})
    second = event(customer, "signup.completed", props={"plan": "pro"})
    await produce(worker.topic("events"), [(b"some-other-key", dumps(first)), (None, dumps(second))])
    worker.wait_consumed(before + 2)
    decisions = await read_all([worker.topic("decisions")],
                               until=lambda rs: any(r["value"]["outcome"] == "sent" for r in of(rs, customer)))
    actions = await read_all([worker.topic("actions.email")])
    assert len(of(actions, customer)) == 1
    assert [r["value"]["outcome"] for r in of(decisions, customer)] == ["entered", "sent"]


async def test_duplicate_event_id_is_ignored(worker):
    customer = cid()
    before = worker.consumed()
    e = dumps(event(customer, "signup.completed", eid=f"dup-{customer}"))
    await produce(worker.topic("events"), [(customer.encode(), e), (customer.encode(), e)])
    worker.wait_consumed(before + 2)
    await read_all([worker.topic("actions.email")], until=lambda rs: len(of(rs, customer)) >= 1)
    actions = await read_all([worker.topic("actions.email")])
    assert len(of(actions, customer)) == 1
    assert total(worker.metrics(), 'orch_events_in_total{result=duplicate}') >= 1


async def test_goal_exits_and_suppresses_listed_channels(worker):
    customer = cid()
    await produce(worker.topic("events"), [(customer.encode(), dumps(event(customer, "signup.completed")))])
    [action] = of(await read_all([worker.topic("actions.email")], until=lambda rs: len(of(rs, customer)) >= 1),
                  customer)
    await produce(worker.topic("events"), [(customer.encode(), dumps(event(customer, "order.completed")))])
    sup = await read_all([worker.topic("suppressions")], until=lambda rs: len(of(rs, customer)) >= 1)
    [s] = of(sup, customer)
    assert set(s["value"]) == SUPPRESSION_KEYS
    assert s["value"]["reason"] == "goal"
    assert s["value"]["channels"] == ["inapp"]
    assert s["value"]["journey"] == "it-welcome"
    assert s["value"]["cancels"] == [action["value"]["action_id"]]
    decisions = await read_all([worker.topic("decisions")],
                               until=lambda rs: any(r["value"]["outcome"] == "goal" for r in of(rs, customer)))
    assert [r["value"]["outcome"] for r in of(decisions, customer)] == ["entered", "sent", "goal"]


async def test_profile_erased_suppresses_every_channel_and_forgets_the_customer(worker):
    customer = cid()
    await produce(worker.topic("events"), [(customer.encode(), dumps(event(customer, "signup.completed")))])
    await read_all([worker.topic("actions.email")], until=lambda rs: len(of(rs, customer)) >= 1)
    await produce(worker.topic("events"), [(customer.encode(), dumps(event(customer, "profile.erased")))])
    sup = await read_all([worker.topic("suppressions")], until=lambda rs: len(of(rs, customer)) >= 1)
    [s] = of(sup, customer)
    assert s["value"]["reason"] == "erased"
    assert s["value"]["channels"] == ["email", "sms", "push", "inapp", "web", "ads"]
    assert len(s["value"]["cancels"]) == 1
    # State is gone: the same customer signing up again is a new customer (re-entry `never` no longer applies).
    await produce(worker.topic("events"), [(customer.encode(), dumps(event(customer, "signup.completed")))])
    await read_all([worker.topic("actions.email")], until=lambda rs: len(of(rs, customer)) >= 2)


async def test_metrics_count_what_happened(worker):
    customer = cid()
    before = worker.metrics()
    await produce(worker.topic("events"), [(b"k", b"not json"),
                                           (customer.encode(), dumps(event(customer, "signup.completed")))])
    await read_all([worker.topic("actions.email")], until=lambda rs: len(of(rs, customer)) >= 1)
    worker.wait_consumed(total(before, "orch_events_in_total") + 2)
    after = worker.metrics()
    assert after['orch_dead_letters_total{reason=invalid_json}'] - before['orch_dead_letters_total{reason=invalid_json}'] == 1
    assert after['orch_actions_total{channel=email}'] - before['orch_actions_total{channel=email}'] == 1
    assert after['orch_events_in_total{result=valid}'] - before['orch_events_in_total{result=valid}'] == 1
    assert "orch_build_info" in "".join(after)
    assert not any(customer in name for name in after)


async def test_explain_shows_state_and_recent_decisions(worker):
    customer = cid()
    await produce(worker.topic("events"), [
        (customer.encode(), dumps(event(customer, "profile.updated", props={"first_name": "Grace"}))),
        (customer.encode(), dumps(event(customer, "signup.completed", props={"plan": "pro"}))),
    ])
    await read_all([worker.topic("decisions")],
                   until=lambda rs: any(r["value"]["outcome"] == "sent" for r in of(rs, customer)))
    # The state reaches the changelog when the worker commits (about every second): poll for it.
    for _ in range(100):
        out = subprocess.run([sys.executable, "-m", "orchestrator", "explain", customer, "--json"],
                             env=worker.env, check=True, capture_output=True, timeout=60)
        report = orjson.loads(out.stdout)
        if report["state"] is not None:
            break
    assert report["state"]["profile"] == {"first_name": "Grace"}
    welcome = report["state"]["journeys"]["it-welcome"]
    assert welcome["node"] == "pause" and welcome["touches"] == 1 and welcome["next_timer_at"]
    assert [d["outcome"] for d in report["decisions"]] == ["entered", "sent"]
    text = subprocess.run([sys.executable, "-m", "orchestrator", "explain", customer], env=worker.env,
                          check=True, capture_output=True, timeout=60).stdout.decode()
    assert "it-welcome v1 at node pause" in text and "sent" in text
