"""The decision engine (SPEC §2-§5), driven with explicit clock values: no Kafka, no sleeps."""

from __future__ import annotations

import json
import pytest

from orchestrator.core import Engine, JourneySet, Policies
from orchestrator.core.policies import FrequencyRule, QuietHours
from orchestrator.core.state import (
    TOMBSTONE_KEEP_MS, CustomerState, decode_state, encode_state, remember_event, remembered, remembered_count,
)
from orchestrator.core.timeutil import format_ts, parse_ts_ms
from tests.unit.core.helpers import (
    ACTION_KEYS, CHANNELS, DAY, DECISION_KEYS, DECISION_OUTCOMES, HOUR, MIN, SUPPRESSION_KEYS,
    SUPPRESSION_REASONS, T0, Customer, actions, decisions, engine, ev, journey, suppressions,
)

# ---------------------------------------------------------------------------- journeys used below
CART = """
journey: cart
entry:
  on: cart.updated
  if: event.properties.value >= 50
capture: {cart_value: event.properties.value}
start: email
nodes:
  email:
    send: email
    template: cart-1
    params: {v: journey.vars.cart_value, doubled: event.properties.value * 2, tier: profile.tier}
    next: pause
  pause: {wait: 1d, next: done}
  done: {exit: completed}
"""

# send at once, then leave
INSTANT = """
journey: instant
entry: {on: cart.updated}
start: email
nodes:
  email: {send: email, template: t, next: done}
  done: {exit: completed}
"""


def ts(text: str) -> int:
    value = parse_ts_ms(text)
    assert value is not None
    return value


def one(items: list) -> dict:
    assert len(items) == 1, items
    return items[0]


# ---------------------------------------------------------------------------- entry, capture, params
def test_entry_if_true_enrols_and_sends() -> None:
    c = Customer(engine(CART))
    out = c.event("cart.updated", T0, value=80.5)
    entered = one(decisions(out, "entered"))
    assert (entered["journey"], entered["journey_version"], entered["customer_id"]) == ("cart", 1, "c-1")
    action = one(actions(out))
    assert action["channel"] == "email" and action["template"] == "cart-1"
    assert [o.topic for o in out if o.topic.startswith("actions.")] == ["actions.email"]
    assert all(o.key == "c-1" for o in out)
    assert c.state is not None and set(c.state.instances) == {"cart"}


def test_entry_if_false_does_not_enrol() -> None:
    c = Customer(engine(CART))
    assert c.event("cart.updated", T0, value=40) == []
    assert c.event("cart.updated", T0, other="no value") == []
    assert c.state is not None and c.state.instances == {}


def test_other_event_types_do_not_enrol() -> None:
    c = Customer(engine(CART))
    assert c.event("cart.viewed", T0, value=500) == []


def test_capture_is_read_in_params_and_action_has_spec_shape() -> None:
    c = Customer(engine(CART))
    c.event("profile.updated", T0 - MIN, tier="gold")
    e = ev("cart.updated", "c-1", T0 - 2000, "e-cart", value=80.5)
    out = c.engine.on_event(c.state, e, T0).outputs
    action = one(actions(out))
    assert set(action) == ACTION_KEYS
    assert action["params"] == {"v": 80.5, "doubled": 161.0, "tier": "gold"}
    assert (action["customer_id"], action["journey"], action["journey_version"], action["node"]) == \
        ("c-1", "cart", 1, "email")
    assert action["trigger_event_id"] == "e-cart"
    assert action["event_ts"] == format_ts(T0 - 2000)
    assert action["decided_at"] == format_ts(T0)
    assert action["action_id"].startswith("a-")
    json.dumps(action)
    sent = one(decisions(out, "sent"))
    assert sent["action_id"] == action["action_id"] and sent["channel"] == "email"


def test_captured_vars_survive_a_wait_and_a_state_round_trip() -> None:
    later = """
    journey: later
    entry: {on: cart.updated}
    capture: {v: event.properties.value, cat: lower(event.properties.category)}
    start: pause
    nodes:
      pause: {wait: 1h, next: email}
      email: {send: email, template: t, params: {v: journey.vars.v, cat: journey.vars.cat, ev: event.type}}
    """
    c = Customer(engine(later))
    c.event("cart.updated", T0, value=99, category="SHOES")
    c.state = decode_state(encode_state(c.state))  # what the worker stores between events
    action = one(actions(c.tick(T0 + HOUR)))
    assert action["params"] == {"v": 99, "cat": "shoes", "ev": None}  # no event behind a timer


# ---------------------------------------------------------------------------- expression namespaces (SPEC §4)
NAMESPACES = """
journey: ns
entry: {on: cart.updated, reentry: always}
start: s
nodes:
  s:
    send: email
    template: t
    params:
      views: activity.product.viewed.count_30d
      views_last: activity.product.viewed.last_at
      views_by_key: 'activity["product.viewed"].count_30d'
      carts: activity.cart.updated.count_30d
      sess_n: session.event_count
      sess_start: session.started_at
      cats: session.categories
      sent7: engagement.email.sent_7d
      sent30: engagement.email.sent_30d
      opened30: engagement.email.opened_30d
      clicked7: engagement.email.clicked_7d
      last_open: engagement.email.last_opened_at
      entered: journey.entered_at
      touches: journey.touches
      now: now
      mins_since_view: hours_since(activity.product.viewed.last_at) * 60
    next: w
  w: {wait: 1h, next: s2}
  s2: {send: push, template: t2, params: {touches: journey.touches}}
"""


def test_expression_namespaces_seen_by_a_journey() -> None:
    c = Customer(engine(NAMESPACES))
    c.event("product.viewed", T0 - 40 * MIN, category="shoes")
    c.event("product.viewed", T0 - 20 * MIN, category="hats")
    c.event("product.viewed", T0 - 5 * MIN, category="shoes")
    out = c.event("cart.updated", T0)
    p = one(actions(out))["params"]
    assert p == {
        "views": 3, "views_last": format_ts(T0 - 5 * MIN), "views_by_key": 3, "carts": 1,
        "sess_n": 4, "sess_start": format_ts(T0 - 40 * MIN), "cats": ["shoes", "hats"],
        "sent7": 0, "sent30": 0, "opened30": 0, "clicked7": 0, "last_open": None,
        "entered": format_ts(T0), "touches": 0, "now": format_ts(T0), "mins_since_view": pytest.approx(5.0),
    }
    aid = one(actions(out))["action_id"]
    c.event("message.opened", T0 + MIN, action_id=aid, channel="email")
    c.event("message.clicked", T0 + 2 * MIN, action_id=aid, channel="email")
    assert one(actions(c.tick(T0 + HOUR)))["params"] == {"touches": 1}
    # a new session after a 30 min gap; engagement counts what was sent and opened
    p = one(actions(c.event("cart.updated", T0 + 2 * HOUR)))["params"]
    assert (p["sess_n"], p["sess_start"], p["cats"]) == (1, format_ts(T0 + 2 * HOUR), [])
    assert (p["sent7"], p["sent30"], p["opened30"], p["clicked7"]) == (1, 1, 1, 1)
    assert p["last_open"] == format_ts(T0 + MIN)
    assert p["carts"] == 2 and p["touches"] == 0 and p["entered"] == format_ts(T0 + 2 * HOUR)


def test_session_boundary_is_30_minutes() -> None:
    c = Customer(engine(NAMESPACES))
    c.event("page.viewed", T0 - 60 * MIN)
    c.event("page.viewed", T0 - 30 * MIN - 1)     # 29:59.999 after the first: same session
    c.event("page.viewed", T0 - 2)                # 29:59.999 after the second: same session
    assert one(actions(c.event("cart.updated", T0)))["params"]["sess_n"] == 4
    c2 = Customer(engine(NAMESPACES), "c-2")
    c2.event("page.viewed", T0 - 30 * MIN)        # exactly 30 min before: a new session
    assert one(actions(c2.event("cart.updated", T0)))["params"]["sess_n"] == 1


@pytest.mark.parametrize("order", [["product.viewed", "product"], ["product", "product.viewed"]])
def test_activity_of_nested_event_types_in_any_order(order: list[str]) -> None:
    c = Customer(engine(NAMESPACES))
    for i, etype in enumerate(order):
        c.event(etype, T0 - (10 - i) * MIN)
    p = one(actions(c.event("cart.updated", T0)))["params"]
    assert p["views"] == 1 and p["views_by_key"] == 1


def test_activity_counts_only_the_last_30_days() -> None:
    c = Customer(engine(NAMESPACES, policies=Policies(max_event_age_ms=60 * DAY)))
    c.event("product.viewed", T0, ts=T0 - 40 * DAY)
    c.event("product.viewed", T0 + 1, ts=T0 - 10 * DAY)
    assert one(actions(c.event("cart.updated", T0 + 2)))["params"]["views"] == 1


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


# ---------------------------------------------------------------------------- profile
def test_profile_updated_merges_and_null_deletes() -> None:
    c = Customer(engine(CART))
    c.event("profile.updated", T0, first_name="Ann", tier="gold", city="Oslo")
    assert c.state.profile == {"first_name": "Ann", "tier": "gold", "city": "Oslo"}
    c.event("profile.updated", T0 + 1, tier=None, city="Bergen", consent={"email": True})
    assert c.state.profile == {"first_name": "Ann", "city": "Bergen", "consent": {"email": True}}
    c.event("profile.updated", T0 + 2, missing_field=None)
    assert c.state.profile == {"first_name": "Ann", "city": "Bergen", "consent": {"email": True}}
    # the merged profile is what expressions see
    action = one(actions(c.event("cart.updated", T0 + 3, value=60)))
    assert action["params"]["tier"] is None


