"""The worker: Kafka in, core decisions in batches, Kafka out.

One consumer group member reads ``<prefix>.events`` and the internal re-keyed topic
``<prefix>.internal.events-by-customer`` (co-partitioned: the range assignor gives
partition *p* of both to the same worker, and *p* is also the partition of the
customer's state). An event keyed by its customer_id is decided where it arrives;
any other is forwarded, re-keyed, and decided when it comes back on the internal
topic. Timer wake-ups (ticks) come back the same way.

The loop takes whatever the consumer has (up to ``BATCH_MAX`` records), and for
the whole batch (:mod:`~orchestrator.runtime.batch`):

1. decides every record with the pure core, reading each customer's state once
   (RocksDB, :mod:`orchestrator.runtime.store`) and keeping it in memory for the
   rest of the batch;
2. queues every output, then one changelog record per changed customer, and hands
   the batch to the checkpoint; then it goes on with the next batch.

The checkpoint (:mod:`~orchestrator.runtime.checkpoint`) takes the handed-over batches
in order and, for all it has:

3. waits until Kafka has acknowledged every output and changelog record (in exactly-once,
   then commits each input partition's transaction, its input offsets in it);
4. writes the changed states to RocksDB in one write batch, with the changelog offset;
5. commits the input offsets (at-least-once).

Until step 4, a batch's new states live in an in-memory overlay that later batches
read first, so deciding never waits for Kafka round trips (they overlap with the next
batch instead of adding up). A state change is durable (changelog) before its input
offset is committed, and the local database is never ahead of the changelog. A crash
between 3 and 5 replays the batch: the outputs of its inputs are in the changelog too
(the *journal*, by input offset, see :mod:`~orchestrator.runtime.batch`), so a replayed
record re-sends exactly those outputs (same ids) and decides nothing again (exactly-once needs no
journal: see :mod:`~orchestrator.runtime.transactions`). Partitions being revoked wait until
every batch in flight is committed, so a graceful hand-over replays nothing; a partition
assigned starts where its committed offsets say once the previous owner is fenced (see
:meth:`Worker._assigned`)
(restore and warm copies: :mod:`~orchestrator.runtime.recovery`; timers:
:mod:`~orchestrator.runtime.timers` and :mod:`~orchestrator.runtime.eventtime`; the duplicate
window: :mod:`~orchestrator.runtime.dedup`; endpoints: :mod:`~orchestrator.runtime.web`).

Measured reason for not running this as a Faust agent: Faust's per-record bookkeeping
(~200 µs of CPU per record with Kafka I/O on our machines, before any table write)
capped the worker at ~2,200 events/s; see docs/benchmarks.md for this loop's figures.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from orchestrator import compiled
from orchestrator.config import Settings
from orchestrator.core import Engine, JourneySet, load_journey_dir, load_policies
from orchestrator.core.journeyfiles import journey_dir_problem
from orchestrator.errors import ConfigError, WorkerFailure
from orchestrator.kafkaio.clients import partitions_of
from orchestrator.kafkaio.service import Rebalances, every, observe_lag, serve
from orchestrator.kafkaio.topics import check_topics
from orchestrator.observability.logs import COORDINATOR_WAIT
from orchestrator.observability.metrics import Metrics
from orchestrator.runtime import recovery, web
from orchestrator.runtime.batch import Decider
from orchestrator.runtime.checkpoint import Checkpoint
from orchestrator.runtime.counters import Counters
from orchestrator.runtime.dedup import DedupStores
from orchestrator.runtime.eventtime import Clocks
from orchestrator.runtime.ingest import IngestRules
from orchestrator.runtime.registry import Publication, Registry, read_published
from orchestrator.runtime.store import Stores, memory_bytes
from orchestrator.runtime.timers import SCAN_INTERVAL_S, TimerScanner
from orchestrator.runtime.transactions import Transactions
from orchestrator.runtime.window import Window

log = logging.getLogger("orchestrator.worker")

PRODUCER = {"acks": "all", "enable_idempotence": True, "linger_ms": 5, "max_batch_size": 256 * 1024,
            "max_request_size": 2 * 1024 * 1024}
# Records per loop iteration. A customer's state is read, decoded, encoded, changelogged and written
# once per batch however many of its events the batch holds, so in a backlog larger batches cost less
# per event: on the benchmark's backlog (python -m benchmarks.batchpath, 300,000 events) batches of
# 2,000 records made 0.245 changelog records (states and journals) per event and batches of 10,000
# made 0.182. It also bounds the time the loop is busy with one batch (~0.3 s at 30k events/s) and
# the states a batch holds decoded; under a paced load batches are as small as what has arrived. The
# duplicate window's record of one partition and batch (16 bytes per event) must fit a producer batch
# (PRODUCER's max_batch_size).
BATCH_MAX = 10_000
FETCH_MAX_WAIT_MS = 5             # what a fetch may wait for FETCH_MIN_BYTES (see the consumer below)
FETCH_MAX_WAIT_EOS_MS = 20        # the same in exactly-once, where every batch is a transaction per partition
FETCH_MIN_BYTES = 64 * 1024
GC_YOUNG = 20_000                 # allocations between young-generation collections (Python's default: 700)
GC_MIDDLE, GC_OLD = 50, 100       # young collections per middle one, middle ones per full one (Python's: 10, 10)
GC_IDLE_S = 1.0
POLL_MS = 100
TRIM_AFTER_RECORDS = 1_000        # a batch this large (a backlog, a burst of timers) grows the C heap...
TRIM_QUIET_S = 5.0                # ...which is given back once no such batch has come for this long
# glibc's malloc_trim(pad): returns the C heap's free memory to the system. None where the C library
# has none (musl, macOS): there the heap stays as large as it grew.
MALLOC_TRIM: Callable[[int], int] | None = getattr(ctypes.CDLL(None), "malloc_trim", None)


def collect_garbage() -> None:
    """The cyclic collector's run, if one is due, between two batches.

    The worker turns the collector's automatic runs off (:func:`run_worker`): an automatic run starts
    in the middle of a batch and walks every object the batch still holds (decoded states, outputs,
    journal entries), which all die by reference counting once the batch is handed over. This is the
    same schedule (``GC_YOUNG``, ``GC_MIDDLE``, ``GC_OLD``), run after each batch and every
    ``GC_IDLE_S`` (garbage made between batches), when little is alive. Measured on the batch path
    (5 alternating pairs): 0.0197 -> 0.0185 CPU s per 1k events, the collector off entirely 0.0187.
    """
    young, middle, old = gc.get_count()
    if young >= GC_YOUNG:
        gc.collect(2 if old >= GC_OLD else 1 if middle >= GC_MIDDLE else 0)


class HeapTrim:
    """Gives the C heap's free memory back to the system once a burst is over.

    A large batch (a backlog after a restart or an outage, the timers of thousands of customers due
    at once when a send window opens) holds its records, decoded states and outputs, and the batches
    in flight hold their records until Kafka acknowledges them. Freed, part of that memory stays in
    the C library's heap, which hands it out again but does not return it. In the 30-minute soak at
    b086f7c, a send window opening at 09:00 fired the sends deferred since the soak began (some
    40,000, from that minute's changelog bytes) within seconds, and the worker's RSS went from 205
    to 353 MiB and stayed there. Trimming recovers part of such a step: an 8-second backlog took a
    worker paced at 2,000 events/s from 106 to 275 MiB, and a minute later it held 270 MiB without
    the trim, 244 with it (RocksDB's cache and memtables, filling to their budgets, and Python's own
    allocator keep the rest). After a batch of at least ``TRIM_AFTER_RECORDS`` records, once
    ``TRIM_QUIET_S`` have passed without another, :meth:`idle` (called every ``GC_IDLE_S``) calls
    ``malloc_trim`` once: a few milliseconds (6 ms for 64 MiB on the development machine). A drain,
    whose batches are all large, trims only when it ends, so it does not give back what its next
    batch would take again.
    """

    def __init__(self, trim: Callable[[int], int] | None = MALLOC_TRIM,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._trim, self._clock = trim, clock
        self._large_at: float | None = None     # when the last large batch was decided, if not trimmed since
        self.trims = 0

    def batch(self, records: int) -> None:
        """A batch of ``records`` records was decided."""
        if records >= TRIM_AFTER_RECORDS:
            self._large_at = self._clock()

    def idle(self) -> bool:
        """Trim if a large batch came and none for ``TRIM_QUIET_S`` since; whether it trimmed."""
        at = self._large_at
        if at is None or self._trim is None or self._clock() - at < TRIM_QUIET_S:
            return False
        self._large_at = None
        self._trim(0)
        self.trims += 1
        return True


class Worker:
    """One worker process: wiring, the poll loop, rebalances and the background tasks."""

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
        self.counters = Counters(self.metrics, self.policies.channels)
        s = settings
        self.topic_names = {s.topics.suffix(name): name for name in s.topics.outputs(self.policies.channels)}
        self.stores = Stores(s.data_dir)
        self.dedup = DedupStores(s.data_dir, self.stores.memory)
        self.window = Window(self.dedup)       # the duplicate window, outside the states
        self.ready: set[int] = set()           # partitions restored and owned by this worker
        self.failure: BaseException | None = None
        self._lock = asyncio.Lock()            # one batch at a time; rebalances wait for it
        self._stopping = asyncio.Event()
        self._deciding = False                 # records returned by the consumer, not all decided yet
        self._placements = 0                   # rebalances that set where input partitions start
        self._placed: dict[TopicPartition, int] = {}   # input partition -> the placement that set it
        self.heap = HeapTrim()
        self.clocks = Clocks(s.topics.events)
        self.checkpoint = Checkpoint(self.stores, self._commit, self.ready, self._fail,
                                     on_ticks_done=lambda keys: self.timers.done(keys),
                                     on_timer_indexed=lambda p, key: self.timers.rewind(p, key), window=self.window)
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.txns: Transactions | None = None       # exactly-once: a transactional producer per partition
        self.restorer: AIOKafkaConsumer | None = None

    def _on_publication(self, result: str) -> None:
        self.metrics.journey_publications.labels(result).inc()
        journeys = self.registry.journeys
        self.metrics.journeys_loaded.set(sum(len(v) for v in journeys.versions.values()))
        self.metrics.journey_labels(journeys.current)

    def _fail(self, exc: BaseException) -> NoReturn:
        """An output could not be delivered: stop without committing, so the input is replayed."""
        self.metrics.output_errors.inc()
        log.error("an output could not be delivered (%s); stopping so the input is replayed", exc)
        self.failure = exc
        raise WorkerFailure(str(exc))

    async def _send_seen(self, seen: dict[int, bytes]) -> dict[int, int]:
        """At-least-once: a batch's duplicate-window keys to their changelog, once its states are
        durable; the offset of each partition's record."""
        topic = self.settings.topics.dedup_changelog
        futures = {p: await self.producer.send(topic, value=blob, partition=p) for p, blob in seen.items()}
        return {p: (await fut).offset for p, fut in futures.items()}

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        await self.consumer.commit(offsets)

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        s = self.settings
        kw = s.aiokafka_kwargs()
        self.producer = AIOKafkaProducer(**kw, **PRODUCER)
        if s.exactly_once:
            self.txns = Transactions(lambda tid: AIOKafkaProducer(**kw, **PRODUCER, transactional_id=tid), s.app_id)
            self.checkpoint.txns = self.txns
        else:
            self.checkpoint.send_seen = self._send_seen
        # Every reader of the worker reads committed records only: in exactly-once, what an aborted
        # transaction wrote (outputs, re-keyed events, changelog records) is never read back.
        self.restorer = AIOKafkaConsumer(**kw, enable_auto_commit=False, isolation_level="read_committed",
                                         max_partition_fetch_bytes=4 * 1024 * 1024)
        self.consumer = AIOKafkaConsumer(
            **kw, group_id=s.app_id, enable_auto_commit=False, auto_offset_reset="earliest",
            isolation_level="read_committed",
            partition_assignment_strategy=(RangePartitionAssignor,),
            # A SIGKILLed worker keeps its partitions until its session times out; the default
            # (45 s) would stall every timer of those partitions that long.
            session_timeout_ms=10_000, heartbeat_interval_ms=2_000, max_poll_interval_ms=300_000,
            # Under a paced load, a fetch answered as soon as any record arrives makes batches of a few
            # events, and each batch costs its requests and writes whatever its size (measured at 3,000
            # events/s: three times the drain's CPU per event). Kafka holds a fetch until FETCH_MIN_BYTES
            # have come or FETCH_MAX_WAIT_MS have passed, so batches grow with the load, for at most that
            # wait of latency. The wait is latency against CPU: measured at 7,000 events/s (benchmark
            # latency phase, 3 alternating pairs), 20 ms made event-to-action p50 43-49 ms at 0.077-0.085
            # CPU s per 1k events, 5 ms made it 14-18 ms at 0.078-0.090; at 3,000 events/s, p50 26-28 ->
            # 12-13 ms and 0.103-0.116 -> 0.153-0.164 CPU s per 1k. A drain fills a fetch at once either way.
            # Exactly-once waits longer: a partition's outputs are visible when its transaction commits,
            # and its next batch waits for that commit, so smaller batches only made more transactions
            # (at 7,000 events/s, two alternating pairs: p50 / p99 81-115 / 275-294 ms at 0.101-0.107 CPU s
            # per 1k with 5 ms, 63-70 / 227-264 ms at 0.098 with 20 ms).
            fetch_max_wait_ms=FETCH_MAX_WAIT_EOS_MS if s.exactly_once else FETCH_MAX_WAIT_MS,
            fetch_min_bytes=FETCH_MIN_BYTES,
            max_partition_fetch_bytes=1024 * 1024)
        await self.producer.start()
        await self.restorer.start()
        names = [*self.topic_names.values(), s.topics.internal_events, s.topics.changelog, s.topics.dedup_changelog]
        partition_counts = {t: len(ps) for t, ps in (await partitions_of(s, names)).items()}
        missing = [t for t in names if t not in partition_counts]
        if missing:
            raise ConfigError(f"topics missing: {', '.join(missing)}")
        self.timers = TimerScanner(self.stores, self.producer, s.topics.internal_events, self.metrics, lambda: self.ready,
                                   self.clocks)
        self.decider = Decider(s.topics, IngestRules.of(s), self.engine, self.stores, self.counters,
                               self.checkpoint, self.producer, self.topic_names, partition_counts, self._fail,
                               self.clocks, self.window, self.txns)
        tasks: list[asyncio.Task] = []
        try:
            self.consumer.subscribe([s.topics.events, s.topics.internal_events], listener=Rebalances(
                lambda tps: self._assigned({tp.partition for tp in tps}),
                lambda tps: self._revoked({tp.partition for tp in tps})))
            await self.consumer.start()
            tasks = [asyncio.ensure_future(c) for c in (
                self._checkpoint(), self._serve_web(), self.registry.follow(self._published_end),
                every(SCAN_INTERVAL_S, self._scan_timers), every(60.0, self.timers.count),
                every(5.0, self._observe), every(GC_IDLE_S, self._collect_garbage), self._standby(self.stores, s.topics.changelog),
                self._standby(self.dedup, s.topics.dedup_changelog))]
            await self._loop()
            await self.checkpoint.drain()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.txns is not None:
                await self.txns.abort_all()        # what is not committed is decided again by the next owner
                await self.txns.stop()
            # Leave the group now, so partitions move at once. After a clean stop every processed
            # input is committed; after a failure the uncommitted batch is replayed elsewhere.
            await self._stop_consumer()
            await self.restorer.stop()
            await self.producer.stop()
            self.stores.close()
            self.dedup.close()
        if self.failure is None and self.checkpoint.failed is not None:
            self.failure = self.checkpoint.failed
        if self.failure is not None:
            raise WorkerFailure(str(self.failure))

    async def _stop_consumer(self) -> None:
        try:
            await asyncio.wait_for(self.consumer.stop(), 30)
        except Exception as exc:  # noqa: BLE001 - stopping anyway
            log.warning("consumer did not stop cleanly: %s", exc)

    def stop(self) -> None:
        self._stopping.set()

    def _failed(self) -> bool:
        return self.failure is not None or self.checkpoint.failed is not None

    async def _checkpoint(self) -> None:
        await self.checkpoint.run()

    async def _loop(self) -> None:
        consumer = self.consumer
        stopping = self._stopping
        while not stopping.is_set() and not self._failed():
            records = await consumer.getmany(timeout_ms=POLL_MS, max_records=BATCH_MAX)
            if not records:
                continue
            placements = self._placements      # read before any await: what these records were fetched after
            self._deciding = True
            try:
                # Where each partition's next batch starts: past these records and past any transaction
                # marker or aborted records right after them (what is committed, so a caught-up
                # partition shows no lag and no input is skipped).
                positions = {tp: await consumer.position(tp) for tp in records if tp in consumer.assignment()}
                async with self._lock:
                    if self._placements != placements:
                        records = self._fetched_since(records, placements)
                    try:
                        flush = await self.decider.run(records, self.ready, positions)
                    except WorkerFailure:
                        return
                    await self.checkpoint.hand_over(flush)
            finally:
                self._deciding = False
            collect_garbage()
            self.heap.batch(sum(len(msgs) for msgs in records.values()))

    # ------------------------------------------------------------------ rebalancing
    async def _revoked(self, partitions: set[int]) -> None:
        async with self._lock:            # the batch in flight finishes, then everything is committed
            await self.checkpoint.drain()
            self.ready -= partitions
            self.timers.reset()
            self.checkpoint.forget(partitions)
            self.decider.forget(partitions)
            self.clocks.forget(partitions)
            if self.txns is not None:
                await self.txns.close(partitions)
        if partitions:
            log.info("partitions revoked: %s", sorted(partitions))

    async def _assigned(self, partitions: set[int]) -> None:
        COORDINATOR_WAIT.joined()              # from now on, coordinator trouble is worth its ERROR lines
        async with self._lock:
            new = partitions - self.ready
            self.clocks.forget(new)
            if self.txns is not None:
                await self.txns.open(new)      # first: fences the previous owner before its state is read
            await recovery.restore(self.restorer, self.stores, self.settings.topics.changelog, new, self.metrics)
            await recovery.restore(self.restorer, self.dedup, self.settings.topics.dedup_changelog, new, self.metrics)
            starts: dict[TopicPartition, int] = {}
            for p in sorted(new):
                # Read after the fencing above, so the previous owner's last transaction, offsets
                # included, is complete and visible.
                committed = {source: await self.consumer.committed(TopicPartition(topic, p))
                             for source, topic in self.decider.topics.items()}
                self.decider.adopt(p, self.stores.get(p), committed)
                starts.update((TopicPartition(self.decider.topics[source], p), offset)
                              for source, offset in committed.items() if offset is not None)
            self._place(starts)
            self.ready.clear()
            self.ready.update(partitions)
        log.info("partitions assigned: %s", sorted(partitions))

    def _place(self, starts: dict[TopicPartition, int]) -> None:
        """Each input partition just assigned starts at its committed offset (``starts``).

        The client looks up where a partition starts as soon as it is assigned, before
        :meth:`_assigned` has fenced the previous owner, and without ``require_stable`` (KIP-447):
        while that owner's last transaction is being completed, the lookup answers the offsets before
        it, and the client would fetch that transaction's inputs again. Their states and duplicate
        windows came back with the changelogs, so valid events would be dropped as duplicates, but an
        input that was dead-lettered would be dead-lettered a second time (seen in the fault suite's
        exactly-once scale-down). So every partition is sought to the offsets read after the
        fencing, and what the client returned before that (:meth:`_fetched_since`) is dropped: it is
        fetched again from here. Nothing awaits between the seeks and the count, so records returned
        after it were fetched from here.
        """
        self._placements += 1
        for tp, offset in starts.items():
            self.consumer.seek(tp, offset)
            self._placed[tp] = self._placements

    def _fetched_since(self, records: dict[TopicPartition, list], placements: int) -> dict[TopicPartition, list]:
        """``records`` without those of partitions placed (:meth:`_place`) after they were fetched."""
        return {tp: msgs for tp, msgs in records.items() if self._placed.get(tp, 0) <= placements}

    async def _standby(self, stores: Stores | DedupStores, topic: str) -> None:
        """Warm copies of the partitions this worker may take over next (see :mod:`recovery`): their
        states or their duplicate windows (``stores``) from ``topic``, their changelog."""
        s = self.settings
        while True:
            try:
                consumer = AIOKafkaConsumer(**s.aiokafka_kwargs(), enable_auto_commit=False,
                                            isolation_level="read_committed",
                                            max_partition_fetch_bytes=4 * 1024 * 1024)
                await consumer.start()
                try:
                    await recovery.follow_standbys(
                        consumer, stores, topic,
                        lambda: recovery.standby_targets(s.standby_replicas, s.partitions, self.ready),
                        lambda: self.ready, self._lock)
                finally:
                    await consumer.stop()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - warm copies are an optimisation: log, retry
                log.exception("following %s for warm copies failed; retrying in 5 s", topic)
                await asyncio.sleep(5.0)

    # ------------------------------------------------------------------ periodic
    async def _scan_timers(self) -> None:
        if not self._failed():
            await self.clocks.check(self.consumer, set(self.ready), busy=lambda: self._deciding)
            await self.timers.scan()

    async def _collect_garbage(self) -> None:
        collect_garbage()                 # what was made between batches, or while none come
        self.heap.idle()                  # a burst's memory back to the system, once it is over

    async def _observe(self) -> None:
        """Consumer lag per partition (the partition's end minus the next offset to process), and the
        memory of the RocksDB databases."""
        consumer = self.consumer
        done: dict[TopicPartition, int] = {}
        for tp in list(consumer.assignment()):
            if tp.partition not in self.ready:
                continue
            committed = self.checkpoint.positions.get(tp)
            if committed is None:
                try:
                    committed = await consumer.position(tp)
                except Exception:  # noqa: BLE001 - partition moved away meanwhile
                    continue
            done[tp] = committed
        observe_lag(consumer, self.metrics.consumer_lag, done.get, done)
        dbs = [store.db for store in (*self.stores.open.values(), *self.dedup.open.values())]
        for kind, size in memory_bytes(dbs).items():
            self.metrics.rocksdb_memory.labels(kind).set(size)

    async def _serve_web(self) -> None:
        await web.serve(self.settings, self.metrics,
                        health=lambda: {"journeys": len(self.engine.journeys), "partitions": sorted(self.ready)},
                        stats=lambda: self.counters.stats)


def run_worker(settings: Settings) -> None:
    """Create topics, then run the worker until SIGINT/SIGTERM.

    First of all it takes its data folder (:mod:`~orchestrator.runtime.datadir`) and its web
    address (:func:`web.bind`) for the life of the process, so a second worker on either stops
    here, in one sentence, before it creates anything or joins the consumer group.
    """
    from orchestrator.kafkaio.topics import ensure_topics
    from orchestrator.runtime.datadir import claim

    claim(settings.data_dir)
    web.bind(settings)
    channels = load_policies(settings.policies).channels
    problem = journey_dir_problem(settings.journeys)
    if problem is not None:
        raise ConfigError(problem)          # before any topic is created
    if not Path(settings.journeys).is_dir():
        log.warning("no journeys folder %r (ORCH_JOURNEYS): only journeys published to %s run",
                    settings.journeys, settings.topics.journeys)
    asyncio.run(check_topics(settings))         # refuse unusable topics before creating anything
    asyncio.run(ensure_topics(settings, channels))
    asyncio.run(check_topics(settings))
    published, end = asyncio.run(read_published(settings))

    def started(worker: Worker) -> None:
        # The objects of a batch (decoded states, outputs) die by reference counting when the batch
        # is done; the cyclic collector's young-generation pass every 700 allocations only walked
        # them (measured: ~8 % of the drain's CPU). Start-up objects (journeys, modules) are frozen
        # out of its way; the collector runs between batches (collect_garbage), not on its own.
        gc.collect()
        gc.freeze()
        gc.disable()
        log.info("worker starting: %d journeys, bootstrap %s, prefix %s, %d partitions, hot path %s",
                 len(worker.engine.journeys), settings.bootstrap, settings.topic_prefix, settings.partitions,
                 compiled.describe())

    try:
        serve(lambda: Worker(settings, published, end), started=started)
        log.info("worker stopped")
    except WorkerFailure as exc:
        log.error("worker stopped on an error; its uncommitted inputs will be replayed: %s", exc)
        raise SystemExit(1) from None
