"""Which commands create topics, and how (docs/operations.md), on the real broker.

The local broker runs with ``auto.create.topics.enable=false``, as production clusters do: a topic
exists only because a command created it on purpose, with the worker's settings.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.integration.harness import BOOTSTRAP, HERE, WorkerProcess, free_port, total

ROOT = HERE.parent.parent
CHANNELS = ("email", "sms", "push", "inapp", "web", "ads")      # tests/integration/policies.yaml
COMPACTED = {"journeys", "internal.state-changelog"}


def worker_topics(prefix: str) -> set[str]:
    return ({f"{prefix}.{s}" for s in ("events", "internal.events-by-customer", "suppressions", "decisions", "dlq",
                                        "journeys", "internal.state-changelog", "internal.dedup-changelog")}
            | {f"{prefix}.actions.{c}" for c in CHANNELS})


async def describe(prefix: str) -> dict[str, tuple[int, str]]:
    """Every topic of ``prefix``: (partition count, cleanup.policy)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix + ".")]
        if not names:
            return {}
        parts = {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(names)}
        policies: dict[str, str] = {}
        resources = [ConfigResource(ConfigResourceType.TOPIC, t, {"cleanup.policy": None}) for t in names]
        for response in await admin.describe_configs(resources):
            for res in response.to_object()["resources"]:
                for entry in res["config_entries"]:
                    policies[res["resource_name"]] = entry["config_value"]
        return {t: (parts[t], policies[t]) for t in names}
    finally:
        await admin.close()


async def topic_config(topic: str, name: str) -> str | None:
    """One topic-level config value, as the broker reports it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        for response in await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, {name: None})]):
            for res in response.to_object()["resources"]:
                for entry in res["config_entries"]:
                    if entry["config_names"] == name:
                        return entry["config_value"]
        return None
    finally:
        await admin.close()


def env_for(prefix: str, tmp: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "ORCH_BOOTSTRAP": BOOTSTRAP, "ORCH_TOPIC_PREFIX": prefix, "ORCH_PARTITIONS": "4",
            "ORCH_POLICIES": str(HERE / "policies.yaml"), "ORCH_DATA_DIR": str(tmp / f"cli-{prefix}"), **extra}


def cli(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], env=env, capture_output=True, text=True,
                          timeout=180, cwd=cwd)


def one_sentence(result: subprocess.CompletedProcess[str]) -> str:
    """The command failed with exactly one line on stderr and no traceback; that line."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    return lines[0]


def new_prefix() -> str:
    return f"it-{uuid.uuid4().hex[:10]}"


async def test_fresh_prefix_publish_then_explain_then_worker_with_4_partitions(tmp_path):
    """Acceptance: every topic ends as the worker creates it, and the worker runs."""
    prefix = new_prefix()
    env = env_for(prefix, tmp_path)

    published = cli(env, "journeys", "publish", str(HERE / "journeys"))
    assert published.returncode == 0, published.stderr
    # Only the journeys topic, created as the worker creates it: ORCH_PARTITIONS, compacted.
    assert await describe(prefix) == {f"{prefix}.journeys": (4, "compact")}

    explained = cli(env, "explain", "c-1")
    line = one_sentence(explained)
    assert "no such topic" in line and f"{prefix}.decisions" in line and "ORCH_BOOTSTRAP" in line
    assert await describe(prefix) == {f"{prefix}.journeys": (4, "compact")}      # explain created nothing

    (tmp_path / "no-files").mkdir()                 # an empty journeys folder: published journeys only
    w = WorkerProcess(tmp_path, prefix=prefix, partitions=4, journeys=tmp_path / "no-files").start()
    try:
        topics = await describe(prefix)
        assert set(topics) == worker_topics(prefix)
        for name, (partitions, policy) in topics.items():
            assert partitions == 4, name
            assert policy == ("compact" if name[len(prefix) + 1:] in COMPACTED else "delete"), name
        # An erased customer's earlier states and journals are compacted away within a day.
        assert await topic_config(f"{prefix}.internal.state-changelog", "max.compaction.lag.ms") == "86400000"
        # The duplicate window's changelog is deleted by age, after longer than its keys live (26 h).
        assert int(await topic_config(f"{prefix}.internal.dedup-changelog", "retention.ms")) > 26 * 3_600_000
        deadline = time.monotonic() + 60
        while total(w.metrics(), "orch_journey_publications_total{result=loaded}") < 2:
            assert time.monotonic() < deadline, w.log_tail()
            time.sleep(0.2)
        assert w.exit_code() is None
    finally:
        w.stop()


async def test_read_only_commands_create_nothing_and_say_no_such_topic(tmp_path):
    prefix = new_prefix()
    env = env_for(prefix, tmp_path)
    for args in (["explain", "c-1"], ["explain", "c-1", "--json"], ["stats"], ["journeys", "list", "--published"],
                 ["journeys", "diff", str(HERE / "journeys")], ["journeys", "diff", "--shadow", "it-welcome"]):
        line = one_sentence(cli(env, *args))
        assert line.startswith("error: no such topic") and prefix in line and BOOTSTRAP in line, (args, line)
    assert await describe(prefix) == {}


async def worker_refusal(tmp_path, existing: NewTopic) -> str:  # noqa: ANN001
    """Create ``existing`` (a topic of a fresh prefix), start a worker on that prefix: it must stop
    with exit status 1; its one sentence."""
    prefix = existing.name.split(".", 1)[0]
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([existing])
    finally:
        await admin.close()
    result = await asyncio.to_thread(cli, env_for(prefix, tmp_path, ORCH_WEB_PORT=str(free_port()),
                                                  ORCH_JOURNEYS=str(HERE / "journeys")), "worker")
    assert result.returncode == 1
    return one_sentence(result)


@pytest.mark.parametrize("suffix", ["internal.state-changelog", "journeys"])
async def test_worker_refuses_a_topic_that_must_be_compacted_but_is_not(tmp_path, suffix):
    topic = f"{new_prefix()}.{suffix}"
    line = await worker_refusal(tmp_path, NewTopic(topic, 4, 1))   # the broker's default: cleanup.policy=delete
    assert topic in line and "cleanup.policy=delete" in line and "cleanup.policy=compact" in line, line


async def test_worker_refuses_a_compacted_duplicate_window_changelog(tmp_path):
    topic = f"{new_prefix()}.internal.dedup-changelog"
    line = await worker_refusal(tmp_path, NewTopic(topic, 4, 1, topic_configs={"cleanup.policy": "compact"}))
    assert topic in line and "cleanup.policy=compact" in line and "must be delete" in line, line


def test_connection_failures_are_one_sentence_for_every_command(tmp_path):
    address = f"127.0.0.1:{free_port()}"                 # nothing listens there
    env = env_for(new_prefix(), tmp_path, ORCH_BOOTSTRAP=address, ORCH_JOURNEYS=str(HERE / "journeys"))
    events = tmp_path / "events.jsonl"
    events.write_text('{"event_id": "e-1", "customer_id": "c-1", "type": "x.y", "ts": 1}\n')
    for args in (["produce", str(events)], ["stats"], ["journeys", "list", "--published"], ["explain", "c-1"],
                 ["journeys", "publish", str(HERE / "journeys")], ["journeys", "diff", str(HERE / "journeys")],
                 ["journeys", "diff", "--shadow", "it-welcome"], ["demo", "--duration", "1"], ["worker"]):
        line = one_sentence(cli(env, *args, cwd=tmp_path))
        assert f"cannot reach Kafka at {address}" in line and "ORCH_BOOTSTRAP" in line, (args, line)
