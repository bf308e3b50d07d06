"""Steps 1-2 of the worker's protocol (see :mod:`orchestrator.runtime.worker`): one batch of
records in, decided by the pure core, its outputs and changelog records out.

This is the whole path of an event from the consumer to an action:

- ``ingest``: validate an event of ``<prefix>.events``; a bad one becomes a dead letter; one keyed
  by its customer_id in its home partition is decided at once, any other is forwarded re-keyed to
  the internal topic (``<prefix>.internal.events-by-customer``) and decided when it comes back;
- ``decide``: read the customer's state once per batch (the checkpoint's overlay of states not
  yet in RocksDB first, then RocksDB), re-send the outputs of an input decided before a crash
  (its *outbox*), or run the engine and queue its outputs;
- at the end of the batch, one changelog record per changed customer, after the outputs; every
  record is appended to producer batches without awaiting, then handed to the producer at once.

What comes back is a :class:`~orchestrator.runtime.checkpoint.Flush` for steps 3-5.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, NoReturn

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition

from orchestrator.config import Settings
from orchestrator.core import Engine
from orchestrator.core.events import Event, Rejection, dead_letter, decode_event, encode_event, parse_event
from orchestrator.core.state import CustomerState, decode_state, encode_state, remember_outputs
from orchestrator.errors import WorkerFailure
from orchestrator.runtime.checkpoint import Checkpoint, Flush
from orchestrator.runtime.counters import Counters
from orchestrator.runtime.kafka import partition_for
from orchestrator.runtime.store import DUE_LEN, STATE, PartitionStore, Stores, due_bytes, timer_key
from orchestrator.runtime.timers import TICK

log = logging.getLogger("orchestrator.worker")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class _Entry:
    """A customer's state while a batch is decided: read once, written once."""

    __slots__ = ("partition", "old_due", "state", "dirty")

    def __init__(self, partition: int, old_due: bytes | None, state: CustomerState | None) -> None:
        self.partition = partition
        self.old_due = old_due                  # due prefix as stored (None: no record), for the timer index
        self.state = state
        self.dirty = False


class Outbound:
    """A batch's records, appended without awaiting, in one producer batch per topic partition."""

    __slots__ = ("producer", "builders")

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.builders: dict[tuple[str, int], list[Any]] = {}

    def add(self, topic: str, partition: int, key: bytes | None, value: bytes | None) -> None:
        builders = self.builders.get((topic, partition))
        if builders is None:
            builders = self.builders[(topic, partition)] = [self.producer.create_batch()]
        if builders[-1].append(timestamp=None, key=key, value=value) is None:
            builder = self.producer.create_batch()
            if builder.append(timestamp=None, key=key, value=value) is None:
                raise ValueError(f"a record of {len(value or b'')} bytes does not fit a producer batch")
            builders.append(builder)

    async def submit(self) -> list[tuple[str, int, asyncio.Future, int]]:
        """Hand every batch to the producer: (topic, partition, delivery future, record count)."""
        sent = []
        for (topic, partition), builders in self.builders.items():
            for builder in builders:
                builder.close()
                fut = await self.producer.send_batch(builder, topic, partition=partition)
                sent.append((topic, partition, fut, builder.record_count()))
        return sent


