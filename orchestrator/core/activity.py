"""What an event records in a customer's state besides its journeys: its activity per event type and
day, the session, and the engagement stamps of a channel (sent, opened, clicked).

Functions over the state structs of :mod:`orchestrator.core.state`, apart from them because that module
defines msgspec Structs, which stay plain Python, while this one is part of the compiled hot path
(orchestrator/compiled.py).
"""

from __future__ import annotations

from typing import Any

from orchestrator.core.state import (ACTIVITY_MAX_TYPES, DAY_MS, ENGAGEMENT_MAX_STAMPS, SESSION_GAP_MS, Activity,
                                     CustomerState, Engagement)


def prune_stamps(stamps: list[int], cutoff: int) -> list[int]:
    if stamps and stamps[0] < cutoff:
        stamps = [t for t in stamps if t >= cutoff]
    if len(stamps) > ENGAGEMENT_MAX_STAMPS:
        stamps = stamps[-ENGAGEMENT_MAX_STAMPS:]
    return stamps


def record_activity(state: CustomerState, event_type: str, ts_ms: int, properties: dict[str, Any]) -> None:
    activity = state.activity
    act = activity.get(event_type)
    if act is None:
        if len(activity) >= ACTIVITY_MAX_TYPES:
            _forget_oldest(activity)
        act = activity[event_type] = Activity()
    day = ts_ms // DAY_MS
    days = act.days
    n = days.get(day)
    if n is None:
        days[day] = 1
        if len(days) > 31:
            for d in [d for d in days if d < day - 30]:
                del days[d]
    else:
        days[day] = n + 1
    if ts_ms > act.last_ms:
        act.last_ms = ts_ms
    # The session's fields read once each (generic lookups from compiled code), written as they change.
    s = state.session
    count, last_ms = s.event_count, s.last_ms
    if count == 0 or ts_ms - last_ms >= SESSION_GAP_MS:
        count = 0
        s.started_ms, s.categories = ts_ms, []
    if ts_ms > last_ms:
        s.last_ms = ts_ms
    s.event_count = count + 1
    if properties:
        category = properties.get("category")
        if isinstance(category, str):
            categories = s.categories
            if category not in categories and len(categories) < 32:
                categories.append(category[:64])


def _forget_oldest(activity: dict[str, Activity]) -> None:
    """Drop the event type seen longest ago. (Its own function: compiled, a function holding a lambda
    builds the lambda's environment at every call, taken or not.)"""
    oldest = min(activity, key=lambda k: activity[k].last_ms)
    del activity[oldest]


def engagement_for(state: CustomerState, channel: str) -> Engagement:
    eng = state.engagement.get(channel)
    if eng is None:
        eng = state.engagement[channel] = Engagement()
    return eng
