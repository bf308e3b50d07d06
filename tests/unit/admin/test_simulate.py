"""``orchestrator simulate`` (SPEC §6): a virtual clock driven by event ts over JSON lines."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.core import Engine, load_journey_file, load_policies
from orchestrator.core.timeutil import format_ts, parse_ts_ms
from orchestrator.simulate import Simulation
from tests.unit.core.helpers import DAY, DEAD_LETTER_KEYS, HOUR, MIN, engine, raw_event

REPO = Path(__file__).resolve().parents[3]
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
                  raw_event("cart.updated", "c-3", T + 5 * MIN),      # out of order
                  raw_event("signup.completed", "c-9", T + 3 * HOUR))
    pushes = [(r["value"]["customer_id"], r["at"]) for r in action_records(records, "push")]
    assert pushes[0] == ("c-1", at(T + HOUR))
    # c-3's event comes after a later one of another customer: its wait still starts at its own ts
    assert pushes[1:] == [("c-3", at(T + 5 * MIN + HOUR)), ("c-2", at(T + 10 * MIN + HOUR))]
    assert action_records(records, "email")[0]["at"] == at(T + 3 * HOUR)


def test_the_clock_stops_after_the_last_event() -> None:
    eng = engine(WAIT_PUSH)
    records = run(eng, raw_event("cart.updated", "c-1", T), raw_event("page.viewed", "c-1", T + 59 * MIN))
    assert action_records(records) == []
    assert [r["value"]["outcome"] for r in records] == ["entered"]


def test_timers_due_by_where_the_clock_stops_fire_after_the_last_line() -> None:
    # c-2's event is dated before the clock (c-1's later line moved it): its wait is due before the clock
    # stops, so it fires, as a worker fires it once its partition's input time has passed it.
    # c-3's wait is due after it (T + 3h30): it does not fire.
    records = run(engine(WAIT_PUSH), raw_event("page.viewed", "c-1", T + 3 * HOUR),
                  raw_event("page.viewed", "c-1", T + 3 * HOUR + MIN),
                  raw_event("cart.updated", "c-3", T + 2 * HOUR + 30 * MIN), raw_event("cart.updated", "c-2", T))
    assert not [r for r in records if r["topic"] == "dlq"]
    assert [(r["value"]["customer_id"], r["at"]) for r in action_records(records)] == [("c-2", at(T + HOUR))]


WAIT_EXIT = """
journey: later-unless-stopped
entry: {on: go}
exit: {on: stop}
start: w
nodes:
  w: {wait: 1h, next: s}
  s: {send: email, template: t}
