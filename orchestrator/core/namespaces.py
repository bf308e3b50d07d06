"""What an expression sees (SPEC §4 Expressions): the namespaces ``event``, ``profile``,
``journey``, ``engagement``, ``activity``, ``session`` and ``now``, each built from the customer's
state only when an expression reads it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from orchestrator.core.events import Event
from orchestrator.core.state import DAY_MS, CustomerState, Instance
from orchestrator.core.timeutil import format_ts


_NAMES = frozenset(("event", "profile", "journey", "engagement", "activity", "session", "now"))
_EVENT_FIELDS = ("event_id", "customer_id", "type", "ts", "properties", "account_id")


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
