"""The product's words, spelled once: decision outcomes, suppression reasons, dead-letter reasons and
topic names (docs/events.md). The engine writes them, the metrics label with them, the reports and
the tests read them.

Each kind is a namespace of plain ``str`` constants (``Outcome.SENT == "sent"``), with the tuple of
all its values beside it (``OUTCOMES``). Not a ``StrEnum``: its members are ``str`` subclasses, which
orjson refuses as dict keys (a count of outcomes keyed by them could not be written as JSON), and on
the engine's path they cost more (measured: 58 ns to read a member against 19 ns for a class
attribute, and 38 ns more to write one as a JSON value).
"""

from __future__ import annotations


class Outcome:
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


class SuppressionReason:
    """A suppression's ``reason`` (docs/events.md#suppressions)."""

    GOAL = "goal"
    EXIT = "exit"
    ERASED = "erased"
    UNSUBSCRIBED = "unsubscribed"
    PREEMPTED = "preempted"
    EXPIRED = "expired"


class DeadLetter:
    """A dead letter's ``reason`` (docs/events.md#dead-letters): the worker's, then the adapter's."""

    INVALID_JSON = "invalid_json"
    INVALID_SCHEMA = "invalid_schema"
    TOO_LARGE = "too_large"
    FUTURE_TIMESTAMP = "future_timestamp"
    INVALID_FEEDBACK = "invalid_feedback"
    ENGINE_ERROR = "engine_error"
    DELIVERY_FAILED = "delivery_failed"


class Topic:
    """Topic names after ``ORCH_TOPIC_PREFIX`` and its dot (docs/events.md#topics); an action topic is
    ``actions.<channel>`` (:func:`actions`)."""

    EVENTS = "events"
    SUPPRESSIONS = "suppressions"
    DECISIONS = "decisions"
    DLQ = "dlq"
    JOURNEYS = "journeys"
    INTERNAL_EVENTS = "internal.events-by-customer"
    CHANGELOG = "internal.state-changelog"
    DEDUP_CHANGELOG = "internal.dedup-changelog"


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
