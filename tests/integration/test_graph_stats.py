"""`orchestrator journeys graph --stats` on the decisions a real worker wrote to the real broker.

Three customers walk it-cart (wait 2 s, email, wait_for message.opened 4 s, push): one opens the
email, one lets it time out, one buys during the first wait. The command, run as a user would
(a subprocess with the worker's topic prefix), must put those paths on the arrows.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.integration.harness import BOOTSTRAP, HERE, dumps, event, produce, read_all

ROOT = Path(__file__).resolve().parents[2]


def graph(worker, *args: str) -> str:
    env = {**os.environ, "ORCH_BOOTSTRAP": BOOTSTRAP, "ORCH_TOPIC_PREFIX": worker.prefix}
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "journeys", "graph", "it-cart",
                           "--journeys", str(HERE / "journeys"), "--policies", str(HERE / "policies.yaml"),
                           "--stats", "--format", "dot", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def edge(text: str, src: str, dst: str) -> str:
    m = re.search(rf'"{re.escape(src)}" -> "{re.escape(dst)}" \[label="([^"]*)"', text)
    assert m, f"no arrow {src} -> {dst} in:\n{text}"
    return m.group(1)


async def test_stats_put_each_customers_path_on_the_arrows(worker):
    run = uuid.uuid4().hex[:8]
    opener, silent, buyer = f"open-{run}", f"silent-{run}", f"buy-{run}"
    started = time.time()
    await produce(worker.topic("events"), [
        (c.encode(), dumps(event(c, "cart.updated", props={"value": 80}))) for c in (opener, silent, buyer)])
    await produce(worker.topic("events"), [(buyer.encode(), dumps(event(buyer, "order.completed")))])
    emails = await read_all([worker.topic("actions.email")],
                            until=lambda rs: {opener, silent} <= {r["value"]["customer_id"] for r in rs})
    action = next(r["value"] for r in emails if r["value"]["customer_id"] == opener)
    await produce(worker.topic("events"), [(opener.encode(), dumps(event(
        opener, "message.opened", props={"action_id": action["action_id"], "channel": "email"})))])

    def ended(records):
        done = {r["value"]["customer_id"] for r in records
                if r["value"]["journey"] == "it-cart" and r["value"]["outcome"] in ("exited", "goal")}
        return {opener, silent, buyer} <= done

    await read_all([worker.topic("decisions")], until=ended, timeout_s=90)
    # Other tests of this module share the worker: count from this test's start only.
    text = graph(worker, "--from", str(int(started * 1000) - 1000))
    assert "entered 3" in text
    assert edge(text, "<entry>", "wait_short") == "3"
    assert edge(text, "wait_short", "email_reminder") == "2"       # the buyer converted while waiting
    assert "wait_short\\nwait 2s\\ngoal 1" in text
    assert edge(text, "email_reminder", "wait_open") == "2"
    assert edge(text, "wait_open", "done") == "message.opened: 1"
    assert edge(text, "wait_open", "push_reminder") == "timeout 4s: 1"
    assert edge(text, "push_reminder", "done") == "1"
    assert "email_reminder\\nsend email\\ntemplate cart-reminder-1\\nsent 2" in text
    assert "done\\nexit: completed\\nexited completed 2" in text
    assert "goals 1" in text
    # A span that ends before the test started counts nothing of it.
    empty = graph(worker, "--to", str(int(started * 1000) - 1000))
    assert edge(empty, "wait_open", "done") == "message.opened: 0"
