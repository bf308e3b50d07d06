"""States written before the duplicate window moved out of them: their event ids, read once."""

from __future__ import annotations

import struct

import msgspec

from orchestrator.core import dedup
from orchestrator.core.state import CustomerState, decode_state, encode_state, legacy_seen

T0 = 1_764_000_000_000


class _CompactState(msgspec.Struct, kw_only=True):
    """A state as workers wrote it in 2026-12: 8-byte hashes of event ids and 4-byte seconds."""
    seen_ids: bytes = b""
    seen_at: bytes = b""
    profile: dict = {}


class _MapState(msgspec.Struct, kw_only=True):
    """A state as workers before that wrote it: event id -> ms."""
    seen: dict[str, int] = {}
    profile: dict = {}


def test_the_compact_form_gives_its_hashes_and_times_once() -> None:
    ids = dedup.event_hash("e-a") + dedup.event_hash("e-b")
    at = struct.pack("<II", T0 // 1000, T0 // 1000 + 5)
    s = decode_state(msgspec.msgpack.encode(_CompactState(seen_ids=ids, seen_at=at, profile={"plan": "pro"})))
    assert s.profile == {"plan": "pro"}
    assert legacy_seen(s) == [(dedup.event_hash("e-a"), T0), (dedup.event_hash("e-b"), T0 + 5000)]
    assert legacy_seen(s) == []
    assert decode_state(encode_state(s)).seen_ids == b""          # written again without them


def test_the_map_form_gives_its_ids_hashed() -> None:
    s = decode_state(msgspec.msgpack.encode(_MapState(seen={"e-a": T0, "e-b": T0 + 1000})))
    assert sorted(legacy_seen(s)) == sorted([(dedup.event_hash("e-a"), T0), (dedup.event_hash("e-b"), T0 + 1000)])
    assert s.seen == {}


def test_a_new_state_writes_none_of_them() -> None:
    raw = encode_state(CustomerState(profile={"a": 1}))
    assert b"seen" not in raw
