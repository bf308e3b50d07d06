"""Inbound events (docs/events.md#the-event): validation, normalisation and dead-letter reasons.

:func:`parse_event` never raises. It returns either an :class:`Event` (with the
timestamp normalised to epoch ms) or a :class:`Rejection` whose ``reason`` is one
of the dead-letter reasons of docs/events.md#dead-letters.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

from orchestrator.core.timeutil import format_ts, parse_ts_ms
from orchestrator.core.vocabulary import WORKER_DEAD_LETTERS, DeadLetter

FUTURE_TOLERANCE_MS = 5 * 60_000
MAX_TS_MS = 253_402_300_799_999     # 9999-12-31T23:59:59.999Z, the last RFC 3339 instant
# An integer ts below 10^11 is refused (docs/events.md#timestamps). As milliseconds it is before 1973-03-03; as
# seconds it is any time until the year 5138, so it is far more likely seconds than a 1970s date.
MIN_INT_TS_MS = 10**11
FEEDBACK_TYPES = frozenset({
    "message.delivered", "message.opened", "message.clicked",
    "message.bounced", "message.unsubscribed", "message.failed",
})
PROFILE_UPDATED = "profile.updated"
PROFILE_ERASED = "profile.erased"
_TYPE_PATTERN = r"^[a-z0-9_.-]+$"                    # the wire's check (its length is checked apart)
EVENT_TYPE = re.compile(r"^[a-z0-9_.-]{1,64}$")       # an event type whole: what journeys and expressions accept

DEAD_LETTER_REASONS = WORKER_DEAD_LETTERS     # what the worker writes (docs/events.md#dead-letters)


class _WireFast(msgspec.Struct, forbid_unknown_fields=False):
    """The JSON an event producer sends, without the pattern of ``type`` (msgspec checks a pattern
    with ``re.search`` on every value: 0.4 µs an event); :func:`parse_event` checks each type once."""

    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    customer_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    ts: str | int
    properties: dict[str, Any] | None = None
    account_id: str | None = None


class _Wire(_WireFast):
    """The JSON an event producer sends, every check included: what refuses an event, with its message."""

    type: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=_TYPE_PATTERN)]


class Event(msgspec.Struct, frozen=True, gc=False):
    """A validated event, as the engine sees it."""

    event_id: str
    customer_id: str
    type: str
    ts_ms: int
    properties: dict[str, Any] = {}
    account_id: str | None = None


class Rejection(msgspec.Struct, frozen=True):
    reason: str
    detail: str


_decoder = msgspec.json.Decoder(_Wire)
_fast_decoder = msgspec.json.Decoder(_WireFast)
_type_ok = re.compile(_TYPE_PATTERN).search         # as msgspec checks the pattern
_TYPES_KNOWN_MAX = 4096
_types_known: set[str] = set()                      # event types that matched the pattern


def _decode(raw: bytes) -> _Wire | _WireFast:
    """The event's JSON, checked as :class:`_Wire` checks it. Whatever the fast decoder refuses (and a
    type that does not match the pattern) is decoded again by ``_Wire``'s decoder, so the error is the
    one it raises."""
    try:
        wire = _fast_decoder.decode(raw)
    except msgspec.DecodeError:
        return _decoder.decode(raw)
    if wire.type not in _types_known:
        if _type_ok(wire.type) is None:
            return _decoder.decode(raw)
        if len(_types_known) < _TYPES_KNOWN_MAX:
            _types_known.add(wire.type)
    return wire


def _show_ts(ms: int) -> str:
    return format_ts(ms) if 0 <= ms <= MAX_TS_MS else f"{ms} ms"


def parse_event(raw: bytes, *, max_bytes: int, now_ms: int, channels: tuple[str, ...] | None = None) -> Event | Rejection:
    """Validate one Kafka message value. Never raises."""
    if raw is None:
        return Rejection(DeadLetter.INVALID_JSON, "empty message (null value)")
    if len(raw) > max_bytes:
        return Rejection(DeadLetter.TOO_LARGE, f"event is {len(raw)} bytes; the limit (ORCH_MAX_EVENT_BYTES) is {max_bytes}")
    try:
        wire = _decode(raw)
    except msgspec.ValidationError as exc:
        return Rejection(DeadLetter.INVALID_SCHEMA, str(exc))
    except msgspec.DecodeError as exc:
        return Rejection(DeadLetter.INVALID_JSON, str(exc))
    ts_ms = parse_ts_ms(wire.ts)
    if isinstance(wire.ts, int) and 0 <= wire.ts < MIN_INT_TS_MS:
        return Rejection(DeadLetter.INVALID_SCHEMA, f"ts {wire.ts} looks like seconds since the epoch; send integer epoch "
                         "milliseconds or an RFC 3339 string - at `$.ts`")
    if ts_ms is None or ts_ms < 0:
        return Rejection(DeadLetter.INVALID_SCHEMA, f"ts must be an RFC 3339 string or integer epoch milliseconds, got {wire.ts!r} - at `$.ts`")
    if ts_ms > now_ms + FUTURE_TOLERANCE_MS:
        return Rejection(DeadLetter.FUTURE_TIMESTAMP, f"ts {_show_ts(ts_ms)} is more than 5 minutes ahead of {_show_ts(now_ms)}")
    if ts_ms > MAX_TS_MS:  # only reachable with a far-future clock (simulate); not representable downstream
        return Rejection(DeadLetter.INVALID_SCHEMA, f"ts {wire.ts!r} is after 9999-12-31T23:59:59.999Z - at `$.ts`")
    props = wire.properties if wire.properties is not None else {}
    if wire.type in FEEDBACK_TYPES:
        action_id = props.get("action_id")
        channel = props.get("channel")
        if not isinstance(action_id, str) or not action_id:
            return Rejection(DeadLetter.INVALID_FEEDBACK, f"{wire.type} needs properties.action_id (a string)")
        if not isinstance(channel, str) or not channel:
            return Rejection(DeadLetter.INVALID_FEEDBACK, f"{wire.type} needs properties.channel (a string)")
        if channels is not None and channel not in channels:
            return Rejection(DeadLetter.INVALID_FEEDBACK, f"{wire.type}: unknown channel {channel!r}")
    elif wire.type.startswith("message."):
        return Rejection(DeadLetter.INVALID_SCHEMA, f"unknown feedback type {wire.type!r} (expected one of: "
                         + ", ".join(sorted(FEEDBACK_TYPES)) + ")")
    if wire.type == PROFILE_UPDATED and wire.properties is None:
        return Rejection(DeadLetter.INVALID_SCHEMA, "profile.updated needs properties (an object) - at `$.properties`")
    return Event(wire.event_id, wire.customer_id, wire.type, ts_ms, props, wire.account_id)


_event_encoder = msgspec.msgpack.Encoder()
_event_decoder = msgspec.msgpack.Decoder(Event)


def encode_event(event: Event) -> bytes:
    """Compact internal encoding (the re-keyed topic between the worker's two stages)."""
    return _event_encoder.encode(event)


def decode_event(data: bytes) -> Event:
    return _event_decoder.decode(data)


def dead_letter(rejection: Rejection, *, topic: str, partition: int | None, offset: int | None,
                raw: bytes | None, now_ms: int, max_raw_bytes: int = 4096) -> dict[str, Any]:
    """The dead letter JSON (docs/events.md#dead-letters). ``raw`` is cut to ``max_raw_bytes`` (a 1 MB
    event stays out)."""
    data = raw or b""
    text = data[:max_raw_bytes].decode("utf-8", errors="replace")
    detail = rejection.detail
    if len(data) > max_raw_bytes:
        detail += f" (raw cut to the first {max_raw_bytes} of {len(data)} bytes)"
    return {"reason": rejection.reason, "detail": detail, "topic": topic, "partition": partition,
            "offset": offset, "raw": text, "ts": format_ts(now_ms)}


class EventTypes(tuple[str, ...]):
    """Event types where a definition accepts one or a list: any of them matches (docs/journeys.md#event-types).

    Its text is the types joined by commas (``cart.updated,checkout.started``), as listings show it.
    """

    def __str__(self) -> str:
        return ",".join(self)