"""


def test_timers_keep_time_per_partition_as_a_workers_do() -> None:
    """c-1 enters at 10:00 and stops at 10:30, but its stop comes after c-2's lines dated 12:00. On
    another partition, that line does not fire c-1's 11:00 timer (a worker reading the file as a
    backlog exits c-1 without a send); on the same partition it does, first."""
    lines = [raw_event("go", "c-1", T), raw_event("noop", "c-2", T + 2 * HOUR),
             raw_event("stop", "c-1", T + 30 * MIN),
             raw_event("noop", "c-2", T + 2 * HOUR)]       # (the file catches up: 12:00 is not the future)
    apart = list(Simulation(engine(WAIT_EXIT), partition_of={"c-1": 0, "c-2": 1}.__getitem__).run(lines))
    assert action_records(apart) == []
    assert [(r["value"]["outcome"], r["value"].get("detail")) for r in apart if r["value"].get("outcome") == "exited"] \
        == [("exited", "exit")]
    together = list(Simulation(engine(WAIT_EXIT), partition_of=lambda cid: 0).run(lines))
    assert [r["at"] for r in action_records(together)] == [at(T + HOUR)]
    assert list(Simulation(engine(WAIT_EXIT)).run(lines)) == together          # no partitions: one clock


def test_simulate_places_customers_as_the_worker_does(tmp_path, capsys, monkeypatch) -> None:
    from orchestrator.config import home_partition
    events = [e(1, "c-1", "go", "2026-03-10T10:00:00Z"), e(2, "c-2", "noop", "2026-03-10T12:00:00Z"),
              e(3, "c-1", "stop", "2026-03-10T10:30:00Z"), e(4, "c-2", "noop", "2026-03-10T12:00:00Z")]
    monkeypatch.setenv("ORCH_PARTITIONS", "8")
    place = home_partition()
    assert place("c-1") != place("c-2")                           # murmur2 of the key, modulo 8
    assert not [r for r in simulate_cli(tmp_path, capsys, [WAIT_EXIT], events) if r["topic"].startswith("actions.")]
    monkeypatch.setenv("ORCH_PARTITIONS", "1")
    assert [r["topic"] for r in simulate_cli(tmp_path, capsys, [WAIT_EXIT], events)
            if r["topic"].startswith("actions.")] == ["actions.email"]


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


def test_profile_fields_the_engine_cannot_use_are_listed_with_their_line_numbers() -> None:
    from orchestrator.admin.simulate import summary
    sim = Simulation(engine(INSTANT_EMAIL))
    lines = [raw_event("profile.updated", "c-1", T, consent=None),
             raw_event("profile.updated", "c-1", T, timezone="Mars/Olympus"),
             raw_event("profile.updated", "c-2", T, consent={"email": "no"}),
             raw_event("profile.updated", "c-2", T, consent={"email": False}, timezone="Europe/Oslo")]
    list(sim.run(lines))
    assert sim.invalid_fields == {"consent": [1, 3], "timezone": [2]}
    assert summary(sim) == [
        "simulate: 2 lines set consent to a value the engine cannot use (not applied): 1, 3",
        "simulate: 1 line set timezone to a value the engine cannot use (kept, read as UTC): 2"]


def test_an_erasure_deletes_the_customer_in_simulate_and_earlier_ids_stay_duplicates() -> None:
    sim = Simulation(engine(INSTANT_EMAIL))
    list(sim.run([raw_event("signup.completed", "c-1", T, eid="e-1"),
                  raw_event("profile.erased", "c-1", T + MIN, eid="e-x")]))
    assert "c-1" not in sim.states                                        # nothing of the customer is left
    again = list(sim.feed(raw_event("signup.completed", "c-1", T + 2 * MIN, eid="e-1"), 3))
    assert again == [] and sim.duplicates == [3]                          # redelivered: still ignored


# ---------------------------------------------------------------------------- SPEC §4 lists and §4.1, black-box
# Each test below is written against SPEC §4/§4.1 only: journey YAML and event JSON lines go into
# `orchestrator simulate`, and the JSON lines it prints are checked.
def simulate_cli(tmp_path: Path, capsys, journeys: list[str], events: list[dict],
                 policies: str | None = None) -> list[dict]:
    from orchestrator.cli import main
    folder = tmp_path / "journeys"
    folder.mkdir(exist_ok=True)
    for i, text in enumerate(journeys):
        (folder / f"j{i}.yaml").write_text(text)
    lines = tmp_path / "events.jsonl"
    lines.write_text("".join(json.dumps(e) + "\n" for e in events))
    # The documented defaults unless policies are given (without --policies, simulate reads
    # ORCH_POLICIES or ./policies.yaml, as a worker does: the repository's own, here).
    (tmp_path / "policies.yaml").write_text(policies if policies is not None else "{}\n")
    args = ["simulate", "--journeys", str(folder), "--policies", str(tmp_path / "policies.yaml"), str(lines)]
    capsys.readouterr()
    assert main(args) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def e(n: int, cid: str, etype: str, when: str, **props) -> dict:
    return {"event_id": f"e-{cid}-{n}", "customer_id": cid, "type": etype, "ts": when, "properties": props}


def outcomes(records: list[dict], cid: str) -> list[tuple[str, str, str | None]]:
    """(at, outcome, detail) of the customer's decisions, in order."""
    return [(r["at"], r["value"]["outcome"], r["value"]["detail"]) for r in records
            if r["topic"] == "decisions" and r["value"]["customer_id"] == cid]


def sent(records: list[dict], cid: str) -> list[tuple[str, str, str]]:
    """(at, channel, template) of the customer's actions."""
    return [(r["at"], r["value"]["channel"], r["value"]["template"]) for r in records
            if r["topic"].startswith("actions.") and r["value"]["customer_id"] == cid]


LISTS = """
journey: lists
entry: {on: [cart.updated, checkout.started]}
goal: {on: [order.completed, subscription.started], suppress: [push]}
exit: {on: [account.closed, account.frozen]}
start: mail
nodes:
  mail: {send: email, template: m, next: read}
  read: {wait_for: [message.opened, message.clicked], timeout: 1d, on_event: thanks, on_timeout: nudge}
  thanks: {send: push, template: thanks}
  nudge: {send: push, template: nudge}
"""


