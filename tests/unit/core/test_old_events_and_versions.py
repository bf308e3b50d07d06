"""The decision engine: old events, journey versions, disabled and removed journeys. Driven with explicit
clock values: no Kafka, no sleeps."""

from __future__ import annotations

from orchestrator.core import Engine, JourneySet, Policies
from tests.unit.core.helpers import HOUR, MIN, T0, Customer, actions, decisions, engine, journey, one
from tests.unit.core.journeys_fixtures import CART, GOAL, INSTANT, WAIT


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