def test_profile_merge_is_shallow_except_consent() -> None:
    c = Customer(engine())
    c.event("profile.updated", T0, address={"city": "Oslo", "zip": "0150"}, consent={"email": True, "sms": True})
    c.event("profile.updated", T0 + 1, address={"city": "Bergen"}, consent={"sms": False})
    assert c.state.profile["address"] == {"city": "Bergen"}          # replaced as a whole
    assert c.state.profile["consent"] == {"email": True, "sms": False}


def test_consent_is_merged_per_channel_and_null_deletes_a_channel() -> None:
    sms = INSTANT.replace("send: email", "send: sms").replace("cart.updated", "go")
    c = Customer(engine(sms, policies=Policies(consent={"sms": "opt_in"})))
    c.event("profile.updated", T0, consent={"sms": True})
    c.event("profile.updated", T0 + 1, consent={"email": True})        # SPEC §2: keeps the earlier sms: true
    assert c.state.profile["consent"] == {"sms": True, "email": True}
    assert one(actions(c.event("go", T0 + 2)))["channel"] == "sms"
    c.event("profile.updated", T0 + 3, consent={"sms": None})          # null deletes that channel's entry
    assert c.state.profile["consent"] == {"email": True}
    c.event("profile.updated", T0 + 4, consent=None)                   # null for the field deletes it all
    assert "consent" not in c.state.profile


def test_a_consent_that_is_not_an_object_is_not_applied_and_is_reported() -> None:
    c = Customer(engine())
    c.event("profile.updated", T0, consent={"sms": True})
    r = c.engine.on_event(c.state, ev("profile.updated", "c-1", T0 + 1, consent="yes"), T0 + 1)
    assert r.invalid_fields == ("consent",)
    assert r.state.profile["consent"] == {"sms": True}


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


# ---------------------------------------------------------------------------- goal and exit
GOAL = """
journey: goal-j
entry: {on: cart.updated}
goal: {on: order.completed, suppress: [ads, web]}
exit: {on: [account.closed, cart.emptied]}
start: email
nodes:
  email: {send: email, template: t1, next: pause}
  pause: {wait: 1d, next: push}
  push: {send: push, template: t2}
"""


def test_goal_exits_and_suppresses_the_goal_channels() -> None:
    c = Customer(engine(GOAL))
    aid = one(actions(c.event("cart.updated", T0)))["action_id"]
    out = c.event("order.completed", T0 + HOUR)
    sup = one(suppressions(out))
    assert (sup["reason"], sup["channels"], sup["journey"], sup["cancels"]) == ("goal", ["ads", "web"], "goal-j", [aid])
    goal = one(decisions(out, "goal"))
    assert goal["journey"] == "goal-j"
    assert c.state.instances == {}
    assert c.tick(T0 + 2 * DAY) == []   # the wait's timer is cancelled


@pytest.mark.parametrize("exit_type", ["account.closed", "cart.emptied"])
def test_exit_on_leaves_and_withdraws_the_channels_used(exit_type: str) -> None:
    c = Customer(engine(GOAL))
    aid = one(actions(c.event("cart.updated", T0)))["action_id"]
    out = c.event(exit_type, T0 + HOUR)
    sup = one(suppressions(out))
    assert (sup["reason"], sup["channels"], sup["cancels"]) == ("exit", ["email"], [aid])
    assert one(decisions(out, "exited"))["journey"] == "goal-j"
    assert c.state.instances == {}
    assert c.tick(T0 + 2 * DAY) == []


def test_goal_event_for_someone_not_in_the_journey_does_nothing() -> None:
    c = Customer(engine(GOAL))
    assert c.event("order.completed", T0) == []


def test_max_touches_stops_the_journey() -> None:
    three = """
    journey: three
    entry: {on: cart.updated}
    exit: {max_touches: 2}
    start: a
    nodes:
      a: {send: email, template: t1, next: b}
      b: {send: push, template: t2, next: c}
      c: {send: inapp, template: t3}
    """
    c = Customer(engine(three))
    out = c.event("cart.updated", T0)
    assert [a["template"] for a in actions(out)] == ["t1", "t2"]
    exited = one(decisions(out, "exited"))
    assert "max_touches" in exited["detail"]
    assert c.state.instances == {}


def test_max_duration_expires_the_instance() -> None:
    slow = """
    journey: slow
    entry: {on: cart.updated}
    exit: {max_duration: 2d}
    start: a
    nodes:
      a: {send: email, template: t1, next: w}
      w: {wait: 10d, next: b}
      b: {send: push, template: t2}
    """
    c = Customer(engine(slow))
    aid = one(actions(c.event("cart.updated", T0)))["action_id"]
    assert c.tick(T0 + 2 * DAY - 1) == []
    out = c.tick(T0 + 2 * DAY)
    assert not actions(out)
    assert one(decisions(out, "exited"))["detail"] == "max_duration"
    sup = one(suppressions(out))
    assert sup["reason"] == "expired" and sup["cancels"] == [aid]
    assert c.tick(T0 + 11 * DAY) == []


# ---------------------------------------------------------------------------- re-entry
def reentry_engine(value: str | None) -> Engine:
    text = INSTANT if value is None else INSTANT.replace("entry: {on: cart.updated}",
                                                         f"entry: {{on: cart.updated, reentry: {value}}}")
    return engine(text)


def refused_only(out: list, detail: str) -> bool:
    """The event wrote exactly one decision, entry_refused with this detail, and nothing else."""
    return [(o.topic, o.value["outcome"], o.value["detail"]) for o in out] == \
        [("decisions", "entry_refused", detail)]


def test_reentry_never_is_the_default() -> None:
    c = Customer(reentry_engine(None))
    assert actions(c.event("cart.updated", T0))
    assert c.state.instances == {}  # finished
    assert refused_only(c.event("cart.updated", T0 + 30 * DAY), "reentry")
    c2 = Customer(reentry_engine("never"))
    c2.event("cart.updated", T0)
    assert refused_only(c2.event("cart.updated", T0 + 30 * DAY), "reentry")


def test_reentry_always() -> None:
    c = Customer(reentry_engine("always"))
    a1 = one(actions(c.event("cart.updated", T0)))["action_id"]
    a2 = one(actions(c.event("cart.updated", T0 + 1)))["action_id"]
    assert a1 != a2


def test_reentry_after_a_duration_since_exit() -> None:
    c = Customer(reentry_engine("1d"))
    assert actions(c.event("cart.updated", T0))
    assert refused_only(c.event("cart.updated", T0 + HOUR), "reentry")
    refused = one(decisions(c.event("cart.updated", T0 + DAY - 1)))
    assert set(refused) == DECISION_KEYS and (refused["journey"], refused["journey_version"]) == ("instant", 1)
    assert actions(c.event("cart.updated", T0 + DAY))


def test_a_false_entry_condition_after_an_exit_writes_no_refusal() -> None:
    c = Customer(engine(CART))                       # reentry: never
    assert actions(c.event("cart.updated", T0, value=80))
    c.tick(T0 + 2 * DAY)
    assert c.state.instances == {}
    assert c.event("cart.updated", T0 + 3 * DAY, value=10) == []       # would not enter anyway
    assert refused_only(c.event("cart.updated", T0 + 3 * DAY, value=90), "reentry")


def test_no_reentry_while_still_active() -> None:
    c = Customer(engine(CART.replace("entry:\n", "entry:\n  reentry: always\n")))
    assert actions(c.event("cart.updated", T0, value=80))
    assert c.event("cart.updated", T0 + HOUR, value=80) == []


# ---------------------------------------------------------------------------- branch, split
BRANCH = """
journey: br
entry: {on: cart.updated}
start: choose
nodes:
  choose:
    branch:
      - {if: profile.tier == "gold", next: gold}
      - {if: event.properties.value > 100, next: big}
      - {next: other}
  gold: {send: email, template: gold}
  big: {send: email, template: big}
  other: {send: email, template: other}
"""


@pytest.mark.parametrize("profile, value, template", [
    ({"tier": "gold"}, 500, "gold"), ({"tier": "silver"}, 500, "big"), ({}, 10, "other"), ({}, None, "other"),
])
def test_branch_first_true_case_wins_else_last(profile: dict, value: object, template: str) -> None:
    c = Customer(engine(BRANCH))
    if profile:
        c.event("profile.updated", T0 - 1, **profile)
    assert one(actions(c.event("cart.updated", T0, value=value)))["template"] == template


def test_branch_without_else_and_no_match_exits() -> None:
    c = Customer(engine(BRANCH.replace("      - {next: other}\n", "")))
    out = c.event("cart.updated", T0, value=1)
    assert not actions(out)
    assert one(decisions(out, "exited"))
    assert c.state.instances == {}


SPLIT = """
journey: ab
entry: {on: cart.updated, reentry: always}
start: ab
nodes:
  ab: {split: [{weight: 50, next: a}, {weight: 50, next: b}]}
  a: {send: email, template: arm-a}
  b: {send: email, template: arm-b}
"""


def test_split_is_deterministic_per_customer() -> None:
    eng = engine(SPLIT)
    arms: dict[str, int] = {"arm-a": 0, "arm-b": 0}
    for i in range(200):
        cid = f"c-{i}"
        first = one(actions(eng.on_event(None, ev("cart.updated", cid, T0, "e-1"), T0).outputs))["template"]
        again = one(actions(engine(SPLIT).on_event(None, ev("cart.updated", cid, T0 + DAY, "e-2"), T0 + DAY)
                            .outputs))["template"]
        assert first == again, cid
        arms[first] += 1
    assert 60 <= arms["arm-a"] <= 140, arms   # roughly the 50/50 weights


