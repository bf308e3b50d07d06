"""The compact memory of event ids (SPEC §2: a duplicate event_id within at least 24 h is ignored)."""

from __future__ import annotations

import msgspec

from orchestrator.core.state import (
    DEDUP_MAX_IDS, DEDUP_WINDOW_MS, CustomerState, decode_state, encode_state, remember_event, remembered,
    remembered_count,
)

T0 = 1_764_000_000_000


def test_an_id_is_a_duplicate_inside_the_window_and_new_after_it() -> None:
    s = CustomerState()
    assert remember_event(s, "e-1", T0)
    assert not remember_event(s, "e-1", T0 + DEDUP_WINDOW_MS - 1000)
    for i in range(200):                                     # enough inserts to prune on the way
        remember_event(s, f"later-{i}", T0 + DEDUP_WINDOW_MS + 1000 + i)
    assert not remembered(s, "e-1")                          # processed before the window: forgotten
    assert remembered(s, "later-0") and remembered_count(s) == 200


def test_ids_that_share_bytes_across_entries_are_not_confused() -> None:
    # A hash found at a position that is not an entry's start must not count as a match.
    s = CustomerState()
    for i in range(5000):
        remember_event(s, f"e-{i}", T0)
    assert all(remembered(s, f"e-{i}") for i in range(0, 5000, 97))
    assert sum(remembered(s, f"other-{i}") for i in range(5000)) == 0


def test_at_most_the_newest_ids_are_kept() -> None:
    s = CustomerState()
    for i in range(DEDUP_MAX_IDS + 64):
        remember_event(s, f"e-{i}", T0)
    assert remembered_count(s) <= DEDUP_MAX_IDS
    assert remembered(s, f"e-{DEDUP_MAX_IDS + 63}") and not remembered(s, "e-0")


class _OldState(msgspec.Struct, kw_only=True):
    """A state as workers before the compact form wrote it: ids in a map of id -> ms."""
    seen: dict[str, int] = {}
    profile: dict = {}


def test_a_state_written_with_the_old_map_of_ids_still_knows_its_duplicates() -> None:
    old = msgspec.msgpack.encode(_OldState(seen={"e-a": T0, "e-b": T0 + 1000}, profile={"plan": "pro"}))
    s = decode_state(old)
    assert s.profile == {"plan": "pro"}
    assert not remember_event(s, "e-a", T0 + 2000) and remembered(s, "e-b")
    assert remember_event(s, "e-c", T0 + 3000)
    again = decode_state(encode_state(s))
    assert again.seen == {} and all(remembered(again, e) for e in ("e-a", "e-b", "e-c"))