class Decider:
    """Decides batches of records; one per worker, used under the worker's batch lock."""

    def __init__(self, settings: Settings, engine: Engine, stores: Stores, counters: Counters,
                 checkpoint: Checkpoint, producer: AIOKafkaProducer, topic_names: dict[str, str],
                 partition_counts: dict[str, int], fail: Callable[[BaseException], NoReturn]) -> None:
        self.settings, self.engine, self.stores, self.counters = settings, engine, stores, counters
        self.checkpoint, self.producer, self.fail = checkpoint, producer, fail
        self.topic_names = topic_names            # topic suffix ("actions.email") -> full name
        self.partition_counts = partition_counts
        self.channels = engine.policies.channels
        self._out = Outbound(producer)
        self._round_robin = 0
        self._seq = 0
        self._now = 0
        self._cache: dict[bytes, _Entry] = {}
        self._ticks: list[bytes] = []
        self._decided = 0
        self._decide_s = 0.0

    async def run(self, records: dict[TopicPartition, list[Any]], ready: set[int]) -> Flush:
        """Decide every record of partitions in ``ready``, queue the results, hand them to the producer."""
        s = self.settings
        events_topic = s.events_topic
        self._now = now_ms()
        self._cache = {}
        self._ticks = []
        self._decided = 0
        self._decide_s = 0.0
        commits: dict[TopicPartition, int] = {}
        for tp, msgs in records.items():
            p = tp.partition
            if p not in ready or not msgs:
                continue                   # revoked meanwhile: the new owner reads them
            store = self.stores.get(p)
            ingest = tp.topic == events_topic
            for msg in msgs:
                try:
                    if ingest:
                        self.ingest(msg, p, store)
                    else:
                        self.decide(msg.key, msg.value, f"k{p}:{msg.offset}", p, store)
                except WorkerFailure:
                    raise
                except Exception:
                    # A bug must not stop the partition (the input is logged by position, not content).
                    log.exception("unexpected error on %s[%d]@%d", tp.topic, p, msg.offset)
            commits[tp] = msgs[-1].offset + 1
        # Changelog records after the outputs; the checkpoint waits for all of them.
        self._seq += 1
        seq = self._seq
        changes: dict[int, list[tuple[bytes, bytes | None, bytes | None]]] = {}
        changelog = s.changelog_topic
        overlay = self.checkpoint.overlay
        for key, e in self._cache.items():
            if not e.dirty:
                continue
            st = e.state
            new = None if st is None else due_bytes(st.next_due_ms()) + encode_state(st)
            changes.setdefault(e.partition, []).append((key, e.old_due, new))
            overlay[key] = (seq, new)
            self._out.add(changelog, e.partition, STATE + key, new)
        if self._decided:
            self.counters.metrics.processing.observe(self._decide_s / self._decided)
        futures: list[asyncio.Future] = []
        changelog_futures: list[tuple[int, asyncio.Future, int]] = []
        for topic, partition, fut, count in await self._out.submit():
            futures.append(fut)
            if topic == changelog:
                changelog_futures.append((partition, fut, count))
        self._out = Outbound(self.producer)
        flush = Flush(seq, futures, changelog_futures, changes, commits, self._ticks)
        self._cache = {}
        self._ticks = []
        return flush

    # ------------------------------------------------------------------ records out
    def _send_raw(self, topic: str, key: bytes | None, value: bytes, partition: int | None) -> None:
        """Add a record to the batch's outbound records (sent when the batch is decided)."""
        if partition is None:
            n = self.partition_counts[topic]
            if key is None:
                self._round_robin += 1
                partition = self._round_robin % n
            else:
                partition = partition_for(key, n)
        try:
            self._out.add(topic, partition, key, value)
        except Exception as exc:  # noqa: BLE001 - e.g. a record over the size limit
            self.fail(exc)

    def _send(self, suffix: str, key: bytes | None, value: bytes) -> None:
        self._send_raw(self.topic_names[suffix], key, value, None)

    # ------------------------------------------------------------------ records in
    def ingest(self, msg: Any, p: int, store: PartitionStore) -> None:
        s = self.settings
        value = msg.value
        try:
            parsed = parse_event(value, max_bytes=s.max_event_bytes, now_ms=self._now, channels=self.channels)
        except Exception as exc:  # the core promises not to raise; never crash on input anyway
            log.exception("event validation failed unexpectedly")
            parsed = Rejection("invalid_schema", f"validation error: {type(exc).__name__}")
        if isinstance(parsed, Rejection):
            self.counters.dead_letter(parsed.reason)
            record = dead_letter(parsed, topic=msg.topic, partition=p, offset=msg.offset, raw=value,
                                 now_ms=self._now)
            self._send("dlq", msg.key, orjson.dumps(record))
            return
        cid = parsed.customer_id.encode()
        home = partition_for(cid, self.partition_counts[s.keyed_topic])   # = the partition of the customer's state
        if msg.key == cid and p == home:
            self.decide(cid, parsed, f"e{p}:{msg.offset}", p, store)
        else:
            self._send_raw(s.keyed_topic, cid, encode_event(parsed), home)

    def decide(self, key: bytes, value: bytes | Event, coord: str, p: int, store: PartitionStore) -> None:
        c, engine, now = self.counters, self.engine, self._now
        m = c.metrics
        started = time.perf_counter()
        is_tick = isinstance(value, bytes) and value[:1] == TICK
        if is_tick:
            ev = None
        elif isinstance(value, Event):
            ev = value
        else:
            try:
                ev = decode_event(value)
            except Exception:
                log.exception("undecodable record on the internal topic at %s", coord)
                return
        entry = self._cache.get(key)
        if entry is None:
            pending = self.checkpoint.overlay.get(key)
            raw = store.get(key) if pending is None else pending[1]
            entry = (_Entry(p, raw[:DUE_LEN], decode_state(raw[DUE_LEN:])) if raw is not None
                     else _Entry(p, None, None))
            self._cache[key] = entry
        state = entry.state
        box = state.outbox.get(coord) if state is not None else None
        if box is not None:
            # This exact message was applied before a crash: re-send its outputs, decide nothing.
            for topic, okey, out in box.outputs:
                self._send(topic, okey.encode(), out)
            m.replayed_outputs.inc(len(box.outputs))
            return
        old_due = state.next_due_ms() if state is not None else None
        try:
            if is_tick:
                result = engine.on_timer(state, key.decode(), now)
            else:
                result = engine.on_event(state, ev, now)
        except Exception:
            # A bug in the engine must not stop the partition: record it and move on.
            log.exception("engine error on %s", "a timer" if is_tick else f"an event of type {ev.type}")
            return
        if is_tick:
            due = value[1:1 + DUE_LEN]
            m.timers_fired.inc()
            m.timer_lateness.observe(max(0.0, (now - int.from_bytes(due, "big")) / 1000))
            self._ticks.append(timer_key(due, key))
        elif result.duplicate:
            c.duplicate.inc()
            return
        else:
            c.valid.inc()
            m.last_event_ts.set(ev.ts_ms / 1000)
        for lc in result.lifecycle:
            c.lifecycle(lc)
        c.invalid_fields(result.invalid_fields)
        encoded = [(o.topic, o.key, orjson.dumps(o.value)) for o in result.outputs]
        for (topic, okey, out), o in zip(encoded, result.outputs):
            self._send(topic, okey.encode(), out)
            c.output(o.topic, o.value, now, event_triggered=not is_tick)
        new_state = result.state
        if new_state is None:
            entry.dirty = entry.dirty or entry.old_due is not None or entry.state is not None
            entry.state = None
        else:
            new_due = new_state.next_due_ms()
            if result.outputs or state is None or not is_tick or new_due != old_due:
                if new_state.outbox:
                    self._prune_outbox(new_state)
                remember_outputs(new_state, coord, now, encoded)
                entry.dirty = True
            entry.state = new_state
        self._decided += 1
        self._decide_s += time.perf_counter() - started

    def _prune_outbox(self, state: CustomerState) -> None:
        """Forget the outputs of inputs whose offsets are committed: they are never replayed here.

        Coordinates are "e<partition>:<offset>" (events topic) or "k<partition>:<offset>" (internal)."""
        positions, events, keyed = self.checkpoint.positions, self.settings.events_topic, self.settings.keyed_topic
        box = state.outbox
        for coord in list(box):
            head, _, offset = coord.partition(":")
            done = positions.get(TopicPartition(events if head[0] == "e" else keyed, int(head[1:])))
            if done is not None and int(offset) < done:
                del box[coord]
