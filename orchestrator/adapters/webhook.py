"""``orchestrator adapter webhook``: actions from Kafka to an HTTP endpoint, each delivered once.

One consumer group member reads ``<prefix>.actions.<channel>`` for its channels (and
``<prefix>.suppressions`` when ``--suppressions-url`` is given); like every reader of these output
topics in the adapter, it reads committed records only (``isolation_level="read_committed"``), so
a record of an aborted transaction is never delivered nor taken as a cancel. Each assigned partition is a
*lane* (:mod:`orchestrator.adapters.lanes`): its records start in offset order, up to
``--concurrency`` at a time but never two of one key (customer) or one action id at once, and its
offset is committed up to the first record that is not finished. For one action
(:mod:`orchestrator.adapters.records`):

1. **Look it up** in the store (:mod:`orchestrator.adapters.dedup`). An outcome already recorded
   makes it a duplicate (a replay, or a copy the worker re-sent): nothing is POSTed; only the
   Kafka records of step 5 not yet acknowledged are sent again, with the same content.
2. **Cancelled?** First catch up: wait until the cancels reader (7) has read the suppressions
   topic up to the end offsets that topic had when the action was read (one ListOffsets request
   per batch of actions read). Then decide: a suppression listed its ``action_id`` in ``cancels``:
   record ``C``, drop it.
3. **Send** (:mod:`orchestrator.adapters.delivery`): take a token of the channel's bucket
   (``--max-per-second``), check the cancels again, record ``I`` (in flight), POST the action's
   JSON unchanged with ``Idempotency-Key: <action_id>``.
4. **Answer**: 2xx records ``D``. 5xx, 408, 409, 425, 429, a timeout or a connection error is
   retried after a backoff (:mod:`orchestrator.adapters.retry`) from 3 while ``--retry-budget``
   allows; any other answer, or the end of the budget, records ``F`` with the detail.
5. **Tell Kafka**: ``D``: a ``message.delivered`` event to ``<prefix>.events``; ``F``: a dead
   letter (reason ``delivery_failed``) to ``<prefix>.dlq`` and a ``message.failed`` event
   (:mod:`orchestrator.adapters.wire`). Once Kafka has acknowledged them, record ``d`` / ``f``.
6. **Done**: the record's offset is committed (every second, and when partitions are revoked or
   the adapter stops: this module) once every earlier record of its partition is done.
7. **Cancels** (:mod:`orchestrator.adapters.cancels`): a second consumer, outside the group, reads
   every partition of ``<prefix>.suppressions`` and stores the cancelled ids with its read position
   in one atomic write. At start it first catches up (from its stored position, or from one
   de-duplication window ago) before any action is delivered; then step 2's catch-up makes a
   suppression that reached its topic before an action was read win over that action, in
   whichever order the two topics received them and however far behind this reader is.

A crash anywhere replays records from the last commit, and step 1 makes the replay send nothing
twice, except between 3 and 4: an action recorded ``I`` has an unknown outcome (the provider may
have processed the request whose answer never arrived), so it is POSTed again with the same
``Idempotency-Key``; providers that honour the key (Stripe, Twilio, ...) answer it from their
record instead of delivering again. That window is the requests in flight at the crash, at most
``--concurrency`` x the assigned partitions. A graceful stop or rebalance lets requests in flight
finish (a request waiting for a token or a backoff is given up, to be sent by the partition's next
owner) and commits, so it replays nothing.

This module is the wiring: it checks the topics, opens the store, starts the endpoints
(:mod:`orchestrator.adapters.web`), the producer, the HTTP session and the cancels reader, then
runs the poll loop that feeds the lanes, handles rebalances, commits, and runs the periodic upkeep
(:mod:`orchestrator.adapters.housekeeping`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from orchestrator.adapters import housekeeping, web
from orchestrator.adapters.cancels import Cancels
from orchestrator.adapters.dedup import DedupStore, adopt_old_store
from orchestrator.adapters.delivery import Delivery
from orchestrator.adapters.lanes import Item, Lane, first
from orchestrator.adapters.metrics import AdapterMetrics
from orchestrator.adapters.options import WebhookOptions
from orchestrator.adapters.records import RecordHandler
from orchestrator.adapters.wire import parse_action, parse_suppression
from orchestrator.config import Settings
from orchestrator.core.events import Rejection
from orchestrator.errors import AdapterFailed, ConfigError
from orchestrator.kafkaio.service import Rebalances, every, serve
from orchestrator.kafkaio.topics import connect_admin

log = logging.getLogger("orchestrator.adapter")

MAX_BACKLOG = 2_000               # records fetched but not started, per partition; more pauses it
POLL_MS = 200
COMMIT_EVERY_S = 1.0
PRUNE_EVERY_S = 60.0
LAG_EVERY_S = 5.0


# ---------------------------------------------------------------------------- the adapter
class WebhookAdapter:
    """One adapter process: wiring, the poll loop, rebalances, commits and the background tasks."""

    def __init__(self, settings: Settings, options: WebhookOptions) -> None:
        self.settings, self.options = settings, options
        self.metrics = AdapterMetrics(options.channels, forwarding=options.suppressions_url is not None)
        self.channel_of = {settings.topics.actions(c): c for c in options.channels}
        self.suppressions_topic = settings.topics.suppressions
        self.events_topic = settings.topics.events
        self.dlq_topic = settings.topics.dlq
        self.lanes: dict[TopicPartition, Lane] = {}
        self.store: DedupStore | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.delivery: Delivery | None = None
        self.handler: RecordHandler | None = None
        self.cancels: Cancels | None = None
        self.suppression_partitions: list[int] = []
        self._paused: set[TopicPartition] = set()
        self._stopping = asyncio.Event()
        self._cancels_ready = asyncio.Event()
        self._joined = False
        self._fatal: BaseException | None = None

    def stop(self) -> None:
        self._stopping.set()

    def _fail(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = exc
            log.error("stopping on an error (%s: %s); what is not finished is read again on restart",
                      type(exc).__name__, exc)
        self._stopping.set()

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        s, o = self.settings, self.options
        await self._check_topics()
        if o.old_data_root is not None:
            moved = adopt_old_store(o.old_data_root, o.data_dir, s.topic_prefix)
            if moved is not None:
                log.info("moved the store of an earlier version from %s to %s: the default store is now one per "
                         "topic prefix, whatever the consumer group", moved, o.data_dir)
        self.store = store = DedupStore(o.data_dir, o.dedup_window_ms)
        try:
            runner = await web.start(s.web_host, o.web_port, self.metrics, self._health)
        except BaseException:
            store.close()
            raise
        kw = s.aiokafka_kwargs()
        self.producer = AIOKafkaProducer(**kw, acks="all", enable_idempotence=True, linger_ms=5)
        self.delivery = delivery = Delivery(o, store, self.metrics)
        self.handler = RecordHandler(options=o, store=store, metrics=self.metrics, delivery=delivery,
                                     producer=self.producer, channel_of=self.channel_of,
                                     events_topic=self.events_topic, dlq_topic=self.dlq_topic)
        tasks: list[asyncio.Task] = []
        try:
            await self.producer.start()
            delivery.open()
            self.cancels = Cancels(s, self.suppressions_topic, self.suppression_partitions, store, self.metrics,
                                   o.dedup_window_ms, self._cancels_caught_up)
            tasks.append(self._guarded(self.cancels.run(), "reading the suppressions topic"))
            await first(self._cancels_ready.wait(), self._stopping.wait())
            if not self._stopping.is_set():
                topics = sorted(self.channel_of) + ([self.suppressions_topic] if o.suppressions_url else [])
                self.consumer = AIOKafkaConsumer(
                    **kw, group_id=o.group, enable_auto_commit=False, auto_offset_reset="earliest",
                    isolation_level="read_committed",
                    # A killed adapter keeps its partitions until its session times out (default 45 s).
                    session_timeout_ms=10_000, heartbeat_interval_ms=2_000,
                    # A revoked partition waits for its requests in flight (at most --timeout each).
                    rebalance_timeout_ms=int((o.timeout_s + 30) * 1000),
                    fetch_max_wait_ms=100, max_partition_fetch_bytes=1024 * 1024)
                self.consumer.subscribe(topics, listener=Rebalances(self._assigned, self._revoked))
                await self.consumer.start()
                log.info("consuming %s as group %s; POSTing to %s", ", ".join(topics), o.group,
                         delivery.origin[o.url])
                consumer, metrics = self.consumer, self.metrics
                # A periodic job that fails stops the adapter (with one sentence), not hangs it.
                tasks += [self._guarded(every(COMMIT_EVERY_S, self._commit_all, keep_going=False),
                                        "committing offsets"),
                          self._guarded(every(PRUNE_EVERY_S, lambda: housekeeping.prune(store, metrics),
                                              keep_going=False), "pruning the store"),
                          self._guarded(every(LAG_EVERY_S, lambda: housekeeping.observe_lag(consumer, self.lanes, metrics),
                                              keep_going=False), "measuring lag")]
                await self._loop()
        finally:
            lanes = list(self.lanes.values())
            await asyncio.gather(*(lane.stop() for lane in lanes))
            if self.consumer is not None:
                await self._commit(lanes)
                try:
                    await asyncio.wait_for(self.consumer.stop(), 30)   # leaves the group now
                except Exception as exc:  # noqa: BLE001 - stopping anyway
                    log.warning("consumer did not stop cleanly: %s", exc)
            self.lanes.clear()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await delivery.close()
            await self.producer.stop()
            await runner.cleanup()
            store.close()
        if self._fatal is not None:
            raise AdapterFailed(f"{type(self._fatal).__name__}: {self._fatal}")

    async def _check_topics(self) -> None:
        """The adapter creates no topics: a missing one is a sentence, not broker defaults."""
        s = self.settings
        names = [*sorted(self.channel_of), self.suppressions_topic, self.dlq_topic, self.events_topic]
        admin = await connect_admin(s, timeout_s=30.0)
        try:
            described = await admin.describe_topics(names)
        finally:
            await admin.close()
        found = {d["topic"]: sorted(p["partition"] for p in d["partitions"])
                 for d in described if d["error_code"] == 0 and d["partitions"]}
        missing = [name for name in names if name not in found]
        if missing:
            raise ConfigError(f"topic{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                              f"{'do' if len(missing) > 1 else 'does'} not exist on {s.bootstrap}; start a worker "
                              "with these channels once (it creates its topics) or create them with "
                              "ORCH_PARTITIONS partitions, then start the adapter again")
        self.suppression_partitions = found[self.suppressions_topic]

    def _guarded(self, coro: Awaitable[None], what: str) -> asyncio.Task:
        """A background task whose failure stops the adapter (with one sentence), not hangs it."""
        async def guard() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.error("%s failed", what)
                self._fail(exc)
        return asyncio.ensure_future(guard())

    def _cancels_caught_up(self) -> None:
        self._cancels_ready.set()
        self.metrics.ready.set(1 if self._joined else 0)

    def _health(self) -> dict[str, Any]:
        ready = self._cancels_ready.is_set() and self._joined and not self._stopping.is_set()
        return {"status": "ok" if self._fatal is None else "failed", "ready": ready,
                "channels": list(self.options.channels),
                "partitions": [[tp.topic, tp.partition] for tp in sorted(self.lanes)]}

    # ------------------------------------------------------------------ the poll loop
    async def _loop(self) -> None:
        consumer, stopping = self.consumer, self._stopping
        assert consumer is not None
        while not stopping.is_set():
            batch = await consumer.getmany(timeout_ms=POLL_MS, max_records=1000)
            fence = None                  # one for every action of this batch, asked for after reading it
            for tp, msgs in batch.items():
                lane = self.lanes.get(tp)
                if lane is None or not msgs:
                    continue              # revoked meanwhile: the next owner reads them
                if fence is None and tp.topic != self.suppressions_topic:
                    assert self.cancels is not None
                    fence = self.cancels.fence()
                lane.add([self._item(m, fence) for m in msgs])
                if lane.backlog() >= MAX_BACKLOG and tp not in self._paused:
                    consumer.pause(tp)
                    self._paused.add(tp)
            for tp in list(self._paused):
                lane = self.lanes.get(tp)
                if lane is None:
                    self._paused.discard(tp)
                elif lane.backlog() < MAX_BACKLOG // 2:
                    consumer.resume(tp)
                    self._paused.discard(tp)

    def _item(self, msg: Any, fence: asyncio.Future | None) -> Item:
        forward = msg.topic == self.suppressions_topic
        data = parse_suppression(msg.value) if forward else parse_action(msg.value)
        ident = None if isinstance(data, Rejection) else data["suppression_id" if forward else "action_id"]
        return Item(msg, data, ident, None if forward else fence)

    # ------------------------------------------------------------------ rebalancing and commits
    def _assigned(self, assigned: list[TopicPartition]) -> None:
        handler = self.handler
        assert handler is not None
        for tp in assigned:
            if tp not in self.lanes:
                handle = handler.suppression if tp.topic == self.suppressions_topic else handler.action
                self.lanes[tp] = Lane(tp, handle, self.options.concurrency, self._fail)
        self._joined = True
        self.metrics.ready.set(1 if self._cancels_ready.is_set() else 0)
        log.info("partitions assigned: %s", _describe_tps(assigned))

    async def _revoked(self, revoked: list[TopicPartition]) -> None:
        lanes = [self.lanes.pop(tp) for tp in revoked if tp in self.lanes]
        for tp in revoked:
            self._paused.discard(tp)
        await asyncio.gather(*(lane.stop() for lane in lanes))
        await self._commit(lanes)
        if revoked:
            log.info("partitions revoked: %s", _describe_tps(revoked))

    async def _commit_all(self) -> None:
        await self._commit(list(self.lanes.values()))

    async def _commit(self, lanes: list[Lane]) -> None:
        offsets = {}
        for lane in lanes:
            nxt = lane.advance()
            if nxt is not None and nxt != lane.committed:
                offsets[lane.tp] = nxt
        if not offsets or self.consumer is None:
            return
        try:
            await self.consumer.commit(offsets)
        except Exception as exc:  # noqa: BLE001 - e.g. a rebalance meanwhile
            # Harmless: the store knows every outcome, so re-reading these records sends nothing twice.
            log.warning("offset commit failed (%s); those records will be read again and skipped",
                        type(exc).__name__)
            return
        for lane in lanes:
            if lane.tp in offsets:
                lane.committed = offsets[lane.tp]


def _describe_tps(tps: Iterable[TopicPartition]) -> str:
    by_topic: dict[str, list[int]] = {}
    for tp in tps:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return "; ".join(f"{t} {sorted(ps)}" for t, ps in sorted(by_topic.items())) or "none"


def run_webhook(settings: Settings, options: WebhookOptions) -> None:
    """Run the adapter until SIGINT/SIGTERM (then finish what is in flight, commit, leave the group)."""

    def started(_: object) -> None:
        limits = ", ".join(f"{c} {r:g}/s" for c, r in sorted(options.rates.items())) or "none"
        log.info("webhook adapter starting: channels %s, bootstrap %s, prefix %s, %d header(s) from the "
                 "environment, rate limits %s, data dir %s", ", ".join(options.channels), settings.bootstrap,
                 settings.topic_prefix, len(options.headers), limits, options.data_dir)

    try:
        serve(lambda: WebhookAdapter(settings, options), started=started)
        log.info("webhook adapter stopped")
    except KafkaError as exc:
        raise AdapterFailed(f"the adapter stopped on an error (Kafka at {settings.bootstrap} answered "
                            f"{type(exc).__name__}: {exc}); what it had not finished is read again when it "
                            "starts") from None
    except AdapterFailed as exc:
        raise AdapterFailed(f"the adapter stopped on an error ({exc}); what it had not finished is read "
                            "again when it starts") from None
