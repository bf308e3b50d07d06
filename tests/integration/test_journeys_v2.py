"""The journey language v2 (SPEC §4.1) on a real worker, decided exactly as `orchestrator simulate`
decides the same events: lists in entry/goal, max_entries, exit.if, wait_until (released by the
worker's timer at the next minute), an exempt send, and a window deferral cancelled by a goal."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.integration.harness import WorkerProcess, dumps, event, produce, read_all
from tests.integration.test_publish import wait_publications

ROOT = Path(__file__).resolve().parents[2]


def hhmm(epoch_s: float) -> str:
    t = time.gmtime(epoch_s)
    return f"{t.tm_hour:02d}:{t.tm_min:02d}"


def write_journey(root: Path, now_s: float) -> tuple[Path, float]:
    """A journey whose wait_until is the next UTC minute at least 20 s away; returns its due time."""
    due = (int(now_s) // 60 + 1) * 60
    if due - now_s < 20:
        due += 60
    journeys = root / "journeys"
    journeys.mkdir()
    (journeys / "it-v2.yaml").write_text(f"""\
journey: it-v2
entry: {{on: [v2.cart, v2.checkout], reentry: always, max_entries: 2}}
goal: {{on: [v2.bought, v2.subscribed]}}
exit: {{if: profile.plan == "enterprise"}}
start: tick
nodes:
  tick: {{wait_until: "{hhmm(due)}", next: receipt}}
  receipt: {{send: push, template: v2-receipt, exempt: [frequency, quiet_hours], next: offer}}
  offer:
    send: email
    template: v2-offer
    window: {{from: "{hhmm(now_s + 3 * 3600)}", to: "{hhmm(now_s + 4 * 3600)}"}}
    next: done
  done: {{exit: completed}}
""")
    return journeys, due


def write_policies(root: Path, now_s: float) -> Path:
    """A cap of 0 sends a day and quiet hours for push right now: only an exempt push goes."""
    policies = root / "policies.yaml"
    policies.write_text("channels: [email, sms, push, inapp, web, ads]\nfrequency:\n  - {max: 0, per: 1d}\n"
                        f'quiet_hours: {{channels: [push], from: "{hhmm(now_s - 3600)}", '
                        f'to: "{hhmm(now_s + 2 * 3600)}"}}\n')
    return policies


def of(records: list[dict], customer: str) -> list[dict]:
    return [r for r in records if r.get("customer_id") == customer]


async def test_the_worker_decides_the_v2_constructs_as_simulate_does(tmp_path):
    policies = write_policies(tmp_path, time.time())
    empty = tmp_path / "none"
    empty.mkdir()
    run = uuid.uuid4().hex[:6]
    buyer, boss, loyal = f"v2b-{run}", f"v2e-{run}", f"v2l-{run}"
    w = WorkerProcess(tmp_path, journeys=empty, policies=policies).start()
    lines: list[bytes] = []

    async def send(*events: dict) -> None:
        batch = [dumps(e) for e in events]
        lines.extend(batch)
        await produce(w.topic("events"), [(e["customer_id"].encode(), b) for e, b in zip(events, batch)])

    try:
        # Published once the worker is up, so the wait_until minute is still ahead on a slow machine.
        journeys, due_s = write_journey(tmp_path, time.time())
        subprocess.run([sys.executable, "-m", "orchestrator", "journeys", "publish", str(journeys)], env=w.env,
                       check=True, capture_output=True, timeout=120)
        wait_publications(w, "loaded", 1)
        await send(event(buyer, "v2.cart"), event(boss, "v2.checkout"),
                   event(boss, "profile.updated", props={"plan": "enterprise"}))
        for n in range(3):                                      # two entries allowed, the third refused
            await send(event(loyal, "v2.checkout" if n % 2 else "v2.cart"))
            if n < 2:
                await read_all([w.topic("decisions")], until=lambda rs, k=n: sum(
                    1 for r in of([x["value"] for x in rs], loyal) if r["outcome"] == "entered") > k)
                await send(event(loyal, "v2.subscribed" if n else "v2.bought"))
                await read_all([w.topic("decisions")], until=lambda rs, k=n: sum(
                    1 for r in of([x["value"] for x in rs], loyal) if r["outcome"] == "goal") > k)
        # the buyer is released at the minute by the worker's timer: the exempt push goes despite the
        # cap of 0 and the quiet hours, then the offer waits for its window
        records = await read_all([w.topic("decisions")], timeout_s=due_s - time.time() + 60, until=lambda rs: any(
            r["value"]["outcome"] == "window_deferred" for r in rs if r["value"]["customer_id"] == buyer))
        assert time.time() >= due_s
        await send(event(buyer, "v2.subscribed"))
        records = await read_all([w.topic("decisions")], until=lambda rs: any(
            r["value"]["outcome"] == "goal" for r in rs if r["value"]["customer_id"] == buyer))
        suppressions = await read_all([w.topic("suppressions")], until=lambda rs: any(
            r["value"]["customer_id"] == buyer for r in rs))
        pushes = await read_all([w.topic("actions.push")])
    finally:
        w.stop()

    live = [r["value"] for r in records]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    sim = subprocess.run([sys.executable, "-m", "orchestrator", "simulate", "--journeys", str(journeys),
                          "--policies", str(policies), str(path)], cwd=ROOT, check=True, capture_output=True,
                         timeout=60)
    simulated = [json.loads(x) for x in sim.stdout.splitlines()]
    expected = [r["value"] for r in simulated if r["topic"] == "decisions"]

    def comparable(d: dict) -> tuple:
        return tuple((k, json.dumps(v)) for k, v in sorted(d.items()) if k != "ts")

    for customer in (buyer, boss, loyal):
        assert [comparable(d) for d in of(live, customer)] == [comparable(d) for d in of(expected, customer)], customer
    assert [(d["outcome"], d["detail"]) for d in of(live, boss)] == [("entered", "treatment"), ("exited", "condition")]
    assert [d["detail"] for d in of(live, loyal) if d["outcome"] == "entry_refused"] == ["max_entries"]
    outcomes = [d["outcome"] for d in of(live, buyer)]
    assert outcomes == ["entered", "sent", "window_deferred", "goal"]
    [push] = [r["value"] for r in pushes if r["value"]["customer_id"] == buyer]
    assert push["template"] == "v2-receipt" and push["decided_at"] >= time.strftime("%Y-%m-%dT%H:%M", time.gmtime(due_s))
    [deferred] = [d for d in of(live, buyer) if d["outcome"] == "window_deferred"]
    [sup] = [r["value"] for r in suppressions if r["value"]["customer_id"] == buyer]
    assert sup["reason"] == "goal" and deferred["action_id"] in sup["cancels"]
    sim_sup = [r["value"] for r in simulated if r["topic"] == "suppressions" and r["value"]["customer_id"] == buyer]
    assert [comparable(s) for s in sim_sup] == [comparable(sup)]
