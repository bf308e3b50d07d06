"""The product's words, spelled once: decision outcomes, suppression reasons, dead-letter reasons and
topic names (docs/events.md). The engine writes them, the metrics label with them, the reports read
them; each is a ``StrEnum``, so a member is the very string that goes on the wire and compares equal
to it.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """A decision's ``outcome`` (docs/events.md#decisions)."""

    SENT = "sent"
    HOLDOUT = "holdout"
    NO_CONSENT = "no_consent"
    FREQUENCY_CAP = "frequency_cap"
    QUIET_HOURS_DEFERRED = "quiet_hours_deferred"
    SUPPRESSED = "suppressed"
    PREEMPTED = "preempted"
    ENTRY_REFUSED = "entry_refused"
    ENTERED = "entered"
    EXITED = "exited"
    GOAL = "goal"
    WINDOW_DEFERRED = "window_deferred"


class SuppressionReason(StrEnum):
    """A suppression's ``reason`` (docs/events.md#suppressions)."""

    GOAL = "goal"
    EXIT = "exit"
    ERASED = "erased"
    UNSUBSCRIBED = "unsubscribed"
    PREEMPTED = "preempted"
    EXPIRED = "expired"


class DeadLetter(StrEnum):
    """A dead letter's ``reason`` (docs/events.md#dead-letters): the worker's, then the adapter's."""

    INVALID_JSON = "invalid_json"
    INVALID_SCHEMA = "invalid_schema"
    TOO_LARGE = "too_large"
    FUTURE_TIMESTAMP = "future_timestamp"
    INVALID_FEEDBACK = "invalid_feedback"
    ENGINE_ERROR = "engine_error"
    DELIVERY_FAILED = "delivery_failed"


class Topic(StrEnum):
    """Topic names after ``ORCH_TOPIC_PREFIX`` and its dot (docs/events.md#topics); an action topic is
    ``actions.<channel>`` (:func:`actions`)."""

    EVENTS = "events"
    SUPPRESSIONS = "suppressions"
    DECISIONS = "decisions"
    DLQ = "dlq"
    JOURNEYS = "journeys"
    INTERNAL_EVENTS = "internal.events-by-customer"
    CHANGELOG = "internal.state-changelog"


ACTIONS = "actions."


def actions(channel: str) -> str:
    """The topic name (after the prefix) of a channel's actions."""
    return ACTIONS + channel


def is_action(topic: str) -> bool:
    """Whether a topic name (after the prefix) is a channel's actions topic."""
    return topic.startswith(ACTIONS)


OUTCOMES = tuple(Outcome)
SUPPRESSION_REASONS = tuple(SuppressionReason)
WORKER_DEAD_LETTERS = tuple(r for r in DeadLetter if r is not DeadLetter.DELIVERY_FAILED)
