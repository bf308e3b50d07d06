"""The worker's local state: one RocksDB (rocksdict) per partition, changelogged to Kafka.

Keys inside a partition's database:

=====================  =====================================================
``c`` + customer id    8-byte big-endian due ms of its next timer (0 = none)
                       followed by the msgpack :class:`CustomerState`
``t`` + due + cid      empty: the timer index, ordered by due time
``o``                  offset (8 bytes) of the last changelog record applied
``j`` + topic + offset   the *journal* of one batch: the outputs of its inputs
                       from one input topic (``e`` events, ``k`` internal) of
                       this partition, from that first offset (8 bytes) on
=====================  =====================================================

The changelog topic (``<prefix>.internal.state-changelog``, compacted, one
partition per input partition) carries the ``c`` and ``j`` records, value = the
same bytes or a tombstone; the timer index is derived from the due prefix, so it
costs no changelog traffic and a restore rebuilds it. A journal is tombstoned once
the offsets it covers are committed (see :mod:`orchestrator.runtime.batch`).

Write order (see :mod:`orchestrator.runtime.checkpoint`): a batch's changelog records
and outputs are acknowledged by Kafka first, then written here in one
``WriteBatch`` with the changelog offset, then the input offsets are committed.
So this database is never ahead of the changelog; after a crash it is at most
behind it, and :meth:`PartitionStore.changelog_offset` says where to resume.
That is also why it is written without RocksDB's write-ahead log (as Kafka Streams does):
the changelog is the log. A crash loses at most the last write batches, offset included,
and the restore replays them from the changelog.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch, WriteBufferManager, WriteOptions


class _DB(Protocol):
    def close(self) -> None: ...


DB = TypeVar("DB", bound=_DB)

STATE = b"c"
TIMER = b"t"
OFFSET_KEY = b"o"
JOURNAL = b"j"
DUE_LEN = 8                       # the big-endian due ms in front of a state, and in a timer key
NO_DUE = bytes(DUE_LEN)

# What one worker's databases (states and duplicate windows, every partition) take in memory is
# bounded whatever the number of partitions: one block cache for all of them, holding the files'
# data, index and filter blocks, and one budget for all their memtables (a database's memtable is
# flushed early when the sum passes it). RocksDB's defaults (64 MiB of buffers per database, index
# and filters outside the cache) let memory grow with partitions and with the data.
WRITE_BUFFER = 4 * 1024 * 1024
SHARED_CACHE = 64 * 1024 * 1024
MEMTABLES = 32 * 1024 * 1024


class Memory:
    """The memory all of one worker's databases share: the block cache and the memtables' budget."""

    def __init__(self, cache_bytes: int = SHARED_CACHE, memtables_bytes: int = MEMTABLES) -> None:
        self.cache = Cache(cache_bytes)
        self.buffers = WriteBufferManager(memtables_bytes, False)


def options(memory: Memory) -> Options:
    """A partition database's options: small memtables within the worker's budget, the worker's shared
    block cache, bloom filters."""
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.set_write_buffer_size(WRITE_BUFFER)
    opts.set_max_write_buffer_number(2)
    opts.set_write_buffer_manager(memory.buffers)
    # A bloom filter over each memtable's whole keys (a tenth of its size, inside the memtable budget):
    # a key that is not in a memtable, as most keys the duplicate window asks for and the states of
    # customers not written since the last flush, is answered without walking its skip list. Measured
    # on 300,000 16-byte keys: a missing key 1.0-1.2 -> 0.4-0.6 us, one in a file 2.3-2.8 -> 1.2-1.4 us,
    # one in the memtable unchanged.
    opts.set_memtable_prefix_bloom_ratio(0.1)
    opts.set_memtable_whole_key_filtering(True)
    table = BlockBasedOptions()
    table.set_block_cache(memory.cache)
    table.set_bloom_filter(10, False)
    # Index and filter blocks in the block cache too, so the memory they take is bounded by it: the
    # duplicate window's data grows for a day, and with it, uncached, its filters (about 1.25 bytes a
    # key). Level 0's stay pinned: they are asked on every read.
    table.set_cache_index_and_filter_blocks(True)
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    opts.set_block_based_table_factory(table)
    return opts


def timer_key(due: bytes, customer_key: bytes) -> bytes:
    return TIMER + due + customer_key


def journal_key(code: bytes, first_offset: int) -> bytes:
    """Key of the journal of one batch's inputs from topic ``code`` (``e``/``k``) of a partition."""
    return JOURNAL + code + first_offset.to_bytes(8, "big")


def split_timer_key(key: bytes) -> tuple[bytes, bytes]:
    """(due, customer key) of a timer index key."""
    return key[1:1 + DUE_LEN], key[1 + DUE_LEN:]


