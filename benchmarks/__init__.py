"""The project's benchmarks: a package in the repository, never installed with ``orchestrator``.

Run from the repository root, after ``pip install -e '.[bench]'`` (``make bench`` does both):

* ``python -m benchmarks.load``: throughput, latency, cost and scale-out against the Python peers
  (``docs/benchmarks.md``);
* ``python -m benchmarks.timers``: due timers per second and the memory of pending timers;
* ``python -m benchmarks.pure_core``: the engine alone, in-process, no Kafka;
* ``python -m benchmarks.identical [--against REV]``: a digest of everything the engine decides on
  the benchmark's backlog, to prove a change leaves the outputs identical.

The baselines the load benchmark starts as child processes live beside them
(``passthrough``, ``quix_naive``, ``quix_journey``, ``naive_faust``); what they all share is
:mod:`benchmarks.common` and :mod:`benchmarks.workload`.
"""
