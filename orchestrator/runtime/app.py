"""The Faust worker: Kafka in, core decisions, Kafka out.

Two stages, both Faust agents:

1. ``ingest`` reads ``<prefix>.events`` (any key). It validates each message with
   the core; bad ones go to ``<prefix>.dlq`` with a reason, good ones are
   forwarded, re-keyed by ``customer_id``, to an internal topic. Producers may
   key events however they like; per-customer state stays correct.
2. ``decide`` reads the re-keyed topic. For each event it reads the customer's
   state from the ``customers`` table (RocksDB via rocksdict, changelogged to
   Kafka), runs :class:`orchestrator.core.Engine`, queues the outputs, then
   writes the new state.

Durability: Faust commits an input offset only after flushing the producer,
which carries both the outputs and the table's changelog records. If the worker
dies in between, the input is replayed. The state may already contain that
event (RocksDB write happened), so each state keeps the outputs of its recent
events (the *outbox*) with the input coordinates; a replayed message re-sends
exactly those outputs (same ids), a genuine duplicate event is ignored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
import orjson
from aiohttp import web
from aiokafka.partitioner import murmur2
from faust.types import TP

from orchestrator.config import Settings
from orchestrator.core import Engine, JourneySet, load_journey_dir, load_policies
from orchestrator.core.engine import Lifecycle
from orchestrator.core.events import Event, Rejection, dead_letter, decode_event, encode_event, parse_event
from orchestrator.core.state import decode_state, encode_state, remember_outputs
from orchestrator.core.timeutil import parse_ts_ms
from orchestrator.observability.metrics import Metrics
from orchestrator.runtime.registry import Publication, Registry, read_published
from orchestrator.runtime.topics import check_partitions, output_topics

log = logging.getLogger("orchestrator.worker")

# Per table x partition (2 tables x ORCH_PARTITIONS DBs per worker): at most 2 x 4 MiB of
# memtables and an 8 MiB block cache each, i.e. about 256 MiB for 16 DBs. Faust's defaults
# (64 MiB buffers, 2 GiB cache per DB) let a worker's memory grow with the data it holds.
ROCKSDB_OPTIONS = {
    "driver": "rocksdict",
    "write_buffer_size": 4 * 1024 * 1024,
    "max_write_buffer_number": 2,
    "block_cache_size": 8 * 1024 * 1024,
    "block_cache_compressed_size": 0,
}


TICK = b"T"                       # internal-topic value of a timer wake-up: b"T" + due ms (8 bytes)
TIMER_SCAN_INTERVAL_S = 0.2
INFLIGHT_RETRY_S = 30.0
FULL_SCAN_EVERY_S = 10.0
MAX_TICKS_PER_SCAN = 5000


def timer_key(due_ms: int, customer_key: bytes) -> bytes:
    return due_ms.to_bytes(8, "big") + customer_key


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Worker:
    """Builds the Faust app, its topics, table and agents for one process."""

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
            journeys.add(j)
        for pub in published or []:
            self.registry.apply(pub)
        self._published_end = published_end or {}
        self.engine = Engine(journeys, self.policies)
        self.metrics.journeys_loaded.set(sum(len(v) for v in journeys.versions.values()))
        self.metrics.journey_labels(journeys.current)
        self.stats: dict[tuple[str, int], dict[str, Any]] = {}
        self.app = self._make_app()
        self._define()

    def _on_publication(self, result: str) -> None:
        self.metrics.journey_publications.labels(result).inc()
        journeys = self.registry.journeys
        self.metrics.journeys_loaded.set(sum(len(v) for v in journeys.versions.values()))
        self.metrics.journey_labels(journeys.current)

    # ------------------------------------------------------------------ wiring
    def _make_app(self) -> faust.App:
        s = self.settings
        credentials = None
        if s.security_protocol.startswith("SASL"):
            credentials = faust.SASLCredentials(username=s.sasl_username, password=s.sasl_password,
                                                mechanism=s.sasl_mechanism, ssl_context=s.ssl_context())
        elif s.security_protocol == "SSL":
            credentials = faust.SSLCredentials(s.ssl_context())
        return faust.App(
            s.app_id,
            broker=[f"kafka://{b}" for b in s.bootstrap.split(",")],
            broker_credentials=credentials,
            store="rocksdb://",
            datadir=s.data_dir,
            topic_partitions=s.partitions,
            topic_replication_factor=s.replication,
            table_standby_replicas=s.standby_replicas,
            topic_allow_declare=True,
            web_enabled=False,               # our own server below: no /table endpoints
            consumer_auto_offset_reset="earliest",
            processing_guarantee="at_least_once",
            broker_commit_interval=1.0,
            # A SIGKILLed worker keeps its partitions until its session times out; Faust's
            # default (60 s) would stall every timer of those partitions that long.
            broker_session_timeout=10.0,
            broker_heartbeat_interval=2.0,
            producer_linger_ms=5,
            producer_max_batch_size=256 * 1024,
            producer_acks=-1,
            producer_max_request_size=2 * 1024 * 1024,
            consumer_max_fetch_size=4 * 1024 * 1024,
            stream_buffer_maxsize=4096,
            table_cleanup_interval=60.0,
            logging_config=None,
        )

    def _define(self) -> None:
        app, s = self.app, self.settings
        raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
        self.out: dict[str, Any] = {}
        for name in output_topics(s, self.policies.channels):
            self.out[name[len(s.topic_prefix) + 1:]] = app.topic(name, **raw)
        self.customers = app.Table("customers", default=None, partitions=s.partitions,
                                   key_type=bytes, value_type=bytes,  # bytes -> "raw" serializer
                                   options=dict(ROCKSDB_OPTIONS))
        self.timers = app.Table("timers", default=None, partitions=s.partitions,
                                key_type=bytes, value_type=bytes, options=dict(ROCKSDB_OPTIONS))
        self._inflight: dict[bytes, float] = {}
        self._cursor: dict[int, bytes] = {}
        self._full_scan_at = 0.0
        self._started = False
        self._topic_names = {suffix: t.get_topic_name() for suffix, t in self.out.items()}
        both = app.topic(s.events_topic, s.keyed_topic, **raw)
        app.agent(both, name="process")(self._process)
        app.task(self._serve_web)
        app.timer(TIMER_SCAN_INTERVAL_S)(self._scan_timers)
        app.timer(60.0)(self._count_timers)
        app.timer(5.0)(self._observe)

        async def follow_journeys() -> None:
            await self.registry.follow(self._published_end)
        app.task(follow_journeys)

        @app.on_partitions_revoked.connect
        async def _revoked(app: faust.App, revoked: set[Any], **kwargs: Any) -> None:
            self._inflight.clear()
            self._cursor.clear()

        @app.on_rebalance_complete.connect
        async def _balanced(sender: Any, **kwargs: Any) -> None:
            self._started = True

    # ------------------------------------------------------------------ the agent
    async def _process(self, stream: faust.StreamT) -> None:
        """One agent over the events topic and the internal re-keyed topic.

        An event whose message key is its customer_id sits in the customer's partition
        already and is decided here directly; any other event is forwarded re-keyed and
        decided when it comes back on the internal topic (same partition number, so the
        same table partition).
        """
        events_topic = self.settings.events_topic
        async for event in stream.events():
            message = event.message
            try:
                if message.topic == events_topic:
                    await self._ingest(event)
                else:
                    await self._decide(event.key, event.value, f"k{message.partition}:{message.offset}")
            except Exception:
                # A bug must not stop the partition (the input is logged by position, not content).
                log.exception("unexpected error on %s[%d]@%d", message.topic, message.partition, message.offset)

    async def _ingest(self, event: faust.EventT) -> None:
        s, m = self.settings, self.metrics
        message, value = event.message, event.value
        try:
            parsed = parse_event(value, max_bytes=s.max_event_bytes, now_ms=now_ms(), channels=self.policies.channels)
        except Exception as exc:  # the core promises not to raise; never crash on input anyway
            log.exception("event validation failed unexpectedly")
            parsed = Rejection("invalid_schema", f"validation error: {type(exc).__name__}")
        if isinstance(parsed, Rejection):
            m.events_in.labels("dead_letter").inc()
            m.dead_letters.labels(parsed.reason).inc()
            record = dead_letter(parsed, topic=message.topic, partition=message.partition,
                                 offset=message.offset, raw=value, now_ms=now_ms())
            await self._send("dlq", event.key, orjson.dumps(record))
            return
        cid = parsed.customer_id.encode()
        if event.key == cid and message.partition == self._partition_of(cid):
            await self._decide(cid, parsed, f"e{message.partition}:{message.offset}")
        else:
            await self._send_raw(self.settings.keyed_topic, cid, encode_event(parsed), self._partition_of(cid))

    def _partition_of(self, key: bytes) -> int:
        return (murmur2(key) & 0x7FFFFFFF) % self.settings.partitions

    async def _send(self, suffix: str, key: bytes | None, value: bytes) -> None:
        await self._send_raw(self._topic_names[suffix], key, value, None)

    async def _send_raw(self, topic: str, key: bytes | None, value: bytes, partition: int | None) -> None:
        """Queue a record on the app's producer; do not wait for its delivery.

        The await only covers the hand-over to the producer's buffer (it waits when the buffer is
        full, which is the back-pressure we want) and keeps records in order. Faust's commit
        flushes the producer before committing offsets. A record that cannot be delivered after
        the producer's retries crashes the worker: its input offset is then never committed and
        the input is replayed, rather than the output being lost.
        """
        try:
            delivery = await self.app.producer.send(topic, key, value, partition, None, None)
        except Exception as exc:  # noqa: BLE001 - e.g. a record over the size limit
            self._on_delivery_failed(exc)
            raise
        delivery.add_done_callback(self._on_delivered)

    def _on_delivered(self, fut: asyncio.Future) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            self._on_delivery_failed(fut.exception())

    def _on_delivery_failed(self, exc: BaseException) -> None:
        self.metrics.output_errors.inc()
        log.error("an output could not be delivered (%s); stopping so the input is replayed", exc)
        asyncio.ensure_future(self.app.crash(exc))

    async def _decide(self, key: bytes, value: bytes | Event, coord: str) -> None:
        m, table, timers, engine = self.metrics, self.customers, self.timers, self.engine
        started = time.perf_counter()
        is_tick = isinstance(value, bytes) and value[:1] == TICK
        now = now_ms()
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
        raw_state = table.get(key)
        state = decode_state(raw_state) if raw_state is not None else None
        box = state.outbox.get(coord) if state is not None else None
        if box is not None:
            # This exact message was applied before a crash: re-send its outputs, decide nothing.
            for topic, okey, out in box.outputs:
                await self._send(topic, okey.encode(), out)
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
            m.timers_fired.inc()
            m.timer_lateness.observe(max(0.0, (now - int.from_bytes(value[1:9], "big")) / 1000))
        elif result.duplicate:
            m.events_in.labels("duplicate").inc()
            return
        else:
            m.events_in.labels("valid").inc()
            m.last_event_ts.set(ev.ts_ms / 1000)
        for lc in result.lifecycle:
            self._record_lifecycle(lc)
        encoded = [(o.topic, o.key, orjson.dumps(o.value)) for o in result.outputs]
        for (topic, okey, out), o in zip(encoded, result.outputs):
            await self._send(topic, okey.encode(), out)
            self._count(o.topic, o.value, now, event_triggered=not is_tick)
        new_due = result.state.next_due_ms() if result.state is not None else None
        if new_due != old_due:
            if old_due is not None:
                timers.pop(timer_key(old_due, key), None)
            if new_due is not None:
                timers[timer_key(new_due, key)] = b"1"
        if is_tick:
            # Only now that the index is up to date may a scan tick this timer again.
            self._inflight.pop(timer_key(int.from_bytes(value[1:9], "big"), key), None)
        if result.state is None:
            table.pop(key, None)
        elif result.outputs or raw_state is None or not is_tick or new_due != old_due:
            remember_outputs(result.state, coord, now, encoded)
            table[key] = encode_state(result.state)
        m.processing.observe(time.perf_counter() - started)

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

    async def _observe(self) -> None:
        """Consumer lag per partition and table recovery progress, every few seconds."""
        app, m = self.app, self.metrics
        recovery = app.tables.recovery
        m.in_recovery.set(1 if recovery.in_recovery else 0)
        try:
            remaining = recovery.active_remaining_total()
            m.recovery_remaining.set(remaining)
            if recovery.in_recovery:
                log.info("recovering tables from their changelogs: %d records to go", remaining)
        except Exception:  # noqa: BLE001 - recovery internals change between faust releases
            pass
        consumer = app.consumer
        if consumer is None or app.rebalancing:
            return
        wanted = {self.settings.events_topic, self.settings.keyed_topic}
        m.consumer_lag.clear()            # partitions moved to another worker drop out
        for tp in list(consumer.assignment()):
            if tp.topic not in wanted:
                continue
            try:
                position = await consumer.position(tp)
                highwater = consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - partition moved away meanwhile
                continue
            if position is not None and highwater is not None:
                m.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, highwater - position))

    # ------------------------------------------------------------------ timers
    async def _scan_timers(self) -> None:
        """Send a tick to the customer's partition for every due timer of our active partitions.

        The timer index is the ``timers`` table (RocksDB, changelogged): key = due ms (8 bytes,
        big-endian) + customer id, so the due ones come first in key order. A tick is only a
        wake-up call: the engine fires what the customer's state says is due, so a repeated
        tick fires nothing twice.
        """
        app = self.app
        if app.rebalancing or not app.consumer or not self._started:
            return
        store = self.timers.data
        actives = app.assignor.assigned_actives()
        changelog = self.timers.changelog_topic.get_topic_name()
        now = now_ms()
        mono = time.monotonic()
        sent = 0
        pending = 0
        # Between full scans, each partition resumes after the last key it ticked: a timer is
        # always scheduled at or after "now", so nothing new can appear behind the cursor. The
        # periodic full scan re-sends ticks still unanswered after INFLIGHT_RETRY_S (and covers
        # a wall clock that stepped back).
        full = mono >= self._full_scan_at
        if full:
            self._full_scan_at = mono + FULL_SCAN_EVERY_S
            self._cursor.clear()
        for partition, db in list(store._dbs.items()):
            if TP(changelog, partition) not in actives:
                continue
            it = db.iter()
            cursor = self._cursor.get(partition)
            if cursor is None:
                it.seek_to_first()
            else:
                it.seek(cursor)
                if it.valid() and it.key() == cursor:
                    it.next()
            while it.valid():
                k = it.key()
                if len(k) < 9 or k == store.offset_key:
                    it.next()
                    continue
                due = int.from_bytes(k[:8], "big")
                if due > now:
                    break
                pending += 1
                self._cursor[partition] = k
                flight = self._inflight.get(k)
                if flight is None or mono - flight > INFLIGHT_RETRY_S:
                    self._inflight[k] = mono
                    await self._send_raw(self.settings.keyed_topic, k[8:], TICK + k[:8], partition)
                    sent += 1
                    if sent >= MAX_TICKS_PER_SCAN:
                        if full:
                            self.metrics.timers_due.set(pending)   # at least this many
                        return
                it.next()
            del it
        if full:                       # incremental scans only see what is past their cursor
            self.metrics.timers_due.set(pending)

    async def _count_timers(self) -> None:
        """Pending timers on this worker's active partitions (a metric; scans keys only)."""
        app = self.app
        if app.rebalancing or not self._started:
            return
        store = self.timers.data
        actives = app.assignor.assigned_actives()
        changelog = self.timers.changelog_topic.get_topic_name()
        count = 0
        for partition, db in list(store._dbs.items()):
            if TP(changelog, partition) in actives:
                count += sum(1 for k in db.keys() if k != store.offset_key)
                await asyncio.sleep(0)
        self.metrics.timers_pending.set(count)

    def _count(self, topic: str, value: dict[str, Any], now: int, *, event_triggered: bool = True) -> None:
        m = self.metrics
        if topic.startswith("actions."):
            m.actions.labels(value["channel"]).inc()
            ts = parse_ts_ms(value.get("event_ts"))
            # Only sends an event triggered directly: a send after a wait (or a quiet-hours
            # deferral) is late on purpose.
            if ts is not None and event_triggered:
                m.event_to_action.observe(max(0.0, (now - ts) / 1000))
        elif topic == "suppressions":
            m.suppressions.labels(value["reason"]).inc()
        elif topic == "decisions":
            m.decisions.labels(value["outcome"]).inc()

    # ------------------------------------------------------------------ web
    async def _serve_web(self) -> None:
        s = self.settings

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(body=self.metrics.render(), content_type="text/plain", charset="utf-8",
                                headers={"X-Content-Type-Options": "nosniff"})

        async def health(_: web.Request) -> web.Response:
            return web.json_response({"status": "ok", "journeys": len(self.engine.journeys)})

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

    uvloop.install()
    channels = load_policies(settings.policies).channels
    asyncio.run(ensure_topics(settings, channels))
    asyncio.run(check_partitions(settings))
    published, end = asyncio.run(read_published(settings))
    worker = Worker(settings, published, end)
    log.info("worker starting: %d journeys, bootstrap %s, prefix %s, %d partitions",
             len(worker.engine.journeys), settings.bootstrap, settings.topic_prefix, settings.partitions)
    from faust.worker import Worker as FaustWorker
    asyncio.set_event_loop(asyncio.new_event_loop())
    faust_worker = FaustWorker(worker.app, loglevel=loglevel, quiet=True, override_logging=False)
    faust_worker.spinner = None      # its terminal codes would corrupt JSON log lines
    faust_worker.execute_from_commandline()
