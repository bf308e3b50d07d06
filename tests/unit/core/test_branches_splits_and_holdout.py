"""The decision engine: branch and split nodes, and the journey and global holdouts. Driven with explicit
clock values: no Kafka, no sleeps."""

from __future__ import annotations

import pytest

from orchestrator.core import Policies
from tests.unit.core.helpers import DAY, HOUR, T0, Customer, actions, decisions, engine, ev, one
from tests.unit.core.journeys_fixtures import GOAL, INSTANT, WAIT_FOR


# ---------------------------------------------------------------------------- branch, split
BRANCH = """
journey: br
entry: {on: cart.updated}
start: choose
nodes:
  choose:
    branch:
      - {if: profile.tier == "gold", next: gold}
      - {if: event.properties.value > 100, next: big}
      - {next: other}
  gold: {send: email, template: gold}
  big: {send: email, template: big}
  other: {send: email, template: other}
"""


@pytest.mark.parametrize("profile, value, template", [
    ({"tier": "gold"}, 500, "gold"), ({"tier": "silver"}, 500, "big"), ({}, 10, "other"), ({}, None, "other"),
])
def test_branch_first_true_case_wins_else_last(profile: dict, value: object, template: str) -> None:
    c = Customer(engine(BRANCH))
    if profile:
        c.event("profile.updated", T0 - 1, **profile)
    assert one(actions(c.event("cart.updated", T0, value=value)))["template"] == template


def test_branch_without_else_and_no_match_exits() -> None:
    c = Customer(engine(BRANCH.replace("      - {next: other}\n", "")))
    out = c.event("cart.updated", T0, value=1)
    assert not actions(out)
    assert one(decisions(out, "exited"))
    assert c.state.instances == {}


SPLIT = """
journey: ab
entry: {on: cart.updated, reentry: always}
start: ab
nodes:
  ab: {split: [{weight: 50, next: a}, {weight: 50, next: b}]}
  a: {send: email, template: arm-a}
  b: {send: email, template: arm-b}
"""


def test_split_is_deterministic_per_customer() -> None:
    eng = engine(SPLIT)
    arms: dict[str, int] = {"arm-a": 0, "arm-b": 0}
    for i in range(200):
        cid = f"c-{i}"
        first = one(actions(eng.on_event(None, ev("cart.updated", cid, T0, "e-1"), T0).outputs))["template"]
        again = one(actions(engine(SPLIT).on_event(None, ev("cart.updated", cid, T0 + DAY, "e-2"), T0 + DAY)
                            .outputs))["template"]
        assert first == again, cid
        arms[first] += 1
    assert 60 <= arms["arm-a"] <= 140, arms   # roughly the 50/50 weights


def test_split_respects_weights() -> None:
    eng = engine(SPLIT.replace("weight: 50, next: a", "weight: 9, next: a")
                 .replace("weight: 50, next: b", "weight: 1, next: b"))
    counts = {"arm-a": 0, "arm-b": 0}
    for i in range(400):
        counts[one(actions(eng.on_event(None, ev("cart.updated", f"c-{i}", T0), T0).outputs))["template"]] += 1
    assert 320 <= counts["arm-a"] <= 390, counts


# ---------------------------------------------------------------------------- holdout
def test_journey_holdout_100_walks_but_never_contacts() -> None:
    c = Customer(engine(WAIT_FOR.replace("start: email", "holdout: 100%\nstart: email")))
    out = c.event("cart.updated", T0)
    assert not actions(out)
    held = one(decisions(out, "holdout"))
    assert (held["node"], held["channel"]) == ("email", "email")
    assert "action_id" not in held
    # it still walks the journey: waiting, then the timeout path, also held out
    assert "wf" in c.state.instances
    out = c.tick(T0 + 24 * HOUR)
    assert not actions(out)
    assert one(decisions(out, "holdout"))["node"] == "push"
    assert one(decisions(out, "exited"))


def test_journey_holdout_is_deterministic_and_proportional() -> None:
    eng = engine(INSTANT.replace("start: email", "holdout: 10%\nstart: email"))
    held = 0
    for i in range(1000):
        cid = f"c-{i}"
        out1 = eng.on_event(None, ev("cart.updated", cid, T0, "e-1"), T0).outputs
        out2 = eng.on_event(None, ev("cart.updated", cid, T0, "e-2"), T0).outputs
        h1, h2 = bool(decisions(out1, "holdout")), bool(decisions(out2, "holdout"))
        assert h1 == h2 and h1 != bool(actions(out1))
        held += h1
    assert 60 <= held <= 140, held


def test_global_holdout() -> None:
    c = Customer(engine(INSTANT, policies=Policies(global_holdout=1.0)))
    out = c.event("cart.updated", T0)
    assert not actions(out) and one(decisions(out, "holdout"))["detail"] == "global holdout"


def test_globally_held_out_customers_enter_in_the_holdout_group() -> None:
    """SPEC §3: globally held-out customers are in the holdout group of every statistic."""
    from orchestrator.reports.stats import from_decisions
    eng = engine(GOAL, policies=Policies(global_holdout=0.5))
    lifecycle, log = [], []
    for i in range(40):
        cid, state = f"c-{i}", None
        for e, now in ((ev("cart.updated", cid, T0), T0), (ev("order.completed", cid, T0 + HOUR), T0 + HOUR)):
            r = eng.on_event(state, e, now)
            state = r.state
            lifecycle += r.lifecycle
            log += r.outputs
    entered = decisions(log, "entered")
    held = {d["customer_id"] for d in decisions(log, "holdout")}
    assert 5 < len(held) < 35
    assert {d["customer_id"] for d in entered if d["detail"] == "holdout"} == held
    assert {d["customer_id"] for d in actions(log)}.isdisjoint(held)
    # The worker's counters (lifecycle) and `orchestrator stats` (the decisions) agree.
    groups = [lc.group for lc in lifecycle if lc.kind == "entered"]
    report = one(from_decisions(decisions(log)))
    assert report["entries"] == {"treatment": groups.count("treatment"), "holdout": len(held), "total": 40}
    assert report["goals"]["holdout"] == len(held) == sum(1 for lc in lifecycle if lc.kind == "goal"
                                                          and lc.group == "holdout")


def test_journey_holdout_detail_is_kept_when_the_global_holdout_also_applies() -> None:
    held = INSTANT.replace("start: email", "holdout: 100%\nstart: email")
    c = Customer(engine(held, policies=Policies(global_holdout=1.0)))
    out = c.event("cart.updated", T0)
    assert one(decisions(out, "entered"))["detail"] == "holdout"
    assert one(decisions(out, "holdout"))["detail"] == "journey holdout"
