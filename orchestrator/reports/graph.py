"""Journey pictures: a journey as Mermaid or Graphviz DOT text, optionally with counts.

Pure (no I/O), so ``orchestrator journeys graph``, the README's pictures and the tests all draw
with the same code:

- :func:`picture` turns a :class:`~orchestrator.core.journeys.Journey` into boxes and arrows:
  the entry (``on``/``if``, re-entry, ``max_entries``, holdout, group) pointing at ``start``, one
  box per node (sends with channel(s), template, window and exemptions; waits with their
  duration; ``wait_until`` with its time of day and days; ``wait_for`` with its event types and
  timeout; exits with their reason) and notes for the goal and the exit rules (``exit.on``,
  ``exit.if``, ``max_touches``, ``max_duration``). Branch conditions, split shares and the two ways out of a ``wait_for`` are
  the arrows' labels. A send without ``next`` ends the journey (``completed``): it points at a
  synthetic *end* box.
- :func:`count_decisions` reads Decision records (docs/events.md#decisions, the ``decisions`` topic) into
  :class:`Counts`: per node the outcomes decided there (gate outcomes, goals, exits), entries and
  refused entries, and per arrow how many customers went along it.
- :func:`to_mermaid` and :func:`to_dot` write the text; with counts, each box and arrow carries
  its numbers.

How arrows are counted. Decisions only name the node where something was decided: the entry
(``entered`` at ``start``), each send's gate outcome, and the node a customer was at when they
left (goal, exit, preemption). Between two decisions of one journey instance, a customer went from
the first node to the second through nodes that record nothing (waits, ``wait_until``, ``wait_for``, branches,
splits). When every such path shares an arrow, that arrow is counted; an arrow on some paths but
not all (two branch cases to the same node, a split whose arms meet again) is not, and is drawn
with ``≥`` before its count, which is then a lower bound. A customer still waiting after a send
is counted on the arrow into the wait they are in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from orchestrator.core import journeys as jmod
from orchestrator.core.journeys import (REENTRY_ALWAYS, REENTRY_NEVER, BranchNode, ExitNode, Journey, Node, SendNode,
                                        SplitNode, WaitForNode, WaitNode, WaitUntilNode)
from orchestrator.core.timeutil import parse_ts_ms
from orchestrator.core.vocabulary import Outcome

# Node kinds handled explicitly below; tests/unit/reports/test_graph.py checks that it covers journeys.Node.
HANDLED_NODE_TYPES = (SendNode, BranchNode, SplitNode, WaitNode, WaitForNode, WaitUntilNode, ExitNode)

ENTRY = "<entry>"        # pseudo node names: cannot clash with a node (NODE_NAME has no < >)
END = "<end>"
GOAL = "<goal>"
EXIT_RULES = "<exit>"

# Outcomes in the order a reader expects them on a box; others follow alphabetically.
OUTCOME_ORDER = (Outcome.SENT, Outcome.HOLDOUT, Outcome.NO_CONSENT, Outcome.FREQUENCY_CAP, Outcome.QUIET_HOURS_DEFERRED,
                 Outcome.WINDOW_DEFERRED, Outcome.SUPPRESSED, Outcome.GOAL, Outcome.EXITED, Outcome.PREEMPTED)
GATE_OUTCOMES = frozenset({Outcome.SENT, Outcome.HOLDOUT, Outcome.NO_CONSENT, Outcome.FREQUENCY_CAP, Outcome.SUPPRESSED})
DEFERRALS = frozenset({Outcome.QUIET_HOURS_DEFERRED, Outcome.WINDOW_DEFERRED})
ENDINGS = frozenset({Outcome.GOAL, Outcome.EXITED, Outcome.PREEMPTED})

EdgeKey = tuple[str, int]           # (from node, index among its ways out)


@dataclass(frozen=True)
class Box:
    name: str                       # node name, or one of the pseudo names above
    kind: str                       # entry, send, wait, wait_for, branch, split, exit, end, note, or a node class
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Arrow:
    key: EdgeKey
    src: str
    dst: str
    label: str


@dataclass(frozen=True)
class Picture:
    journey: str
    version: int
    boxes: tuple[Box, ...]
    arrows: tuple[Arrow, ...]


@dataclass
class Counts:
    """What the decisions say about one journey version (see the module docstring)."""

    nodes: dict[str, dict[str, int]] = field(default_factory=dict)      # node -> outcome label -> n
    channels: dict[str, dict[str, int]] = field(default_factory=dict)   # node -> channel -> sent
    edges: dict[EdgeKey, int] = field(default_factory=dict)
    uncertain: set[EdgeKey] = field(default_factory=set)                # counts are lower bounds
    entered: dict[str, int] = field(default_factory=dict)               # treatment / holdout
    refused: dict[str, int] = field(default_factory=dict)               # reentry / max_entries / group
    goals: dict[str, int] = field(default_factory=dict)                 # treatment / holdout
    unknown_nodes: int = 0          # decisions naming a node this definition does not have
    unexplained: int = 0            # consecutive decisions no path of this definition connects
    decisions: int = 0              # decisions of this journey version inside the span
    since_ms: int | None = None
    until_ms: int | None = None


# ---------------------------------------------------------------------------- the picture
def _types(value: Any) -> tuple[str, ...]:
    """An event-type field: one type, or a list meaning any of them (docs/journeys.md#event-types)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    return tuple(str(v) for v in value)


def _describe(value: Any) -> str:
    """A definition value as short text: mappings and dataclasses as ``key value`` pairs."""
    if is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in fields(value)}
    if isinstance(value, dict):
        return " ".join(f"{k} {_describe(v)}" for k, v in value.items() if v not in (None, (), [], ""))
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(_describe(v) for v in value)
    return str(value)


