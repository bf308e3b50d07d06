"""The decision engine: exclusivity groups, priorities and preemption. Driven with explicit clock values: no
Kafka, no sleeps."""

from __future__ import annotations

from tests.unit.core.helpers import DAY, HOUR, T0, Customer, actions, decisions, engine, one, suppressions
from tests.unit.core.journeys_fixtures import INSTANT, grouped


# ---------------------------------------------------------------------------- exclusivity groups
def test_lower_priority_entry_is_refused_while_the_group_is_held() -> None:
    c = Customer(engine(grouped("mid", "cart.updated", 10), grouped("low", "page.viewed", 5)))
    assert actions(c.event("cart.updated", T0))
    out = c.event("page.viewed", T0 + HOUR)
    refused = one(decisions(out, "entry_refused"))
    assert (refused["journey"], refused["detail"]) == ("low", "group")     # SPEC §3 detail values
    assert not actions(out) and not decisions(out, "entered")
    assert set(c.state.instances) == {"mid"}


def test_equal_priority_does_not_preempt() -> None:
    c = Customer(engine(grouped("mid", "cart.updated", 10), grouped("peer", "page.viewed", 10)))
    c.event("cart.updated", T0)
    assert one(decisions(c.event("page.viewed", T0 + HOUR), "entry_refused"))["journey"] == "peer"


def test_higher_priority_preempts_with_suppression() -> None:
    c = Customer(engine(grouped("mid", "cart.updated", 10), grouped("top", "order.failed", 50)))
    mid_action = one(actions(c.event("cart.updated", T0)))["action_id"]
    out = c.event("order.failed", T0 + HOUR)
    sup = one(suppressions(out))
    assert (sup["reason"], sup["journey"], sup["cancels"], sup["channels"]) == \
        ("preempted", "mid", [mid_action], ["email"])
    assert one(decisions(out, "preempted"))["journey"] == "mid"
    assert one(decisions(out, "entered"))["journey"] == "top"
    assert one(actions(out))["journey"] == "top"
    assert set(c.state.instances) == {"top"}
    assert [a["journey"] for a in actions(c.tick(T0 + 3 * DAY))] == []


def test_same_event_enrols_only_the_highest_priority_of_a_group() -> None:
    c = Customer(engine(grouped("low", "cart.updated", 5), grouped("high", "cart.updated", 50),
                        INSTANT.replace("journey: instant", "journey: ungrouped")))
    out = c.event("cart.updated", T0)
    assert sorted(d["journey"] for d in decisions(out, "entered")) == ["high", "ungrouped"]
    assert one(decisions(out, "entry_refused"))["journey"] == "low"
