"""The decision engine's send gate: consent, send best, frequency caps, quiet hours and ``exempt``. Driven
with explicit clock values: no Kafka, no sleeps."""

from __future__ import annotations

from orchestrator.core import Policies
from orchestrator.core.policies import FrequencyRule, QuietHours
from orchestrator.core.timeutil import format_ts
from tests.unit.core.helpers import (
    DAY, HOUR, MIN, T0, Customer, actions, decisions, engine, ev, one, suppressions, ts,
)
from tests.unit.core.journeys_fixtures import INSTANT, PUSH_NOW, QUIET, five_journeys


# ---------------------------------------------------------------------------- the send gate
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


def test_a_customers_timezone_is_looked_up_once_per_name_in_a_bounded_memo() -> None:
    from zoneinfo import ZoneInfo

    from orchestrator.core import gate
    assert gate.known_zone("Europe/Paris") == ZoneInfo("Europe/Paris")
    assert gate.known_zone("Europe/Paris") is gate.known_zone("Europe/Paris")
    assert gate.known_zone("Not/A_Zone") is None and gate.known_zone("") is None and gate.known_zone(7) is None
    for i in range(gate.ZONES_MAX + 10):                   # names that are not zones are remembered too
        gate.known_zone(f"Nowhere/{i}")
    assert 0 < len(gate._zones) <= gate.ZONES_MAX
    assert gate.known_zone("Europe/Paris") == ZoneInfo("Europe/Paris")


def test_quiet_hours_that_end_in_the_hour_the_clocks_repeat_defer_to_the_end_of_the_pass_the_send_is_in() -> None:
    # New York, 2026-11-01: 02:00 EDT goes back to 01:00 EST, so 01:00-01:59 happens twice.
    pol = Policies(quiet_hours=QuietHours(("push",), 21 * 60, 90))       # 21:00-01:30
    for at, end in [("2026-11-01T05:10:00Z", "2026-11-01T05:30:00.000Z"),   # 01:10 EDT: the first 01:30
                    ("2026-11-01T06:00:00Z", "2026-11-01T06:30:00.000Z")]:  # 01:00 EST: the second one, not the past
        c = Customer(engine(PUSH_NOW, policies=pol), f"c-{at}")
        c.event("profile.updated", ts("2026-10-31T12:00:00Z"), timezone="America/New_York")
        out = c.event("cart.updated", ts(at))
        assert one(decisions(out, "quiet_hours_deferred"))["detail"] == f"deferred to {end}"
        assert c.tick(ts(end) - 1) == [] and one(actions(c.tick(ts(end))))


def test_quiet_hours_that_end_at_a_time_the_clocks_skip_defer_to_the_jump() -> None:
    # New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00Z); 02:30 does not happen that night.
    pol = Policies(quiet_hours=QuietHours(("push",), 21 * 60, 150))      # 21:00-02:30
    c = Customer(engine(PUSH_NOW, policies=pol))
    c.event("profile.updated", ts("2026-03-07T12:00:00Z"), timezone="America/New_York")
    out = c.event("cart.updated", ts("2026-03-08T06:30:00Z"))           # 01:30 EST
    assert one(decisions(out, "quiet_hours_deferred"))["detail"] == "deferred to 2026-03-08T07:00:00.000Z"
