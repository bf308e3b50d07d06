"""Per-customer state: one record per customer, encoded with msgpack.

Everything the engine knows about a customer lives here, so a customer's
decisions need exactly one state read and one state write; the duplicate window
is kept apart (:mod:`orchestrator.core.dedup`), so a state holds what journeys
need and does not grow with the events a customer sends. New fields must have
defaults, so older records keep decoding.

The state structs are plain data that never refer back to their holders, so they
are not tracked by the cyclic garbage collector (``gc=False``): a batch keeps
thousands of decoded states alive, and the collector's passes only walked them.
Reference counting frees them as before. Never store a state object inside itself.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import msgspec

from orchestrator.core.dedup import event_hash

ENGAGEMENT_WINDOW_MS = 30 * 86_400_000
ENGAGEMENT_MAX_STAMPS = 256
ACTIVITY_MAX_TYPES = 128
SESSION_GAP_MS = 30 * 60_000
ACTION_REFS_MAX = 256
DAY_MS = 86_400_000
# A state is one changelog record (docs/events.md#limits). A profile update is refused if it would make the
# encoded profile larger than PROFILE_MAX_BYTES (and not smaller than it was); a state larger than
# STATE_RECORD_MAX_BYTES, grown by other means, is never written: it would not fit a record of Kafka's
# default message size (1,048,588 bytes, key and framing included).
PROFILE_MAX_BYTES = 512 * 1024
STATE_RECORD_MAX_BYTES = 1_000_000


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


class CustomerState(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    profile: dict[str, Any] = {}
    # Written before the duplicate window moved out of the state (orchestrator.core.dedup): event ids
    # as 8-byte hashes with the seconds they were processed at, or (older still) as a dict. Read only,
    # by the worker, which moves them to the window (see :func:`legacy_seen`); never written again.
    seen_ids: bytes = b""
    seen_at: bytes = b""
    seen: dict[str, int] = {}
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
    # Set only on the tombstone an erasure left before the duplicate window moved out of the state;
    # the worker deletes such a state when it reads it (see :func:`legacy_seen`).
    erased_ms: int | None = None
    # The customer's time: the latest event time or timer due decided for it (a late event is
    # decided at it, so the customer's time never goes back; see ``engine.event_time``).
    time_ms: int = 0

    def next_due_ms(self) -> int | None:
        """The earliest timer of any instance, or ``None`` (:func:`orchestrator.core.engine.next_due_ms`)."""
        from orchestrator.core.engine import next_due_ms     # compiled; it imports this module
        return next_due_ms(self)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(CustomerState)


# The encoder's own method, so a compiled caller calls it without an interpreted frame.
encode_state: Callable[[CustomerState], bytes] = _encoder.encode
encode_any: Callable[[Any], bytes] = _encoder.encode        # the same msgpack, for a part of a state


def decode_state(data: bytes | memoryview | None) -> CustomerState:
    return CustomerState() if not data else _decoder.decode(data)


# The decoder's own method, for a stored state (never empty), so a compiled caller decodes it without
# an interpreted frame.
decode_stored: Callable[[bytes | memoryview], CustomerState] = _decoder.decode


def legacy_seen(state: CustomerState) -> list[tuple[bytes, int]]:
    """The duplicate window a state written before it moved out still holds: (8-byte hash of the event
    id, ms it was processed) pairs; ``state`` keeps none of them afterwards."""
    pairs = [(bytes(state.seen_ids[i * 8:(i + 1) * 8]), t * 1000)
             for i, (t,) in enumerate(struct.iter_unpack("<I", state.seen_at))]
    pairs += [(event_hash(event_id), ms) for event_id, ms in state.seen.items()]
    state.seen_ids, state.seen_at, state.seen = b"", b"", {}
    return pairs