def test_split_respects_weights() -> None:
    eng = engine(SPLIT.replace("weight: 50, next: a", "weight: 9, next: a")
                 .replace("weight: 50, next: b", "weight: 1, next: b"))
    counts = {"arm-a": 0, "arm-b": 0}
    for i in range(400):
        counts[one(actions(eng.on_event(None, ev("cart.updated", f"c-{i}", T0), T0).outputs))["template"]] += 1
    assert 320 <= counts["arm-a"] <= 390, counts


# ---------------------------------------------------------------------------- timers
WAIT = """
journey: wait-j
entry: {on: cart.updated}
start: w
nodes:
  w: {wait: 1h, next: push}
  push: {send: push, template: later, next: done}
  done: {exit: completed}
"""


def test_wait_fires_at_due_time_and_not_before() -> None:
    c = Customer(engine(WAIT))
    out = c.event("cart.updated", T0, eid="e-w")
    assert not actions(out)
    assert c.state.next_due_ms() == T0 + HOUR
    assert c.tick(T0 + HOUR - 1) == []
    out = c.tick(T0 + HOUR)
    action = one(actions(out))
    assert action["template"] == "later" and action["decided_at"] == format_ts(T0 + HOUR)
    assert action["event_ts"] == format_ts(T0)
    assert one(decisions(out, "exited"))["detail"] == "completed"
    assert c.state.next_due_ms() is None
    assert c.tick(T0 + 2 * HOUR) == []   # fires once


def test_timer_late_fires_once_with_the_late_clock() -> None:
    c = Customer(engine(WAIT))
    c.event("cart.updated", T0)
    out = c.tick(T0 + 5 * HOUR)
    assert one(actions(out))["decided_at"] == format_ts(T0 + 5 * HOUR)
    assert c.tick(T0 + 6 * HOUR) == []


def test_due_timers_fire_before_the_event_is_applied() -> None:
    c = Customer(engine(WAIT + "goal: {on: order.completed}\n"))
    c.event("cart.updated", T0)
    out = c.event("order.completed", T0 + 2 * HOUR)
    topics = [o.topic for o in out]
    # the push due at +1h goes out first, and the instance completed before the goal event arrived
    assert topics[0] == "actions.push"
    assert not decisions(out, "goal")


def test_on_timer_with_no_state_is_a_no_op() -> None:
    r = engine(WAIT).on_timer(None, "c-1", T0, T0)
    assert r.state is None and r.outputs == []


# ---------------------------------------------------------------------------- wait_for
WAIT_FOR = """
journey: wf
entry: {on: cart.updated}
start: email
nodes:
  email: {send: email, template: reminder, next: wait_open}
  wait_open: {wait_for: message.opened, timeout: 24h, on_event: thanks, on_timeout: push}
  thanks: {send: inapp, template: thanks, next: done}
  push: {send: push, template: nudge, next: done}
  done: {exit: completed}
"""


def test_wait_for_matching_feedback_takes_on_event() -> None:
    c = Customer(engine(WAIT_FOR))
    aid = one(actions(c.event("cart.updated", T0)))["action_id"]
    out = c.event("message.opened", T0 + 2 * HOUR, action_id=aid, channel="email")
    assert [a["template"] for a in actions(out)] == ["thanks"]
    assert c.state.instances == {}
    assert c.tick(T0 + 2 * DAY) == []  # the timeout was cancelled


def test_wait_for_times_out_at_the_timeout_and_not_before() -> None:
    c = Customer(engine(WAIT_FOR))
    c.event("cart.updated", T0)
    assert c.tick(T0 + 24 * HOUR - 1) == []
    out = c.tick(T0 + 24 * HOUR)
    assert [a["template"] for a in actions(out)] == ["nudge"]
    assert one(actions(out))["decided_at"] == format_ts(T0 + 24 * HOUR)


def test_wait_for_ignores_feedback_about_other_actions() -> None:
    other = WAIT_FOR.replace("journey: wf", "journey: zz-other").replace("template: reminder", "template: other")
    c = Customer(engine(WAIT_FOR, other))
    out = c.event("cart.updated", T0)
    ids = {a["template"]: a["action_id"] for a in actions(out)}
    # an open of the *other* journey's email only resumes that journey
    out = c.event("message.opened", T0 + HOUR, action_id=ids["other"], channel="email")
    assert [(a["journey"], a["template"]) for a in actions(out)] == [("zz-other", "thanks")]
    # an open of some unknown action resumes nothing
    assert not actions(c.event("message.opened", T0 + 2 * HOUR, action_id="a-unknown", channel="email"))
    assert "wf" in c.state.instances
    assert [a["template"] for a in actions(c.tick(T0 + 24 * HOUR))] == ["nudge"]


def test_wait_for_ignores_other_feedback_types_for_the_same_action() -> None:
    c = Customer(engine(WAIT_FOR))
    aid = one(actions(c.event("cart.updated", T0)))["action_id"]
    assert not actions(c.event("message.delivered", T0 + MIN, action_id=aid, channel="email"))
    assert not actions(c.event("message.clicked", T0 + 2 * MIN, action_id=aid, channel="email"))
    assert "wf" in c.state.instances


def test_feedback_after_the_timeout_does_not_resume() -> None:
    c = Customer(engine(WAIT_FOR))
    aid = one(actions(c.event("cart.updated", T0)))["action_id"]
    out = c.event("message.opened", T0 + 25 * HOUR, action_id=aid, channel="email")
    # the timeout is due first: push, then the late open finds nothing waiting
    assert [a["template"] for a in actions(out)] == ["nudge"]


def test_wait_for_a_plain_event_type_matches_any_such_event() -> None:
    j = WAIT_FOR.replace("wait_for: message.opened", "wait_for: page.viewed")
    c = Customer(engine(j))
    c.event("cart.updated", T0)
    assert [a["template"] for a in actions(c.event("page.viewed", T0 + HOUR))] == ["thanks"]


# ---------------------------------------------------------------------------- the send gate
def test_journey_holdout_100_walks_but_never_contacts() -> None:
    c = Customer(engine(WAIT_FOR.replace("start: email", "holdout: 100%\nstart: email")))
    out = c.event("cart.updated", T0)
    assert not actions(out)
    held = one(decisions(out, "holdout"))
    assert (held["node"], held["channel"]) == ("email", "email")
    assert "action_id" not in held
    # it still walks the journey: waiting, then the timeout path, also held out
    assert "wf" in c.state.instances
    out = c.tick(T0 + 24 * HOUR)
    assert not actions(out)
    assert one(decisions(out, "holdout"))["node"] == "push"
    assert one(decisions(out, "exited"))


def test_journey_holdout_is_deterministic_and_proportional() -> None:
    eng = engine(INSTANT.replace("start: email", "holdout: 10%\nstart: email"))
    held = 0
    for i in range(1000):
        cid = f"c-{i}"
        out1 = eng.on_event(None, ev("cart.updated", cid, T0, "e-1"), T0).outputs
        out2 = eng.on_event(None, ev("cart.updated", cid, T0, "e-2"), T0).outputs
        h1, h2 = bool(decisions(out1, "holdout")), bool(decisions(out2, "holdout"))
        assert h1 == h2 and h1 != bool(actions(out1))
        held += h1
    assert 60 <= held <= 140, held


def test_global_holdout() -> None:
    c = Customer(engine(INSTANT, policies=Policies(global_holdout=1.0)))
    out = c.event("cart.updated", T0)
    assert not actions(out) and one(decisions(out, "holdout"))["detail"] == "global holdout"


def test_globally_held_out_customers_enter_in_the_holdout_group() -> None:
    """SPEC §3: globally held-out customers are in the holdout group of every statistic."""
    from orchestrator.reports.stats import from_decisions
    eng = engine(GOAL, policies=Policies(global_holdout=0.5))
    lifecycle, log = [], []
    for i in range(40):
        cid = f"c-{i}"
        for e, now in ((ev("cart.updated", cid, T0), T0), (ev("order.completed", cid, T0 + HOUR), T0 + HOUR)):
            r = eng.on_event(None if e.type == "cart.updated" else state, e, now)
            state = r.state
            lifecycle += r.lifecycle
            log += r.outputs
    entered = decisions(log, "entered")
    held = {d["customer_id"] for d in decisions(log, "holdout")}
    assert 5 < len(held) < 35
    assert {d["customer_id"] for d in entered if d["detail"] == "holdout"} == held
    assert {d["customer_id"] for d in actions(log)}.isdisjoint(held)
    # The worker's counters (lifecycle) and `orchestrator stats` (the decisions) agree.
    groups = [lc.group for lc in lifecycle if lc.kind == "entered"]
    report = one(from_decisions(decisions(log)))
    assert report["entries"] == {"treatment": groups.count("treatment"), "holdout": len(held), "total": 40}
    assert report["goals"]["holdout"] == len(held) == sum(1 for lc in lifecycle if lc.kind == "goal"
                                                          and lc.group == "holdout")


def test_journey_holdout_detail_is_kept_when_the_global_holdout_also_applies() -> None:
    held = INSTANT.replace("start: email", "holdout: 100%\nstart: email")
    c = Customer(engine(held, policies=Policies(global_holdout=1.0)))
    out = c.event("cart.updated", T0)
    assert one(decisions(out, "entered"))["detail"] == "holdout"
    assert one(decisions(out, "holdout"))["detail"] == "journey holdout"


