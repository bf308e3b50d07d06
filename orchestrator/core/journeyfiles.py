"""Journey files: YAML definitions read into :mod:`orchestrator.core.journeys`' model (docs/journeys.md).

A definition is refused as a whole: :func:`parse_journey` collects every problem
and raises one :class:`DefinitionError` whose lines read ``file:line: message``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from orchestrator.core import yamlsrc
from orchestrator.core.durations import parse_duration_ms, parse_percent
from orchestrator.core.events import EVENT_TYPE, FEEDBACK_TYPES, PROFILE_ERASED
from orchestrator.core.expressions import Expression, compile_expression
from orchestrator.core.journeys import (EXEMPTIBLE, MAX_STEPS, REENTRY_ALWAYS, REENTRY_NEVER, BranchNode, EventTypes,
                                        ExitNode, Journey, Node, SendNode, SplitNode, WaitForNode, WaitNode, WaitUntilNode,
                                        reachable, successors)
from orchestrator.core.localtime import ALL_DAYS, DAY_NAMES, Window, format_clock, parse_clock
from orchestrator.core.namespaces import field_problem
from orchestrator.errors import DefinitionError, ExpressionError

JOURNEY_ID = re.compile(r"^[a-z0-9-]{1,64}$")
MAX_VERSION = 2**31 - 1            # kept in states and written in outputs: any number they can hold
NODE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TEMPLATE = re.compile(r"^[A-Za-z0-9_.:/-]{1,128}$")
EXIT_REASON = re.compile(r"^[a-z0-9_-]{1,32}$")
TEMPLATE_RULE = "a template name: letters, digits and _ . : / -, at most 128 characters"


def template_problem(value: object) -> str | None:
    """What is wrong with ``value`` as a send node's ``template``, in one sentence, or ``None``."""
    if not isinstance(value, str):
        return f"template must be {TEMPLATE_RULE}, got {value!r}"
    if not value:
        return f"template is empty ({TEMPLATE_RULE})"
    if len(value) > 128:
        return f"template is {len(value)} characters long; at most 128"
    bad = sorted({ch for ch in value if not TEMPLATE.match(ch)})
    if bad:
        return (f"template {value!r} has characters a template name cannot have: {' '.join(map(repr, bad))} "
                f"({TEMPLATE_RULE})")
    return None


NODE_KINDS = ("send", "branch", "split", "wait", "wait_for", "wait_until", "exit")

JOURNEYS_DOC = "docs/journeys.md"
# Every mapping of a definition: the keys it accepts, and the section of docs/journeys.md that
# documents them (its heading's anchor). The parser checks each mapping against this table and
# points its problems at the section; tests/repo/test_reference_docs.py checks that each section
# lists exactly these keys. A node's mapping is ``node <kind>``.
MAPPINGS: dict[str, tuple[frozenset[str], str]] = {
    "journey": (frozenset({"journey", "version", "priority", "group", "entry", "capture", "holdout", "goal",
                           "exit", "start", "nodes", "enabled", "shadow", "description"}), "top-level-keys"),
    "entry": (frozenset({"on", "if", "reentry", "max_entries"}), "entry"),
    "goal": (frozenset({"on", "suppress"}), "goal"),
    "exit": (frozenset({"on", "if", "max_touches", "max_duration"}), "exit"),
    "node send": (frozenset({"send", "channels", "template", "params", "next", "window", "exempt"}), "send"),
    "window": (frozenset({"days", "from", "to"}), "window"),
    "node branch": (frozenset({"branch"}), "branch"),
    "branch case": (frozenset({"if", "next"}), "branch"),
    "node split": (frozenset({"split"}), "split"),
    "split arm": (frozenset({"weight", "next"}), "split"),
    "node wait": (frozenset({"wait", "next"}), "wait"),
    "node wait_for": (frozenset({"wait_for", "timeout", "on_event", "on_timeout"}), "wait_for"),
    "node wait_until": (frozenset({"wait_until", "days", "next"}), "wait_until"),
    "node exit": (frozenset({"exit"}), "exit-node"),
}
# Top-level keys documented in a section of their own (the others: "top-level-keys").
_KEY_SECTIONS = {"entry": "entry", "capture": "capture", "holdout": "holdout", "goal": "goal", "exit": "exit",
                 "nodes": "nodes"}


