"""The decision engine: what a journey's expressions see (activity, session, engagement, journey, now).
Driven with explicit clock values: no Kafka, no sleeps."""

from __future__ import annotations

import pytest

from orchestrator.core import Policies
from orchestrator.core.timeutil import format_ts
from tests.unit.core.helpers import DAY, HOUR, MIN, T0, Customer, actions, engine, one


# ---------------------------------------------------------------------------- expression namespaces (SPEC §4)
NAMESPACES = """
journey: ns
entry: {on: cart.updated, reentry: always}
start: s
nodes:
  s:
    send: email
    template: t
    params:
      views: activity.product.viewed.count_30d
      views_last: activity.product.viewed.last_at
      views_by_key: 'activity["product.viewed"].count_30d'
      carts: activity.cart.updated.count_30d
      sess_n: session.event_count
      sess_start: session.started_at
      cats: session.categories
      sent7: engagement.email.sent_7d
      sent30: engagement.email.sent_30d
      opened30: engagement.email.opened_30d
      clicked7: engagement.email.clicked_7d
      last_open: engagement.email.last_opened_at
      entered: journey.entered_at
      touches: journey.touches
      now: now
      mins_since_view: hours_since(activity.product.viewed.last_at) * 60
    next: w
  w: {wait: 1h, next: s2}
  s2: {send: push, template: t2, params: {touches: journey.touches}}
"""


def test_expression_namespaces_seen_by_a_journey() -> None:
    c = Customer(engine(NAMESPACES))
    c.event("product.viewed", T0 - 40 * MIN, category="shoes")
    c.event("product.viewed", T0 - 20 * MIN, category="hats")
    c.event("product.viewed", T0 - 5 * MIN, category="shoes")
    out = c.event("cart.updated", T0)
    p = one(actions(out))["params"]
    assert p == {
        "views": 3, "views_last": format_ts(T0 - 5 * MIN), "views_by_key": 3, "carts": 1,
        "sess_n": 4, "sess_start": format_ts(T0 - 40 * MIN), "cats": ["shoes", "hats"],
        "sent7": 0, "sent30": 0, "opened30": 0, "clicked7": 0, "last_open": None,
        "entered": format_ts(T0), "touches": 0, "now": format_ts(T0), "mins_since_view": pytest.approx(5.0),
    }
    aid = one(actions(out))["action_id"]
    c.event("message.opened", T0 + MIN, action_id=aid, channel="email")
    c.event("message.clicked", T0 + 2 * MIN, action_id=aid, channel="email")
    assert one(actions(c.tick(T0 + HOUR)))["params"] == {"touches": 1}
    # a new session after a 30 min gap; engagement counts what was sent and opened
    p = one(actions(c.event("cart.updated", T0 + 2 * HOUR)))["params"]
    assert (p["sess_n"], p["sess_start"], p["cats"]) == (1, format_ts(T0 + 2 * HOUR), [])
    assert (p["sent7"], p["sent30"], p["opened30"], p["clicked7"]) == (1, 1, 1, 1)
    assert p["last_open"] == format_ts(T0 + MIN)
    assert p["carts"] == 2 and p["touches"] == 0 and p["entered"] == format_ts(T0 + 2 * HOUR)


def test_session_boundary_is_30_minutes() -> None:
    c = Customer(engine(NAMESPACES))
    c.event("page.viewed", T0 - 60 * MIN)
    c.event("page.viewed", T0 - 30 * MIN - 1)     # 29:59.999 after the first: same session
    c.event("page.viewed", T0 - 2)                # 29:59.999 after the second: same session
    assert one(actions(c.event("cart.updated", T0)))["params"]["sess_n"] == 4
    c2 = Customer(engine(NAMESPACES), "c-2")
    c2.event("page.viewed", T0 - 30 * MIN)        # exactly 30 min before: a new session
    assert one(actions(c2.event("cart.updated", T0)))["params"]["sess_n"] == 1


@pytest.mark.parametrize("order", [["product.viewed", "product"], ["product", "product.viewed"]])
def test_activity_of_nested_event_types_in_any_order(order: list[str]) -> None:
    c = Customer(engine(NAMESPACES))
    for i, etype in enumerate(order):
        c.event(etype, T0 - (10 - i) * MIN)
    p = one(actions(c.event("cart.updated", T0)))["params"]
    assert p["views"] == 1 and p["views_by_key"] == 1


def test_activity_counts_only_the_last_30_days() -> None:
    c = Customer(engine(NAMESPACES, policies=Policies(max_event_age_ms=60 * DAY)))
    c.event("product.viewed", T0, ts=T0 - 40 * DAY)
    c.event("product.viewed", T0 + 1, ts=T0 - 10 * DAY)
    assert one(actions(c.event("cart.updated", T0 + 2)))["params"]["views"] == 1
