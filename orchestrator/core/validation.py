"""Validation of inbound events (docs/events.md#the-event): :func:`parse_event` never raises. It
returns either an :class:`~orchestrator.core.events.Event` (with the timestamp normalised to epoch ms)
or a :class:`~orchestrator.core.events.Rejection` whose ``reason`` is one of the dead-letter reasons of
docs/events.md#dead-letters.

Apart from :mod:`orchestrator.core.events`, which defines the msgspec types it decodes into (they stay
plain Python), because this module runs once per event and is compiled with the hot path
(orchestrator/compiled.py).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from orchestrator.core.events import (_TYPE_PATTERN, FEEDBACK_TYPES, FUTURE_TOLERANCE_MS, MAX_TS_MS, MAX_VALUE_DEPTH,
                                      MAX_VALUE_INT, MIN_INT_TS_MS, MIN_VALUE_INT, PROFILE_UPDATED, Event, Rejection,
                                      _Wire, _WireFast)
from orchestrator.core.timeutil import format_ts, parse_ts_ms
from orchestrator.core.vocabulary import DeadLetter

_decoder = msgspec.json.Decoder(_Wire)
_fast_decoder = msgspec.json.Decoder(_WireFast)
_type_ok = re.compile(_TYPE_PATTERN).search         # as msgspec checks the pattern
_TYPES_KNOWN_MAX = 4096
_types_known: set[str] = set()                      # event types that matched the pattern


def _decode(raw: bytes) -> _WireFast:
    """The event's JSON, checked as :class:`_Wire` checks it. Whatever the fast decoder refuses (and a
    type that does not match the pattern) is decoded again by ``_Wire``'s decoder, so the error is the
    one it raises."""
    try:
        wire = _fast_decoder.decode(raw)
    except msgspec.DecodeError:
        return _decoder.decode(raw)
    etype = wire.type
    if etype not in _types_known:
        if _type_ok(etype) is None:
            return _decoder.decode(raw)
        if len(_types_known) < _TYPES_KNOWN_MAX:
            _types_known.add(etype)
    return wire


def value_problem(value: Any, depth: int) -> str | None:
    """Why a decoded JSON value cannot be kept in a customer's state (docs/events.md#values), or ``None``."""
    t = type(value)
    if t is int:
        return None if MIN_VALUE_INT <= value <= MAX_VALUE_INT else "an integer outside -2^63 .. 2^64-1"
    if t is list or t is dict:
        if depth >= MAX_VALUE_DEPTH:
            return f"objects and lists nested more than {MAX_VALUE_DEPTH} deep"
        for item in (value.values() if t is dict else value):
            problem = value_problem(item, depth + 1)
            if problem is not None:
                return problem
    return None


def _show_ts(ms: int) -> str:
    return format_ts(ms) if 0 <= ms <= MAX_TS_MS else f"{ms} ms"


def parse_event(raw: bytes | None, *, max_bytes: int, now_ms: int,
                channels: tuple[str, ...] | None = None) -> Event | Rejection:
    """Validate one Kafka message value (``None``: a record without one). Never raises."""
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
    except UnicodeDecodeError:
        return Rejection(DeadLetter.INVALID_JSON, "not UTF-8: a string holds bytes that are not valid UTF-8")
    except RecursionError:
        return Rejection(DeadLetter.INVALID_JSON, "objects and lists nested too deeply to decode")
    ts, etype, properties = wire.ts, wire.type, wire.properties    # each read once (generic lookups)
    ts_ms = parse_ts_ms(ts)
    if isinstance(ts, int) and 0 <= ts < MIN_INT_TS_MS:
        return Rejection(DeadLetter.INVALID_SCHEMA, f"ts {ts} looks like seconds since the epoch; send integer epoch "
                         "milliseconds or an RFC 3339 string - at `$.ts`")
    if ts_ms is None or ts_ms < 0:
        return Rejection(DeadLetter.INVALID_SCHEMA, f"ts must be an RFC 3339 string or integer epoch milliseconds, got {ts!r} - at `$.ts`")
    if ts_ms > MAX_TS_MS:  # not representable downstream
        return Rejection(DeadLetter.INVALID_SCHEMA, f"ts {ts!r} is after 9999-12-31T23:59:59.999Z - at `$.ts`")
    if ts_ms > now_ms + FUTURE_TOLERANCE_MS:
        return Rejection(DeadLetter.FUTURE_TIMESTAMP, f"ts {_show_ts(ts_ms)} is more than 5 minutes ahead of {_show_ts(now_ms)}")
    props = properties if properties is not None else {}
    if etype in FEEDBACK_TYPES:
        action_id = props.get("action_id")
        channel = props.get("channel")
        if not isinstance(action_id, str) or not action_id:
            return Rejection(DeadLetter.INVALID_FEEDBACK, f"{etype} needs properties.action_id (a string)")
        if not isinstance(channel, str) or not channel:
            return Rejection(DeadLetter.INVALID_FEEDBACK, f"{etype} needs properties.channel (a string)")
        if channels is not None and channel not in channels:
            return Rejection(DeadLetter.INVALID_FEEDBACK, f"{etype}: unknown channel {channel!r}")
    elif etype.startswith("message."):
        return Rejection(DeadLetter.INVALID_SCHEMA, f"unknown feedback type {etype!r} (expected one of: "
                         + ", ".join(sorted(FEEDBACK_TYPES)) + ")")
    if etype == PROFILE_UPDATED:
        if properties is None:
            return Rejection(DeadLetter.INVALID_SCHEMA, "profile.updated needs properties (an object) - at `$.properties`")
        for key, value in properties.items():
            problem = value_problem(value, 0)
            if problem is not None:
                return Rejection(DeadLetter.INVALID_SCHEMA, f"{problem}: a profile cannot keep it - at "
                                 f"`$.properties.{key}`")
    return Event(wire.event_id, wire.customer_id, etype, ts_ms, props, wire.account_id)