def test_opt_in_channel_without_consent_is_not_sent() -> None:
    sms = INSTANT.replace("send: email", "send: sms")
    pol = Policies(consent={"sms": "opt_in", "email": "opt_out"})
    c = Customer(engine(sms, policies=pol))
    out = c.event("cart.updated", T0)
    assert not actions(out)
    d = one(decisions(out, "no_consent"))
    assert (d["channel"], d["node"], d["journey"]) == ("sms", "email", "instant")
    # consent given -> sent
    c2 = Customer(engine(sms, policies=pol), "c-2")
    c2.event("profile.updated", T0 - 1, consent={"sms": True})
    assert one(actions(c2.event("cart.updated", T0)))["channel"] == "sms"
    # consent present but not exactly true -> still no
    c3 = Customer(engine(sms, policies=pol), "c-3")
    c3.event("profile.updated", T0 - 1, consent={"sms": "yes"})
    assert decisions(c3.event("cart.updated", T0), "no_consent")


def test_opt_out_channel_is_sent_unless_consent_is_false() -> None:
    pol = Policies(consent={"email": "opt_out"})
    c = Customer(engine(INSTANT, policies=pol))
    assert actions(c.event("cart.updated", T0))
    c2 = Customer(engine(INSTANT, policies=pol), "c-2")
    c2.event("profile.updated", T0 - 1, consent={"email": False})
    out = c2.event("cart.updated", T0)
    assert not actions(out) and decisions(out, "no_consent")


def test_gate_order_consent_before_holdout() -> None:
    sms = INSTANT.replace("send: email", "send: sms").replace("start: email", "holdout: 100%\nstart: email")
    c = Customer(engine(sms, policies=Policies(consent={"sms": "opt_in"})))
    out = c.event("cart.updated", T0)
    assert [d["outcome"] for d in decisions(out) if d["node"] == "email" and d["channel"]] == ["no_consent"]


def test_unsubscribed_feedback_revokes_consent_and_suppresses() -> None:
    sms_wait = """
    journey: s
    entry: {on: cart.updated}
    start: a
    nodes:
      a: {send: sms, template: t1, next: w}
      w: {wait: 1h, next: b}
      b: {send: sms, template: t2}
    """
    c = Customer(engine(sms_wait))
    aid = one(actions(c.event("cart.updated", T0)))["action_id"]
    out = c.event("message.unsubscribed", T0 + MIN, action_id=aid, channel="sms")
    sup = one(suppressions(out))
    assert (sup["reason"], sup["channels"], sup["cancels"]) == ("unsubscribed", ["sms"], [aid])
    assert c.state.profile["consent"] == {"sms": False}
    out = c.tick(T0 + HOUR)
    assert not actions(out) and one(decisions(out, "no_consent"))


def test_send_best_picks_the_engaged_channel_among_consented() -> None:
    first = INSTANT.replace("journey: instant", "journey: first").replace("on: cart.updated", "on: signup.completed")
    best = """
    journey: best
    entry: {on: cart.updated}
    start: b
    nodes:
      b: {send: best, channels: [push, email], template: t}
    """
    eng = engine(first, best, policies=Policies(consent={"sms": "opt_in"}))
    # engaged on email: sent and opened -> email beats an unknown push
    c = Customer(eng, "c-open")
    aid = one(actions(c.event("signup.completed", T0 - DAY)))["action_id"]
    c.event("message.opened", T0 - DAY + HOUR, action_id=aid, channel="email")
    assert one(actions(c.event("cart.updated", T0)))["channel"] == "email"
    # sent but never opened -> push
    c2 = Customer(eng, "c-cold")
    c2.event("signup.completed", T0 - DAY)
    assert one(actions(c2.event("cart.updated", T0)))["channel"] == "push"
    # nothing known: ties keep the listed order
    assert one(actions(Customer(eng, "c-new").event("cart.updated", T0)))["channel"] == "push"
    # only consented channels are candidates
    sms_best = best.replace("journey: best", "journey: best2").replace("[push, email]", "[sms, email]")
    c3 = Customer(engine(sms_best, policies=Policies(consent={"sms": "opt_in"})), "c-3")
    assert one(actions(c3.event("cart.updated", T0)))["channel"] == "email"


def five_journeys() -> list[str]:
    return [INSTANT.replace("journey: instant", f"journey: j{i}").replace("template: t", f"template: t{i}")
            for i in range(5)]


def test_frequency_cap_across_journeys() -> None:
    pol = Policies(frequency=(FrequencyRule(3, 7 * DAY),))
    c = Customer(engine(*five_journeys(), policies=pol))
    out = c.event("cart.updated", T0)
    assert len(actions(out)) == 3
    capped = decisions(out, "frequency_cap")
    assert len(capped) == 2
    assert all("action_id" not in d and d["channel"] == "email" for d in capped)
    assert len(decisions(out, "sent")) == 3


def test_frequency_cap_window_rolls() -> None:
    pol = Policies(frequency=(FrequencyRule(1, 7 * DAY),))
    again = INSTANT.replace("entry: {on: cart.updated}", "entry: {on: cart.updated, reentry: always}")
    c = Customer(engine(again, policies=pol))
    assert actions(c.event("cart.updated", T0))
    assert decisions(c.event("cart.updated", T0 + 7 * DAY - 1), "frequency_cap")
    assert actions(c.event("cart.updated", T0 + 7 * DAY + 1))


def test_per_channel_frequency_cap() -> None:
    pol = Policies(frequency=(FrequencyRule(1, DAY, "push"),))
    js = [INSTANT.replace("journey: instant", f"journey: p{i}").replace("send: email", "send: push")
          for i in range(2)] + [INSTANT]
    out = Customer(engine(*js, policies=pol)).event("cart.updated", T0)
    assert sorted(a["channel"] for a in actions(out)) == ["email", "push"]
    assert one(decisions(out, "frequency_cap"))["channel"] == "push"


def test_holdout_sends_do_not_count_against_the_cap() -> None:
    pol = Policies(frequency=(FrequencyRule(1, DAY),))
    held = INSTANT.replace("journey: instant", "journey: a-held").replace("start: email", "holdout: 100%\nstart: email")
    out = Customer(engine(held, INSTANT, policies=pol)).event("cart.updated", T0)
    assert one(actions(out))["journey"] == "instant"


QUIET = Policies(quiet_hours=QuietHours(("sms", "push"), 21 * 60, 8 * 60))
PUSH_NOW = """
journey: night
entry: {on: cart.updated}
goal: {on: order.completed, suppress: [push]}
start: p
nodes:
  p: {send: push, template: tonight, next: done}
  done: {exit: completed}
"""


def test_quiet_hours_defer_to_the_window_end_in_the_customer_timezone() -> None:
    c = Customer(engine(PUSH_NOW, policies=QUIET))
    t_night = ts("2026-01-15T03:00:00Z")      # 22:00 in New York (EST)
    c.event("profile.updated", t_night - HOUR, timezone="America/New_York")
    out = c.event("cart.updated", t_night, eid="e-night")
    assert not actions(out)
    deferred = one(decisions(out, "quiet_hours_deferred"))
    resume = ts("2026-01-15T13:00:00Z")       # 08:00 in New York
    assert deferred["channel"] == "push" and deferred["action_id"].startswith("a-")
    assert format_ts(resume) in deferred["detail"]
    assert c.state.next_due_ms() == resume
    assert c.tick(resume - 1) == []
    out = c.tick(resume)
    action = one(actions(out))
    assert action["action_id"] == deferred["action_id"]
    assert action["decided_at"] == format_ts(resume)
    assert action["template"] == "tonight"
    assert c.state.instances == {}


def test_quiet_hours_default_to_utc_and_other_timezones() -> None:
    eng = engine(PUSH_NOW, policies=QUIET)
    # UTC customer at 22:00Z: deferred to 08:00Z next day
    c = Customer(eng, "c-utc")
    out = c.event("cart.updated", ts("2026-01-15T22:00:00Z"))
    assert c.state.next_due_ms() == ts("2026-01-16T08:00:00Z") and decisions(out, "quiet_hours_deferred")
    # Tokyo customer at 15:00Z = 00:00 JST: deferred to 08:00 JST = 23:00Z the same UTC day
    c = Customer(eng, "c-tokyo")
    c.event("profile.updated", ts("2026-01-15T10:00:00Z"), timezone="Asia/Tokyo")
    c.event("cart.updated", ts("2026-01-15T15:00:00Z"))
    assert c.state.next_due_ms() == ts("2026-01-15T23:00:00Z")
    # 17:00Z is 09:00 for a Los Angeles customer: sent at once (02:00 in Tokyo: deferred)
    c = Customer(eng, "c-la")
    c.event("profile.updated", ts("2026-01-15T10:00:00Z"), timezone="America/Los_Angeles")
    assert actions(c.event("cart.updated", ts("2026-01-15T17:00:00Z")))
    c = Customer(eng, "c-tokyo-2")
    c.event("profile.updated", ts("2026-01-15T10:00:00Z"), timezone="Asia/Tokyo")
    assert decisions(c.event("cart.updated", ts("2026-01-15T17:00:00Z")), "quiet_hours_deferred")
    # an unknown timezone falls back to UTC
    c = Customer(eng, "c-bad-tz")
    c.event("profile.updated", ts("2026-01-15T10:00:00Z"), timezone="Mars/Olympus")
    assert decisions(c.event("cart.updated", ts("2026-01-15T23:30:00Z")), "quiet_hours_deferred")