def see(anchor: str) -> str:
    """The end of a problem: where docs/journeys.md explains what is expected."""
    return f" (see {JOURNEYS_DOC}#{anchor})"


class _Checker:
    """Collects problems with their ``file:line`` while a definition is read; each ends with the
    section of docs/journeys.md that says what is expected there (:meth:`section`)."""

    def __init__(self, doc: yamlsrc.Located, channels: tuple[str, ...]) -> None:
        self.doc = doc
        self.channels = channels
        self.problems: list[str] = []
        self._lines: list[int] = []          # the line of each problem, to report them in file order
        self.kinds: dict[str, str] = {}      # node name -> its kind, once known

    def error(self, path: tuple[Any, ...], message: str, anchor: str | None = None) -> None:
        """A problem at ``path``; ``anchor``: the section to read, if not the one ``path`` is in."""
        line = self.doc.line(path)
        self.problems.append(f"{self.doc.filename}:{line}: {message}{see(anchor or self.section(path))}")
        self._lines.append(line)

    def section(self, path: tuple[Any, ...]) -> str:
        """The section of docs/journeys.md that documents the value at ``path``."""
        if not path:
            return "top-level-keys"
        if path[0] != "nodes" or len(path) < 2:
            return _KEY_SECTIONS.get(path[0], "top-level-keys")
        kind = self.kinds.get(path[1])
        if kind is None:
            return "nodes"
        if kind == "send" and len(path) > 2 and path[2] in ("window", "exempt"):
            return str(path[2])
        return MAPPINGS[f"node {kind}"][1]

    def sorted_problems(self) -> list[str]:
        """The problems in the order of their lines (in the order found within one line), as a
        reader goes through the file: not the order of the checks (unknown keys first)."""
        order = sorted(range(len(self.problems)), key=self._lines.__getitem__)
        return [self.problems[i] for i in order]

    def expr(self, path: tuple[Any, ...], source: Any) -> Expression | None:
        """Compile one expression and check every field it reads from a fixed namespace: a path
        that can never have a value (``journey.nope``, ``engagement.fax.sent_7d``) is refused here,
        once, rather than read as ``None`` on every evaluation."""
        label = ".".join(map(str, path))
        try:
            e = compile_expression(source)
        except ExpressionError as exc:
            self.error(path, f"{label}: {exc}", "expressions")
            return None
        bad = False
        for fpath in e.fields:
            problem = field_problem(fpath, self.channels)
            if problem is not None:
                bad = True
                self.error(path, f"{label}: {ExpressionError(problem, source=e.source)}", "namespaces")
        return None if bad else e

    def duration(self, path: tuple[Any, ...], value: Any) -> int | None:
        try:
            ms = parse_duration_ms(value)
        except ValueError as exc:
            self.error(path, f"{'.'.join(map(str, path))}: {exc}", "durations")
            return None
        if ms <= 0:
            self.error(path, f"{'.'.join(map(str, path))}: duration must be positive", "durations")
            return None
        return ms

    def mapping(self, path: tuple[Any, ...], value: Any, name: str | None = None) -> dict[str, Any]:
        """``value`` as a mapping; with ``name`` (a key of :data:`MAPPINGS`), every key it does
        not accept is reported."""
        if not isinstance(value, dict):
            self.error(path, f"{'.'.join(map(str, path)) or 'document'} must be a mapping")
            return {}
        if name is not None:
            allowed, anchor = MAPPINGS[name]
            for key in value:
                if key not in allowed:
                    self.error(path + (key,), f"unknown key {key!r} (expected one of: {', '.join(sorted(allowed))})",
                               anchor)
        return value

    def event_types(self, path: tuple[Any, ...], value: Any) -> EventTypes:
        """One event type or a non-empty list of them (any of them matches)."""
        label = ".".join(map(str, path))
        if isinstance(value, list) and not value:
            self.error(path, f"{label}: an empty list names no event type")
        items = value if isinstance(value, list) else [value]
        out: list[str] = []
        for i, item in enumerate(items):
            p = path + (i,) if isinstance(value, list) else path
            if not isinstance(item, str) or not EVENT_TYPE.match(item):
                self.error(p, f"{label}: {item!r} is not an event type ([a-z0-9_.-], at most 64)")
            elif item in out:
                pass                                  # a repeat is harmless
            elif item.startswith("message.") and item not in FEEDBACK_TYPES:
                self.error(p, f"{label}: {item} never reaches a journey: message.* events other than "
                              f"{', '.join(sorted(FEEDBACK_TYPES))} are dead-lettered invalid_schema", "event-types")
            elif item == PROFILE_ERASED and label != "exit.on":
                self.error(p, f"{label}: {item} never reaches a journey: an erasure ends every instance of the "
                              "customer (exited, reason erased) and enrols nobody", "event-types")
            else:
                out.append(item)
        return EventTypes(out)

    def days(self, path: tuple[Any, ...], value: Any) -> tuple[int, ...] | None:
        """A non-empty list of day names (``mon`` .. ``sun``), as sorted weekday numbers."""
        label = ".".join(map(str, path))
        if not isinstance(value, list) or not value:
            self.error(path, f"{label} must be a non-empty list of days ({', '.join(DAY_NAMES)})", "times-of-day")
            return None
        out: set[int] = set()
        bad = False
        for i, item in enumerate(value):
            if isinstance(item, str) and item in DAY_NAMES:
                out.add(DAY_NAMES.index(item))          # a repeat is harmless
            else:
                bad = True
                self.error(path + (i,), f"{label}: {item!r} is not a day (use {', '.join(DAY_NAMES)})", "times-of-day")
        return None if bad else tuple(sorted(out))

    def clock(self, path: tuple[Any, ...], value: Any) -> int | None:
        """A time of day written ``HH:MM``: two digits for the hour, as the docs say, so that
        ``"9:00"`` is refused rather than read in a way the author never wrote down."""
        label = ".".join(map(str, path))
        minute = parse_clock(value)
        if minute is None:
            self.error(path, f'{label} must be a time of day like "09:00" (HH:MM, 00:00-23:59), got {value!r}',
                       "times-of-day")
        elif len(value) != len("HH:MM"):
            self.error(path, f'{label}: {value!r} needs two digits for the hour: write "{format_clock(minute)}" '
                             "(HH:MM)", "times-of-day")
            return None
        return minute

    def whole(self, path: tuple[Any, ...], value: Any) -> int | None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            self.error(path, f"{'.'.join(map(str, path))} must be a whole number >= 1")
            return None
        return value


