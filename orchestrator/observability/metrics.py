"""Every metric the worker exports, in one place (documented in docs/metrics.md).

Names use the ``orch_`` prefix, base units (seconds), ``_total`` for counters.
Labels only take bounded values (channels, reasons, outcomes, journey ids):
never a customer id or any other personal data.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, disable_created_metrics, Counter, Gauge, Histogram, Info, generate_latest

from orchestrator import __version__
from orchestrator.core.vocabulary import OUTCOMES, SUPPRESSION_REASONS, WORKER_DEAD_LETTERS

disable_created_metrics()   # no *_created series: they double the output and no dashboard uses them

# Label values, from the one vocabulary (orchestrator.core.vocabulary).
DECISION_OUTCOMES = OUTCOMES
DEAD_LETTER_REASONS = WORKER_DEAD_LETTERS
# Known profile fields (docs/events.md#reserved-types) whose invalid values are counted, never the values themselves.
PROFILE_FIELDS = ("timezone", "consent")
# Why a valid event took the hop through the internal topic (orch_events_rekeyed_total).
REKEY_REASONS = ("key", "partition")
# Latency SLOs: first action within 100 ms p99 at half load; 1 s is the timer SLO.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Timer SLO: fire within 1 s of the due time.
TIMER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
PROCESSING_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)

ROCKSDB_MEMORY = ("block_cache", "memtables", "table_readers")   # orch_rocksdb_memory_bytes{kind}


class Metrics:
    """The worker's metrics, on a registry of their own (so tests can make fresh ones)."""

    def __init__(self, channels: Iterable[str], registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_in = Counter("orch_events_in", "Events consumed from the events topic, by result "
                                 "(valid, dead_letter, duplicate).", ["result"], registry=r)
        self.dead_letters = Counter("orch_dead_letters", "Messages sent to the dead-letter topic, by reason.",
                                    ["reason"], registry=r)
        self.events_rekeyed = Counter(
            "orch_events_rekeyed", "Valid events forwarded through the internal topic to their customer's "
            "partition before being decided, by reason: key (not keyed by customer_id) or partition (keyed by "
            "customer_id, but the producer placed it elsewhere than ORCH_PRODUCER_PARTITIONER does).",
            ["reason"], registry=r)
        self.actions = Counter("orch_actions", "Actions produced, by channel.", ["channel"], registry=r)
        self.suppressions = Counter("orch_suppressions", "Suppressions produced, by reason.", ["reason"], registry=r)
        self.decisions = Counter("orch_decisions", "Send-gate and lifecycle decisions, by outcome; shadow=\"true\" "
                                 "for decisions of shadow journey versions (nothing sent for them).",
                                 ["outcome", "shadow"], registry=r)
        self.replayed_outputs = Counter("orch_replayed_outputs", "Outputs re-sent for events replayed after a "
                                        "crash (same ids as the first time).", registry=r)
        self.engine_errors = Counter(
            "orch_engine_errors", "Records the engine or the worker's batch path raised on (a bug, or an "
            "undecodable internal record): each is dead-lettered with reason engine_error, the exception type "
            "in its detail, and the partition goes on.", registry=r)
        self.output_errors = Counter("orch_output_errors", "Outputs the producer could not deliver (the worker "
                                     "stops so that their inputs are replayed).", registry=r)
        self.invalid_profile_fields = Counter(
            "orch_invalid_profile_fields", "profile.updated events that set a known field to a value the engine "
            "cannot use, by field: a timezone that is not an IANA name (kept, read as UTC), a consent that is "
            "not an object (not applied).", ["field"], registry=r)
        self.event_to_action = Histogram("orch_event_to_action_seconds", "Event ts to action produced.",
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.processing = Histogram("orch_processing_seconds", "Engine time per event (state read, decide, "
                                    "state write).", buckets=PROCESSING_BUCKETS, registry=r)
        self.journey_entries = Counter("orch_journey_entries", "Journey entries, by journey and group "
                                       "(treatment or holdout).", ["journey", "group"], registry=r)
        self.journey_goals = Counter("orch_journey_goals", "Journey goals reached (conversions), by journey and "
                                     "group.", ["journey", "group"], registry=r)
        self.journey_exits = Counter("orch_journey_exits", "Journey exits other than goals, by journey and "
                                     "reason (exit node reasons, max_touches, max_duration, preempted, erased...).",
                                     ["journey", "reason"], registry=r)
        self.timer_lateness = Histogram("orch_timer_lateness_seconds", "Timer fired at minus timer due at.",
                                        buckets=TIMER_BUCKETS, registry=r)
        self.consumer_lag = Gauge("orch_consumer_lag_messages", "Messages not yet consumed, per input topic "
                                  "partition assigned to this worker.", ["topic", "partition"], registry=r)
        self.recovery_remaining = Gauge("orch_table_recovery_remaining_records", "Changelog records still to "
                                        "replay before this worker's tables are ready (0 when recovered).",
                                        registry=r)
        self.in_recovery = Gauge("orch_table_recovery_in_progress", "1 while tables are being recovered.",
                                 registry=r)
        self.timers_fired = Counter("orch_timers_fired", "Timer wake-ups processed.", registry=r)
        self.timers_pending = Gauge("orch_timers_pending", "Pending timers on this worker's partitions "
                                    "(refreshed every minute).", registry=r)
        self.timers_due = Gauge("orch_timers_due", "Timers due but not yet fired at the last scan.", registry=r)
        self.last_event_ts = Gauge("orch_last_processed_event_timestamp_seconds",
                                   "Event ts of the last processed event (unix seconds).", registry=r)
        self.rocksdb_memory = Gauge("orch_rocksdb_memory_bytes", "Memory of this worker's RocksDB databases "
                                    "(states and duplicate windows), by kind: block_cache (shared, with the "
                                    "index and filter blocks; bounded), memtables, table_readers.", ["kind"],
                                    registry=r)
        self.journeys_loaded = Gauge("orch_journeys_loaded", "Journey versions loaded.", registry=r)
        self.journey_publications = Counter("orch_journey_publications", "Journey publications read from the "
                                            "journeys topic, by result (loaded, refused, ignored).", ["result"],
                                            registry=r)
        self.build = Info("orch_build", "Worker build information.", registry=r)
        self.build.info({"version": __version__})
        for result in ("loaded", "refused", "ignored"):
            self.journey_publications.labels(result)
        for result in ("valid", "dead_letter", "duplicate"):
            self.events_in.labels(result)
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason)
        for channel in channels:
            self.actions.labels(channel)
        for reason in SUPPRESSION_REASONS:
            self.suppressions.labels(reason)
        for outcome in DECISION_OUTCOMES:
            for shadow in ("false", "true"):
                self.decisions.labels(outcome, shadow)
        for name in PROFILE_FIELDS:
            self.invalid_profile_fields.labels(name)
        for reason in REKEY_REASONS:
            self.events_rekeyed.labels(reason)
        for kind in ROCKSDB_MEMORY:
            self.rocksdb_memory.labels(kind)

    def journey_labels(self, journeys: Iterable[str]) -> None:
        """Create the per-journey series at zero, so dashboards show every journey from the start."""
        for j in journeys:
            for group in ("treatment", "holdout"):
                self.journey_entries.labels(j, group)
                self.journey_goals.labels(j, group)

    def render(self) -> bytes:
        return generate_latest(self.registry)
