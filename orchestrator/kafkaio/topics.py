"""Topic names, creation and checks (docs/events.md#topics).

One function, :func:`ensure_topics`, creates topics, always as the worker needs them:
``ORCH_PARTITIONS`` partitions, ``ORCH_REPLICATION`` replicas, ``cleanup.policy=compact`` for
``<prefix>.journeys`` and ``<prefix>.internal.state-changelog``, and deletion after 27 hours for
``<prefix>.internal.dedup-changelog``. The worker creates every topic
at start; ``journeys publish`` creates only the journeys topic and ``produce`` only the topic it
writes to. Read-only commands (``explain``, ``tail``, ``stats``, ``backtest``, ``journeys list
--published``, ``journeys diff``, ``journeys graph --stats``, ``journeys winner``) create nothing:
:func:`require_topics` names a missing topic in one sentence.
Nothing here sends a metadata request for a topic that may not exist, because Kafka creates the
topic in answer (with the broker's defaults) wherever ``auto.create.topics.enable`` is on.
docs/operations.md says the same for operators.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka import errors
from aiokafka.errors import TopicAlreadyExistsError

from orchestrator.config import Settings
from orchestrator.core.dedup import RETAIN_MS
from orchestrator.errors import ConfigError
from orchestrator.kafkaio.clients import existing_partitions, start_client

log = logging.getLogger(__name__)

COMPACTED = {"cleanup.policy": "compact"}
# The changelog holds customer states and journals (outputs, with their params): an erased
# customer's earlier records must be compacted away within a bounded time, not "eventually".
CHANGELOG = {**COMPACTED, "max.compaction.lag.ms": str(24 * 3_600_000)}
# The duplicate window's changelog: a record per partition and batch, useless once its keys have left
# the window, so deleted by age (longer than the keys live in RocksDB, so a restore sees them all).
DEDUP_CHANGELOG = {"cleanup.policy": "delete", "retention.ms": str(RETAIN_MS)}


def all_topics(settings: Settings, channels: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """Every topic the product uses, with its topic-level configs."""
    topics: dict[str, dict[str, str]] = {settings.topics.events: {}, settings.topics.internal_events: {}}
    for name in settings.topics.outputs(channels):
        topics[name] = {}
    topics[settings.topics.journeys] = dict(COMPACTED)
    topics[settings.topics.changelog] = dict(CHANGELOG)
    topics[settings.topics.dedup_changelog] = dict(DEDUP_CHANGELOG)
    return topics


async def connect_admin(settings: Settings, timeout_s: float = 60.0) -> AIOKafkaAdminClient:
    """An admin client, started; a failure to connect is one sentence saying what to check."""
    admin = AIOKafkaAdminClient(**settings.aiokafka_kwargs(), request_timeout_ms=int(timeout_s * 1000))
    await start_client(admin, settings)
    return admin


async def ensure_topics(settings: Settings, channels: tuple[str, ...], *, only: Iterable[str] | None = None,
                        timeout_s: float = 60.0) -> list[str]:
    """Create the missing topics among ``only`` (default: all of them) exactly as the worker needs
    them (see the module docstring). Returns the names created; existing topics are left as they
    are (:func:`check_topics` tells the worker whether it can run on them)."""
    wanted = all_topics(settings, channels)
    names = list(wanted) if only is None else list(only)
    unknown = [n for n in names if n not in wanted]
    if unknown:
        raise ConfigError(f"{', '.join(unknown)} is not a topic of prefix {settings.topic_prefix} "
                          f"(ORCH_TOPIC_PREFIX); its topics are {', '.join(sorted(wanted))}")
    admin = await connect_admin(settings, timeout_s)
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in names if name not in existing]
        if not missing:
            return []
        new = [NewTopic(name, num_partitions=settings.partitions, replication_factor=settings.replication,
                        topic_configs=wanted[name]) for name in missing]
        try:
            await admin.create_topics(new)
        except TopicAlreadyExistsError:
            pass  # another worker won the race
        # Wait until every partition has a leader, so clients started next can read and write them
        # at once (right after creation, Kafka answers NotLeaderForPartition for a moment).
        deadline = asyncio.get_running_loop().time() + timeout_s
        led: dict[str, list[int]] | None = None
        while led is None and asyncio.get_running_loop().time() < deadline:
            led = await _led_partitions(admin, missing)
            if led is None:
                await asyncio.sleep(0.1)
        if led:
            await _wait_readable(settings, led, timeout_s)
        log.info("created %d topics with %d partitions", len(missing), settings.partitions)
        return missing
    finally:
        await admin.close()


async def _led_partitions(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, list[int]] | None:
    """Partition numbers of ``topics`` once every partition of each has a leader, else ``None``."""
    if not set(topics) <= set(await admin.list_topics()):
        return None
    described = await admin.describe_topics(topics)
    if len(described) != len(topics) or not all(
            d["error_code"] == 0 and d["partitions"] and all(p["error_code"] == 0 and p["leader"] >= 0
                                                             for p in d["partitions"]) for d in described):
        return None
    return {d["topic"]: [p["partition"] for p in d["partitions"]] for d in described}


async def _wait_readable(settings: Settings, partitions: dict[str, list[int]], timeout_s: float) -> None:
    """Until every partition answers offset requests: metadata shows a leader a moment before the
    leader serves (aiokafka's consumers log NotLeaderForPartition ERROR lines meanwhile)."""
    consumer = AIOKafkaConsumer(**settings.aiokafka_kwargs(), enable_auto_commit=False,
                                request_timeout_ms=int(timeout_s * 1000))
    await start_client(consumer, settings)
    try:
        await consumer.end_offsets([TopicPartition(t, p) for t, ps in partitions.items() for p in ps])
    finally:
        await consumer.stop()


async def require_topics(settings: Settings, names: list[str], *, hint: str) -> dict[str, list[int]]:
    """Partition numbers of ``names``, which must all exist; creates nothing. A missing topic is one
    sentence naming it, the bootstrap address and ``hint`` (what creates it)."""
    admin = await connect_admin(settings)
    try:
        found = await existing_partitions(admin, names)
    finally:
        await admin.close()
    missing = [n for n in names if n not in found]
    if missing:
        what = f"no such topic {missing[0]}" if len(missing) == 1 else f"no such topics {', '.join(missing)}"
        raise ConfigError(f"{what} on Kafka at {settings.bootstrap}: {hint}; check ORCH_BOOTSTRAP and "
                          f"ORCH_TOPIC_PREFIX={settings.topic_prefix}")
    return found


async def check_topics(settings: Settings) -> None:
    """What the worker needs of the topics that exist (it runs this before creating the missing
    ones, so it refuses to start without touching anything, and after); each problem is one sentence.

    - The events and internal topics must all have ``ORCH_PARTITIONS`` partitions: the worker's
      state is partitioned like its input topics, and an event keyed by its customer_id is decided
      in the partition it arrived in.
    - The changelog and the journeys topic must be compacted (``cleanup.policy=compact``): with
      ``delete``, Kafka drops customer states and journey definitions after the retention time,
      and a worker restoring from them later silently loses them. The duplicate window's changelog
      must not be (``delete``): its records have no key, which a compacted topic refuses.
    """
    topics = [settings.topics.events, settings.topics.internal_events, settings.topics.changelog,
              settings.topics.dedup_changelog]
    admin = await connect_admin(settings)
    try:
        found = await existing_partitions(admin, topics)
        for topic in topics:
            count = len(found.get(topic, []))
            if topic in found and count != settings.partitions:
                raise ConfigError(f"topic {topic} has {count} partitions but ORCH_PARTITIONS is {settings.partitions}; "
                                  f"set ORCH_PARTITIONS={count} if the topic was created elsewhere, or use a new "
                                  "ORCH_TOPIC_PREFIX")
        compacted = [settings.topics.changelog, settings.topics.journeys]
        policies = await cleanup_policies(admin, [*compacted, settings.topics.dedup_changelog])
    finally:
        await admin.close()
    for topic, policy in policies.items():
        if topic == settings.topics.dedup_changelog:
            if "compact" in policy:
                raise ConfigError(
                    f"topic {topic} has cleanup.policy={policy} but must be delete: its records have no key, "
                    f"which a compacted topic refuses; run `kafka-configs.sh --bootstrap-server {settings.bootstrap} "
                    f"--alter --entity-type topics --entity-name {topic} --add-config cleanup.policy=delete`, or use "
                    "a new ORCH_TOPIC_PREFIX")
            continue
        if policy.startswith("error "):
            # Refusing here would stop every worker of a cluster whose ACLs predate this check.
            log.warning("cannot read cleanup.policy of topic %s (%s); grant the worker DescribeConfigs on it so "
                        "it can check that the topic is compacted", topic, policy)
        elif policy != "compact":
            raise ConfigError(
                f"topic {topic} has cleanup.policy={policy} but must be compacted, or Kafka deletes what it holds "
                f"after the retention time; run `kafka-configs.sh --bootstrap-server {settings.bootstrap} --alter "
                f"--entity-type topics --entity-name {topic} --add-config cleanup.policy=compact`, or use a new "
                "ORCH_TOPIC_PREFIX")


async def cleanup_policies(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, str]:
    """``cleanup.policy`` of each existing topic among ``topics`` (see :func:`topic_configs`)."""
    return await topic_configs(admin, topics, "cleanup.policy")


async def topic_configs(admin: AIOKafkaAdminClient, topics: list[str], name: str) -> dict[str, str]:
    """The topic-level config ``name`` of each existing topic among ``topics``, as in effect (the
    broker's default unless the topic sets it); ``"error <name>"`` if Kafka would not say, e.g.
    without the DescribeConfigs right."""
    present = set(await admin.list_topics())
    resources = [ConfigResource(ConfigResourceType.TOPIC, t, {name: None}) for t in topics if t in present]
    if not resources:
        return {}
    out: dict[str, str] = {}
    for response in await admin.describe_configs(resources):
        for res in response.to_object()["resources"]:
            if res["error_code"] != 0:
                out[res["resource_name"]] = f"error {errors.for_code(res['error_code']).__name__}"
                continue
            for entry in res["config_entries"]:
                if entry["config_names"] == name:
                    out[res["resource_name"]] = entry["config_value"]
    return out