def parse_journey(text: str, filename: str, *, channels: Iterable[str]) -> Journey:
    """Read and check one journey definition; raise :class:`DefinitionError` if anything is wrong."""
    doc = yamlsrc.load(text, filename, see=see("the-file"))
    channels = tuple(channels)
    c = _Checker(doc, channels)
    if not isinstance(doc.data, dict):
        c.mapping((), doc.data)
    if c.problems or not doc.data:
        raise DefinitionError(c.problems or [f"{filename}:1: empty journey definition{see('the-file')}"])
    raw = c.mapping((), doc.data, "journey")     # unknown keys are reported; the checks go on

    jid = raw.get("journey")
    if not isinstance(jid, str) or not JOURNEY_ID.match(jid):
        c.error(("journey",), "journey: id must match [a-z0-9-]+ (at most 64 characters)")
    version = raw.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= MAX_VERSION:
        c.error(("version",), f"version must be a whole number from 1 to {MAX_VERSION}")
    priority = raw.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        c.error(("priority",), "priority must be a whole number")
    group = raw.get("group")
    if group is not None and (not isinstance(group, str) or not JOURNEY_ID.match(group)):
        c.error(("group",), "group must match [a-z0-9-]+")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        c.error(("enabled",), "enabled must be true or false")
    shadow = raw.get("shadow", False)
    if not isinstance(shadow, bool):
        c.error(("shadow",), "shadow must be true or false")

    entry = c.mapping(("entry",), raw.get("entry"), "entry") if "entry" in raw else {}
    if "entry" not in raw:
        c.error((), "missing entry: (entry.on names the event type that enrols a customer)", "entry")
    entry_on = EventTypes()
    if entry:
        if "on" not in entry:
            c.error(("entry",), "entry.on is required")
        else:
            entry_on = c.event_types(("entry", "on"), entry["on"])
    entry_if = c.expr(("entry", "if"), entry["if"]) if "if" in entry else None
    reentry_ms = REENTRY_NEVER
    if "reentry" in entry:
        value = entry["reentry"]
        if value == "never":
            reentry_ms = REENTRY_NEVER
        elif value == "always":
            reentry_ms = REENTRY_ALWAYS
        else:
            ms = c.duration(("entry", "reentry"), value)
            reentry_ms = ms if ms is not None else REENTRY_NEVER
    max_entries = c.whole(("entry", "max_entries"), entry["max_entries"]) if "max_entries" in entry else None

    capture: dict[str, Expression] = {}
    for name, source in c.mapping(("capture",), raw.get("capture", {})).items():
        if not isinstance(name, str) or not NODE_NAME.match(name):
            c.error(("capture", name), f"capture name {name!r} must match [A-Za-z0-9_-]+")
            continue
        e = c.expr(("capture", name), source)
        if e is not None:
            capture[name] = e

    holdout = 0.0
    if "holdout" in raw:
        try:
            holdout = parse_percent(raw["holdout"])
        except ValueError as exc:
            c.error(("holdout",), f"holdout: {exc}")

    goal_on, goal_suppress = EventTypes(), ()
    if "goal" in raw:
        goal = c.mapping(("goal",), raw["goal"], "goal")
        if "on" not in goal:
            c.error(("goal",), "goal.on is required")
        else:
            goal_on = c.event_types(("goal", "on"), goal["on"])
        goal_suppress = _channel_list(c, ("goal", "suppress"), goal.get("suppress", []), channels)

    exit_on = EventTypes()
    exit_if = None
    max_touches = max_duration_ms = None
    if "exit" in raw:
        ex = c.mapping(("exit",), raw["exit"], "exit")
        if "on" in ex:
            exit_on = c.event_types(("exit", "on"), ex["on"])
        if "if" in ex:
            exit_if = c.expr(("exit", "if"), ex["if"])
        if "max_touches" in ex:
            mt = ex["max_touches"]
            if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
                c.error(("exit", "max_touches"), "exit.max_touches must be a whole number >= 1")
            else:
                max_touches = mt
        if "max_duration" in ex:
            max_duration_ms = c.duration(("exit", "max_duration"), ex["max_duration"])

    nodes = _parse_nodes(c, raw.get("nodes"), channels)
    named = raw.get("nodes") if isinstance(raw.get("nodes"), dict) else {}
    start = raw.get("start")
    if start is None and named:
        c.error(("start",), "missing start: (the first node)")
    elif start is not None and (not isinstance(start, str) or start not in named):
        c.error(("start",), f"start: no node named {start!r}")
    # (a start node that exists but is invalid is reported at the node itself)
    warnings: list[str] = []
    if nodes:
        looped = len(c.problems)
        _check_loops(c, nodes)                # wherever start is, or whether it is valid at all
        if len(c.problems) == looped:
            _check_walks(c, nodes)
        if isinstance(start, str) and start in nodes and len(nodes) == len(named):
            warnings = _unreachable(doc, nodes, start)   # (with a refused node the paths are not known)

    if c.problems:
        raise DefinitionError(c.sorted_problems())
    return Journey(
        id=jid, version=version, start=start, nodes=nodes, entry_on=entry_on, entry_if=entry_if,
        reentry_ms=reentry_ms, priority=priority, group=group, capture=capture, holdout=holdout,
        goal_on=goal_on, goal_suppress=goal_suppress, exit_on=exit_on, exit_if=exit_if,
        max_entries=max_entries, max_touches=max_touches,
        max_duration_ms=max_duration_ms, enabled=enabled, shadow=shadow, source=filename,
        warnings=tuple(warnings),
    )


