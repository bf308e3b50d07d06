"""Every metric the webhook adapter exports (documented in docs/adapters.md).

Names start with ``orch_adapter_``; labels take bounded values only (the adapter's channels,
fixed results and outcomes, topic names and partition numbers): never a customer id, an action
id or any other per-request value.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics, generate_latest

from orchestrator import __version__

disable_created_metrics()   # no *_created series, as the worker's metrics

ACTION_RESULTS = ("delivered", "dead_letter", "cancelled", "duplicate", "invalid")
FORWARD_RESULTS = ("forwarded", "dead_letter", "duplicate", "not_for_these_channels", "invalid")
REQUEST_OUTCOMES = ("2xx", "3xx", "4xx", "5xx", "timeout", "connection_error")
DEAD_LETTER_REASONS = ("delivery_failed", "invalid_json", "invalid_schema")
FEEDBACK_TYPES = ("message.delivered", "message.failed")
SUPPRESSIONS_TARGET = "suppressions"     # the `target` label of requests to --suppressions-url
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
AGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


class AdapterMetrics:
    """The adapter's metrics, on a registry of their own."""

    def __init__(self, channels: Iterable[str], *, forwarding: bool,
                 registry: CollectorRegistry | None = None) -> None:
        channels = tuple(channels)
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.actions = Counter("orch_adapter_actions", "Actions consumed, by channel and result: delivered, "
                               "dead_letter (refused or out of retry budget), cancelled (a suppression cancelled "
                               "it first), duplicate (its outcome was already recorded), invalid (not an action "
                               "JSON; dead-lettered).", ["channel", "result"], registry=r)
        self.requests = Counter("orch_adapter_requests", "HTTP requests, by target (a channel, or suppressions) "
                                "and outcome (status class, timeout, connection_error); retries included.",
                                ["target", "outcome"], registry=r)
        self.request_seconds = Histogram("orch_adapter_request_seconds", "Duration of one HTTP request, by target.",
                                         ["target"], buckets=REQUEST_BUCKETS, registry=r)
        self.retries = Counter("orch_adapter_retries", "Requests sent again after a retryable answer, by target.",
                               ["target"], registry=r)
        self.unknown_outcome = Counter("orch_adapter_unknown_outcome_resends", "Requests sent again, with the same "
                                       "Idempotency-Key, because the previous run stopped while they were in flight "
                                       "(outcome unknown), by target.", ["target"], registry=r)
        self.rate_limit_wait = Counter("orch_adapter_rate_limit_wait_seconds", "Time requests waited for a "
                                       "token of their channel's --max-per-second bucket.", ["channel"], registry=r)
        self.decided_to_delivered = Histogram("orch_adapter_decided_to_delivered_seconds", "The action's "
                                              "decided_at to its delivery (2xx), by channel.", ["channel"],
                                              buckets=AGE_BUCKETS, registry=r)
        self.in_flight = Gauge("orch_adapter_requests_in_flight", "HTTP requests waiting for an answer.",
                               registry=r)
        self.dead_letters = Counter("orch_adapter_dead_letters", "Records written to <prefix>.dlq, by reason.",
                                    ["reason"], registry=r)
        self.feedback = Counter("orch_adapter_feedback_events", "Feedback events written to <prefix>.events, "
                                "by type (re-sends after a restart included).", ["type"], registry=r)
        self.suppressions_read = Counter("orch_adapter_suppressions_read", "Suppressions read for their cancels, "
                                         "by result (valid, or invalid: not a suppression JSON).",
                                         ["result"], registry=r)
        self.cancels = Counter("orch_adapter_cancels_stored", "Action ids a suppression cancelled, newly stored.",
                               registry=r)
        self.forwarded = Counter("orch_adapter_suppressions_forwarded", "Suppressions consumed for "
                                 "--suppressions-url, by result.", ["result"], registry=r)
        self.pruned = Counter("orch_adapter_dedup_pruned", "Ids deleted from the store after the "
                              "de-duplication window.", registry=r)
        self.lag = Gauge("orch_adapter_consumer_lag_messages", "Records not yet committed, per assigned topic "
                         "partition.", ["topic", "partition"], registry=r)
        self.ready = Gauge("orch_adapter_ready", "1 once the cancels are caught up and partitions are assigned.",
                           registry=r)
        Info("orch_adapter_build", "Adapter build information.", registry=r).info({"version": __version__})
        targets = channels + ((SUPPRESSIONS_TARGET,) if forwarding else ())
        for channel in channels:
            for result in ACTION_RESULTS:
                self.actions.labels(channel, result)
            self.rate_limit_wait.labels(channel)
            self.decided_to_delivered.labels(channel)
        for target in targets:
            for outcome in REQUEST_OUTCOMES:
                self.requests.labels(target, outcome)
            self.retries.labels(target)
            self.unknown_outcome.labels(target)
            self.request_seconds.labels(target)
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason)
        for kind in FEEDBACK_TYPES:
            self.feedback.labels(kind)
        for result in ("valid", "invalid"):
            self.suppressions_read.labels(result)
        if forwarding:
            for result in FORWARD_RESULTS:
                self.forwarded.labels(result)

    def render(self) -> bytes:
        return generate_latest(self.registry)
