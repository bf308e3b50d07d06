"""`orchestrator backtest` on the real broker: a worker runs it-bt v1 over some customers; then a
changed journey (v2: the follow-up goes by SMS, which nobody consented to, and the first send
waits for a window) is backtested over the same span. The table's live column must be what the
worker wrote to the decisions topic in that span, its backtest column what `orchestrator
simulate` of the same events decides with v2, and no topic may be written.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.integration.harness import BOOTSTRAP, HERE, WorkerProcess, dumps, event, produce, read_all

ROOT = Path(__file__).resolve().parents[2]
V1 = """\
journey: it-bt
version: 1
entry: {on: bt.cart}
goal: {on: [bt.bought, bt.subscribed]}
start: mail
nodes:
  mail: {send: email, template: bt-mail, next: pause}
  pause: {wait: 2s, next: follow}
  follow: {send: push, template: bt-push, next: done}
  done: {exit: completed}
"""
# v2: the follow-up by SMS (opt-in in these policies: nobody consented), the first send in a window
# that is open every day but never at the minute the test runs (so it is deferred past the span).
V2 = V1.replace("version: 1", "version: 2").replace("send: push", "send: sms")


def v2_text(now_s: float) -> str:
    opens = time.gmtime(now_s + 3 * 3600)
    closes = time.gmtime(now_s + 4 * 3600)
    window = f'window: {{from: "{opens.tm_hour:02d}:{opens.tm_min:02d}", to: "{closes.tm_hour:02d}:{closes.tm_min:02d}"}}'
    return V2.replace("template: bt-mail, next: pause}", f"template: bt-mail, {window}, next: pause}}")


def live_counts(decisions: list[dict], since_ms: int, until_ms: int) -> Counter:
    """Counted here independently of the command: (journey, node or (entry), outcome[, channel|detail])."""
    from orchestrator.core.timeutil import parse_ts_ms
    out: Counter = Counter()
    for d in decisions:
        ts = parse_ts_ms(d["ts"])
        if d.get("shadow") or not since_ms <= ts < until_ms:
            continue
        o = d["outcome"]
        if o == "entered":
            out[(d["journey"], "(entry)", "entered")] += 1
        elif o == "entry_refused":
            out[(d["journey"], "(entry)", f"entry_refused {d['detail']}")] += 1
        elif o == "sent":
            out[(d["journey"], d["node"], f"sent {d['channel']}")] += 1
        elif o == "exited":
            out[(d["journey"], d["node"], f"exited {d['detail']}")] += 1
        else:
            out[(d["journey"], d["node"], o)] += 1
    return out


async def topic_ends(prefix: str) -> dict[tuple[str, int], int]:
    """End offset of every partition of every topic under ``prefix``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(prefix + ".")]
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    tps = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return {(tp.topic, tp.partition): n for tp, n in ends.items()}


