"""The worker's duplicate window (:mod:`orchestrator.core.dedup`): the keys of the events each
partition decided in the last 25 hours, outside the customer states.

Each partition has a RocksDB of its own for them (``state/p<n>-dedup``), opened with a time-to-live of
``TTL_S`` (26 h): RocksDB drops a key at a compaction once it is older than that, so the store holds
about a day of events and no more, whoever sent them. Its changelog is
``<prefix>.internal.dedup-changelog``, deleted by age (``retention.ms`` 27 h), not compacted: one
record per partition and batch whose value is the 16-byte keys the batch saw first, one after the
other. A restore reads what the topic still holds (at most about a day) from where the partition's
store left off.

A batch asks the :class:`~orchestrator.runtime.window.Window` (its keys so far, then the overlay of
batches whose keys are not in RocksDB yet, then RocksDB) and writes what it saw at its end, like the
customer states (:mod:`~orchestrator.runtime.transaction`): to the changelog with the outputs (step 2),
to RocksDB with the states once Kafka has acknowledged them (step 4).
"""

from __future__ import annotations

from pathlib import Path

from rocksdict import AccessType, Rdict, WriteBatch, WriteOptions

from orchestrator.core.dedup import KEEP_MS, KEY_LEN
from orchestrator.runtime.store import Memory, PartitionDBs, options

TTL_S = KEEP_MS // 1000                               # a key lives at least this long in RocksDB
OFFSET_KEY = b"o"                                     # never a key's length: keys are 16 bytes


class DedupStore:
    """One partition's keys, in a RocksDB with a time-to-live."""

    def __init__(self, path: Path, memory: Memory) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # The states' options: their shared block cache and memtable budget (memory does not grow with
        # partitions) and a bloom filter (most keys asked for are new: answered without reading a
        # block). Passed for the default column family too on reopen (see runtime/store.py).
        opts = options(memory)
        self.db = Rdict(str(path), options=opts, column_families={"default": opts} if path.exists() else None,
                        access_type=AccessType.with_ttl(TTL_S))
        self._write_opts = WriteOptions()
        self._write_opts.disable_wal = True        # type: ignore[method-assign,assignment]  # a property; the changelog is the log

    def close(self) -> None:
        self.db.close()

    def seen(self, key: bytes) -> bool:
        return self.db.get(key) is not None

    def changelog_offset(self) -> int | None:
        raw = self.db.get(OFFSET_KEY)
        return None if raw is None else int.from_bytes(raw, "big")

    def write(self, keys: bytes, changelog_offset: int | None) -> None:
        """Add ``keys`` (16-byte keys one after the other) and the changelog offset, atomically."""
        wb = WriteBatch(raw_mode=True)
        for i in range(0, len(keys), KEY_LEN):
            wb.put(keys[i:i + KEY_LEN], b"")
        if changelog_offset is not None:
            wb.put(OFFSET_KEY, changelog_offset.to_bytes(8, "big"))
        self.db.write(wb, self._write_opts)

    def apply_changelog(self, records: list[tuple[bytes | None, bytes | None]], last_offset: int) -> None:
        """Restore: the keys of changelog records up to ``last_offset``."""
        self.write(b"".join(value for _, value in records if value), last_offset)


class DedupStores(PartitionDBs[DedupStore]):
    """The duplicate windows of one worker's partitions, beside their states (``p<n>-dedup``)."""

    def __init__(self, data_dir: str, memory: Memory) -> None:
        super().__init__(data_dir, lambda p: f"p{p}-dedup", lambda path: DedupStore(path, memory))
