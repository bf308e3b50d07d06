"""Topic names and creation (SPEC §1)."""

from __future__ import annotations

import asyncio
import logging
import re

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from orchestrator.config import Settings

log = logging.getLogger(__name__)


def output_topics(settings: Settings, channels: tuple[str, ...]) -> list[str]:
    return ([settings.topic(f"actions.{c}") for c in channels]
            + [settings.topic("suppressions"), settings.topic("decisions"), settings.topic("dlq")])


def all_topics(settings: Settings, channels: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """Every topic the product uses, with its topic-level configs."""
    topics: dict[str, dict[str, str]] = {settings.events_topic: {}, settings.keyed_topic: {}}
    for name in output_topics(settings, channels):
        topics[name] = {}
    topics[settings.topic("journeys")] = {"cleanup.policy": "compact"}
    topics[settings.changelog_topic] = {"cleanup.policy": "compact"}
    return topics


class _AuthFailures(logging.Handler):
    """Notices aiokafka's log lines about refused credentials or an untrusted certificate (it then
    raises a plain connection error)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen = False
        self.certificate: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "Authentication" in message:          # also SaslAuthentication...
            self.seen = True
        if "CERTIFICATE_VERIFY_FAILED" in message or "certificate verify failed" in message:
            found = re.search(r"certificate verify failed:?\s*([^(]*)", message)
            self.certificate = found.group(1).strip() if found else ""


async def connect_admin(settings: Settings, timeout_s: float = 60.0) -> AIOKafkaAdminClient:
    """An admin client, started; a failure to connect is one sentence saying what to check."""
    from aiokafka.errors import KafkaConnectionError

    from orchestrator.errors import ConfigError
    admin = AIOKafkaAdminClient(**settings.aiokafka_kwargs(), request_timeout_ms=int(timeout_s * 1000))
    watcher = _AuthFailures()
    aiokafka_log = logging.getLogger("aiokafka")
    aiokafka_log.addHandler(watcher)
    try:
        await admin.start()
    except KafkaConnectionError:
        await admin.close()
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
    return admin


async def ensure_topics(settings: Settings, channels: tuple[str, ...], *, timeout_s: float = 60.0) -> list[str]:
    """Create missing topics with ``ORCH_PARTITIONS`` partitions. Returns the names created."""
    wanted = all_topics(settings, channels)
    admin = await connect_admin(settings, timeout_s)
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if not missing:
            return []
        new = [NewTopic(name, num_partitions=settings.partitions, replication_factor=settings.replication,
                        topic_configs=wanted[name]) for name in missing]
        try:
            await admin.create_topics(new)
        except TopicAlreadyExistsError:
            pass  # another worker won the race
        # Wait until metadata shows them, so producers started next see every partition.
        for _ in range(100):
            if set(missing) <= set(await admin.list_topics()):
                break
            await asyncio.sleep(0.1)
        log.info("created %d topics with %d partitions", len(missing), settings.partitions)
        return missing
    finally:
        await admin.close()


async def check_partitions(settings: Settings) -> None:
    """The events and internal topics must all have ``ORCH_PARTITIONS`` partitions.

    The worker's state is partitioned like its input topics, and an event keyed by its
    customer_id is decided in the partition it arrived in; all need equal counts.
    """
    from orchestrator.errors import ConfigError
    from orchestrator.runtime.client import partitions_of
    topics = [settings.events_topic, settings.keyed_topic, settings.changelog_topic]
    found = await partitions_of(settings, topics)
    for topic in topics:
        count = len(found.get(topic, []))
        if count != settings.partitions:
            raise ConfigError(f"topic {topic} has {count} partitions but ORCH_PARTITIONS is {settings.partitions}; "
                              f"set ORCH_PARTITIONS={count} if the topic was created elsewhere, or use a new "
                              "ORCH_TOPIC_PREFIX")
