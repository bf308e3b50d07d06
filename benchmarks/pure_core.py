"""The pure core benchmark: the engine with the example journeys and policies, in-process, no Kafka.

    python -m benchmarks.pure_core [--events N] [--seed S] [--customers C]

Two passes over the same pre-generated events (those of the load benchmark, from
:mod:`benchmarks.workload`: synthetic shoppers plus the channel adapter's feedback; the load
benchmark calls :func:`measure` on its own backlog), each with fresh state, timed in CPU seconds of this one thread
(``time.process_time``), so the numbers are events/s **per core**:

* ``engine``: ``Engine.on_event(state, event, now)`` with the states in a dict; each event's cost is
  also timed on its own, to split events that enrolled a customer in a journey from the rest;
* ``worker_path``: what the worker does per event besides Kafka and RocksDB: validate the
  JSON (``parse_event``), the internal hop (``encode_event``/``decode_event``), decode the customer's
  msgpack state, decide, encode the outputs with orjson, journal them (one msgpack record per
  500 inputs, as the worker does per batch) and encode the state again. The gap between this and the worker's sustained rate is Kafka I/O,
  the store and the event loop.

Event timestamps follow a virtual clock (2,000 events/s) and ``now`` = the event's ``ts``. Garbage
from building the workload is frozen (``gc.freeze``) so the collector does not walk it.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from benchmarks.common import now_ms
from benchmarks.workload import JOURNEYS, POLICIES, VIRTUAL_RATE, Shoppers, build_backlog, load_engine, virtual_time


def measure(events: list[dict[str, Any]], *, journeys: Path = JOURNEYS, policies: Path = POLICIES,
            start_ms: int | None = None) -> dict[str, Any]:
    """Time the engine over ``events`` (dicts without ``ts``, as :mod:`benchmarks.workload` makes them)."""
    from orchestrator.core import parse_event
    from orchestrator.core.events import Event, decode_event, encode_event
    import msgspec

    from orchestrator.core.state import decode_state, encode_state

    start = start_ms if start_ms is not None else now_ms()
    stamped = [(int(virtual_time(start, i, VIRTUAL_RATE)), e) for i, e in enumerate(events)]
    parsed = [Event(e["event_id"], e["customer_id"], e["type"], ts, e["properties"]) for ts, e in stamped]
    raws = [orjson.dumps({**e, "ts": ts}) for ts, e in stamped]
    n = len(parsed)

    # ---- pass 1: the engine alone
    engine = load_engine(journeys, policies)
    states: dict[str, Any] = {}
    enrolled = enrolled_ns = other_ns = outputs = actions = 0
    was_frozen = gc.get_freeze_count() > 0
    gc.collect()
    gc.freeze()
    perf = time.perf_counter_ns
    try:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for ev in parsed:
            t = perf()
            r = engine.on_event(states.get(ev.customer_id), ev, ev.ts_ms)
            if r.state is None:
                states.pop(ev.customer_id, None)
            else:
                states[ev.customer_id] = r.state
            dt = perf() - t
            if any(lc.kind == "entered" for lc in r.lifecycle):
                enrolled += 1
                enrolled_ns += dt
            else:
                other_ns += dt
            outputs += len(r.outputs)
            actions += sum(1 for o in r.outputs if o.topic.startswith("actions."))
        cpu1, wall1 = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        if not was_frozen:
            gc.unfreeze()
    others = n - enrolled
    engine_res = {
        "events": n, "cpu_s": round(cpu1, 3), "wall_s": round(wall1, 3),
        "events_per_s": round(n / cpu1, 1) if cpu1 else None,
        "cpu_s_per_1k": round(cpu1 / n * 1000, 5) if n else None,
        "us_per_event": round(cpu1 / n * 1e6, 2) if n else None,
        "enrolled_events": enrolled, "enrolled_share": round(enrolled / n, 4) if n else None,
        "enrolled_us": round(enrolled_ns / enrolled / 1000, 2) if enrolled else None,
        "other_us": round(other_ns / others / 1000, 2) if others else None,
        "enrolled_events_per_s": round(enrolled / (enrolled_ns / 1e9), 1) if enrolled_ns else None,
        "other_events_per_s": round(others / (other_ns / 1e9), 1) if other_ns else None,
        "outputs": outputs, "actions": actions, "customers": len(states),
    }
    del states

    # ---- pass 2: the worker's per-event path without Kafka, Faust or RocksDB
    engine = load_engine(journeys, policies)
    store: dict[str, bytes] = {}
    channels = engine.policies.channels
    state_bytes = 0
    journal: list[tuple[int, list[tuple[str, str, bytes]]]] = []
    journal_encoder = msgspec.msgpack.Encoder()
    gc.collect()
    gc.freeze()
    try:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for i, raw in enumerate(raws):
            now = stamped[i][0]
            ev = parse_event(raw, max_bytes=65536, now_ms=now, channels=channels)
            ev = decode_event(encode_event(ev))
            key = ev.customer_id
            old = store.get(key)
            state = decode_state(old) if old is not None else None
            r = engine.on_event(state, ev, now)
            if r.outputs:
                journal.append((i, [(o.topic, o.key, orjson.dumps(o.value)) for o in r.outputs]))
            if len(journal) >= 500 or (i % 500 == 499 and journal):
                journal_encoder.encode(journal)
                journal = []
            if r.state is None:
                store.pop(key, None)
            else:
                b = store[key] = encode_state(r.state)
                state_bytes += len(b)
        cpu2, wall2 = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        if not was_frozen:
            gc.unfreeze()
    sizes = sorted(len(v) for v in store.values())
    worker_res = {
        "events": n, "cpu_s": round(cpu2, 3), "wall_s": round(wall2, 3),
        "events_per_s": round(n / cpu2, 1) if cpu2 else None,
        "cpu_s_per_1k": round(cpu2 / n * 1000, 5) if n else None,
        "us_per_event": round(cpu2 / n * 1e6, 2) if n else None,
        "mean_state_bytes_written": round(state_bytes / n, 1) if n else None,
        "state_bytes_p50": sizes[len(sizes) // 2] if sizes else None,
        "state_bytes_max": sizes[-1] if sizes else None,
    }
    return {"engine": engine_res, "worker_path": worker_res,
            "note": "CPU time of one thread (events/s per core); same events as the Kafka systems"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.pure_core", description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000, help="events (default 200,000)")
    ap.add_argument("--customers", type=int, default=200_000, help="customer population (default 200,000)")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)
    shoppers = Shoppers(seed=args.seed, customers=args.customers, tag="core")
    events, stats = build_backlog(shoppers, args.events, load_engine())
    print(orjson.dumps({"workload": stats, "pure_core": measure(events)}, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
