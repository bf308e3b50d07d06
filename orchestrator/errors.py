"""Every exception the orchestrator raises on purpose.

::

    OrchestratorError                 base; ``str(e)`` is a sentence a user can act on
    ├── ConfigError                   bad environment variable or policies file
    ├── DefinitionError               a journey or policies file is refused
    │                                 (``file:line: message``; the last good version keeps running)
    ├── ExpressionError               an ``if:``/``params:``/``capture:`` expression is refused
    ├── LocalKafkaError               the local dev broker cannot be fetched, started or stopped
    ├── WorkerFailure                 the worker must stop without committing what it decided
    │                                 (an output Kafka refused, RocksDB unable to write): its
    │                                 uncommitted inputs are replayed by whoever owns them next
    └── AdapterFailed                 the webhook adapter stopped on an error; what it had not
                                      finished is read again on restart

Bad *events* never raise: the core turns them into dead letters (see
``orchestrator.core.events``). A worker must never crash on input.
"""

from __future__ import annotations


class OrchestratorError(Exception):
    """Base class of the orchestrator's own errors."""


class ConfigError(OrchestratorError):
    """A setting in the environment or a policies file is invalid."""


class DefinitionError(OrchestratorError):
    """A journey (or policies) definition is invalid.

    ``problems`` holds every problem found, each already formatted as
    ``file:line: message``; ``str()`` joins them with newlines.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class ExpressionError(OrchestratorError):
    """An expression uses something outside the safe subset, or does not parse."""

    def __init__(self, message: str, *, source: str = "") -> None:
        self.message = message
        self.source = source
        super().__init__(f"{message} in expression {source!r}" if source else message)


class LocalKafkaError(OrchestratorError):
    """The local broker (``orchestrator kafka up``) cannot be fetched, started or stopped."""


class WorkerFailure(OrchestratorError):
    """The worker must stop without committing (its uncommitted inputs are then replayed)."""


class AdapterFailed(OrchestratorError):
    """The adapter stopped on an error; what it had not finished is read again on restart."""
