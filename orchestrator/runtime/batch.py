"""Steps 1-2 of the worker's protocol (see :mod:`orchestrator.runtime.worker`): one batch of
records in, decided by the pure core, its outputs and changelog records out.

The path of one input, each step in a room of its own:

- :mod:`~orchestrator.runtime.ingest`: a record of ``<prefix>.events`` is validated (a bad one is
  dead-lettered) and decided at once if it is in its customer's partition, else forwarded re-keyed
  to the internal topic and decided when it comes back;
- :meth:`Decider.decide`: an input decided before a crash re-sends its outputs from the
  :mod:`~orchestrator.runtime.journal` and decides nothing again; an event seen within the
  duplicate window (:mod:`~orchestrator.runtime.dedup`) is ignored; any other input is decided by
  the engine on the customer's state, read once per batch by the
  :mod:`~orchestrator.runtime.transaction`; its outputs go to the
  :mod:`~orchestrator.runtime.collector` and into the journal;
- at the end of the batch, one changelog record per changed customer and one journal record per
  input partition, after the outputs; everything is handed to the producer at once (in
  exactly-once, each input partition's records in its own transaction, see
  :mod:`~orchestrator.runtime.transactions`, and no journal). The duplicate window's new keys
  follow: in the transaction, or, at-least-once, from the checkpoint once the states are durable.

A record the batch path cannot handle (an exception in the engine, an undecodable internal record)
is dead-lettered ``engine_error`` and counted; its partition goes on. Counts are kept in plain
integers and pushed to the metrics once per batch (:class:`~orchestrator.runtime.counters.Tally`).

What comes back is a :class:`~orchestrator.runtime.checkpoint.Flush` for steps 3-5.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from typing import Any, NoReturn, cast

import msgspec
import orjson
from aiokafka import AIOKafkaProducer, TopicPartition

from orchestrator.config import Topics
from orchestrator.core import Engine, dedup
from orchestrator.core.engine import next_due_ms
from orchestrator.core.events import Event, Rejection, dead_letter, decode_event
from orchestrator.core.state import STATE_RECORD_MAX_BYTES, legacy_seen
from orchestrator.core.vocabulary import DeadLetter, Topic, is_action
from orchestrator.errors import WorkerFailure
from orchestrator.kafkaio.clients import placement
from orchestrator.kafkaio.service import wall_ms
from orchestrator.runtime.checkpoint import Checkpoint, Flush
from orchestrator.runtime.collector import Collector
from orchestrator.runtime.counters import Counters, Tally
from orchestrator.runtime.eventtime import Clocks
from orchestrator.runtime.ingest import Ingest, IngestRules
from orchestrator.runtime.journal import ENTRY_BYTES, EVENTS, INTERNAL, OUTPUT_BYTES, Journal
from orchestrator.runtime.store import Stores, timer_key
from orchestrator.runtime.timers import tick_due
from orchestrator.runtime.transaction import Transaction
from orchestrator.runtime.transactions import Transactions
from orchestrator.runtime.window import Window

log = logging.getLogger("orchestrator.worker")


class Decider:
    """Decides batches of records; one per worker, used under the worker's batch lock."""

    def __init__(self, topics: Topics, ingest: IngestRules, engine: Engine, stores: Stores, counters: Counters,
                 checkpoint: Checkpoint, producer: AIOKafkaProducer, topic_names: dict[str, str],
                 partition_counts: dict[str, int], fail: Callable[[BaseException], NoReturn], clocks: Clocks,
                 window: Window, txns: Transactions | None = None) -> None:
        self.engine, self.stores, self.counters = engine, stores, counters
        self.checkpoint, self.clocks, self.window = checkpoint, clocks, window
        self.topic_names = topic_names            # topic suffix ("actions.email") -> full name
        self.txns = txns                          # exactly-once: a transactional producer per input partition
        producer_of = (lambda via: producer) if txns is None else (lambda via: txns.producers[via])
        self.collector = Collector(producer_of, partition_counts, placement(ingest.partitioner), fail)
        self.ingest = Ingest(ingest, topics.internal_events, engine.policies.channels, self.collector, clocks,
                             topic_names[Topic.DLQ])
        self.topics = {EVENTS: topics.events, INTERNAL: topics.internal_events}
        self.changelog, self.dedup_changelog = topics.changelog, topics.dedup_changelog
        # Output topics with as many partitions as the customers' home partitions: a customer's record
        # goes to the partition its events are decided in (the same partitioner), so it is not placed again.
        home_count = partition_counts[topics.internal_events]
        self._at_home = {suffix: partition_counts[name] == home_count for suffix, name in topic_names.items()}
        self._action_topics = frozenset(suffix for suffix in topic_names if is_action(suffix))
        # The outputs of each decided input, to re-send a replayed one; exactly-once needs none: an input
        # whose transaction did not commit had no visible output and is decided again.
        self.journal = Journal(self.topics) if txns is None else None
        self._seq = 0
        self._now = 0
        self._tx = Transaction(stores, checkpoint.overlay, 0)
        self._ticks: list[bytes] = []
        self._tally = Tally()

    async def run(self, records: dict[TopicPartition, list[Any]], ready: set[int],
                  positions: dict[TopicPartition, int] | None = None) -> Flush:
        """Decide every record of partitions in ``ready``, queue the results, hand them to the producer.
        ``positions``: where each partition's next records start (committed with this batch; default
        right after its last record)."""
        positions = positions or {}
        events_topic = self.topics[EVENTS]
        self._seq += 1
        self._now = now = wall_ms()
        self._tx = tx = Transaction(self.stores, self.checkpoint.overlay, self._seq)
        self._ticks = []
        self._tally = tally = Tally()
        take = self.ingest.take
        started = time.perf_counter()
        decided = 0
        commits: dict[TopicPartition, int] = {}
        for tp, msgs in records.items():
            p = tp.partition
            if p not in ready or not msgs:
                continue                   # revoked meanwhile: the new owner reads them
            ingest = tp.topic == events_topic
            source = EVENTS if ingest else INTERNAL
            self.collector.via = p
            decided += len(msgs)
            for msg in msgs:
                try:
                    if not ingest:
                        self.decide(msg.key, msg.value, INTERNAL, msg.offset, p)
                    else:
                        home = take(msg, p, now, tally)
                        if home is not None:
                            self.decide(home[0], home[1], EVENTS, msg.offset, p)
                except WorkerFailure:
                    raise
                except Exception as exc:  # noqa: BLE001 - a bug must not stop the partition
                    self._engine_error(exc, "in the batch path", msg.key, source, p, msg.offset, msg.value,
                                       event=ingest or tick_due(msg.value) is None)
            commits[tp] = max(msgs[-1].offset + 1, positions.get(tp, 0))
        # Changelog records after the outputs; the checkpoint waits for all of them.
        collector, changelog = self.collector, self.changelog
        changes = tx.changes(collector, changelog)
        for key, entry, size in tx.oversized:
            self._state_too_large(key, entry, size)
        journals = {} if self.journal is None else self.journal.write(collector, changelog, self.checkpoint.positions)
        # The duplicate window's new keys: in exactly-once in the transaction; in at-least-once the
        # checkpoint sends them once the states and journal are acknowledged, so a key is never
        # durable before the state change of its event (a replay would take that event for a duplicate).
        seen = self.window.changes(collector if self.txns is not None else None, self.dedup_changelog, self._seq)
        if decided:
            self.counters.metrics.processing.observe((time.perf_counter() - started) / decided)
        self.counters.add(tally)
        if self.txns is not None:
            # Each input partition's records and offsets are its next transaction, which may open only
            # once its previous one has ended (the checkpoint commits it).
            partitions = {tp.partition for tp in commits} | collector.vias()
            await self.txns.ready(partitions)
            for p in sorted(partitions):
                await self.txns.begin(p)
        else:
            partitions = set()
        sent = await collector.submit()
        flush = Flush(self._seq, [b.future for b in sent],
                      [(b.partition, b.future, b.records) for b in sent if b.topic == changelog],
                      changes, commits, self._ticks, journals, seen,
                      [(b.partition, b.future, b.records) for b in sent if b.topic == self.dedup_changelog], partitions)
        self._tx = Transaction(self.stores, self.checkpoint.overlay, 0)
        self._ticks = []
        return flush

    def decide(self, key: bytes, value: bytes | Event, source: bytes, offset: int, p: int) -> None:
        """One input of partition ``p``, read from ``source`` at ``offset``: an event of the customer
        ``key`` (validated, or as the internal topic carries it) or a wake-up of its timers."""
        t, now = self._tally, self._now
        replayed = None if self.journal is None else self.journal.replayed(p, source, offset)
        if replayed is not None:           # decided before a crash: re-send its outputs, decide nothing
            for o in replayed:
                self._send(o.topic, o.key.encode(), o.value)
            t.replayed += len(replayed)
            self._seen_again(value, source, p)
            return
        due = tick_due(value) if source == INTERNAL else None
        if due is not None:
            ev = None
        elif isinstance(value, Event):
            ev = value
        else:
            try:
                ev = decode_event(value)
            except Exception as exc:  # noqa: BLE001 - not what a worker writes there
                self._engine_error(exc, "decoding a record of the internal topic", key, source, p, offset, value)
                return
            self.clocks.observe(p, ev.ts_ms)
        entry = self._tx.entry(key, p)
        entry.source, entry.offset, entry.event = source, offset, ev is not None
        state = entry.state
        if not entry.checked:              # once a batch per customer: only a state as read can be an old one
            entry.checked = True
            if state is not None and (state.seen_ids or state.seen or state.erased_ms is not None):
                state = self._migrate(entry, key, p)
        seen = None
        if ev is not None:                 # the customer's half of the key hashed once a batch
            half = entry.customer_hash
            if half is None:
                half = entry.customer_hash = dedup.event_hash(ev.customer_id)
            seen = dedup.key_of(half, ev.event_id)
        if seen is not None and not self.window.first(p, seen):
            t.duplicate += 1               # the duplicate rule: seen within the window, ignored
            return
        old_due = next_due_ms(state) if ev is None and state is not None else None   # for a wake-up only
        try:
            if ev is None:
                result = self.engine.on_timer(state, key.decode(), self.clocks.limit(p, now), now)
            else:
                result = self.engine.on_event(state, ev, now)
        except Exception as exc:  # noqa: BLE001 - a bug in the engine must not stop the partition
            self._tx.discard(key)
            if seen is not None:
                self.window.forget(p, seen)      # not decided: a redelivery is tried again
            self._engine_error(exc, "in the engine, firing timers" if ev is None else f"in the engine, deciding an "
                               f"event of type {ev.type}", key, source, p, offset,
                               cast(bytes, value) if ev is None else msgspec.json.encode(ev), event=ev is not None)
            return
        if result.refused is not None:     # refused without effect: dead-lettered, like a bad event
            t.dead[DeadLetter.TOO_LARGE] += 1
            self._send(Topic.DLQ, key, orjson.dumps(dead_letter(
                Rejection(DeadLetter.TOO_LARGE, result.refused), topic=self.topics[source], partition=p, offset=offset,
                raw=msgspec.json.encode(ev) if ev is not None else cast(bytes, value), now_ms=now)))
            return
        if ev is not None:
            t.event(ev.ts_ms)
        elif due is not None:              # (always, for a wake-up)
            t.fired(now, due)
            self._ticks.append(timer_key(due, key))
        t.decided(result)
        journaled, size = self._emit(key, ev, result.outputs, p) if result.outputs else ([], ENTRY_BYTES)
        if self.journal is not None:       # every decided input, outputs or not: a replay decides none again
            self.journal.record(p, source, offset, journaled, size)
        self._tx.update(entry, result.state, tick=ev is None, outputs=bool(result.outputs), old_due=old_due)

    def _migrate(self, entry: Any, key: bytes, p: int) -> Any:
        """A state written before the duplicate window moved out of it: its event ids go to the window
        (those still inside it); an erasure tombstone of that time is deleted. Returns the state left."""
        window_start = self._now - dedup.WINDOW_MS
        cid = dedup.event_hash(key.decode())
        self.window.remember(p, [cid + h for h, at in legacy_seen(entry.state) if at >= window_start])
        if entry.state.erased_ms is not None:
            entry.state = None
        entry.dirty = True
        return entry.state

    def _seen_again(self, value: bytes | Event, source: bytes, p: int) -> None:
        """A replayed event: the duplicate window learns it again (its record may not have reached Kafka
        before the crash, though the batch's states and journal did)."""
        if source == INTERNAL and tick_due(value) is not None:
            return
        try:
            ev = value if isinstance(value, Event) else decode_event(value)
        except Exception:  # noqa: BLE001 - it was decided before, so it decoded then
            return
        self.window.remember(p, [dedup.key(ev.customer_id, ev.event_id)])

    def _emit(self, key: bytes, ev: Event | None, outputs: list, p: int) -> tuple[list[tuple[str, str, bytes]], int]:
        """Queue a decision's outputs and count them; what the journal keeps of them, and its size as
        the journal counts it (:func:`~orchestrator.runtime.journal.entry_size`)."""
        t, now = self._tally, self._now
        cid = key.decode() if ev is None else ev.customer_id
        send, names, at_home, action_topics = self.collector.send, self.topic_names, self._at_home, self._action_topics
        journaled: list[tuple[str, str, bytes]] | None = None if self.journal is None else []
        size = ENTRY_BYTES
        for o in outputs:
            topic, okey, record = o                # an Output, unpacked once (its fields are generic lookups)
            value = orjson.dumps(record)
            if journaled is not None:
                journaled.append((topic, okey, value))
                size += len(topic) + len(okey) + len(value) + OUTPUT_BYTES
            if okey == cid:
                send(names[topic], key, value, p if at_home[topic] else None)
            else:
                send(names[topic], okey.encode(), value)
            t.output(topic, record)
            if ev is not None and topic in action_topics:
                # Only sends an event triggered directly: a send after a wait (or a quiet-hours
                # deferral) is late on purpose.
                t.latency_s.append(max(0.0, (now - ev.ts_ms) / 1000))
        return journaled or [], size

    def _state_too_large(self, key: bytes, entry: Any, size: int) -> None:
        """A customer's state grew past ``STATE_RECORD_MAX_BYTES`` in this batch (journeys capturing large
        values: a profile update is refused long before, in the engine). Its new state is not written, so it keeps
        the one it had (docs/events.md#limits); the last of its inputs is dead-lettered ``too_large`` (an
        event: counted as a dead letter instead of a valid one). Outputs its inputs had queued still go out."""
        t = self._tally
        t.dead[DeadLetter.TOO_LARGE] += 1
        if entry.event:
            t.valid -= 1
        log.error("a customer's state would be %d bytes after a batch (at most %d); its changes in the batch are "
                  "not kept; dead-lettered too_large at %s[%d]@%d", size, STATE_RECORD_MAX_BYTES,
                  self.topics[entry.source], entry.partition, entry.offset)
        record = dead_letter(Rejection(DeadLetter.TOO_LARGE, f"the customer's state would be {size} bytes after "
                                       f"this batch's events of the customer, this one the last; a state is at most "
                                       f"{STATE_RECORD_MAX_BYTES} bytes: their changes are not kept"),
                             topic=self.topics[entry.source], partition=entry.partition, offset=entry.offset,
                             raw=None, now_ms=self._now)
        self._send(Topic.DLQ, key, orjson.dumps(record))

    def _send(self, suffix: str, key: bytes | None, value: bytes) -> None:
        self.collector.send(self.topic_names[suffix], key, value)

    def _engine_error(self, exc: BaseException, where: str, key: bytes | None, source: bytes, p: int, offset: int,
                      raw: bytes | None, *, event: bool = False) -> None:
        """A record the batch path could not handle: dead-lettered ``engine_error`` (its exception type in
        the detail, never its message, which may quote customer data), counted, logged by position."""
        topic = self.topics[source]
        log.error("%s %s on %s[%d]@%d; dead-lettered engine_error. Traceback (message left out):\n%s",
                  type(exc).__name__, where, topic, p, offset, "".join(traceback.format_tb(exc.__traceback__)))
        t = self._tally
        t.engine_errors += 1
        if event:
            t.dead[DeadLetter.ENGINE_ERROR] += 1
        record = dead_letter(Rejection(DeadLetter.ENGINE_ERROR, f"{type(exc).__name__} {where}"), topic=topic,
                             partition=p, offset=offset, raw=raw, now_ms=self._now)
        self._send(Topic.DLQ, key, orjson.dumps(record))

    def adopt(self, p: int, store: Any, committed: dict[bytes, int | None]) -> None:
        """A partition assigned and restored: its journals (see :meth:`Journal.adopt`)."""
        if self.journal is not None:
            self.journal.adopt(p, store, committed)

    def forget(self, partitions: set[int]) -> None:
        """Partitions revoked: their journals are the next owner's."""
        if self.journal is not None:
            self.journal.forget(partitions)