def _channel_list(c: _Checker, path: tuple[Any, ...], value: Any, channels: tuple[str, ...]) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for i, item in enumerate(items):
        if item not in channels:
            c.error(path + (i,) if isinstance(value, list) else path,
                    f"{'.'.join(map(str, path))}: unknown channel {item!r} (channels: {', '.join(channels)})")
        elif item not in out:
            out.append(item)
    return tuple(out)


def _parse_nodes(c: _Checker, raw: Any, channels: tuple[str, ...]) -> dict[str, Node]:
    if raw is None:
        c.error((), "missing nodes:", "nodes")
        return {}
    raw = c.mapping(("nodes",), raw)
    nodes: dict[str, Node] = {}
    targets: list[tuple[tuple[Any, ...], str]] = []

    def target(path: tuple[Any, ...], value: Any, required: bool = True) -> str | None:
        if value is None and not required:
            return None
        if not isinstance(value, str):
            c.error(path, f"{'.'.join(map(str, path))} must name a node")
            return None
        targets.append((path, value))
        return value

    for name, spec in raw.items():
        p = ("nodes", name)
        if not isinstance(name, str) or not NODE_NAME.match(name):
            c.error(p, f"node name {name!r} must match [A-Za-z0-9_-]+")
            continue
        if not isinstance(spec, dict):
            c.error(p, f"node {name!r} must be a mapping with one of: {', '.join(NODE_KINDS)}")
            continue
        kinds = [k for k in NODE_KINDS if k in spec]
        if len(kinds) != 1:
            c.error(p, f"node {name!r} must have exactly one of: {', '.join(NODE_KINDS)}")
            continue
        kind = c.kinds[name] = kinds[0]
        c.mapping(p, spec, f"node {kind}")
        if kind == "send":
            channel = spec["send"]
            if channel == "best":
                cands = _channel_list(c, p + ("channels",), spec.get("channels", []), channels)
                if not cands:
                    c.error(p, f"node {name!r}: send: best needs channels: [..] to choose from")
            elif channel in channels:
                cands = (channel,)
                if "channels" in spec:
                    c.error(p + ("channels",), "channels: is only used with send: best")
            else:
                c.error(p + ("send",), f"node {name!r}: unknown channel {channel!r} "
                                        f"(channels: {', '.join(channels)}, or best)")
                cands = ()
            template = spec.get("template")
            problem = template_problem(template) if "template" in spec else \
                f"template is required ({TEMPLATE_RULE})"
            if problem is not None:
                c.error(p + ("template",) if "template" in spec else p, f"node {name!r}: {problem}")
            params: dict[str, Expression] = {}
            for key, source in c.mapping(p + ("params",), spec.get("params", {})).items():
                e = c.expr(p + ("params", key), source)
                if e is not None:
                    params[str(key)] = e
            window = _window(c, p + ("window",), spec["window"]) if "window" in spec else None
            exempt = _exempt(c, p + ("exempt",), spec["exempt"]) if "exempt" in spec else ()
            nodes[name] = SendNode(name, channel, cands, template if isinstance(template, str) else "",
                                   params, target(p + ("next",), spec.get("next"), required=False),
                                   window, exempt)
        elif kind == "branch":
            cases_raw = spec["branch"]
            if not isinstance(cases_raw, list) or not cases_raw:
                c.error(p + ("branch",), f"node {name!r}: branch must be a non-empty list of {{if, next}}")
                continue
            cases: list[tuple[Expression | None, str]] = []
            for i, case in enumerate(cases_raw):
                cp = p + ("branch", i)
                case = c.mapping(cp, case, "branch case")
                e = c.expr(cp + ("if",), case["if"]) if "if" in case else None
                if "if" not in case and i != len(cases_raw) - 1:
                    c.error(cp, f"node {name!r}: only the last branch may omit if: (it is the else)")
                nxt = target(cp + ("next",), case.get("next"))
                if nxt is not None:
                    cases.append((e, nxt))
            nodes[name] = BranchNode(name, tuple(cases))
        elif kind == "split":
            arms_raw = spec["split"]
            if not isinstance(arms_raw, list) or not arms_raw:
                c.error(p + ("split",), f"node {name!r}: split must be a non-empty list of {{weight, next}}")
                continue
            arms: list[tuple[float, str]] = []
            for i, arm in enumerate(arms_raw):
                ap = p + ("split", i)
                arm = c.mapping(ap, arm, "split arm")
                w = arm.get("weight")
                if not isinstance(w, (int, float)) or isinstance(w, bool) or w <= 0:
                    c.error(ap + ("weight",), f"node {name!r}: split weight must be a positive number")
                    continue
                nxt = target(ap + ("next",), arm.get("next"))
                if nxt is not None:
                    arms.append((float(w), nxt))
            nodes[name] = SplitNode(name, tuple(arms))
        elif kind == "wait":
            ms = c.duration(p + ("wait",), spec["wait"])
            nxt = target(p + ("next",), spec.get("next"))
            if ms is not None and nxt is not None:
                nodes[name] = WaitNode(name, ms, nxt)
        elif kind == "wait_for":
            et = c.event_types(p + ("wait_for",), spec["wait_for"])
            if "timeout" not in spec:
                c.error(p, f"node {name!r}: wait_for needs timeout:")
            ms = c.duration(p + ("timeout",), spec.get("timeout")) if "timeout" in spec else None
            on_event = target(p + ("on_event",), spec.get("on_event"))
            on_timeout = target(p + ("on_timeout",), spec.get("on_timeout"))
            if et and ms and on_event and on_timeout:
                nodes[name] = WaitForNode(name, et, ms, on_event, on_timeout)
        elif kind == "wait_until":
            minute = c.clock(p + ("wait_until",), spec["wait_until"])
            days = c.days(p + ("days",), spec["days"]) if "days" in spec else ALL_DAYS
            nxt = target(p + ("next",), spec.get("next"))
            if minute is not None and days is not None and nxt is not None:
                nodes[name] = WaitUntilNode(name, minute, days, nxt)
        else:
            reason = spec["exit"]
            if not isinstance(reason, str) or not EXIT_REASON.match(reason):
                c.error(p + ("exit",), f"node {name!r}: exit reason must match [a-z0-9_-]+")
                continue
            nodes[name] = ExitNode(name, reason)
    for path, name in targets:
        if name not in raw:
            c.error(path, f"{'.'.join(map(str, path))}: no node named {name!r}")
    return nodes


