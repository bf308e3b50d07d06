"""What an event records besides journeys: its activity per event type (docs/journeys.md#namespaces)."""

from __future__ import annotations

from orchestrator.core.activity import record_activity
from orchestrator.core.state import ACTIVITY_MAX_TYPES, CustomerState

T0 = 1_796_000_000_000


def test_a_state_keeps_the_most_recently_seen_event_types_up_to_its_limit():
    state = CustomerState()
    for i in range(ACTIVITY_MAX_TYPES):
        record_activity(state, f"type.t{i}", T0 + i, {})
    record_activity(state, "type.t0", T0 + 10_000, {})             # t0 seen again: now the most recent
    record_activity(state, "type.new", T0 + 20_000, {})
    assert len(state.activity) == ACTIVITY_MAX_TYPES
    assert "type.t1" not in state.activity, "the type seen longest ago makes room"
    assert {"type.t0", "type.new", "type.t2"} <= state.activity.keys()
    assert state.activity["type.t0"].last_ms == T0 + 10_000 and sum(state.activity["type.t0"].days.values()) == 2
