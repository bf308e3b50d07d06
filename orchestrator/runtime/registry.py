"""Published journeys: the compacted ``<prefix>.journeys`` topic (key = journey id, value = YAML).

Workers read the whole topic at start, then follow it: a new publication is
validated and loaded without a restart. Customers in flight finish on the version
they entered; new entries take the newest version. An invalid publication is
refused (logged and counted) and the last good version keeps running.

Compaction keeps only the newest record per journey id, so each worker also keeps
every version it has loaded in ``<ORCH_DATA_DIR>/journeys/<id>@<version>.yaml``: after a
restart, customers still in an older version find it there.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from orchestrator.config import Settings
from orchestrator.core.catalog import JourneySet
from orchestrator.core.journeys import Journey, journey_files, load_journey_file, parse_journey
from orchestrator.errors import DefinitionError
from orchestrator.runtime.client import partitions_of, seek_to_start

log = logging.getLogger("orchestrator.journeys")


@dataclass(frozen=True)
class Publication:
    key: str
    text: str | None          # None: a tombstone
    partition: int
    offset: int
    timestamp_ms: int

    @property
    def source(self) -> str:
        return f"{self.key} (published, offset {self.partition}:{self.offset})"


def journeys_topic(settings: Settings) -> str:
    return settings.topic("journeys")


async def read_published(settings: Settings) -> tuple[list[Publication], dict[int, int]]:
    """Every record of the journeys topic, and the end offset of each partition."""
    topic = journeys_topic(settings)
    parts = (await partitions_of(settings, [topic])).get(topic, [])
    if not parts:
        return [], {}
    consumer = AIOKafkaConsumer(**settings.aiokafka_kwargs(), enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    out: list[Publication] = []
    try:
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await seek_to_start(consumer, tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, msgs in batch.items():
                for m in msgs:
                    if m.offset < ends[tp]:
                        out.append(_publication(m))
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return out, {tp.partition: ends[tp] for tp in tps}
    finally:
        await consumer.stop()


def _publication(m) -> Publication:  # noqa: ANN001 - aiokafka ConsumerRecord
    text = m.value.decode("utf-8", errors="replace") if m.value is not None else None
    return Publication(m.key.decode("utf-8", errors="replace") if m.key else "", text, m.partition, m.offset,
                       m.timestamp)


def latest_by_id(pubs: list[Publication]) -> dict[str, Publication]:
    latest: dict[str, Publication] = {}
    for p in pubs:
        latest[p.key] = p
    return latest


def published_versions(pubs: list[Publication], channels: tuple[str, ...]) -> dict[str, dict[int, str]]:
    """Journey id -> version -> text, over every valid publication still on the topic."""
    out: dict[str, dict[int, str]] = {}
    for p in pubs:
        if p.text is None:
            continue
        try:
            j = parse_journey(p.text, p.source, channels=channels)
        except DefinitionError:
            continue
        if j.id == p.key:
            out.setdefault(j.id, {})[j.version] = p.text
    return out


async def publish(settings: Settings, items: list[tuple[str, str]]) -> None:
    """Send (journey id, YAML text) records, waiting for every acknowledgement."""
    producer = AIOKafkaProducer(**settings.aiokafka_kwargs(), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for jid, text in items:
            await producer.send_and_wait(journeys_topic(settings), value=text.encode(), key=jid.encode())
    finally:
        await producer.stop()


class Registry:
    """Keeps a JourneySet up to date from files, the local version cache and the journeys topic."""

    def __init__(self, settings: Settings, journeys: JourneySet, channels: tuple[str, ...],
                 on_result=None) -> None:  # noqa: ANN001 - callable(result: str)
        self.settings = settings
        self.journeys = journeys
        self.channels = channels
        self.cache = Path(settings.data_dir) / "journeys"
        self.on_result = on_result or (lambda result: None)

    def load_cache(self) -> None:
        for path in journey_files(self.cache):
            try:
                self.journeys.add(load_journey_file(path, channels=self.channels))
            except DefinitionError as exc:
                log.warning("cached journey refused: %s", exc)

    def apply(self, pub: Publication) -> str:
        """Load one publication. Returns "loaded", "refused" or "ignored"."""
        if pub.text is None:
            current = self.journeys.current.get(pub.key)
            log.info("journey %s: tombstone at %s:%s; kept as it is (publish enabled: false to stop entries)",
                     pub.key, pub.partition, pub.offset)
            return "ignored" if current is None else "ignored"
        try:
            j = parse_journey(pub.text, pub.source, channels=self.channels)
        except DefinitionError as exc:
            for problem in exc.problems:
                log.error("journey publication refused: %s", problem)
            return self._done("refused")
        if j.id != pub.key:
            log.error("journey publication refused: %s: key %r does not match journey id %r",
                      pub.source, pub.key, j.id)
            return self._done("refused")
        what = self.journeys.add(j)
        if what.startswith("ignored"):
            log.error("journey publication %s %s", pub.source, what)
            return self._done("ignored")
        self._remember(j, pub.text)
        log.info("journey %s version %d %s%s%s", j.id, j.version, what, " (shadow)" if j.shadow else "",
                 "" if j.enabled else " (disabled: no new entries)")
        return self._done("loaded")

    def _done(self, result: str) -> str:
        self.on_result(result)
        return result

    def _remember(self, j: Journey, text: str) -> None:
        try:
            self.cache.mkdir(parents=True, exist_ok=True)
            path = self.cache / f"{j.id}@{j.version}.yaml"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
        except OSError as exc:
            log.warning("could not cache journey %s version %d: %s", j.id, j.version, exc)

    async def follow(self, start: dict[int, int]) -> None:
        """Apply publications after ``start`` (partition -> offset) forever."""
        topic = journeys_topic(self.settings)
        consumer = AIOKafkaConsumer(**self.settings.aiokafka_kwargs(), enable_auto_commit=False)
        await consumer.start()
        try:
            parts = (await partitions_of(self.settings, [topic])).get(topic, [])
            tps = [TopicPartition(topic, p) for p in parts]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, start.get(tp.partition, 0))
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                for msgs in batch.values():
                    for m in msgs:
                        self.apply(_publication(m))
        except asyncio.CancelledError:
            raise
        finally:
            await consumer.stop()