_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000))


def format_duration_ms(ms: int) -> str:
    """``86400000`` -> ``1d``: the largest of d, h, m, s that divides it (weeks read as days)."""
    for unit, size in _UNITS:
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _percent(part: float, total: float) -> str:
    share = 100.0 * part / total if total else 0.0
    text = f"{share:.1f}".rstrip("0").rstrip(".")
    return f"{text}%"


def ways_out(node: Node) -> list[tuple[str, str]]:
    """(next node, arrow label) for every way out of a node, in definition order; END for none."""
    match node:
        case SendNode(next=nxt):
            return [(nxt or END, "")]
        case BranchNode(cases=cases):
            return [(nxt, "else" if cond is None else f"if {cond.source}") for cond, nxt in cases]
        case SplitNode(arms=arms):
            total = sum(w for w, _ in arms)
            return [(nxt, _percent(w, total)) for w, nxt in arms]
        case WaitNode(next=nxt) | WaitUntilNode(next=nxt):
            return [(nxt, "")]
        case WaitForNode(on_event=on_event, on_timeout=on_timeout, timeout_ms=ms):
            return [(on_event, " or ".join(_types(node.event_types))), (on_timeout, f"timeout {format_duration_ms(ms)}")]
        case ExitNode():
            return []
    # A node kind added to the language but not to this module yet: still drawn, unlabelled.
    return [(n, "") for n in jmod.successors(node)]


def _node_box(node: Node) -> Box:
    name = node.name
    match node:
        case SendNode():
            if node.channel == "best":
                lines = [name, f"send best of {', '.join(node.channels)}"]
            else:
                lines = [name, f"send {node.channel}"]
            lines.append(f"template {node.template}")
            if node.window is not None:
                lines.append(f"window {node.window}")
            if node.exempt:
                lines.append(f"exempt from {', '.join(node.exempt)}")
            return Box(name, "send", tuple(lines))
        case BranchNode():
            return Box(name, "branch", (name,))
        case SplitNode():
            return Box(name, "split", (name, "split"))
        case WaitNode(ms=ms):
            return Box(name, "wait", (name, f"wait {format_duration_ms(ms)}"))
        case WaitUntilNode():
            return Box(name, "wait", (name, f"wait until {node}"))
        case WaitForNode(timeout_ms=ms):
            return Box(name, "wait_for", (name, f"wait for {' or '.join(_types(node.event_types))}",
                                          f"timeout {format_duration_ms(ms)}"))
        case ExitNode(reason=reason):
            return Box(name, "exit", (name, f"exit: {reason}"))
    kind = type(node).__name__.removesuffix("Node").lower() or "node"
    extra = [f"{f.name} {_describe(getattr(node, f.name))}" for f in fields(node)
             if f.name not in ("name", "next")] if is_dataclass(node) else []
    return Box(name, kind, (name, kind, *extra))


