"""The send gate (docs/policies.md#the-send-gate), run at the moment of sending on the customer's
partition, in this order: consent -> global/journey holdout -> frequency caps -> quiet hours.
``send: best`` picks, among the listed channels that pass consent, the one with the best smoothed
engagement.

A send node's own ``window`` (docs/journeys.md#window) is checked right after consent: outside it
the send is deferred to the window's next opening, where the whole gate runs again. After consent,
so nothing is deferred for a customer who cannot be contacted on the node's channels (and the
deferral names the channel); before the holdout, so a held-out customer waits for the window
exactly as a treated one does (both groups keep the same timing). A node's ``exempt`` skips frequency caps
and/or quiet hours; consent is never skipped, and an exempt send still counts toward the caps of
later sends.

Each check answers a question about one customer's state; the engine turns the answers into
decisions (:meth:`orchestrator.core.engine.Engine._send`).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo

from orchestrator.core.durations import format_duration_ms
from orchestrator.core.ids import bucket
from orchestrator.core.journeys import Journey
from orchestrator.core.localtime import Window, day_instant, window_opening
from orchestrator.core.policies import Policies, zone
from orchestrator.core.state import ENGAGEMENT_WINDOW_MS, CustomerState


ZONES_MAX = 4096                   # names remembered by known_zone (about 600 IANA names exist)
_zones: dict[str, tzinfo | None] = {}


def known_zone(name: object) -> tzinfo | None:
    """:func:`~orchestrator.core.policies.zone` (the IANA timezone ``name``, ``None`` if it is not one),
    remembered per name: it is plain Python, asked at every send and every profile update that sets a
    timezone. A bounded memo, cleared when it grows large."""
    if not isinstance(name, str):
        return None
    if name in _zones:
        return _zones[name]
    if len(_zones) >= ZONES_MAX:
        _zones.clear()
    tz = _zones[name] = zone(name)
    return tz


def customer_zone(state: CustomerState) -> tzinfo:
    """The customer's timezone (``profile.timezone``, an IANA name), UTC if absent or unknown."""
    return known_zone(state.profile.get("timezone")) or timezone.utc


class Gate:
    """The policies' checks for one send; holds no per-customer data."""

    def __init__(self, policies: Policies) -> None:
        self.policies = policies
        # The policies' parts asked at every send, held natively (a Policies is a plain-Python
        # dataclass: each attribute read from compiled code is a generic lookup).
        self._opt_in = frozenset(ch for ch in policies.consent if policies.consent_mode(ch) == "opt_in")
        self._frequency = [(rule.channel, rule.per_ms, rule.max) for rule in policies.frequency]

    @staticmethod
    def journey_held_out(j: Journey, cid: str) -> bool:
        return j.holdout > 0 and bucket("holdout", j.id, cid) < j.holdout

    def globally_held_out(self, cid: str) -> bool:
        g = self.policies.global_holdout
        return g > 0 and bucket("global-holdout", cid) < g

    def consents(self, state: CustomerState, channel: str) -> bool:
        consent = state.profile.get("consent")
        value = consent.get(channel) if isinstance(consent, dict) else None
        if channel in self._opt_in:               # Policies.consent_mode(channel) == "opt_in"
            return value is True
        return value is not False

    def best_channel(self, state: CustomerState, candidates: list[str], now_ms: int) -> str:
        """Highest smoothed engagement ((opens + clicks + 1) / (sends + 2)); ties keep listed order."""
        cutoff = now_ms - ENGAGEMENT_WINDOW_MS

        def score(ch: str) -> float:
            e = state.engagement.get(ch)
            if e is None:
                return 0.5
            sent = sum(1 for t in e.sent if t >= cutoff)
            engaged = sum(1 for t in e.opened if t >= cutoff) + sum(1 for t in e.clicked if t >= cutoff)
            return (min(engaged, sent) + 1) / (sent + 2)

        return max(candidates, key=lambda ch: (score(ch), -candidates.index(ch)))

    def quiet_until(self, state: CustomerState, channel: str, now_ms: int) -> int | None:
        q = self.policies.quiet_hours
        if q is None or channel not in q.channels:
            return None
        tz = customer_zone(state)
        local = datetime.fromtimestamp(now_ms / 1000, tz)
        minute = local.hour * 60 + local.minute
        start, end = q.start_min, q.end_min
        inside = (start <= minute < end) if start < end else (minute >= start or minute < end)
        if not inside:
            return None
        day = local.date()
        if start > end and minute >= start:
            day = day + timedelta(days=1)
        # The end as windows read a local time (a time the clocks skip: the instant they jump), and,
        # if that is not after now, its second occurrence: a send inside the hour repeated when the
        # clocks go back waits for the end of that hour's second pass, never for an instant before it.
        resume = day_instant(day, end, tz)
        if resume <= now_ms:
            naive = datetime(day.year, day.month, day.day, end // 60, end % 60)
            resume = int(naive.replace(tzinfo=tz, fold=1).timestamp() * 1000)
        return resume if resume > now_ms else None

    @staticmethod
    def window_opens(state: CustomerState, window: Window, now_ms: int) -> int | None:
        """``None`` inside the send node's window, else when it next opens (customer's timezone)."""
        return window_opening(now_ms, customer_zone(state), window)

    def frequency_capped(self, state: CustomerState, channel: str, now_ms: int) -> str | None:
        """Why a send on ``channel`` now would break a rolling cap (across all journeys), or ``None``."""
        for only, per_ms, most in self._frequency:              # (FrequencyRule.applies_to, inlined)
            if only is None or only == channel:
                since = now_ms - per_ms
                count = sum(1 for t, ch in state.sends if t > since and (only is None or only == ch))
                if count >= most:
                    scope = only or "all channels"
                    return f"{count} sends on {scope} in the last {format_duration_ms(per_ms)} (max {most})"
        return None
