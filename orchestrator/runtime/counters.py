"""What the worker counts as it decides: the ``orch_*`` counters per event and per output, and
its own per-journey statistics (served at ``/stats``).

Metric children are bound once here (``.labels(...)`` costs more than ``.inc()``), so the batch
path only calls ``inc`` and ``observe``. Labels are bounded values (results, reasons, channels,
outcomes, journey ids), never a customer id.
"""

from __future__ import annotations

from typing import Any

from orchestrator.core.engine import Lifecycle
from orchestrator.core.events import DEAD_LETTER_REASONS
from orchestrator.core.timeutil import parse_ts_ms
from orchestrator.observability.metrics import DECISION_OUTCOMES, PROFILE_FIELDS, SUPPRESSION_REASONS, Metrics


class Counters:
    def __init__(self, metrics: Metrics, channels: tuple[str, ...]) -> None:
        m = self.metrics = metrics
        self.valid = m.events_in.labels("valid")
        self.duplicate = m.events_in.labels("duplicate")
        self.dead = m.events_in.labels("dead_letter")
        self._actions = {c: m.actions.labels(c) for c in channels}
        self._decisions = {(o, sh): m.decisions.labels(o, sh) for o in DECISION_OUTCOMES for sh in ("false", "true")}
        self._suppressions = {r: m.suppressions.labels(r) for r in SUPPRESSION_REASONS}
        self._dead_letters = {r: m.dead_letters.labels(r) for r in DEAD_LETTER_REASONS}
        self._invalid_fields = {f: m.invalid_profile_fields.labels(f) for f in PROFILE_FIELDS}
        # (journey, version) -> entries and goals by group, exits by reason: this worker since it started.
        self.stats: dict[tuple[str, int], dict[str, Any]] = {}

    def dead_letter(self, reason: str) -> None:
        self.dead.inc()
        self._dead_letters[reason].inc()

    def invalid_fields(self, names: tuple[str, ...]) -> None:
        for name in names:
            self._invalid_fields[name].inc()

    def lifecycle(self, lc: Lifecycle) -> None:
        m = self.metrics
        row = self.stats.get((lc.journey, lc.version))
        if row is None:
            row = self.stats[(lc.journey, lc.version)] = {
                "entries": {"treatment": 0, "holdout": 0}, "goals": {"treatment": 0, "holdout": 0}, "exits": {}}
        if lc.kind == "entered":
            m.journey_entries.labels(lc.journey, lc.group).inc()
            row["entries"][lc.group] += 1
        elif lc.kind == "goal":
            m.journey_goals.labels(lc.journey, lc.group).inc()
            row["goals"][lc.group] += 1
        else:
            m.journey_exits.labels(lc.journey, lc.reason).inc()
            row["exits"][lc.reason] = row["exits"].get(lc.reason, 0) + 1

    def output(self, topic: str, value: dict[str, Any], now: int, *, event_triggered: bool = True) -> None:
        m = self.metrics
        if topic.startswith("actions."):
            counter = self._actions.get(value["channel"])
            (counter or m.actions.labels(value["channel"])).inc()
            ts = parse_ts_ms(value.get("event_ts"))
            # Only sends an event triggered directly: a send after a wait (or a quiet-hours
            # deferral) is late on purpose.
            if ts is not None and event_triggered:
                m.event_to_action.observe(max(0.0, (now - ts) / 1000))
        elif topic == "suppressions":
            counter = self._suppressions.get(value["reason"])
            (counter or m.suppressions.labels(value["reason"])).inc()
        elif topic == "decisions":
            shadow = "true" if value.get("shadow") else "false"     # shadow decisions send nothing
            counter = self._decisions.get((value["outcome"], shadow))
            (counter or m.decisions.labels(value["outcome"], shadow)).inc()