def _window(c: _Checker, path: tuple[Any, ...], value: Any) -> Window | None:
    """``{days: [..], from: "09:00", to: "18:00"}``: days default to all, times to the whole day;
    ``from`` after ``to`` runs across midnight. ``None`` (with the problems reported) if invalid."""
    if not isinstance(value, dict):
        c.mapping(path, value)
        return None
    raw = c.mapping(path, value, "window")
    label = ".".join(map(str, path))
    problems = len(c.problems)
    days = c.days(path + ("days",), raw["days"]) if "days" in raw else ALL_DAYS
    start = end = None
    if ("from" in raw) != ("to" in raw):
        c.error(path, f"{label}: from: and to: go together (leave both out for whole days)")
    elif "from" in raw:
        start, end = c.clock(path + ("from",), raw["from"]), c.clock(path + ("to",), raw["to"])
        if start is not None and start == end:
            c.error(path + ("to",), f"{label}: from: and to: must differ (leave both out for whole days)")
    elif "days" not in raw:
        c.error(path, f"{label} needs days:, or from: and to:, or all three")
    if len(c.problems) > problems or days is None:
        return None
    return Window(days, start, end)


def _exempt(c: _Checker, path: tuple[Any, ...], value: Any) -> tuple[str, ...]:
    """Gate checks a send skips, as a list: ``frequency`` and ``quiet_hours``; consent never."""
    label = ".".join(map(str, path))
    if not isinstance(value, list):
        example = value if value in EXEMPTIBLE else EXEMPTIBLE[0]
        c.error(path, f"{label} must be a list of the checks the send skips, e.g. [{example}], got {value!r}")
        return ()
    out: list[str] = []
    for i, item in enumerate(value):
        p = path + (i,)
        if item in EXEMPTIBLE:
            if item not in out:
                out.append(item)
        elif item in ("consent", "holdout"):
            c.error(p, f"{label}: {item} is never exempt (a send may skip only {', '.join(EXEMPTIBLE)})")
        else:
            c.error(p, f"{label}: {item!r} is not a check a send may skip (use {', '.join(EXEMPTIBLE)})")
    return tuple(x for x in EXEMPTIBLE if x in out)


