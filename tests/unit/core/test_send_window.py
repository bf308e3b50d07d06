"""The decision engine: a send node's ``window``, across daylight-saving changes. Driven with explicit clock
values: no Kafka, no sleeps."""

from __future__ import annotations

import pytest

from orchestrator.core import Policies
from orchestrator.core.policies import FrequencyRule
from orchestrator.core.state import decode_state, encode_state
from orchestrator.core.timeutil import format_ts
from tests.unit.core.helpers import (
    DAY, DECISION_KEYS, HOUR, Customer, actions, decisions, engine, one, suppressions, ts,
)
from tests.unit.core.journeys_fixtures import INSTANT, QUIET, grouped


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


# A deferred send's params are its own: a send its re-run leads to evaluates its own.
THEN_ANOTHER = """
journey: two-sends
entry: {on: cart.updated, reentry: always}
start: offer
nodes:
  offer:
    send: email
    template: offer-1
    params: {which: '"offer"'}
    window: {days: [mon, tue, wed, thu, fri], from: "09:00", to: "18:00"}
    next: pause
  pause: {wait: 1h, next: reminder}
  reminder: {send: push, template: reminder-1, params: {which: '"reminder"', value: event.properties.value}, next: done}
  done: {exit: completed}
"""


@pytest.mark.parametrize("refusal", ["no_consent", "frequency_cap", "holdout"])
def test_a_refused_deferred_send_leaves_its_params_to_itself(refusal: str) -> None:
    pol = {"no_consent": Policies(consent={"email": "opt_in"}),
           "frequency_cap": Policies(frequency=(FrequencyRule(1, 7 * DAY, "email"),)),
           "holdout": Policies()}[refusal]
    text = THEN_ANOTHER.replace("start: offer", "holdout: 100%\nstart: offer") if refusal == "holdout" else THEN_ANOTHER
    c = Customer(engine(text, INSTANT.replace("cart.updated", "page.viewed"), policies=pol))
    if refusal == "no_consent":
        c.event("profile.updated", SATURDAY - HOUR, consent={"email": True})
    assert decisions(c.event("cart.updated", SATURDAY, value=42), "window_deferred")
    if refusal == "no_consent":
        c.event("profile.updated", SATURDAY + HOUR, consent={"email": False})
    elif refusal == "frequency_cap":
        assert actions(c.event("page.viewed", SATURDAY + HOUR))          # an email elsewhere fills the cap
    assert one(decisions(c.tick(MONDAY_9), refusal))["node"] == "offer"
    assert c.state.instances["two-sends"].deferred_params is None
    out = c.tick(MONDAY_9 + HOUR)
    reminder = one(decisions(out, "holdout" if refusal == "holdout" else "sent"))
    assert reminder["node"] == "reminder"
    if refusal != "holdout":
        # a timer moved the instance: no event, so event.properties.value is null
        assert one(actions(out))["params"] == {"which": "reminder", "value": None}


def test_a_deferred_send_that_goes_keeps_its_first_params_and_the_next_send_has_its_own() -> None:
    c = Customer(engine(THEN_ANOTHER))
    assert decisions(c.event("cart.updated", SATURDAY, value=42), "window_deferred")
    assert one(actions(c.tick(MONDAY_9)))["params"] == {"which": "offer"}
    assert one(actions(c.tick(MONDAY_9 + HOUR)))["params"] == {"which": "reminder", "value": None}
