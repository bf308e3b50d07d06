"""Inbound events (docs/events.md#the-event): the types they are decoded into, the dead letter, and
the internal encoding.

Validation itself, :func:`~orchestrator.core.validation.parse_event`, is in
:mod:`orchestrator.core.validation`, which is compiled with the hot path (orchestrator/compiled.py):
this module defines msgspec Structs, which stay plain Python.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

import msgspec

from orchestrator.core.timeutil import format_ts
from orchestrator.core.vocabulary import WORKER_DEAD_LETTERS

FUTURE_TOLERANCE_MS: Final = 5 * 60_000
MAX_TS_MS: Final = 253_402_300_799_999     # 9999-12-31T23:59:59.999Z, the last RFC 3339 instant
# An integer ts below 10^11 is refused (docs/events.md#timestamps). As milliseconds it is before 1973-03-03; as
# seconds it is any time until the year 5138, so it is far more likely seconds than a 1970s date.
MIN_INT_TS_MS: Final = 10**11
# What a value kept in a customer's state or sent in an output can be (docs/events.md#values): an integer
# from -2^63 to 2^64 - 1 (what msgpack, the state's format, and the output JSON encoder carry) and at most
# MAX_VALUE_DEPTH objects and lists deep. A profile.updated carrying another is refused; an expression
# whose result is another gives null.
MIN_VALUE_INT: Final = -(2**63)
MAX_VALUE_INT: Final = 2**64 - 1
MAX_VALUE_DEPTH: Final = 32
FEEDBACK_TYPES = frozenset({
    "message.delivered", "message.opened", "message.clicked",
    "message.bounced", "message.unsubscribed", "message.failed",
})
PROFILE_UPDATED: Final = "profile.updated"
PROFILE_ERASED: Final = "profile.erased"
_TYPE_PATTERN = r"^[a-z0-9_.-]+$"                    # the wire's check (its length is checked apart)
EVENT_TYPE = re.compile(r"^[a-z0-9_.-]{1,64}$")       # an event type whole: what journeys and expressions accept

DEAD_LETTER_REASONS = WORKER_DEAD_LETTERS     # what the worker writes (docs/events.md#dead-letters)


class _WireFast(msgspec.Struct, forbid_unknown_fields=False):
    """The JSON an event producer sends, without the pattern of ``type`` (msgspec checks a pattern
    with ``re.search`` on every value: 0.4 µs an event); ``validation.parse_event`` checks each type once."""

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
