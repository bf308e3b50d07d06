"""Steps 1-2 of the worker's protocol (see :mod:`orchestrator.runtime.worker`): one batch of
records in, decided by the pure core, its outputs and changelog records out.

This is the whole path of an event from the consumer to an action:

- ``ingest``: validate an event of ``<prefix>.events``; a bad one becomes a dead letter; one keyed
  by its customer_id in its home partition is decided at once, any other is forwarded re-keyed to
  the internal topic (``<prefix>.internal.events-by-customer``) and decided when it comes back;
- ``decide``: re-send the outputs of an input decided before a crash (found in the *journal*,
  below), or read the customer's state once per batch (the checkpoint's overlay of states not
  yet in RocksDB first, then RocksDB), run the engine and queue its outputs;
- at the end of the batch, one changelog record per changed customer and one journal record per
  input partition, after the outputs; every record is appended to producer batches without
  awaiting, then handed to the producer at once.

The journal replaces an outbox kept inside each customer's state: the outputs of the batch's
inputs, by input offset, in one changelog record per partition and input topic (key ``j``, see
:mod:`~orchestrator.runtime.store`). It is durable with the states (step 3) before the offsets are
committed (step 5), so when a crash replays an input, its outputs are in the journal: they are
re-sent with the same ids and nothing is decided again. On assignment the journals of the
partition's uncommitted offsets are loaded (:meth:`Decider.adopt`); once its offsets are committed
a journal is tombstoned. Counts are kept in plain integers and pushed to the metrics once per
batch (:class:`~orchestrator.runtime.counters.Tally`).

What comes back is a :class:`~orchestrator.runtime.checkpoint.Flush` for steps 3-5.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

import msgspec
import orjson
from aiokafka import AIOKafkaProducer, TopicPartition

from orchestrator.config import Settings
from orchestrator.core import Engine
from orchestrator.core.events import Event, Rejection, dead_letter, decode_event, encode_event, parse_event
from orchestrator.core.state import CustomerState, decode_state, encode_state
from orchestrator.errors import WorkerFailure
from orchestrator.runtime.checkpoint import Checkpoint, Flush
from orchestrator.runtime.counters import Counters, Tally
from orchestrator.runtime.eventtime import Clocks
from orchestrator.runtime.kafka import placement
from orchestrator.runtime.store import DUE_LEN, STATE, PartitionStore, Stores, due_bytes, journal_key, timer_key
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
                 partition_counts: dict[str, int], fail: Callable[[BaseException], NoReturn], clocks: Clocks) -> None:
        self.settings, self.engine, self.stores, self.counters = settings, engine, stores, counters
        self.checkpoint, self.producer, self.fail, self.clocks = checkpoint, producer, fail, clocks
        self.topic_names = topic_names            # topic suffix ("actions.email") -> full name
        self.partition_counts = partition_counts
        self.channels = engine.policies.channels
        self._out = Outbound(producer)
        self._round_robin = 0
        self._seq = 0
        self._now = 0
        self._cache: dict[bytes, _Entry] = {}
        self._ticks: list[bytes] = []
        self._tally = Tally()
        # Partition of a key, per partition count (murmur2 once per key, not once per record).
        self._placed: dict[int, dict[bytes, int]] = {}
        self._home_count = partition_counts[settings.keyed_topic]
        self._partitioner = placement(settings)
        self._keyed_here = self._keyed_elsewhere = 0     # events keyed by customer_id: at home or not
        self._warned = False
        # Journals: this batch's outputs by input (partition, topic code) -> [(offset, outputs)];
        # the journals written and not yet tombstoned: partition -> [(code, first, last offset)];
        # the outputs of inputs to re-send when replayed: partition -> {(code, offset): outputs}.
        self._journal: dict[tuple[int, bytes], list[tuple[int, list[tuple[str, str, bytes]]]]] = {}
        self._journals: dict[int, list[tuple[bytes, int, int]]] = {}
        self._replay: dict[int, dict[tuple[bytes, int], list[tuple[str, str, bytes]]]] = {}
        self._code_topic = {b"e": settings.events_topic, b"k": settings.keyed_topic}

    async def run(self, records: dict[TopicPartition, list[Any]], ready: set[int]) -> Flush:
        """Decide every record of partitions in ``ready``, queue the results, hand them to the producer."""
        s = self.settings
        events_topic = s.events_topic
        self._now = now_ms()
        self._cache = {}
        self._ticks = []
        self._tally = tally = Tally()
        started = time.perf_counter()
        decided = 0
        commits: dict[TopicPartition, int] = {}
        decided_to = self.clocks.decided
        for tp, msgs in records.items():
            p = tp.partition
            if p not in ready or not msgs:
                continue                   # revoked meanwhile: the new owner reads them
            store = self.stores.get(p)
            ingest = tp.topic == events_topic
            decided += len(msgs)
            for msg in msgs:
                try:
                    if ingest:
                        self.ingest(msg, p, store)
                    else:
                        self.decide(msg.key, msg.value, b"k", msg.offset, p, store)
                except WorkerFailure:
                    raise
                except Exception as exc:  # noqa: BLE001 - a bug must not stop the partition
                    self._engine_error(exc, "in the batch path", msg.key, b"e" if ingest else b"k", p, msg.offset,
                                       msg.value, event=ingest or (msg.value or b"")[:1] != TICK)
            commits[tp] = msgs[-1].offset + 1
            if ingest:
                decided_to[p] = msgs[-1].offset + 1
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
        journals = self._write_journals(changelog)
        if decided:
            self.counters.metrics.processing.observe((time.perf_counter() - started) / decided)
        self.counters.add(tally)
        futures: list[asyncio.Future] = []
        changelog_futures: list[tuple[int, asyncio.Future, int]] = []
        for topic, partition, fut, count in await self._out.submit():
            futures.append(fut)
            if topic == changelog:
                changelog_futures.append((partition, fut, count))
        self._out = Outbound(self.producer)
        flush = Flush(seq, futures, changelog_futures, changes, commits, self._ticks, journals)
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
                partition = self._place(key, n)
        try:
            self._out.add(topic, partition, key, value)
        except Exception as exc:  # noqa: BLE001 - e.g. a record over the size limit
            self.fail(exc)

    def _send(self, suffix: str, key: bytes | None, value: bytes) -> None:
        self._send_raw(self.topic_names[suffix], key, value, None)

    def _place(self, key: bytes, n: int) -> int:
        """The partition of ``key`` among ``n`` (``ORCH_PRODUCER_PARTITIONER``), remembered (a bounded
        cache: cleared when it grows large)."""
        placed = self._placed.get(n)
        if placed is None:
            placed = self._placed[n] = {}
        p = placed.get(key)
        if p is None:
            if len(placed) >= PLACED_MAX:
                placed.clear()
            p = placed[key] = self._partitioner(key, n)
        return p

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
            self._tally.dead[parsed.reason] += 1
            record = dead_letter(parsed, topic=msg.topic, partition=p, offset=msg.offset, raw=value,
                                 now_ms=self._now)
            self._send("dlq", msg.key, orjson.dumps(record))
            return
        cid = parsed.customer_id.encode()
        home = self._place(cid, self._home_count)      # = the partition of the customer's state
        if parsed.ts_ms > self.clocks.input_ms.get(p, 0):
            self.clocks.input_ms[p] = parsed.ts_ms     # read from this partition, wherever it is decided
        if msg.key == cid:
            if p == home:
                self._keyed_here += 1
                self.decide(cid, parsed, b"e", msg.offset, p, store)
                return
            self._keyed_elsewhere += 1
            self._tally.rekeyed["partition"] += 1
            if not self._warned:
                self._warn_partitioner()
        else:
            self._tally.rekeyed["key"] += 1
        self._send_raw(s.keyed_topic, cid, encode_event(parsed), home)

    def _warn_partitioner(self) -> None:
        """Once: events keyed by customer_id arrive where the configured partitioner does not put them."""
        self._warned = True
        name = self.settings.producer_partitioner
        other = "crc32" if name == "murmur2" else "murmur2"
        log.warning(
            "an event keyed by its customer_id arrived in another partition than ORCH_PRODUCER_PARTITIONER=%s "
            "places it (%d of %d such events so far); each takes a second produce and consume through %s. "
            "The producers probably use %s: set ORCH_PRODUCER_PARTITIONER=%s (or give the producers %s); "
            "orch_events_rekeyed_total{reason=\"partition\"} counts them", name, self._keyed_elsewhere,
            self._keyed_here + self._keyed_elsewhere, self.settings.keyed_topic,
            "librdkafka's default partitioner (confluent-kafka, Go, .NET, node-rdkafka, kcat)" if other == "crc32"
            else "murmur2 (the Java client, aiokafka)", other,
            "partitioner=murmur2_random" if name == "murmur2" else "a CRC-32 partitioner")

    def decide(self, key: bytes, value: bytes | Event, code: bytes, offset: int, p: int, store: PartitionStore) -> None:
        """One input of partition ``p``: an event, or a timer's tick, of the customer ``key``; ``code``
        and ``offset`` say where it was read (``e``: the events topic, ``k``: the internal one)."""
        t, engine, now = self._tally, self.engine, self._now
        replay = self._replay.get(p)
        if replay:
            done = replay.pop((code, offset), None)
            if done is not None:
                # This exact input was decided before a crash: re-send its outputs, decide nothing.
                for topic, okey, out in done:
                    self._send(topic, okey.encode(), out)
                t.replayed += len(done)
                return
        is_tick = isinstance(value, bytes) and value[:1] == TICK
        if is_tick:
            ev = None
        elif isinstance(value, Event):
            ev = value
        else:
            try:
                ev = decode_event(value)
            except Exception as exc:  # noqa: BLE001 - not what a worker writes there
                self._engine_error(exc, "decoding a record of the internal topic", key, code, p, offset, value)
                return
        entry = self._cache.get(key)
        if entry is None:
            pending = self.checkpoint.overlay.get(key)
            raw = store.get(key) if pending is None else pending[1]
            entry = (_Entry(p, raw[:DUE_LEN], decode_state(memoryview(raw)[DUE_LEN:])) if raw is not None
                     else _Entry(p, None, None))
            self._cache[key] = entry
        state = entry.state
        old_due = state.next_due_ms() if state is not None else None
        try:
            if is_tick:
                result = engine.on_timer(state, key.decode(), self.clocks.limit(p, now), now)
            else:
                if code == b"k" and ev.ts_ms > self.clocks.input_ms.get(p, 0):
                    self.clocks.input_ms[p] = ev.ts_ms
                result = engine.on_event(state, ev, now)
        except Exception as exc:  # noqa: BLE001 - a bug in the engine must not stop the partition
            if not entry.dirty:
                del self._cache[key]            # what the engine half changed is not kept: the stored state stands
            self._engine_error(exc, "in the engine, firing timers" if is_tick else f"in the engine, deciding an "
                               f"event of type {ev.type}", key, code, p, offset,
                               value if is_tick else msgspec.json.encode(ev), event=not is_tick)
            return
        if is_tick:
            due = value[1:1 + DUE_LEN]
            t.timers_fired += 1
            t.lateness_s.append(max(0.0, (now - int.from_bytes(due, "big")) / 1000))
            self._ticks.append(timer_key(due, key))
        elif result.duplicate:
            t.duplicate += 1
            return
        else:
            t.valid += 1
            if ev.ts_ms > t.last_event_ms:
                t.last_event_ms = ev.ts_ms
        if result.lifecycle:
            t.lifecycle.extend(result.lifecycle)
        if result.invalid_fields:
            t.invalid_fields.update(result.invalid_fields)
        outputs = result.outputs
        if outputs:
            cid = key.decode() if is_tick else ev.customer_id
            encoded = []
            for o in outputs:
                out = orjson.dumps(o.value)
                encoded.append((o.topic, o.key, out))
                self._send(o.topic, key if o.key == cid else o.key.encode(), out)
                t.output(o.topic, o.value)
                if not is_tick and o.topic[0] == "a":
                    # Only sends an event triggered directly: a send after a wait (or a quiet-hours
                    # deferral) is late on purpose.
                    t.latency_s.append(max(0.0, (now - ev.ts_ms) / 1000))
            journal = self._journal.get((p, code))
            if journal is None:
                journal = self._journal[(p, code)] = []
            journal.append((offset, encoded))
        new_state = result.state
        if new_state is None:
            entry.dirty = entry.dirty or entry.old_due is not None or entry.state is not None
            entry.state = None
        else:
            if outputs or state is None or not is_tick or new_state.next_due_ms() != old_due:
                entry.dirty = True
            entry.state = new_state

    def _engine_error(self, exc: BaseException, where: str, key: bytes | None, code: bytes, p: int, offset: int,
                      raw: bytes | None, *, event: bool = False) -> None:
        """A record the batch path could not handle: dead-lettered ``engine_error`` (its exception type in
        the detail, never its message, which may quote customer data), counted, logged by position."""
        log.error("%s %s on %s[%d]@%d; dead-lettered engine_error. Traceback (message left out):\n%s",
                  type(exc).__name__, where, self._code_topic[code], p, offset,
                  "".join(traceback.format_tb(exc.__traceback__)))
        t = self._tally
        t.engine_errors += 1
        if event:
            t.dead["engine_error"] += 1
        record = dead_letter(Rejection("engine_error", f"{type(exc).__name__} {where}"), topic=self._code_topic[code],
                             partition=p, offset=offset, raw=raw, now_ms=self._now)
        self._send("dlq", key, orjson.dumps(record))

    # ------------------------------------------------------------------ the journal
    def _write_journals(self, changelog: str) -> dict[int, list[tuple[bytes, bytes | None]]]:
        """This batch's journal records, and tombstones for journals whose offsets are all committed:
        queued to the changelog, returned as rows for RocksDB (step 4)."""
        rows: dict[int, list[tuple[bytes, bytes | None]]] = {}
        positions = self.checkpoint.positions
        for p, kept in self._journals.items():
            if not kept:
                continue
            still = []
            for code, first, last in kept:
                done = positions.get(TopicPartition(self._code_topic[code], p))
                if done is not None and last < done:
                    key = journal_key(code, first)
                    self._out.add(changelog, p, key, None)
                    rows.setdefault(p, []).append((key, None))
                else:
                    still.append((code, first, last))
            self._journals[p] = still
        for (p, code), entries in self._journal.items():
            for chunk in journal_chunks(entries):
                key = journal_key(code, chunk[0][0])
                value = _journal_encoder.encode(chunk)
                self._out.add(changelog, p, key, value)
                rows.setdefault(p, []).append((key, value))
                self._journals.setdefault(p, []).append((code, chunk[0][0], chunk[-1][0]))
        self._journal = {}
        return rows

    def adopt(self, p: int, store: PartitionStore, committed: dict[bytes, int | None]) -> None:
        """A partition assigned (and restored): the outputs of its journaled inputs at or after the
        committed offsets (``committed``: topic code -> next offset to process, ``None``: nothing
        committed) are re-sent if those inputs come again; older journals are tombstoned."""
        replay: dict[tuple[bytes, int], list[tuple[str, str, bytes]]] = {}
        kept: list[tuple[bytes, int, int]] = []
        for key, value in store.journals():
            code, first = key[1:2], int.from_bytes(key[2:10], "big")
            entries = _journal_decoder.decode(value)
            kept.append((code, first, entries[-1][0] if entries else first))
            done = committed.get(code)
            for offset, outputs in entries:
                if done is None or offset >= done:
                    replay[(code, offset)] = [tuple(o) for o in outputs]
        self._replay[p] = replay
        self._journals[p] = kept

    def forget(self, partitions: set[int]) -> None:
        """Partitions revoked: their journals are the next owner's."""
        for p in partitions:
            self._replay.pop(p, None)
            self._journals.pop(p, None)
            for key in [k for k in self._journal if k[0] == p]:
                del self._journal[key]


