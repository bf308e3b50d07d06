"""``orchestrator adapter webhook``: actions from Kafka to an HTTP endpoint, each delivered once.

One consumer group member reads ``<prefix>.actions.<channel>`` for its channels (and
``<prefix>.suppressions`` when ``--suppressions-url`` is given). Each assigned partition is a
*lane*: its records start in offset order, up to ``--concurrency`` at a time but never two of one
key (customer) or one action id at once, and its offset is committed up to the first record that
is not finished. For one action:

1. **Look it up** in the store (:mod:`orchestrator.adapters.dedup`). An outcome already recorded
   makes it a duplicate (a replay, or a copy the worker re-sent): nothing is POSTed; only the
   Kafka records of step 5 not yet acknowledged are sent again, with the same content.
2. **Cancelled?** A suppression listed its ``action_id`` in ``cancels``: record ``C``, drop it.
   (Suppressions are read by a reader of their own, see 7.)
3. **Send**: take a token of the channel's bucket (``--max-per-second``), check the cancels again,
   record ``I`` (in flight), POST the action's JSON unchanged with ``Idempotency-Key: <action_id>``.
4. **Answer**: 2xx records ``D``. 5xx, 408, 409, 425, 429, a timeout or a connection error is
   retried after a backoff (:mod:`orchestrator.adapters.retry`) from 3 while ``--retry-budget``
   allows; any other answer, or the end of the budget, records ``F`` with the detail.
5. **Tell Kafka**: ``D``: a ``message.delivered`` event to ``<prefix>.events``; ``F``: a dead
   letter (reason ``delivery_failed``) to ``<prefix>.dlq`` and a ``message.failed`` event. Once
   Kafka has acknowledged them, record ``d`` / ``f``.
6. **Done**: the record's offset is committed (every second, and when partitions are revoked or
   the adapter stops) once every earlier record of its partition is done.
7. **Cancels**: a second consumer, outside the group, reads every partition of
   ``<prefix>.suppressions`` and stores the cancelled ids with its read position in one atomic
   write. At start it first catches up (from its stored position, or from one de-duplication
   window ago) before any action is delivered, so a suppression that reached its topic before
   the adapter started wins over an action still in the backlog, in whichever order the two
   topics received them.

A crash anywhere replays records from the last commit, and step 1 makes the replay send nothing
twice, except between 3 and 4: an action recorded ``I`` has an unknown outcome (the provider may
have processed the request whose answer never arrived), so it is POSTed again with the same
``Idempotency-Key``; providers that honour the key (Stripe, Twilio, ...) answer it from their
record instead of delivering again. That window is the requests in flight at the crash, at most
``--concurrency`` x the assigned partitions. A graceful stop or rebalance lets requests in flight
finish (a request waiting for a token or a backoff is given up, to be sent by the partition's next
owner) and commits, so it replays nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from orchestrator import __version__
from orchestrator.adapters import dedup
from orchestrator.adapters.dedup import DedupStore, Mark
from orchestrator.adapters.metrics import SUPPRESSIONS_TARGET, AdapterMetrics
from orchestrator.adapters.options import WebhookOptions, url_origin
from orchestrator.adapters.ratelimit import TokenBucket, take
from orchestrator.adapters.retry import is_retryable, is_success, parse_retry_after
from orchestrator.config import Settings
from orchestrator.core.durations import format_duration_ms
from orchestrator.core.engine import stable_hash
from orchestrator.core.events import Rejection, dead_letter
from orchestrator.core.timeutil import format_ts, parse_ts_ms
from orchestrator.errors import ConfigError, OrchestratorError

log = logging.getLogger("orchestrator.adapter")

DELIVERY_FAILED = "delivery_failed"
MAX_BACKLOG = 2_000               # records fetched but not started, per partition; more pauses it
POLL_MS = 200
COMMIT_EVERY_S = 1.0
PRUNE_EVERY_S = 60.0
LAG_EVERY_S = 5.0
MAX_ANSWER_BYTES = 64 * 1024      # read of an answer's body (the dead letter keeps 200 characters)
MAX_ID_CHARS = 255


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class AdapterFailed(OrchestratorError):
    """The adapter stopped on an error; what it had not finished is read again on restart."""


class _GiveUp(Exception):
    """The partition is being revoked or the adapter stops: leave this record to the next run."""


# ---------------------------------------------------------------------------- records
def _check_id(data: dict[str, Any], name: str, what: str) -> Rejection | None:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        return Rejection("invalid_schema", f"{what} needs {name} (a non-empty string) - at `$.{name}`")
    if len(value) > MAX_ID_CHARS or not value.isascii() or not value.isprintable():
        return Rejection("invalid_schema", f"{name} must be at most {MAX_ID_CHARS} printable ASCII characters "
                         f"(it is sent as the Idempotency-Key header) - at `$.{name}`")
    return None


def parse_action(raw: bytes | None) -> dict[str, Any] | Rejection:
    """An Action JSON (SPEC §3) with the fields the adapter relies on, or why not."""
    data = _json_object(raw, "an action")
    if isinstance(data, Rejection):
        return data
    for name in ("action_id", "customer_id"):
        problem = _check_id(data, name, "an action")
        if problem is not None:
            return problem
    return data


def parse_suppression(raw: bytes | None) -> dict[str, Any] | Rejection:
    """A Suppression JSON (SPEC §3): its id, channels and cancels, or why not."""
    data = _json_object(raw, "a suppression")
    if isinstance(data, Rejection):
        return data
    problem = _check_id(data, "suppression_id", "a suppression")
    if problem is not None:
        return problem
    for name in ("channels", "cancels"):
        value = data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return Rejection("invalid_schema", f"{name} must be a list of strings - at `$.{name}`")
    return data


def _json_object(raw: bytes | None, what: str) -> dict[str, Any] | Rejection:
    if raw is None:
        return Rejection("invalid_json", "empty message (null value)")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejection("invalid_json", f"not JSON: {exc}")
    if not isinstance(data, dict):
        return Rejection("invalid_schema", f"{what} must be a JSON object - at `$`")
    return data


def feedback_event(action: dict[str, Any], channel: str, kind: str, ts_ms: int,
                   status: int | None = None) -> dict[str, Any]:
    """The feedback event (SPEC §2) for an action's outcome; its ``event_id`` depends only on the
    action id and the type, so a re-sent one is a duplicate the worker ignores."""
    aid = action["action_id"]
    props: dict[str, Any] = {"action_id": aid, "channel": channel}
    if kind == "message.failed":
        props["status"] = status
    return {"event_id": "fb-" + stable_hash(aid, kind), "customer_id": action["customer_id"], "type": kind,
            "ts": format_ts(ts_ms), "properties": props}


@dataclass
class _Answer:
    status: int | None            # None: timeout or connection error
    outcome: str                  # the `outcome` label: 2xx ... 5xx, timeout, connection_error
    detail: str
    retry_after: float | None = None


class _Item:
    """One fetched record on its way through a lane."""

    __slots__ = ("msg", "data", "serial", "done")

    def __init__(self, msg: Any, data: dict[str, Any] | Rejection, serial: tuple[bytes, ...]) -> None:
        self.msg = msg
        self.data = data
        self.serial = serial       # never two records with one of these in flight at once
        self.done = False


class _Lane:
    """An assigned partition: records start in offset order, at most ``limit`` at a time and
    never two sharing a serial key; the offset to commit is the first record not done."""

    def __init__(self, tp: TopicPartition, handle: Callable[[_Item, asyncio.Event], Awaitable[None]], limit: int,
                 on_error: Callable[[BaseException], None]) -> None:
        self.tp, self.handle, self.limit, self.on_error = tp, handle, limit, on_error
        self.queue: deque[_Item] = deque()        # not started
        self.order: deque[_Item] = deque()        # not yet counted into next_offset
        self.busy: set[bytes] = set()
        self.tasks: set[asyncio.Task] = set()
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.next_offset: int | None = None       # every record before it is done
        self.committed: int | None = None
        self.runner = asyncio.ensure_future(self._run())

    def add(self, items: list[_Item]) -> None:
        self.queue.extend(items)
        self.order.extend(items)
        self.wake.set()

    def backlog(self) -> int:
        return len(self.queue)

    def advance(self) -> int | None:
        order = self.order
        while order and order[0].done:
            self.next_offset = order.popleft().msg.offset + 1
        return self.next_offset

    async def _run(self) -> None:
        while not self.stopping.is_set():
            head = self.queue[0] if self.queue else None
            if head is None or len(self.tasks) >= self.limit or any(k in self.busy for k in head.serial):
                self.wake.clear()
                await self.wake.wait()
                continue
            self.queue.popleft()
            self.busy.update(head.serial)
            task = asyncio.ensure_future(self._one(head))
            self.tasks.add(task)

    async def _one(self, item: _Item) -> None:
        try:
            await self.handle(item, self.stopping)
            item.done = True
        except _GiveUp:
            pass
        except Exception as exc:  # noqa: BLE001 - e.g. Kafka refused a write: stop, commit no further
            self.on_error(exc)
        finally:
            self.busy.difference_update(item.serial)
            self.tasks.discard(asyncio.current_task())  # type: ignore[arg-type]
            self.wake.set()

    async def stop(self) -> None:
        """Start nothing more; wait for what is started (requests in flight finish, waits are cut)."""
        self.stopping.set()
        self.wake.set()
        await self.runner
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)


class _Listener(ConsumerRebalanceListener):
    def __init__(self, adapter: "WebhookAdapter") -> None:
        self.adapter = adapter

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.adapter._revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.adapter._assigned(list(assigned))


# ---------------------------------------------------------------------------- the adapter
class WebhookAdapter:
    """One adapter process: group consumer, cancels reader, producer, HTTP client, store, /metrics."""

    def __init__(self, settings: Settings, options: WebhookOptions) -> None:
        self.settings, self.options = settings, options
        self.metrics = AdapterMetrics(options.channels, forwarding=options.suppressions_url is not None)
        self.channel_of = {settings.topic(f"actions.{c}"): c for c in options.channels}
        self.suppressions_topic = settings.topic("suppressions")
        self.events_topic = settings.events_topic
        self.dlq_topic = settings.topic("dlq")
        started = time.monotonic()
        self.buckets = {c: TokenBucket(r, options.burst, now=started) for c, r in options.rates.items()}
        self.origin = {options.url: url_origin(options.url)}
        if options.suppressions_url:
            self.origin[options.suppressions_url] = url_origin(options.suppressions_url)
        self.lanes: dict[TopicPartition, _Lane] = {}
        self.store: DedupStore | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.session: aiohttp.ClientSession | None = None
        self.suppression_partitions: list[int] = []
        self._paused: set[TopicPartition] = set()
        self._exclusive_ids: dict[bytes, asyncio.Future] = {}
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
        self.store = DedupStore(o.data_dir, o.dedup_window_ms)
        try:
            runner = await self._start_web()
        except BaseException:
            self.store.close()
            raise
        kw = s.aiokafka_kwargs()
        self.producer = AIOKafkaProducer(**kw, acks="all", enable_idempotence=True, linger_ms=5)
        tasks: list[asyncio.Task] = []
        try:
            await self.producer.start()
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                headers={"User-Agent": f"orchestrator-adapter-webhook/{__version__}"})
            tasks.append(self._guarded(self._follow_cancels(), "reading the suppressions topic"))
            await self._first(self._cancels_ready.wait(), self._stopping.wait())
            if not self._stopping.is_set():
                topics = sorted(self.channel_of) + ([self.suppressions_topic] if o.suppressions_url else [])
                self.consumer = AIOKafkaConsumer(
                    **kw, group_id=o.group, enable_auto_commit=False, auto_offset_reset="earliest",
                    # A killed adapter keeps its partitions until its session times out (default 45 s).
                    session_timeout_ms=10_000, heartbeat_interval_ms=2_000,
                    # A revoked partition waits for its requests in flight (at most --timeout each).
                    rebalance_timeout_ms=int((o.timeout_s + 30) * 1000),
                    fetch_max_wait_ms=100, max_partition_fetch_bytes=1024 * 1024)
                self.consumer.subscribe(topics, listener=_Listener(self))
                await self.consumer.start()
                log.info("consuming %s as group %s; POSTing to %s", ", ".join(topics), o.group, self.origin[o.url])
                tasks += [self._guarded(self._every(COMMIT_EVERY_S, self._commit_all), "committing offsets"),
                          self._guarded(self._every(PRUNE_EVERY_S, self._prune), "pruning the store"),
                          self._guarded(self._every(LAG_EVERY_S, self._observe_lag), "measuring lag")]
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
            if self.session is not None:
                await self.session.close()
            await self.producer.stop()
            await runner.cleanup()
            self.store.close()
        if self._fatal is not None:
            raise AdapterFailed(f"{type(self._fatal).__name__}: {self._fatal}")

    async def _check_topics(self) -> None:
        """The adapter creates no topics: a missing one is a sentence, not broker defaults."""
        from orchestrator.runtime.topics import connect_admin
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

    @staticmethod
    async def _first(*waits: Awaitable[Any]) -> None:
        tasks = [asyncio.ensure_future(w) for w in waits]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

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

    @staticmethod
    async def _every(interval_s: float, fn: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await fn()

    async def _loop(self) -> None:
        consumer, stopping = self.consumer, self._stopping
        assert consumer is not None
        while not stopping.is_set():
            batch = await consumer.getmany(timeout_ms=POLL_MS, max_records=1000)
            for tp, msgs in batch.items():
                lane = self.lanes.get(tp)
                if lane is None or not msgs:
                    continue              # revoked meanwhile: the next owner reads them
                lane.add([self._item(m) for m in msgs])
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

    def _item(self, msg: Any) -> _Item:
        forward = msg.topic == self.suppressions_topic
        data = parse_suppression(msg.value) if forward else parse_action(msg.value)
        serial: list[bytes] = [] if msg.key is None else [b"k" + msg.key]
        if not isinstance(data, Rejection):
            serial.append(b"i" + data["suppression_id" if forward else "action_id"].encode())
        return _Item(msg, data, tuple(serial))

    # ------------------------------------------------------------------ rebalancing and commits
    def _assigned(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            if tp not in self.lanes:
                handle = self._handle_suppression if tp.topic == self.suppressions_topic else self._handle_action
                self.lanes[tp] = _Lane(tp, handle, self.options.concurrency, self._fail)
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

    async def _commit(self, lanes: list[_Lane]) -> None:
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

    # ------------------------------------------------------------------ one action
    @contextlib.asynccontextmanager
    async def _exclusive(self, key: bytes, stopping: asyncio.Event) -> AsyncIterator[None]:
        """One record per id at a time across partitions (a copy of an action keyed differently
        lands in another partition). Waiting is given up when this record's partition stops."""
        while (other := self._exclusive_ids.get(key)) is not None:
            await self._first(asyncio.shield(other), stopping.wait())
            if stopping.is_set():
                raise _GiveUp
        mine = asyncio.get_running_loop().create_future()
        self._exclusive_ids[key] = mine
        try:
            yield
        finally:
            del self._exclusive_ids[key]
            mine.set_result(None)

    async def _handle_action(self, item: _Item, stopping: asyncio.Event) -> None:
        msg, store, m = item.msg, self.store, self.metrics
        assert store is not None
        channel = self.channel_of[msg.topic]
        action = item.data
        if isinstance(action, Rejection):
            await self._send_kafka([self._dead_letter(msg, action, now_ms())])
            m.dead_letters.labels(action.reason).inc()
            m.actions.labels(channel, "invalid").inc()
            return
        aid = action["action_id"]
        async with self._exclusive(dedup.ACTION + aid.encode(), stopping):
            # Step 1: an outcome is known -> send only what Kafka has not acknowledged.
            mark = store.get(dedup.ACTION, aid)
            if mark is not None and mark.state != dedup.IN_FLIGHT:
                await self._finish_action(msg, action, channel, mark)
                m.actions.labels(channel, "duplicate").inc()
                return
            uncertain = mark is not None
            # Step 2: cancelled before delivery -> dropped.
            if not uncertain and store.cancelled(aid):
                store.put(dedup.ACTION, aid, dedup.CANCELLED, now_ms())
                m.actions.labels(channel, "cancelled").inc()
                return
            if uncertain:
                m.unknown_outcome.labels(channel).inc()
            # Steps 3 and 4.
            result, answer, detail = await self._send(
                dedup.ACTION, aid, self.options.url, msg.value, channel, self.buckets.get(channel), stopping,
                cancelled=lambda: store.cancelled(aid), check_first=not uncertain)
            now = now_ms()
            if result == "cancelled":
                store.put(dedup.ACTION, aid, dedup.CANCELLED, now)
                m.actions.labels(channel, "cancelled").inc()
                return
            if result == "delivered":
                mark = store.put(dedup.ACTION, aid, dedup.DELIVERED, now, status=answer.status)
                decided = parse_ts_ms(action.get("decided_at"))
                if decided is not None:
                    m.decided_to_delivered.labels(channel).observe(max(0.0, (now - decided) / 1000))
            else:
                mark = store.put(dedup.ACTION, aid, dedup.FAILED, now, status=answer.status, detail=detail)
                log.warning("%s partition %d offset %d: dead-lettered (%s)", msg.topic, msg.partition, msg.offset,
                            detail)
            # Step 5.
            await self._finish_action(msg, action, channel, mark)
            m.actions.labels(channel, "delivered" if result == "delivered" else "dead_letter").inc()

    async def _finish_action(self, msg: Any, action: dict[str, Any], channel: str, mark: Mark) -> None:
        """Step 5 for a recorded outcome (again, after a restart, if it was not acknowledged)."""
        store, m = self.store, self.metrics
        assert store is not None
        fb_channel = action.get("channel") if isinstance(action.get("channel"), str) else channel
        aid, key = action["action_id"], action["customer_id"].encode()
        if mark.state == dedup.DELIVERED:
            event = feedback_event(action, fb_channel, "message.delivered", mark.outcome_ms)
            await self._send_kafka([(self.events_topic, key, orjson.dumps(event))])
            m.feedback.labels("message.delivered").inc()
            store.put(dedup.ACTION, aid, dedup.DELIVERED_DONE, now_ms())
        elif mark.state == dedup.FAILED:
            event = feedback_event(action, fb_channel, "message.failed", mark.outcome_ms, mark.status)
            await self._send_kafka([
                self._dead_letter(msg, Rejection(DELIVERY_FAILED, mark.detail), mark.outcome_ms),
                (self.events_topic, key, orjson.dumps(event))])
            m.dead_letters.labels(DELIVERY_FAILED).inc()
            m.feedback.labels("message.failed").inc()
            store.put(dedup.ACTION, aid, dedup.FAILED_DONE, now_ms())

    # ------------------------------------------------------------------ one suppression (--suppressions-url)
    async def _handle_suppression(self, item: _Item, stopping: asyncio.Event) -> None:
        msg, store, m = item.msg, self.store, self.metrics
        assert store is not None and self.options.suppressions_url is not None
        sup = item.data
        if isinstance(sup, Rejection):
            await self._send_kafka([self._dead_letter(msg, sup, now_ms())])
            m.dead_letters.labels(sup.reason).inc()
            m.forwarded.labels("invalid").inc()
            return
        if not set(sup.get("channels", [])) & set(self.options.channels):
            m.forwarded.labels("not_for_these_channels").inc()
            return
        sid = sup["suppression_id"]
        async with self._exclusive(dedup.SUPPRESSION + sid.encode(), stopping):
            mark = store.get(dedup.SUPPRESSION, sid)
            if mark is None or mark.state == dedup.IN_FLIGHT:
                if mark is not None:
                    m.unknown_outcome.labels(SUPPRESSIONS_TARGET).inc()
                result, answer, detail = await self._send(
                    dedup.SUPPRESSION, sid, self.options.suppressions_url, msg.value, SUPPRESSIONS_TARGET, None,
                    stopping)
                if result == "delivered":
                    store.put(dedup.SUPPRESSION, sid, dedup.DELIVERED_DONE, now_ms(), status=answer.status)
                    m.forwarded.labels("forwarded").inc()
                    return
                mark = store.put(dedup.SUPPRESSION, sid, dedup.FAILED, now_ms(), status=answer.status, detail=detail)
                log.warning("%s partition %d offset %d: dead-lettered (%s)", msg.topic, msg.partition, msg.offset,
                            detail)
                m.forwarded.labels("dead_letter").inc()
            else:
                m.forwarded.labels("duplicate").inc()
            if mark.state == dedup.FAILED:
                await self._send_kafka([self._dead_letter(msg, Rejection(DELIVERY_FAILED, mark.detail),
                                                          mark.outcome_ms)])
                m.dead_letters.labels(DELIVERY_FAILED).inc()
                store.put(dedup.SUPPRESSION, sid, dedup.FAILED_DONE, now_ms())

    # ------------------------------------------------------------------ HTTP
    async def _send(self, kind: bytes, ident: str, url: str, body: bytes, target: str, bucket: TokenBucket | None,
                    stopping: asyncio.Event, *, cancelled: Callable[[], bool] | None = None,
                    check_first: bool = True) -> tuple[str, _Answer, str]:
        """Steps 3-4: ``("delivered" | "failed" | "cancelled", last answer, dead-letter detail)``.
        Raises :class:`_GiveUp` when ``stopping`` is set while waiting for a token or a retry."""
        store, m, o = self.store, self.metrics, self.options
        assert store is not None
        policy = o.retry
        started: float | None = None
        retry = 0
        answer = _Answer(None, "timeout", "")
        while True:
            waited = await take(bucket, stopping)
            if waited is None:
                raise _GiveUp
            if waited:
                m.rate_limit_wait.labels(target).inc(waited)
            if cancelled is not None and (started is not None or check_first) and cancelled():
                return "cancelled", answer, ""
            now = time.monotonic()
            if started is None:
                started = now
                store.put(kind, ident, dedup.IN_FLIGHT, now_ms())
                timeout = o.timeout_s
            else:
                timeout = min(o.timeout_s, max(0.05, started + policy.budget_s - now))
            answer = await self._request(url, body, ident, target, timeout)
            if answer.status is not None and is_success(answer.status):
                return "delivered", answer, ""
            if not is_retryable(answer.status):
                return "failed", answer, answer.detail
            delay = policy.next_delay(retry, started=started, now=time.monotonic(), retry_after=answer.retry_after)
            if delay is None:
                return "failed", answer, (f"{answer.detail} (gave up after {retry + 1} attempt{'s' if retry else ''} "
                                          f"in {time.monotonic() - started:.1f} s; --retry-budget is "
                                          f"{policy.budget_s:g} s)")
            m.retries.labels(target).inc()
            try:
                await asyncio.wait_for(stopping.wait(), delay)
            except asyncio.TimeoutError:
                retry += 1
                continue
            raise _GiveUp

    async def _request(self, url: str, body: bytes, ident: str, target: str, timeout_s: float) -> _Answer:
        """One POST; never raises for what the network or the server does."""
        assert self.session is not None
        m, origin = self.metrics, self.origin[url]
        headers = {**self.options.headers, "Content-Type": "application/json", "Idempotency-Key": ident}
        m.in_flight.inc()
        started = time.perf_counter()
        try:
            async with self.session.post(url, data=body, headers=headers, allow_redirects=False,
                                         timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
                text = await resp.content.read(MAX_ANSWER_BYTES)
                status, reason = resp.status, resp.reason or ""
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        except asyncio.TimeoutError:
            answer = _Answer(None, "timeout", f"no answer from {origin} within {timeout_s:g} s")
        except aiohttp.ClientError as exc:
            answer = _Answer(None, "connection_error", f"cannot reach {origin} ({_describe_error(exc)})")
        else:
            snippet = " ".join(text.decode("utf-8", errors="replace").split())[:200]
            answer = _Answer(status, _status_class(status),
                             f"HTTP {status} {reason} from {origin}" + (f": {snippet}" if snippet else ""),
                             retry_after)
        finally:
            m.in_flight.dec()
            m.request_seconds.labels(target).observe(time.perf_counter() - started)
        m.requests.labels(target, answer.outcome).inc()
        return answer

    # ------------------------------------------------------------------ Kafka out
    def _dead_letter(self, msg: Any, why: Rejection, at_ms: int) -> tuple[str, bytes | None, bytes]:
        record = dead_letter(why, topic=msg.topic, partition=msg.partition, offset=msg.offset, raw=msg.value,
                             now_ms=at_ms)
        return self.dlq_topic, msg.key, orjson.dumps(record)

    async def _send_kafka(self, records: list[tuple[str, bytes | None, bytes]]) -> None:
        """Write records and wait until Kafka has acknowledged every one (raises if it cannot)."""
        assert self.producer is not None
        futures = [await self.producer.send(topic, value=value, key=key) for topic, key, value in records]
        for fut in futures:
            await fut

    # ------------------------------------------------------------------ cancels (step 7)
    async def _follow_cancels(self) -> None:
        store, m, topic = self.store, self.metrics, self.suppressions_topic
        assert store is not None
        consumer = AIOKafkaConsumer(**self.settings.aiokafka_kwargs(), enable_auto_commit=False,
                                    max_partition_fetch_bytes=1024 * 1024)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in self.suppression_partitions]
            consumer.assign(tps)
            begins = await consumer.beginning_offsets(tps)
            ends = await consumer.end_offsets(tps)
            stored = store.positions()
            if any(stored.get(tp.partition, 0) > ends[tp] for tp in tps):
                log.warning("%s restarted its offsets (recreated?); reading the cancels of the last %s again",
                            topic, format_duration_ms(self.options.dedup_window_ms))
                store.forget_positions()
                stored = {}
            fresh = [tp for tp in tps if tp.partition not in stored]
            since = max(0, now_ms() - self.options.dedup_window_ms)
            found = await consumer.offsets_for_times({tp: since for tp in fresh}) if fresh else {}
            todo = 0
            for tp in tps:
                if tp.partition in stored:
                    start = max(stored[tp.partition], begins[tp])
                else:
                    hit = found.get(tp)
                    start = hit.offset if hit is not None else ends[tp]
                consumer.seek(tp, start)
                todo += max(0, ends[tp] - start)
            if todo:
                log.info("reading up to %d suppressions for their cancels before delivering", todo)
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=5000)
                self._store_cancels(batch)
                if not self._cancels_ready.is_set():
                    positions = [await consumer.position(tp) for tp in tps]
                    if all(pos >= ends[tp] for pos, tp in zip(positions, tps)):
                        self._cancels_ready.set()
                        m.ready.set(1 if self._joined else 0)
                        if todo:
                            log.info("cancels caught up")
        finally:
            await consumer.stop()

    def _store_cancels(self, batch: dict[TopicPartition, list[Any]]) -> None:
        if not batch:
            return
        store, m = self.store, self.metrics
        assert store is not None
        ids: list[str] = []
        positions: dict[int, int] = {}
        for tp, msgs in batch.items():
            for msg in msgs:
                sup = parse_suppression(msg.value)
                if isinstance(sup, Rejection):
                    m.suppressions_read.labels("invalid").inc()
                    log.warning("%s partition %d offset %d is not a suppression (%s); no cancels taken from it",
                                msg.topic, msg.partition, msg.offset, sup.detail)
                    continue
                m.suppressions_read.labels("valid").inc()
                ids.extend(sup.get("cancels", []))
            if msgs:
                positions[tp.partition] = msgs[-1].offset + 1
        m.cancels.inc(store.add_cancels(ids, now_ms(), positions))

    # ------------------------------------------------------------------ housekeeping
    async def _prune(self) -> None:
        store = self.store
        assert store is not None
        while True:
            deleted = store.prune(now_ms())
            self.metrics.pruned.inc(deleted)
            if deleted < 10_000:
                return
            await asyncio.sleep(0)

    async def _observe_lag(self) -> None:
        consumer, m = self.consumer, self.metrics
        assert consumer is not None
        m.lag.clear()
        for tp, lane in list(self.lanes.items()):
            highwater = consumer.highwater(tp)
            done = lane.advance()
            if highwater is not None and done is not None:
                m.lag.labels(tp.topic, str(tp.partition)).set(max(0, highwater - done))

    async def _start_web(self) -> web.AppRunner:
        s, o = self.settings, self.options

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(body=self.metrics.render(), content_type="text/plain", charset="utf-8",
                                headers={"X-Content-Type-Options": "nosniff"})

        async def health(_: web.Request) -> web.Response:
            ready = self._cancels_ready.is_set() and self._joined and not self._stopping.is_set()
            return web.json_response({"status": "ok" if self._fatal is None else "failed", "ready": ready,
                                      "channels": list(o.channels),
                                      "partitions": [[tp.topic, tp.partition] for tp in sorted(self.lanes)]})

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/health", health)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, s.web_host, o.web_port).start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(f"cannot serve /metrics on {s.web_host}:{o.web_port} ({exc.strerror or exc}); "
                              "pass another --web-port") from None
        log.info("metrics on http://%s:%d/metrics", s.web_host, o.web_port)
        return runner


