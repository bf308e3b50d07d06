"""Timer benchmark: throughput of due timers and the worker's memory with many pending timers.

    python -m benchmarks.timers [--pending N] [--burst M] [--partitions P] [--json] [--keep]

One run, one worker (``python -m orchestrator worker`` in a subprocess, its own topic prefix,
data dir and metrics port), on the broker at ``ORCH_BOOTSTRAP`` (default: the local broker of
``make kafka-up``):

a. **idle** - start the worker with ``benchmarks/journeys-timers/``, send one warm-up event (no
   journey takes it) to prove the pipeline is assigned and running, then read its VmRSS.
b. **pending** - N ``bench.hold`` events for N distinct customers; each customer parks on a 2-day
   wait, i.e. one pending timer. Produced as fast as the client can (batched ``send()`` futures).
   Waits until the worker counted all N (``orch_events_in_total``), reads VmRSS/VmHWM, then waits
   (bounded) for the ``orch_timers_pending`` gauge, refreshed every 60 s, to reach N.
c. **burst** - M ``bench.burst`` events; each customer waits 30 s, then one action is sent on
   ``ads``. Timer throughput = actions / seconds between the first and the last action's
   ``decided_at``; lateness of each action = ``decided_at`` - (the ``ts`` of the customer's
   ``entered`` decision + 30 s). The ``entered`` ts is the worker's clock when it scheduled the
   wait, so this lateness is exactly "fired at" - "due at" and excludes ingest delay.
d. Results go to ``benchmarks/results/timers.json`` and ``timers.md``; the Markdown is printed
   (``--json`` prints the JSON instead).

The worker is stopped with SIGTERM at the end; its topics (``<prefix>.*``, ``<prefix>-*``),
its consumer group and its data dir are deleted unless ``--keep``.
Every wait is bounded; nothing else on the broker is touched.
"""