PLACED_MAX = 500_000
# A journal record stays well under Kafka's default message.max.bytes (1 MB) and the producer's
# batch size, however many outputs a batch of one partition has: larger ones are cut in pieces.
JOURNAL_MAX_BYTES = 200_000


def journal_chunks(entries: list[tuple[int, list[tuple[str, str, bytes]]]],
                   limit: int = JOURNAL_MAX_BYTES) -> list[list[tuple[int, list[tuple[str, str, bytes]]]]]:
    """``entries`` (input offset, its outputs), in order, cut into runs of at most about ``limit``
    bytes each (an input's outputs are never split: one input larger than ``limit`` is a run alone)."""
    chunks: list[list[tuple[int, list[tuple[str, str, bytes]]]]] = []
    current: list[tuple[int, list[tuple[str, str, bytes]]]] = []
    size = 0
    for entry in entries:
        n = 16 + sum(len(t) + len(k) + len(v) + 8 for t, k, v in entry[1])
        if current and size + n > limit:
            chunks.append(current)
            current, size = [], 0
        current.append(entry)
        size += n
    if current:
        chunks.append(current)
    return chunks
_journal_encoder = msgspec.msgpack.Encoder()
_journal_decoder = msgspec.msgpack.Decoder(list[tuple[int, list[tuple[str, str, bytes]]]])
