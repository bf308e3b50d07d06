"""Per-customer state: one record per customer, encoded with msgpack.

Everything the engine knows about a customer lives here, so a customer's
decisions need exactly one state read and one state write. New fields must have
defaults, so older records keep decoding.

The state structs are plain data that never refer back to their holders, so they
are not tracked by the cyclic garbage collector (``gc=False``): a batch keeps
thousands of decoded states alive, and the collector's passes only walked them.
Reference counting frees them as before. Never store a state object inside itself.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import msgspec

DEDUP_WINDOW_MS = 25 * 3_600_000      # duplicates ignored within at least 24 h (docs/events.md#duplicates-late-and-old-events)
DEDUP_MAX_IDS = 20_000
SEEN_HASH_LEN = 8
ENGAGEMENT_WINDOW_MS = 30 * 86_400_000
ENGAGEMENT_MAX_STAMPS = 256
ACTIVITY_MAX_TYPES = 128
SESSION_GAP_MS = 30 * 60_000
ACTION_REFS_MAX = 256
DAY_MS = 86_400_000


class Instance(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """One customer's active run through one journey version."""

    journey: str
    version: int
    instance_id: str                  # the entry event's id; part of every action_id
    node: str                         # where the instance is parked (a wait, wait_for or deferred send)
    entered_ms: int
    trigger_event_id: str
    trigger_ts_ms: int
    vars: dict[str, Any] = {}
    touches: int = 0
    visits: dict[str, int] = {}
    action_ids: list[str] = []
    channels: list[str] = []
    holdout: bool = False
    shadow: bool = False              # a shadow instance records decisions and sends nothing
    due_ms: int | None = None         # the timer of the current node, if any
    waiting_for: str | None = None    # event type a wait_for node waits for
    deferred: bool = False            # parked at a send that quiet hours or its window deferred
    deferred_action: str | None = None
    deferred_channel: str | None = None
    deferred_params: dict[str, Any] | None = None   # params as evaluated when first decided
    deadline_ms: int | None = None    # exit.max_duration


class ActionRef(msgspec.Struct, array_like=True, gc=False):
    journey: str
    instance_id: str
    channel: str
    ts_ms: int