def _entry_box(j: Journey) -> Box:
    lines = [f"{j.id} v{j.version}"]
    flags = [w for w, on in (("disabled", not j.enabled), ("shadow", j.shadow)) if on]
    if flags:
        lines.append(", ".join(flags))
    lines.append(f"entry on {' or '.join(_types(j.entry_on))}")
    if j.entry_if is not None:
        lines.append(f"if {j.entry_if.source}")
    if j.reentry_ms == REENTRY_ALWAYS:
        lines.append("reentry always")
    elif j.reentry_ms != REENTRY_NEVER:
        lines.append(f"reentry after {format_duration_ms(j.reentry_ms)}")
    if j.max_entries is not None:
        lines.append(f"at most {j.max_entries} entr{'y' if j.max_entries == 1 else 'ies'}")
    if j.holdout:
        lines.append(f"holdout {_percent(j.holdout, 1.0)}")
    if j.group:
        lines.append(f"group {j.group}, priority {j.priority}")
    return Box(ENTRY, "entry", tuple(lines))


def _notes(j: Journey) -> list[Box]:
    out = []
    if j.goal_on:
        lines = [f"goal on {' or '.join(_types(j.goal_on))}"]
        if j.goal_suppress:
            lines.append(f"suppress {', '.join(j.goal_suppress)}")
        out.append(Box(GOAL, "note", tuple(lines)))
    rules = []
    if j.exit_on:
        rules.append(f"exit on {' or '.join(_types(j.exit_on))}")
    if j.exit_if is not None:
        rules.append(f"exit if {j.exit_if.source}")
    if j.max_touches is not None:
        rules.append(f"at most {j.max_touches} touches")
    if j.max_duration_ms is not None:
        rules.append(f"at most {format_duration_ms(j.max_duration_ms)} in the journey")
    if rules:
        out.append(Box(EXIT_RULES, "note", tuple(rules)))
    return out


def picture(j: Journey) -> Picture:
    """Boxes and arrows of a journey, in definition order (stable text for diffs and the README)."""
    boxes = [_entry_box(j)]
    arrows = [Arrow((ENTRY, 0), ENTRY, j.start, "")]
    reached, todo = {j.start}, [j.start]
    while todo:
        node = j.nodes.get(todo.pop())
        for dst, _ in ways_out(node) if node is not None else []:
            if dst not in reached:
                reached.add(dst)
                todo.append(dst)
    ends = False
    for name, node in j.nodes.items():
        box = _node_box(node)
        if name not in reached:     # allowed by the language, never visited: say so
            box = Box(box.name, box.kind, (*box.lines, "(unreachable)"))
        boxes.append(box)
        for i, (dst, label) in enumerate(ways_out(node)):
            arrows.append(Arrow((name, i), name, dst, label))
            ends = ends or dst == END
    if ends:
        boxes.append(Box(END, "end", ("end: completed",)))
    boxes.extend(_notes(j))
    return Picture(j.id, j.version, tuple(boxes), tuple(arrows))


# ---------------------------------------------------------------------------- counting
class _Paths:
    """Which arrows a customer certainly took between two nodes (see the module docstring)."""

    MAX_PATHS = 4096

    def __init__(self, j: Journey) -> None:
        self.nodes = j.nodes
        self.out: dict[str, list[tuple[EdgeKey, str]]] = {
            name: [((name, i), dst) for i, (dst, _) in enumerate(ways_out(node))] for name, node in j.nodes.items()}
        self._cache: dict[tuple[str, str], tuple[frozenset[EdgeKey], frozenset[EdgeKey]] | None] = {}

    def silent(self, name: str) -> bool:
        """Nodes that record no decision when a customer passes through them."""
        return name in self.nodes and not isinstance(self.nodes[name], (SendNode, ExitNode))

    def between(self, a: str, b: str) -> tuple[frozenset[EdgeKey], frozenset[EdgeKey]] | None:
        """(arrows on every path, arrows on some path) leaving ``a`` and first arriving at ``b``."""
        if (a, b) not in self._cache:
            self._cache[(a, b)] = self._search(a, b)
        return self._cache[(a, b)]

    def _search(self, a: str, b: str) -> tuple[frozenset[EdgeKey], frozenset[EdgeKey]] | None:
        every: set[EdgeKey] | None = None
        some: set[EdgeKey] = set()
        found = 0
        stack: list[tuple[str, list[EdgeKey], frozenset[str]]] = [(a, [], frozenset({a}))]
        while stack:
            at, path, seen = stack.pop()
            for key, dst in self.out.get(at, []):
                if dst == b:
                    found += 1
                    taken = set(path) | {key}
                    some |= taken
                    every = taken if every is None else every & taken
                    if found > self.MAX_PATHS:
                        return frozenset(), frozenset(some)
                elif self.silent(dst) and dst not in seen:
                    stack.append((dst, path + [key], seen | {dst}))
        if every is None:
            return None
        return frozenset(every), frozenset(some)

    def resting_place(self, a: str) -> EdgeKey | None:
        """The arrow out of send ``a`` into the wait a customer now sits in, if it is certain."""
        ways = self.out.get(a, [])
        if len(ways) == 1 and isinstance(self.nodes.get(ways[0][1]), (WaitNode, WaitForNode, WaitUntilNode)):
            return ways[0][0]
        return None


