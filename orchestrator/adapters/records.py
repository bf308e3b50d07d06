"""Steps 1, 2 and 5 of :mod:`orchestrator.adapters.webhook`: what becomes of one record of a lane.

For one action (:meth:`RecordHandler.action`), holding its id (:class:`~orchestrator.adapters.lanes.Exclusive`):

1. **Look it up** in the store (:mod:`orchestrator.adapters.dedup`). An outcome already recorded
   makes it a duplicate (a replay, or a copy the worker re-sent): nothing is POSTed; only the
   Kafka records of step 5 not yet acknowledged are sent again, with the same content.
2. **Cancelled?** Once the cancels reader has read ``<prefix>.suppressions`` up to where that
   topic ended when the action was read (the item's fence, :meth:`~orchestrator.adapters.cancels.Cancels.fence`):
   a suppression listed its ``action_id`` in ``cancels``: record ``C``, drop it.
3. **Send** and 4. **Answer** (:mod:`orchestrator.adapters.delivery`): 2xx records ``D``, a final
   failure records ``F`` with the detail, a cancel found before an attempt records ``C``.
5. **Tell Kafka**: ``D``: a ``message.delivered`` event to ``<prefix>.events``; ``F``: a dead
   letter (reason ``delivery_failed``) to ``<prefix>.dlq`` and a ``message.failed`` event. Once
   Kafka has acknowledged them, record ``d`` / ``f``.

A suppression consumed for ``--suppressions-url`` (:meth:`RecordHandler.suppression`) goes the
same way without step 2 and without feedback: one whose ``channels`` include none of the
adapter's is only counted; a 2xx records ``d`` at once; a final failure records ``F``, is
dead-lettered, then recorded ``f``. A record that does not parse is dead-lettered with the
parser's reason (:mod:`orchestrator.adapters.wire`), and counted ``invalid``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from orchestrator.adapters import dedup
from orchestrator.adapters.dedup import DedupStore, Mark
from orchestrator.adapters.delivery import Delivery
from orchestrator.adapters.lanes import Exclusive, Item, until
from orchestrator.adapters.metrics import SUPPRESSIONS_TARGET, AdapterMetrics
from orchestrator.adapters.options import WebhookOptions
from orchestrator.adapters.wire import DELIVERY_FAILED, Record, dead_letter_record, feedback_event
from orchestrator.core.events import Rejection
from orchestrator.core.timeutil import parse_ts_ms
from orchestrator.kafkaio.service import wall_ms

log = logging.getLogger("orchestrator.adapter")


class RecordHandler:
    """The handlers a lane runs, one per kind of partition: actions and forwarded suppressions."""

    def __init__(self, *, options: WebhookOptions, store: DedupStore, metrics: AdapterMetrics, delivery: Delivery,
                 producer: AIOKafkaProducer, channel_of: dict[str, str], events_topic: str, dlq_topic: str) -> None:
        self.options, self.store, self.metrics, self.delivery = options, store, metrics, delivery
        self.producer = producer
        self.channel_of = channel_of             # action topic -> channel
        self.events_topic, self.dlq_topic = events_topic, dlq_topic
        self.exclusive = Exclusive()

    async def action(self, item: Item, stopping: asyncio.Event) -> None:
        msg, store, m = item.msg, self.store, self.metrics
        channel = self.channel_of[msg.topic]
        action = item.data
        if isinstance(action, Rejection):
            await self._write([dead_letter_record(self.dlq_topic, msg, action, wall_ms())])
            m.dead_letters.labels(action.reason).inc()
            m.actions.labels(channel, "invalid").inc()
            return
        aid = action["action_id"]
        async with self.exclusive.hold(dedup.ACTION + aid.encode(), stopping):
            # Step 1: an outcome is known -> send only what Kafka has not acknowledged.
            mark = store.get(dedup.ACTION, aid)
            if mark is not None and mark.state != dedup.IN_FLIGHT:
                await self._finish_action(msg, action, channel, mark)
                m.actions.labels(channel, "duplicate").inc()
                return
            uncertain = mark is not None
            # Step 2: cancelled before delivery -> dropped. Decided once the cancels are read up to
            # the end the suppressions topic had when this action was read.
            if not uncertain:
                if item.fence is not None:
                    await until(item.fence, stopping)
                if store.cancelled(aid):
                    store.put(dedup.ACTION, aid, dedup.CANCELLED, wall_ms())
                    m.actions.labels(channel, "cancelled").inc()
                    return
            if uncertain:
                m.unknown_outcome.labels(channel).inc()
            # Steps 3 and 4.
            result, answer, detail = await self.delivery.send(
                dedup.ACTION, aid, self.options.url, msg.value, channel, stopping, rate_limited=True,
                cancelled=lambda: store.cancelled(aid), check_first=not uncertain)
            now = wall_ms()
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
                _log_failed("action", aid, msg, detail)
            # Step 5.
            await self._finish_action(msg, action, channel, mark)
            m.actions.labels(channel, "delivered" if result == "delivered" else "dead_letter").inc()

    async def _finish_action(self, msg: Any, action: dict[str, Any], channel: str, mark: Mark) -> None:
        """Step 5 for a recorded outcome (again, after a restart, if it was not acknowledged)."""
        store, m = self.store, self.metrics
        fb_channel = action.get("channel") if isinstance(action.get("channel"), str) else channel
        aid, key = action["action_id"], action["customer_id"].encode()
        if mark.state == dedup.DELIVERED:
            event = feedback_event(action, fb_channel, "message.delivered", mark.outcome_ms)
            await self._write([(self.events_topic, key, orjson.dumps(event))])
            m.feedback.labels("message.delivered").inc()
            store.put(dedup.ACTION, aid, dedup.DELIVERED_DONE, wall_ms())
        elif mark.state == dedup.FAILED:
            event = feedback_event(action, fb_channel, "message.failed", mark.outcome_ms, mark.status)
            await self._write([
                dead_letter_record(self.dlq_topic, msg, Rejection(DELIVERY_FAILED, mark.detail), mark.outcome_ms),
                (self.events_topic, key, orjson.dumps(event))])
            m.dead_letters.labels(DELIVERY_FAILED).inc()
            m.feedback.labels("message.failed").inc()
            store.put(dedup.ACTION, aid, dedup.FAILED_DONE, wall_ms())

    async def suppression(self, item: Item, stopping: asyncio.Event) -> None:
        """One suppression of the group's ``<prefix>.suppressions`` partitions (``--suppressions-url``)."""
        msg, store, m = item.msg, self.store, self.metrics
        url = self.options.suppressions_url
        assert url is not None
        sup = item.data
        if isinstance(sup, Rejection):
            await self._write([dead_letter_record(self.dlq_topic, msg, sup, wall_ms())])
            m.dead_letters.labels(sup.reason).inc()
            m.forwarded.labels("invalid").inc()
            return
        if not set(sup.get("channels", [])) & set(self.options.channels):
            m.forwarded.labels("not_for_these_channels").inc()
            return
        sid = sup["suppression_id"]
        async with self.exclusive.hold(dedup.SUPPRESSION + sid.encode(), stopping):
            mark = store.get(dedup.SUPPRESSION, sid)
            if mark is None or mark.state == dedup.IN_FLIGHT:
                if mark is not None:
                    m.unknown_outcome.labels(SUPPRESSIONS_TARGET).inc()
                result, answer, detail = await self.delivery.send(
                    dedup.SUPPRESSION, sid, url, msg.value, SUPPRESSIONS_TARGET, stopping, rate_limited=False)
                if result == "delivered":
                    store.put(dedup.SUPPRESSION, sid, dedup.DELIVERED_DONE, wall_ms(), status=answer.status)
                    m.forwarded.labels("forwarded").inc()
                    return
                mark = store.put(dedup.SUPPRESSION, sid, dedup.FAILED, wall_ms(), status=answer.status, detail=detail)
                _log_failed("suppression", sid, msg, detail)
                m.forwarded.labels("dead_letter").inc()
            else:
                m.forwarded.labels("duplicate").inc()
            if mark.state == dedup.FAILED:
                await self._write([dead_letter_record(self.dlq_topic, msg, Rejection(DELIVERY_FAILED, mark.detail),
                                                      mark.outcome_ms)])
                m.dead_letters.labels(DELIVERY_FAILED).inc()
                store.put(dedup.SUPPRESSION, sid, dedup.FAILED_DONE, wall_ms())

    async def _write(self, records: list[Record]) -> None:
        """Write records and wait until Kafka has acknowledged every one (raises if it cannot)."""
        futures = [await self.producer.send(topic, value=value, key=key) for topic, key, value in records]
        for fut in futures:
            await fut


def _log_failed(what: str, ident: str, msg: Any, detail: str) -> None:
    """The final failure of a delivery, as a warning (attempts that were retried are logged before it)."""
    log.warning("%s %s (%s partition %d offset %d): dead-lettered (%s)", what, ident, msg.topic, msg.partition,
                msg.offset, detail)
