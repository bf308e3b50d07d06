"""Small aiokafka helpers: start a client (one sentence when Kafka cannot be reached), produce JSON
lines, find topics without creating them."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable
from typing import BinaryIO

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from orchestrator.config import Settings
from orchestrator.errors import ConfigError


def key_of(line: bytes) -> bytes | None:
    """The customer_id of a JSON event line, as the message key (None if unreadable)."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    cid = data.get("customer_id") if isinstance(data, dict) else None
    return cid.encode() if isinstance(cid, str) else None


async def produce_lines(settings: Settings, lines: Iterable[bytes] | BinaryIO, *, topic: str) -> int:
    """Send each non-empty line as one message keyed by its customer_id. Returns the count."""
    producer = AIOKafkaProducer(**settings.aiokafka_kwargs(), linger_ms=5, acks="all",
                                max_request_size=2 * 1024 * 1024, enable_idempotence=True)
    await start_client(producer, settings)
    sent = 0
    try:
        futures = []
        for line in lines:
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            futures.append(await producer.send(topic, value=line, key=key_of(line)))
            sent += 1
        for f in futures:
            await f
    finally:
        await producer.stop()
    return sent


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
