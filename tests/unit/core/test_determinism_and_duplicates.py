"""The decision engine: deterministic action ids, and a duplicate event id is ignored. Driven with explicit
clock values: no Kafka, no sleeps."""

from __future__ import annotations

from orchestrator.core import Engine, dedup
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
    assert actions(c.event("cart.updated", T0, eid="e-dup", value=80))
    assert c.event("cart.updated", T0 + 10 * MIN, ts=T0, eid="e-dup", value=80) == []
    assert set(c.state.instances) == {"cart"}
    # even a different body with the same event_id is a duplicate (within 24 h)
    assert c.event("profile.updated", T0 + 23 * HOUR, ts=T0 + HOUR, eid="e-dup", tier="gold") == []
    assert "tier" not in c.state.profile and c.duplicates == ["e-dup", "e-dup"]


def test_the_same_event_id_for_another_customer_is_not_a_duplicate() -> None:
    eng = engine(INSTANT)
    c1, c2 = Customer(eng, "c-1"), Customer(eng, "c-2")
    c2.window = c1.window                                    # one window, as one worker partition has
    assert actions(c1.event("cart.updated", T0, eid="e-shared"))
    assert actions(c2.event("cart.updated", T0, eid="e-shared"))


def test_an_id_is_a_duplicate_inside_the_window_and_new_after_it() -> None:
    window = dedup.Window()
    key = dedup.key("c-1", "e-1")
    assert window.first(key, T0)
    assert not window.first(key, T0 + dedup.WINDOW_MS - 1000)
    assert window.first(dedup.key("c-1", "e-later"), T0 + dedup.WINDOW_MS + 1000)   # moves the window on
    assert window.first(key, T0 + dedup.WINDOW_MS + 2000)                          # forgotten after it
    assert dedup.WINDOW_MS >= 24 * HOUR


def test_the_key_names_the_customer_and_the_event_and_nothing_personal() -> None:
    key = dedup.key("c-42", "e-1")
    assert len(key) == dedup.KEY_LEN and b"c-42" not in key and b"e-1" not in key
    assert key != dedup.key("c-43", "e-1") and key != dedup.key("c-42", "e-2")
    assert key[dedup.HALF:] == dedup.event_hash("e-1")     # the half that states before kept


def test_a_state_does_not_grow_with_the_events_its_customer_sends() -> None:
    # The duplicate window lives outside the state: a customer's thousandth page view costs what its
    # tenth did (before, every event id stayed in the state, 12 bytes each, for 25 hours).
    from orchestrator.core.state import encode_state
    c = Customer(engine(INSTANT))
    sizes = {}
    for i in range(3000):
        c.event("page.viewed", T0 + i * 1000, eid=f"view-{i}", category="shoes")
        if i + 1 in (100, 3000):
            sizes[i + 1] = len(encode_state(c.state))
    assert sizes[3000] <= sizes[100] + 64, sizes
