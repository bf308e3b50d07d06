"""The decision engine: ``profile.erased`` and the tombstone it leaves. Driven with explicit clock values:
no Kafka, no sleeps."""

from __future__ import annotations

from orchestrator.core.state import (
    TOMBSTONE_KEEP_MS, CustomerState, decode_state, encode_state, remember_event, remembered, remembered_count,
)
from tests.unit.core.helpers import (
    CHANNELS, DAY, HOUR, MIN, SUPPRESSION_KEYS, T0, Customer, actions, decisions, engine, ev, one, suppressions,
)
from tests.unit.core.journeys_fixtures import CART, INSTANT, WAIT_FOR


# ---------------------------------------------------------------------------- erasure
def test_profile_erased_drops_state_and_suppresses_everything() -> None:
    c = Customer(engine(CART, INSTANT.replace("journey: instant", "journey: other")
                        .replace("send: email", "send: push")))
    c.event("profile.updated", T0 - MIN, first_name="Ann")
    out = c.event("cart.updated", T0, value=80)
    cart_action = next(a for a in actions(out) if a["journey"] == "cart")["action_id"]
    erased = c.engine.on_event(c.state, ev("profile.erased", "c-1", T0 + HOUR, "e-erase"), T0 + HOUR)
    # Only the tombstone is left: nothing personal (see the tombstone tests below).
    assert erased.state is not None and erased.state.erased_ms == T0 + HOUR
    assert erased.state.profile == {} and erased.state.instances == {}
    sup = one(suppressions(erased.outputs))
    assert set(sup) == SUPPRESSION_KEYS
    assert sup["reason"] == "erased"
    assert sup["channels"] == list(CHANNELS)
    assert sup["cancels"] == [cart_action]  # the still-active instance's actions
    assert sup["customer_id"] == "c-1"
    assert not actions(erased.outputs)
    # pending timers are gone with the state
    assert c.engine.on_timer(erased.state, "c-1", T0 + 30 * DAY, T0 + 30 * DAY).outputs == []


def test_profile_erased_of_an_unknown_customer_still_suppresses() -> None:
    r = engine(CART).on_event(None, ev("profile.erased", "c-9", T0, "e-erase"), T0)
    assert r.state is not None and remembered(r.state, "e-erase") and remembered_count(r.state) == 1
    sup = one(suppressions(r.outputs))
    assert sup["reason"] == "erased" and sup["channels"] == list(CHANNELS) and sup["cancels"] == []


ERASE_WAIT = """
journey: ew
entry: {on: cart.updated, reentry: always}
start: email
nodes:
  email: {send: email, template: first, next: pause}
  pause: {wait: 1d, next: push}
  push: {send: push, template: second}
"""


def erased_customer() -> tuple[Customer, str]:
    """A customer enrolled by e-1 (email sent, push pending), then erased by e-erase an hour later."""
    c = Customer(engine(ERASE_WAIT))
    c.event("profile.updated", T0 - MIN, eid="e-profile", first_name="Ann", timezone="Europe/Oslo")
    first = one(actions(c.event("cart.updated", T0, eid="e-1", value=80)))["action_id"]
    sup = one(suppressions(c.event("profile.erased", T0 + HOUR, eid="e-erase")))
    assert sup["cancels"] == [first]
    return c, first


def test_a_redelivered_pre_erasure_event_is_ignored() -> None:
    c, _ = erased_customer()
    r = c.engine.on_event(c.state, ev("cart.updated", "c-1", T0, "e-1", value=80), T0 + HOUR + 5 * MIN)
    assert r.duplicate and r.outputs == []
    assert r.state.instances == {} and r.state.erased_ms == T0 + HOUR
    assert c.tick(T0 + 3 * DAY) == []                     # and nothing was scheduled either


def test_a_new_event_after_erasure_starts_from_nothing_and_may_enrol() -> None:
    c, first = erased_customer()
    out = c.event("cart.updated", T0 + 2 * HOUR, eid="e-new", value=90)
    again = one(actions(out))
    assert again["action_id"] != first and again["trigger_event_id"] == "e-new"
    assert one(decisions(out, "entered"))["journey"] == "ew"
    assert c.state.erased_ms is None and c.state.profile == {}      # a customer again, from nothing
    assert remembered(c.state, "e-1")                                # earlier ids are still duplicates
    assert c.engine.on_event(c.state, ev("cart.updated", "c-1", T0, "e-1"), T0 + 3 * HOUR).duplicate


def test_the_erasure_tombstone_keeps_nothing_personal() -> None:
    c = Customer(engine(ERASE_WAIT, WAIT_FOR.replace("journey: wf", "journey: wf2").replace("cart.updated", "go")))
    c.event("cart.updated", T0 - 30 * HOUR, eid="e-old")                 # outside the duplicate window later
    c.event("profile.updated", T0 - MIN, eid="e-p", first_name="Ann", consent={"email": True})
    c.event("go", T0, eid="e-go", category="shoes")
    aid = actions(c.log)[-1]["action_id"]
    c.event("message.opened", T0 + MIN, eid="e-open", action_id=aid, channel="email")
    c.event("profile.erased", T0 + HOUR, eid="e-erase")
    kept = c.state
    ids = CustomerState()
    for eid, at in (("e-p", T0 - MIN), ("e-go", T0), ("e-open", T0 + MIN), ("e-erase", T0 + HOUR)):
        remember_event(ids, eid, at)
    assert kept == CustomerState(seen_ids=ids.seen_ids, seen_at=ids.seen_at, erased_ms=T0 + HOUR,
                                 time_ms=T0 + HOUR)
    assert not remembered(kept, "e-old") and not remembered(kept, "Ann")
    assert decode_state(encode_state(kept)) == kept


def test_the_tombstone_expires_when_its_ids_leave_the_duplicate_window() -> None:
    c, _ = erased_customer()
    expiry = T0 + HOUR + TOMBSTONE_KEEP_MS
    assert TOMBSTONE_KEEP_MS >= DAY                                      # SPEC §2: at least 24 h
    assert c.state.next_due_ms() == expiry                               # the worker's timer index wakes it
    assert c.engine.on_timer(c.state, "c-1", expiry - 1, expiry - 1).state is c.state
    gone = c.engine.on_timer(c.state, "c-1", expiry, expiry)
    assert gone.state is None and gone.outputs == []
    # An event after the expiry, before any timer fired, starts from an empty state too.
    late = c.engine.on_event(c.state, ev("cart.updated", "c-1", expiry, "e-1"), expiry)
    assert not late.duplicate and late.state.erased_ms is None
    assert remembered(late.state, "e-1") and remembered_count(late.state) == 1


def test_erasing_twice_keeps_one_tombstone_with_both_ids() -> None:
    c, _ = erased_customer()
    sup = one(suppressions(c.event("profile.erased", T0 + 2 * HOUR, eid="e-erase-2")))
    assert sup["cancels"] == [] and c.state.erased_ms == T0 + 2 * HOUR
    assert all(remembered(c.state, eid) for eid in ("e-erase", "e-erase-2", "e-1"))
