"""The decision engine: deterministic action ids, and a duplicate event id is ignored. Driven with explicit
clock values: no Kafka, no sleeps."""

from __future__ import annotations

from orchestrator.core import Engine
from orchestrator.core.state import decode_state, encode_state
from tests.unit.core.helpers import HOUR, MIN, T0, Customer, actions, engine, ev, one
from tests.unit.core.journeys_fixtures import CART, INSTANT


# ---------------------------------------------------------------------------- determinism and duplicates
def run_fresh(eng: Engine, cid: str, eid: str = "e-1") -> list:
    return eng.on_event(None, ev("cart.updated", cid, T0, eid, value=80), T0).outputs


def test_action_ids_are_deterministic() -> None:
    eng = engine(CART)
    first, second = run_fresh(eng, "c-1"), run_fresh(engine(CART), "c-1")
    assert one(actions(first))["action_id"] == one(actions(second))["action_id"]
    assert [o.value for o in first] == [o.value for o in second]  # a replay gives the same records


def test_action_ids_differ_per_customer_and_per_entry_event() -> None:
    eng = engine(CART)
    a = one(actions(run_fresh(eng, "c-1")))["action_id"]
    b = one(actions(run_fresh(eng, "c-2")))["action_id"]
    c = one(actions(run_fresh(eng, "c-1", "e-2")))["action_id"]
    assert len({a, b, c}) == 3


def test_duplicate_event_id_is_ignored() -> None:
    c = Customer(engine(CART))
    e = ev("cart.updated", "c-1", T0, "e-dup", value=80)
    first = c.engine.on_event(None, e, T0)
    assert not first.duplicate and actions(first.outputs)
    again = c.engine.on_event(first.state, e, T0 + 10 * MIN)
    assert again.duplicate is True
    assert again.outputs == []
    assert set(again.state.instances) == {"cart"}
    # even a different body with the same event_id is a duplicate (within 24 h)
    other = ev("profile.updated", "c-1", T0 + HOUR, "e-dup", tier="gold")
    late = c.engine.on_event(again.state, other, T0 + 23 * HOUR)
    assert late.duplicate and late.outputs == [] and "tier" not in late.state.profile


def test_the_same_event_id_for_another_customer_is_not_a_duplicate() -> None:
    eng = engine(INSTANT)
    r1 = eng.on_event(None, ev("cart.updated", "c-1", T0, "e-shared"), T0)
    r2 = eng.on_event(None, ev("cart.updated", "c-2", T0, "e-shared"), T0)
    assert not r2.duplicate and actions(r1.outputs) and actions(r2.outputs)


def test_duplicate_detection_survives_a_state_round_trip() -> None:
    eng = engine(INSTANT)
    e = ev("cart.updated", "c-1", T0, "e-1")
    r = eng.on_event(None, e, T0)
    state = decode_state(encode_state(r.state))
    assert eng.on_event(state, e, T0 + MIN).duplicate
