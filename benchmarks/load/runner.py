"""One run of the load benchmark: the workload once, then every system on it, one after the other
(the engine first: its sustained rate sets the latency phases' rate for everyone), then scale-out;
each system with its own prefix, its topics deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import Progress, create_topics, delete_prefix, loadavg, machine_facts, note
from benchmarks.load.kafkaio import changelog_stats, rekeyed
from benchmarks.load.measure import Profiler
from benchmarks.load.phases import latency_phase, run_scale, throughput_phase, wait_for_count
from benchmarks.load.report import derive
from benchmarks.load.systems import SYSTEMS, EngineWorkers, System
from benchmarks.workload import LazyEvents, Shoppers, build_backlog, load_engine

LIBRARIES = ("aiokafka", "rocksdict", "msgspec", "uvloop", "quixstreams", "confluent-kafka", "faust-streaming")
# The latency phases run at this share of the engine's drain rate: a real-time channel's load with headroom.
LATENCY_SHARE = 0.25
ORDER = ("engine", "engine_eos", "passthrough", "quix_naive", "quix_journey", "naive_faust")
# With --rounds N, these drain the backlog N - 1 more times, one after the other, after the main
# sequence: the ratios between them are judged by their median over the rounds (the machine's speed
# drifts by more than the differences measured between two single drains minutes apart).
ROUND_SYSTEMS = ("engine", "quix_naive", "quix_journey")


async def run_system(system: System, backlog: list[dict[str, Any]], args: argparse.Namespace,
                     latency_events: LazyEvents | None, rate_for: Callable[[dict[str, Any]], float | None],
                     progress: Progress) -> dict[str, Any]:
    """Throughput, then (same running system) latency at ``rate_for(throughput result)`` events/s;
    for the engine, afterwards, what its state and the re-keying hop cost."""
    res: dict[str, Any] = {"label": system.label, "prefix": system.prefix, "partitions": system.partitions,
                           "group": system.group}
    engine = isinstance(system, EngineWorkers)
    try:
        await create_topics(system.topics_to_create(), configs=system.topic_configs())
        profiler = None
        if args.profile and engine:
            profiler = Profiler(args.profile_s, system.workdir / f"{system.prefix}.pyspy.txt")
        res["throughput"] = await throughput_phase(system, backlog, cap_s=args.drain_cap, progress=progress,
                                                   producer=args.producer,
                                                   on_started=profiler.start if profiler else None)
        if profiler is not None:
            res["profile"] = await asyncio.to_thread(profiler.finish)
            note(f"{system.name}: py-spy profile: " + ", ".join(
                f"{k} {v}%" for k, v in list(res["profile"].get("self_by_package", {}).items())[:6]))
        if engine:
            res["throughput"]["rekeying"] = await rekeyed(system.keyed_topic)
            res["throughput"]["engine_partitioner"] = system.partitioner
        tp = res["throughput"]
        committed = (tp.get("committed_offsets") or {}).get("events_per_s")
        note(f"{system.name}: {tp['events_per_s']:,.0f} events/s sustained ({committed or 0:,.0f} by committed "
             f"offsets), {tp['cpu_s_per_1k']:.3f} cpu-s per 1k events")
        rate = rate_for(tp)
        if latency_events is not None and rate:
            # Let a capped drain finish first, so the latency phase starts with no lag.
            await wait_for_count(system, len(backlog), timeout_s=max(60.0, args.drain_cap), progress=progress)
            res["latency"] = await latency_phase(system, latency_events, rate=rate, warmup_s=args.warmup,
                                                 measure_s=args.latency_s, adapter=engine, progress=progress)
            lat = res["latency"]
            note(f"{system.name}: latency at {rate:,.0f}/s p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, "
                 f"p99 {lat['p99_ms']} ms ({lat['latency_samples']:,} samples)")
    except Exception as exc:  # noqa: BLE001 - one failed system must not lose the others' results
        res["error"] = f"{type(exc).__name__}: {exc}"
        note(f"{system.name} failed: {exc}")
    finally:
        mems = system.mem()
        res["peak_memory_bytes"] = max((m.get("VmHWM", 0) for m in mems), default=None)
        res["memory_bytes_at_end"] = max((m.get("VmRSS", 0) for m in mems), default=None)
        res["exit_codes"] = await system.stop()
        if engine:
            try:
                res["state"] = await changelog_stats(system.changelog_topic, await system.count())
                st = res["state"]
                note(f"engine state: {st['customers']:,} customers, p50 {st['state_bytes_p50']} / p99 "
                     f"{st['state_bytes_p99']} bytes; changelog {st['changelog_bytes_per_event']} bytes per event")
            except Exception as exc:  # noqa: BLE001
                res["state_error"] = f"{type(exc).__name__}: {exc}"
        await system.close()
    return res


def _drained(res: dict[str, Any] | None) -> dict[str, Any]:
    """A drain's rate and CPU per event, from a system's result."""
    if not res or "throughput" not in res:
        return {"error": (res or {}).get("error", "not run")}
    tp = res["throughput"]
    return {"events_per_s": tp.get("events_per_s"), "cpu_s_per_1k": tp.get("cpu_s_per_1k")}


async def drain_only(system: System, backlog: list[dict[str, Any]], args: argparse.Namespace,
                     progress: Progress) -> dict[str, Any]:
    """One more drain of the backlog by a fresh system (own topics, own state), nothing else."""
    try:
        await create_topics(system.topics_to_create(), configs=system.topic_configs())
        tp = await throughput_phase(system, backlog, cap_s=args.drain_cap, progress=progress, producer=args.producer)
        note(f"{system.name}: {tp['events_per_s']:,.0f} events/s sustained, {tp['cpu_s_per_1k']:.3f} cpu-s per 1k events")
        return _drained({"throughput": tp})
    except Exception as exc:  # noqa: BLE001 - a failed round must not lose the run
        note(f"{system.name} failed: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        await system.stop()
        await system.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    progress = Progress()
    run_id = uuid.uuid4().hex[:6]
    t_begin = time.monotonic()
    result: dict[str, Any] = {"benchmark": "load", "run_id": run_id, "machine": machine_facts(LIBRARIES),
                              "params": {k: v for k, v in vars(args).items() if k not in ("func", "out")},
                              "systems": {}, "errors": []}
    result["params"]["out"] = str(args.out)
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{run_id}-"))
    prefixes: list[tuple[str, tuple[str, ...]]] = []      # (prefix, other topic name prefixes) to delete
    try:
        # ---- workload
        note(f"building the workload: {args.events:,} events ({args.customers:,} customers, seed {args.seed})")
        t = time.monotonic()
        shoppers = Shoppers(seed=args.seed, customers=args.customers, zipf_s=args.zipf_s, zipf_q=args.zipf_q,
                            tag=run_id)
        backlog, stats = build_backlog(shoppers, args.events, load_engine())
        stats["build_s"] = round(time.monotonic() - t, 2)
        result["workload"] = stats
        note(f"workload: {stats['events']:,} events, {stats['distinct_customers']:,} customers, "
             f"{100 * stats['feedback_share']:.1f}% feedback, {stats['predicted_actions']:,} actions predicted "
             f"({stats['build_s']}s)")
        # Events for the latency phases: the shoppers' stream continues (feedback comes live); made
        # on first use, so every system gets the same ones.
        latency_events = LazyEvents(shoppers)
        # The workload stays in memory for the whole run: keep the garbage collector from walking
        # it (a full collection over it would stall this process and stamp arrivals late).
        gc.collect()
        gc.freeze()

        # ---- pure core
        if "pure_core" in args.systems:
            try:
                from benchmarks.pure_core import measure
                note("pure core: the engine in-process on the same events (no Kafka)")
                result["systems"]["pure_core"] = measure(backlog)
                r = result["systems"]["pure_core"]
                note(f"pure core: {r['engine']['events_per_s']:,.0f} events/s per core (engine only), "
                     f"{r['worker_path']['events_per_s']:,.0f} with the worker's codecs")
            except Exception as exc:  # noqa: BLE001
                result["errors"].append(f"pure_core: {type(exc).__name__}: {exc}")
                note(f"pure core failed: {exc}")

        # ---- the engine first: its sustained rate sets the latency phase's rate for everyone
        chosen: dict[str, float] = {"rate": args.rate} if args.rate else {}

        def rate_for(throughput: dict[str, Any]) -> float:
            if "rate" not in chosen:
                tp = throughput.get("events_per_s") if throughput.get("system") == "engine" else None
                if tp:
                    chosen["rate"] = min(args.latency_cap_rate, LATENCY_SHARE * tp)
                    note(f"latency phases run at {chosen['rate']:,.0f} events/s ({LATENCY_SHARE:.0%} of the engine's sustained rate)")
                else:
                    chosen["rate"] = 1000.0
                    note("no engine rate measured: the latency phases run at 1,000 events/s")
            return chosen["rate"]

        order = [s for s in ORDER if s in args.systems]
        for name in order:
            prefix = f"bench-{run_id}-{name.replace('_', '')}"
            system = SYSTEMS[name](workdir, prefix, args.partitions)
            if isinstance(system, EngineWorkers):
                # Configured as the README tells a user of those producers.
                system.partitioner = args.engine_partitioner or (
                    "crc32" if args.producer == "confluent-default" else "murmur2")
            prefixes.append((prefix, system.also_delete()))
            note(f"{name}: {system.label}, prefix {prefix}")

            def tagged(throughput: dict[str, Any], name: str = name) -> float:
                return rate_for({**throughput, "system": name})

            res = await run_system(system, backlog, args, latency_events if args.latency_s > 0 else None,
                                   tagged, progress)
            result["systems"][name] = res
            if res.get("error"):
                result["errors"].append(f"{name}: {res['error'].splitlines()[0]}")
            await cleanup(prefix, workdir, keep=args.keep, also=system.also_delete())
        result["latency_rate_per_s"] = chosen.get("rate")

        # ---- more drains of the engine and the Quix apps, in alternation
        rounds = [name for name in ROUND_SYSTEMS if name in args.systems]
        if args.rounds > 1 and "engine" in rounds and len(rounds) > 1:
            result["rounds"] = [{name: _drained(result["systems"].get(name)) for name in rounds}]
            for k in range(2, args.rounds + 1):
                row: dict[str, Any] = {}
                for name in rounds:
                    prefix = f"bench-{run_id}-{name.replace('_', '')}-r{k}"
                    system = SYSTEMS[name](workdir, prefix, args.partitions)
                    prefixes.append((prefix, system.also_delete()))
                    note(f"round {k} of {args.rounds}: {name} drains the backlog again")
                    row[name] = await drain_only(system, backlog, args, progress)
                    if row[name].get("error"):
                        result["errors"].append(f"{name}, round {k}: {row[name]['error'].splitlines()[0]}")
                    await cleanup(prefix, workdir, keep=args.keep, also=system.also_delete())
                result["rounds"].append(row)

        # ---- scale-out
        if args.scale:
            scale_backlog = backlog[: args.scale_events]
            rows = []
            for k in args.scale:
                note(f"scale-out: {k} worker process(es), {len(scale_backlog):,} events")
                row = await run_scale(workdir, run_id, k, scale_backlog, args, progress)
                rows.append(row)
                prefixes.append((row["prefix"], ()))
                if row.get("error"):
                    result["errors"].append(f"scale x{k}: {row['error'].splitlines()[0]}")
                await cleanup(row["prefix"], workdir, keep=args.keep)
            one = next((r.get("events_per_s") for r in rows if r["workers"] == 1 and r.get("events_per_s")), None)
            for r in rows:
                if one and r.get("events_per_s"):
                    r["scaling_ratio"] = round(r["events_per_s"] / one, 2)
                    r["efficiency"] = round(r["events_per_s"] / one / r["workers"], 2)
            result["scaling"] = {"events": len(scale_backlog), "rows": rows, "cores": os.cpu_count(),
                                 "method": "workers started first; the group waited Stable with every member and "
                                           "warmed up; then the backlog is produced flat out; rate from 10% to 90% "
                                           "of the backlog, not before production ended"}
    finally:
        result["machine"]["loadavg_at_end"] = loadavg()
        result["duration_s"] = round(time.monotonic() - t_begin, 1)
        for prefix, also in prefixes:
            await cleanup(prefix, workdir, keep=args.keep, quiet=True, also=also)
        if args.keep:
            note(f"kept {workdir} (worker logs and data) and the topics")
        elif not result["errors"]:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            note(f"logs kept in {workdir}")
    derive(result)
    return result


_cleaned: set[str] = set()


async def cleanup(prefix: str, workdir: Path, *, keep: bool, quiet: bool = False, also: tuple[str, ...] = ()) -> None:
    """Delete a system's topics, groups and data dirs (once)."""
    if keep or prefix in _cleaned:
        return
    _cleaned.add(prefix)
    try:
        deleted = await delete_prefix(prefix, also=also)
        if not quiet:
            note(f"deleted {len(deleted)} topics of {prefix}")
    except Exception as exc:  # noqa: BLE001 - cleanup is best effort
        note(f"could not delete the topics of {prefix}: {exc}")
    for p in workdir.glob(f"data-{prefix}*"):
        shutil.rmtree(p, ignore_errors=True)