def test_quiet_hours_only_apply_to_their_channels() -> None:
    c = Customer(engine(INSTANT, policies=QUIET))
    assert actions(c.event("cart.updated", ts("2026-01-15T23:00:00Z")))


def test_quiet_hours_window_edges() -> None:
    eng = engine(PUSH_NOW.replace("entry: {on: cart.updated}", "entry: {on: cart.updated, reentry: always}"),
                 policies=QUIET)
    for at, quiet in [("2026-01-15T20:59:59Z", False), ("2026-01-15T21:00:00Z", True),
                      ("2026-01-16T07:59:59Z", True), ("2026-01-16T08:00:00Z", False)]:
        out = eng.on_event(None, ev("cart.updated", "c-1", ts(at)), ts(at)).outputs
        assert bool(decisions(out, "quiet_hours_deferred")) is quiet, at
        assert bool(actions(out)) is not quiet, at


def test_quiet_hours_window_within_one_day() -> None:
    pol = Policies(quiet_hours=QuietHours(("push",), 13 * 60, 15 * 60))   # 13:00-15:00 local
    c = Customer(engine(PUSH_NOW, policies=pol))
    c.event("cart.updated", ts("2026-01-15T14:10:00Z"))
    assert c.state.next_due_ms() == ts("2026-01-15T15:00:00Z")
    assert actions(Customer(engine(PUSH_NOW, policies=pol), "c-2").event("cart.updated", ts("2026-01-15T15:00:00Z")))


def test_gate_order_holdout_and_cap_before_quiet_hours() -> None:
    night = ts("2026-01-15T23:00:00Z")
    held = PUSH_NOW.replace("start: p", "holdout: 100%\nstart: p")
    out = Customer(engine(held, policies=QUIET)).event("cart.updated", night)
    assert decisions(out, "holdout") and not decisions(out, "quiet_hours_deferred")
    capped = Policies(quiet_hours=QUIET.quiet_hours, frequency=(FrequencyRule(0, DAY),))
    out = Customer(engine(PUSH_NOW, policies=capped)).event("cart.updated", night)
    assert decisions(out, "frequency_cap") and not decisions(out, "quiet_hours_deferred")


def test_goal_while_deferred_cancels_the_deferred_send() -> None:
    c = Customer(engine(PUSH_NOW, policies=QUIET))
    night = ts("2026-01-15T23:00:00Z")
    deferred = one(decisions(c.event("cart.updated", night), "quiet_hours_deferred"))
    out = c.event("order.completed", night + HOUR)
    sup = one(suppressions(out))
    assert sup["reason"] == "goal" and sup["channels"] == ["push"]
    assert deferred["action_id"] in sup["cancels"]
    assert one(decisions(out, "goal"))
    assert c.tick(ts("2026-01-16T08:00:00Z")) == []
    assert not actions(c.log)


def test_unsubscribe_while_deferred_cancels_the_deferred_send() -> None:
    c = Customer(engine(PUSH_NOW, policies=QUIET))
    night = ts("2026-01-15T23:00:00Z")
    deferred = one(decisions(c.event("cart.updated", night), "quiet_hours_deferred"))
    out = c.event("message.unsubscribed", night + MIN, action_id=deferred["action_id"], channel="push")
    sup = one(suppressions(out))
    assert (sup["reason"], sup["channels"], sup["cancels"]) == ("unsubscribed", ["push"], [deferred["action_id"]])
    out = c.tick(ts("2026-01-16T08:00:00Z"))
    assert not actions(out) and one(decisions(out, "no_consent"))


# ---------------------------------------------------------------------------- exclusivity groups
def grouped(jid: str, entry: str, priority: int) -> str:
    return f"""
    journey: {jid}
    priority: {priority}
    group: promos
    entry: {{on: {entry}}}
    start: s
    nodes:
      s: {{send: email, template: {jid}, next: w}}
      w: {{wait: 1d, next: done}}
      done: {{exit: completed}}
    """


def test_lower_priority_entry_is_refused_while_the_group_is_held() -> None:
    c = Customer(engine(grouped("mid", "cart.updated", 10), grouped("low", "page.viewed", 5)))
    assert actions(c.event("cart.updated", T0))
    out = c.event("page.viewed", T0 + HOUR)
    refused = one(decisions(out, "entry_refused"))
    assert (refused["journey"], refused["detail"]) == ("low", "group")     # SPEC §3 detail values
    assert not actions(out) and not decisions(out, "entered")
    assert set(c.state.instances) == {"mid"}


def test_equal_priority_does_not_preempt() -> None:
    c = Customer(engine(grouped("mid", "cart.updated", 10), grouped("peer", "page.viewed", 10)))
    c.event("cart.updated", T0)
    assert one(decisions(c.event("page.viewed", T0 + HOUR), "entry_refused"))["journey"] == "peer"


def test_higher_priority_preempts_with_suppression() -> None:
    c = Customer(engine(grouped("mid", "cart.updated", 10), grouped("top", "order.failed", 50)))
    mid_action = one(actions(c.event("cart.updated", T0)))["action_id"]
    out = c.event("order.failed", T0 + HOUR)
    sup = one(suppressions(out))
    assert (sup["reason"], sup["journey"], sup["cancels"], sup["channels"]) == \
        ("preempted", "mid", [mid_action], ["email"])
    assert one(decisions(out, "preempted"))["journey"] == "mid"
    assert one(decisions(out, "entered"))["journey"] == "top"
    assert one(actions(out))["journey"] == "top"
    assert set(c.state.instances) == {"top"}
    assert [a["journey"] for a in actions(c.tick(T0 + 3 * DAY))] == []


def test_same_event_enrols_only_the_highest_priority_of_a_group() -> None:
    c = Customer(engine(grouped("low", "cart.updated", 5), grouped("high", "cart.updated", 50),
                        INSTANT.replace("journey: instant", "journey: ungrouped")))
    out = c.event("cart.updated", T0)
    assert sorted(d["journey"] for d in decisions(out, "entered")) == ["high", "ungrouped"]
    assert one(decisions(out, "entry_refused"))["journey"] == "low"


# ---------------------------------------------------------------------------- old events, versions
def test_old_events_update_state_but_never_enrol() -> None:
    c = Customer(engine(CART))  # default max_event_age 24h
    now = T0
    c.event("profile.updated", now, ts=now - 48 * HOUR, tier="gold")
    assert c.state.profile == {"tier": "gold"}
    out = c.event("cart.updated", now + 1, ts=now - 25 * HOUR, value=500)
    assert out == [] and c.state.instances == {}
    assert actions(c.event("cart.updated", now + 2, ts=now - 23 * HOUR, value=500))


def test_max_event_age_is_a_policy() -> None:
    c = Customer(engine(CART, policies=Policies(max_event_age_ms=HOUR)))
    assert c.event("cart.updated", T0, ts=T0 - 2 * HOUR, value=500) == []
    assert actions(c.event("cart.updated", T0, ts=T0 - 30 * MIN, value=500))


def test_old_goal_event_still_ends_the_journey() -> None:
    c = Customer(engine(GOAL, policies=Policies(max_event_age_ms=HOUR)))
    c.event("cart.updated", T0)
    out = c.event("order.completed", T0 + 10 * HOUR, ts=T0 + HOUR)   # arrives 9 h late
    assert decisions(out, "goal") and c.state.instances == {}


def test_customers_in_flight_finish_on_their_version() -> None:
    v1 = journey(WAIT.replace("journey: wait-j", "journey: wait-j\nversion: 1"))
    v2 = journey(WAIT.replace("journey: wait-j", "journey: wait-j\nversion: 2").replace("template: later", "template: v2"))
    js = JourneySet([v1])
    eng = Engine(js, Policies())
    c = Customer(eng, "c-old")
    c.event("cart.updated", T0)
    js.add(v2)
    action = one(actions(c.tick(T0 + HOUR)))
    assert (action["journey_version"], action["template"]) == (1, "later")
    new = Customer(eng, "c-new")
    new.event("cart.updated", T0 + HOUR)
    action = one(actions(new.tick(T0 + 2 * HOUR)))
    assert (action["journey_version"], action["template"]) == (2, "v2")


def test_disabled_journey_takes_no_entries() -> None:
    c = Customer(engine(INSTANT.replace("journey: instant", "journey: instant\nenabled: false")))
    assert c.event("cart.updated", T0) == []


# ---------------------------------------------------------------------------- output shapes
def test_every_output_has_the_spec_shape() -> None:
    pol = Policies(consent={"sms": "opt_in"}, frequency=(FrequencyRule(2, 7 * DAY, "email"),),
                   quiet_hours=QuietHours(("push",), 21 * 60, 8 * 60))
    sms = INSTANT.replace("journey: instant", "journey: sms-j").replace("send: email", "send: sms")
    eng = engine(CART, GOAL, WAIT_FOR, sms, PUSH_NOW, *five_journeys()[:2],
                 grouped("mid", "page.viewed", 10), grouped("low", "page.viewed", 5),
                 grouped("top", "order.failed", 50),
                 INSTANT.replace("journey: instant", "journey: held").replace("start: email", "holdout: 100%\nstart: email"),
                 policies=pol)
    c = Customer(eng)
    night = ts("2026-01-15T23:00:00Z")
    c.event("cart.updated", night, value=80)
    c.event("page.viewed", night + MIN)
    c.event("order.failed", night + 2 * MIN)
    c.tick(night + 2 * DAY)
    c.event("account.closed", night + 3 * DAY)
    c.event("profile.erased", night + 4 * DAY)
    outcomes = set()
    for o in c.log:
        assert o.key == "c-1"
        json.dumps(o.value)
        if o.topic == "decisions":
            keys = set(o.value)
            assert DECISION_KEYS <= keys <= DECISION_KEYS | {"action_id"}, keys
            assert o.value["outcome"] in DECISION_OUTCOMES
            assert parse_ts_ms(o.value["ts"]) is not None
            outcomes.add(o.value["outcome"])
        elif o.topic == "suppressions":
            assert set(o.value) == SUPPRESSION_KEYS
            assert o.value["reason"] in SUPPRESSION_REASONS
            assert o.value["suppression_id"].startswith("s-")
        else:
            assert o.topic.startswith("actions.") and o.topic.split(".", 1)[1] in CHANNELS
            assert set(o.value) == ACTION_KEYS
            assert o.topic == f"actions.{o.value['channel']}"
    assert {"entered", "sent", "holdout", "no_consent", "frequency_cap", "quiet_hours_deferred",
            "entry_refused", "preempted", "exited"} <= outcomes


