"""The duplicate window as the worker's batches see it (:class:`Window`): a batch's own keys, then the
keys of batches handed over whose keys are not in RocksDB yet (the overlay), then the partition's
:class:`~orchestrator.runtime.dedup.DedupStore`. Asked once per event, so it is compiled with the hot
path (:mod:`orchestrator.compiled`); the stores stay plain Python.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.runtime.collector import Collector

if TYPE_CHECKING:
    from orchestrator.runtime.dedup import DedupStores


class Window:
    """The duplicate window as batches see it (one per worker)."""

    def __init__(self, stores: DedupStores) -> None:
        self.stores = stores
        self._open = stores.open           # partition -> its open store (the stores keep this one dict)
        # The keys of batches handed over and not yet in RocksDB: all of them, and those of each batch
        # (its seq). A key is seen first by one batch only, so the batches' sets never overlap.
        self.overlay: set[bytes] = set()
        self._pending: dict[int, set[bytes]] = {}
        self._batch: dict[int, list[bytes]] = {}             # partition -> keys this batch saw first
        self._batch_keys: set[bytes] = set()

    def first(self, partition: int, key: bytes) -> bool:
        """``True`` (and remember it) if no earlier event of the window had ``key``."""
        if key in self._batch_keys or key in self.overlay:
            return False
        # The store's database asked directly: ``stores.get`` and ``DedupStore.seen``, plain Python,
        # would be two more interpreted calls per event.
        store = self._open.get(partition)
        if store is None:
            store = self.stores.get(partition)
        if store.db.get(key) is not None:
            return False
        self._batch_keys.add(key)
        keys = self._batch.get(partition)
        if keys is None:
            keys = self._batch[partition] = []
        keys.append(key)
        return True

    def forget(self, partition: int, key: bytes) -> None:
        """Unsee a key this batch saw first (its event was not decided after all: the engine raised)."""
        if key in self._batch_keys:
            self._batch_keys.discard(key)
            self._batch[partition].remove(key)

    def remember(self, partition: int, keys: list[bytes]) -> None:
        """Keys from elsewhere (a state written before the window moved out) that this batch writes."""
        for key in keys:
            if key not in self._batch_keys and key not in self.overlay:
                self._batch_keys.add(key)
                self._batch.setdefault(partition, []).append(key)

    def changes(self, collector: Collector | None, changelog: str, seq: int) -> dict[int, bytes]:
        """This batch's keys by partition: queued to the changelog (one record per partition; unless
        ``collector`` is ``None``: the checkpoint sends them) and put in the overlay until the
        checkpoint writes them to RocksDB (:meth:`settled`)."""
        changes = {p: b"".join(keys) for p, keys in self._batch.items()}
        if self._batch_keys:
            self._pending[seq] = self._batch_keys
            self.overlay |= self._batch_keys
        if collector is not None:
            for p, blob in changes.items():
                collector.send(changelog, None, blob, p, via=p)
        self._batch, self._batch_keys = {}, set()
        return changes

    def settled(self, seq: int) -> None:
        """Batch ``seq``'s keys are in RocksDB: out of the overlay."""
        keys = self._pending.pop(seq, None)
        if keys is not None:
            self.overlay -= keys
