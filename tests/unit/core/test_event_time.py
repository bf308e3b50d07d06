"""Event time: a decision depends on the input's time, never on when it is decided (docs/journeys.md#time).

Each test decides the same input twice, once on time and once late (the decider's clock minutes
or hours behind), and asserts the same decisions; and the cases that went wrong when a worker
lagging behind its input decided on its wall clock.
"""

from __future__ import annotations

from orchestrator.core.timeutil import format_ts
from tests.unit.core.helpers import HOUR, MIN, SEC, T0, Customer, actions, decisions, engine, ev

WAIT_FOR_ORDER = """
journey: remind
entry: {on: cart.updated}
start: wait_order
nodes:
  wait_order: {wait_for: order.completed, timeout: 1h, on_event: thanks, on_timeout: reminder}
  reminder: {send: push, template: reminder, next: done}
  thanks: {send: email, template: thanks, next: done}
  done: {exit: completed}
"""

WAIT_THEN_SEND = """
journey: chain
entry: {on: cart.updated}
start: first
nodes:
  first: {wait: 1h, next: second}
  second: {wait: 30m, next: push}
  push: {send: push, template: later, next: done}
  done: {exit: completed}
"""


def without_decided_at(outputs: list) -> list:
    """Outputs with the decider's clock (an action's ``decided_at``) left out."""
    return [(o.topic, {k: v for k, v in o.value.items() if k != "decided_at"}) for o in outputs]


def drive(journey: str, inputs: list[tuple[str, int]], lag: int, timers_at: list[int] = ()) -> Customer:
    """Decide ``inputs`` (type, ts) in order, each read ``lag`` ms after its ts; ``timers_at``: wake-ups
    (until, read ``lag`` late) interleaved by time."""
    c = Customer(engine(journey))
    steps = [(at, 1, "tick", None) for at in timers_at] + [(t, 0, "event", kind) for kind, t in inputs]
    for at, _, what, kind in sorted(steps):
        if what == "event":
            c.event(kind, at + lag, ts=at, eid=f"{kind}@{at}", value=80)
        else:
            result = c.engine.on_timer(c.state, c.cid, at, at + lag)
            c.state = result.state
            c.log.extend(result.outputs)
    return c


def test_an_order_read_after_its_timeout_was_due_still_wins_over_the_timeout() -> None:
    # Ordered 59 min after entering; read 2 min late, when the 1 h timeout was already due.
    c = Customer(engine(WAIT_FOR_ORDER))
    c.event("cart.updated", T0, value=80)
    out = c.event("order.completed", T0 + HOUR + 2 * MIN, ts=T0 + 59 * MIN)
    assert [a["template"] for a in actions(out)] == ["thanks"]          # no reminder to a customer who ordered
    assert [d["outcome"] for d in decisions(out)] == ["sent", "exited"]


def test_a_timer_due_before_the_event_fires_first_at_its_due_time() -> None:
    c = Customer(engine(WAIT_FOR_ORDER))
    c.event("cart.updated", T0, value=80)
    out = c.event("order.completed", T0 + 3 * HOUR, ts=T0 + 2 * HOUR)   # after the timeout, read late
    [reminder] = actions(out)
    assert reminder["template"] == "reminder"
    sent = [d for d in decisions(out) if d["outcome"] == "sent"]
    assert sent[0]["ts"] == format_ts(T0 + HOUR)                        # fired at its due time
    assert reminder["decided_at"] == format_ts(T0 + 3 * HOUR)           # the decider's clock


def test_a_wait_starts_at_the_event_time_however_late_it_is_decided() -> None:
    c = Customer(engine(WAIT_THEN_SEND))
    c.event("cart.updated", T0 + 10 * MIN, ts=T0, value=80)              # decided 10 min late
    assert c.state.instances["chain"].due_ms == T0 + HOUR


def test_chained_timers_each_start_at_the_due_time_of_the_one_before() -> None:
    c = Customer(engine(WAIT_THEN_SEND))
    c.event("cart.updated", T0, value=80)
    result = c.engine.on_timer(c.state, c.cid, T0 + 5 * HOUR, T0 + 5 * HOUR)   # one wake-up, hours late
    [push] = actions(result.outputs)
    sent = [d for d in decisions(result.outputs) if d["outcome"] == "sent"]
    assert sent[0]["ts"] == format_ts(T0 + HOUR + 30 * MIN)
    assert push["decided_at"] == format_ts(T0 + 5 * HOUR)
    assert result.state.time_ms == T0 + HOUR + 30 * MIN


def test_a_wake_up_fires_nothing_due_after_it() -> None:
    c = Customer(engine(WAIT_THEN_SEND))
    c.event("cart.updated", T0, value=80)
    result = c.engine.on_timer(c.state, c.cid, T0 + HOUR, T0 + 2 * HOUR)   # the decider is later than `until`
    assert actions(result.outputs) == []
    assert result.state.instances["chain"].due_ms == T0 + HOUR + 30 * MIN


def test_the_same_input_decided_on_time_and_lagging_gives_the_same_outputs() -> None:
    inputs = [("cart.updated", T0), ("page.viewed", T0 + 30 * MIN), ("order.completed", T0 + 59 * MIN + 59 * SEC)]
    for journey in (WAIT_FOR_ORDER, WAIT_THEN_SEND):
        on_time = drive(journey, inputs, 0, timers_at=[T0 + HOUR, T0 + 2 * HOUR])
        for lag in (2 * MIN, 3 * HOUR):
            late = drive(journey, inputs, lag, timers_at=[T0 + HOUR, T0 + 2 * HOUR])
            assert without_decided_at(late.log) == without_decided_at(on_time.log)


def test_a_late_event_is_decided_at_the_customers_time_which_never_goes_back() -> None:
    c = Customer(engine(WAIT_FOR_ORDER))
    c.event("cart.updated", T0, value=80)
    c.tick(T0 + HOUR)                                                   # the timeout fired: reminder sent
    out = c.event("order.completed", T0 + HOUR + SEC, ts=T0 + 50 * MIN)  # dated before it: late
    assert c.state.time_ms == T0 + HOUR
    assert all(d["ts"] == format_ts(T0 + HOUR) for d in decisions(out))


def test_max_event_age_is_measured_against_the_deciders_clock() -> None:
    c = Customer(engine(WAIT_THEN_SEND))
    out = c.event("cart.updated", T0 + 25 * HOUR, ts=T0, value=80)      # a day-old event in a backlog
    assert decisions(out) == [] and c.state.instances == {}
    fresh = Customer(engine(WAIT_THEN_SEND))
    assert [d["outcome"] for d in decisions(fresh.event("cart.updated", T0 + 23 * HOUR, ts=T0, value=80))] \
        == ["entered"]


def test_the_event_time_is_the_events_ts_not_the_deciders_clock() -> None:
    e = ev("cart.updated", "c-1", T0, "e-1", value=80)
    r = engine(WAIT_THEN_SEND).on_event(None, e, T0 + 7 * MIN)
    [entered] = decisions(r.outputs)
    assert entered["ts"] == format_ts(T0)
    assert r.state.instances["chain"].entered_ms == T0
