"""The timer benchmark's worker and phases: idle, pending timers, a burst of timers due together."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import orjson

from benchmarks.common import (BENCH_DIR, MIB, POLL_S, BenchError, Progress, Proc, dir_bytes, end_offsets, free_port,
                               host_cpu_s, make_producer, note, now_ms, percentile, proc_mem, read_topics, scrape,
                               total, worker_proc)
from orchestrator.core.timeutil import parse_ts_ms

JOURNEYS = BENCH_DIR / "journeys-timers"
POLICIES = JOURNEYS / "policies.conf"
BURST_WAIT_MS = 30_000             # bench-burst.yaml: pause {wait: 30s}
LIBRARIES = ("aiokafka", "rocksdict", "orchestrator")

EVENTS_IN = "orch_events_in_total{"
ACTIONS_ADS = "orch_actions_total{channel=ads}"
FIRED = "orch_timers_fired_total{}"
PENDING = "orch_timers_pending{}"
DUE = "orch_timers_due{}"


# ------------------------------------------------------------------------------------- helpers
def mib(n: float | None) -> float | None:
    return None if n is None else round(n / MIB, 1)


def event(customer: str, etype: str, eid: str) -> bytes:
    return orjson.dumps({"event_id": eid, "customer_id": customer, "type": etype, "ts": now_ms(), "properties": {}})


class Worker:
    """One ``python -m orchestrator worker`` with its own prefix, data dir and metrics port."""

    def __init__(self, workdir: Path, *, partitions: int) -> None:
        self.prefix = f"bench-{uuid.uuid4().hex[:10]}"
        self.port = free_port()
        self.data_dir = workdir / f"data-{self.prefix}"
        self.partitions = partitions
        self.log_path = workdir / f"worker-{self.prefix}.log"
        self.proc: Proc = worker_proc("worker", workdir, prefix=self.prefix, partitions=partitions,
                                      data_dir=self.data_dir, port=self.port, journeys=JOURNEYS, policies=POLICIES,
                                      log_path=self.log_path)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def topic(self, suffix: str) -> str:
        return f"{self.prefix}.{suffix}"

    def start(self, timeout_s: float = 120.0) -> None:
        self.proc.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            if scrape(self.port) is not None:
                return
            time.sleep(POLL_S)
        raise BenchError(f"worker not ready after {timeout_s:.0f}s:\n{self.log_tail()}")

    def check_alive(self) -> None:
        self.proc.check()

    def log_tail(self) -> str:
        return self.proc.log_tail()

    def metrics(self) -> dict[str, float]:
        return scrape(self.port) or {}

    def memory(self) -> dict[str, int]:
        return proc_mem(self.pid)

    def cpu_seconds(self) -> float:
        return self.proc.cpu()

    def stop(self) -> int | None:
        return self.proc.stop(timeout_s=60.0)

    def remove_data(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)


async def produce_many(producer: Any, topic: str, count: int, make: Callable[[int], tuple[bytes, bytes]], *,
                       on_progress: Callable[[int], None] | None = None, window: int = 20_000,
                       timeout_s: float = 600.0) -> None:
    """Send ``count`` messages ``make(i) -> (key, value)`` with ``send()`` futures (no per-message
    wait); at most ``window`` unacknowledged at once. ``on_progress(acked)`` after each window."""
    deadline = time.monotonic() + timeout_s
    pending: list[asyncio.Future[Any]] = []
    acked = 0
    for i in range(count):
        key, value = make(i)
        pending.append(await producer.send(topic, value=value, key=key))
        if len(pending) >= window:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(f"producing to {topic}: {acked} of {count} acknowledged in {timeout_s:.0f}s")
            await asyncio.wait_for(asyncio.gather(*pending), timeout=remaining)
            acked += len(pending)
            pending.clear()
            if on_progress is not None:
                on_progress(acked)
    if pending:
        await asyncio.wait_for(asyncio.gather(*pending), timeout=max(1.0, deadline - time.monotonic()))
        acked += len(pending)
    if on_progress is not None:
        on_progress(acked)


class Monitor:
    """Scrapes the worker every 0.5 s in a thread and shows one progress line for a phase."""

    def __init__(self, worker: Worker, progress: Progress) -> None:
        self.worker = worker
        self.progress = progress
        self.metrics: dict[str, float] = {}
        self.history: list[tuple[float, dict[str, float]]] = []
        self.trace: list[tuple[int, int]] | None = None     # (events consumed, VmRSS bytes) while tracing
        self.trace_base = 0.0
        self.trace_step = 1.0

    async def refresh(self) -> dict[str, float]:
        self.worker.check_alive()
        m = await asyncio.to_thread(self.worker.metrics)
        if m:
            self.metrics = m
            self.history.append((time.monotonic(), m))
            del self.history[:-40]
            if self.trace is not None:
                consumed = total(m, EVENTS_IN) - self.trace_base
                if not self.trace or consumed - self.trace[-1][0] >= self.trace_step:
                    self.trace.append((int(consumed), self.worker.memory().get("VmRSS", 0)))
        return self.metrics

    def rate(self, key_prefix: str, window_s: float = 5.0) -> float:
        """Per-second rate of a (summed) counter over the last ``window_s`` seconds of scrapes."""
        if len(self.history) < 2:
            return 0.0
        t1, m1 = self.history[-1]
        t0, m0 = self.history[0]
        for t, m in self.history:
            if t1 - t >= window_s:
                t0, m0 = t, m
        if t1 <= t0:
            return 0.0
        return (total(m1, key_prefix) - total(m0, key_prefix)) / (t1 - t0)


async def wait_counter(mon: Monitor, key: str, target: float, *, label: str, stall_s: float, timeout_s: float,
                       extra: Any = None) -> float:
    """Poll until counter ``key`` reaches ``target``; fail if it makes no progress for ``stall_s``."""
    deadline = time.monotonic() + timeout_s
    last_value, last_change = -1.0, time.monotonic()
    while True:
        m = await mon.refresh()
        value = total(m, key)
        now = time.monotonic()
        if value != last_value:
            last_value, last_change = value, now
        line = f"{label}: {value:,.0f}/{target:,.0f} ({mon.rate(key):,.0f}/s)"
        if extra is not None:
            line += " " + extra(m)
        mon.progress.show(line)
        if value >= target:
            mon.progress.done(line)
            return value
        if now - last_change > stall_s:
            mon.progress.done(line)
            raise BenchError(f"{label}: stuck at {value:,.0f}/{target:,.0f} for {stall_s:.0f}s\n"
                             f"{mon.worker.log_tail()}")
        if now > deadline:
            mon.progress.done(line)
            raise BenchError(f"{label}: {value:,.0f}/{target:,.0f} after {timeout_s:.0f}s\n{mon.worker.log_tail()}")
        await asyncio.sleep(0.5)


async def produce_phase(mon: Monitor, topic: str, count: int, *, etype: str, cust: str, label: str,
                        consumed_before: float, timeout_s: float) -> tuple[float, float]:
    """Produce ``count`` events while showing produced/consumed. Returns (start, produced_at) monotonic."""
    state = {"acked": 0}
    stop = asyncio.Event()

    async def show() -> None:
        while not stop.is_set():
            m = await mon.refresh()
            consumed = total(m, EVENTS_IN) - consumed_before
            rss = mon.worker.memory().get("VmRSS", 0)
            elapsed = max(1e-3, time.monotonic() - started)
            mon.progress.show(f"{label}: produced {state['acked']:,}/{count:,} ({state['acked'] / elapsed:,.0f}/s) | "
                              f"worker consumed {consumed:,.0f} ({mon.rate(EVENTS_IN):,.0f}/s) | "
                              f"rss {rss / MIB:,.0f} MiB")
            try:
                await asyncio.wait_for(stop.wait(), timeout=0.5)
            except asyncio.TimeoutError:
                pass

    producer = make_producer(linger_ms=20)
    await producer.start()
    started = time.monotonic()
    shower = asyncio.create_task(show())
    try:
        await produce_many(producer, topic, count,
                           lambda i: (f"{cust}-{i}".encode(), event(f"{cust}-{i}", etype, f"{cust}-e{i}")),
                           on_progress=lambda acked: state.__setitem__("acked", acked), timeout_s=timeout_s)
        await producer.flush()
        produced = time.monotonic()
    finally:
        stop.set()
        await shower
        await producer.stop()
    mon.progress.done()
    return started, produced


# ------------------------------------------------------------------------------------- the phases
async def run(args: argparse.Namespace, worker: Worker, result: dict[str, Any]) -> None:
    progress = Progress()
    mon = Monitor(worker, progress)
    n, m_burst = args.pending, args.burst

    # a. idle -------------------------------------------------------------------------------
    note(f"worker {worker.prefix}: pid {worker.pid}, metrics on :{worker.port}, {worker.partitions} partitions")
    producer = make_producer(linger_ms=20)
    await producer.start()
    try:
        await producer.send_and_wait(worker.topic("events"), key=b"warmup",
                                     value=event("warmup", "bench.warmup", "warmup-e0"))
    finally:
        await producer.stop()
    await wait_counter(mon, EVENTS_IN, 1, label="warm-up event consumed", stall_s=180, timeout_s=180)
    for _ in range(int(3 / POLL_S)):                # let start-up allocations settle
        await asyncio.sleep(POLL_S)
    idle = worker.memory()
    result["idle"] = {"rss_bytes": idle.get("VmRSS"), "hwm_bytes": idle.get("VmHWM")}
    note(f"idle: VmRSS {mib(idle.get('VmRSS'))} MiB")

    # b. pending ----------------------------------------------------------------------------
    base = total(await mon.refresh(), EVENTS_IN)
    cpu0 = worker.cpu_seconds()
    mon.trace, mon.trace_base, mon.trace_step = [], base, max(1.0, n / 40)
    t0, t_produced = await produce_phase(mon, worker.topic("events"), n, etype="bench.hold", cust="hold",
                                         label="pending", consumed_before=base, timeout_s=max(600.0, n / 500))
    await wait_counter(mon, EVENTS_IN, base + n, label="pending: worker consumed",
                       stall_s=120, timeout_s=max(600.0, n / 200),
                       extra=lambda m: f"rss {worker.memory().get('VmRSS', 0) / MIB:,.0f} MiB")
    t_consumed = time.monotonic()
    cpu_pending = worker.cpu_seconds() - cpu0
    mem_consumed = worker.memory()
    trace, mon.trace = mon.trace or [], None
    trace.append((n, mem_consumed.get("VmRSS", 0)))
    note(f"pending: {n:,} consumed in {t_consumed - t0:,.1f}s; VmRSS {mib(mem_consumed.get('VmRSS'))} MiB, "
         f"VmHWM {mib(mem_consumed.get('VmHWM'))} MiB")

    gauge_deadline = time.monotonic() + args.gauge_timeout
    gauge = None
    while time.monotonic() < gauge_deadline:
        metrics = await mon.refresh()
        gauge = metrics.get(PENDING)
        progress.show(f"pending: orch_timers_pending = {gauge:,.0f} (refreshed every 60 s), want {n:,}"
                      if gauge is not None else "pending: orch_timers_pending not exported")
        if gauge is not None and gauge >= n:
            break
        await asyncio.sleep(0.5)
    progress.done()
    t_gauge = time.monotonic()
    mem_gauge = worker.memory()
    if gauge is None or gauge < n:
        note(f"pending: orch_timers_pending is {gauge} after {args.gauge_timeout:.0f}s, not {n}")
    rss_idle = idle.get("VmRSS") or 0
    rss_after = mem_gauge.get("VmRSS") or 0
    result["pending"] = {
        "n": n,
        "produce_s": round(t_produced - t0, 2), "produce_rate_per_s": round(n / max(1e-9, t_produced - t0)),
        "ingest_s": round(t_consumed - t0, 2), "ingest_rate_per_s": round(n / max(1e-9, t_consumed - t0)),
        "worker_cpu_cores": round(cpu_pending / max(1e-9, t_consumed - t0), 2),
        "rss_after_consumed_bytes": mem_consumed.get("VmRSS"), "hwm_after_consumed_bytes": mem_consumed.get("VmHWM"),
        "timers_pending_gauge": gauge, "gauge_reached": gauge is not None and gauge >= n,
        "gauge_wait_s": round(t_gauge - t_consumed, 1),
        "rss_after_gauge_bytes": mem_gauge.get("VmRSS"), "hwm_after_gauge_bytes": mem_gauge.get("VmHWM"),
        "rss_growth_bytes": rss_after - rss_idle,
        "rss_growth_per_pending_timer_bytes": round((rss_after - rss_idle) / n, 1) if n else None,
        "data_dir_bytes": dir_bytes(worker.data_dir),
        "rss_trace": [{"consumed": c, "rss_mib": mib(r)} for c, r in trace],
    }
    note(f"pending: gauge {gauge}, VmRSS {mib(rss_after)} MiB (+{(rss_after - rss_idle) / MIB:,.1f} MiB over idle)")

    # c. burst ------------------------------------------------------------------------------
    decisions_start = await end_offsets([worker.topic("decisions")])
    actions_start = await end_offsets([worker.topic("actions.ads")])
    metrics = await mon.refresh()
    base_in = total(metrics, EVENTS_IN)
    base_fired = metrics.get(FIRED, 0.0)
    base_ads = metrics.get(ACTIONS_ADS, 0.0)
    base_proc_sum = metrics.get("orch_processing_seconds_sum{}", 0.0)
    base_proc_count = metrics.get("orch_processing_seconds_count{}", 0.0)
    burst_wall_start = now_ms()
    cpu_burst0 = worker.cpu_seconds()
    t_burst, t_burst_produced = await produce_phase(mon, worker.topic("events"), m_burst, etype="bench.burst",
                                                    cust="burst", label="burst", consumed_before=base_in,
                                                    timeout_s=max(600.0, m_burst / 500))
    max_due = [0.0]
    firing_from: list[tuple[float, float, float]] = []     # (monotonic, worker CPU s, host busy s) at the first action

    def burst_extra(m: dict[str, float]) -> str:
        due = m.get(DUE, 0.0)
        max_due[0] = max(max_due[0], due)
        if not firing_from and m.get(ACTIONS_ADS, 0.0) > base_ads:
            firing_from.append((time.monotonic(), worker.cpu_seconds(), host_cpu_s()[0]))
        return (f"| ticks {m.get(FIRED, 0.0) - base_fired:,.0f} | due {due:,.0f} | "
                f"in {total(m, EVENTS_IN) - base_in:,.0f}/{m_burst:,}")

    # The first timers fall due 30 s after the first entries; stalls are only judged after that.
    await wait_counter(mon, EVENTS_IN, base_in + m_burst, label="burst: worker consumed", stall_s=120,
                       timeout_s=max(600.0, m_burst / 200))
    t_burst_consumed = time.monotonic()
    await wait_counter(mon, ACTIONS_ADS, base_ads + m_burst, label="burst: ads actions", stall_s=120,
                       timeout_s=BURST_WAIT_MS / 1000 + max(600.0, m_burst / 100), extra=burst_extra)
    metrics = await mon.refresh()
    mem_burst = worker.memory()
    t_burst_done = time.monotonic()
    worker_cpu_end = worker.cpu_seconds()
    host_busy_end = host_cpu_s()[0]
    cpu_burst = worker_cpu_end - cpu_burst0
    ticks = metrics.get(FIRED, 0.0) - base_fired
    proc_count = metrics.get("orch_processing_seconds_count{}", 0.0) - base_proc_count
    proc_sum = metrics.get("orch_processing_seconds_sum{}", 0.0) - base_proc_sum

    note("burst: reading actions and decisions back")
    actions = await read_topics([worker.topic("actions.ads")], start=actions_start,
                                until=lambda rs: len(rs) >= m_burst, timeout_s=120)
    entered_raw = await read_topics([worker.topic("decisions")], start=decisions_start,
                                    keep=lambda v: b'"bench-burst"' in v and b'"entered"' in v, timeout_s=300)
    entered: dict[str, int] = {}
    entered_dupes = 0
    for rec in entered_raw:
        d = orjson.loads(rec.value)
        if d.get("journey") == "bench-burst" and d.get("outcome") == "entered":
            if d["customer_id"] in entered:
                entered_dupes += 1
            entered[d["customer_id"]] = parse_ts_ms(d["ts"])
    ids: Counter[str] = Counter()
    lateness: list[int] = []
    decided: list[int] = []
    unmatched = 0
    for rec in actions:
        a = orjson.loads(rec.value)
        ids[a["action_id"]] += 1
        at = parse_ts_ms(a["decided_at"])
        decided.append(at)
        ent = entered.get(a["customer_id"])
        if ent is None:
            unmatched += 1
        elif ids[a["action_id"]] == 1:
            lateness.append(at - (ent + BURST_WAIT_MS))
    lateness.sort()
    decided.sort()
    span_s = (decided[-1] - decided[0]) / 1000 if len(decided) > 1 else float("nan")
    per_second = Counter(t // 1000 for t in decided)
    entries = sorted(entered.values())
    result["burst"] = {
        "m": m_burst,
        "produce_s": round(t_burst_produced - t_burst, 2),
        "ingest_s": round(t_burst_consumed - t_burst, 2),
        "ingest_rate_per_s": round(m_burst / max(1e-9, t_burst_consumed - t_burst)),
        "entries_span_s": round((entries[-1] - entries[0]) / 1000, 3) if len(entries) > 1 else None,
        "actions": len(actions), "distinct_action_ids": len(ids),
        "duplicates": sum(c - 1 for c in ids.values() if c > 1),
        "missing": max(0, m_burst - len(ids)),
        "entered_decisions": len(entered), "entered_duplicates": entered_dupes, "actions_without_entry": unmatched,
        "first_action_at": decided[0] if decided else None, "last_action_at": decided[-1] if decided else None,
        "first_action_after_burst_start_s": round((decided[0] - burst_wall_start) / 1000, 3) if decided else None,
        "fire_span_s": round(span_s, 3),
        "fired_per_s": round(len(actions) / span_s, 1) if span_s and span_s > 0 else None,
        "peak_fired_in_one_second": max(per_second.values()) if per_second else 0,
        "lateness_basis": "decided_at - (ts of the customer's `entered` decision + 30 s)",
        "lateness_ms": {"min": lateness[0] if lateness else None,
                        "p50": percentile(lateness, 50), "p95": percentile(lateness, 95),
                        "p99": percentile(lateness, 99), "max": lateness[-1] if lateness else None,
                        "mean": round(sum(lateness) / len(lateness), 1) if lateness else None},
        "ticks_processed": ticks,
        "max_timers_due_seen": max_due[0],
        "processing_avg_ms": round(proc_sum / proc_count * 1000, 3) if proc_count else None,
        # From the first scrape that saw an action to the last action (scrape granularity 0.5 s).
        "worker_cpu_cores_while_firing": (round((worker_cpu_end - firing_from[0][1])
                                                / max(1e-9, t_burst_done - firing_from[0][0]), 2)
                                          if firing_from else None),
        # Every process on the host (the broker, this script, anything else running) in that window.
        "host_cpu_cores_while_firing": (round((host_busy_end - firing_from[0][2])
                                              / max(1e-9, t_burst_done - firing_from[0][0]), 2)
                                        if firing_from else None),
        "worker_cpu_cores": round(cpu_burst / max(1e-9, t_burst_done - t_burst), 2),
        "rss_after_bytes": mem_burst.get("VmRSS"), "hwm_bytes": mem_burst.get("VmHWM"),
    }
