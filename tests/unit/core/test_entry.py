"""The decision engine: entry (its condition, capture, params), re-entry and ``entry.max_entries``. Driven
with explicit clock values: no Kafka, no sleeps."""

from __future__ import annotations

import json

from orchestrator.core import Engine, JourneySet
from orchestrator.core.state import CustomerState, decode_state, encode_state
from orchestrator.core.timeutil import format_ts
from tests.unit.core.helpers import (
    ACTION_KEYS, DAY, DECISION_KEYS, HOUR, MIN, T0, Customer, actions, decisions, engine, ev, journey, one,
)
from tests.unit.core.journeys_fixtures import CART, INSTANT, grouped


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
