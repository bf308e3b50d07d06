"""``orchestrator simulate``: an offline dry run of journeys over a file of events.

No Kafka. A virtual clock is driven by event timestamps: timers that fall due
before an event fire first, at their due time; after the last event the clock
stops at the latest time it reached, and the timers due by then fire. Uses the
same :class:`~orchestrator.core.Engine` as the worker.

Timers keep time per partition, as a worker's do (:mod:`orchestrator.runtime.eventtime`): a
customer's timers fire before a line of a customer of the same partition (``partition_of``: the
worker's placement of a ``customer_id`` key, ``ORCH_PARTITIONS`` and ``ORCH_PRODUCER_PARTITIONER``
in the command) dated at or after their due time, not before a line of another partition. So a
line of one customer dated before another partition's earlier line (the file not in ``ts`` order
across customers) is decided as a worker reading the file as a backlog decides it: one customer's
later line does not fire another partition's timers. Without ``partition_of``, one clock for the
file (a one-partition worker).

Future timestamps. A worker dead-letters an event dated more than 5 minutes ahead of
its wall clock (``future_timestamp``). A file has no wall clock, so :meth:`Simulation.run`
asks what a worker fed the file in real time would have seen: a line that moves the clock
more than 5 minutes ahead is time passing if the file catches up with it (one of the next
``LOOKAHEAD`` lines is dated at most 5 minutes before it, or later); if none does, the worker
would have received it before its time, so it is dead-lettered ``future_timestamp`` and does
not move the clock. The last line is taken at its time (nothing follows that it could spoil).

A dead letter is stamped with the clock; one refused before the clock has started (before the
first event) with the time it will start at, the next event's ``ts``.

What is ignored is reported (:attr:`Simulation.duplicates`, :attr:`Simulation.stale`,
:attr:`Simulation.invalid_fields`, with line numbers): duplicate ``event_id``s, events of a type
some journey enters on that are older than ``max_event_age`` before the clock (they update state
but enrol nobody), and ``profile.updated`` lines setting a known field to a value the engine
cannot use (a ``consent`` not applied, a ``timezone`` read as UTC; a worker counts them in
``orch_invalid_profile_fields_total``).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from orchestrator.core import Engine, dedup
from orchestrator.core.events import FUTURE_TOLERANCE_MS, Event, Rejection, dead_letter
from orchestrator.core.state import CustomerState
from orchestrator.core.timeutil import format_ts
from orchestrator.core.validation import parse_event
from orchestrator.core.vocabulary import DeadLetter

_ACCEPT_ANY_TS = 2**62     # parse without a clock; run() decides what is in the future
LOOKAHEAD = 1000           # lines read ahead, at most, to see whether the file catches up with a line


class Simulation:
    def __init__(self, engine: Engine, *, max_event_bytes: int = 65536,
                 partition_of: Callable[[str], int] | None = None) -> None:
        self.engine = engine
        self.max_event_bytes = max_event_bytes
        self.partition_of = partition_of
        self.states: dict[str, CustomerState] = {}
        self.timers: dict[int, list[tuple[int, str]]] = {}     # partition -> (due, customer) heap
        self.clock_ms: int | None = None
        self.window = dedup.Window()          # the duplicate rule, on the virtual clock
        self.duplicates: list[int] = []       # line numbers of events ignored as duplicates
        self.stale: list[int] = []            # line numbers of entry-type events too old to enrol
        self.dead_letters: dict[str, list[int]] = {}   # reason -> line numbers
        self.invalid_fields: dict[str, list[int]] = {}  # profile field -> lines that set it to an unusable value

    def _record(self, topic: str, at_ms: int, value: dict[str, Any]) -> dict[str, Any]:
        return {"topic": topic, "at": format_ts(at_ms), "value": value}

    def _schedule(self, cid: str, partition: int) -> None:
        """The customer's next timer, in the heap of its partition."""
        state = self.states.get(cid)
        due = state.next_due_ms() if state is not None else None
        if due is not None:
            heapq.heappush(self.timers.setdefault(partition, []), (due, cid))

    def next_due_ms(self) -> int | None:
        """The earliest due time of any timer set (``None``: none)."""
        return min((heap[0][0] for heap in self.timers.values() if heap), default=None)

    def advance(self, until_ms: int, partition: int | None = None) -> Iterator[dict[str, Any]]:
        """Fire every timer due at or before ``until_ms``, in due order: of ``partition``, or of
        every partition (``None``: where the clock stops, or ``backtest``'s end)."""
        heaps = (list(self.timers.items()) if partition is None
                 else [(partition, self.timers.setdefault(partition, []))])     # (partition, its heap)
        while True:
            part, heap = min(((p, h) for p, h in heaps if h), key=lambda ph: ph[1][0], default=(0, None))
            if heap is None or heap[0][0] > until_ms:
                return
            due, cid = heapq.heappop(heap)
            state = self.states.get(cid)
            if state is None or state.next_due_ms() != due:
                continue  # stale entry: the timer moved or was cancelled
            self.clock_ms = max(self.clock_ms or due, due)
            result = self.engine.on_timer(state, cid, due, self.clock_ms)
            self._store(cid, result.state)
            for o in result.outputs:
                yield self._record(o.topic, due, o.value)
            self._schedule(cid, part)

    def _parse(self, raw: bytes) -> Event | Rejection:
        return parse_event(raw, max_bytes=self.max_event_bytes, now_ms=_ACCEPT_ANY_TS,
                           channels=self.engine.policies.channels)

    def feed(self, raw: bytes, line_no: int) -> Iterator[dict[str, Any]]:
        """Decide one line at the clock (no future-timestamp rule: that needs the next lines, see :meth:`run`)."""
        yield from self._apply(raw, line_no, self._parse(raw))

    def _apply(self, raw: bytes, line_no: int, parsed: Event | Rejection,
               start_ms: int = 0) -> Iterator[dict[str, Any]]:
        if isinstance(parsed, Rejection):
            now = self.clock_ms if self.clock_ms is not None else start_ms   # the clock has not started
            self.dead_letters.setdefault(parsed.reason, []).append(line_no)
            yield self._record("dlq", now, dead_letter(parsed, topic="events", partition=None, offset=line_no,
                                                      raw=raw, now_ms=now))
            return
        cid = parsed.customer_id
        partition = 0 if self.partition_of is None else self.partition_of(cid)
        yield from self.advance(parsed.ts_ms, partition)
        now = max(self.clock_ms or parsed.ts_ms, parsed.ts_ms)
        self.clock_ms = now
        if not self.window.first(dedup.key(cid, parsed.event_id), now):
            self.duplicates.append(line_no)
            return
        result = self.engine.on_event(self.states.get(cid), parsed, now)
        if result.refused is not None:           # without effect, dead-lettered as a worker does
            yield from self._apply(raw, line_no, Rejection(DeadLetter.TOO_LARGE, result.refused))
            return
        if parsed.ts_ms < now - self.engine.policies.max_event_age_ms and parsed.type in self.engine.journeys.by_entry:
            self.stale.append(line_no)
        for name in result.invalid_fields:
            self.invalid_fields.setdefault(name, []).append(line_no)
        self._store(cid, result.state)
        for o in result.outputs:
            yield self._record(o.topic, now, o.value)
        self._schedule(cid, partition)

    def _store(self, cid: str, state: CustomerState | None) -> None:
        if state is None:
            self.states.pop(cid, None)
        else:
            self.states[cid] = state

    def run(self, lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
        """Every line of a file, in order, with the future-timestamp rule of the module docstring."""
        source = ((i, line.rstrip(b"\r\n")) for i, line in enumerate(lines, start=1) if line.strip())
        ahead: deque[tuple[int, bytes, Event | Rejection]] = deque()

        def more() -> bool:
            for i, raw in source:
                ahead.append((i, raw, self._parse(raw)))
                return True
            return False

        while ahead or more():
            line_no, raw, parsed = ahead.popleft()
            if isinstance(parsed, Event):
                why = self._future(parsed, ahead, more)
                if why is not None:
                    parsed = Rejection("future_timestamp", why)
            start = self._start_ms(ahead, more) if isinstance(parsed, Rejection) and self.clock_ms is None else 0
            yield from self._apply(raw, line_no, parsed, start)
        if self.clock_ms is not None:
            # The clock stops at the latest time of the file: timers due by then fire (one set by a line
            # dated before the clock, after the last line that moved it, included).
            yield from self.advance(self.clock_ms)

    def _start_ms(self, ahead: deque, more: Any) -> int:
        """Before the clock has started, where it will start: the ts of the next event in the file
        (0, the epoch, if none follows). A line refused before the first event is stamped so."""
        k = 0
        while k < LOOKAHEAD and (k < len(ahead) or more()):
            nxt = ahead[k][2]
            k += 1
            if isinstance(nxt, Event):
                return nxt.ts_ms
        return 0

    def _future(self, event: Event, ahead: deque, more: Any) -> str | None:
        """Why ``event`` is in the future for a worker fed the file in real time, or ``None``."""
        if self.clock_ms is not None and event.ts_ms <= self.clock_ms + FUTURE_TOLERANCE_MS:
            return None                          # does not move the clock by more than the tolerance
        latest: tuple[int, int] | None = None    # (ts, line) of the latest of the lines looked at
        k = 0
        while k < LOOKAHEAD and (k < len(ahead) or more()):
            line_no, _, nxt = ahead[k]
            k += 1
            if isinstance(nxt, Event):
                if nxt.ts_ms >= event.ts_ms - FUTURE_TOLERANCE_MS:
                    return None                  # the file catches up: time passed
                if latest is None or nxt.ts_ms > latest[0]:
                    latest = (nxt.ts_ms, line_no)
        if latest is None:
            return None                          # the last line: taken at its time
        return (f"ts {format_ts(event.ts_ms)} is more than 5 minutes ahead of every later line looked at (the "
                f"latest is {format_ts(latest[0])}, line {latest[1]}); a worker fed this file in real time "
                "would have received it before its time")
