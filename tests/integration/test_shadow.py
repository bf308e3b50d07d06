"""Shadow journey versions on a real worker: told apart in explain, in /metrics and in `diff --shadow`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.harness import WorkerProcess, dumps, event, produce, read_all, total

JOURNEY = """journey: {jid}
version: {version}
{extra}entry: {{on: {jid}.start, reentry: always}}
start: mail
nodes:
  mail: {{send: email, template: v{version}-mail, next: done}}
  done: {{exit: completed}}
"""


@pytest.fixture(scope="module")
def shadow_worker(tmp_path_factory: pytest.TempPathFactory):
    tmp = Path(tmp_path_factory.mktemp("shadow"))
    (tmp / "no-files").mkdir()                      # an empty journeys folder: published journeys only
    w = WorkerProcess(tmp, journeys=tmp / "no-files").start()
    yield w
    w.stop()


def cli(w: WorkerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], env=w.env, capture_output=True, text=True,
                          timeout=180)


def publish(w: WorkerProcess, tmp: Path, jid: str, version: int, *, shadow: bool = False) -> None:
    folder = tmp / f"{jid}-v{version}"
    folder.mkdir()
    path = folder / "j.yaml"
    path.write_text(JOURNEY.format(jid=jid, version=version, extra="shadow: true\n" if shadow else ""))
    before = total(w.metrics(), "orch_journey_publications_total{result=loaded}")
    result = cli(w, "journeys", "publish", str(path))
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 60
    while total(w.metrics(), "orch_journey_publications_total{result=loaded}") < before + 1:
        assert time.monotonic() < deadline, w.log_tail()
        time.sleep(0.1)


async def enter(w: WorkerProcess, jid: str, customers: list[str]) -> list[dict]:
    await produce(w.topic("events"), [(c.encode(), dumps(event(c, f"{jid}.start"))) for c in customers])
    records = await read_all([w.topic("decisions")], until=lambda rs: all(
        sum(r["value"]["customer_id"] == c and r["value"]["outcome"] == "exited" for r in rs) >= 1 for c in customers))
    return [r["value"] for r in records if r["value"].get("journey") == jid]


async def test_shadow_decisions_are_marked_in_explain_and_counted_apart(shadow_worker, tmp_path):
    w, jid = shadow_worker, f"sh-{uuid.uuid4().hex[:6]}"
    publish(w, tmp_path, jid, 1)
    publish(w, tmp_path, jid, 2, shadow=True)
    customers = [f"{jid}-{i}" for i in range(3)]
    decisions = await enter(w, jid, customers)
    assert sum(d["outcome"] == "sent" and d.get("shadow") is True for d in decisions) == 3
    assert sum(d["outcome"] == "sent" and "shadow" not in d for d in decisions) == 3

    # Every live "sent" is an action; shadow ones are counted under their own label.
    deadline = time.monotonic() + 30
    while True:
        m = w.metrics()
        live_sent = m.get("orch_decisions_total{outcome=sent,shadow=false}", -1)
        if live_sent == total(m, "orch_actions_total{") and m.get("orch_decisions_total{outcome=sent,shadow=true}") == 3:
            break
        assert time.monotonic() < deadline, {k: v for k, v in m.items() if "decisions" in k or "actions" in k}
        time.sleep(0.2)

    text = cli(w, "explain", customers[0]).stdout
    sent = [line for line in text.splitlines() if " sent " in line]
    assert len(sent) == 2, text
    assert [line for line in sent if f"{jid} v2 mail [email] [shadow]:" in line], text
    assert [line for line in sent if f"{jid} v1 mail [email]:" in line and "[shadow]" not in line], text


async def test_diff_shadow_after_a_promotion_compares_with_the_live_version_beside_it(shadow_worker, tmp_path):
    w, jid = shadow_worker, f"sh-{uuid.uuid4().hex[:6]}"
    publish(w, tmp_path, jid, 1)
    publish(w, tmp_path, jid, 2, shadow=True)
    await enter(w, jid, [f"{jid}-a", f"{jid}-b"])            # v1 live beside v2 shadow
    publish(w, tmp_path, jid, 3)                               # the promotion: v3 live, no shadow
    await enter(w, jid, [f"{jid}-c"])

    result = cli(w, "journeys", "diff", "--shadow", jid, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["shadow"]["versions"] == [2]
    assert report["live"]["versions"] == [1]
    assert report["live"]["customers"] == 2 and report["shadow"]["customers"] == 2
    assert report["customers_in_both"] == 2 and report["same_sends"] == 0          # v1-mail against v2-mail
    assert report["live"]["sends"] == {"email:v1-mail": 2}


def test_diff_shadow_of_an_unknown_journey_is_an_error(shadow_worker):
    result = cli(shadow_worker, "journeys", "diff", "--shadow", "nosuch")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr
    assert "journey nosuch has no decisions" in lines[0] and shadow_worker.topic("decisions") in lines[0]
    assert result.stdout == ""
