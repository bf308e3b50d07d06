"""Journey statistics and lift, through the same engine as the worker (offline simulation)."""

from __future__ import annotations

import random

import orjson

from orchestrator.core import Engine, JourneySet, Policies, parse_journey
from orchestrator.reports.stats import from_decisions, lift_interval, render_table
from orchestrator.simulate import Simulation

HOLDOUT_JOURNEY = """
journey: promo
version: 2
entry: {on: promo.eligible}
holdout: 30%
goal: {on: order.completed}
start: offer
nodes:
  offer: {send: email, template: promo-offer, next: wait}
  wait: {wait: 3d, next: done}
  done: {exit: completed}
"""


def test_lift_interval_contains_the_true_lift_for_10000_synthetic_customers():
    """Contacted customers convert with p=0.15, uncontacted ones with p=0.10: true lift +5 pp (x1.5)."""
    p_contacted, p_not = 0.15, 0.10
    policies = Policies()
    engine = Engine(JourneySet([parse_journey(HOLDOUT_JOURNEY, "promo.yaml", channels=policies.channels)]), policies)
    sim = Simulation(engine)
    rng = random.Random(20261123)
    t0 = 1_795_000_000_000
    records = []
    for i in range(10_000):
        cid = f"cust-{i}"
        entry = orjson.dumps({"event_id": f"in-{i}", "customer_id": cid, "type": "promo.eligible", "ts": t0 + i})
        out = list(sim.feed(entry, i))
        records += out
        contacted = any(r["topic"].startswith("actions.") for r in out)
        if rng.random() < (p_contacted if contacted else p_not):
            order = orjson.dumps({"event_id": f"o-{i}", "customer_id": cid, "type": "order.completed",
                                  "ts": t0 + i + 1})
            records += list(sim.feed(order, i))
    [report] = from_decisions(r["value"] for r in records if r["topic"] == "decisions")
    assert report["journey"] == "promo" and report["version"] == 2
    assert report["entries"]["total"] == 10_000
    assert 0.25 < report["entries"]["holdout"] / 10_000 < 0.35          # the 30 % holdout, deterministic
    lo, hi = report["lift_ci95"]
    assert lo <= p_contacted - p_not <= hi
    rlo, rhi = report["relative_lift_ci95"]
    assert rlo <= p_contacted / p_not - 1 <= rhi
    assert report["active"] == 10_000 - report["goals"]["total"]          # the rest still wait 3 days
    assert "promo" in render_table([report])


def test_no_holdout_means_no_lift():
    assert lift_interval(10, 100, 0, 0) == {"lift": None, "lift_ci95": None, "relative_lift": None,
                                            "relative_lift_ci95": None}


def test_goals_and_exits_are_attributed_to_the_group_of_the_latest_entry():
    d = [
        {"customer_id": "a", "journey": "j", "journey_version": 1, "outcome": "entered", "detail": "holdout"},
        {"customer_id": "b", "journey": "j", "journey_version": 1, "outcome": "entered", "detail": "treatment"},
        {"customer_id": "a", "journey": "j", "journey_version": 1, "outcome": "goal", "detail": "goal"},
        {"customer_id": "b", "journey": "j", "journey_version": 1, "outcome": "exited", "detail": "max_touches"},
        {"customer_id": "c", "journey": "j", "journey_version": 1, "outcome": "entered", "detail": "treatment"},
        {"customer_id": "c", "journey": "j", "journey_version": 1, "outcome": "sent", "detail": "t"},
    ]
    [r] = from_decisions(d)
    assert r["entries"] == {"treatment": 2, "holdout": 1, "total": 3}
    assert r["goals"] == {"treatment": 0, "holdout": 1, "total": 1}
    assert r["exits"] == {"max_touches": 1}
    assert r["active"] == 1
    assert r["conversion"] == {"treatment": 0.0, "holdout": 1.0}
