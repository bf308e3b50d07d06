"""Journeys published to the compacted topic are picked up live; in-flight customers keep their version."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.integration.harness import WorkerProcess, dumps, event, produce, read_all, total

DEFINITION = """journey: it-pub
version: {version}
{extra}entry: {{on: pub.start, reentry: always}}
start: pause
nodes:
  pause: {{wait: 3s, next: mail}}
  mail: {{send: email, template: v{version}-mail, next: done}}
  done: {{exit: completed}}
"""


def of(records, customer):
    return [r for r in records if r["value"].get("customer_id") == customer]


def cli(w: WorkerProcess, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], env=w.env, capture_output=True,
                          timeout=120, check=check)


def write(folder: Path, version: int, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"it-pub-v{version}.yaml"
    path.write_text(DEFINITION.format(version=version, extra=extra))
    return path


def wait_publications(w: WorkerProcess, result: str, n: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if total(w.metrics(), f"orch_journey_publications_total{{result={result}}}") >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"worker did not report {n} {result} publications:\n{w.log_tail()}")


async def start(w: WorkerProcess, customer: str) -> None:
    await produce(w.topic("events"), [(customer.encode(), dumps(event(customer, "pub.start")))])


async def test_publish_new_version_while_customers_wait(tmp_path):
    empty = tmp_path / "no-journeys"
    empty.mkdir()
    w = WorkerProcess(tmp_path, journeys=empty).start()
    try:
        pid = w.proc.pid
        run = uuid.uuid4().hex[:6]
        a, b, c, d, e = (f"p-{run}-{x}" for x in "abcde")

        out = cli(w, "journeys", "publish", str(write(tmp_path / "v1", 1)))
        assert b"publishing it-pub version 1" in out.stdout
        wait_publications(w, "loaded", 1)
        await start(w, a)                                       # a waits 3 s in version 1
        await read_all([w.topic("decisions")], until=lambda rs: len(of(rs, a)) >= 1)

        cli(w, "journeys", "publish", str(write(tmp_path / "v2", 2)))
        wait_publications(w, "loaded", 2)
        await start(w, b)                                       # b enters version 2

        # A definition that is not valid, sent around the CLI's validation: refused, v2 keeps running.
        await produce(w.topic("journeys"), [(b"it-pub", b"journey: it-pub\nversion: 9\nnodes: [\n")])
        wait_publications(w, "refused", 1)
        await start(w, c)

        actions = await read_all([w.topic("actions.email")],
                                 until=lambda rs: all(len(of(rs, x)) >= 1 for x in (a, b, c)))
        assert [(r["value"]["journey_version"], r["value"]["template"]) for r in of(actions, a)] == [(1, "v1-mail")]
        assert [(r["value"]["journey_version"], r["value"]["template"]) for r in of(actions, b)] == [(2, "v2-mail")]
        assert [(r["value"]["journey_version"], r["value"]["template"]) for r in of(actions, c)] == [(2, "v2-mail")]

        # Re-publishing changed content under an existing version is refused by the CLI.
        changed = write(tmp_path / "v2b", 2, extra="priority: 5\n")
        refused = cli(w, "journeys", "publish", str(changed), check=False)
        assert refused.returncode == 1 and b"bump version" in refused.stderr

        # A shadow version runs on live traffic: decisions recorded, nothing sent.
        cli(w, "journeys", "publish", str(write(tmp_path / "v3", 3, extra="shadow: true\n")))
        wait_publications(w, "loaded", 3)
        await start(w, d)
        decisions = await read_all([w.topic("decisions")], until=lambda rs: sum(
            r["value"]["outcome"] == "exited" for r in of(rs, d)) >= 2)
        shadow = [r["value"] for r in of(decisions, d) if r["value"].get("shadow")]
        live = [r["value"] for r in of(decisions, d) if not r["value"].get("shadow")]
        assert [x["outcome"] for x in shadow] == ["entered", "sent", "exited"]
        assert {x["journey_version"] for x in shadow} == {3}
        assert [x["outcome"] for x in live] == ["entered", "sent", "exited"]
        actions = await read_all([w.topic("actions.email")])
        assert [r["value"]["journey_version"] for r in of(actions, d)] == [2]
        report = json.loads(cli(w, "journeys", "diff", "--shadow", "it-pub", "--json").stdout)
        # Against the live version that ran beside the shadow (v2), not every live version so far.
        assert report["live"]["versions"] == [2] and report["shadow"]["versions"] == [3]
        assert report["customers_in_both"] == 1 and report["same_sends"] == 0    # v2-mail vs v3-mail

        # enabled: false stops new entries.
        cli(w, "journeys", "publish", str(write(tmp_path / "v4", 4, extra="enabled: false\n")))
        wait_publications(w, "loaded", 4)
        await start(w, e)
        marker = f"p-{run}-marker"
        cli(w, "journeys", "publish", str(write(tmp_path / "v5", 5)))
        wait_publications(w, "loaded", 5)
        await start(w, marker)                                  # processed after e (same topic, v5 live)
        decisions = await read_all([w.topic("decisions")], until=lambda rs: len(of(rs, marker)) >= 1)
        assert of(decisions, e) == []

        listing = cli(w, "journeys", "list", "--published").stdout.decode()
        assert "it-pub\tv5\tlive" in listing
        assert w.proc.poll() is None and w.proc.pid == pid      # no restart at any point
    finally:
        w.stop()