async def test_backtest_of_a_changed_journey_matches_the_live_topic_and_simulate(tmp_path):
    live_dir, changed_dir = tmp_path / "live", tmp_path / "changed"
    live_dir.mkdir()
    changed_dir.mkdir()
    (live_dir / "it-bt.yaml").write_text(V1)
    policies = HERE / "policies.yaml"
    w = WorkerProcess(tmp_path, journeys=live_dir).start()
    env = {**os.environ, "ORCH_BOOTSTRAP": BOOTSTRAP, "ORCH_TOPIC_PREFIX": w.prefix}
    try:
        run = uuid.uuid4().hex[:6]
        customers = [f"bt-{run}-{i}" for i in range(8)]
        since = int(time.time() * 1000) - 1000
        lines = [dumps(event(c, "bt.cart")) for c in customers]
        lines += [dumps(event(f"bt-{run}-x", "page.viewed"))]                       # nobody listens to it
        lines += [dumps(event(c, "bt.bought" if i else "bt.subscribed")) for i, c in enumerate(customers[:3])]
        for chunk in (lines[:9], lines[9:]):
            await produce(w.topic("events"), [(json.loads(x)["customer_id"].encode(), x) for x in chunk])

        def ended(records):
            done = {r["value"]["customer_id"] for r in records if r["value"]["outcome"] in ("goal", "exited")}
            return set(customers) <= done

        await read_all([w.topic("decisions")], until=ended, timeout_s=120)
    finally:
        w.stop()
    await asyncio.sleep(1.1)                 # the span ends after every record the worker wrote
    until = int(time.time() * 1000)
    (changed_dir / "it-bt.yaml").write_text(v2_text(time.time()))

    before = await topic_ends(w.prefix)
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "backtest", "--journeys", str(changed_dir),
                           "--policies", str(policies), "--from", str(since), "--to", str(until), "--json"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert await topic_ends(w.prefix) == before                                  # no topic written
    report = json.loads(proc.stdout)
    assert report["events"] == len(lines)
    table = {(r["journey"], r["node"], r["outcome"]): (r["live"], r["backtest"]) for r in report["rows"]}

    # the live column: what the worker decided in the span, read from the topic by this test
    decisions = [r["value"] for r in await read_all([w.topic("decisions")])]
    live = live_counts(decisions, since, until)
    assert {k: v[0] for k, v in table.items() if v[0]} == dict(live)
    assert live[("it-bt", "(entry)", "entered")] == 8 and live[("it-bt", "follow", "sent push")] == 5

    # the backtest column: `orchestrator simulate` of the same events with the changed journey, its
    # clock run on to the end of the span by a last line nobody listens to
    events_file = tmp_path / "events.jsonl"
    tick = dumps(event(f"bt-{run}-clock", "bt.clock", ts=until - 1))
    events_file.write_bytes(b"\n".join([*lines, tick]) + b"\n")
    sim = subprocess.run([sys.executable, "-m", "orchestrator", "simulate", "--journeys", str(changed_dir),
                          "--policies", str(policies), str(events_file)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert sim.returncode == 0, sim.stderr
    simulated = live_counts([json.loads(x)["value"] for x in sim.stdout.splitlines()
                             if json.loads(x)["topic"] == "decisions"], 0, 2**62)
    assert {k: v[1] for k, v in table.items() if v[1]} == dict(simulated)
    assert simulated[("it-bt", "mail", "window_deferred")] == 8                 # the change shows
    assert simulated[("it-bt", "mail", "goal")] == 3 and not simulated[("it-bt", "follow", "sent push")]

    # The table, with standard error on a terminal: the progress line shows each read, then is wiped.
    text, screen = on_terminal([sys.executable, "-m", "orchestrator", "backtest", "--journeys", str(changed_dir),
                                "--policies", str(policies), "--from", str(since), "--to", str(until)], env=env)
    assert text.returncode == 0, screen
    row = next(line.split() for line in text.stdout.splitlines() if "window_deferred" in line)
    assert row == ["it-bt", "mail", "window_deferred", "0", "8", "+8"]
    shown = [part.strip() for part in screen.split("\r") if part.strip()]
    assert shown[0] == f"backtest: reading events: 0 of {len(lines)}" and \
        f"backtest: reading events: {len(lines)} of {len(lines)}" in shown, shown
    assert shown[-2].startswith("backtest: reading live decisions: ") and shown[-1] == "\x1b[2K", shown


def on_terminal(argv: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run ``argv`` with standard error on a pseudo-terminal (standard output captured); what the
    terminal received."""
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=terminal, text=True,
                              timeout=180)
    finally:
        os.close(terminal)
    received = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:             # EIO: every writer has closed the terminal
            break
        if not chunk:
            break
        received += chunk
    os.close(controller)
    return proc, received.decode()


async def test_backtest_without_an_events_topic_says_no_such_topic(tmp_path):
    """A prefix with a decisions topic but no events topic: one sentence and exit 1, as `explain` and
    `stats` say it, not a report of 0 events replayed."""
    prefix = f"it-bt-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"{prefix}.decisions", 1, 1)])
    finally:
        await admin.close()
    try:
        (tmp_path / "it-bt.yaml").write_text(V1)
        env = {**os.environ, "ORCH_BOOTSTRAP": BOOTSTRAP, "ORCH_TOPIC_PREFIX": prefix}
        proc = subprocess.run([sys.executable, "-m", "orchestrator", "backtest", "--journeys", str(tmp_path),
                               "--policies", str(HERE / "policies.yaml"), "--from", "1d", "--to", "now"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
        assert proc.returncode == 1 and proc.stdout == "", proc.stdout
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: no such topic {prefix}.events on Kafka at "), \
            proc.stderr
        assert "ORCH_TOPIC_PREFIX" in lines[0]
    finally:
        admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        await admin.start()
        try:
            await admin.delete_topics([f"{prefix}.decisions"])
        finally:
            await admin.close()