def test_decisions_and_actions_carry_the_engine_clock_not_the_wall_clock() -> None:
    then = ts("2030-05-01T09:30:00Z")
    out = Customer(engine(INSTANT)).event("cart.updated", then)
    assert {o.value.get("ts", o.value.get("decided_at")) for o in out} == {format_ts(then)}


def test_instance_of_a_journey_no_longer_loaded_exits_instead_of_waiting_forever():
    from orchestrator.core import Engine, JourneySet, Policies, parse_journey
    from orchestrator.core.events import Event
    src = ("journey: gone\nversion: 1\nentry: {on: go}\nstart: w\n"
           "nodes:\n  w: {wait: 1h, next: m}\n  m: {send: email, template: t}\n")
    j = parse_journey(src, "gone.yaml", channels=Policies().channels)
    t0 = 1_795_000_000_000
    r = Engine(JourneySet([j])).on_event(None, Event("e1", "c1", "go", t0), t0)
    assert r.state.next_due_ms() == t0 + 3_600_000
    later = Engine(JourneySet([]))                 # the definition was removed before the wait ended
    r2 = later.on_timer(r.state, "c1", t0 + 3_600_000, t0 + 3_600_000)
    assert [o.value["outcome"] for o in r2.outputs] == ["exited"]
    assert r2.outputs[0].value["detail"] == "journey_unavailable"
    assert r2.state.next_due_ms() is None and not r2.state.instances


SHADOW_LIVE = ("journey: promo\nversion: {v}\n{extra}entry: {{on: go, reentry: always}}\ngroup: g\n"
               "start: m\nnodes:\n  m: {{send: {ch}, template: t{v}, next: done}}\n  done: {{exit: completed}}\n")


def _j(v: int, ch: str = "email", extra: str = ""):
    from orchestrator.core import Policies, parse_journey
    return parse_journey(SHADOW_LIVE.format(v=v, ch=ch, extra=extra), f"promo-{v}.yaml", channels=Policies().channels)


def test_shadow_version_records_decisions_and_sends_nothing():
    from orchestrator.core import Engine, JourneySet, Policies
    from orchestrator.core.events import Event
    from orchestrator.core.policies import FrequencyRule
    policies = Policies(frequency=(FrequencyRule(1, 86_400_000),))
    engine = Engine(JourneySet([_j(1), _j(2, ch="sms", extra="shadow: true\n")]), policies)
    t0 = 1_795_000_000_000
    r = engine.on_event(None, Event("e1", "c1", "go", t0), t0)
    live = [o.value for o in r.outputs if o.topic == "decisions" and not o.value.get("shadow")]
    shadow = [o.value for o in r.outputs if o.topic == "decisions" and o.value.get("shadow")]
    assert [d["outcome"] for d in live] == ["entered", "sent", "exited"]
    # The shadow would have sent an sms; its send does not count, so the live send passes the 1/day cap.
    assert [d["outcome"] for d in shadow] == ["entered", "sent", "exited"]
    assert [d["channel"] for d in shadow if d["outcome"] == "sent"] == ["sms"]
    assert {d["journey_version"] for d in shadow} == {2}
    assert [o.topic for o in r.outputs if o.topic.startswith("actions.")] == ["actions.email"]
    assert len(r.state.sends) == 1                        # only the live send counts against caps
    assert [lc.version for lc in r.lifecycle] == [1, 1]   # statistics ignore the shadow


def test_a_shadow_cannot_share_the_live_version_number_and_promotion_replaces_it():
    from orchestrator.core import JourneySet
    js = JourneySet([_j(1)])
    assert js.add(_j(1, extra="shadow: true\n")).startswith("ignored")
    assert js.add(_j(2, extra="shadow: true\n")) == "added"
    assert js.shadow["promo"].version == 2
    assert js.add(_j(2)) == "replaced"                    # v2 promoted to live
    assert "promo" not in js.shadow and js.current["promo"].version == 2


def test_a_send_deferred_by_quiet_hours_keeps_the_params_and_trigger_of_its_event():
    from orchestrator.core import Engine, JourneySet, parse_journey
    from orchestrator.core.events import Event
    from orchestrator.core.policies import Policies, QuietHours
    policies = Policies(quiet_hours=QuietHours(("sms",), 21 * 60, 8 * 60))
    src = ("journey: late\nversion: 1\nentry: {on: go}\nstart: m\n"
           "nodes:\n  m: {send: sms, template: t, params: {v: event.properties.v}}\n")
    engine = Engine(JourneySet([parse_journey(src, "late.yaml", channels=policies.channels)]), policies)
    night = 1_795_388_400_000            # 2026-11-22T22:20:00Z: inside 21:00-08:00 UTC
    r = engine.on_event(None, Event("e-night", "c1", "go", night, {"v": 42}), night)
    assert [o.value["outcome"] for o in r.outputs if o.topic == "decisions"] == ["entered", "quiet_hours_deferred"]
    due = r.state.next_due_ms()
    r2 = engine.on_timer(r.state, "c1", due, due)
    [action] = [o.value for o in r2.outputs if o.topic == "actions.sms"]
    assert action["params"] == {"v": 42}
    assert action["trigger_event_id"] == "e-night"
    assert action["decided_at"].endswith("T08:00:00.000Z")


# ---------------------------------------------------------------------------- lists of event types (SPEC §4)
ANY_OF = """
journey: any
entry: {on: [cart.updated, checkout.started]}
goal: {on: [order.completed, subscription.started], suppress: [push]}
exit: {on: [account.closed, cart.emptied]}
start: email
nodes:
  email: {send: email, template: t, next: wait}
  wait: {wait_for: [message.opened, message.clicked, app.opened], timeout: 1d, on_event: thanks, on_timeout: done}
  thanks: {send: push, template: thanks, next: done}
  done: {exit: completed}
"""


@pytest.mark.parametrize("etype", ["cart.updated", "checkout.started"])
def test_any_entry_type_of_a_list_enrols(etype: str) -> None:
    eng = engine(ANY_OF)
    assert [j.id for j in eng.journeys.by_entry[etype]] == ["any"]
    c = Customer(eng)
    assert one(decisions(c.event(etype, T0), "entered"))["journey"] == "any"


@pytest.mark.parametrize("etype", ["order.completed", "subscription.started"])
def test_any_goal_type_of_a_list_is_the_goal(etype: str) -> None:
    c = Customer(engine(ANY_OF))
    c.event("cart.updated", T0)
    out = c.event(etype, T0 + MIN)
    assert one(decisions(out, "goal"))["journey"] == "any" and c.state.instances == {}


@pytest.mark.parametrize("etype", ["account.closed", "cart.emptied"])
def test_any_exit_type_of_a_list_exits(etype: str) -> None:
    c = Customer(engine(ANY_OF))
    c.event("cart.updated", T0)
    assert one(decisions(c.event(etype, T0 + MIN), "exited"))["detail"] == "exit"


@pytest.mark.parametrize("kind", ["message.opened", "message.clicked"])
def test_any_wait_for_type_of_a_list_ends_the_wait(kind: str) -> None:
    c = Customer(engine(ANY_OF))
    aid = one(actions(c.event("cart.updated", T0)))["action_id"]
    # feedback about another action of the customer is not about this instance: it does not count
    assert not actions(c.event(kind, T0 + MIN, action_id="a-other", channel="email"))
    assert one(actions(c.event(kind, T0 + 2 * MIN, action_id=aid, channel="email")))["template"] == "thanks"


def test_a_plain_event_type_in_a_wait_for_list_counts_for_any_event_of_that_type() -> None:
    c = Customer(engine(ANY_OF))
    c.event("checkout.started", T0)
    assert one(actions(c.event("app.opened", T0 + MIN)))["template"] == "thanks"


def test_an_entry_type_listed_by_two_journeys_is_indexed_for_both() -> None:
    other = INSTANT.replace("journey: instant", "journey: zz").replace("cart.updated", "[checkout.started, x.y]")
    eng = engine(ANY_OF, other)
    assert [j.id for j in eng.journeys.by_entry["checkout.started"]] == ["any", "zz"]
    assert [j.id for j in eng.journeys.by_entry["x.y"]] == ["zz"]
    assert "page.viewed" not in eng.journeys.by_entry