def test_simulate_any_of_lists(tmp_path, capsys) -> None:
    events = [e(1, "a", "checkout.started", "2026-03-10T10:00:00Z"),        # the second entry type enrols
              e(1, "b", "cart.updated", "2026-03-10T10:00:00Z"),
              e(1, "c", "cart.updated", "2026-03-10T10:00:00Z"),
              e(1, "d", "cart.updated", "2026-03-10T10:00:00Z"),
              e(2, "b", "subscription.started", "2026-03-10T11:00:00Z"),    # the second goal type
              e(2, "c", "account.frozen", "2026-03-10T11:00:00Z"),          # the second exit type
              e(2, "d", "message.clicked", "2026-03-10T11:00:00Z", action_id="a-someone-else", channel="email"),
              e(9, "z", "page.viewed", "2026-03-12T00:00:00Z")]
    first = simulate_cli(tmp_path, capsys, [LISTS], events)
    assert [s[2] for s in sent(first, "a")] == ["m", "nudge"]
    # the same run, now with a click on a's email (action ids are deterministic: the same again)
    mail_a = next(r["value"]["action_id"] for r in first
                  if r["topic"] == "actions.email" and r["value"]["customer_id"] == "a")
    events.insert(4, e(2, "a", "message.clicked", "2026-03-10T10:30:00Z", action_id=mail_a, channel="email"))
    records = simulate_cli(tmp_path, capsys, [LISTS], events)
    assert sent(records, "a")[-1] == ("2026-03-10T10:30:00.000Z", "push", "thanks")   # the second wait_for type
    assert outcomes(records, "b")[-1][1:] == ("goal", "goal")
    assert outcomes(records, "c")[-1][1:] == ("exited", "exit")
    assert [s[2] for s in sent(records, "d")] == ["m", "nudge"]       # feedback about another action: timeout
    assert sent(records, "d")[-1][0] == "2026-03-11T10:00:00.000Z"


def test_simulate_entry_max_entries(tmp_path, capsys) -> None:
    text = """
journey: capped
version: 2
entry: {on: cart.updated, reentry: always, max_entries: 2}
start: s
nodes:
  s: {send: email, template: t}
"""
    events = [e(i, "a", "cart.updated", f"2026-03-10T1{i}:00:00Z") for i in range(4)]
    records = simulate_cli(tmp_path, capsys, [text], events)
    assert len(sent(records, "a")) == 2
    refused = [r["value"] for r in records if r["topic"] == "decisions" and r["value"]["outcome"] == "entry_refused"]
    assert [(d["journey"], d["journey_version"], d["detail"]) for d in refused] == [("capped", 2, "max_entries")] * 2


def test_simulate_exit_if(tmp_path, capsys) -> None:
    text = """
journey: upsell
entry: {on: cart.updated}
exit: {if: profile.plan == "enterprise"}
start: s
nodes:
  s: {send: email, template: t, next: w}
  w: {wait: 1d, next: p}
  p: {send: push, template: p}
"""
    events = [e(1, "a", "cart.updated", "2026-03-10T10:00:00Z"),
              e(1, "b", "cart.updated", "2026-03-10T10:00:00Z"),
              e(2, "a", "profile.updated", "2026-03-10T12:00:00Z", plan="enterprise"),
              e(3, "b", "profile.updated", "2026-03-10T12:00:00Z", plan="team"),
              e(9, "z", "page.viewed", "2026-03-12T00:00:00Z")]
    records = simulate_cli(tmp_path, capsys, [text], events)
    assert outcomes(records, "a")[-1] == ("2026-03-10T12:00:00.000Z", "exited", "condition")
    [sup] = [r["value"] for r in records if r["topic"] == "suppressions"]
    assert (sup["customer_id"], sup["reason"], sup["channels"]) == ("a", "exit", ["email"])
    assert [s[2] for s in sent(records, "a")] == ["t"]
    assert [s[2] for s in sent(records, "b")] == ["t", "p"]


