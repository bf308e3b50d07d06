"""``orchestrator simulate``: an offline dry run of journeys over a file of events.

No Kafka. A virtual clock is driven by event timestamps: timers that fall due
before an event fire first, at their due time; after the last event the clock
stops. Uses the same :class:`~orchestrator.core.Engine` as the worker.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from typing import Any

from orchestrator.core import Engine
from orchestrator.core.events import Rejection, dead_letter, parse_event
from orchestrator.core.state import CustomerState
from orchestrator.core.timeutil import format_ts


class Simulation:
    def __init__(self, engine: Engine, *, max_event_bytes: int = 65536) -> None:
        self.engine = engine
        self.max_event_bytes = max_event_bytes
        self.states: dict[str, CustomerState] = {}
        self.timers: list[tuple[int, str]] = []
        self.clock_ms: int | None = None

    def _record(self, topic: str, at_ms: int, value: dict[str, Any]) -> dict[str, Any]:
        return {"topic": topic, "at": format_ts(at_ms), "value": value}

    def _schedule(self, cid: str) -> None:
        state = self.states.get(cid)
        due = state.next_due_ms() if state is not None else None
        if due is not None:
            heapq.heappush(self.timers, (due, cid))

    def advance(self, until_ms: int) -> Iterator[dict[str, Any]]:
        """Fire every timer due at or before ``until_ms``, in due order."""
        while self.timers and self.timers[0][0] <= until_ms:
            due, cid = heapq.heappop(self.timers)
            state = self.states.get(cid)
            if state is None or state.next_due_ms() != due:
                continue  # stale entry: the timer moved or was cancelled
            self.clock_ms = max(self.clock_ms or due, due)
            result = self.engine.on_timer(state, cid, due)
            self._store(cid, result.state)
            for o in result.outputs:
                yield self._record(o.topic, due, o.value)
            self._schedule(cid)

    def feed(self, raw: bytes, line_no: int) -> Iterator[dict[str, Any]]:
        now = self.clock_ms if self.clock_ms is not None else 0
        parsed = parse_event(raw, max_bytes=self.max_event_bytes, now_ms=2**62,
                             channels=self.engine.policies.channels)
        if isinstance(parsed, Rejection):
            yield self._record("dlq", now, dead_letter(parsed, topic="events", partition=None, offset=line_no,
                                                      raw=raw, now_ms=now))
            return
        yield from self.advance(parsed.ts_ms)
        now = max(self.clock_ms or parsed.ts_ms, parsed.ts_ms)
        self.clock_ms = now
        cid = parsed.customer_id
        result = self.engine.on_event(self.states.get(cid), parsed, now)
        self._store(cid, result.state)
        for o in result.outputs:
            yield self._record(o.topic, now, o.value)
        self._schedule(cid)

    def _store(self, cid: str, state: CustomerState | None) -> None:
        if state is None:
            self.states.pop(cid, None)
        else:
            self.states[cid] = state

    def run(self, lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
        for i, line in enumerate(lines, start=1):
            if line.strip():
                yield from self.feed(line.rstrip(b"\r\n"), i)
