"""Journey statistics and lift, through the same engine as the worker (offline simulation), and the
statistics a split arm is judged by (orchestrator/reports/stats.py)."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.core import Engine, JourneySet, Policies, parse_journey
from orchestrator.reports import stats
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


# ---------------------------------------------------------------------------- statistics
def test_the_statistics_helpers_give_the_textbook_values() -> None:
    assert stats.z_two_sided(0.95) == pytest.approx(1.959964, abs=1e-6)
    assert stats.z_two_sided(0.99) == pytest.approx(2.575829, abs=1e-6)
    lo, hi = stats.rate_interval(10, 100, stats.z_two_sided(0.95))       # Wilson: [5.52%, 17.44%]
    assert (round(lo, 4), round(hi, 4)) == (0.0552, 0.1744)
    assert stats.rate_interval(0, 0, 1.96) is None
    assert stats.rate_interval(0, 20, 1.96)[0] == 0.0
    # 10/100 vs 20/100: z = 1.98, p = 0.0477
    assert stats.two_proportion_test(20, 100, 10, 100) == pytest.approx(0.0477, abs=1e-4)
    assert stats.two_proportion_test(0, 50, 0, 50) == 1.0
    assert stats.entries_per_arm(0.10, 0.15, 0.05) == 686                 # 80% power
    assert stats.entries_per_arm(0.1, 0.1, 0.05) is None
    assert not stats.normal_approximation_holds(3, 10, 0, 10) and stats.normal_approximation_holds(30, 100, 20, 100)
    assert stats.fewest_expected(1, 17, 8, 13) == pytest.approx((3.9, "conversions", 13))    # 13 × 9/30
    assert stats.entries_for_approximation(1, 17, 8, 13) == 17                              # 17 × 0.30 ≥ 5
    assert stats.fewest_expected(19, 20, 20, 20) == pytest.approx((0.5, "non-conversions", 20))


def test_fishers_exact_test_gives_the_published_values() -> None:
    # The lady tasting tea (Fisher 1935; the TeaTasting example of R's fisher.test): 3 of the 4 cups
    # with milk first named right, 1 of the 4 others; one-sided p = 0.2429, and the table is
    # symmetric, so two-sided twice that.
    assert stats.fisher_exact(3, 4, 1, 4) == pytest.approx(2 * 0.2429, abs=1e-4)
    # Fisher's twins (1962; the Convictions example of R's fisher.test): 2 of 17 dizygotic and 10 of
    # 13 monozygotic twins of convicted criminals convicted too; two-sided p-value = 0.0005367.
    assert stats.fisher_exact(2, 17, 10, 13) == pytest.approx(0.0005367, abs=1e-7)
    assert stats.fisher_exact(10, 13, 2, 17) == pytest.approx(stats.fisher_exact(2, 17, 10, 13), rel=1e-12)
    assert stats.fisher_exact(0, 5, 0, 5) == 1.0 and stats.fisher_exact(0, 0, 1, 5) is None


def exact_fisher(g1: int, n1: int, g2: int, n2: int) -> Fraction:
    """The same test in exact rationals, by its definition: the hypergeometric probability of every
    table with the margins observed, summed over the tables no more likely than the observed one."""
    goals, total = g1 + g2, n1 + n2
    prob = {k: Fraction(math.comb(goals, k) * math.comb(total - goals, n1 - k), math.comb(total, n1))
            for k in range(max(0, goals - n2), min(goals, n1) + 1)}
    return sum((p for p in prob.values() if p <= prob[g1]), Fraction(0))


@given(st.integers(1, 60), st.integers(1, 60), st.data())
@settings(max_examples=300, deadline=None)
def test_fishers_exact_test_is_the_hypergeometric_sum(n1: int, n2: int, data: st.DataObject) -> None:
    g1, g2 = data.draw(st.integers(0, n1)), data.draw(st.integers(0, n2))
    assert stats.fisher_exact(g1, n1, g2, n2) == pytest.approx(float(exact_fisher(g1, n1, g2, n2)), rel=1e-6)


def test_the_lift_interval_stays_within_what_a_difference_of_rates_can_be() -> None:
    # 1 of 2 treated converted, 1 of 1 held out: Wald reaches -119 pp; a difference of rates is >= -100 pp.
    report = lift_interval(1, 2, 1, 1)
    assert report["lift"] == -0.5 and report["lift_ci95"][0] == -1.0 and -1.0 < report["lift_ci95"][1] < 1.0
