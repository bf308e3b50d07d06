"""One batch's reads and changes of customer state (as Quix Streams' ``PartitionTransaction``), and
the value format they are stored in.

A customer's state is read at most once per batch, from the :class:`Overlay` (states written by
batches that Kafka has not acknowledged yet, step 4 of the worker's protocol not done) or else from
the partition's RocksDB; it stays decoded in the :class:`Transaction` for the rest of the batch and
is written at most once, at its end (:meth:`Transaction.changes`): one changelog record per changed
customer, and the same bytes into the overlay until the checkpoint has written them to RocksDB.

The stored value (in RocksDB and on the changelog, key ``c`` + customer id, see
:mod:`~orchestrator.runtime.store`) is the state's next timer as 8-byte big-endian epoch ms (``0``:
none) followed by the msgpack :class:`~orchestrator.core.state.CustomerState`; the prefix lets the
store keep its timer index without decoding states. ``None`` (a tombstone) deletes the customer.

What counts as a change (:meth:`Transaction.update`): any new state after an event (its duplicate
window changed at least), any output, a new state where there was none, a moved timer, a deletion of
a stored state. A wake-up that fired nothing and moved no timer changes nothing.
"""

from __future__ import annotations

from typing import NamedTuple

from orchestrator.core.engine import next_due_ms
from orchestrator.core.state import STATE_RECORD_MAX_BYTES, CustomerState, decode_stored, encode_state
from orchestrator.runtime.collector import Collector
from orchestrator.runtime.store import DUE_LEN, NO_DUE, STATE, Stores


def due_bytes(due_ms: int | None) -> bytes:
    """The prefix of a stored value: the next timer's due time, 8 bytes big-endian (``NO_DUE``: none)."""
    return NO_DUE if due_ms is None else due_ms.to_bytes(DUE_LEN, "big")


def encode_value(state: CustomerState) -> bytes:
    """The stored value of a state: its next due time (8 bytes) and the msgpack state."""
    return due_bytes(next_due_ms(state)) + encode_state(state)


class Change(NamedTuple):
    """A customer's state written by a batch: ``old_due`` is the due prefix stored before (``None``: no
    record), which says which timer index entry to replace; ``new`` is the value, ``None`` to delete."""

    key: bytes
    old_due: bytes | None
    new: bytes | None


class Entry:
    """A customer's state while a batch is decided: read once, written once."""

    __slots__ = ("partition", "old_due", "state", "dirty", "customer_hash", "checked", "source", "offset", "event")

    def __init__(self, partition: int, old_due: bytes | None, state: CustomerState | None) -> None:
        self.partition = partition
        self.old_due = old_due                  # due prefix as stored (None: no record), for the timer index
        self.state = state
        self.dirty = False
        self.customer_hash: bytes | None = None  # the customer's half of its duplicate-window keys, once a batch
        self.checked = False                    # the state as read looked at once (the batch path's migration)
        self.source = b""                       # the input decided last for the customer: its source, offset,
        self.offset = -1                        # and whether it was an event (else timers)
        self.event = False


class Overlay:
    """States written by batches not yet in RocksDB (customer key -> (batch sequence, value)); later
    batches read them first, so deciding never waits for Kafka's acknowledgements."""

    def __init__(self) -> None:
        self.values: dict[bytes, tuple[int, bytes | None]] = {}

    def settled(self, seq: int, changes: list[Change]) -> None:
        """Batch ``seq``'s changes are in RocksDB: drop them here, unless a later batch wrote the key again."""
        values = self.values
        for change in changes:
            if values.get(change.key, (None,))[0] == seq:
                del values[change.key]


class Transaction:
    """The customer states of one batch."""

    __slots__ = ("stores", "overlay", "seq", "entries", "oversized")

    def __init__(self, stores: Stores, overlay: Overlay, seq: int) -> None:
        self.stores, self.overlay, self.seq = stores, overlay, seq
        self.entries: dict[bytes, Entry] = {}
        # Customers whose new state :meth:`changes` did not write: (key, entry, its size in bytes).
        self.oversized: list[tuple[bytes, Entry, int]] = []

    def entry(self, key: bytes, partition: int) -> Entry:
        """The customer's state: as this batch left it, else as the overlay or RocksDB has it."""
        entry = self.entries.get(key)
        if entry is None:
            pending = self.overlay.values.get(key)
            if pending is None:
                # ``stores.get(partition).get(key)`` without its two interpreted calls
                store = self.stores.open.get(partition)
                if store is None:
                    store = self.stores.get(partition)
                raw = store.db.get(STATE + key)
            else:
                raw = pending[1]
            entry = (Entry(partition, raw[:DUE_LEN], decode_stored(memoryview(raw)[DUE_LEN:])) if raw is not None
                     else Entry(partition, None, None))
            self.entries[key] = entry
        return entry

    @staticmethod
    def update(entry: Entry, new: CustomerState | None, *, tick: bool, outputs: bool, old_due: int | None) -> None:
        """The state a decision left (``None``: delete the customer), and whether it is a change (the
        rules of the module docstring; ``old_due`` is the state's next timer before a wake-up, which
        only a wake-up needs)."""
        if new is None:
            entry.dirty = entry.dirty or entry.old_due is not None or entry.state is not None
            entry.state = None
        else:
            if outputs or entry.state is None or not tick or next_due_ms(new) != old_due:
                entry.dirty = True
            entry.state = new

    def discard(self, key: bytes) -> None:
        """Forget what this batch did to a customer that it had not changed before (a decision that
        raised half-way): the stored state stands. A changed customer keeps its changes."""
        entry = self.entries.get(key)
        if entry is not None and not entry.dirty:
            del self.entries[key]

    def changes(self, collector: Collector, changelog: str) -> dict[int, list[Change]]:
        """The batch's changes by partition: each queued to the changelog (after the outputs already
        queued) and put in the overlay. A state larger than ``STATE_RECORD_MAX_BYTES`` is not written
        (it would not fit a changelog record): the customer keeps the state it had before the batch,
        and the key is in :attr:`oversized` for the batch path to report."""
        changes: dict[int, list[Change]] = {}
        overlay, seq = self.overlay.values, self.seq
        for key, e in self.entries.items():
            if not e.dirty:
                continue
            new = None if e.state is None else encode_value(e.state)
            if new is not None and len(new) > DUE_LEN + STATE_RECORD_MAX_BYTES:
                self.oversized.append((key, e, len(new) - DUE_LEN))
                continue
            changes.setdefault(e.partition, []).append(Change(key, e.old_due, new))
            overlay[key] = (seq, new)
            collector.send(changelog, STATE + key, new, e.partition, via=e.partition)
        return changes
