"""The send gate on a real worker: caps across journeys, quiet hours + goal, simulate == worker."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.integration.harness import WorkerProcess, dumps, event, produce, read_all

JOURNEYS = 20


def write_setup(root: Path) -> tuple[Path, Path]:
    journeys = root / "journeys"
    journeys.mkdir()
    for n in range(1, JOURNEYS + 1):
        (journeys / f"blast-{n:02d}.yaml").write_text(
            f"journey: blast-{n:02d}\nversion: 1\nentry: {{on: blast.n{n:02d}, reentry: always}}\n"
            f"start: mail\nnodes:\n  mail: {{send: email, template: blast-{n:02d}, next: done}}\n"
            f"  done: {{exit: completed}}\n")
    (journeys / "night-sms.yaml").write_text(
        "journey: night-sms\nversion: 1\nentry: {on: sms.trigger}\n"
        "goal: {on: order.completed, suppress: [sms]}\n"
        "start: text\nnodes:\n  text: {send: sms, template: late-offer, next: done}\n  done: {exit: completed}\n")
    now = datetime.now(timezone.utc)
    start, end = now - timedelta(hours=1), now + timedelta(hours=2)
    policies = root / "policies.yaml"
    policies.write_text(
        "channels: [email, sms, push, inapp, web, ads]\n"
        "frequency:\n  - {max: 3, per: 7d}\n"
        f'quiet_hours: {{channels: [sms], from: "{start:%H:%M}", to: "{end:%H:%M}"}}\n'
        "consent: {sms: opt_in}\n")
    return journeys, policies


@pytest.fixture(scope="module")
def gate_worker(tmp_path_factory):
    root = Path(tmp_path_factory.mktemp("gate"))
    journeys, policies = write_setup(root)
    w = WorkerProcess(root, journeys=journeys, policies=policies).start()
    w.journeys, w.policies = journeys, policies
    yield w
    w.stop()


def of(records, customer):
    return [r for r in records if r["value"].get("customer_id") == customer]


def blast(customer: str, n: int, ts: int | None = None) -> tuple[bytes, bytes]:
    return customer.encode(), dumps(event(customer, f"blast.n{n:02d}", eid=f"{customer}-{n}", ts=ts))


async def test_cap_holds_across_20_journeys_firing_within_a_second(gate_worker):
    w, customer = gate_worker, f"g-{uuid.uuid4().hex[:8]}"
    await produce(w.topic("events"), [blast(customer, n) for n in range(1, JOURNEYS + 1)])
    decisions = await read_all([w.topic("decisions")],
                               until=lambda rs: sum(r["value"]["outcome"] in ("sent", "frequency_cap")
                                                    for r in of(rs, customer)) >= JOURNEYS)
    outcomes = [r["value"]["outcome"] for r in of(decisions, customer) if r["value"]["node"] == "mail"
                and r["value"]["outcome"] != "entered"]
    assert outcomes.count("sent") == 3 and outcomes.count("frequency_cap") == JOURNEYS - 3
    actions = await read_all([w.topic("actions.email")])
    assert len({r["value"]["action_id"] for r in of(actions, customer)}) == 3


async def test_cap_holds_across_a_worker_restart(gate_worker, tmp_path):
    w, customer = gate_worker, f"r-{uuid.uuid4().hex[:8]}"
    before = w.consumed()
    await produce(w.topic("events"), [blast(customer, n) for n in range(1, 11)])
    w.wait_consumed(before + 10)
    w.stop(signal.SIGTERM)
    w2 = WorkerProcess(tmp_path, prefix=w.prefix, journeys=w.journeys, policies=w.policies)
    w2.data_dir, w2.env = w.data_dir, {**w.env, "ORCH_WEB_PORT": str(w2.port)}
    w2.start()
    try:
        await produce(w.topic("events"), [blast(customer, n) for n in range(11, JOURNEYS + 1)])
        decisions = await read_all([w.topic("decisions")],
                                   until=lambda rs: sum(r["value"]["outcome"] in ("sent", "frequency_cap")
                                                        for r in of(rs, customer)) >= JOURNEYS)
    finally:
        w2.stop()
        w.start()          # the module's other tests keep using a running worker
    outcomes = [r["value"]["outcome"] for r in of(decisions, customer) if r["value"]["outcome"] != "entered"
                and r["value"]["node"] == "mail"]
    assert outcomes.count("sent") == 3 and outcomes.count("frequency_cap") == JOURNEYS - 3
    actions = await read_all([w.topic("actions.email")])
    assert len({r["value"]["action_id"] for r in of(actions, customer)}) == 3


async def test_purchase_while_sms_is_deferred_by_quiet_hours(gate_worker):
    w, customer = gate_worker, f"q-{uuid.uuid4().hex[:8]}"
    await produce(w.topic("events"), [
        (customer.encode(), dumps(event(customer, "profile.updated", props={"consent": {"sms": True}}))),
        (customer.encode(), dumps(event(customer, "sms.trigger"))),
    ])
    decisions = await read_all([w.topic("decisions")], until=lambda rs: any(
        r["value"]["outcome"] == "quiet_hours_deferred" for r in of(rs, customer)))
    [deferred] = [r["value"] for r in of(decisions, customer) if r["value"]["outcome"] == "quiet_hours_deferred"]
    await produce(w.topic("events"), [(customer.encode(), dumps(event(customer, "order.completed")))])
    sup = await read_all([w.topic("suppressions")], until=lambda rs: len(of(rs, customer)) >= 1)
    [s] = of(sup, customer)
    assert s["value"]["reason"] == "goal" and s["value"]["channels"] == ["sms"]
    assert s["value"]["cancels"] == [deferred["action_id"]]
    sms = await read_all([w.topic("actions.sms")])
    assert of(sms, customer) == []


async def test_simulate_and_worker_make_the_same_decisions(gate_worker, tmp_path):
    w, customer = gate_worker, f"s-{uuid.uuid4().hex[:8]}"
    now = int(time.time() * 1000)
    lines = [blast(customer, n, ts=now + n)[1] for n in (3, 1, 4, 1, 5, 9, 2, 6)]   # includes a duplicate id
    lines.append(dumps(event(customer, "profile.updated", props={"consent": {"sms": False}}, ts=now + 20)))
    lines.append(dumps(event(customer, "sms.trigger", ts=now + 21)))
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    subprocess.run([sys.executable, "-m", "orchestrator", "produce", str(path)], env=w.env, check=True,
                   capture_output=True, timeout=60)
    sim = subprocess.run([sys.executable, "-m", "orchestrator", "simulate", "--journeys", str(w.journeys),
                          "--policies", str(w.policies), str(path)], check=True, capture_output=True, timeout=60)
    expected = [json.loads(line)["value"] for line in sim.stdout.splitlines()
                if json.loads(line)["topic"] == "decisions"]
    decisions = await read_all([w.topic("decisions")],
                               until=lambda rs: len(of(rs, customer)) >= len(expected))

    def comparable(d: dict) -> tuple:
        return tuple((k, json.dumps(v)) for k, v in sorted(d.items()) if k != "ts")

    assert [comparable(r["value"]) for r in of(decisions, customer)] == [comparable(d) for d in expected]
    assert {d["outcome"] for d in expected} >= {"entered", "sent", "frequency_cap", "no_consent", "exited"}