def _bump(table: dict[Any, int], key: Any, n: int = 1) -> None:
    table[key] = table.get(key, 0) + n


def _outcome_label(d: dict[str, Any]) -> str:
    outcome = str(d.get("outcome"))
    if outcome == Outcome.EXITED:
        return f"exited {d.get('detail') or 'exit'}"
    return outcome


def count_decisions(j: Journey, decisions: Iterable[dict[str, Any]], *, since_ms: int | None = None,
                    until_ms: int | None = None) -> Counts:
    """Count the decisions of journey ``j`` (its id and version) decided in ``[since_ms, until_ms)``.

    ``decisions`` must keep each customer's order (the topic's per-partition order does). Every
    decision is read, so an instance that entered before the span still has its path; only what
    happened inside the span is counted (an arrow at the time of the decision it leads to).
    Shadow decisions (``"shadow": true``) are left out: a shadow version contacts nobody.
    """
    counts = Counts(since_ms=since_ms, until_ms=until_ms)
    paths = _Paths(j)
    last: dict[str, dict[str, Any]] = {}         # customer -> their instance's previous decision
    group: dict[str, str] = {}                   # customer -> group of their instance

    def inside(d: dict[str, Any]) -> bool:
        ts = parse_ts_ms(d.get("ts"))
        if ts is None:
            return since_ms is None and until_ms is None
        return (since_ms is None or ts >= since_ms) and (until_ms is None or ts < until_ms)

    def take(keys: Iterable[EdgeKey], uncertain: Iterable[EdgeKey] = ()) -> None:
        for key in keys:
            _bump(counts.edges, key)
        counts.uncertain.update(uncertain)

    for d in decisions:
        if d.get("journey") != j.id or d.get("journey_version") != j.version or d.get("shadow"):
            continue
        cid, outcome, node = str(d.get("customer_id")), d.get("outcome"), d.get("node")
        now = inside(d)
        counts.decisions += now
        if outcome == "entry_refused":
            if now:
                _bump(counts.refused, str(d.get("detail") or "refused").split(" ", 1)[0])
            continue
        if not isinstance(node, str) or node not in j.nodes:
            counts.unknown_nodes += now
            last.pop(cid, None)
            continue
        prev = last.get(cid)
        if outcome == Outcome.ENTERED:
            grp = "holdout" if d.get("detail") == "holdout" else "treatment"
            group[cid] = grp
            if now:
                _bump(counts.entered, grp)
                take([(ENTRY, 0)])
            last[cid] = d
            continue
        if now:
            _bump(counts.nodes.setdefault(node, {}), _outcome_label(d))
            if outcome == Outcome.SENT and d.get("channel"):
                _bump(counts.channels.setdefault(node, {}), str(d["channel"]))
            if outcome == Outcome.GOAL:
                _bump(counts.goals, group.get(cid, "treatment"))
        if prev is not None and now:
            _step(paths, prev, d, take, counts)
        if outcome in ENDINGS:
            last.pop(cid, None)
        else:
            last[cid] = d
    # Customers resting in a wait after their last send: the arrow into it is certain.
    for d in last.values():
        if d.get("outcome") in GATE_OUTCOMES and inside(d):
            key = paths.resting_place(d["node"])
            if key is not None:
                take([key])
    return counts


def _step(paths: _Paths, prev: dict[str, Any], d: dict[str, Any], take: Any, counts: Counts) -> None:
    """Count the arrows between two consecutive decisions of one instance."""
    a, b, before, outcome = prev["node"], d["node"], prev.get("outcome"), d.get("outcome")
    if a == b and (before == Outcome.ENTERED or before in DEFERRALS):
        return                                      # the same visit: entry or release of a deferral
    if a == b and before in GATE_OUTCOMES and outcome in ENDINGS:
        if outcome == Outcome.EXITED and d.get("detail") == "completed" and paths.out[a] == [((a, 0), END)]:
            take([(a, 0)])                          # a send without next: the journey is complete
        return                                      # max_touches, or a goal/exit right after the send
    between = paths.between(a, b)
    if between is None:
        counts.unexplained += 1
        return
    every, some = between
    take(every, some - every)


