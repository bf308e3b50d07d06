"""The adapter's durable memory: what it did with each id, in one RocksDB (rocksdict).

Keys (one database per adapter process, under ``--data-dir``; nothing in it depends on the
consumer group, so any group an adapter runs in sees what was delivered before):

==============================  ===================================================================
``a`` + action id               what happened to the action (layout below)
``s`` + suppression id          the same, for a suppression passed on to ``--suppressions-url``
``x`` + action id               8-byte ms: a suppression cancelled this action
``t`` + 8-byte ms + kind + id   empty: the expiry index (kind ``a``, ``s`` or ``x``), in time order
``p`` + 4-byte partition        8-byte next offset of ``<prefix>.suppressions`` read for cancels
==============================  ===================================================================

An ``a``/``s`` value is ``first ms (8) + state (1) + outcome ms (8) + status (2) + detail``:

=====  ==========================================================================================
``I``  in flight: the first request went out and no answer is recorded. Found after a restart,
       the outcome is unknown: the request is sent again with the same ``Idempotency-Key``.
``D``  delivered (2xx); its feedback event is not yet acknowledged by Kafka
``d``  delivered, feedback acknowledged: done
``F``  failed (dead-lettered); the dead letter and feedback are not yet acknowledged
``f``  failed, dead letter and feedback acknowledged: done
``C``  dropped: a suppression cancelled it before it was delivered
=====  ==========================================================================================

Why the states: the adapter records an answer right after it arrives, before it writes anything
to Kafka, so that a crash afterwards never sends the request again; the pending states say which
Kafka records must still be (re-)sent, with the same content, when the action is read again.

Every id is kept for at least the de-duplication window after it was first recorded;
:meth:`DedupStore.prune` then deletes it (a later copy of that action would be delivered again).
Writes go to RocksDB's write-ahead log without an fsync: they survive the adapter being killed,
not the machine losing power (see docs/adapters.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch

from orchestrator.errors import ConfigError

ACTION = b"a"
SUPPRESSION = b"s"
CANCEL = b"x"
INDEX = b"t"
POSITION = b"p"

IN_FLIGHT = "I"
DELIVERED = "D"
DELIVERED_DONE = "d"
FAILED = "F"
FAILED_DONE = "f"
CANCELLED = "C"
STATES = frozenset({IN_FLIGHT, DELIVERED, DELIVERED_DONE, FAILED, FAILED_DONE, CANCELLED})
DONE = frozenset({DELIVERED_DONE, FAILED_DONE, CANCELLED})

_MS = 8
WRITE_BUFFER = 4 * 1024 * 1024
CACHE = 16 * 1024 * 1024


@dataclass(frozen=True)
class Mark:
    """What the store knows about one id."""

    state: str
    first_ms: int                 # when it was first recorded (the window counts from here)
    outcome_ms: int               # when the answer came (0 while in flight)
    status: int | None = None     # the HTTP status of the final answer, if there was one
    detail: str = ""              # why it failed (the dead letter's ``detail``)


def _encode(mark: Mark) -> bytes:
    return (mark.first_ms.to_bytes(_MS, "big") + mark.state.encode() + mark.outcome_ms.to_bytes(_MS, "big")
            + (mark.status or 0).to_bytes(2, "big") + mark.detail.encode())


def _decode(raw: bytes) -> Mark:
    status = int.from_bytes(raw[17:19], "big")
    return Mark(chr(raw[8]), int.from_bytes(raw[:8], "big"), int.from_bytes(raw[9:17], "big"),
                status or None, raw[19:].decode(errors="replace"))


def _options() -> Options:
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.set_write_buffer_size(WRITE_BUFFER)
    opts.set_max_write_buffer_number(2)
    table = BlockBasedOptions()
    table.set_block_cache(Cache(CACHE))
    table.set_bloom_filter(10, False)
    opts.set_block_based_table_factory(table)
    return opts


class DedupStore:
    """Outcomes per action and suppression id, cancelled action ids, and the cancel reader's
    positions, kept for ``window_ms``."""

    def __init__(self, path: Path | str, window_ms: int) -> None:
        self.path = Path(path)
        self.window_ms = window_ms
        self.path.parent.mkdir(parents=True, exist_ok=True)
        opts = _options()
        try:
            # Pass the options for the default column family on reopen too: without it RocksDB
            # silently falls back to its defaults (see FIELD-NOTES, rocksdict reopen trap).
            self.db = Rdict(str(self.path), options=opts,
                            column_families={"default": opts} if self.path.exists() else None)
        except Exception as exc:  # rocksdict raises a bare Exception
            if "lock" in str(exc).lower():
                raise ConfigError(f"the data dir {self.path} is in use by another adapter process; give each "
                                  "adapter process its own --data-dir") from None
            raise ConfigError(f"cannot open the adapter's store in {self.path} ({exc}); check the --data-dir "
                              "folder and its permissions") from None

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ outcomes
    def get(self, kind: bytes, ident: str) -> Mark | None:
        raw = self.db.get(kind + ident.encode())
        return None if raw is None else _decode(raw)

    def put(self, kind: bytes, ident: str, state: str, now_ms: int, *, status: int | None = None,
            detail: str = "") -> Mark:
        """Record ``state`` for ``ident``. The first record of an id starts its window (and gets an
        expiry index entry); later ones keep that start."""
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        key = kind + ident.encode()
        old = self.db.get(key)
        first_ms = now_ms if old is None else int.from_bytes(old[:_MS], "big")
        outcome_ms = 0 if state == IN_FLIGHT else now_ms
        if old is not None and state in (DELIVERED_DONE, FAILED_DONE):
            prev = _decode(old)           # done: the answer's time and status stay as recorded
            outcome_ms, status, detail = prev.outcome_ms, prev.status, ""
        mark = Mark(state, first_ms, outcome_ms, status, detail)
        if old is None:
            wb = WriteBatch(raw_mode=True)
            wb.put(key, _encode(mark))
            wb.put(INDEX + first_ms.to_bytes(_MS, "big") + key, b"")
            self.db.write(wb)
        else:
            self.db.put(key, _encode(mark))
        return mark

    # ------------------------------------------------------------------ cancels
    def cancelled(self, action_id: str) -> bool:
        return self.db.get(CANCEL + action_id.encode()) is not None

    def add_cancels(self, action_ids: Iterable[str], now_ms: int, positions: dict[int, int]) -> int:
        """Remember cancelled action ids and, in the same atomic write, how far the suppressions
        topic was read (partition -> next offset). Returns how many ids were new."""
        wb = WriteBatch(raw_mode=True)
        stamp = now_ms.to_bytes(_MS, "big")
        new = 0
        seen: set[bytes] = set()
        for action_id in action_ids:
            key = CANCEL + action_id.encode()
            if key in seen or self.db.get(key) is not None:
                continue                  # the first cancel starts the window
            seen.add(key)
            wb.put(key, stamp)
            wb.put(INDEX + stamp + key, b"")
            new += 1
        for partition, offset in positions.items():
            wb.put(POSITION + partition.to_bytes(4, "big"), offset.to_bytes(_MS, "big"))
        self.db.write(wb)
        return new

    def positions(self) -> dict[int, int]:
        """Next offset to read per partition of the suppressions topic, as last stored."""
        out: dict[int, int] = {}
        it = self.db.iter()
        it.seek(POSITION)
        while it.valid() and it.key()[:1] == POSITION:
            out[int.from_bytes(it.key()[1:], "big")] = int.from_bytes(it.value(), "big")
            it.next()
        del it
        return out

    def forget_positions(self) -> None:
        """Drop the stored positions (the suppressions topic was recreated: its offsets restarted)."""
        for partition in self.positions():
            self.db.delete(POSITION + partition.to_bytes(4, "big"))

    # ------------------------------------------------------------------ expiry
    def prune(self, now_ms: int, limit: int = 10_000) -> int:
        """Delete up to ``limit`` ids first recorded more than the window ago. Returns how many
        were deleted (call again while it returns ``limit``)."""
        cutoff = INDEX + max(0, now_ms - self.window_ms).to_bytes(_MS, "big")
        wb = WriteBatch(raw_mode=True)
        deleted = 0
        it = self.db.iter()
        it.seek(INDEX)
        while it.valid() and deleted < limit:
            index_key = it.key()
            if index_key[:1] != INDEX or index_key >= cutoff:
                break
            stamp, key = index_key[1:1 + _MS], index_key[1 + _MS:]
            value = self.db.get(key)
            if value is not None and value[:_MS] == stamp:   # not re-recorded since
                wb.delete(key)
            wb.delete(index_key)
            deleted += 1
            it.next()
        del it
        if deleted:
            self.db.write(wb)
        return deleted


def adopt_old_store(old_root: Path, path: Path, prefix: str) -> Path | None:
    """Make ``path`` (the default data dir of topic prefix ``prefix``) the store an earlier version
    kept under ``old_root``, one per consumer group (``old_root/<group>``), so that nothing it
    recorded is delivered again. Returns the store moved, or ``None``.

    Nothing happens when ``path`` exists already, or when no store lies under ``old_root`` other
    than the default groups' of other prefixes (``<other>-adapter-webhook-...``). One store is moved
    to ``path`` (checked not in use first). Several: raises :class:`ConfigError`, since using one
    would forget what the others recorded.
    """
    if path.exists() or not old_root.is_dir():
        return None
    mine = f"{prefix}-adapter-webhook-"
    found = sorted(d for d in old_root.iterdir()
                   if (d / "CURRENT").is_file() and (d.name.startswith(mine) or "-adapter-webhook-" not in d.name))
    if not found:
        return None
    if len(found) > 1:
        raise ConfigError(f"{old_root} holds {len(found)} stores of an earlier adapter version, one per consumer "
                          f"group ({', '.join(d.name for d in found)}), and this version keeps one per topic prefix, "
                          f"so it cannot tell which to take over: move the one this adapter used to {path} or pass "
                          "it as --data-dir (the deliveries recorded in the others stay unknown to it)")
    old = found[0]
    DedupStore(old, 0).close()        # raises, in one sentence, if a running adapter holds it
    path.parent.mkdir(parents=True, exist_ok=True)
    old.rename(path)
    return old
