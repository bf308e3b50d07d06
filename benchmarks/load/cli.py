"""``python -m benchmarks.load``: the command line of the load benchmark.

``run`` (the default, what ``make bench`` runs)
    One benchmark run on this machine and broker, every system fed the same backlog: the aiokafka
    passthrough (the ceiling), a naive Quix Streams app, a Quix Streams app with one cart-recovery
    journey, naive Faust (the historical row), the engine's worker, the pure core, then the engine
    with 1, 2 and 4 workers. Results: ``benchmarks/results/load.json``, ``load.md``, ``load.png``;
    the method is in ``docs/benchmarks.md``.

``generate``
    Just the load generator against a running worker (``ORCH_TOPIC_PREFIX``, ``ORCH_BOOTSTRAP``):
    ``--rate N`` events/s (0: flat out) for ``--duration`` seconds or ``--events`` events, with the
    simulated channel adapter answering actions with feedback, and a progress line.

``soak``
    One engine worker at a fixed ``--rate`` for ``--minutes``, one row per ``--interval-s``: CPU per
    event, RSS, state sizes, changelog bytes per event, lag; then whether each grew more than 10 %
    after the warm-up. Written only with ``--write`` (``benchmarks/results/soak.json``, ``soak.md``)
    or ``--json PATH``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections import deque
from pathlib import Path
from typing import Any

import orjson

from benchmarks.common import RESULTS, BenchError, Progress, bootstrap, broker_reachable, make_producer, note, \
    percentile, without_full_collections
from benchmarks.load.kafkaio import PRODUCERS, Adapter, OutputSink, paced
from benchmarks.load.report import fmt, markdown, write_results
from benchmarks.load.runner import run
from benchmarks.load.soak import markdown as soak_markdown
from benchmarks.load.soak import plan, soak
from benchmarks.load.soak import write as write_soak
from benchmarks.load.systems import SYSTEMS
from benchmarks.workload import Shoppers

ALL_SYSTEMS = (*SYSTEMS, "pure_core")


async def generate(args: argparse.Namespace) -> int:
    """The generator alone against a running worker (``ORCH_TOPIC_PREFIX``), with the adapter."""
    from orchestrator.config import Settings
    from orchestrator.core import load_policies
    from orchestrator.kafkaio.topics import ensure_topics
    # The worker's settings, on the broker every benchmark uses (ORCH_BOOTSTRAP, else the local one).
    settings = Settings.from_env({**os.environ, "ORCH_BOOTSTRAP": bootstrap()})
    channels = load_policies(settings.policies).channels
    # The worker's topics, as the worker would create them, so the load can start first.
    await ensure_topics(settings, channels)
    shoppers = Shoppers(seed=args.seed, customers=args.customers, zipf_s=args.zipf_s, zipf_q=args.zipf_q,
                        tag=args.tag or uuid.uuid4().hex[:6])
    producer = make_producer(linger_ms=5 if args.rate else 20)
    await producer.start()
    adapter = Adapter(producer, settings.topics.events) if not args.no_feedback else None
    sink = OutputSink([settings.topics.actions(c) for c in channels],
                      on_record=adapter.on_action if adapter else None)
    await sink.start()
    if adapter is not None:
        adapter.start()
    progress = Progress()
    limit = args.events or None
    produced = [0]

    def source() -> dict[str, Any] | None:
        if limit is not None and produced[0] >= limit:
            return None
        produced[0] += 1
        return shoppers.next()

    history: deque[tuple[float, int, int]] = deque(maxlen=50)

    def tick(sent: int, el: float) -> None:
        fb = adapter.sent if adapter else 0
        history.append((el, sent + fb, sink.count))
        t0, s0, a0 = history[0]
        dt = max(1e-6, el - t0)
        recent = sorted(l for ts, l in sink.samples[-2000:])
        p50, p99 = percentile(recent, 50), percentile(recent, 99)
        progress.show(f"in {(sent + fb - s0) / dt:,.0f}/s: events {sent:,} + feedback {fb:,} | actions {sink.count:,} "
                      f"({(sink.count - a0) / dt:,.0f}/s) | event-to-action p50 {fmt(p50)} ms p99 {fmt(p99)} ms "
                      f"| {el:,.0f}s")

    note(f"load: {'flat out' if not args.rate else f'{args.rate:,.0f} events/s'} to {settings.topics.events} "
         f"at {settings.bootstrap}" + ("" if adapter else " (no feedback)"))
    try:
        with without_full_collections():         # no pauses of the generator's own making
            sent = await paced(producer, settings.topics.events, source, rate=args.rate,
                               duration_s=args.duration if args.duration else float("inf"),
                               extra=(lambda: adapter.sent) if adapter else (lambda: 0), on_tick=tick)
            await asyncio.sleep(1.0)
    except KeyboardInterrupt:
        sent = produced[0]
    finally:
        if adapter is not None:
            await adapter.stop()
        await sink.stop()
        await producer.stop()
        progress.done()
    lat = sorted(l for _, l in sink.samples)
    print(orjson.dumps({"events_sent": sent, "feedback_sent": adapter.sent if adapter else 0, "actions": sink.count,
                        "actions_by_topic": dict(sink.by_topic), "p50_ms": percentile(lat, 50),
                        "p95_ms": percentile(lat, 95), "p99_ms": percentile(lat, 99)},
                       option=orjson.OPT_INDENT_2).decode())
    return 0


def _workload_args(p: argparse.ArgumentParser, events: int | None) -> None:
    if events is not None:
        p.add_argument("--events", type=int, default=events, help=f"events in the backlog (default {events:,})")
    p.add_argument("--customers", type=int, default=200_000, help="customer population (default 200,000)")
    p.add_argument("--zipf-s", type=float, default=1.0, help="popularity exponent s of 1/(rank+q)^s (default 1.0)")
    p.add_argument("--zipf-q", type=float, default=20.0, help="popularity offset q (default 20)")
    p.add_argument("--seed", type=int, default=42)


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()] if text else []


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    r = sub.add_parser("run", help="the side-by-side benchmark (default)")
    _workload_args(r, 120_000)
    r.add_argument("--systems", default=",".join(ALL_SYSTEMS), help=f"which systems (default: {','.join(ALL_SYSTEMS)})")
    r.add_argument("--partitions", type=int, default=8)
    r.add_argument("--producer", choices=PRODUCERS, default="aiokafka",
                   help="who produces the backlog: aiokafka with murmur2 partitions like the Java client (default), "
                        "or confluent-kafka with its defaults (CRC32 partitions): most events then take the "
                        "engine's re-keying hop")
    r.add_argument("--engine-partitioner", choices=["murmur2", "crc32"], default=None,
                   help="the engine's ORCH_PRODUCER_PARTITIONER (default: crc32 with --producer confluent-default, "
                        "as the README says; murmur2 otherwise)")
    r.add_argument("--drain-cap", type=float, default=90.0,
                   help="stop a drain this many seconds after the first output (default 90)")
    r.add_argument("--rounds", type=int, default=3,
                   help="drains of the engine and the Quix apps in alternation (default 3: the main sequence's "
                        "and 2 more); the ratios between them are the median over the rounds")
    r.add_argument("--rate", type=float, default=0.0,
                   help="events/s of the latency phases (default: 25%% of the engine's sustained rate)")
    r.add_argument("--latency-cap-rate", type=float, default=20_000.0, help=argparse.SUPPRESS)
    r.add_argument("--warmup", type=float, default=5.0, help="seconds of paced load before measuring (default 5)")
    r.add_argument("--latency-s", type=float, default=30.0, help="seconds of measured paced load (default 30; 0 skips)")
    r.add_argument("--scale", type=_int_list, default=[1, 2, 4], help="worker counts for scale-out (default 1,2,4; "
                                                                    "'' to skip)")
    r.add_argument("--scale-events", type=int, default=120_000, help="backlog of each scale-out run (default 120,000)")
    r.add_argument("--quick", action="store_true", help="a short smoke run (20k events, 10 s latency, 20k scale-out)")
    r.add_argument("--profile", action="store_true",
                   help="py-spy the engine worker during its drain (pip install py-spy); summary in the JSON")
    r.add_argument("--profile-s", type=float, default=20.0, help="seconds of profile (default 20)")
    r.add_argument("--keep", action="store_true", help="keep topics, data dirs and logs")
    r.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    r.add_argument("--name", default="load", help="file name of the results (default load: load.json/.md/.png)")
    g = sub.add_parser("generate", help="only the load generator (+ adapter) against ORCH_TOPIC_PREFIX's worker")
    _workload_args(g, 0)
    g.add_argument("--rate", type=float, default=1000.0, help="events/s including feedback; 0 = flat out (default 1000)")
    g.add_argument("--duration", type=float, default=60.0, help="seconds (default 60; 0 = until --events or Ctrl-C)")
    g.add_argument("--no-feedback", action="store_true", help="do not run the simulated channel adapter")
    g.add_argument("--tag", default="", help="event id tag (default random; the same tag re-sends the same ids)")
    k = sub.add_parser("soak", help="one engine worker at a fixed rate for minutes: does its cost per event grow?")
    _workload_args(k, None)
    k.add_argument("--rate", type=float, default=3000.0,
                   help="events/s offered, the adapter's feedback included (default 3,000)")
    k.add_argument("--minutes", type=float, default=30.0, help="length of the load (default 30)")
    k.add_argument("--interval-s", type=float, default=60.0, help="seconds per row (default 60)")
    k.add_argument("--warmup-minutes", type=float, default=5.0,
                   help="first minutes left out of the verdict (default 5)")
    k.add_argument("--partitions", type=int, default=8)
    k.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the JSON to PATH")
    k.add_argument("--write", action="store_true",
                   help="write benchmarks/results/soak.json and soak.md (a trial run without it writes nothing)")
    k.add_argument("--keep", action="store_true", help="keep the topics, the data dir and the worker log")
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "generate", "soak", "-h", "--help"):
        argv = ["run", *argv]
    args = parser().parse_args(argv)
    if args.cmd == "run" and args.rounds < 1:
        print("benchmarks.load run: --rounds must be 1 or more", file=sys.stderr)
        return 2
    if args.cmd == "soak":
        try:
            if args.partitions < 1 or args.customers < 1:
                raise ValueError("--partitions and --customers must be 1 or more")
            plan(rate=args.rate, minutes=args.minutes, interval_s=args.interval_s, warmup_minutes=args.warmup_minutes)
        except ValueError as exc:
            print(f"benchmarks.load soak: {exc}", file=sys.stderr)
            return 2
    if not broker_reachable():
        print(f"no Kafka broker at {bootstrap()}: start one (`make kafka-up`) or set ORCH_BOOTSTRAP", file=sys.stderr)
        return 2
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    if args.cmd == "generate":
        try:
            return asyncio.run(generate(args))
        except KeyboardInterrupt:
            return 130
        except BenchError as exc:
            print(f"benchmarks.load generate: {exc}", file=sys.stderr)
            return 1
    if args.cmd == "soak":
        return _soak(args)
    if args.quick:
        args.events, args.latency_s, args.warmup, args.scale_events = 20_000, 10.0, 3.0, 20_000
        args.rounds = 1
        args.drain_cap = min(args.drain_cap, 60.0)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(args.systems) - set(ALL_SYSTEMS)
    if unknown:
        print(f"unknown systems: {', '.join(sorted(unknown))} (known: {', '.join(ALL_SYSTEMS)})", file=sys.stderr)
        return 2
    missing = [m for s, m in (("quix_naive", "quixstreams"), ("quix_journey", "quixstreams"),
                              ("naive_faust", "faust")) if s in args.systems and not _importable(m)]
    if args.producer == "confluent-default" and not _importable("confluent_kafka"):
        missing.append("confluent_kafka")
    if missing:
        print(f"{', '.join(sorted(set(missing)))} not installed: install the benchmark extra "
              f"(pip install -e '.[bench]', as `make bench` does)", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    write_results(result, args.out, args.name)
    print(markdown(result))
    note(f"results: {args.out / (args.name + '.json')}, .md, .png")
    return 1 if result.get("errors") else 0


def _soak(args: argparse.Namespace) -> int:
    """The soak, its table, and its files when asked: exit 1 only if it could not measure (a growth
    above the limit is a result, printed, not a failure of the command)."""
    try:
        result = asyncio.run(soak(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(soak_markdown(result))
    for path in write_soak(result, json_path=args.json, results_dir=RESULTS if args.write else None):
        note(f"written: {path}")
    return 1 if result.get("errors") else 0


def _importable(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None
