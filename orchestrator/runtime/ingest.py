"""Records of ``<prefix>.events`` as they arrive: validated, and decided where they are or forwarded.

- A record that is not a valid event (docs/events.md#dead-letters) becomes a dead letter, with the
  original key, topic, partition and offset, and the raw text cut to 4 KiB.
- A valid event keyed by its customer_id, in the partition ``ORCH_PRODUCER_PARTITIONER`` puts that
  key in, is in its customer's home partition: it is decided at once.
- Any other valid event is forwarded, re-keyed by its customer_id, to the customer's partition of
  ``<prefix>.internal.events-by-customer`` and decided when it comes back from there. Events keyed
  by customer_id but placed elsewhere point at a producer on another partitioner: the worker says
  so once, with what to set.

Every valid event moves its partition's input time (:mod:`~orchestrator.runtime.eventtime`): it has
been read from there, wherever it is decided.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson

from orchestrator.config import Settings
from orchestrator.core.events import Event, Rejection, dead_letter, encode_event
from orchestrator.core.validation import parse_event
from orchestrator.runtime.collector import Collector
from orchestrator.runtime.counters import Tally
from orchestrator.runtime.eventtime import Clocks

log = logging.getLogger("orchestrator.worker")


@dataclass(frozen=True, slots=True)
class IngestRules:
    """The settings ingest applies: ``ORCH_MAX_EVENT_BYTES`` and ``ORCH_PRODUCER_PARTITIONER``."""

    max_event_bytes: int
    partitioner: str

    @classmethod
    def of(cls, settings: Settings) -> IngestRules:
        return cls(settings.max_event_bytes, settings.producer_partitioner)


class Ingest:
    """Validation, dead letters and re-keying of the events topic's records."""

    def __init__(self, rules: IngestRules, keyed_topic: str, channels: tuple[str, ...], collector: Collector,
                 clocks: Clocks, dlq_topic: str) -> None:
        self.rules, self.channels, self.collector, self.clocks = rules, channels, collector, clocks
        self._max_bytes = rules.max_event_bytes          # read per event: held natively
        self.dlq_topic = dlq_topic
        self.keyed_topic = keyed_topic
        self._home_count = collector.partition_counts[keyed_topic]
        self._keyed_here = self._keyed_elsewhere = 0     # events keyed by customer_id: at home or not
        self._warned = False

    def take(self, msg: Any, p: int, now_ms: int, tally: Tally) -> tuple[bytes, Event] | None:
        """``(customer key, event)`` to decide here and now, or ``None``: dead-lettered or forwarded."""
        value = msg.value
        try:
            parsed = parse_event(value, max_bytes=self._max_bytes, now_ms=now_ms,
                                 channels=self.channels)
        except Exception as exc:  # noqa: BLE001 - the core promises not to raise; never crash on input anyway
            log.exception("event validation failed unexpectedly")
            parsed = Rejection("invalid_schema", f"validation error: {type(exc).__name__}")
        if isinstance(parsed, Rejection):
            tally.dead[parsed.reason] += 1
            record = dead_letter(parsed, topic=msg.topic, partition=p, offset=msg.offset, raw=value, now_ms=now_ms)
            self.collector.send(self.dlq_topic, msg.key, orjson.dumps(record))
            return None
        self.clocks.observe(p, parsed.ts_ms)
        cid = parsed.customer_id.encode()
        home = self.collector.place(cid, self._home_count)      # = the partition of the customer's state
        if msg.key == cid:
            if p == home:
                self._keyed_here += 1
                return cid, parsed
            self._keyed_elsewhere += 1
            tally.rekeyed["partition"] += 1
            if not self._warned:
                self._warn_partitioner()
        else:
            tally.rekeyed["key"] += 1
        self.collector.send(self.keyed_topic, cid, encode_event(parsed), home)
        return None

    def _warn_partitioner(self) -> None:
        """Once: events keyed by customer_id arrive where the configured partitioner does not put them."""
        self._warned = True
        name = self.rules.partitioner
        other = "crc32" if name == "murmur2" else "murmur2"
        log.warning(
            "an event keyed by its customer_id arrived in another partition than ORCH_PRODUCER_PARTITIONER=%s "
            "places it (%d of %d such events so far); each takes a second produce and consume through %s. "
            "The producers probably use %s: set ORCH_PRODUCER_PARTITIONER=%s (or give the producers %s); "
            "orch_events_rekeyed_total{reason=\"partition\"} counts them", name, self._keyed_elsewhere,
            self._keyed_here + self._keyed_elsewhere, self.keyed_topic,
            "librdkafka's default partitioner (confluent-kafka, Go, .NET, node-rdkafka, kcat)" if other == "crc32"
            else "murmur2 (the Java client, aiokafka)", other,
            "partitioner=murmur2_random" if name == "murmur2" else "a CRC-32 partitioner")
