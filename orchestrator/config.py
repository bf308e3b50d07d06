"""Settings from the environment (README.md#the-worker), and the one place that maps them to
aiokafka options. The only reader of ``ORCH_*`` variables (the webhook adapter's own flags and
headers are read in :mod:`orchestrator.adapters.options`).

Every variable, its default and meaning:

===============================  =====================  ==============================================
``ORCH_BOOTSTRAP``               ``localhost:9092``     Kafka bootstrap servers (comma separated); unset, the
                                                       local broker's port ``ORCH_LOCAL_KAFKA_PORT`` is used
``ORCH_TOPIC_PREFIX``            ``orch``               prefix of every topic (``orch.events`` ...)
``ORCH_PARTITIONS``              ``8``                  partitions of the topics the worker creates
``ORCH_REPLICATION``             ``1``                  replication factor of the topics it creates
``ORCH_STANDBY_REPLICAS``        ``1``                  warm copies: each worker follows the changelogs of this
                                                       many times its own number of partitions (the next ones)
``ORCH_DATA_DIR``                ``.orch/data``         the worker's RocksDB state (one per worker)
``ORCH_JOURNEYS``                ``journeys/``          folder of journey YAML files (given: must exist)
``ORCH_POLICIES``                ``policies.yaml``      policies file (defaults if absent)
``ORCH_WEB_HOST``                ``127.0.0.1``          address of ``/metrics``, ``/health``
``ORCH_WEB_PORT``                ``6066``               port of the same
``ORCH_MAX_EVENT_BYTES``         ``65536``              larger events are dead-lettered ``too_large`` (simulate and
                                                       backtest too)
``ORCH_PRODUCER_PARTITIONER``    ``murmur2``            how the event producers place keys: ``murmur2`` (the Java
                                                       client, aiokafka, kafka-python) or ``crc32`` (librdkafka's
                                                       default: confluent-kafka, Go, .NET, node-rdkafka, kcat)
``ORCH_KAFKA_SECURITY_PROTOCOL`` ``PLAINTEXT``          PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
``ORCH_KAFKA_SASL_MECHANISM``    ``PLAIN``              PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
``ORCH_KAFKA_SASL_USERNAME``     (none)
``ORCH_KAFKA_SASL_PASSWORD``     (none)                 never logged
``ORCH_KAFKA_SSL_CAFILE``        (none)                 CA bundle for SSL / SASL_SSL
``ORCH_LOG_FORMAT``              ``text``               ``json`` for one JSON object per log line
``ORCH_PROCESSING_GUARANTEE``    ``at-least-once``      or ``exactly-once``: each input partition's share of a batch
                                                       (outputs, changelog, offsets) is one Kafka transaction
``ORCH_HOME``                    ``.orch``              the local broker's and ``make run``'s files
``ORCH_CACHE_DIR``               ``~/.cache/orchestrator``  the local broker's jars, across checkouts
``ORCH_LOCAL_KAFKA_PORT``        ``9092``               the local broker's port (and the default bootstrap)
===============================  =====================  ==============================================
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.core.vocabulary import Topic, actions
from orchestrator.errors import ConfigError

_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
PARTITIONERS = ("murmur2", "crc32")
GUARANTEES = ("at-least-once", "exactly-once")


def external_bootstrap(env: Mapping[str, str] | None = None) -> str | None:
    """``ORCH_BOOTSTRAP`` when set: an existing cluster is meant, so nothing local is started."""
    env = os.environ if env is None else env
    return (env.get("ORCH_BOOTSTRAP") or "").strip() or None


def default_bootstrap(env: Mapping[str, str] | None = None) -> str:
    """``ORCH_BOOTSTRAP``, else the local broker of ``make kafka-up`` (``localhost:$ORCH_LOCAL_KAFKA_PORT``,
    ``localhost:9092`` by default)."""
    env = os.environ if env is None else env
    return external_bootstrap(env) or f"localhost:{(env.get('ORCH_LOCAL_KAFKA_PORT') or '').strip() or '9092'}"


def journeys_dir(env: Mapping[str, str] | None = None) -> str:
    """``ORCH_JOURNEYS``: the folder of journey files (``journeys`` by default)."""
    return (os.environ if env is None else env).get("ORCH_JOURNEYS") or "journeys"


def policies_file(env: Mapping[str, str] | None = None) -> str:
    """``ORCH_POLICIES``: the policies file (``policies.yaml`` by default)."""
    return (os.environ if env is None else env).get("ORCH_POLICIES") or "policies.yaml"


def orch_home(env: Mapping[str, str] | None = None) -> Path:
    """``ORCH_HOME``: where the local broker and ``make run`` keep their files (``.orch`` by default)."""
    return Path((os.environ if env is None else env).get("ORCH_HOME") or ".orch")


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """``ORCH_CACHE_DIR``: the local broker's downloaded jars, kept across checkouts
    (``~/.cache/orchestrator`` by default)."""
    configured = (os.environ if env is None else env).get("ORCH_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "orchestrator"


def local_kafka_port(env: Mapping[str, str] | None = None) -> int | None:
    """``ORCH_LOCAL_KAFKA_PORT`` as a number (``None`` when unset); a value that is not one is a
    :class:`ConfigError`."""
    raw = (os.environ if env is None else env).get("ORCH_LOCAL_KAFKA_PORT", "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"ORCH_LOCAL_KAFKA_PORT={raw!r} is not a port number; set it to a free port such as "
                          "9092.") from None


def max_event_bytes(env: Mapping[str, str] | None = None) -> int:
    """``ORCH_MAX_EVENT_BYTES`` alone: the offline tools (simulate, backtest) refuse as ``too_large``
    what a worker would, without needing the Kafka settings."""
    return _int(os.environ if env is None else env, "ORCH_MAX_EVENT_BYTES", 65536)


def home_partition(env: Mapping[str, str] | None = None) -> Callable[[str], int]:
    """``ORCH_PARTITIONS`` and ``ORCH_PRODUCER_PARTITIONER`` alone: the partition a worker decides a
    customer's events in, for the offline tools' timers (:class:`orchestrator.simulate.Simulation`)."""
    from orchestrator.kafkaio.clients import placement
    env = os.environ if env is None else env
    partitions = _int(env, "ORCH_PARTITIONS", 8)
    place = placement(_partitioner(env))
    return lambda customer_id: place(customer_id.encode(), partitions)


def _partitioner(env: Mapping[str, str]) -> str:
    """``ORCH_PRODUCER_PARTITIONER``, checked (default murmur2)."""
    name = (env.get("ORCH_PRODUCER_PARTITIONER") or "murmur2").strip().lower()
    if name not in PARTITIONERS:
        raise ConfigError(f"ORCH_PRODUCER_PARTITIONER must be murmur2 (Java client, aiokafka) or crc32 "
                          f"(librdkafka's default: confluent-kafka, Go, .NET, kcat), got {name!r}")
    return name


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class Topics:
    """The topic names of one deployment, under its ``ORCH_TOPIC_PREFIX`` (docs/events.md#topics)."""

    prefix: str

    def name(self, suffix: str) -> str:
        """``<prefix>.<suffix>``: a topic of this deployment by the name after its prefix."""
        return f"{self.prefix}.{suffix}"

    def suffix(self, name: str) -> str | None:
        """The name after the prefix of one of this deployment's topics (``None`` for another topic)."""
        return name[len(self.prefix) + 1:] if name.startswith(self.prefix + ".") else None

    @property
    def events(self) -> str:
        return self.name(Topic.EVENTS)

    @property
    def internal_events(self) -> str:
        """Internal: valid events re-keyed by customer_id, and timer wake-ups, by the customer's partition."""
        return self.name(Topic.INTERNAL_EVENTS)

    @property
    def changelog(self) -> str:
        """Internal, compacted: every customer state the worker writes (its RocksDB's source of truth)."""
        return self.name(Topic.CHANGELOG)

    @property
    def dedup_changelog(self) -> str:
        """Internal, deleted by age: the keys of the events each partition decided (the duplicate window)."""
        return self.name(Topic.DEDUP_CHANGELOG)

    @property
    def suppressions(self) -> str:
        return self.name(Topic.SUPPRESSIONS)

    @property
    def decisions(self) -> str:
        return self.name(Topic.DECISIONS)

    @property
    def dlq(self) -> str:
        return self.name(Topic.DLQ)

    @property
    def journeys(self) -> str:
        return self.name(Topic.JOURNEYS)

    def actions(self, channel: str) -> str:
        return self.name(actions(channel))

    def outputs(self, channels: Iterable[str]) -> list[str]:
        """The output topics: one of actions per channel, suppressions, decisions, dead letters."""
        return [*(self.actions(c) for c in channels), self.suppressions, self.decisions, self.dlq]


@dataclass(frozen=True)
class Settings:
    bootstrap: str = "localhost:9092"
    topic_prefix: str = "orch"
    partitions: int = 8
    replication: int = 1
    standby_replicas: int = 1
    data_dir: str = ".orch/data"
    journeys: str = "journeys"
    policies: str = "policies.yaml"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    max_event_bytes: int = 65536
    producer_partitioner: str = "murmur2"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    log_format: str = "text"
    processing_guarantee: str = "at-least-once"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        protocol = env.get("ORCH_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper() or "PLAINTEXT"
        if protocol not in _PROTOCOLS:
            raise ConfigError(f"ORCH_KAFKA_SECURITY_PROTOCOL must be one of {', '.join(_PROTOCOLS)}, got {protocol!r}")
        mechanism = env.get("ORCH_KAFKA_SASL_MECHANISM", "PLAIN").upper() or "PLAIN"
        if mechanism not in _MECHANISMS:
            raise ConfigError(f"ORCH_KAFKA_SASL_MECHANISM must be one of {', '.join(_MECHANISMS)}, got {mechanism!r}")
        prefix = env.get("ORCH_TOPIC_PREFIX", "orch") or "orch"
        if not all(c.isalnum() or c in "._-" for c in prefix):
            raise ConfigError(f"ORCH_TOPIC_PREFIX may only use letters, digits, '.', '_' and '-', got {prefix!r}")
        partitioner = _partitioner(env)
        guarantee = (env.get("ORCH_PROCESSING_GUARANTEE") or "at-least-once").strip().lower()
        if guarantee not in GUARANTEES:
            raise ConfigError(f"ORCH_PROCESSING_GUARANTEE must be at-least-once or exactly-once, got {guarantee!r}")
        log_format = env.get("ORCH_LOG_FORMAT", "text").lower()
        if log_format not in ("text", "json"):
            raise ConfigError(f"ORCH_LOG_FORMAT must be text or json, got {log_format!r}")
        s = cls(
            bootstrap=default_bootstrap(env),
            topic_prefix=prefix,
            partitions=_int(env, "ORCH_PARTITIONS", 8),
            replication=_int(env, "ORCH_REPLICATION", 1),
            standby_replicas=_int(env, "ORCH_STANDBY_REPLICAS", 1, minimum=0),
            data_dir=env.get("ORCH_DATA_DIR") or ".orch/data",
            journeys=journeys_dir(env),
            policies=policies_file(env),
            web_host=env.get("ORCH_WEB_HOST") or "127.0.0.1",
            web_port=_int(env, "ORCH_WEB_PORT", 6066, minimum=0),
            max_event_bytes=_int(env, "ORCH_MAX_EVENT_BYTES", 65536),
            producer_partitioner=partitioner,
            security_protocol=protocol,
            sasl_mechanism=mechanism,
            sasl_username=env.get("ORCH_KAFKA_SASL_USERNAME") or None,
            sasl_password=env.get("ORCH_KAFKA_SASL_PASSWORD") or None,
            ssl_cafile=env.get("ORCH_KAFKA_SSL_CAFILE") or None,
            log_format=log_format,
            processing_guarantee=guarantee,
        )
        if protocol.startswith("SASL") and not (s.sasl_username and s.sasl_password):
            raise ConfigError(f"ORCH_KAFKA_SECURITY_PROTOCOL={protocol} needs ORCH_KAFKA_SASL_USERNAME "
                              "and ORCH_KAFKA_SASL_PASSWORD")
        return s

    # ---------------------------------------------------------------- topic names
    @property
    def topics(self) -> Topics:
        """Every topic name of this deployment."""
        return Topics(self.topic_prefix)

    @property
    def app_id(self) -> str:
        return f"{self.topic_prefix}-orchestrator"

    @property
    def exactly_once(self) -> bool:
        return self.processing_guarantee == "exactly-once"

    # ---------------------------------------------------------------- client options
    def ssl_context(self) -> ssl.SSLContext | None:
        if self.security_protocol not in ("SSL", "SASL_SSL"):
            return None
        return ssl.create_default_context(cafile=self.ssl_cafile)

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Connection options for any aiokafka client (producer, consumer, admin)."""
        kw: dict[str, Any] = {"bootstrap_servers": self.bootstrap.split(","),
                              "security_protocol": self.security_protocol}
        ctx = self.ssl_context()
        if ctx is not None:
            kw["ssl_context"] = ctx
        if self.security_protocol.startswith("SASL"):
            kw.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                      sasl_plain_password=self.sasl_password)
        return kw

    def redacted(self) -> dict[str, Any]:
        """Settings safe to log: no password."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        if out.get("sasl_password"):
            out["sasl_password"] = "***"
        return out
