"""Published journeys: the compacted ``<prefix>.journeys`` topic (key = journey id, value = YAML).

Workers read the whole topic at start, then follow it: a new publication is
validated and loaded without a restart. Customers in flight finish on the version
they entered; new entries take the newest version. A publication is refused (logged
and counted) and the last good version keeps running when it is invalid, when its key
is not its journey id, or when it brings different content for a version this worker
already has: an (id, version) never changes definition under the customers in it
(the same content again is simply loaded again).

Compaction keeps only the newest record per journey id, so each worker also keeps
every version it has loaded in ``<ORCH_DATA_DIR>/journeys/<id>@<version>.yaml``: after a
restart, customers still in an older version find it there. The same folder remembers
the publications this worker refused (``refused``: partition, offset and a hash of the
content), so a restart, which reads the topic again, logs them at INFO and does not count
them a second time.

``journeys list --published`` and ``journeys diff`` judge the topic's records with the same
rules (:func:`survey`), without a cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from orchestrator.config import Settings
from orchestrator.core.catalog import JourneySet
from orchestrator.core.journeyfiles import journey_files, parse_journey
from orchestrator.core.journeys import Journey
from orchestrator.errors import DefinitionError
from orchestrator.kafkaio.clients import partitions_of, read_to_end, start_client

log = logging.getLogger("orchestrator.journeys")

REFUSED_FILE = "refused"


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

    @property
    def coordinates(self) -> str:
        """Where the record is, with a hash of its content (a recreated topic reuses offsets)."""
        digest = hashlib.sha256((self.text or "").encode()).hexdigest()[:16]
        return f"{self.partition}:{self.offset}:{digest}"


@dataclass(frozen=True)
class Verdict:
    """What the registry made of one publication."""

    pub: Publication
    result: str                   # "loaded", "refused" or "ignored"
    reason: str                   # one line: what was loaded, or why not
    journey: Journey | None = None
    version: int | None = None    # the version the record claims, when it could be read
    problems: tuple[str, ...] = ()  # every problem of an invalid definition (``file:line: message``)


def journeys_topic(settings: Settings) -> str:
    return settings.topics.journeys


NOT_PUBLISHED = "nothing has been published with this prefix yet (`orchestrator journeys publish` creates the topic)"


async def read_published(settings: Settings) -> tuple[list[Publication], dict[int, int]]:
    """Every record of the journeys topic, and the end offset of each partition. The topic must
    exist (a one-sentence error otherwise); nothing is created."""
    from orchestrator.kafkaio.topics import require_topics
    topic = journeys_topic(settings)
    parts = (await require_topics(settings, [topic], hint=NOT_PUBLISHED))[topic]
    consumer = AIOKafkaConsumer(**settings.aiokafka_kwargs(), enable_auto_commit=False, isolation_level="read_committed", auto_offset_reset="earliest")
    await start_client(consumer, settings)
    out: list[Publication] = []
    try:
        tps = [TopicPartition(topic, p) for p in parts]
        ends = await consumer.end_offsets(tps)
        async for _, msgs in read_to_end(consumer, dict.fromkeys(tps), ends=ends):
            out.extend(_publication(m) for m in msgs)
        return out, {tp.partition: ends[tp] for tp in tps}
    finally:
        await consumer.stop()


def _publication(m) -> Publication:  # noqa: ANN001 - aiokafka ConsumerRecord
    text = m.value.decode("utf-8", errors="replace") if m.value is not None else None
    return Publication(m.key.decode("utf-8", errors="replace") if m.key else "", text, m.partition, m.offset,
                       m.timestamp)


class Registry:
    """Keeps a JourneySet up to date from files, the local version cache and the journeys topic."""

    def __init__(self, settings: Settings, journeys: JourneySet, channels: tuple[str, ...],
                 on_result: Callable[[str], None] | None = None, *, cache: bool = True) -> None:
        self.settings = settings
        self.journeys = journeys
        self.channels = channels
        self.cache = Path(settings.data_dir) / "journeys" if cache else None
        self.on_result = on_result or (lambda result: None)
        self.texts: dict[tuple[str, int], str] = {}      # the content of every (id, version) loaded
        self._refused: set[str] = set()                  # coordinates already refused by this worker
        if self.cache is not None:
            try:
                self._refused = set((self.cache / REFUSED_FILE).read_text(encoding="utf-8").split())
            except OSError:
                pass

    # ------------------------------------------------------------------ loading
    def load_cache(self) -> None:
        """Every version this worker loaded before, in version order (so the newest is current)."""
        if self.cache is None:
            return
        found: list[tuple[str, int, Journey, str]] = []
        for path in journey_files(self.cache):
            try:
                text = path.read_text(encoding="utf-8")
                j = parse_journey(text, str(path), channels=self.channels)
            except (OSError, UnicodeDecodeError) as exc:
                log.warning("cached journey %s unreadable: %s", path.name, exc)
                continue
            except DefinitionError as exc:
                log.warning("cached journey refused: %s", exc)
                continue
            found.append((j.id, j.version, j, text))
        for jid, version, j, text in sorted(found, key=lambda f: (f[0], f[1])):
            self.journeys.add(j)
            self.texts[(jid, version)] = text

    def add_file(self, j: Journey) -> None:
        """A definition from ``ORCH_JOURNEYS``: loaded, and its content remembered like a publication's."""
        try:
            text = Path(j.source).read_text(encoding="utf-8")
        except OSError:
            text = None
        known = self.texts.get((j.id, j.version))
        if known is not None and text is not None and known != text:
            log.error("journey file %s refused: %s version %d is already loaded with different content; "
                      "bump version: to change it", j.source, j.id, j.version)
            return
        self.journeys.add(j)
        if text is not None:
            self.texts[(j.id, j.version)] = text

    def judge(self, pub: Publication) -> Verdict:
        """Load one publication if it may be loaded; no logging, counting or caching."""
        if pub.text is None:
            return Verdict(pub, "ignored", "tombstone: kept as it is (publish enabled: false to stop entries)")
        try:
            j = parse_journey(pub.text, pub.source, channels=self.channels)
        except DefinitionError as exc:
            more = len(exc.problems) - 1
            return Verdict(pub, "refused", exc.problems[0] + (f" (and {more} more)" if more else ""),
                           problems=tuple(exc.problems))
        if j.id != pub.key:
            return Verdict(pub, "refused", f"{pub.source}: key {pub.key!r} does not match journey id {j.id!r}",
                           version=j.version)
        known = self.texts.get((j.id, j.version))
        if known is not None and known != pub.text:
            return Verdict(pub, "refused", f"{pub.source}: {j.id} version {j.version} is already loaded with "
                           "different content; publish the change as a new version", version=j.version)
        if known is not None:
            return Verdict(pub, "loaded", "unchanged", j, j.version)
        what = self.journeys.add(j)
        if what.startswith("ignored"):
            return Verdict(pub, "ignored", f"{pub.source} {what}", version=j.version)
        self.texts[(j.id, j.version)] = pub.text
        return Verdict(pub, "loaded", what, j, j.version)

    def apply(self, pub: Publication) -> str:
        """Load one publication, log and count the result. Returns "loaded", "refused" or "ignored"."""
        v = self.judge(pub)
        if pub.text is None:
            log.info("journey %s: tombstone at %s:%s; kept as it is (publish enabled: false to stop entries)",
                     pub.key, pub.partition, pub.offset)
            return v.result
        if v.result == "loaded":
            j = v.journey
            assert j is not None
            if v.reason == "unchanged":
                log.info("journey %s version %d unchanged (%s)", j.id, j.version, pub.source)
            else:
                self._remember(j, pub.text)
                log.info("journey %s version %d %s%s%s", j.id, j.version, v.reason, " (shadow)" if j.shadow else "",
                         "" if j.enabled else " (disabled: no new entries)")
            return self._done("loaded")
        word = "refused" if v.result == "refused" else "ignored"
        if pub.coordinates in self._refused:
            # Counted (and logged as an error) by this worker when it first read it.
            log.info("journey publication %s earlier, still %s: %s", word, word, v.reason)
            return v.result
        for problem in v.problems or (v.reason,):
            log.error("journey publication %s: %s", word, problem)
        self._remember_refusal(pub)
        return self._done(v.result)

    def _done(self, result: str) -> str:
        self.on_result(result)
        return result

    def _remember(self, j: Journey, text: str) -> None:
        if self.cache is None:
            return
        try:
            self.cache.mkdir(parents=True, exist_ok=True)
            path = self.cache / f"{j.id}@{j.version}.yaml"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
        except OSError as exc:
            log.warning("could not cache journey %s version %d: %s", j.id, j.version, exc)

    def _remember_refusal(self, pub: Publication) -> None:
        self._refused.add(pub.coordinates)
        if self.cache is None:
            return
        try:
            self.cache.mkdir(parents=True, exist_ok=True)
            with open(self.cache / REFUSED_FILE, "a", encoding="utf-8") as f:
                f.write(pub.coordinates + "\n")
        except OSError as exc:
            log.warning("could not remember a refused publication: %s", exc)

    async def follow(self, start: dict[int, int]) -> None:
        """Apply publications after ``start`` (partition -> offset) forever."""
        topic = journeys_topic(self.settings)
        consumer = AIOKafkaConsumer(**self.settings.aiokafka_kwargs(), enable_auto_commit=False, isolation_level="read_committed")
        await start_client(consumer, self.settings)
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


