"""The worker: Kafka in, core decisions in batches, Kafka out.

One consumer group member reads ``<prefix>.events`` and the internal re-keyed topic
``<prefix>.internal.events-by-customer`` (co-partitioned: the range assignor gives
partition *p* of both to the same worker, and *p* is also the partition of the
customer's state). An event keyed by its customer_id is decided where it arrives;
any other is forwarded, re-keyed, and decided when it comes back on the internal
topic. Timer wake-ups (ticks) come back the same way.

The loop takes whatever the consumer has (up to ``BATCH_MAX`` records), and for
the whole batch:

1. decides every record with the pure core, reading each customer's state once
   (RocksDB, :mod:`orchestrator.runtime.store`) and keeping it in memory for the
   rest of the batch;
2. queues every output, then one changelog record per changed customer, and hands
   the batch to the flusher; then it goes on with the next batch.

The flusher takes the handed-over batches in order and, for all it has:

3. waits until Kafka has acknowledged every output and changelog record;
4. writes the changed states to RocksDB in one write batch, with the changelog offset;
5. commits the input offsets.

Until step 4, a batch's new states live in an in-memory overlay that later batches
read first, so deciding never waits for Kafka round trips (they overlap with the next
batch instead of adding up). A state change is durable (changelog) before its input
offset is committed, and the local database is never ahead of the changelog. A crash
between 3 and 5 replays the batch: each state keeps the outputs of its recent inputs
(the *outbox*, by input coordinates), so a replayed record re-sends exactly those
outputs (same ids) and decides nothing again. Partitions being revoked wait until
every batch in flight is committed, so a graceful hand-over replays nothing.

Measured reason for not running this as a Faust agent: Faust's per-record bookkeeping
(~200 µs of CPU per record with Kafka I/O on our machines, before any table write)
capped the worker at ~2,200 events/s; the same engine in this loop runs at 11,000-15,000
events/s on the same machine, most of the time going to the engine and the state
(see docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.partitioner import murmur2

from orchestrator.config import Settings
from orchestrator.core import Engine, JourneySet, load_journey_dir, load_policies
from orchestrator.core.engine import Lifecycle
from orchestrator.core.events import DEAD_LETTER_REASONS, Event, Rejection, dead_letter, decode_event, encode_event, parse_event
from orchestrator.core.state import CustomerState, decode_state, encode_state, remember_outputs
from orchestrator.core.timeutil import parse_ts_ms
from orchestrator.observability.logs import COORDINATOR_WAIT
from orchestrator.observability.metrics import DECISION_OUTCOMES, PROFILE_FIELDS, SUPPRESSION_REASONS, Metrics
from orchestrator.errors import ConfigError
from orchestrator.runtime.client import partitions_of
from orchestrator.runtime.registry import Publication, Registry, read_published
from orchestrator.runtime.store import DUE_LEN, STATE, PartitionStore, Stores, due_bytes, split_timer_key, timer_key
from orchestrator.runtime.topics import check_topics, output_topics

log = logging.getLogger("orchestrator.worker")

TICK = b"T"                       # internal-topic value of a timer wake-up: b"T" + due ms (8 bytes)
TIMER_SCAN_INTERVAL_S = 0.2
INFLIGHT_RETRY_S = 30.0
FULL_SCAN_EVERY_S = 10.0
MAX_TICKS_PER_SCAN = 5000
BATCH_MAX = 500                   # records per loop iteration (bounds the time the loop is busy)
MAX_BATCHES_IN_FLIGHT = 8         # handed to the flusher, not yet committed
POLL_MS = 100
RESTORE_BATCH = 10_000
STANDBY_BATCH = 2_000             # changelog records applied to warm copies at a time


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


class _Outbound:
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


class _Flush:
    """A decided batch on its way to Kafka, RocksDB and the offset commit."""

    __slots__ = ("futures", "changelog", "changes", "commits", "ticks", "seq")

    def __init__(self, seq: int, futures: list[asyncio.Future], changelog: list[tuple[int, asyncio.Future, int]],
                 changes: dict[int, list[tuple[bytes, bytes | None, bytes | None]]],
                 commits: dict[TopicPartition, int], ticks: list[bytes]) -> None:
        self.seq, self.futures, self.changelog, self.changes = seq, futures, changelog, changes
        self.commits, self.ticks = commits, ticks


class _Listener(ConsumerRebalanceListener):
    def __init__(self, worker: "Worker") -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.worker._revoked({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.worker._assigned({tp.partition for tp in assigned})


class Fatal(Exception):
    """The worker must stop without committing (its inputs are then replayed)."""


class Worker:
    """One worker process: consumer, producer, partition stores, engine, web endpoints."""

    def __init__(self, settings: Settings, published: list[Publication] | None = None,
                 published_end: dict[int, int] | None = None) -> None:
        self.settings = settings
        self.policies = load_policies(settings.policies)
        self.metrics = Metrics(self.policies.channels)
        journeys = JourneySet()
        self.registry = Registry(settings, journeys, self.policies.channels, on_result=self._on_publication)
        self.registry.load_cache()                       # older versions customers may still be in
        from_files, problems = load_journey_dir(settings.journeys, channels=self.policies.channels)
        for problem in problems:
            log.error("journey refused: %s", problem)
        for j in from_files:
            self.registry.add_file(j)
        for pub in published or []:
            self.registry.apply(pub)
        self._published_end = published_end or {}
        self.engine = Engine(journeys, self.policies)
        self.metrics.journeys_loaded.set(sum(len(v) for v in journeys.versions.values()))
        self.metrics.journey_labels(journeys.current)
        self.stats: dict[tuple[str, int], dict[str, Any]] = {}
        s = settings
        self.topic_names = {name[len(s.topic_prefix) + 1:]: name for name in output_topics(s, self.policies.channels)}
        self.stores = Stores(s.data_dir)
        self.ready: set[int] = set()           # partitions restored and owned by this worker
        # Committed offset (the next to process) per input partition: the lag gauge, outbox pruning.
        self.positions: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()            # one batch at a time; rebalances wait for it
        self._flushes: asyncio.Queue[_Flush] = asyncio.Queue(MAX_BATCHES_IN_FLIGHT)
        # Customer key -> (flush sequence, value) written by a batch not yet in RocksDB.
        self._overlay: dict[bytes, tuple[int, bytes | None]] = {}
        self._seq = 0
        self._flushing = False
        self._inflight: dict[bytes, float] = {}
        self._cursor: dict[int, bytes] = {}
        self._full_scan_at = 0.0
        self._stopping = asyncio.Event()
        self._now = 0
        self._cache: dict[bytes, _Entry] = {}
        self._ticks: list[bytes] = []
        self._decided = 0
        self._decide_s = 0.0
        self._fatal: BaseException | None = None
        m = self.metrics
        self._valid = m.events_in.labels("valid")
        self._duplicate = m.events_in.labels("duplicate")
        self._dead = m.events_in.labels("dead_letter")
        self._actions = {c: m.actions.labels(c) for c in self.policies.channels}
        self._decisions = {(o, sh): m.decisions.labels(o, sh) for o in DECISION_OUTCOMES for sh in ("false", "true")}
        self._suppressions = {r: m.suppressions.labels(r) for r in SUPPRESSION_REASONS}
        self._dead_letters = {r: m.dead_letters.labels(r) for r in DEAD_LETTER_REASONS}
        self._invalid_fields = {f: m.invalid_profile_fields.labels(f) for f in PROFILE_FIELDS}
        self._partition_counts: dict[str, int] = {}
        self._round_robin = 0
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.restorer: AIOKafkaConsumer | None = None

    def _on_publication(self, result: str) -> None:
        self.metrics.journey_publications.labels(result).inc()
        journeys = self.registry.journeys
        self.metrics.journeys_loaded.set(sum(len(v) for v in journeys.versions.values()))
        self.metrics.journey_labels(journeys.current)

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        s = self.settings
        kw = s.aiokafka_kwargs()
        self.producer = AIOKafkaProducer(**kw, acks="all", enable_idempotence=True, linger_ms=5,
                                         max_batch_size=256 * 1024, max_request_size=2 * 1024 * 1024)
        self.restorer = AIOKafkaConsumer(**kw, enable_auto_commit=False, max_partition_fetch_bytes=4 * 1024 * 1024)
        self.consumer = AIOKafkaConsumer(
            **kw, group_id=s.app_id, enable_auto_commit=False, auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            # A SIGKILLed worker keeps its partitions until its session times out; the default
            # (45 s) would stall every timer of those partitions that long.
            session_timeout_ms=10_000, heartbeat_interval_ms=2_000, max_poll_interval_ms=300_000,
            fetch_max_wait_ms=50, max_partition_fetch_bytes=1024 * 1024)
        await self.producer.start()
        await self.restorer.start()
        self._out = _Outbound(self.producer)
        names = [*self.topic_names.values(), s.keyed_topic, s.changelog_topic]
        self._partition_counts = {t: len(ps) for t, ps in (await partitions_of(s, names)).items()}
        missing = [t for t in names if t not in self._partition_counts]
        if missing:
            raise ConfigError(f"topics missing: {', '.join(missing)}")
        tasks: list[asyncio.Task] = []
        try:
            self.consumer.subscribe([s.events_topic, s.keyed_topic], listener=_Listener(self))
            await self.consumer.start()
            tasks = [asyncio.ensure_future(c) for c in (self._flusher(),
                self._serve_web(), self.registry.follow(self._published_end), self._every(TIMER_SCAN_INTERVAL_S, self._scan_timers),
                self._every(60.0, self._count_timers), self._every(5.0, self._observe), self._standby())]
            await self._loop()
            await self._drain()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Leave the group now, so partitions move at once. After a clean stop every processed
            # input is committed; after a fatal error the uncommitted batch is replayed elsewhere.
            await self._stop_consumer()
            await self.restorer.stop()
            await self.producer.stop()
            self.stores.close()
        if self._fatal is not None:
            raise Fatal(str(self._fatal))

    async def _stop_consumer(self) -> None:
        try:
            await asyncio.wait_for(self.consumer.stop(), 30)
        except Exception as exc:  # noqa: BLE001 - stopping anyway
            log.warning("consumer did not stop cleanly: %s", exc)

    def stop(self) -> None:
        self._stopping.set()

    async def _every(self, interval_s: float, fn) -> None:  # noqa: ANN001 - an async method
        while True:
            await asyncio.sleep(interval_s)
            try:
                await fn()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a periodic job must keep running
                log.exception("periodic %s failed", fn.__name__)

    async def _drain(self) -> None:
        """Wait until every batch handed to the flusher is committed (or the worker failed)."""
        while self._flushes.qsize() or self._flushing:
            if self._fatal is not None:
                return
            await asyncio.sleep(0.005)

    async def _flusher(self) -> None:
        """Steps 3-5 for every batch handed over, in order; all waiting batches at once."""
        queue = self._flushes
        while True:
            items = [await queue.get()]
            while not queue.empty():
                items.append(queue.get_nowait())
            self._flushing = True
            try:
                await self._flush(items)
            except Exception as exc:  # noqa: BLE001 - e.g. RocksDB cannot write: stop, commit nothing more
                if not isinstance(exc, Fatal):
                    log.exception("could not complete a batch; stopping so its inputs are replayed")
                    self._fatal = exc
                self._stopping.set()
                while True:                # nothing more is committed; let the loop stop
                    await queue.get()
            finally:
                self._flushing = False

    async def _flush(self, items: list[_Flush]) -> None:
        futures = [f for item in items for f in item.futures]
        if futures:
            results = await asyncio.gather(*futures, return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    self._delivery_failed(r)
        commits: dict[TopicPartition, int] = {}
        overlay = self._overlay
        for item in items:
            offsets: dict[int, int] = {}
            for p, fut, count in item.changelog:
                offsets[p] = max(offsets.get(p, -1), fut.result().offset + count - 1)
            for p, rows in item.changes.items():
                self.stores.get(p).write(rows, offsets.get(p))
            seq = item.seq
            for rows in item.changes.values():
                for key, _, _ in rows:
                    if overlay.get(key, (None,))[0] == seq:
                        del overlay[key]
            for k in item.ticks:
                self._inflight.pop(k, None)
            commits.update(item.commits)
        commits = {tp: o for tp, o in commits.items() if tp.partition in self.ready}
        if commits:
            try:
                await self.consumer.commit(commits)
            except Exception as exc:  # noqa: BLE001 - e.g. the group rebalanced meanwhile
                # Harmless: the state is durable; whoever owns the partitions replays these inputs,
                # finds them in the outbox (same outputs, same ids) and decides nothing twice.
                log.warning("offset commit failed (%s); those inputs will be replayed", type(exc).__name__)
            else:
                self.positions.update(commits)

    async def _loop(self) -> None:
        consumer = self.consumer
        stopping = self._stopping
        while not stopping.is_set() and self._fatal is None:
            records = await consumer.getmany(timeout_ms=POLL_MS, max_records=BATCH_MAX)
            if not records:
                continue
            async with self._lock:
                await self._batch(records)

    # ------------------------------------------------------------------ rebalancing
    async def _revoked(self, partitions: set[int]) -> None:
        async with self._lock:            # the batch in flight finishes, then everything is committed
            await self._drain()
            self.ready -= partitions
            self._inflight.clear()
            self._cursor.clear()
            for tp in [tp for tp in self.positions if tp.partition in partitions]:
                del self.positions[tp]
        if partitions:
            log.info("partitions revoked: %s", sorted(partitions))

    async def _assigned(self, partitions: set[int]) -> None:
        COORDINATOR_WAIT.joined()              # from now on, coordinator trouble is worth its ERROR lines
        async with self._lock:
            await self._restore(partitions - self.ready)
            self.ready = set(partitions)
        log.info("partitions assigned: %s", sorted(partitions))

    async def _restore(self, partitions: set[int]) -> None:
        """Bring each partition's RocksDB up to the end of its changelog."""
        if not partitions:
            return
        m, topic, consumer = self.metrics, self.settings.changelog_topic, self.restorer
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        ends = await consumer.end_offsets(tps)
        begins = await consumer.beginning_offsets(tps)
        todo: dict[TopicPartition, int] = {}
        for tp in tps:
            store = self.stores.get(tp.partition)
            done = store.changelog_offset()
            if done is not None and done + 1 > ends[tp]:
                # The changelog is behind what this database saw (topic recreated): start over.
                log.warning("partition %d: local state is ahead of its changelog; rebuilding it", tp.partition)
                store = self.stores.wipe(tp.partition)
                done = None
            start = begins[tp] if done is None else max(done + 1, begins[tp])
            if start < ends[tp]:
                todo[tp] = start
        if not todo:
            return
        remaining = sum(ends[tp] - start for tp, start in todo.items())
        m.in_recovery.set(1)
        m.recovery_remaining.set(remaining)
        log.info("restoring %d partitions from the changelog: up to %d records", len(todo), remaining)
        started = time.monotonic()
        consumer.assign(list(todo))
        for tp, start in todo.items():
            consumer.seek(tp, start)
        try:
            while todo:
                batch = await consumer.getmany(*todo, timeout_ms=500, max_records=RESTORE_BATCH)
                for tp, msgs in batch.items():
                    if msgs:
                        self.stores.get(tp.partition).apply_changelog([(r.key, r.value) for r in msgs],
                                                                      msgs[-1].offset)
                        remaining -= len(msgs)
                for tp in list(todo):        # by position: compaction may have removed the last offsets
                    if await consumer.position(tp) >= ends[tp]:
                        del todo[tp]
                m.recovery_remaining.set(max(0, remaining))
        finally:
            consumer.unsubscribe()
            m.in_recovery.set(0)
            m.recovery_remaining.set(0)
        log.info("restored in %.1f s", time.monotonic() - started)

    def standby_targets(self) -> set[int]:
        """Partitions to keep warm copies of: ``ORCH_STANDBY_REPLICAS`` x as many as this worker
        owns, the ones right after its own (the range assignor gives contiguous ranges, so with
        two workers each keeps the other's whole share warm)."""
        k, n, owned = self.settings.standby_replicas, self.settings.partitions, self.ready
        if k == 0 or not owned:
            return set()
        top = max(owned)
        others = sorted((p for p in range(n) if p not in owned), key=lambda p: (p - top) % n)
        return set(others[:k * len(owned)])

    async def _standby(self) -> None:
        """Warm copies: follow the changelogs of partitions this worker may take over next, so a
        take-over only replays the last moments of the changelog (see :meth:`_restore`)."""
        while True:
            try:
                await self._follow_standbys()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - warm copies are an optimisation: log, retry
                log.exception("following the changelog for warm copies failed; retrying in 5 s")
                await asyncio.sleep(5.0)

    async def _follow_standbys(self) -> None:
        from orchestrator.runtime.client import seek_to_start
        topic = self.settings.changelog_topic
        consumer = AIOKafkaConsumer(**self.settings.aiokafka_kwargs(), enable_auto_commit=False,
                                    max_partition_fetch_bytes=4 * 1024 * 1024)
        await consumer.start()
        following: set[int] = set()
        try:
            while True:
                targets = self.standby_targets()
                if targets != following:
                    tps = [TopicPartition(topic, p) for p in sorted(targets)]
                    consumer.assign(tps)
                    for tp in tps:
                        done = self.stores.get(tp.partition).changelog_offset()
                        if done is None:
                            await seek_to_start(consumer, [tp])
                        else:
                            consumer.seek(tp, done + 1)
                    following = targets
                if not following:
                    await asyncio.sleep(1.0)
                    continue
                batch = await consumer.getmany(timeout_ms=1000, max_records=STANDBY_BATCH)
                if not batch:
                    continue
                async with self._lock:       # never while the partition is restored or active
                    for tp, msgs in batch.items():
                        if not msgs or tp.partition in self.ready or tp.partition not in following:
                            continue
                        store = self.stores.get(tp.partition)
                        done = store.changelog_offset()
                        fresh = [(r.key, r.value) for r in msgs if done is None or r.offset > done]
                        if fresh:
                            store.apply_changelog(fresh, msgs[-1].offset)
        finally:
            await consumer.stop()

    # ------------------------------------------------------------------ one batch
    async def _batch(self, records: dict[TopicPartition, list[Any]]) -> None:
        s = self.settings
        events_topic = s.events_topic
        now = now_ms()
        self._now = now
        self._cache = {}
        self._ticks = []
        self._decided = 0
        self._decide_s = 0.0
        commits: dict[TopicPartition, int] = {}
        for tp, msgs in records.items():
            p = tp.partition
            if p not in self.ready or not msgs:
                continue                   # revoked meanwhile: the new owner reads them
            store = self.stores.get(p)
            ingest = tp.topic == events_topic
            for msg in msgs:
                try:
                    if ingest:
                        self._ingest(msg, p, store)
                    else:
                        self._decide(msg.key, msg.value, f"k{p}:{msg.offset}", p, store)
                except Fatal:
                    raise
                except Exception:
                    # A bug must not stop the partition (the input is logged by position, not content).
                    log.exception("unexpected error on %s[%d]@%d", tp.topic, p, msg.offset)
            commits[tp] = msgs[-1].offset + 1
        # Changelog records after the outputs; the flusher waits for all of them.
        self._seq += 1
        seq = self._seq
        changes: dict[int, list[tuple[bytes, bytes | None, bytes | None]]] = {}
        changelog_futures: list[tuple[int, asyncio.Future, int]] = []
        changelog = s.changelog_topic
        overlay = self._overlay
        for key, e in self._cache.items():
            if not e.dirty:
                continue
            st = e.state
            new = None if st is None else due_bytes(st.next_due_ms()) + encode_state(st)
            changes.setdefault(e.partition, []).append((key, e.old_due, new))
            overlay[key] = (seq, new)
            self._out.add(changelog, e.partition, STATE + key, new)
        if self._decided:
            self.metrics.processing.observe(self._decide_s / self._decided)
        futures: list[asyncio.Future] = []
        for topic, partition, fut, count in await self._out.submit():
            futures.append(fut)
            if topic == changelog:
                changelog_futures.append((partition, fut, count))
        self._out = _Outbound(self.producer)
        flush = _Flush(seq, futures, changelog_futures, changes, commits, self._ticks)
        self._cache = {}
        self._ticks = []
        await self._flushes.put(flush)

    def _send_raw(self, topic: str, key: bytes | None, value: bytes, partition: int | None) -> None:
        """Add a record to the batch's outbound records (sent when the batch is decided)."""
        if partition is None:
            partition = self._partition_for(topic, key)
        try:
            self._out.add(topic, partition, key, value)
        except Exception as exc:  # noqa: BLE001 - e.g. a record over the size limit
            self._delivery_failed(exc)

    def _send(self, suffix: str, key: bytes | None, value: bytes) -> None:
        self._send_raw(self.topic_names[suffix], key, value, None)

    def _partition_for(self, topic: str, key: bytes | None) -> int:
        """Kafka's default partitioner (murmur2 of the key), as every client computes it."""
        n = self._partition_counts[topic]
        if key is None:
            self._round_robin += 1
            return self._round_robin % n
        return (murmur2(key) & 0x7FFFFFFF) % n

    def _delivery_failed(self, exc: BaseException) -> None:
        self.metrics.output_errors.inc()
        log.error("an output could not be delivered (%s); stopping so the input is replayed", exc)
        self._fatal = exc
        raise Fatal(str(exc))

    def _ingest(self, msg: Any, p: int, store: PartitionStore) -> None:
        s = self.settings
        value = msg.value
        try:
            parsed = parse_event(value, max_bytes=s.max_event_bytes, now_ms=self._now, channels=self.policies.channels)
        except Exception as exc:  # the core promises not to raise; never crash on input anyway
            log.exception("event validation failed unexpectedly")
            parsed = Rejection("invalid_schema", f"validation error: {type(exc).__name__}")
        if isinstance(parsed, Rejection):
            self._dead.inc()
            self._dead_letters[parsed.reason].inc()
            record = dead_letter(parsed, topic=msg.topic, partition=p, offset=msg.offset, raw=value,
                                 now_ms=self._now)
            self._send("dlq", msg.key, orjson.dumps(record))
            return
        cid = parsed.customer_id.encode()
        home = self._partition_for(s.keyed_topic, cid)     # = the partition of the customer's state
        if msg.key == cid and p == home:
            self._decide(cid, parsed, f"e{p}:{msg.offset}", p, store)
        else:
            self._send_raw(s.keyed_topic, cid, encode_event(parsed), home)

    def _decide(self, key: bytes, value: bytes | Event, coord: str, p: int, store: PartitionStore) -> None:
        m, engine, now = self.metrics, self.engine, self._now
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
            pending = self._overlay.get(key)
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
            self._duplicate.inc()
            return
        else:
            self._valid.inc()
            m.last_event_ts.set(ev.ts_ms / 1000)
        for lc in result.lifecycle:
            self._record_lifecycle(lc)
        for name in result.invalid_fields:
            self._invalid_fields[name].inc()
        encoded = [(o.topic, o.key, orjson.dumps(o.value)) for o in result.outputs]
        for (topic, okey, out), o in zip(encoded, result.outputs):
            self._send(topic, okey.encode(), out)
            self._count(o.topic, o.value, now, event_triggered=not is_tick)
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
        positions, events, keyed = self.positions, self.settings.events_topic, self.settings.keyed_topic
        box = state.outbox
        for coord in list(box):
            head, _, offset = coord.partition(":")
            done = positions.get(TopicPartition(events if head[0] == "e" else keyed, int(head[1:])))
            if done is not None and int(offset) < done:
                del box[coord]

    def _record_lifecycle(self, lc: Lifecycle) -> None:
        m = self.metrics
        row = self.stats.get((lc.journey, lc.version))
        if row is None:
            row = self.stats[(lc.journey, lc.version)] = {
                "entries": {"treatment": 0, "holdout": 0}, "goals": {"treatment": 0, "holdout": 0}, "exits": {}}
        if lc.kind == "entered":
            m.journey_entries.labels(lc.journey, lc.group).inc()
            row["entries"][lc.group] += 1
        elif lc.kind == "goal":
            m.journey_goals.labels(lc.journey, lc.group).inc()
            row["goals"][lc.group] += 1
        else:
            m.journey_exits.labels(lc.journey, lc.reason).inc()
            row["exits"][lc.reason] = row["exits"].get(lc.reason, 0) + 1

    def _count(self, topic: str, value: dict[str, Any], now: int, *, event_triggered: bool = True) -> None:
        m = self.metrics
        if topic.startswith("actions."):
            counter = self._actions.get(value["channel"])
            (counter or m.actions.labels(value["channel"])).inc()
            ts = parse_ts_ms(value.get("event_ts"))
            # Only sends an event triggered directly: a send after a wait (or a quiet-hours
            # deferral) is late on purpose.
            if ts is not None and event_triggered:
                m.event_to_action.observe(max(0.0, (now - ts) / 1000))
        elif topic == "suppressions":
            counter = self._suppressions.get(value["reason"])
            (counter or m.suppressions.labels(value["reason"])).inc()
        elif topic == "decisions":
            shadow = "true" if value.get("shadow") else "false"     # shadow decisions send nothing
            counter = self._decisions.get((value["outcome"], shadow))
            (counter or m.decisions.labels(value["outcome"], shadow)).inc()

    async def _observe(self) -> None:
        """Consumer lag per partition: the partition's end minus the next offset to process."""
        consumer, m = self.consumer, self.metrics
        m.consumer_lag.clear()            # partitions moved to another worker drop out
        for tp in list(consumer.assignment()):
            if tp.partition not in self.ready:
                continue
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            done = self.positions.get(tp)
            if done is None:
                try:
                    done = await consumer.position(tp)
                except Exception:  # noqa: BLE001 - partition moved away meanwhile
                    continue
            m.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, highwater - done))

    # ------------------------------------------------------------------ timers
    async def _scan_timers(self) -> None:
        """Send a tick to the customer's partition for every due timer of our partitions.

        The timer index (``t`` + due ms + customer id in each partition's RocksDB) is in due
        order, so the due ones come first. A tick is only a wake-up call: the engine fires what
        the customer's state says is due, so a repeated tick fires nothing twice.
        """
        if self._fatal is not None:
            return
        now = now_ms()
        mono = time.monotonic()
        pending = 0
        keyed = self.settings.keyed_topic
        # Between full scans, each partition resumes after the last key it ticked: a timer is
        # always scheduled at or after "now", so nothing new can appear behind the cursor. The
        # periodic full scan re-sends ticks still unanswered after INFLIGHT_RETRY_S (and covers
        # a wall clock that stepped back).
        full = mono >= self._full_scan_at
        if full:
            self._full_scan_at = mono + FULL_SCAN_EVERY_S
            self._cursor.clear()
        ticks: list[tuple[int, bytes]] = []
        # Collect first, without awaiting: no RocksDB iterator lives across a rebalance.
        for partition in sorted(self.ready):
            for k in self.stores.get(partition).due(now, self._cursor.get(partition)):
                pending += 1
                self._cursor[partition] = k
                flight = self._inflight.get(k)
                if flight is None or mono - flight > INFLIGHT_RETRY_S:
                    self._inflight[k] = mono
                    ticks.append((partition, k))
                    if len(ticks) >= MAX_TICKS_PER_SCAN:
                        break
            if len(ticks) >= MAX_TICKS_PER_SCAN:
                break
        if full:                       # incremental scans only see what is past their cursor
            self.metrics.timers_due.set(pending)   # at least this many if the scan stopped early
        for partition, k in ticks:
            # Not part of a batch: a lost tick is sent again by a later full scan.
            due, customer = split_timer_key(k)
            await self.producer.send(keyed, value=TICK + due, key=customer, partition=partition)

    async def _count_timers(self) -> None:
        """Pending timers on this worker's partitions (a metric; scans keys only)."""
        count = 0
        for partition in sorted(self.ready):
            count += self.stores.get(partition).count_timers()
            await asyncio.sleep(0)
        self.metrics.timers_pending.set(count)

    # ------------------------------------------------------------------ web
    async def _serve_web(self) -> None:
        s = self.settings

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(body=self.metrics.render(), content_type="text/plain", charset="utf-8",
                                headers={"X-Content-Type-Options": "nosniff"})

        async def health(_: web.Request) -> web.Response:
            return web.json_response({"status": "ok", "journeys": len(self.engine.journeys),
                                      "partitions": sorted(self.ready)})

        async def stats(_: web.Request) -> web.Response:
            from orchestrator.core.stats import journey_report
            rows = [{"journey": j, "version": v, **row} for (j, v), row in sorted(self.stats.items())]
            return web.json_response({"scope": "this worker since it started; `orchestrator stats` reads "
                                               "every worker's decisions from Kafka",
                                      "journeys": [journey_report(r) for r in rows]})

        webapp = web.Application()
        webapp.router.add_get("/metrics", metrics)
        webapp.router.add_get("/health", health)
        webapp.router.add_get("/stats", stats)
        runner = web.AppRunner(webapp, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, s.web_host, s.web_port)
        await site.start()
        log.info("metrics on http://%s:%d/metrics", s.web_host, s.web_port)
        try:
            while True:
                await asyncio.sleep(3600)
        finally:
            await runner.cleanup()


def run_worker(settings: Settings, *, loglevel: str = "info") -> None:
    """Create topics, then run the worker until SIGINT/SIGTERM."""
    import uvloop

    from orchestrator.runtime.topics import ensure_topics

    del loglevel                      # logging is set up by the CLI
    uvloop.install()
    channels = load_policies(settings.policies).channels
    asyncio.run(check_topics(settings))         # refuse unusable topics before creating anything
    asyncio.run(ensure_topics(settings, channels))
    asyncio.run(check_topics(settings))
    published, end = asyncio.run(read_published(settings))

    async def main() -> None:
        worker = Worker(settings, published, end)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.stop)
        log.info("worker starting: %d journeys, bootstrap %s, prefix %s, %d partitions",
                 len(worker.engine.journeys), settings.bootstrap, settings.topic_prefix, settings.partitions)
        await worker.run()
        log.info("worker stopped")

    try:
        asyncio.run(main())
    except Fatal as exc:
        log.error("worker stopped on an error; its uncommitted inputs will be replayed: %s", exc)
        raise SystemExit(1) from None
