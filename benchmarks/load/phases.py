"""The phases of the load benchmark: drain a waiting backlog (sustained throughput), then paced
load on the same running system (latency), and the scale-out runs of the engine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import POLL_S, BenchError, Progress, broker_pid, create_topics, group_state, make_producer, \
    note, now_ms, percentile, without_full_collections
from benchmarks.load.kafkaio import Adapter, GroupOffsets, OutputSink, output_times, paced, produce_backlog
from benchmarks.load.measure import Sampler, bucket_quantiles, commit_window, committed_slope, window_between, \
    window_stats
from benchmarks.load.systems import EngineWorkers, QuixJourney, System
from benchmarks.workload import LazyEvents, encode


async def throughput_phase(system: System, backlog: list[dict[str, Any]], *, baseline: float = 0.0,
                           cap_s: float, progress: Progress, produce_first: bool = True,
                           producer: str = "aiokafka", start_timeout_s: float = 180.0,
                           on_started: Callable[[System], None] | None = None) -> dict[str, Any]:
    """Drain a backlog and measure. ``produce_first``: produce, then start the system (the main run);
    otherwise the system already runs (scale-out) and the backlog is produced while it is sampled.

    The rate is taken between 10 % and 90 % of the backlog: from the system's count sampled every
    0.1-0.2 s, or, for the baselines with one output per event, from the output records' timestamps.
    Beside it, the same window of the system's group's committed offsets (``committed_offsets``),
    the yardstick every system shares."""
    n = len(backlog)
    sampler = Sampler(system, broker_pid())
    result: dict[str, Any] = {"backlog": n, "producer": producer}
    t_produced = 0.0
    producing: asyncio.Task[float] | None = None
    offsets = GroupOffsets(system.group, system.input_topic, system.partitions, interval_s=0.1)
    if produce_first:
        result["produce_s"] = round(await produce_backlog(system.input_topic, system.partitions, backlog,
                                                          progress, system.name, producer), 2)
        await offsets.start()
        t_start = time.time()
        await system.start()
        result["ready_s"] = round(time.time() - t_start, 2)
        if on_started is not None:
            on_started(system)
    else:
        await offsets.start()
        t_start = time.time()
        producing = asyncio.create_task(produce_backlog(system.input_topic, system.partitions, backlog,
                                                        Progress(), system.name, producer))
    committed_base = offsets.samples[0][1] if offsets.samples else 0.0
    first_t: float | None = None
    poll = 0.1 if system.timed_output() else POLL_S
    try:
        while True:
            system.check()
            t, c = (await sampler.take())[:2]
            done = c - baseline
            if first_t is None and done > 0:
                first_t = t
            if producing is not None and producing.done() and not t_produced:
                result["produce_s"] = round(producing.result(), 2)
                t_produced = time.time()
            progress.show(f"{system.name}: consumed {done:,.0f}/{n:,} ({sampler.rate():,.0f}/s) | lag {n - done:,.0f} | "
                          f"{system.cpu():,.1f} cpu-s" + (" | producing" if producing is not None and not t_produced
                                                          else ""))
            if done >= n:
                break
            if first_t is None and t - t_start > start_timeout_s:
                raise BenchError(f"{system.name}: nothing consumed {start_timeout_s:.0f}s after start")
            if first_t is not None and t - first_t > cap_s:
                result["capped"] = True
                break
            await asyncio.sleep(poll)
        await asyncio.sleep(poll)
        await sampler.take()
        progress.done()
        if producing is not None:
            result["produce_s"] = round(await producing, 2)
            t_produced = t_produced or time.time()
        if not isinstance(system, QuixJourney):
            # The last commit lands up to a commit interval after the last output.
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline and (not offsets.samples or
                                                   offsets.samples[-1][1] - committed_base < min(n, c - baseline)):
                await asyncio.sleep(0.25)
    finally:
        await offsets.stop()
    samples = [(s[0], s[1] - baseline, *s[2:]) for s in sampler.samples]
    final = min(float(n), samples[-1][1])
    result["consumed"] = int(final)
    result["drained"] = final >= n
    result["first_output_after_start_s"] = round((first_t or t_start) - t_start, 2)
    w = None
    timed = system.timed_output()
    if timed is not None:
        topic, one_per_event = timed
        times = await output_times(topic)
        if one_per_event:
            times = times[int(baseline):]
        if len(times) >= (10 if one_per_event else 50):
            i10, i90 = int(0.1 * len(times)), int(0.9 * len(times)) - 1
            # Between the two, one event per record; or, for sparse outputs spread evenly through
            # the backlog, the same share of the events consumed.
            events = i90 - i10 if one_per_event else (i90 - i10) / len(times) * final
            w = window_between(samples, times[i10], times[i90], events)
            if w is not None:
                w["window"] = ("10% to 90% of the backlog, by the output records' timestamps" if one_per_event else
                               f"10% to 90% of its {len(times):,} outputs, by their timestamps (the events between "
                               f"them estimated from the outputs' share: they are spread evenly through the backlog)")
                result["elapsed_s"] = round(times[-1] - times[0], 2)
    if w is None and isinstance(system, QuixJourney):
        # Its count is its committed offsets: the window runs from one commit to another.
        cw = commit_window(samples, 0.1 * final, 0.9 * final)
        if cw is not None:
            w = window_between(samples, cw[0][0], cw[1][0], cw[1][1] - cw[0][1])
            if w is not None:
                w["window"] = "between the commits that reached 10% and 90% of the backlog"
    if w is None:
        w = window_stats(samples, 0.1 * final, 0.9 * final, t_min=t_produced if not produce_first else 0.0)
        if w is not None:
            w["window"] = "10% to 90% of the backlog" + ("" if produce_first else ", after production ended")
    if w is None:     # too fast for a 1 s window: the whole drain, over at least 3 sampling intervals
        w = window_stats(samples, 1, final, min_s=0.3)
        if w is not None:
            w["window"] = "first to last sample"
    if w is None:
        raise BenchError(f"{system.name}: not enough samples to measure a rate")
    result.setdefault("elapsed_s", round(samples[-1][0] - (first_t or t_start), 2))
    result.update(w)
    committed = [(t, c - committed_base) for t, c in offsets.samples]
    result["committed_offsets"] = committed_slope(committed, 0.1 * final, 0.9 * final)
    return result


async def latency_phase(system: System, events: LazyEvents, *, rate: float, warmup_s: float,
                        measure_s: float, adapter: bool, progress: Progress,
                        drain_timeout_s: float = 60.0) -> dict[str, Any]:
    """Paced load at ``rate`` events/s (feedback included) on the running system; latency of outputs.
    The benchmark's own collector makes no full collections meanwhile (:func:`without_full_collections`)."""
    with without_full_collections():
        return await _latency_phase(system, events, rate=rate, warmup_s=warmup_s, measure_s=measure_s,
                                    adapter=adapter, progress=progress, drain_timeout_s=drain_timeout_s)


