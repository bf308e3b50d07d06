"""The journeys and policies the engine's tests share (tests/unit/core/test_*.py)."""

from __future__ import annotations

from orchestrator.core import Policies
from orchestrator.core.policies import QuietHours


CART = """
journey: cart
entry:
  on: cart.updated
  if: event.properties.value >= 50
capture: {cart_value: event.properties.value}
start: email
nodes:
  email:
    send: email
    template: cart-1
    params: {v: journey.vars.cart_value, doubled: event.properties.value * 2, tier: profile.tier}
    next: pause
  pause: {wait: 1d, next: done}
  done: {exit: completed}
"""


# send at once, then leave
INSTANT = """
journey: instant
entry: {on: cart.updated}
start: email
nodes:
  email: {send: email, template: t, next: done}
  done: {exit: completed}
"""


# ---------------------------------------------------------------------------- goal and exit
GOAL = """
journey: goal-j
entry: {on: cart.updated}
goal: {on: order.completed, suppress: [ads, web]}
exit: {on: [account.closed, cart.emptied]}
start: email
nodes:
  email: {send: email, template: t1, next: pause}
  pause: {wait: 1d, next: push}
  push: {send: push, template: t2}
"""


# ---------------------------------------------------------------------------- timers
WAIT = """
journey: wait-j
entry: {on: cart.updated}
start: w
nodes:
  w: {wait: 1h, next: push}
  push: {send: push, template: later, next: done}
  done: {exit: completed}
"""


# ---------------------------------------------------------------------------- wait_for
WAIT_FOR = """
journey: wf
entry: {on: cart.updated}
start: email
nodes:
  email: {send: email, template: reminder, next: wait_open}
  wait_open: {wait_for: message.opened, timeout: 24h, on_event: thanks, on_timeout: push}
  thanks: {send: inapp, template: thanks, next: done}
  push: {send: push, template: nudge, next: done}
  done: {exit: completed}
"""


# ---------------------------------------------------------------------------- the send gate
def five_journeys() -> list[str]:
    return [INSTANT.replace("journey: instant", f"journey: j{i}").replace("template: t", f"template: t{i}")
            for i in range(5)]


QUIET = Policies(quiet_hours=QuietHours(("sms", "push"), 21 * 60, 8 * 60))


PUSH_NOW = """
journey: night
entry: {on: cart.updated}
goal: {on: order.completed, suppress: [push]}
start: p
nodes:
  p: {send: push, template: tonight, next: done}
  done: {exit: completed}
"""


# ---------------------------------------------------------------------------- exclusivity groups
def grouped(jid: str, entry: str, priority: int) -> str:
    return f"""
    journey: {jid}
    priority: {priority}
    group: promos
    entry: {{on: {entry}}}
    start: s
    nodes:
      s: {{send: email, template: {jid}, next: w}}
      w: {{wait: 1d, next: done}}
      done: {{exit: completed}}
    """
