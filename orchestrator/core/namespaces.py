"""What an expression sees (docs/journeys.md#namespaces): the namespaces ``event``, ``profile``,
``journey``, ``engagement``, ``activity``, ``session`` and ``now``, each built from the customer's
state only when an expression reads it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from orchestrator.core.events import EVENT_TYPE, Event
from orchestrator.core.state import DAY_MS, CustomerState, Instance
from orchestrator.core.timeutil import format_ts

_NAMES = frozenset(("event", "profile", "journey", "engagement", "activity", "session", "now"))
_EVENT_FIELDS = ("event_id", "customer_id", "type", "ts", "properties", "account_id")

# The fields of the fixed namespaces, as ``Namespaces._build`` below makes them (a unit test keeps
# the two in step). ``profile``, ``event.properties`` and ``journey.vars`` hold the customer's own
# data: any field may be there.
EVENT_FIELDS = frozenset(_EVENT_FIELDS)
JOURNEY_FIELDS = frozenset(("id", "version", "vars", "entered_at", "touches"))
ENGAGEMENT_FIELDS = frozenset(f"{kind}_{days}" for kind in ("sent", "opened", "clicked") for days in ("7d", "30d")) \
    | {"last_opened_at"}
ACTIVITY_FIELDS = frozenset(("count_30d", "last_at"))
SESSION_FIELDS = frozenset(("started_at", "event_count", "categories"))
_OPEN = {"event": "properties", "journey": "vars"}            # the open part of a fixed namespace
_FIXED = {"event": EVENT_FIELDS, "journey": JOURNEY_FIELDS, "session": SESSION_FIELDS}
_LISTS = {("session", "categories")}                          # read an item as [0]
_TYPE_PART = re.compile(r"^[a-z0-9_-]{1,64}$")                # one part of an event type (docs/events.md#the-event)


def show_path(path: tuple[str | int, ...]) -> str:
    """``("activity", "cart.updated", "count_30d")`` as an author writes it: ``activity["cart.updated"].count_30d``."""
    out = str(path[0])
    for k in path[1:]:
        out += f".{k}" if isinstance(k, str) and k.isidentifier() else f"[{k!r}]"
    return out


def _listed(names: Iterable[str], *extra: str) -> str:
    return ", ".join([*sorted(names), *extra])


def field_problem(path: tuple[str | int, ...], channels: Iterable[str]) -> str | None:
    """Why the constant path ``(namespace, key, ...)`` an expression reads can never have a value,
    or ``None`` if it can.

    A journey's validation asks this once per path (docs/journeys.md#validation: nothing is silently ignored), so a
    typo like ``engagement.emial.sent_7d`` is refused instead of reading ``None`` forever;
    evaluation never does. ``channels`` are the configured ones: ``engagement`` has a row for
    each of them and for nothing else.
    """
    name, keys = path[0], path[1:]
    if not keys or name == "profile":
        return None
    shown = show_path(path)
    first, rest = keys[0], keys[1:]
    if name == "now":
        return f"now is a time and has no field: {shown} has no value"
    if name in _FIXED:
        fields = _FIXED[name]
        if first not in fields:
            open_part = _OPEN.get(name)
            listed = _listed(fields - {open_part}, *([f"{open_part}.<name>"] if open_part else []))
            return f"{name} has no field {first!r}: {shown} has no value ({name} has {listed})"
        if not rest or first == _OPEN.get(name):
            return None
        if (name, first) in _LISTS and isinstance(rest[0], int):
            return None if len(rest) == 1 else f"{show_path(path[:3])} has no fields: {shown} has no value"
        if (name, first) in _LISTS:
            return f"{name}.{first} is a list (read an item as {name}.{first}[0]): {shown} has no value"
        return f"{name}.{first} has no fields: {shown} has no value"
    if name == "engagement":
        channels = tuple(channels)
        if first not in channels:
            return f"engagement has no channel {first!r}: {shown} has no value (channels: {', '.join(channels)})"
        if not rest:
            return None
        if rest[0] not in ENGAGEMENT_FIELDS:
            return (f"engagement.<channel> has no field {rest[0]!r}: {shown} has no value "
                    f"(engagement.<channel> has {_listed(ENGAGEMENT_FIELDS)})")
        if len(rest) == 1:
            return None
        return f"{show_path(path[:3])} has no fields: {shown} has no value"
    if name == "activity":
        return _activity_problem(path, shown)
    return None


def _activity_problem(path: tuple[str | int, ...], shown: str) -> str | None:
    """``activity.<event type>.count_30d`` or ``.last_at``; a type with dots is one key right after
    ``activity`` (``activity["cart.updated"].count_30d``) or one attribute per part."""
    keys = path[1:]
    parts, metric = keys[:-1], keys[-1]
    usage = 'use activity.<event type>.count_30d or .last_at, e.g. activity.cart.updated.count_30d'
    if metric not in ACTIVITY_FIELDS or not parts:
        return f"{shown} has no value ({usage})"
    for i, part in enumerate(parts):
        if not isinstance(part, str):
            return f"{part!r} is not an event type: {shown} has no value ({usage})"
        if "." in part and i == 0 and len(parts) == 1 and EVENT_TYPE.match(part):
            continue
        if "." in part:
            return (f"{part!r} with its dots is read only right after activity, as "
                    f"activity[{part!r}]: {shown} has no value")
        if not _TYPE_PART.match(part):
            return f"{part!r} is not part of an event type ([a-z0-9_.-]): {shown} has no value ({usage})"
    return None


class EventView(Mapping[str, Any]):
    """The ``event`` namespace: the event's fields read where they are, not copied into a dict
    (``ts`` is formatted only when an expression reads it)."""

    __slots__ = ("_event",)

    def __init__(self, event: Event) -> None:
        self._event = event

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        ev = self._event
        if key == "properties":
            return ev.properties
        if key == "type":
            return ev.type
        if key == "ts":
            return format_ts(ev.ts_ms)
        if key == "event_id":
            return ev.event_id
        if key == "customer_id":
            return ev.customer_id
        if key == "account_id":
            return ev.account_id
        return default

    def __getitem__(self, key: str) -> Any:
        if key not in _EVENT_FIELDS:
            raise KeyError(key)
        return self.get(key)

    def __iter__(self) -> Iterator[str]:
        return iter(_EVENT_FIELDS)

    def __len__(self) -> int:
        return len(_EVENT_FIELDS)


class Namespaces(Mapping[str, Any]):
    """Expression namespaces, each built only when an expression reads it."""

    def __init__(self, channels: tuple[str, ...], state: CustomerState, event: Event | None,
                 inst: Instance | None, now_ms: int) -> None:
        self._channels, self._state, self._event, self._inst, self._now = channels, state, event, inst, now_ms
        self._cache: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        cache = self._cache
        if key in cache:
            return cache[key]
        value = cache[key] = self._build(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        cache = self._cache
        if key in cache:
            return cache[key]
        if key not in _NAMES:
            return default
        value = cache[key] = self._build(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(("event", "profile", "journey", "engagement", "activity", "session", "now"))

    def __len__(self) -> int:
        return 7

    def _build(self, key: str) -> Any:
        s, now = self._state, self._now
        if key == "event":
            return EventView(self._event) if self._event else None
        if key == "profile":
            return s.profile
        if key == "journey":
            i = self._inst
            if i is None:
                return {"vars": {}, "touches": 0, "entered_at": None}
            return {"id": i.journey, "version": i.version, "vars": i.vars, "touches": i.touches,
                    "entered_at": format_ts(i.entered_ms)}
        if key == "now":
            return format_ts(now)
        if key == "engagement":
            out: dict[str, Any] = {}
            for ch in self._channels:
                e = s.engagement.get(ch)
                row: dict[str, Any] = {}
                for kind in ("sent", "opened", "clicked"):
                    stamps = getattr(e, kind) if e else []
                    row[f"{kind}_7d"] = sum(1 for t in stamps if t >= now - 7 * DAY_MS)
                    row[f"{kind}_30d"] = sum(1 for t in stamps if t >= now - 30 * DAY_MS)
                row["last_opened_at"] = format_ts(e.last_opened_ms) if e and e.last_opened_ms else None
                out[ch] = row
            return out
        if key == "activity":
            out = {}
            today = now // DAY_MS
            for etype, act in s.activity.items():
                leaf = {"count_30d": sum(c for d, c in act.days.items() if d > today - 30),
                        "last_at": format_ts(act.last_ms)}
                node = out
                parts = etype.split(".")
                for part in parts[:-1]:
                    nxt = node.get(part)
                    if not isinstance(nxt, dict):
                        nxt = node[part] = {}
                    node = nxt
                existing = node.get(parts[-1])
                node[parts[-1]] = {**existing, **leaf} if isinstance(existing, dict) else leaf
                if len(parts) > 1:      # (a dot-free type is that node already; keep its children)
                    out[etype] = leaf   # also reachable as activity["cart.updated"]
            return out
        if key == "session":
            ss = s.session
            if not ss.event_count:
                return {"started_at": None, "event_count": 0, "categories": []}
            return {"started_at": format_ts(ss.started_ms), "event_count": ss.event_count,
                    "categories": list(ss.categories)}
        raise KeyError(key)
