"""What the offline simulator says a scenario's outputs must be, and the fingerprints both sides
are compared by (docs/chaos.md, "What is expected").

The simulator (:class:`orchestrator.simulate.Simulation`) runs the same engine, journeys and
policies as the workers, on a virtual clock, over exactly the lines produced.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from orchestrator.core import Engine, JourneySet, load_journey_dir, load_policies
from orchestrator.simulate import Simulation
from tests.chaos.load import MAX_EVENT_BYTES, Line

HERE = Path(__file__).resolve().parent
JOURNEYS = HERE / "journeys"      # the workers run these too (tests.chaos.workers)
POLICIES = HERE / "policies.yaml"


def action_fingerprint(a: dict[str, Any]) -> tuple:
    """An action without its wall-clock fields (``decided_at``)."""
    return (a.get("customer_id"), a.get("channel"), a.get("template"), orjson.dumps(a.get("params"),
            option=orjson.OPT_SORT_KEYS), a.get("journey"), a.get("journey_version"), a.get("node"),
            a.get("trigger_event_id"), a.get("event_ts"))


def suppression_fingerprint(s: dict[str, Any]) -> tuple:
    return (s.get("customer_id"), tuple(s.get("channels") or ()), s.get("journey"), s.get("reason"),
            tuple(s.get("cancels") or ()))


def decision_tuple(d: dict[str, Any]) -> tuple:
    return (d.get("customer_id"), d.get("journey"), d.get("journey_version"), d.get("node"), d.get("channel"),
            d.get("outcome"), d.get("detail"), d.get("action_id"), bool(d.get("shadow")))


@dataclass
class Expected:
    actions: dict[str, tuple] = field(default_factory=dict)        # action_id -> fingerprint
    action_line: dict[str, int] = field(default_factory=dict)      # action_id -> index of its line
    timer_actions: set[str] = field(default_factory=set)           # sent when a wait ended
    suppressions: dict[str, tuple] = field(default_factory=dict)
    decisions: set[tuple] = field(default_factory=set)
    decision_counts: Counter = field(default_factory=Counter)     # how many records of each decision tuple
    dlq: dict[int, str] = field(default_factory=dict)              # line index -> reason
    outcomes: Counter = field(default_factory=Counter)


def make_engine() -> Engine:
    policies = load_policies(POLICIES)
    journeys, problems = load_journey_dir(JOURNEYS, channels=policies.channels)
    if problems:
        raise SystemExit("chaos journeys refused:\n" + "\n".join(problems))
    return Engine(JourneySet(journeys), policies)


class _TimerAware(Simulation):
    """The simulation, noting which actions a timer sent (an action's trigger_event_id names the
    event that last moved its instance, so the action itself does not say it came from a timer)."""

    def __init__(self, engine: Engine, timer_actions: set[str], **kwargs: Any) -> None:
        super().__init__(engine, **kwargs)
        self.timer_actions = timer_actions

    def advance(self, until_ms: int) -> Iterator[dict[str, Any]]:
        for r in super().advance(until_ms):
            if r["topic"].startswith("actions."):
                self.timer_actions.add(r["value"]["action_id"])
            yield r


def expected(lines: list[Line]) -> Expected:
    """Run the offline simulator over the lines in produce order (Kafka keeps each customer's
    events in order: one key, one partition), then run its clock on by a minute."""
    exp = Expected()
    sim = _TimerAware(make_engine(), exp.timer_actions, max_event_bytes=MAX_EVENT_BYTES)

    def take(i: int, records: Any) -> None:
        for r in records:
            topic, v = r["topic"], r["value"]
            if topic.startswith("actions."):
                exp.actions[v["action_id"]] = action_fingerprint(v)
                exp.action_line.setdefault(v["action_id"], i)
            elif topic == "suppressions":
                exp.suppressions[v["suppression_id"]] = suppression_fingerprint(v)
            elif topic == "decisions":
                exp.decisions.add(decision_tuple(v))
                exp.decision_counts[decision_tuple(v)] += 1
                exp.outcomes[v["outcome"]] += 1
            elif topic == "dlq":
                exp.dlq[i] = v["reason"]

    for i, ln in enumerate(lines):
        if ln.simulate:
            take(i, sim.feed(ln.value, i))
        if ln.reason is not None:
            if ln.simulate and exp.dlq.get(i) != ln.reason:
                raise AssertionError(f"simulate gives {exp.dlq.get(i)} for a {ln.reason} line: {ln.value[:100]!r}")
            exp.dlq[i] = ln.reason
    # After the last line the worker's wall clock goes on: timers due within a minute fire (the
    # 5 s waits of cx-timer); the 30 d wait_for timeouts of the other journeys never do.
    take(len(lines), sim.advance((sim.clock_ms or 0) + 60_000))
    return exp
