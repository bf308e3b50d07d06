"""`orchestrator journeys winner` on the decisions a real worker wrote to the real broker.

Customers enter two A/B journeys; which arm each got is read from the actions the worker sent,
and conversions are produced per arm (in it-ab the push arm converts far better; in it-tie the arms
convert alike and there are few entries). The command, run as a user would (a subprocess with the
worker's topic prefix), must count what the worker did, name the winner and write its next version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from orchestrator.core import parse_journey
from orchestrator.core.ids import bucket
from tests.integration.harness import BOOTSTRAP, HERE, WorkerProcess, dumps, event, produce, read_all

ROOT = Path(__file__).resolve().parents[2]
CHANNELS = ("email", "sms", "push", "inapp", "web", "ads")
AB = """\
# An experiment: email or push first?
journey: it-ab
version: 1
entry: {on: ab.start}
goal: {on: [ab.bought, ab.subscribed]}
start: ab
nodes:
  ab: {split: [{weight: 50, next: mail}, {weight: 50, next: push}]}
  mail: {send: email, template: ab-mail, next: wait}
  push: {send: push, template: ab-push, next: wait}
  wait: {wait: 1h, next: done}
  done: {exit: completed}
"""
TIE = AB.replace("it-ab", "it-tie").replace("ab.start", "tie.start").replace("template: ab-", "template: tie-")


@pytest.fixture(scope="module")
def ab_worker(tmp_path_factory):
    root = Path(tmp_path_factory.mktemp("winner"))
    journeys = root / "journeys"
    journeys.mkdir()
    (journeys / "it-ab.yaml").write_text(AB)
    (journeys / "it-tie.yaml").write_text(TIE)
    w = WorkerProcess(root, journeys=journeys).start()
    w.journeys = journeys
    yield w
    w.stop()


def winner(w: WorkerProcess, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ORCH_BOOTSTRAP": BOOTSTRAP, "ORCH_TOPIC_PREFIX": w.prefix}
    return subprocess.run([sys.executable, "-m", "orchestrator", "journeys", "winner", *args,
                           "--journeys", str(w.journeys), "--policies", str(HERE / "policies.yaml")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


async def run_experiment(w: WorkerProcess, entry: str, customers: list[str],
                         convert: dict[str, float]) -> dict[str, dict[str, int]]:
    """Enrol ``customers``, read which template each was sent, convert some of them per template.
    Returns per template: customers sent it, and goals produced."""
    await produce(w.topic("events"), [(c.encode(), dumps(event(c, entry))) for c in customers])
    wanted = set(customers)

    def all_sent(records):
        return wanted <= {r["value"]["customer_id"] for r in records}

    actions = await read_all([w.topic("actions.email"), w.topic("actions.push")], until=all_sent, timeout_s=120)
    template = {r["value"]["customer_id"]: r["value"]["template"] for r in actions
                if r["value"]["customer_id"] in wanted}
    counts: dict[str, dict[str, int]] = {}
    goals = []
    for c, t in sorted(template.items()):
        row = counts.setdefault(t, {"entries": 0, "goals": 0})
        row["entries"] += 1
        if bucket("buys", c) < convert[t]:
            row["goals"] += 1
            # either goal type of the list converts
            goals.append((c.encode(), dumps(event(c, "ab.bought" if len(goals) % 2 else "ab.subscribed"))))
    await produce(w.topic("events"), goals)
    expected = sum(r["goals"] for r in counts.values())

    def all_goals(records):
        return sum(1 for r in records if r["value"]["outcome"] == "goal"
                   and r["value"]["customer_id"] in wanted) >= expected

    await read_all([w.topic("decisions")], until=all_goals, timeout_s=120)
    return counts


async def test_winner_names_the_better_arm_and_writes_the_next_version(ab_worker, tmp_path):
    run = uuid.uuid4().hex[:6]
    customers = [f"ab-{run}-{i}" for i in range(160)]
    counts = await run_experiment(ab_worker, "ab.start", customers, {"ab-mail": 0.05, "ab-push": 0.6})
    out_file = tmp_path / "it-ab.next.yaml"
    proc = winner(ab_worker, "it-ab", "-o", str(out_file))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    mail = next(line.split() for line in lines if line.startswith("0 "))
    push = next(line.split() for line in lines if line.startswith("1 "))
    assert mail[:5] == ["0", "mail", "50%", str(counts["ab-mail"]["entries"]), str(counts["ab-mail"]["goals"])]
    assert push[:5] == ["1", "push", "50%", str(counts["ab-push"]["entries"]), str(counts["ab-push"]["goals"])]
    assert "winner: arm 1 (push) beats every other arm at 95% confidence" in proc.stdout
    assert f"written to {out_file}" in proc.stdout
    text = out_file.read_text()
    nj = parse_journey(text, "it-ab.yaml", channels=CHANNELS)
    assert (nj.id, nj.version, nj.start) == ("it-ab", 2, "push") and "ab" not in nj.nodes
    assert text.startswith("# An experiment") and len(text.splitlines()) == len(AB.splitlines()) - 1


async def test_no_winner_says_who_leads_and_how_many_more_entries(ab_worker):
    run = uuid.uuid4().hex[:6]
    customers = [f"tie-{run}-{i}" for i in range(16)]
    counts = await run_experiment(ab_worker, "tie.start", customers, {"tie-mail": 0.5, "tie-push": 0.5})
    proc = winner(ab_worker, "it-tie", "--json", "--confidence", "99")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["winner"] is None and report["next_version_text"] is None and report["confidence"] == 0.99
    assert [(a["entries"], a["goals"]) for a in report["arms"]] == \
        [(counts[t]["entries"], counts[t]["goals"]) for t in ("tie-mail", "tie-push")]
    assert report["verdict"].startswith(("arm ", "no arm leads"))
    if report["more_entries"] is not None:
        assert report["more_entries"]["per_arm"] > max(a["entries"] for a in report["arms"])


def test_winner_refuses_a_confidence_that_is_not_a_percentage(ab_worker):
    proc = winner(ab_worker, "it-ab", "--confidence", "0.95")
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: --confidence 0.95 is not a percentage") and \
        "Traceback" not in proc.stderr
