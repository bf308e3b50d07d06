"""The decision engine: lists of event types in entry, goal, exit and ``wait_for`` (SPEC §4). Driven with
explicit clock values: no Kafka, no sleeps."""

from __future__ import annotations

import pytest

from tests.unit.core.helpers import MIN, T0, Customer, actions, decisions, engine, one
from tests.unit.core.journeys_fixtures import INSTANT


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
