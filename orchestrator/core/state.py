"""Per-customer state: one record per customer, encoded with msgpack.

Everything the engine knows about a customer lives here, so a customer's
decisions need exactly one state read and one state write. New fields must have
defaults, so older records keep decoding.
"""

from __future__ import annotations

from typing import Any

import msgspec

DEDUP_WINDOW_MS = 25 * 3_600_000      # SPEC: duplicates ignored within at least 24 h
DEDUP_MAX_IDS = 20_000
ENGAGEMENT_WINDOW_MS = 30 * 86_400_000
ENGAGEMENT_MAX_STAMPS = 256
ACTIVITY_MAX_TYPES = 128
SESSION_GAP_MS = 30 * 60_000
ACTION_REFS_MAX = 256
DAY_MS = 86_400_000


class Instance(msgspec.Struct, kw_only=True):
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


class ActionRef(msgspec.Struct, array_like=True):
    journey: str
    instance_id: str
    channel: str
    ts_ms: int


class Engagement(msgspec.Struct, kw_only=True):
    sent: list[int] = []
    opened: list[int] = []
    clicked: list[int] = []
    last_opened_ms: int | None = None


class Activity(msgspec.Struct, kw_only=True):
    days: dict[int, int] = {}         # day number (epoch days) -> count
    last_ms: int = 0


class Session(msgspec.Struct, kw_only=True):
    started_ms: int = 0
    last_ms: int = 0
    event_count: int = 0
    categories: list[str] = []


class Outbox(msgspec.Struct, array_like=True):
    """Outputs of one recent input message, kept until its offset is surely committed.

    If the worker dies after the state write but before the outputs were
    acknowledged, the message is replayed; finding its coordinates here, the
    worker re-sends these exact outputs (same ids) instead of deciding again.
    """

    at_ms: int
    outputs: list[tuple[str, str, bytes]]   # (topic suffix, key, JSON value)


OUTBOX_KEEP_MS = 10 * 60_000
OUTBOX_MAX = 64
# A tombstone lives as long as the event ids it remembers can still be duplicated.
TOMBSTONE_KEEP_MS = DEDUP_WINDOW_MS


class CustomerState(msgspec.Struct, kw_only=True):
    profile: dict[str, Any] = {}
    seen: dict[str, int] = {}                     # event_id -> processed at (ms)
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
    outbox: dict[str, Outbox] = {}                # "partition:offset" of an input -> its outputs
    # Set only on the tombstone an erasure leaves (see :func:`tombstone`); a new event clears it.
    erased_ms: int | None = None

    def next_due_ms(self) -> int | None:
        """The earliest timer of any instance, or ``None``; a tombstone's own timers (see :func:`tombstone`)."""
        due = None
        if self.erased_ms is not None:
            due = self.erased_ms + (OUTBOX_KEEP_MS if self.outbox else TOMBSTONE_KEEP_MS)
        for inst in self.instances.values():
            for t in (inst.due_ms, inst.deadline_ms):
                if t is not None and (due is None or t < due):
                    due = t
        return due


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(CustomerState)


def encode_state(state: CustomerState) -> bytes:
    return _encoder.encode(state)


def decode_state(data: bytes | None) -> CustomerState:
    return CustomerState() if not data else _decoder.decode(data)


def tombstone(state: CustomerState, now_ms: int) -> CustomerState:
    """What an erasure leaves of ``state``: the event ids still inside the duplicate window.

    Nothing personal survives (no profile, journeys, sends, engagement, activity or session):
    an event id and the time it was processed are all that is kept, so that a redelivered
    earlier event is still ignored (SPEC §2). The worker adds the erasure's own outputs to the
    outbox, so a replayed erasure re-sends them instead of deciding again. Two due times (so the
    worker's timer index wakes it): ``erased_ms + OUTBOX_KEEP_MS`` drops that outbox entry (the
    erasure is committed long before), ``erased_ms + TOMBSTONE_KEEP_MS`` removes the tombstone,
    when every id it keeps has left the window. A genuinely new event before that starts from
    it (see ``Engine.on_event``).
    """
    cutoff = now_ms - DEDUP_WINDOW_MS
    seen = {k: t for k, t in state.seen.items() if t >= cutoff}
    return CustomerState(seen=seen, erased_ms=now_ms)


def remember_event(state: CustomerState, event_id: str, now_ms: int) -> bool:
    """Record ``event_id``; ``False`` if it was already seen (a duplicate)."""
    seen = state.seen
    if event_id in seen:
        return False
    seen[event_id] = now_ms
    if len(seen) > 64 and len(seen) % 64 == 0:   # amortised pruning
        cutoff = now_ms - DEDUP_WINDOW_MS
        for key in [k for k, t in seen.items() if t < cutoff]:
            del seen[key]
        while len(seen) > DEDUP_MAX_IDS:
            del seen[next(iter(seen))]
    return True


def remember_outputs(state: CustomerState, coord: str, now_ms: int,
                     outputs: list[tuple[str, str, bytes]]) -> None:
    """Keep ``outputs`` of the input at ``coord`` (see :class:`Outbox`); drop old entries."""
    box = state.outbox
    if box:
        cutoff = now_ms - OUTBOX_KEEP_MS
        for key in [k for k, e in box.items() if e.at_ms < cutoff]:
            del box[key]
        while len(box) >= OUTBOX_MAX:
            del box[next(iter(box))]
    if outputs:
        box[coord] = Outbox(now_ms, outputs)


def prune_stamps(stamps: list[int], cutoff: int) -> list[int]:
    if stamps and stamps[0] < cutoff:
        stamps = [t for t in stamps if t >= cutoff]
    if len(stamps) > ENGAGEMENT_MAX_STAMPS:
        stamps = stamps[-ENGAGEMENT_MAX_STAMPS:]
    return stamps


def record_activity(state: CustomerState, event_type: str, ts_ms: int, properties: dict[str, Any]) -> None:
    act = state.activity.get(event_type)
    if act is None:
        if len(state.activity) >= ACTIVITY_MAX_TYPES:
            oldest = min(state.activity, key=lambda k: state.activity[k].last_ms)
            del state.activity[oldest]
        act = state.activity[event_type] = Activity()
    day = ts_ms // DAY_MS
    act.days[day] = act.days.get(day, 0) + 1
    if len(act.days) > 31:
        for d in [d for d in act.days if d < day - 30]:
            del act.days[d]
    act.last_ms = max(act.last_ms, ts_ms)
    s = state.session
    if s.event_count == 0 or ts_ms - s.last_ms >= SESSION_GAP_MS:
        s.started_ms, s.event_count, s.categories = ts_ms, 0, []
    s.last_ms = max(s.last_ms, ts_ms)
    s.event_count += 1
    category = properties.get("category") if properties else None
    if isinstance(category, str) and category not in s.categories and len(s.categories) < 32:
        s.categories.append(category[:64])


def engagement_for(state: CustomerState, channel: str) -> Engagement:
    eng = state.engagement.get(channel)
    if eng is None:
        eng = state.engagement[channel] = Engagement()
    return eng
