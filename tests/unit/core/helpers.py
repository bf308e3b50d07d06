"""Shared helpers for the pure-core unit tests (no Kafka, no sleeps, explicit clocks)."""

from __future__ import annotations

import itertools
import json
import textwrap
from typing import Any

from orchestrator.core import Engine, Event, Policies, dedup, parse_event, parse_journey
from orchestrator.core.journeys import Journey
from orchestrator.core.policies import DEFAULT_CHANNELS
from orchestrator.core.state import CustomerState
from orchestrator.core.timeutil import format_ts, parse_ts_ms

SEC = 1_000
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR

# Tuesday 2026-03-10 12:00:00 UTC: daytime in UTC, outside any quiet hours used in the tests.
T0 = parse_ts_ms("2026-03-10T12:00:00Z")
assert T0 is not None

CHANNELS = DEFAULT_CHANNELS

DECISION_KEYS = {"customer_id", "journey", "journey_version", "node", "channel", "outcome", "detail", "ts"}
DECISION_OUTCOMES = {"sent", "holdout", "no_consent", "frequency_cap", "quiet_hours_deferred", "suppressed",
                     "preempted", "entry_refused", "entered", "exited", "goal", "window_deferred"}
ACTION_KEYS = {"action_id", "customer_id", "channel", "template", "params", "journey", "journey_version", "node",
               "trigger_event_id", "event_ts", "decided_at"}
SUPPRESSION_KEYS = {"suppression_id", "customer_id", "channels", "journey", "reason", "cancels", "ts"}
SUPPRESSION_REASONS = {"goal", "exit", "erased", "unsubscribed", "preempted", "expired"}
DEAD_LETTER_KEYS = {"reason", "detail", "topic", "partition", "offset", "raw", "ts"}

_ids = itertools.count(1)


def journey(text: str, filename: str = "test.yaml", channels: tuple[str, ...] = CHANNELS) -> Journey:
    return parse_journey(textwrap.dedent(text), filename, channels=channels)


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based line number of the ``nth`` line of ``text`` containing ``needle``."""
    seen = 0
    for i, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            seen += 1
            if seen == nth:
                return i
    raise AssertionError(f"{needle!r} not in text")


def raw_event(etype: str, cid: str = "c-1", ts: int | str = T0, eid: str | None = None,
              **props: Any) -> bytes:
    body: dict[str, Any] = {"event_id": eid or f"e-{next(_ids)}", "customer_id": cid, "type": etype,
                            "ts": format_ts(ts) if isinstance(ts, int) else ts}
    if props:
        body["properties"] = props
    return json.dumps(body).encode()


def ev(etype: str, cid: str = "c-1", ts: int = T0, eid: str | None = None, **props: Any) -> Event:
    """A validated event, built through the real parser."""
    parsed = parse_event(raw_event(etype, cid, ts, eid, **props), max_bytes=65536, now_ms=ts)
    assert isinstance(parsed, Event), parsed
    return parsed


def ts(text: str) -> int:
    value = parse_ts_ms(text)
    assert value is not None
    return value


def one(items: list) -> dict:
    assert len(items) == 1, items
    return items[0]


def topics(outputs: list) -> list[str]:
    return [o.topic for o in outputs]


def actions(outputs: list) -> list[dict[str, Any]]:
    return [o.value for o in outputs if o.topic.startswith("actions.")]


def decisions(outputs: list, outcome: str | None = None) -> list[dict[str, Any]]:
    return [o.value for o in outputs if o.topic == "decisions" and (outcome is None or o.value["outcome"] == outcome)]


def suppressions(outputs: list) -> list[dict[str, Any]]:
    return [o.value for o in outputs if o.topic == "suppressions"]


class Customer:
    """One customer's state driven through an engine with explicit clock values, behind the duplicate
    rule as the worker and simulate apply it (:mod:`orchestrator.core.dedup`)."""

    def __init__(self, engine: Engine, cid: str = "c-1") -> None:
        self.engine = engine
        self.cid = cid
        self.state: CustomerState | None = None
        self.log: list = []
        self.window = dedup.Window()
        self.duplicates: list[str] = []          # event ids ignored as duplicates

    def event(self, etype: str, now: int, ts: int | None = None, eid: str | None = None, **props: Any) -> list:
        """An event dated ``ts`` (default ``now``) decided when the clock reads ``now`` (nothing, if its
        event id was seen within the window)."""
        e = ev(etype, self.cid, ts if ts is not None else now, eid, **props)
        if not self.window.first(dedup.key(self.cid, e.event_id), now):
            self.duplicates.append(e.event_id)
            return []
        result = self.engine.on_event(self.state, e, now)
        self.state = result.state
        self.log.extend(result.outputs)
        return result.outputs

    def tick(self, now: int) -> list:
        result = self.engine.on_timer(self.state, self.cid, now, now)
        self.state = result.state
        self.log.extend(result.outputs)
        return result.outputs


def engine(*journey_texts: str, policies: Policies | None = None) -> Engine:
    return Engine([journey(t, f"j{i}.yaml") for i, t in enumerate(journey_texts)], policies or Policies())


# SPEC §4's journey (also journeys/cart-recovery.yaml) and §5's policies, verbatim, comments and all.
SPEC_JOURNEY = """\
journey: cart-recovery        # id: [a-z0-9-]+
version: 3                    # customers in flight finish on the version they entered
priority: 50                  # higher wins inside an exclusivity group
group: promotions             # optional: at most one active journey per group per customer
entry:
  on: cart.updated
  if: event.properties.value >= 50
  reentry: 7d                 # never (default) | always | <duration> after exit
capture: {cart_value: event.properties.value}   # stored, later read as journey.vars.cart_value
holdout: 10%                  # deterministic control group: walks the journey, never contacted
goal:
  on: order.completed         # conversion: exit + counted, + suppression of the channels below
  suppress: [ads, web, sms]
exit:
  on: [account.closed]
  max_touches: 3
  max_duration: 14d
start: wait_1h
nodes:
  wait_1h:   {wait: 1h, next: choose}
  choose:
    branch:
      - {if: profile.ltv_tier == "gold", next: sms_offer}
      - {if: engagement.email.opened_30d > 0, next: email_reminder}
      - {next: push_reminder}                       # else
  email_reminder:
    send: email
    template: cart-reminder-1
    params: {cart_value: journey.vars.cart_value}
    next: wait_open
  wait_open: {wait_for: message.opened, timeout: 24h, on_event: done, on_timeout: push_reminder}
  push_reminder: {send: best, channels: [push, sms], template: cart-reminder-2, next: done}
  sms_offer: {send: sms, template: gold-offer, next: done}
  ab: {split: [{weight: 50, next: email_reminder}, {weight: 50, next: push_reminder}]}
  done: {exit: completed}
"""
SPEC_POLICIES = """\
channels: [email, sms, push, inapp, web, ads]
frequency:                     # rolling windows, across all journeys
  - {max: 5, per: 7d}
  - {channel: sms, max: 2, per: 7d}
quiet_hours: {channels: [sms, push], from: "21:00", to: "08:00"}   # customer's timezone, default UTC; sends are deferred to the window's end
consent: {sms: opt_in, email: opt_out, push: opt_out}               # opt_in: needs consent.<ch> == true
global_holdout: 5%
max_event_age: 24h
"""