# ---------------------------------------------------------------------------- known profile fields
def test_an_invalid_timezone_is_kept_reported_and_read_as_utc() -> None:
    pol = Policies(quiet_hours=QuietHours(("push",), 21 * 60, 8 * 60))
    c = Customer(engine(PUSH_NOW, policies=pol))
    night_utc = ts("2026-01-15T22:00:00Z")
    r = c.engine.on_event(None, ev("profile.updated", "c-1", night_utc - HOUR, timezone="Mars/Olympus_Mons"),
                          night_utc - HOUR)
    assert r.invalid_fields == ("timezone",)
    assert r.state.profile["timezone"] == "Mars/Olympus_Mons"
    c.state = r.state
    d = one(decisions(c.event("cart.updated", night_utc), "quiet_hours_deferred"))
    assert d["detail"] == "deferred to 2026-01-16T08:00:00.000Z"                  # UTC's 08:00
    ok = c.engine.on_event(c.state, ev("profile.updated", "c-1", T0, timezone="Europe/Oslo"), T0 + 1)
    assert ok.invalid_fields == ()


# ---------------------------------------------------------------------------- entry.max_entries (SPEC §4.1)
LIMITED = """
journey: limited
version: 1
entry: {on: cart.updated, reentry: always, max_entries: 2}
start: email
nodes:
  email: {send: email, template: t, next: done}
  done: {exit: completed}
"""


def test_max_entries_refuses_the_entry_after_the_last_allowed_one() -> None:
    c = Customer(engine(LIMITED))
    assert actions(c.event("cart.updated", T0)) and actions(c.event("cart.updated", T0 + HOUR))
    out = c.event("cart.updated", T0 + 2 * HOUR)
    assert refused_only(out, "max_entries")
    refused = one(decisions(out))
    assert set(refused) == DECISION_KEYS and (refused["journey"], refused["node"]) == ("limited", None)
    assert refused_only(c.event("cart.updated", T0 + 300 * DAY), "max_entries")      # for good


def test_max_entries_counts_entries_over_all_versions_of_the_journey() -> None:
    v1 = LIMITED.replace(", max_entries: 2", "")
    c = Customer(Engine(JourneySet([journey(v1)])))
    for i in range(3):
        assert actions(c.event("cart.updated", T0 + i * HOUR))
    assert c.state.entries == {"limited": 3}                  # one small number per journey
    # version 2 adds the cap: the three entries into version 1 count
    c.engine = Engine(JourneySet([journey(v1), journey(LIMITED.replace("version: 1", "version: 2"))]))
    assert refused_only(c.event("cart.updated", T0 + DAY), "max_entries")


def test_max_entries_survives_a_state_round_trip_and_an_erasure_forgets_it() -> None:
    c = Customer(engine(LIMITED))
    c.event("cart.updated", T0)
    c.event("cart.updated", T0 + 1)
    c.state = decode_state(encode_state(c.state))
    assert refused_only(c.event("cart.updated", T0 + 2), "max_entries")
    c.event("profile.erased", T0 + 3)
    assert actions(c.event("cart.updated", T0 + 4))            # nothing personal survives, this count neither


def test_a_state_from_before_entries_were_counted_counts_a_journey_it_left_as_one_entry() -> None:
    c = Customer(engine(LIMITED.replace("max_entries: 2", "max_entries: 1")))
    c.state = CustomerState(exits={"limited": T0 - DAY})
    assert refused_only(c.event("cart.updated", T0), "max_entries")


def test_max_entries_is_checked_before_reentry_and_a_false_entry_if_records_nothing() -> None:
    text = LIMITED.replace("reentry: always, max_entries: 2", "reentry: 30d, max_entries: 1, "
                           "if: event.properties.value > 10")
    c = Customer(engine(text))
    assert actions(c.event("cart.updated", T0, value=20))
    assert refused_only(c.event("cart.updated", T0 + HOUR, value=20), "max_entries")    # not "reentry"
    assert c.event("cart.updated", T0 + HOUR, value=5) == []


def test_a_refused_group_entry_does_not_count() -> None:
    low = LIMITED.replace("journey: limited", "journey: limited\ngroup: g\npriority: 1") \
        .replace("reentry: always, max_entries: 2", "reentry: always, max_entries: 1")
    holder = grouped("holder", "page.viewed", 5).replace("group: promos", "group: g")
    c = Customer(engine(low, holder))
    c.event("page.viewed", T0)
    assert one(decisions(c.event("cart.updated", T0 + 1), "entry_refused"))["detail"] == "group"
    c.tick(T0 + DAY)                                          # the holder leaves
    assert actions(c.event("cart.updated", T0 + DAY + 1))


# ---------------------------------------------------------------------------- exit.if (SPEC §4.1)
EXIT_IF = """
journey: upsell
entry: {on: [cart.updated, checkout.started]}
goal: {on: order.completed, suppress: [sms]}
exit: {if: profile.plan == "enterprise"}
start: email
nodes:
  email: {send: email, template: t1, next: pause}
  pause: {wait: 1d, next: push}
  push: {send: push, template: t2}
"""


def test_exit_if_ends_the_instance_on_the_event_that_makes_it_true() -> None:
    c = Customer(engine(EXIT_IF))
    aid = one(actions(c.event("cart.updated", T0)))["action_id"]
    assert c.event("page.viewed", T0 + HOUR) == []                     # still false
    out = c.event("profile.updated", T0 + 2 * HOUR, plan="enterprise")  # after this event's state update
    exited = one(decisions(out, "exited"))
    assert (exited["detail"], exited["node"]) == ("condition", "pause")
    sup = one(suppressions(out))                                        # as exit.on: what was used, withdrawn
    assert (sup["reason"], sup["channels"], sup["cancels"], sup["journey"]) == ("exit", ["email"], [aid], "upsell")
    assert c.state.instances == {}
    assert c.tick(T0 + 2 * DAY) == []


def test_exit_if_is_checked_on_every_event_not_only_some_types() -> None:
    text = EXIT_IF.replace('if: profile.plan == "enterprise"', "if: session.event_count >= 3")
    c = Customer(engine(text))
    c.event("cart.updated", T0)
    assert c.event("page.viewed", T0 + MIN) == []
    out = c.event("anything.at_all", T0 + 2 * MIN)
    assert one(decisions(out, "exited"))["detail"] == "condition"


def test_exit_if_true_at_entry_ends_the_instance_before_its_first_node() -> None:
    c = Customer(engine(EXIT_IF))
    c.event("profile.updated", T0 - HOUR, plan="enterprise")
    out = c.event("checkout.started", T0)
    assert [(d["outcome"], d["detail"]) for d in decisions(out)] == [("entered", "treatment"), ("exited", "condition")]
    assert not actions(out) and not suppressions(out)


def test_exit_if_is_not_checked_by_timers_and_a_goal_comes_first() -> None:
    text = EXIT_IF.replace('if: profile.plan == "enterprise"', 'if: hours_since(journey.entered_at) > 2')
    c = Customer(engine(text))
    c.event("cart.updated", T0)
    assert one(actions(c.tick(T0 + DAY)))["template"] == "t2"           # true by then, but no event came
    c = Customer(engine(text), "c-2")
    c.event("cart.updated", T0)
    out = c.event("order.completed", T0 + 3 * HOUR)                     # true too: the goal counts
    assert one(decisions(out, "goal")) and not decisions(out, "exited")


def test_exit_if_cancels_a_deferred_send() -> None:
    c = Customer(engine(EXIT_IF.replace("exit: {if:", "exit: {on: account.closed, if:"), policies=QUIET))
    night = ts("2026-01-15T23:00:00Z")
    c.event("cart.updated", night)
    out = c.tick(night + DAY)                                           # the push: quiet hours
    deferred = one(decisions(out, "quiet_hours_deferred"))
    out = c.event("profile.updated", night + DAY + MIN, plan="enterprise")
    assert deferred["action_id"] in one(suppressions(out))["cancels"]
    assert c.tick(ts("2026-01-17T08:00:00Z")) == []


# ---------------------------------------------------------------------------- wait_until (SPEC §4.1)
MORNING = """
journey: morning
entry: {on: cart.updated, reentry: always}
start: wake
nodes:
  wake: {wait_until: "09:00", days: [mon, tue, wed, thu, fri], next: email}
  email: {send: email, template: good-morning, next: done}
  done: {exit: completed}
"""


def test_wait_until_waits_for_the_time_in_the_customers_timezone() -> None:
    c = Customer(engine(MORNING))
    c.event("profile.updated", T0 - HOUR, timezone="America/New_York")
    assert not actions(c.event("cart.updated", T0))                    # Tuesday 08:00 EDT (since 03-08)
    due = ts("2026-03-10T13:00:00Z")                                    # 09:00 EDT
    assert c.state.next_due_ms() == due
    assert c.tick(due - 1) == []
    action = one(actions(c.tick(due)))
    assert action["template"] == "good-morning" and action["decided_at"] == format_ts(due)


def test_wait_until_defaults_to_utc_and_skips_to_an_allowed_day() -> None:
    c = Customer(engine(MORNING))
    friday = ts("2026-03-13T10:00:00Z")
    c.event("cart.updated", friday)
    assert c.state.next_due_ms() == ts("2026-03-16T09:00:00Z")          # Monday


def test_wait_until_in_that_very_minute_goes_on_at_once() -> None:
    c = Customer(engine(MORNING))
    assert one(actions(c.event("cart.updated", ts("2026-03-10T09:00:30Z"))))["template"] == "good-morning"


