"""Kafka conventions every part of the product shares: where a key's records go, how a client is
started, which topics exist, and how a topic is read to its end.

- The one partitioner, :func:`placement`: how the event producers place a key
  (``ORCH_PRODUCER_PARTITIONER``): ``murmur2`` (Kafka's default for keyed records in the Java
  client and aiokafka) or ``crc32`` (librdkafka's default, ``consistent_random``). The worker
  places a customer's state, its internal-topic records and its outputs with it, so events keyed
  by customer_id are decided where they arrive, and ``explain`` finds the customer's changelog and
  decisions partitions with it.
- :func:`start_client`: any aiokafka client started with one sentence when Kafka cannot be
  reached, refuses the credentials or presents an untrusted certificate.
- :func:`existing_partitions` / :func:`partitions_of`: topics found without creating them.
- :func:`read_to_end`: the records of some partitions from a start up to their end as it was when
  the read began (restore, the journeys topic, the decisions topic, ``explain``).
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from orchestrator.config import Settings
from orchestrator.core.ids import murmur2
from orchestrator.errors import ConfigError


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of ``key`` among ``partitions`` with murmur2 (the Java client's default)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def crc32_partition(key: bytes, partitions: int) -> int:
    """The partition of ``key`` with librdkafka's default partitioner (``consistent_random``:
    CRC-32 of the key modulo the partition count, for non-empty keys)."""
    return zlib.crc32(key) % partitions


def placement(partitioner: str) -> Callable[[bytes, int], int]:
    """The partitioner named by ``ORCH_PRODUCER_PARTITIONER`` (``settings.producer_partitioner``)."""
    return crc32_partition if partitioner == "crc32" else partition_for


async def read_to_end(consumer: AIOKafkaConsumer, starts: dict[TopicPartition, int | None], *,
                      ends: dict[TopicPartition, int] | None = None, deadline_s: float | None = None,
                      max_records: int = 10_000) -> AsyncIterator[tuple[TopicPartition, list[Any]]]:
    """Yield ``(partition, records)`` batches of each partition from its start (``None``: its first
    offset; a start before the first offset begins there) up to ``ends`` (default: the end offsets
    when the read begins), stopping early after ``deadline_s``.

    A partition is done when the consumer's position reaches its end, not when a record with the
    last offset arrives: compaction may have removed the last offsets. ``consumer`` is assigned the
    partitions (an explicit seek, never ``seek_to_beginning``, whose reset races a new assignment).
    """
    tps = list(starts)
    if not tps:
        return
    consumer.assign(tps)
    if ends is None:
        ends = await consumer.end_offsets(tps)
    begins = await consumer.beginning_offsets(tps)
    remaining: set[TopicPartition] = set()
    for tp in tps:
        start = begins[tp] if starts[tp] is None else max(starts[tp], begins[tp])
        consumer.seek(tp, start)
        if start < ends[tp]:
            remaining.add(tp)
    deadline = None if deadline_s is None else time.monotonic() + deadline_s
    while remaining and (deadline is None or time.monotonic() < deadline):
        batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=max_records)
        for tp, msgs in batch.items():
            end = ends[tp]
            if msgs and msgs[-1].offset >= end:
                msgs = [m for m in msgs if m.offset < end]
            if msgs:
                yield tp, msgs
        for tp in list(remaining):
            if await consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)


async def partitions_of(settings: Settings, topics: list[str]) -> dict[str, list[int]]:
    """Partition numbers of each existing topic among ``topics`` (missing topics are left out, and
    not created)."""
    from aiokafka.admin import AIOKafkaAdminClient
    admin = AIOKafkaAdminClient(**settings.aiokafka_kwargs())
    await start_client(admin, settings)
    try:
        return await existing_partitions(admin, topics)
    finally:
        await admin.close()


async def existing_partitions(admin, topics: list[str]) -> dict[str, list[int]]:  # noqa: ANN001 - admin client
    """Partition numbers of each existing topic among ``topics``, creating none.

    A metadata request that names a missing topic makes a broker with
    ``auto.create.topics.enable=true`` create it with the broker's defaults (aiokafka asks for
    that), so the names come first from the list of all topics, and only existing ones are
    described.
    """
    present = set(await admin.list_topics())
    wanted = [t for t in dict.fromkeys(topics) if t in present]
    if not wanted:
        return {}
    described = await admin.describe_topics(wanted)
    return {d["topic"]: sorted(p["partition"] for p in d["partitions"])
            for d in described if d["error_code"] == 0 and d["partitions"]}


class _AuthFailures(logging.Handler):
    """Holds aiokafka's log lines while a client starts: they tell refused credentials or an
    untrusted certificate apart (aiokafka then raises a plain connection error). If the start
    fails they are dropped, the user gets one sentence instead; if it succeeds they are passed on."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self.seen = False
        self.certificate: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        message = record.getMessage()
        if "Authentication" in message:          # also SaslAuthentication...
            self.seen = True
        if "CERTIFICATE_VERIFY_FAILED" in message or "certificate verify failed" in message:
            found = re.search(r"certificate verify failed:?\s*([^(]*)", message)
            self.certificate = found.group(1).strip() if found else ""


async def start_client(client, settings: Settings) -> None:  # noqa: ANN001 - producer, consumer or admin
    """Start any aiokafka client (producer, consumer, admin). A broker that cannot be reached, refuses
    the credentials or presents an untrusted certificate is one :class:`ConfigError` sentence naming
    the bootstrap address and the setting to check, for every command alike."""
    watcher = _AuthFailures()
    aiokafka_log = logging.getLogger("aiokafka")
    aiokafka_log.addHandler(watcher)
    propagate, aiokafka_log.propagate = aiokafka_log.propagate, False
    try:
        await client.start()
    except KafkaConnectionError:
        watcher.records.clear()
        with contextlib.suppress(Exception):
            await (client.close() if hasattr(client, "close") else client.stop())
        if watcher.certificate is not None:
            raise ConfigError(
                f"Kafka at {settings.bootstrap} presented a TLS certificate that "
                f"{settings.ssl_cafile or 'the system CA bundle'} does not trust (certificate verify failed"
                f"{': ' + watcher.certificate if watcher.certificate else ''}); point ORCH_KAFKA_SSL_CAFILE at "
                "the CA bundle that signed the brokers' certificates") from None
        if watcher.seen:
            raise ConfigError(
                f"Kafka at {settings.bootstrap} refused the credentials: authentication failed for user "
                f"{settings.sasl_username!r} with {settings.sasl_mechanism}; check ORCH_KAFKA_SASL_USERNAME, "
                "ORCH_KAFKA_SASL_PASSWORD and ORCH_KAFKA_SASL_MECHANISM") from None
        raise ConfigError(
            f"cannot reach Kafka at {settings.bootstrap} ({settings.security_protocol}); start one with "
            "`make kafka-up` or point ORCH_BOOTSTRAP at a running cluster") from None
    finally:
        aiokafka_log.removeHandler(watcher)
        aiokafka_log.propagate = propagate
        for record in watcher.records:          # a start that succeeded after all: nothing hidden
            logging.getLogger(record.name).handle(record)


async def seek_to_start(consumer, tps) -> None:  # noqa: ANN001 - AIOKafkaConsumer, list[TopicPartition]
    """Position ``tps`` at their first offsets.

    ``seek_to_beginning`` right after ``assign`` races with the default "latest" reset of
    a new assignment (positions came back at the end); an explicit seek does not.
    """
    begins = await consumer.beginning_offsets(tps)
    for tp in tps:
        consumer.seek(tp, begins[tp])