class Engagement(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    sent: list[int] = []
    opened: list[int] = []
    clicked: list[int] = []
    last_opened_ms: int | None = None


class Activity(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    days: dict[int, int] = {}         # day number (epoch days) -> count
    last_ms: int = 0


class Session(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    started_ms: int = 0
    last_ms: int = 0
    event_count: int = 0
    categories: list[str] = []


# A tombstone lives as long as the event ids it remembers can still be duplicated.
TOMBSTONE_KEEP_MS = DEDUP_WINDOW_MS


class CustomerState(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    profile: dict[str, Any] = {}
    # Event ids processed in the duplicate window (see :func:`remember_event`): 8-byte hashes, and
    # beside them when each was processed (4-byte seconds). Compact and decoded as two byte strings.
    seen_ids: bytearray = msgspec.field(default_factory=bytearray)
    seen_at: bytearray = msgspec.field(default_factory=bytearray)
    seen: dict[str, int] = {}                     # the same, as states before 2026-12 kept it (read, migrated)
    instances: dict[str, Instance] = {}           # journey id -> active instance
    exits: dict[str, int] = {}                    # journey id -> last exit (ms), for re-entry
    # journey id -> entries, over all its versions, for entry.max_entries: one small number per
    # journey the customer ever entered (an erasure forgets it with everything else)
    entries: dict[str, int] = {}
    sends: list[tuple[int, str]] = []             # (ms, channel), for frequency caps
    actions: dict[str, ActionRef] = {}            # recent action_id -> where it came from
    engagement: dict[str, Engagement] = {}
    activity: dict[str, Activity] = {}
    session: Session = msgspec.field(default_factory=Session)
    # Set only on the tombstone an erasure leaves (see :func:`tombstone`); a new event clears it.
    erased_ms: int | None = None
    # The customer's time: the latest event time or timer due decided for it (a late event is
    # decided at it, so the customer's time never goes back; see ``engine.event_time``).
    time_ms: int = 0

    def next_due_ms(self) -> int | None:
        """The earliest timer of any instance, or ``None``; a tombstone's own timers (see :func:`tombstone`)."""
        due = None
        if self.erased_ms is not None:
            due = self.erased_ms + TOMBSTONE_KEEP_MS
        for inst in self.instances.values():
            for t in (inst.due_ms, inst.deadline_ms):
                if t is not None and (due is None or t < due):
                    due = t
        return due


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(CustomerState)


def encode_state(state: CustomerState) -> bytes:
    return _encoder.encode(state)


def decode_state(data: bytes | memoryview | None) -> CustomerState:
    return CustomerState() if not data else _decoder.decode(data)


def tombstone(state: CustomerState, now_ms: int) -> CustomerState:
    """What an erasure leaves of ``state``: the event ids still inside the duplicate window.

    Nothing personal survives (no profile, journeys, sends, engagement, activity or session):
    hashes of event ids and the times they were processed are all that is kept, so that a
    redelivered earlier event is still ignored (docs/events.md#reserved-types). A replayed erasure re-sends its first
    outputs from the worker's journal like any input (see :mod:`orchestrator.runtime.batch`). The
    tombstone's due time ``erased_ms + TOMBSTONE_KEEP_MS`` (the worker's timer index wakes it)
    removes it when every id it keeps has left the window. A genuinely new event before that
    starts from it (see ``Engine.on_event``).
    """
    _prune_seen(state, now_ms)
    return CustomerState(seen_ids=state.seen_ids, seen_at=state.seen_at, erased_ms=now_ms, time_ms=now_ms)


def _event_hash(event_id: str) -> bytes:
    return hashlib.blake2b(event_id.encode(), digest_size=SEEN_HASH_LEN).digest()


def remembered(state: CustomerState, event_id: str) -> bool:
    """Whether ``event_id`` was processed within the duplicate window (kept in ``state``)."""
    return _find(state, _event_hash(event_id))


def _find(state: CustomerState, h: bytes) -> bool:
    if state.seen:
        _migrate_seen(state)
    ids = state.seen_ids
    i = ids.find(h)
    while i != -1:
        if i % SEEN_HASH_LEN == 0:
            return True
        i = ids.find(h, i + 1)
    return False


def remembered_count(state: CustomerState) -> int:
    return len(state.seen_ids) // SEEN_HASH_LEN + len(state.seen)


def remember_event(state: CustomerState, event_id: str, now_ms: int) -> bool:
    """Record ``event_id``; ``False`` if it was already seen (a duplicate).

    Ids are kept as 64-bit hashes: two different ids of one customer collide with a chance of
    about n / 2^64 for n ids in the window (at most ``DEDUP_MAX_IDS``), far below one in 10^14.
    """
    h = _event_hash(event_id)
    if _find(state, h):
        return False
    state.seen_ids += h
    state.seen_at += (now_ms // 1000).to_bytes(4, "little")
    n = len(state.seen_ids) // SEEN_HASH_LEN
    if n > 64 and n % 64 == 0:                  # amortised pruning
        _prune_seen(state, now_ms)
    return True


def _prune_seen(state: CustomerState, now_ms: int) -> None:
    """Drop ids processed before the window, and the oldest beyond ``DEDUP_MAX_IDS``."""
    if state.seen:
        _migrate_seen(state)
    cutoff = (now_ms - DEDUP_WINDOW_MS) // 1000
    ids, at = state.seen_ids, state.seen_at
    keep = [i for i, (t,) in enumerate(struct.iter_unpack("<I", at)) if t >= cutoff][-DEDUP_MAX_IDS:]
    if len(keep) * SEEN_HASH_LEN != len(ids):
        state.seen_ids = bytearray(b"".join(ids[i * SEEN_HASH_LEN:(i + 1) * SEEN_HASH_LEN] for i in keep))
        state.seen_at = bytearray(b"".join(at[i * 4:(i + 1) * 4] for i in keep))


def _migrate_seen(state: CustomerState) -> None:
    """Move ids kept by an older state (``seen``: id -> ms) into the compact form."""
    old, state.seen = state.seen, {}
    for event_id, ms in old.items():
        state.seen_ids += _event_hash(event_id)
        state.seen_at += (ms // 1000).to_bytes(4, "little")


def prune_stamps(stamps: list[int], cutoff: int) -> list[int]:
    if stamps and stamps[0] < cutoff:
        stamps = [t for t in stamps if t >= cutoff]
    if len(stamps) > ENGAGEMENT_MAX_STAMPS:
        stamps = stamps[-ENGAGEMENT_MAX_STAMPS:]
    return stamps


def record_activity(state: CustomerState, event_type: str, ts_ms: int, properties: dict[str, Any]) -> None:
    activity = state.activity
    act = activity.get(event_type)
    if act is None:
        if len(activity) >= ACTIVITY_MAX_TYPES:
            oldest = min(activity, key=lambda k: activity[k].last_ms)
            del activity[oldest]
        act = activity[event_type] = Activity()
    day = ts_ms // DAY_MS
    days = act.days
    n = days.get(day)
    if n is None:
        days[day] = 1
        if len(days) > 31:
            for d in [d for d in days if d < day - 30]:
                del days[d]
    else:
        days[day] = n + 1
    if ts_ms > act.last_ms:
        act.last_ms = ts_ms
    s = state.session
    if s.event_count == 0 or ts_ms - s.last_ms >= SESSION_GAP_MS:
        s.started_ms, s.event_count, s.categories = ts_ms, 0, []
    if ts_ms > s.last_ms:
        s.last_ms = ts_ms
    s.event_count += 1
    if properties:
        category = properties.get("category")
        if isinstance(category, str) and category not in s.categories and len(s.categories) < 32:
            s.categories.append(category[:64])


def engagement_for(state: CustomerState, channel: str) -> Engagement:
    eng = state.engagement.get(channel)
    if eng is None:
        eng = state.engagement[channel] = Engagement()
    return eng
