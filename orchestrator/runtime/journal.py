"""The journal: the outputs of each decided input, by input offset, so a replayed input re-sends exactly
its first outputs and decides nothing again.

A batch's journal is one changelog record per partition and input topic (key ``j`` + source + first
offset, see :mod:`~orchestrator.runtime.store`), written after the batch's states. It is durable with
them (step 3 of the worker's protocol) before the input offsets are committed (step 5); so when a crash
replays an input whose state change is already in the changelog, its outputs are in the journal: they
are re-sent with the same ids and content, and the engine is not asked again. On assignment the
journals of the partition's uncommitted offsets are loaded (:meth:`Journal.adopt`); once all the
offsets a journal covers are committed, it is tombstoned (:meth:`Journal.write`).

Inputs are named by their *source*, the input topic's code in journal keys: :data:`EVENTS` (``e``,
``<prefix>.events``) or :data:`INTERNAL` (``k``, ``<prefix>.internal.events-by-customer``).
"""

from __future__ import annotations

from typing import NamedTuple

from aiokafka import TopicPartition

from orchestrator.runtime.collector import Collector
from orchestrator.runtime.journalcodec import Output, decoder, encoder
from orchestrator.runtime.store import PartitionStore, journal_key

EVENTS = b"e"
INTERNAL = b"k"
# A journal record stays well under Kafka's default message.max.bytes (1 MB) and the producer's
# batch size, however many outputs a batch of one partition has: larger ones are cut in pieces.
JOURNAL_MAX_BYTES = 200_000
ENTRY_BYTES, OUTPUT_BYTES = 16, 8           # what an input and each output count besides their strings


class Written(NamedTuple):
    """A journal record written and not yet tombstoned: the input offsets it covers."""

    source: bytes
    first: int
    last: int


class Journal:
    """The journals of this worker's partitions."""

    def __init__(self, topics: dict[bytes, str]) -> None:
        self.topics = topics                     # source -> input topic name
        # (partition, source) -> this batch's entries (offset, outputs) and their sizes (entry_size)
        self._batch: dict[tuple[int, bytes], tuple[list[tuple[int, list]], list[int]]] = {}
        self._written: dict[int, list[Written]] = {}                    # partition -> not yet tombstoned
        self._replay: dict[int, dict[tuple[bytes, int], list[Output]]] = {}   # partition -> (source, offset) ->

    def replayed(self, partition: int, source: bytes, offset: int) -> list[Output] | None:
        """The outputs of this input if it was decided before (a replay after a crash), once."""
        replay = self._replay.get(partition)
        return replay.pop((source, offset), None) if replay else None

    def record(self, partition: int, source: bytes, offset: int, outputs: list[tuple[str, str, bytes]],
               size: int | None = None) -> None:
        """Remember this batch's outputs of one input: (topic, key, value) each. Plain tuples, read back
        as :class:`Output` (the same msgpack; a named tuple per output costs more to build). ``size``:
        :func:`entry_size` of them, if the caller has added it up already (the batch path does, as it
        builds them)."""
        pending = self._batch.get((partition, source))
        if pending is None:
            pending = self._batch[(partition, source)] = ([], [])
        pending[0].append((offset, outputs))
        pending[1].append(entry_size(outputs) if size is None else size)

    def write(self, collector: Collector, changelog: str,
              committed: dict[TopicPartition, int]) -> dict[int, list[tuple[bytes, bytes | None]]]:
        """This batch's journal records, and tombstones for journals whose offsets are all committed
        (``committed``: next offset to process per input partition): queued to the changelog,
        returned as rows (key, value or ``None``) for RocksDB by partition (step 4)."""
        rows: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for p, kept in self._written.items():
            if not kept:
                continue
            still = []
            for w in kept:
                done = committed.get(TopicPartition(self.topics[w.source], p))
                if done is not None and w.last < done:
                    key = journal_key(w.source, w.first)
                    collector.send(changelog, key, None, p, via=p)
                    rows.setdefault(p, []).append((key, None))
                else:
                    still.append(w)
            self._written[p] = still
        for (p, source), (entries, sizes) in self._batch.items():
            for start, end in runs(sizes):
                chunk = entries[start:end]
                key = journal_key(source, chunk[0][0])
                value = encoder.encode(chunk)
                collector.send(changelog, key, value, p, via=p)
                rows.setdefault(p, []).append((key, value))
                self._written.setdefault(p, []).append(Written(source, chunk[0][0], chunk[-1][0]))
        self._batch = {}
        return rows

    def adopt(self, partition: int, store: PartitionStore, committed: dict[bytes, int | None]) -> None:
        """A partition assigned (and restored): the outputs of its journaled inputs at or after the
        committed offsets (``committed``: source -> next offset to process, ``None``: nothing
        committed) are re-sent if those inputs come again; older journals are tombstoned."""
        replay: dict[tuple[bytes, int], list[Output]] = {}
        kept: list[Written] = []
        for key, value in store.journals():
            source, first = key[1:2], int.from_bytes(key[2:10], "big")
            entries = decoder.decode(value)
            kept.append(Written(source, first, entries[-1].offset if entries else first))
            done = committed.get(source)
            for entry in entries:
                if done is None or entry.offset >= done:
                    replay[(source, entry.offset)] = entry.outputs
        self._replay[partition] = replay
        self._written[partition] = kept

    def forget(self, partitions: set[int]) -> None:
        """Partitions revoked: their journals are the next owner's."""
        for p in partitions:
            self._replay.pop(p, None)
            self._written.pop(p, None)
            for key in [k for k in self._batch if k[0] == p]:
                del self._batch[key]


def entry_size(outputs: list[tuple[str, str, bytes]]) -> int:
    """What one input's outputs count towards ``JOURNAL_MAX_BYTES``: about their encoded size."""
    return ENTRY_BYTES + sum(len(topic) + len(key) + len(value) + OUTPUT_BYTES for topic, key, value in outputs)


def runs(sizes: list[int], limit: int = JOURNAL_MAX_BYTES) -> list[tuple[int, int]]:
    """Entries of these sizes (:func:`entry_size`), in order, cut into runs ``[start, end)`` of at most
    about ``limit`` bytes each (an input's outputs are never split: one input larger than ``limit`` is
    a run alone)."""
    out: list[tuple[int, int]] = []
    start = total = 0
    for i, n in enumerate(sizes):
        if i > start and total + n > limit:
            out.append((start, i))
            start, total = i, 0
        total += n
    if sizes:
        out.append((start, len(sizes)))
    return out
