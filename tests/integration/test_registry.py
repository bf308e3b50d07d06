"""What workers and the command line make of the journeys topic: one content per (id, version),
refusals counted once, and listings that show what runs."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.integration.harness import WorkerProcess, dumps, event, produce, read_all, total

JOURNEY = """journey: {jid}
version: {version}
{extra}entry: {{on: reg.start, reentry: always}}
start: pause
nodes:
  pause: {{wait: 2s, next: mail}}
  mail: {{send: email, template: {template}, next: done}}
  done: {{exit: completed}}
"""


def definition(jid: str, version: int, template: str | None = None, extra: str = "") -> str:
    return JOURNEY.format(jid=jid, version=version, extra=extra, template=template or f"v{version}-mail")


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], env=env, capture_output=True, text=True,
                          timeout=180)


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def publications(w: WorkerProcess, result: str) -> float:
    return total(w.metrics(), f"orch_journey_publications_total{{result={result}}}")


def wait_publications(w: WorkerProcess, result: str, n: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while publications(w, result) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"worker did not report {n} {result} publications:\n{w.log_tail()}")
        time.sleep(0.1)


def of(records, customer):
    return [r["value"] for r in records if r["value"].get("customer_id") == customer]


async def test_worker_refuses_new_content_for_a_version_it_has_and_counts_it_once(tmp_path):
    jid = f"reg-{uuid.uuid4().hex[:6]}"
    (tmp_path / "no-files").mkdir()                 # an empty journeys folder: published journeys only
    w = WorkerProcess(tmp_path, journeys=tmp_path / "no-files").start()
    try:
        published = cli(w.env, "journeys", "publish", str(write(tmp_path / "v1", "j.yaml", definition(jid, 1))))
        assert published.returncode == 0, published.stderr
        wait_publications(w, "loaded", 1)
        a, b = f"{jid}-a", f"{jid}-b"
        await produce(w.topic("events"), [(a.encode(), dumps(event(a, "reg.start")))])
        await read_all([w.topic("decisions")], until=lambda rs: len(of(rs, a)) >= 1)

        # Version 1 again with other templates, written around the command line (which refuses it).
        changed = definition(jid, 1, template="changed-mail").encode()
        await produce(w.topic("journeys"), [(jid.encode(), changed)])
        wait_publications(w, "refused", 1)
        # The same content as loaded is no refusal.
        await produce(w.topic("journeys"), [(jid.encode(), definition(jid, 1).encode())])
        wait_publications(w, "loaded", 2)
        assert publications(w, "refused") == 1

        await produce(w.topic("events"), [(b.encode(), dumps(event(b, "reg.start")))])
        actions = await read_all([w.topic("actions.email")], until=lambda rs: of(rs, a) and of(rs, b))
        # In flight (a) and new (b) customers both run version 1 as first loaded.
        assert [x["template"] for x in of(actions, a)] == ["v1-mail"]
        assert [x["template"] for x in of(actions, b)] == ["v1-mail"]
        log = w.log_path.read_text()
        refusals = [line for line in log.splitlines() if " ERROR " in line and "refused" in line]
        assert len(refusals) == 1 and f"{jid} version 1 is already loaded with different content" in refusals[0]
        assert "replaced" not in log
    finally:
        w.stop()

    # A restart reads the refused record again: logged at INFO, not counted a second time.
    logged_before = len(w.log_path.read_text().splitlines())
    w.start()
    try:
        wait_publications(w, "loaded", 1)
        assert publications(w, "refused") == 0
        after = w.log_path.read_text().splitlines()[logged_before:]
        assert not [line for line in after if " ERROR " in line], after
        assert [line for line in after if " INFO " in line and "still refused" in line]
    finally:
        w.stop()


def test_published_listing_shows_live_shadow_older_and_refused_and_diff_uses_the_live_version(tmp_path):
    jid = f"reg-{uuid.uuid4().hex[:6]}"
    prefix = f"it-{uuid.uuid4().hex[:10]}"
    w = WorkerProcess(tmp_path, prefix=prefix)            # not started: its environment is enough here
    env = w.env
    for version, extra in ((1, ""), (2, ""), (3, "shadow: true\n")):
        result = cli(env, "journeys", "publish", str(write(tmp_path / f"v{version}", "j.yaml",
                                                           definition(jid, version, extra=extra))))
        assert result.returncode == 0, result.stderr
    asyncio.run(produce(f"{prefix}.journeys", [(jid.encode(), definition(jid, 2, template="changed").encode())]))

    listing = cli(env, "journeys", "list", "--published")
    assert listing.returncode == 0, listing.stderr
    rows = [line.split("\t") for line in listing.stdout.splitlines() if line.startswith(jid + "\t")]
    assert [row[:3] for row in rows] == [[jid, "v2", "live"], [jid, "v3", "shadow"], [jid, "v1", "older"],
                                         [jid, "v2", "refused"]], listing.stdout
    assert "already loaded with different content" in rows[3][-1]

    # The local file of the live version is unchanged against what runs, not against the refused record.
    same = cli(env, "journeys", "diff", "--exit-code", str(write(tmp_path / "local", "j.yaml", definition(jid, 2))))
    assert same.returncode == 0 and same.stdout.strip() == f"{jid}: unchanged (version 2)", same.stdout
    # A new local version is shown against the live version.
    new = cli(env, "journeys", "diff", "--exit-code", str(write(tmp_path / "local4", "j.yaml", definition(jid, 4))))
    assert new.returncode == 1 and f"--- {jid} v2 (published, live)" in new.stdout, new.stdout
    assert "-  mail: {send: email, template: v2-mail, next: done}" in new.stdout
