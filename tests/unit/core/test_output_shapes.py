"""The decision engine: every output's shape, and the clock it carries. Driven with explicit clock values:
no Kafka, no sleeps."""

from __future__ import annotations

import json

from orchestrator.core import Policies
from orchestrator.core.policies import FrequencyRule, QuietHours
from orchestrator.core.timeutil import format_ts, parse_ts_ms
from tests.unit.core.helpers import (
    ACTION_KEYS, CHANNELS, DAY, DECISION_KEYS, DECISION_OUTCOMES, MIN, SUPPRESSION_KEYS, SUPPRESSION_REASONS,
    Customer, engine, ts,
)
from tests.unit.core.journeys_fixtures import CART, GOAL, INSTANT, PUSH_NOW, WAIT_FOR, five_journeys, grouped


# ---------------------------------------------------------------------------- output shapes
def test_every_output_has_the_spec_shape() -> None:
    pol = Policies(consent={"sms": "opt_in"}, frequency=(FrequencyRule(2, 7 * DAY, "email"),),
                   quiet_hours=QuietHours(("push",), 21 * 60, 8 * 60))
    sms = INSTANT.replace("journey: instant", "journey: sms-j").replace("send: email", "send: sms")
    eng = engine(CART, GOAL, WAIT_FOR, sms, PUSH_NOW, *five_journeys()[:2],
                 grouped("mid", "page.viewed", 10), grouped("low", "page.viewed", 5),
                 grouped("top", "order.failed", 50),
                 INSTANT.replace("journey: instant", "journey: held").replace("start: email", "holdout: 100%\nstart: email"),
                 policies=pol)
    c = Customer(eng)
    night = ts("2026-01-15T23:00:00Z")
    c.event("cart.updated", night, value=80)
    c.event("page.viewed", night + MIN)
    c.event("order.failed", night + 2 * MIN)
    c.tick(night + 2 * DAY)
    c.event("account.closed", night + 3 * DAY)
    c.event("profile.erased", night + 4 * DAY)
    outcomes = set()
    for o in c.log:
        assert o.key == "c-1"
        json.dumps(o.value)
        if o.topic == "decisions":
            keys = set(o.value)
            assert DECISION_KEYS <= keys <= DECISION_KEYS | {"action_id"}, keys
            assert o.value["outcome"] in DECISION_OUTCOMES
            assert parse_ts_ms(o.value["ts"]) is not None
            outcomes.add(o.value["outcome"])
        elif o.topic == "suppressions":
            assert set(o.value) == SUPPRESSION_KEYS
            assert o.value["reason"] in SUPPRESSION_REASONS
            assert o.value["suppression_id"].startswith("s-")
        else:
            assert o.topic.startswith("actions.") and o.topic.split(".", 1)[1] in CHANNELS
            assert set(o.value) == ACTION_KEYS
            assert o.topic == f"actions.{o.value['channel']}"
    assert {"entered", "sent", "holdout", "no_consent", "frequency_cap", "quiet_hours_deferred",
            "entry_refused", "preempted", "exited"} <= outcomes


def test_decisions_and_actions_carry_the_engine_clock_not_the_wall_clock() -> None:
    then = ts("2030-05-01T09:30:00Z")
    out = Customer(engine(INSTANT)).event("cart.updated", then)
    assert {o.value.get("ts", o.value.get("decided_at")) for o in out} == {format_ts(then)}