@dataclass
class JourneyView:
    """One journey id as the topic's records make it: what a worker reading them all would run."""

    id: str
    live: Journey | None = None                  # takes new entries
    shadow: Journey | None = None                # runs beside the live one, sends nothing
    older: list[Journey] = field(default_factory=list)       # loaded before; customers in flight finish on them
    refused: list[Verdict] = field(default_factory=list)     # records refused or ignored, oldest first
    published_ms: dict[int, int] = field(default_factory=dict)   # version -> timestamp of its first record
    texts: dict[int, str] = field(default_factory=dict)      # version -> content, for every version loaded


def survey(settings: Settings, pubs: list[Publication], channels: tuple[str, ...]) -> dict[str, JourneyView]:
    """Judge every record of the journeys topic, in order, as a worker with no files would."""
    journeys = JourneySet()
    registry = Registry(settings, journeys, channels, cache=False)
    views: dict[str, JourneyView] = {}
    for pub in pubs:
        v = registry.judge(pub)
        key = v.journey.id if v.journey is not None else pub.key
        view = views.setdefault(key, JourneyView(key))
        if v.result == "loaded" and v.journey is not None:
            view.published_ms.setdefault(v.journey.version, pub.timestamp_ms)
            view.texts[v.journey.version] = pub.text or ""
        elif pub.text is not None:
            view.refused.append(v)
    for jid, view in views.items():
        view.live = journeys.current.get(jid)
        view.shadow = journeys.shadow.get(jid)
        shown = {j.version for j in (view.live, view.shadow) if j is not None}
        view.older = [j for version, j in sorted(journeys.versions.get(jid, {}).items()) if version not in shown]
    return views
