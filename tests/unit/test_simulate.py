"""``orchestrator simulate`` (SPEC §6): a virtual clock driven by event ts over JSON lines."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.core import Engine, load_journey_file, load_policies
from orchestrator.core.timeutil import format_ts, parse_ts_ms
from orchestrator.core.state import TOMBSTONE_KEEP_MS
from orchestrator.simulate import Simulation
from tests.unit.corehelpers import DAY, DEAD_LETTER_KEYS, HOUR, MIN, engine, raw_event

REPO = Path(__file__).resolve().parents[2]
T = parse_ts_ms("2026-03-10T10:00:00Z")
assert T is not None

WAIT_PUSH = """
journey: later
entry: {on: cart.updated}
start: w
nodes:
  w: {wait: 1h, next: p}
  p: {send: push, template: later}
"""
INSTANT_EMAIL = """
journey: hello
entry: {on: signup.completed}
start: e
nodes:
  e: {send: email, template: hi}
"""


def run(eng: Engine, *lines: bytes) -> list[dict]:
    records = list(Simulation(eng).run(b"\n".join(lines).splitlines()))
    for r in records:
        assert set(r) == {"topic", "at", "value"}
        json.dumps(r)
    return records


def at(ms: int) -> str:
    return format_ts(ms)


def action_records(records: list[dict], channel: str | None = None) -> list[dict]:
    return [r for r in records if r["topic"].startswith("actions.")
            and (channel is None or r["topic"] == f"actions.{channel}")]


# ---------------------------------------------------------------------------- the virtual clock
def test_timers_due_before_an_event_fire_first_at_their_due_time() -> None:
    eng = engine(WAIT_PUSH, INSTANT_EMAIL)
    records = run(eng, raw_event("cart.updated", "c-1", T), raw_event("signup.completed", "c-1", T + 2 * HOUR))
    acts = action_records(records)
    assert [(r["topic"], r["at"]) for r in acts] == [("actions.push", at(T + HOUR)), ("actions.email", at(T + 2 * HOUR))]
    assert acts[0]["value"]["decided_at"] == at(T + HOUR)
    # records come out in clock order
    times = [parse_ts_ms(r["at"]) for r in records]
    assert times == sorted(times)


def test_timers_of_different_customers_fire_in_due_order() -> None:
    eng = engine(WAIT_PUSH, INSTANT_EMAIL)
    records = run(eng,
                  raw_event("cart.updated", "c-1", T),
                  raw_event("cart.updated", "c-2", T + 10 * MIN),
                  raw_event("cart.updated", "c-3", T + 5 * MIN),      # out of order: clock does not go back
                  raw_event("signup.completed", "c-9", T + 3 * HOUR))
    pushes = [(r["value"]["customer_id"], r["at"]) for r in action_records(records, "push")]
    assert pushes[0] == ("c-1", at(T + HOUR))
    # c-3's event is older than the clock when it arrives, so it enrols at the clock (T+10m), like c-2
    assert sorted(pushes[1:]) == [("c-2", at(T + 10 * MIN + HOUR)), ("c-3", at(T + 10 * MIN + HOUR))]
    assert action_records(records, "email")[0]["at"] == at(T + 3 * HOUR)


def test_the_clock_stops_after_the_last_event() -> None:
    eng = engine(WAIT_PUSH)
    records = run(eng, raw_event("cart.updated", "c-1", T), raw_event("page.viewed", "c-1", T + 59 * MIN))
    assert action_records(records) == []
    assert [r["value"]["outcome"] for r in records] == ["entered"]


def test_an_event_exactly_at_the_due_time_fires_the_timer_first() -> None:
    records = run(engine(WAIT_PUSH), raw_event("cart.updated", "c-1", T), raw_event("page.viewed", "c-2", T + HOUR))
    assert [r["at"] for r in action_records(records)] == [at(T + HOUR)]


def test_invalid_lines_become_dlq_records_and_processing_continues() -> None:
    eng = engine(INSTANT_EMAIL)
    lines = [
        raw_event("signup.completed", "c-1", T),
        b"this is not json",
        b"",                                                     # blank lines are skipped
        b'{"event_id": "e-x", "type": "signup.completed", "ts": 1}',   # no customer_id
        raw_event("message.opened", "c-1", T + MIN),            # feedback without action_id
        json.dumps({"event_id": "e-far", "customer_id": "c-2", "type": "signup.completed",
                    "ts": T + 10**15}).encode(),                # year 33714: refused, not a crash
        raw_event("signup.completed", "c-3", T + 2 * MIN),
    ]
    records = list(Simulation(eng).run(lines))
    dlq = [r for r in records if r["topic"] == "dlq"]
    assert [d["value"]["reason"] for d in dlq] == ["invalid_json", "invalid_schema", "invalid_feedback",
                                                   "invalid_schema"]
    assert [d["value"]["offset"] for d in dlq] == [2, 4, 5, 6]
    for d in dlq:
        assert set(d["value"]) == DEAD_LETTER_KEYS
    assert dlq[0]["value"]["raw"] == "this is not json"
    assert [r["value"]["customer_id"] for r in action_records(records)] == ["c-1", "c-3"]


def test_duplicate_lines_are_ignored() -> None:
    line = raw_event("signup.completed", "c-1", T, eid="e-same")
    records = run(engine(INSTANT_EMAIL), line, line)
    assert len(action_records(records)) == 1


def test_simulation_is_deterministic() -> None:
    lines = [raw_event("cart.updated", f"c-{i}", T + i * MIN, eid=f"e-{i}") for i in range(5)] + \
        [raw_event("page.viewed", "c-0", T + DAY, eid="e-end")]
    first = run(engine(WAIT_PUSH), *lines)
    second = run(engine(WAIT_PUSH), *lines)
    assert first == second and len(action_records(first)) == 5


# ---------------------------------------------------------------------------- the SPEC §4 example
def cart_engine() -> Engine:
    policies = load_policies(REPO / "policies.yaml")
    return Engine([load_journey_file(REPO / "journeys" / "cart-recovery.yaml", channels=policies.channels)], policies)


def start_cart(cid: str) -> tuple[Simulation, list[dict]]:
    """An email-engaged customer updates a cart at T; a page view at T+90m moves the clock past the 1 h wait."""
    sim = Simulation(cart_engine())
    records: list[dict] = []
    lines = [
        raw_event("message.opened", cid, T - DAY, action_id="a-earlier", channel="email"),
        raw_event("cart.updated", cid, T, value=80.5),
        raw_event("page.viewed", cid, T + 90 * MIN),
    ]
    for i, line in enumerate(lines, start=1):
        records.extend(sim.feed(line, i))
    return sim, records


def treated_customer() -> tuple[str, Simulation, dict]:
    """The first customer outside the journey and global holdouts (both deterministic per customer)."""
    for i in range(100):
        cid = f"c-{i}"
        sim, records = start_cart(cid)
        emails = action_records(records, "email")
        if emails:
            return cid, sim, emails[0]
    raise AssertionError("no treated customer among 100")


def test_cart_recovery_email_goes_out_after_the_1h_wait() -> None:
    cid, _, email = treated_customer()
    assert email["at"] == at(T + HOUR)
    v = email["value"]
    assert (v["customer_id"], v["journey"], v["journey_version"], v["node"], v["template"]) == \
        (cid, "cart-recovery", 3, "email_reminder", "cart-reminder-1")
    assert v["params"] == {"cart_value": 80.5}


def test_cart_recovery_open_within_timeout_means_no_push() -> None:
    cid, sim, email = treated_customer()
    records = list(sim.feed(raw_event("message.opened", cid, T + 3 * HOUR,
                                      action_id=email["value"]["action_id"], channel="email"), 4))
    records += list(sim.feed(raw_event("page.viewed", cid, T + 3 * DAY), 5))
    assert action_records(records) == []
    exits = [r for r in records if r["topic"] == "decisions" and r["value"]["outcome"] == "exited"]
    assert [(e["at"], e["value"]["detail"]) for e in exits] == [(at(T + 3 * HOUR), "completed")]


def test_cart_recovery_no_open_means_push_at_the_timeout() -> None:
    cid, sim, email = treated_customer()
    # an open of some other message does not count
    records = list(sim.feed(raw_event("message.opened", cid, T + 3 * HOUR, action_id="a-other", channel="email"), 4))
    records += list(sim.feed(raw_event("page.viewed", cid, T + 3 * DAY), 5))
    pushes = action_records(records)
    assert len(pushes) == 1
    push = pushes[0]
    assert push["topic"] == "actions.push"          # sms is opt_in in policies.yaml and not consented
    assert push["at"] == at(T + HOUR + 24 * HOUR)
    assert (push["value"]["node"], push["value"]["template"]) == ("push_reminder", "cart-reminder-2")


def test_cart_recovery_goal_suppresses_and_stops() -> None:
    cid, sim, email = treated_customer()
    records = list(sim.feed(raw_event("order.completed", cid, T + 2 * HOUR), 4))
    records += list(sim.feed(raw_event("page.viewed", cid, T + 3 * DAY), 5))
    assert action_records(records) == []
    sup = [r["value"] for r in records if r["topic"] == "suppressions"]
    assert len(sup) == 1
    assert (sup[0]["reason"], sup[0]["channels"], sup[0]["cancels"]) == \
        ("goal", ["ads", "web", "sms"], [email["value"]["action_id"]])


# ---------------------------------------------------------------------------- future timestamps and what is ignored
YEAR = 365 * DAY


def test_a_line_dated_far_ahead_is_dead_lettered_and_does_not_poison_the_rest() -> None:
    eng = engine(INSTANT_EMAIL)
    lines = [raw_event("signup.completed", "c-1", T),
             raw_event("signup.completed", "c-2", T + YEAR),            # a typo in the year
             raw_event("signup.completed", "c-3", T + MIN),
             raw_event("signup.completed", "c-4", T + 2 * MIN)]
    sim = Simulation(eng)
    records = list(sim.run(lines))
    dlq = [r for r in records if r["topic"] == "dlq"]
    assert [(d["value"]["reason"], d["value"]["offset"]) for d in dlq] == [("future_timestamp", 2)]
    assert "line 4" in dlq[0]["value"]["detail"]           # the latest line after it
    assert [r["value"]["customer_id"] for r in action_records(records)] == ["c-1", "c-3", "c-4"]
    assert sim.clock_ms == T + 2 * MIN and sim.stale == [] and sim.dead_letters == {"future_timestamp": [2]}


def test_a_far_ahead_first_line_is_dead_lettered_too() -> None:
    records = run(engine(INSTANT_EMAIL), raw_event("signup.completed", "c-1", T + YEAR),
                  raw_event("signup.completed", "c-2", T))
    assert [r["value"]["reason"] for r in records if r["topic"] == "dlq"] == ["future_timestamp"]
    assert [r["value"]["customer_id"] for r in action_records(records)] == ["c-2"]


def test_time_passing_between_lines_is_not_the_future() -> None:
    eng = engine(WAIT_PUSH, INSTANT_EMAIL)
    lines = [raw_event("cart.updated", "c-1", T),
             raw_event("signup.completed", "c-2", T + 3 * HOUR),        # a gap the next lines continue from
             raw_event("page.viewed", "c-3", T + 3 * HOUR - 20 * MIN),  # a late line: not where time is
             raw_event("signup.completed", "c-4", T + 3 * HOUR + MIN),
             raw_event("signup.completed", "c-5", T + 30 * DAY)]        # the last line: taken at its time
    records = run(eng, *lines)
    assert not [r for r in records if r["topic"] == "dlq"]
    assert [r["value"]["customer_id"] for r in action_records(records)] == ["c-1", "c-2", "c-4", "c-5"]


def test_lines_a_worker_would_not_act_on_are_listed_with_their_line_numbers() -> None:
    eng = engine(INSTANT_EMAIL)
    sim = Simulation(eng)
    lines = [raw_event("signup.completed", "c-1", T, eid="e-1"),
             raw_event("signup.completed", "c-1", T, eid="e-1"),                 # duplicate
             raw_event("signup.completed", "c-2", T - 2 * DAY),                  # too old to enrol
             raw_event("page.viewed", "c-2", T - 2 * DAY),                       # old, but enrols nobody anyway
             b"",
             raw_event("signup.completed", "c-3", T - 3 * DAY),                  # too old to enrol
             raw_event("signup.completed", "c-1", T + MIN, eid="e-1")]           # duplicate
    list(sim.run(lines))
    assert sim.duplicates == [2, 7]
    assert sim.stale == [3, 6]


def test_an_erasure_tombstone_expires_in_simulate_as_in_a_worker() -> None:
    sim = Simulation(engine(INSTANT_EMAIL))
    list(sim.run([raw_event("signup.completed", "c-1", T, eid="e-1"),
                  raw_event("profile.erased", "c-1", T + MIN, eid="e-x")]))
    assert sim.states["c-1"].erased_ms == T + MIN and sim.states["c-1"].profile == {}
    again = list(sim.feed(raw_event("signup.completed", "c-1", T + 2 * MIN, eid="e-1"), 3))
    assert again == [] and sim.duplicates == [3]                          # redelivered: still ignored
    list(sim.advance(T + MIN + TOMBSTONE_KEEP_MS))
    assert "c-1" not in sim.states                                        # nothing left after the window
