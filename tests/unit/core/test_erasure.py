"""The decision engine: ``profile.erased`` deletes the customer's state; the duplicate window, kept
apart, still knows the earlier event ids. Driven with explicit clock values: no Kafka, no sleeps."""

from __future__ import annotations

from orchestrator.core import dedup
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
    assert erased.state is None                             # nothing of the customer is left
    sup = one(suppressions(erased.outputs))
    assert set(sup) == SUPPRESSION_KEYS
    assert sup["reason"] == "erased"
    assert sup["channels"] == list(CHANNELS)
    assert sup["cancels"] == [cart_action]  # the still-active instance's actions
    assert sup["customer_id"] == "c-1"
    assert not actions(erased.outputs)
    # pending timers are gone with the state
    assert c.engine.on_timer(erased.state, "c-1", T0 + 30 * DAY, T0 + 30 * DAY).outputs == []
    assert c.engine.on_timer(erased.state, "c-1", T0 + 30 * DAY, T0 + 30 * DAY).state is None


def test_profile_erased_of_an_unknown_customer_still_suppresses() -> None:
    r = engine(CART).on_event(None, ev("profile.erased", "c-9", T0, "e-erase"), T0)
    assert r.state is None
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
    assert c.event("cart.updated", T0 + HOUR + 5 * MIN, ts=T0, eid="e-1", value=80) == []
    assert c.duplicates == ["e-1"] and c.state is None
    assert c.tick(T0 + 3 * DAY) == []                     # and nothing was scheduled either


def test_a_new_event_after_erasure_starts_from_nothing_and_may_enrol() -> None:
    c, first = erased_customer()
    out = c.event("cart.updated", T0 + 2 * HOUR, eid="e-new", value=90)
    again = one(actions(out))
    assert again["action_id"] != first and again["trigger_event_id"] == "e-new"
    assert one(decisions(out, "entered"))["journey"] == "ew"
    assert c.state.profile == {}                                     # a customer again, from nothing
    assert c.event("cart.updated", T0 + 3 * HOUR, ts=T0, eid="e-1") == []   # earlier ids are still duplicates


def test_nothing_personal_is_kept_after_an_erasure() -> None:
    c = Customer(engine(ERASE_WAIT, WAIT_FOR.replace("journey: wf", "journey: wf2").replace("cart.updated", "go")))
    c.event("profile.updated", T0 - MIN, eid="e-p", first_name="Ann", consent={"email": True})
    c.event("go", T0, eid="e-go", category="shoes")
    aid = actions(c.log)[-1]["action_id"]
    c.event("message.opened", T0 + MIN, eid="e-open", action_id=aid, channel="email")
    c.event("profile.erased", T0 + HOUR, eid="e-erase")
    assert c.state is None
    # The duplicate window holds 16-byte hashes of (customer id, event id): no id, no name, no value.
    kept = b"".join(c.window._seen)
    for personal in (b"c-1", b"Ann", b"shoes", b"e-go", aid.encode()):
        assert personal not in kept
    assert dedup.key("c-1", "e-go") in c.window._seen


def test_erasing_twice_suppresses_twice_and_keeps_nothing() -> None:
    c, _ = erased_customer()
    sup = one(suppressions(c.event("profile.erased", T0 + 2 * HOUR, eid="e-erase-2")))
    assert sup["cancels"] == [] and c.state is None
    assert c.event("profile.erased", T0 + 3 * HOUR, ts=T0 + HOUR, eid="e-erase") == []   # a redelivery: ignored