def _check_loops(c: _Checker, nodes: dict[str, Node]) -> None:
    """Refuse loops that never wait: they would spin on one event."""
    # Depth first over edges that do not pass through a wait; a cycle there never yields. Without
    # recursion: a journey of thousands of nodes in a chain must be refused or loaded, never crash.
    # (a wait_until releases at once at most once per walk, so a loop through it waits too)
    waits = (WaitNode, WaitForNode, WaitUntilNode)
    state: dict[str, int] = {}                       # 1: on the current path, 2: done
    for root in nodes:
        if state.get(root) or isinstance(nodes[root], waits):
            continue
        path: list[str] = [root]
        state[root] = 1
        todo = [iter(successors(nodes[root]))]
        while todo:
            succ = next(todo[-1], None)
            if succ is None:
                state[path.pop()] = 2
                todo.pop()
                continue
            node = nodes.get(succ)
            if node is None or isinstance(node, waits) or state.get(succ) == 2:
                continue
            if state.get(succ) == 1:
                cycle = path[path.index(succ):] + [succ]
                c.error(("nodes", succ), f"nodes form a loop without a wait: {' -> '.join(cycle)}", "nodes")
                continue
            state[succ] = 1
            path.append(succ)
            todo.append(iter(successors(node)))


def _check_walks(c: _Checker, nodes: dict[str, Node]) -> None:
    """Refuse a path longer than one walk may go: from a node, the nodes passed before the walk parks
    (at a wait) or ends (an exit node, or a node with no ``next``, which ends it one step later),
    at most ``MAX_STEPS``; a longer one would stop the instance (exited ``step_limit``) midway.
    Called once no loop lacks a wait: the paths between waits then have an end."""
    parks = (WaitNode, WaitForNode, WaitUntilNode, ExitNode)
    steps: dict[str, int] = {}       # node -> the most nodes a walk passes from it (itself included)
    for root in nodes:               # depth first, without recursion: a long chain must not overflow
        todo: list[tuple[str, bool]] = [(root, False)]
        while todo:
            name, expanded = todo.pop()
            if name in steps:
                continue
            node = nodes.get(name)
            if node is None or isinstance(node, parks):
                steps[name] = 1
                continue
            after = successors(node)
            if expanded:
                steps[name] = 1 + (max(steps[s] for s in after) if after else 1)
            else:
                todo.append((name, True))
                todo.extend((s, False) for s in after if s not in steps)
    for name in nodes:
        if steps[name] > MAX_STEPS:
            path = [name]
            node = nodes.get(name)
            while len(path) < 4 and node is not None and not isinstance(node, parks) and successors(node):
                path.append(max(successors(node), key=steps.__getitem__))
                node = nodes.get(path[-1])
            c.error(("nodes", name), f"a walk from node {name!r} passes {steps[name]} nodes without waiting "
                                     f"({' -> '.join(path)} -> ...); one walk passes at most {MAX_STEPS}, so the "
                                     "instance would stop midway (exited, step_limit): add a wait or shorten it",
                    "nodes")
            return