def test_simulate_wait_until_in_the_customers_timezone_across_dst(tmp_path, capsys) -> None:
    text = """
journey: early
entry: {on: cart.updated}
start: w
nodes:
  w: {wait_until: "02:30", next: s}
  s: {send: email, template: t}
"""
    weekdays = text.replace('"02:30"', '"09:00", days: [mon, tue, wed, thu, fri]')
    events = [e(0, "paris", "profile.updated", "2026-03-28T12:00:00Z", timezone="Europe/Paris"),
              e(1, "paris", "cart.updated", "2026-03-28T22:00:00Z"),   # 23:00 CET; 02:30 is skipped that night
              e(0, "fall", "profile.updated", "2026-10-24T12:00:00Z", timezone="Europe/Paris"),
              e(1, "fall", "cart.updated", "2026-10-24T22:00:00Z"),    # 02:30 happens twice that night
              e(9, "z", "page.viewed", "2026-10-27T00:00:00Z")]
    records = simulate_cli(tmp_path, capsys, [text], events)
    assert sent(records, "paris") == [("2026-03-29T01:00:00.000Z", "email", "t")]     # at the jump, 03:00 CEST
    assert sent(records, "fall") == [("2026-10-25T00:30:00.000Z", "email", "t")]      # the first 02:30 only
    events = [e(1, "utc", "cart.updated", "2026-03-13T10:00:00Z"),     # a Friday, no timezone: UTC
              e(9, "z", "page.viewed", "2026-03-17T00:00:00Z")]
    assert sent(simulate_cli(tmp_path, capsys, [weekdays], events), "utc") == \
        [("2026-03-16T09:00:00.000Z", "email", "t")]


def test_simulate_window_defers_to_its_opening_across_dst_and_a_goal_cancels(tmp_path, capsys) -> None:
    text = """
journey: office
entry: {on: cart.updated}
goal: {on: order.completed}
start: s
nodes:
  s:
    send: email
    template: t
    window: {days: [mon, tue, wed, thu, fri], from: "09:00", to: "18:00"}
"""
    events = [e(0, "a", "profile.updated", "2026-03-27T12:00:00Z", timezone="Europe/Paris"),
              e(1, "a", "cart.updated", "2026-03-28T10:00:00Z"),       # Saturday; Monday is CEST
              e(1, "b", "cart.updated", "2026-03-28T10:00:00Z"),
              e(2, "b", "order.completed", "2026-03-29T10:00:00Z"),    # the goal while deferred
              e(1, "c", "cart.updated", "2026-03-30T10:00:00Z"),       # Monday, inside: at once
              e(9, "z", "page.viewed", "2026-04-01T00:00:00Z")]
    records = simulate_cli(tmp_path, capsys, [text], events)
    deferred = [r for r in records if r["topic"] == "decisions" and r["value"]["outcome"] == "window_deferred"]
    assert [(r["value"]["customer_id"], r["value"]["detail"]) for r in deferred] == [
        ("a", "deferred to 2026-03-30T07:00:00.000Z"), ("b", "deferred to 2026-03-30T09:00:00.000Z")]
    assert sent(records, "a") == [("2026-03-30T07:00:00.000Z", "email", "t")]       # 09:00 CEST
    assert sent(records, "b") == []
    [sup] = [r["value"] for r in records if r["topic"] == "suppressions"]
    assert sup["reason"] == "goal" and sup["cancels"] == [deferred[1]["value"]["action_id"]]
    assert sent(records, "c") == [("2026-03-30T10:00:00.000Z", "email", "t")]


def test_simulate_exempt_sends(tmp_path, capsys) -> None:
    receipt = """
journey: receipt
entry: {on: order.completed, reentry: always}
start: r
nodes:
  r: {send: sms, template: receipt, exempt: [frequency, quiet_hours]}
"""
    promo = """
journey: promo
entry: {on: cart.updated}
start: p
nodes:
  p: {send: sms, template: promo}
"""
    policies = 'frequency: [{max: 1, per: 1d}]\nquiet_hours: {channels: [sms], from: "21:00", to: "08:00"}\n'
    events = [e(1, "a", "order.completed", "2026-03-10T23:00:00Z"),    # quiet hours: exempt
              e(2, "a", "order.completed", "2026-03-10T23:30:00Z"),    # over the cap: exempt
              e(3, "a", "cart.updated", "2026-03-11T10:00:00Z")]       # not exempt: capped by the two receipts
    records = simulate_cli(tmp_path, capsys, [receipt, promo], events, policies)
    assert sent(records, "a") == [("2026-03-10T23:00:00.000Z", "sms", "receipt"),
                                  ("2026-03-10T23:30:00.000Z", "sms", "receipt")]
    promo = [o for o in outcomes(records, "a") if o[1] == "frequency_cap"]
    assert promo == [("2026-03-11T10:00:00.000Z", "frequency_cap", "2 sends on all channels in the last 1d (max 1)")]