# ---------------------------------------------------------------------------- counts as text
def _n(value: int) -> str:
    return f"{value:,}"


def _node_count_lines(name: str, counts: Counts) -> list[str]:
    table = counts.nodes.get(name, {})
    if not table:
        return []
    order = {o: i for i, o in enumerate(OUTCOME_ORDER)}

    def rank(label: str) -> tuple[int, str]:
        return order.get(label.split(" ", 1)[0], len(order)), label

    parts = []
    for label in sorted(table, key=rank):
        text = f"{label} {_n(table[label])}"
        chans = counts.channels.get(name, {})
        if label == "sent" and len(chans) > 1:
            text += " (" + ", ".join(f"{ch} {_n(v)}" for ch, v in sorted(chans.items())) + ")"
        parts.append(text)
    return [", ".join(parts)]


def _with_counts(box: Box, counts: Counts | None) -> tuple[str, ...]:
    if counts is None:
        return box.lines
    extra: list[str] = []
    if box.name == ENTRY:
        total = sum(counts.entered.values())
        held = counts.entered.get("holdout", 0)
        extra.append(f"entered {_n(total)}" + (f" (holdout {_n(held)})" if held else ""))
        if counts.refused:
            extra.append("refused " + ", ".join(f"{k} {_n(v)}" for k, v in sorted(counts.refused.items())))
    elif box.name == GOAL:
        total = sum(counts.goals.values())
        held = counts.goals.get("holdout", 0)
        extra.append(f"goals {_n(total)}" + (f" (holdout {_n(held)})" if held else ""))
    elif box.name == END:
        pass
    else:
        extra.extend(_node_count_lines(box.name, counts))
    return (*box.lines, *extra)


def _arrow_label(arrow: Arrow, counts: Counts | None) -> str:
    if counts is None:
        return arrow.label
    n = _n(counts.edges.get(arrow.key, 0))
    if arrow.key in counts.uncertain:
        n = "≥ " + n
    return f"{arrow.label}: {n}" if arrow.label else n


def _summary(p: Picture, counts: Counts) -> str:
    from orchestrator.core.timeutil import format_ts
    span = "all retained decisions"
    if counts.since_ms is not None or counts.until_ms is not None:
        frm = format_ts(counts.since_ms) if counts.since_ms is not None else "the start"
        to = format_ts(counts.until_ms) if counts.until_ms is not None else "now"
        span = f"from {frm} to {to}"
    text = f"counts of {p.journey} v{p.version}: {_n(counts.decisions)} decisions, {span}"
    if counts.unknown_nodes:
        text += f"; {_n(counts.unknown_nodes)} name nodes not in this definition"
    if counts.unexplained:
        text += f"; {_n(counts.unexplained)} steps no path of this definition explains"
    return text


# ---------------------------------------------------------------------------- Mermaid
_MERMAID_SHAPES = {
    "entry": ('(["', '"])'), "send": ('["', '"]'), "wait": ('("', '")'), "wait_for": ('{{"', '"}}'),
    "branch": ('{"', '"}'), "split": ('[/"', '"\\]'), "exit": ('(["', '"])'), "end": ('(["', '"])'),
    "note": ('>"', '"]'),
}


_MERMAID_PSEUDO = {ENTRY: "entry", END: "end_", GOAL: "goal", EXIT_RULES: "exit_rules"}


def _mermaid_escape(m: re.Match[str]) -> str:
    return "__" if m.group() == "_" else f"_{ord(m.group()):x}_"


def _mermaid_id(name: str) -> str:
    """A Mermaid node id ([A-Za-z0-9_]): a different one for every name. A name of letters, digits
    and ``_`` keeps itself after ``n_``; any other name (one with a ``-``) is written after ``x_``
    with ``_`` doubled and every other character as ``_<hex code>_``, which reads back one way only,
    so ``a-b`` (``x_a_2d_b``) and ``a_2d_b`` (``n_a_2d_b``) stay two boxes."""
    if name in _MERMAID_PSEUDO:
        return _MERMAID_PSEUDO[name]
    if re.fullmatch(r"[A-Za-z0-9_]+", name):
        return "n_" + name
    return "x_" + re.sub(r"[^A-Za-z0-9]", _mermaid_escape, name)