class PartitionStore:
    """Customer states and timers of one partition."""

    def __init__(self, path: Path, memory: Memory) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        opts = options(memory)
        # Pass the options for the default column family too: without it, reopening an existing
        # database silently falls back to RocksDB's defaults (see FIELD-NOTES, rocksdict reopen trap).
        self.db = Rdict(str(path), options=opts, column_families={"default": opts} if path.exists() else None)
        self._write_opts = WriteOptions()
        self._write_opts.disable_wal = True

    def close(self) -> None:
        self.db.close()

    def get(self, customer_key: bytes) -> bytes | None:
        """``due (8 bytes) + state`` of a customer, or ``None``."""
        return self.db.get(STATE + customer_key)

    def changelog_offset(self) -> int | None:
        raw = self.db.get(OFFSET_KEY)
        return None if raw is None else int.from_bytes(raw, "big")

    def write(self, changes: list[tuple[bytes, bytes | None, bytes | None]], changelog_offset: int | None,
              journals: list[tuple[bytes, bytes | None]] = ()) -> bytes | None:
        """Apply ``(customer key, old due prefix, new value)`` changes, journal records ``(key,
        value or None)`` and the changelog offset atomically; return the first timer index key
        added (``None``: none).

        The old due prefix (the first 8 bytes of the value stored now, ``None`` if there is none)
        says which timer index entry to replace.
        """
        first: bytes | None = None
        wb = WriteBatch(raw_mode=True)
        for key, value in journals:
            if value is None:
                wb.delete(key)
            else:
                wb.put(key, value)
        for key, old_due, new in changes:
            old_due = old_due or NO_DUE
            new_due = new[:DUE_LEN] if new else NO_DUE
            if old_due != new_due:
                if old_due != NO_DUE:
                    wb.delete(timer_key(old_due, key))
                if new_due != NO_DUE:
                    tk = timer_key(new_due, key)
                    wb.put(tk, b"")
                    if first is None or tk < first:
                        first = tk
            if new is None:
                wb.delete(STATE + key)
            else:
                wb.put(STATE + key, new)
        if changelog_offset is not None:
            wb.put(OFFSET_KEY, changelog_offset.to_bytes(8, "big"))
        self.db.write(wb, self._write_opts)
        return first

    def apply_changelog(self, records: list[tuple[bytes, bytes | None]], last_offset: int) -> None:
        """Restore: apply changelog records (states and journals) up to ``last_offset``."""
        latest: dict[bytes, bytes | None] = {}
        journals: dict[bytes, bytes | None] = {}
        for key, value in records:
            if key[:1] == STATE:
                latest[key[1:]] = value
            elif key[:1] == JOURNAL:
                journals[key] = value
        rows = []
        for k, v in latest.items():
            old = self.get(k)
            rows.append((k, old[:DUE_LEN] if old else None, v))
        self.write(rows, last_offset, list(journals.items()))

    def journals(self) -> list[tuple[bytes, bytes]]:
        """Every journal kept (key, value), in key order."""
        it = self.db.iter()
        it.seek(JOURNAL)
        out = []
        while it.valid() and it.key()[:1] == JOURNAL:
            out.append((it.key(), it.value()))
            it.next()
        del it
        return out

    def due(self, now_ms: int, after: bytes | None = None) -> Iterator[bytes]:
        """Timer keys (``t`` + due + customer) due at or before ``now_ms``, in due order."""
        it = self.db.iter()
        if after is None:
            it.seek(TIMER)
        else:
            it.seek(after)
            if it.valid() and it.key() == after:
                it.next()
        limit = TIMER + now_ms.to_bytes(DUE_LEN, "big")
        while it.valid():
            k = it.key()
            if k[:1] != TIMER or k[:1 + DUE_LEN] > limit:
                break
            yield k
            it.next()
        del it

    def count_timers(self) -> int:
        it = self.db.iter()
        it.seek(TIMER)
        n = 0
        while it.valid() and it.key()[:1] == TIMER:
            n += 1
            it.next()
        del it
        return n


# orch_rocksdb_memory_bytes{kind}: a RocksDB property, summed over the databases; the block cache is
# shared by all of them, so it is read once.
MEMORY_PROPERTIES = {"block_cache": "rocksdb.block-cache-usage", "memtables": "rocksdb.cur-size-all-mem-tables",
                     "table_readers": "rocksdb.estimate-table-readers-mem"}


def memory_bytes(dbs: list[Rdict]) -> dict[str, int]:
    """What the open databases ``dbs`` (sharing one block cache) hold in memory, by kind."""
    out = {}
    for kind, prop in MEMORY_PROPERTIES.items():
        values = [db.property_int_value(prop) or 0 for db in (dbs[:1] if kind == "block_cache" else dbs)]
        out[kind] = sum(values)
    return out


class PartitionDBs(Generic[DB]):
    """One database per partition of one worker process, under ``ORCH_DATA_DIR/state``: opened when
    first asked for, wiped and reopened empty when its changelog must rebuild it."""

    def __init__(self, data_dir: str, folder: Callable[[int], str], open_db: Callable[[Path], DB]) -> None:
        self.root = Path(data_dir) / "state"
        self.folder, self.open_db = folder, open_db
        self.open: dict[int, DB] = {}

    def get(self, partition: int) -> DB:
        store = self.open.get(partition)
        if store is None:
            store = self.open[partition] = self.open_db(self.root / self.folder(partition))
        return store

    def wipe(self, partition: int) -> DB:
        """Drop a partition's local data (its changelog is the truth) and reopen it empty."""
        store = self.open.pop(partition, None)
        if store is not None:
            store.close()
        shutil.rmtree(self.root / self.folder(partition), ignore_errors=True)
        return self.get(partition)

    def close(self) -> None:
        for store in self.open.values():
            store.close()
        self.open.clear()


class Stores(PartitionDBs[PartitionStore]):
    """The partition stores (customer states, timers, journals) of one worker process."""

    def __init__(self, data_dir: str, memory: Memory | None = None) -> None:
        self.memory = memory or Memory()
        super().__init__(data_dir, lambda p: f"p{p}", lambda path: PartitionStore(path, self.memory))
