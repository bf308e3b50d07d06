"""The product's words, spelled once: decision outcomes, suppression reasons, dead-letter reasons and
topic names (docs/events.md). The engine writes them, the metrics label with them, the reports and
the tests read them.

Each kind is a namespace of plain ``str`` constants (``Outcome.SENT == "sent"``), with the tuple of
all its values beside it (``OUTCOMES``). Not a ``StrEnum``: its members are ``str`` subclasses, which
orjson refuses as dict keys (a count of outcomes keyed by them could not be written as JSON), and on
the engine's path they cost more (measured: 58 ns to read a member against 19 ns for a class
attribute, and 38 ns more to write one as a JSON value). They are ``Final``, so the compiled hot
path (orchestrator/compiled.py) has their values written in and reads no attribute for them.
"""

from __future__ import annotations

from typing import Final


class Outcome:
    """A decision's ``outcome`` (docs/events.md#decisions)."""

    SENT: Final = "sent"
    HOLDOUT: Final = "holdout"
    NO_CONSENT: Final = "no_consent"
    FREQUENCY_CAP: Final = "frequency_cap"
    QUIET_HOURS_DEFERRED: Final = "quiet_hours_deferred"
    SUPPRESSED: Final = "suppressed"
    PREEMPTED: Final = "preempted"
    ENTRY_REFUSED: Final = "entry_refused"
    ENTERED: Final = "entered"
    EXITED: Final = "exited"
    GOAL: Final = "goal"
    WINDOW_DEFERRED: Final = "window_deferred"


class SuppressionReason:
    """A suppression's ``reason`` (docs/events.md#suppressions)."""

    GOAL: Final = "goal"
    EXIT: Final = "exit"
    ERASED: Final = "erased"
    UNSUBSCRIBED: Final = "unsubscribed"
    PREEMPTED: Final = "preempted"
    EXPIRED: Final = "expired"


class DeadLetter:
    """A dead letter's ``reason`` (docs/events.md#dead-letters): the worker's, then the adapter's."""

    INVALID_JSON: Final = "invalid_json"
    INVALID_SCHEMA: Final = "invalid_schema"
    TOO_LARGE: Final = "too_large"
    FUTURE_TIMESTAMP: Final = "future_timestamp"
    INVALID_FEEDBACK: Final = "invalid_feedback"
    ENGINE_ERROR: Final = "engine_error"
    DELIVERY_FAILED: Final = "delivery_failed"


class Topic:
    """Topic names after ``ORCH_TOPIC_PREFIX`` and its dot (docs/events.md#topics); an action topic is
    ``actions.<channel>`` (:func:`actions`)."""

    EVENTS: Final = "events"
    SUPPRESSIONS: Final = "suppressions"
    DECISIONS: Final = "decisions"
    DLQ: Final = "dlq"
    JOURNEYS: Final = "journeys"
    INTERNAL_EVENTS: Final = "internal.events-by-customer"
    CHANGELOG: Final = "internal.state-changelog"
    DEDUP_CHANGELOG: Final = "internal.dedup-changelog"


ACTIONS = "actions."


def actions(channel: str) -> str:
    """The topic name (after the prefix) of a channel's actions."""
    return ACTIONS + channel


def is_action(topic: str) -> bool:
    """Whether a topic name (after the prefix) is a channel's actions topic."""
    return topic.startswith(ACTIONS)


def values(namespace: type) -> tuple[str, ...]:
    """Every value of one of the namespaces above, in the order written."""
    return tuple(v for k, v in vars(namespace).items() if k.isupper())


OUTCOMES = values(Outcome)
SUPPRESSION_REASONS = values(SuppressionReason)
WORKER_DEAD_LETTERS = tuple(r for r in values(DeadLetter) if r != DeadLetter.DELIVERY_FAILED)