def _status_class(status: int) -> str:
    if status >= 500:
        return "5xx"
    if status >= 400:
        return "4xx"
    if status >= 300 or status < 200:
        return "3xx"
    return "2xx"


def _describe_error(exc: BaseException) -> str:
    os_error = getattr(exc, "os_error", None)
    reason = getattr(os_error, "strerror", None)
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__


def _describe_tps(tps: Iterable[TopicPartition]) -> str:
    by_topic: dict[str, list[int]] = {}
    for tp in tps:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return "; ".join(f"{t} {sorted(ps)}" for t, ps in sorted(by_topic.items())) or "none"


def run_webhook(settings: Settings, options: WebhookOptions) -> None:
    """Run the adapter until SIGINT/SIGTERM (then finish what is in flight, commit, leave the group)."""
    import uvloop

    uvloop.install()

    async def main() -> None:
        adapter = WebhookAdapter(settings, options)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, adapter.stop)
        limits = ", ".join(f"{c} {r:g}/s" for c, r in sorted(options.rates.items())) or "none"
        log.info("webhook adapter starting: channels %s, bootstrap %s, prefix %s, %d header(s) from the "
                 "environment, rate limits %s, data dir %s", ", ".join(options.channels), settings.bootstrap,
                 settings.topic_prefix, len(options.headers), limits, options.data_dir)
        try:
            await adapter.run()
        except KafkaError as exc:
            raise AdapterFailed(f"Kafka at {settings.bootstrap} answered {type(exc).__name__}: {exc}") from None
        log.info("webhook adapter stopped")

    try:
        asyncio.run(main())
    except AdapterFailed as exc:
        raise AdapterFailed(f"the adapter stopped on an error ({exc}); what it had not finished is read "
                            "again when it starts") from None