async def _latency_phase(system: System, events: LazyEvents, *, rate: float, warmup_s: float,
                         measure_s: float, adapter: bool, progress: Progress,
                         drain_timeout_s: float) -> dict[str, Any]:
    producer = make_producer(linger_ms=2)
    await producer.start()
    adapter_obj = Adapter(producer, system.input_topic) if adapter else None
    sink = OutputSink(system.output_topics(), on_record=adapter_obj.on_action if adapter_obj else None)
    await sink.start()
    if adapter_obj is not None:
        adapter_obj.start()
    sampler = Sampler(system, broker_pid())
    base = (await sampler.take())[1]
    source = events.reader()
    window: dict[str, int] = {}
    t0 = time.monotonic()

    fed_now = {"fed": 0}
    hist: dict[str, dict[float, float]] = {}

    def tick(sent: int, el: float) -> None:
        fb = adapter_obj.sent if adapter_obj else 0
        fed_now["fed"] = sent + fb
        lag = sent + fb - (sampler.samples[-1][1] - base)
        phase = "warm-up" if el < warmup_s else "measuring"
        progress.show(f"{system.name}: latency at {rate:,.0f}/s ({phase} {el:4.0f}s) | sent {sent:,} + feedback {fb:,}"
                      f" | lag {lag:,.0f} | outputs {sink.count:,} | {len(sink.samples):,} latency samples")

    async def sample_loop() -> None:
        while True:
            await asyncio.sleep(0.5)
            c = (await sampler.take())[1]
            el = time.monotonic() - t0
            if "start" not in window and el >= warmup_s:
                window["start"] = now_ms()
                window["i0"] = len(sampler.samples) - 1
                window["lag0"] = int(max(0, fed_now["fed"] - (c - base)))
                if isinstance(system, EngineWorkers):
                    hist["before"] = await system.histogram("orch_event_to_action_seconds")

    loop_lag: list[float] = []

    async def loop_monitor() -> None:
        """This process's own event-loop delays: a stalled benchmark stamps arrivals late."""
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            loop_lag.append((time.perf_counter() - t - 0.01) * 1000)

    sampling = asyncio.create_task(sample_loop())
    monitoring = asyncio.create_task(loop_monitor())
    error = None
    try:
        sent = await paced(producer, system.input_topic, source, rate=rate,
                           duration_s=warmup_s + measure_s,
                           extra=(lambda: adapter_obj.sent) if adapter_obj else (lambda: 0),
                           on_tick=tick)
        window["end"] = now_ms()
        s_end = await sampler.take()
        if isinstance(system, EngineWorkers) and "before" in hist:
            hist["after"] = await system.histogram("orch_event_to_action_seconds")
        fed_at_end = sent + (adapter_obj.sent if adapter_obj else 0)
        i1 = len(sampler.samples) - 1
        if adapter_obj is not None:
            await adapter_obj.stop()
        fed = sent + (adapter_obj.sent if adapter_obj else 0)
        deadline = time.monotonic() + drain_timeout_s
        while True:
            system.check()
            c = (await sampler.take())[1]
            if c - base >= fed or time.monotonic() > deadline:
                break
            await asyncio.sleep(POLL_S)
        await asyncio.sleep(1.0)            # the last outputs reach the sink
    except BenchError as exc:
        error = str(exc).splitlines()[0]
        raise
    finally:
        for task in (sampling, monitoring):
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        await sink.stop()
        if adapter_obj is not None:
            await adapter_obj.stop()
        await producer.stop()
        progress.done()
    start_ms, end_ms = window.get("start", 0), window["end"]
    lat = sorted(l for ts, l in sink.samples if start_ms <= ts <= end_ms)
    final = sampler.samples[-1][1] - base
    i0 = window.get("i0", 0)
    s0 = sampler.samples[i0]
    w = window_stats(sampler.samples[i0:i1 + 1], s0[1], s_end[1]) if i1 > i0 else None
    res: dict[str, Any] = {
        "offered_rate_per_s": round(rate, 1), "warmup_s": warmup_s, "measure_s": measure_s,
        "events_sent": sent, "feedback_sent": adapter_obj.sent if adapter_obj else 0,
        "actions_seen_by_adapter": adapter_obj.actions if adapter_obj else None,
        "outputs_read": sink.count, "latency_samples": len(lat),
        "p50_ms": percentile(lat, 50), "p95_ms": percentile(lat, 95), "p99_ms": percentile(lat, 99),
        "max_ms": lat[-1] if lat else None,
        "mean_ms": round(sum(lat) / len(lat), 1) if lat else None,
        "consumed_during_phase": int(final), "all_consumed": final >= fed,
        "lag_at_start_of_measurement": window.get("lag0"),
        "lag_at_end_of_measurement": int(max(0, fed_at_end - (s_end[1] - base))),
    }
    if w is not None:
        res["consumed_rate_per_s"] = w["events_per_s"]
        for k in ("cpu_s_per_1k", "cpu_cores_used", "broker_cpu_cores_used", "bench_cpu_cores_used",
                  "host_cpu_busy_pct", "other_cpu_cores_used"):
            res[k] = w[k]
    stalls = sorted(loop_lag)
    res["bench_loop_delay_ms"] = {"p99": round(percentile(stalls, 99) or 0, 1),
                                  "max": round(stalls[-1], 1) if stalls else None}
    if "after" in hist:
        # The worker's own view: event ts to the moment it queued the action (before the producer).
        res["worker_reported_event_to_action"] = bucket_quantiles(hist["before"], hist["after"])
    if error:
        res["error"] = error
    return res