def _unreachable(doc: yamlsrc.Located, nodes: dict[str, Node], start: str) -> list[str]:
    """A warning for every node no path from ``start`` reaches (it can never run)."""
    reached = reachable(nodes, start)
    return [f"{doc.where(('nodes', name))}: warning: node {name!r} is never reached from start {start!r}{see('nodes')}"
            for name in nodes if name not in reached]


def load_journey_file(path: str | Path, *, channels: Iterable[str]) -> Journey:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError([f"{p}:1: cannot read file: {exc}{see('the-file')}"]) from None
    return parse_journey(text, str(p), channels=channels)


def duplicate_version(path: str | Path, j: Journey, other: str | Path) -> str:
    """The problem of a folder that defines one journey id and version in two files."""
    return (f"{path}:1: journey {j.id!r} version {j.version} is also defined in {other}"
            f"{see('versions-and-publishing')}")


DEFAULT_JOURNEYS_DIR = "journeys"


def journey_dir_problem(directory: str | Path, *, option: str | None = None) -> str | None:
    """Why ``directory`` cannot be read as a folder of journeys, in one sentence, or ``None``.

    The default folder (``journeys``, relative to the working directory) may be absent: a worker
    can run on published journeys alone, and says so. Any other path was given on purpose
    (``ORCH_JOURNEYS`` or a command's argument), so a missing folder there is an error rather
    than a silent run without the journeys meant. ``option`` names the required option of a
    command that runs only the folder's journeys (``simulate --journeys``): there the default
    name must exist too.
    """
    d = Path(directory)
    if d.is_dir():
        return None
    if d.exists():
        return f"journeys folder {str(directory)!r} is a file, not a folder; give the folder of journey YAML files"
    if option is not None:
        return (f"journeys folder {str(directory)!r} does not exist; give an existing folder of journey YAML "
                f"files ({option})")
    if str(directory) == DEFAULT_JOURNEYS_DIR:
        return None
    return (f"journeys folder {str(directory)!r} does not exist; give an existing folder (ORCH_JOURNEYS or "
            "the command's argument), or set neither to use ./journeys")


def journey_files(directory: str | Path) -> list[Path]:
    d = Path(directory)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def load_journey_dir(directory: str | Path, *, channels: Iterable[str]) -> tuple[list[Journey], list[str]]:
    """Load every ``*.yaml`` and ``*.yml`` file in ``directory`` (none if it is not a folder).
    Returns (journeys, problems); bad files are skipped."""
    journeys: list[Journey] = []
    problems: list[str] = []
    seen: dict[tuple[str, int], str] = {}
    for path in journey_files(directory):
        try:
            j = load_journey_file(path, channels=channels)
        except DefinitionError as exc:
            problems.extend(exc.problems)
            continue
        if (j.id, j.version) in seen:
            problems.append(duplicate_version(path, j, seen[(j.id, j.version)]))
            continue
        seen[(j.id, j.version)] = str(path)
        journeys.append(j)
    return journeys, problems
