"""Channel adapters: the other side of ``<prefix>.actions.<channel>``.

``orchestrator adapter webhook`` (:mod:`orchestrator.adapters.webhook`) is the reference one: it
POSTs each action to a URL once, honours suppressions, rate-limits, retries within a budget,
dead-letters what cannot be delivered and reports the outcome as feedback events. Its parts are
small modules that a custom adapter can reuse:

- :mod:`~orchestrator.adapters.dedup`: the durable record of what happened to each id (RocksDB);
- :mod:`~orchestrator.adapters.wire`: actions and suppressions read, feedback and dead letters written;
- :mod:`~orchestrator.adapters.lanes`: partitions worked through in order, a few records at a time;
- :mod:`~orchestrator.adapters.ratelimit`: token buckets;
- :mod:`~orchestrator.adapters.retry`: which answers are retried and the backoff;
- :mod:`~orchestrator.adapters.options`: flags and headers from the environment;
- :mod:`~orchestrator.adapters.metrics`: every ``orch_adapter_*`` metric.

The webhook adapter's own rooms, one job each: :mod:`~orchestrator.adapters.webhook` (wiring, poll
loop, rebalances, commits), :mod:`~orchestrator.adapters.records` (what becomes of one record),
:mod:`~orchestrator.adapters.delivery` (the POST, retries, rate limits),
:mod:`~orchestrator.adapters.cancels` (the suppressions' cancels), :mod:`~orchestrator.adapters.web`
(``/metrics``, ``/health``) and :mod:`~orchestrator.adapters.housekeeping` (pruning, lag).

The contract they rely on is written down in docs/adapters.md. Nothing heavy is imported here, so
the command line stays fast.
"""