async def wait_for_count(system: System, target: float, *, timeout_s: float, progress: Progress) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        system.check()
        c = await system.count()
        if c >= target:
            progress.done()
            return
        if time.monotonic() > deadline:
            progress.done()
            raise BenchError(f"{system.name}: consumed {c:,.0f} of {target:,.0f} within {timeout_s:.0f}s")
        progress.show(f"{system.name}: finishing the backlog {c:,.0f}/{target:,.0f}")
        await asyncio.sleep(POLL_S)


async def run_scale(workdir: Path, run_id: str, k: int, backlog: list[dict[str, Any]], args: Any,
                    progress: Progress) -> dict[str, Any]:
    """The engine with ``k`` workers in one group: started first, the group Stable with every member
    and warmed up, then the backlog produced while it is consumed."""
    prefix = f"bench-{run_id}-x{k}"
    system = EngineWorkers(workdir, prefix, args.partitions, workers=k)
    system.partitioner = args.engine_partitioner or ("crc32" if args.producer == "confluent-default" else "murmur2")
    res: dict[str, Any] = {"workers": k, "prefix": prefix}
    try:
        await create_topics(system.topics_to_create())
        t0 = time.monotonic()
        await system.start()
        # Wait for one stable group with every worker, then warm up every partition.
        deadline = time.monotonic() + 120
        while True:
            system.check()
            st = await group_state(system.group)
            progress.show(f"engine x{k}: waiting for the group: {st}")
            if st is not None and st[0] == "Stable" and st[1] == k:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"engine x{k}: group not stable with {k} members after 120s ({st})")
            await asyncio.sleep(0.5)
        warm = [{"event_id": f"w-{run_id}-{k}-{i}", "customer_id": f"warm-{i}", "type": "bench.warmup",
                 "properties": {}} for i in range(64)]
        producer = make_producer()
        await producer.start()
        try:
            for ev in warm:
                key, value = encode(ev, now_ms())
                await producer.send(system.input_topic, key=key, value=value)
            await producer.flush()
        finally:
            await producer.stop()
        await wait_for_count(system, len(warm), timeout_s=120, progress=progress)
        st = await group_state(system.group)
        res["ready_s"] = round(time.monotonic() - t0, 2)
        res["group_at_start"] = st
        base = await system.count()
        res.update(await throughput_phase(system, backlog, baseline=base, cap_s=args.drain_cap, progress=progress,
                                          produce_first=False, producer=args.producer))
        res["group_at_end"] = await group_state(system.group)
        note(f"engine x{k}: {res['events_per_s']:,.0f} events/s, {res['cpu_s_per_1k']:.3f} cpu-s per 1k events, "
             f"{res['cpu_cores_used']} cores busy, host {res['host_cpu_busy_pct']}% busy")
    except Exception as exc:  # noqa: BLE001
        res["error"] = f"{type(exc).__name__}: {exc}"
        note(f"engine x{k} failed: {exc}")
    finally:
        mems = system.mem()
        res["peak_memory_bytes_per_worker"] = [m.get("VmHWM") for m in mems]
        res["exit_codes"] = await system.stop()
        await system.close()
    return res