def test_a_loop_through_wait_until_sends_once_per_day() -> None:
    daily = MORNING.replace("next: done}\n  done: {exit: completed}", "next: wake}")
    c = Customer(engine(daily))
    assert len(actions(c.event("cart.updated", ts("2026-03-10T09:00:30Z")))) == 1
    assert c.state.next_due_ms() == ts("2026-03-11T09:00:00Z")
    assert len(actions(c.tick(ts("2026-03-11T09:00:00Z")))) == 1         # released by its timer: once
    assert c.state.next_due_ms() == ts("2026-03-12T09:00:00Z")


def test_wait_until_across_the_dst_changes() -> None:
    early = MORNING.replace('"09:00", days: [mon, tue, wed, thu, fri]', '"02:30"')
    c = Customer(engine(early))
    c.event("profile.updated", ts("2026-03-28T12:00:00Z"), timezone="Europe/Paris")
    c.event("cart.updated", ts("2026-03-28T22:00:00Z"))                  # 23:00 CET; 02:30 is skipped
    assert c.state.next_due_ms() == ts("2026-03-29T01:00:00Z")           # released at the jump, 03:00 CEST
    c = Customer(engine(early), "c-2")
    c.event("profile.updated", ts("2026-10-24T12:00:00Z"), timezone="Europe/Paris")
    c.event("cart.updated", ts("2026-10-24T22:00:00Z"))                  # 00:00 CEST; 02:30 happens twice
    assert c.state.next_due_ms() == ts("2026-10-25T00:30:00Z")           # the first one, CEST
    assert one(actions(c.tick(ts("2026-10-25T00:30:00Z"))))
    assert c.state.instances == {}                                        # and only once


# ---------------------------------------------------------------------------- window (SPEC §4.1)
WINDOWED = """
journey: office
entry: {on: cart.updated, reentry: always}
goal: {on: order.completed, suppress: [sms]}
exit: {on: account.closed}
start: offer
nodes:
  offer:
    send: email
    template: offer-1
    params: {value: event.properties.value}
    window: {days: [mon, tue, wed, thu, fri], from: "09:00", to: "18:00"}
    next: done
  done: {exit: completed}
"""
SATURDAY = ts("2026-03-14T12:00:00Z")
MONDAY_9 = ts("2026-03-16T09:00:00Z")


def test_outside_the_window_the_send_is_deferred_to_its_next_opening() -> None:
    c = Customer(engine(WINDOWED))
    out = c.event("cart.updated", SATURDAY, eid="e-sat", value=42)
    assert not actions(out)
    deferred = one(decisions(out, "window_deferred"))
    assert set(deferred) == DECISION_KEYS | {"action_id"}
    assert (deferred["node"], deferred["channel"], deferred["detail"]) == \
        ("offer", "email", f"deferred to {format_ts(MONDAY_9)}")
    assert c.state.next_due_ms() == MONDAY_9                              # a timer: survives like any other
    c.state = decode_state(encode_state(c.state))
    assert c.tick(MONDAY_9 - 1) == []
    action = one(actions(c.tick(MONDAY_9)))
    assert action["action_id"] == deferred["action_id"]
    assert (action["params"], action["trigger_event_id"], action["decided_at"]) == \
        ({"value": 42}, "e-sat", format_ts(MONDAY_9))                     # its first attempt's params and event


def test_inside_the_window_the_send_goes_at_once() -> None:
    c = Customer(engine(WINDOWED))
    assert one(actions(c.event("cart.updated", ts("2026-03-16T17:59:59Z"))))
    c = Customer(engine(WINDOWED), "c-2")
    assert decisions(c.event("cart.updated", ts("2026-03-16T18:00:00Z")), "window_deferred")


def test_the_whole_gate_runs_again_when_the_window_opens() -> None:
    pol = Policies(frequency=(FrequencyRule(1, 7 * DAY),))
    c = Customer(engine(WINDOWED, INSTANT.replace("cart.updated", "page.viewed"), policies=pol))
    assert decisions(c.event("cart.updated", SATURDAY), "window_deferred")
    assert actions(c.event("page.viewed", SATURDAY + HOUR))               # another journey's send: the cap is full
    out = c.tick(MONDAY_9)
    assert one(decisions(out, "frequency_cap"))["node"] == "offer" and not actions(out)
    c = Customer(engine(WINDOWED, policies=Policies(consent={"email": "opt_in"})), "c-2")
    c.event("profile.updated", SATURDAY - HOUR, consent={"email": True})
    c.event("cart.updated", SATURDAY)
    c.event("profile.updated", SATURDAY + HOUR, consent={"email": False})
    assert one(decisions(c.tick(MONDAY_9), "no_consent"))


@pytest.mark.parametrize("etype, reason", [("order.completed", "goal"), ("account.closed", "exit")])
def test_goal_and_exit_cancel_a_window_deferral(etype: str, reason: str) -> None:
    c = Customer(engine(WINDOWED))
    deferred = one(decisions(c.event("cart.updated", SATURDAY), "window_deferred"))
    sup = one(suppressions(c.event(etype, SATURDAY + HOUR)))
    assert sup["reason"] == reason and deferred["action_id"] in sup["cancels"]
    assert c.tick(MONDAY_9) == [] and not actions(c.log)


def test_preemption_cancels_a_window_deferral() -> None:
    low = WINDOWED.replace("journey: office", "journey: office\ngroup: g\npriority: 1")
    high = grouped("urgent", "page.viewed", 9).replace("group: promos", "group: g")
    c = Customer(engine(low, high))
    deferred = one(decisions(c.event("cart.updated", SATURDAY), "window_deferred"))
    out = c.event("page.viewed", SATURDAY + HOUR)
    sup = next(s for s in suppressions(out) if s["reason"] == "preempted")
    assert sup["journey"] == "office" and sup["cancels"] == [deferred["action_id"]] and sup["channels"] == ["email"]
    assert [a["journey"] for a in actions(c.log)] == ["urgent"]


def test_a_held_out_customer_waits_for_the_window_too() -> None:
    c = Customer(engine(WINDOWED.replace("start: offer", "holdout: 100%\nstart: offer")))
    assert decisions(c.event("cart.updated", SATURDAY), "window_deferred")
    assert one(decisions(c.tick(MONDAY_9), "holdout"))


def test_window_and_quiet_hours_both_apply() -> None:
    text = WINDOWED.replace("send: email", "send: push").replace('from: "09:00", to: "18:00"',
                                                                 'from: "20:00", to: "23:00"')
    c = Customer(engine(text, policies=QUIET))
    monday_noon = ts("2026-03-16T12:00:00Z")
    assert one(decisions(c.event("cart.updated", monday_noon), "window_deferred"))["detail"] == \
        "deferred to 2026-03-16T20:00:00.000Z"
    out = c.tick(ts("2026-03-16T20:00:00Z"))
    assert one(actions(out))
    late = Customer(engine(text, policies=QUIET), "c-2")
    assert decisions(late.event("cart.updated", ts("2026-03-16T21:30:00Z")), "quiet_hours_deferred")
    out = late.tick(ts("2026-03-17T08:00:00Z"))                           # quiet hours end outside the window
    assert one(decisions(out, "window_deferred"))["detail"] == "deferred to 2026-03-17T20:00:00.000Z"


def test_a_window_across_the_dst_change() -> None:
    text = WINDOWED.replace('{days: [mon, tue, wed, thu, fri], from: "09:00", to: "18:00"}',
                            '{from: "02:10", to: "02:50"}')
    c = Customer(engine(text))
    c.event("profile.updated", ts("2026-03-28T12:00:00Z"), timezone="Europe/Paris")
    deferred = one(decisions(c.event("cart.updated", ts("2026-03-28T22:00:00Z")), "window_deferred"))
    # 02:10-02:50 does not exist on 2026-03-29 in Paris: the next opening is 02:10 CEST on the 30th
    assert deferred["detail"] == "deferred to 2026-03-30T00:10:00.000Z"


# ---------------------------------------------------------------------------- exempt (SPEC §4.1)
RECEIPT = """
journey: receipt
entry: {on: order.completed, reentry: always}
start: r
nodes:
  r: {send: push, template: receipt, exempt: [frequency, quiet_hours], next: done}
  done: {exit: completed}
"""


def test_an_exempt_send_skips_caps_and_quiet_hours_and_still_counts_toward_later_caps() -> None:
    pol = Policies(frequency=(FrequencyRule(1, DAY),), quiet_hours=QUIET.quiet_hours)
    c = Customer(engine(RECEIPT, INSTANT.replace("send: email", "send: push"), policies=pol))
    night = ts("2026-01-15T23:00:00Z")
    assert one(actions(c.event("order.completed", night)))["template"] == "receipt"     # quiet hours skipped
    assert one(actions(c.event("order.completed", night + MIN)))["template"] == "receipt"  # the cap skipped
    out = c.event("cart.updated", ts("2026-01-16T09:00:00Z"))             # a later, non-exempt send
    assert "2 sends on all channels" in one(decisions(out, "frequency_cap"))["detail"]


def test_exempting_one_check_keeps_the_other_and_consent_always_applies() -> None:
    pol = Policies(frequency=(FrequencyRule(0, DAY),), quiet_hours=QUIET.quiet_hours, consent={"push": "opt_in"})
    only_caps = RECEIPT.replace("exempt: [frequency, quiet_hours]", "exempt: [frequency]")
    c = Customer(engine(only_caps, policies=pol))
    c.event("profile.updated", ts("2026-01-15T12:00:00Z"), consent={"push": True})
    assert decisions(c.event("order.completed", ts("2026-01-15T23:00:00Z")), "quiet_hours_deferred")
    c = Customer(engine(RECEIPT, policies=pol), "c-2")                    # no consent given
    assert one(decisions(c.event("order.completed", T0), "no_consent"))
