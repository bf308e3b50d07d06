"""Journeys as the engine runs them: nodes, entry, goal and exit (docs/journeys.md).

The definitions come from YAML files through :mod:`orchestrator.core.journeyfiles`, which refuses
a definition with every problem as ``file:line: message``; this module holds only the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.core.events import EventTypes
from orchestrator.core.expressions import Expression
from orchestrator.core.ids import bucket
from orchestrator.core.localtime import ALL_DAYS, Window, format_clock, format_days


@dataclass(frozen=True)
class SendNode:
    name: str
    channel: str                 # a channel name, or "best"
    channels: tuple[str, ...]    # candidates for "best"; (channel,) otherwise
    template: str
    params: dict[str, Expression]
    next: str | None
    window: Window | None = None           # outside it the send is deferred to its next opening
    exempt: tuple[str, ...] = ()           # gate checks skipped: of EXEMPTIBLE only


EXEMPTIBLE = ("frequency", "quiet_hours")   # consent (and holdout) are never exempt


@dataclass(frozen=True)
class BranchNode:
    name: str
    cases: tuple[tuple[Expression | None, str], ...]   # None = else


@dataclass(frozen=True)
class SplitNode:
    name: str
    arms: tuple[tuple[float, str], ...]                 # (weight, next)

    def arm_of(self, journey_id: str, customer_id: str) -> int:
        """The arm a customer takes: a deterministic function of (journey, customer, node) (docs/journeys.md#split),
        so the engine and ``journeys winner`` always agree on it."""
        x = bucket("split", journey_id, customer_id, self.name) * sum(w for w, _ in self.arms)
        for i, (w, _) in enumerate(self.arms):
            if x < w:
                return i
            x -= w
        return len(self.arms) - 1                        # (rounding at the very top of the range)


@dataclass(frozen=True)
class WaitNode:
    name: str
    ms: int
    next: str


@dataclass(frozen=True)
class WaitForNode:
    name: str
    event_types: EventTypes          # any of them ends the wait
    timeout_ms: int
    on_event: str
    on_timeout: str


@dataclass(frozen=True)
class WaitUntilNode:
    """Wait for a time of day in the customer's timezone, on some days of the week (docs/journeys.md#wait_until)."""

    name: str
    minute: int                      # minutes after local midnight
    days: tuple[int, ...]            # weekday numbers (Monday 0); all seven when the node names none
    next: str

    def __str__(self) -> str:
        return format_clock(self.minute) + ("" if self.days == ALL_DAYS else f" {format_days(self.days)}")


@dataclass(frozen=True)
class ExitNode:
    name: str
    reason: str


Node = SendNode | BranchNode | SplitNode | WaitNode | WaitForNode | WaitUntilNode | ExitNode

REENTRY_NEVER = -1
REENTRY_ALWAYS = 0


@dataclass(frozen=True)
class Journey:
    id: str
    version: int
    start: str
    nodes: dict[str, Node]
    entry_on: EventTypes                     # any of these types enrols
    entry_if: Expression | None = None
    reentry_ms: int = REENTRY_NEVER          # -1 never, 0 always, >0 after that long since exit
    priority: int = 0
    group: str | None = None
    capture: dict[str, Expression] = field(default_factory=dict)
    holdout: float = 0.0
    goal_on: EventTypes = EventTypes()       # any of these is the goal (none: no goal)
    goal_suppress: tuple[str, ...] = ()
    exit_on: EventTypes = EventTypes()
    exit_if: Expression | None = None        # checked on every event of a customer in the journey
    max_entries: int | None = None           # per customer, over all versions of this journey
    max_touches: int | None = None
    max_duration_ms: int | None = None
    enabled: bool = True
    shadow: bool = False                     # runs on live traffic, records decisions, sends nothing
    source: str = ""
    # Not reasons to refuse the definition, but worth a look (``file:line: warning: message``):
    # nodes that no path from ``start`` reaches.
    warnings: tuple[str, ...] = ()
    # Every event type that can change an instance of this journey: goal, exit and wait_for types.
    # An event of another type skips the instance at once unless ``exit_if`` is set (precomputed,
    # so an event no journey listens to costs one set lookup per instance).
    listens: frozenset[str] = field(init=False, repr=False, compare=False, default=frozenset())

    def __post_init__(self) -> None:
        waits = [t for n in self.nodes.values() if isinstance(n, WaitForNode) for t in n.event_types]
        object.__setattr__(self, "listens", frozenset((*self.goal_on, *self.exit_on, *waits)))

    @property
    def key(self) -> str:
        return f"{self.id}@{self.version}"


MAX_STEPS = 64          # nodes one walk (an event's or a timer's) may pass before the instance is stopped


def successors(node: Node) -> list[str]:
    match node:
        case SendNode(next=nxt):
            return [nxt] if nxt else []
        case BranchNode(cases=cases):
            return [n for _, n in cases]
        case SplitNode(arms=arms):
            return [n for _, n in arms]
        case WaitNode(next=nxt) | WaitUntilNode(next=nxt):
            return [nxt]
        case WaitForNode(on_event=a, on_timeout=b):
            return [a, b]
    return []


def reachable(nodes: dict[str, Node], start: str) -> set[str]:
    """The nodes some path from ``start`` reaches (``start`` included)."""
    reached = {start}
    todo = [start]
    while todo:
        node = nodes.get(todo.pop())
        for succ in successors(node) if node is not None else []:
            if succ in nodes and succ not in reached:
                reached.add(succ)
                todo.append(succ)
    return reached