def _mermaid_text(text: str) -> str:
    """Mermaid entity codes for what would end or break a quoted label."""
    for raw, code in (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;"), ("|", "#124;")):
        text = text.replace(raw, code)
    return text


def to_mermaid(p: Picture, counts: Counts | None = None) -> str:
    """A Mermaid flowchart (top to bottom), as code hosts render in a ```mermaid block."""
    out = [f"%% journey {p.journey} v{p.version}: orchestrator journeys graph {p.journey} --format mermaid",
           "flowchart TD"]
    if counts is not None:
        out.insert(1, f"%% {_summary(p, counts)}")
    for box in p.boxes:
        left, right = _MERMAID_SHAPES.get(box.kind, ('["', '"]'))
        label = "<br/>".join(_mermaid_text(line) for line in _with_counts(box, counts))
        out.append(f"    {_mermaid_id(box.name)}{left}{label}{right}")
    for arrow in p.arrows:
        label = _arrow_label(arrow, counts)
        link = f' -->|"{_mermaid_text(label)}"| ' if label else " --> "
        out.append(f"    {_mermaid_id(arrow.src)}{link}{_mermaid_id(arrow.dst)}")
    # Class names are not the kinds: `end` is a Mermaid keyword.
    classes = (("entryBox", ("entry",), "fill:#e8f5e9,stroke:#2e7d32"),
               ("exitBox", ("exit", "end"), "fill:#eeeeee,stroke:#616161"),
               ("noteBox", ("note",), "fill:#fff8e1,stroke:#f9a825"))
    for cls, kinds, style in classes:
        members = [_mermaid_id(b.name) for b in p.boxes if b.kind in kinds]
        if members:
            out.append(f"    classDef {cls} {style}")
            out.append(f"    class {','.join(members)} {cls}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------- Graphviz DOT
_DOT_SHAPES = {
    "entry": 'shape=box, style="rounded,filled", fillcolor="#e8f5e9", color="#2e7d32"',
    "send": "shape=box",
    "wait": 'shape=box, style="rounded"',
    "wait_for": "shape=hexagon",
    "branch": "shape=diamond",
    "split": "shape=trapezium",
    "exit": 'shape=box, style="rounded,filled", fillcolor="#eeeeee"',
    "end": 'shape=box, style="rounded,filled", fillcolor="#eeeeee"',
    "note": 'shape=note, style=filled, fillcolor="#fff8e1"',
}


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _dot_id(name: str) -> str:
    return '"' + _dot_text(name) + '"'


def to_dot(p: Picture, counts: Counts | None = None) -> str:
    """A Graphviz digraph; ``dot -Tsvg`` or ``-Tpng`` draws it. Arrows are thicker where more went."""
    out = [f"// journey {p.journey} v{p.version}: orchestrator journeys graph {p.journey} --format dot"]
    if counts is not None:
        out.append(f"// {_summary(p, counts)}")
    out += [f"digraph {_dot_id(f'{p.journey} v{p.version}')} {{",
            '    graph [rankdir=TB, fontname="Helvetica"];',
            '    node [fontname="Helvetica", fontsize=11];',
            '    edge [fontname="Helvetica", fontsize=10];']
    for box in p.boxes:
        label = "\\n".join(_dot_text(line) for line in _with_counts(box, counts))
        out.append(f'    {_dot_id(box.name)} [{_DOT_SHAPES.get(box.kind, "shape=box")}, label="{label}"];')
    top = max(counts.edges.values(), default=0) if counts is not None else 0
    for arrow in p.arrows:
        attrs = []
        label = _arrow_label(arrow, counts)
        if label:
            attrs.append(f'label="{_dot_text(label)}"')
        if counts is not None and top:
            attrs.append(f"penwidth={1 + 4 * counts.edges.get(arrow.key, 0) / top:.2f}")
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        out.append(f"    {_dot_id(arrow.src)} -> {_dot_id(arrow.dst)}{suffix};")
    notes = [b for b in p.boxes if b.kind == "note"]
    if notes:   # keep the notes together beside the entry
        out.append("    { rank=same; " + " ".join(_dot_id(b.name) for b in [p.boxes[0], *notes]) + "; }")
    out.append("}")
    return "\n".join(out) + "\n"


def iter_node_types() -> Iterator[type]:
    """The node classes of the journey language (for the test that every one is drawn)."""
    from typing import get_args
    yield from get_args(Node)
