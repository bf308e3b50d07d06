"""The decision engine: timers, ``wait``, ``wait_for`` and ``wait_until``. Driven with explicit clock
values: no Kafka, no sleeps."""

from __future__ import annotations

from orchestrator.core.timeutil import format_ts
from tests.unit.core.helpers import DAY, HOUR, MIN, T0, Customer, actions, decisions, engine, one, ts
from tests.unit.core.journeys_fixtures import WAIT, WAIT_FOR


# ---------------------------------------------------------------------------- timers
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
