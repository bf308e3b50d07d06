"""The decision engine: goals, ``exit.on``, ``exit.if``, ``max_touches`` and ``max_duration``. Driven with
explicit clock values: no Kafka, no sleeps."""

from __future__ import annotations

import pytest

from tests.unit.core.helpers import DAY, HOUR, MIN, T0, Customer, actions, decisions, engine, one, suppressions, ts
from tests.unit.core.journeys_fixtures import GOAL, QUIET


# ---------------------------------------------------------------------------- goal and exit
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
