"""Timer benchmark: throughput of due timers and the worker's memory with many pending timers.

    python -m benchmarks.bench_timers [--pending N] [--burst M] [--partitions P] [--json] [--keep]

One run, one worker (``python -m orchestrator worker`` in a subprocess, its own topic prefix,
data dir and metrics port), on the broker at ``ORCH_BOOTSTRAP`` (default ``localhost:9092``):

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

The worker is stopped with SIGTERM at the end; its topics (``<prefix>.*``,
``<prefix>-orchestrator-*``), consumer group and data dir are deleted unless ``--keep``.
Every wait is bounded; nothing else on the broker is touched.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from benchmarks._harness import (BOOTSTRAP, POLL_S, BenchError, Progress, Worker, broker_reachable, delete_own_topics,
                                 dir_bytes, end_offsets, host_cpu_seconds, make_producer, note, produce_many,
                                 read_topics, total)

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
JOURNEYS = HERE / "journeys-timers"
POLICIES = JOURNEYS / "policies.conf"
RESULTS = HERE / "results"
BURST_WAIT_MS = 30_000             # bench-burst.yaml: pause {wait: 30s}
MIB = 1024 * 1024

EVENTS_IN = "orch_events_in_total{"
ACTIONS_ADS = "orch_actions_total{channel=ads}"
FIRED = "orch_timers_fired_total{}"
PENDING = "orch_timers_pending{}"
DUE = "orch_timers_due{}"


# ------------------------------------------------------------------------------------- helpers
def now_ms() -> int:
    return time.time_ns() // 1_000_000


def parse_ts(text: str) -> int:
    """``2026-11-23T10:00:00.123Z`` (the worker's format) -> epoch ms."""
    dt = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000 + 0.5)


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def mib(n: float | None) -> float | None:
    return None if n is None else round(n / MIB, 1)


def event(customer: str, etype: str, eid: str) -> bytes:
    return orjson.dumps({"event_id": eid, "customer_id": customer, "type": etype, "ts": now_ms(), "properties": {}})


def machine_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {"nproc": os.cpu_count(), "python": platform.python_version(),
                             "platform": platform.platform(), "bootstrap": BOOTSTRAP}
    try:
        meminfo = Path("/proc/meminfo").read_text()
        m = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.M)
        facts["memory_bytes"] = int(m.group(1)) * 1024 if m else None
    except OSError:
        facts["memory_bytes"] = None
    try:
        cpu = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        facts["cpu"] = cpu.group(1).strip() if cpu else None
    except OSError:
        facts["cpu"] = None
    try:
        pom = (ROOT / "deploy" / "kafka" / "pom.xml").read_text()
        m = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
        facts["kafka"] = m.group(1) if m else None
    except OSError:
        facts["kafka"] = None
    try:
        from importlib.metadata import version
        facts["libraries"] = {name: version(name) for name in ("faust-streaming", "aiokafka", "rocksdict", "orchestrator")}
    except Exception:
        facts["libraries"] = {}
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.rstrip("\n")
        facts["git"] = rev + ("+dirty" if dirty else "") if rev else None
        facts["git_modified"] = [line[3:] for line in dirty.splitlines()]
    except (OSError, subprocess.SubprocessError):
        facts["git"] = None
    facts["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    facts["loadavg_at_start"] = loadavg()
    return facts


def loadavg() -> str | None:
    """1/5/15-minute load average: other work on the host (the broker too) skews the numbers."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return None


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

    producer = make_producer()
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
    producer = make_producer()
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
            firing_from.append((time.monotonic(), worker.cpu_seconds(), host_cpu_seconds()[0]))
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
    host_busy_end = host_cpu_seconds()[0]
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
    for _, _, raw in entered_raw:
        d = orjson.loads(raw)
        if d.get("journey") == "bench-burst" and d.get("outcome") == "entered":
            if d["customer_id"] in entered:
                entered_dupes += 1
            entered[d["customer_id"]] = parse_ts(d["ts"])
    ids: Counter[str] = Counter()
    lateness: list[int] = []
    decided: list[int] = []
    unmatched = 0
    for _, _, raw in actions:
        a = orjson.loads(raw)
        ids[a["action_id"]] += 1
        at = parse_ts(a["decided_at"])
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


# ------------------------------------------------------------------------------------- report
def rss_quartiles(trace: list[dict[str, Any]], n: int) -> list[float | None]:
    """VmRSS (MiB) at the first trace point at or past 25/50/75/100% of ``n`` consumed."""
    out: list[float | None] = []
    for q in (0.25, 0.5, 0.75, 1.0):
        point = next((p for p in trace if p["consumed"] >= q * n), None)
        out.append(point["rss_mib"] if point else None)
    return out


def markdown(r: dict[str, Any]) -> str:
    mf, p, b = r["machine"], r.get("pending", {}), r.get("burst", {})
    lat = b.get("lateness_ms", {})

    def num(x: Any, fmt: str = ",.0f") -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)

    rows = [
        ("pending timers (N)", num(p.get("n"))),
        ("ingest: produced N events in", f"{num(p.get('produce_s'), ',.1f')} s ({num(p.get('produce_rate_per_s'))}/s)"),
        ("ingest: worker consumed N events in", f"{num(p.get('ingest_s'), ',.1f')} s "
                                                f"(**{num(p.get('ingest_rate_per_s'))} events/s**)"),
        ("RSS idle", f"{num(mib(r.get('idle', {}).get('rss_bytes')), ',.1f')} MiB"),
        ("RSS with N pending timers", f"**{num(mib(p.get('rss_after_gauge_bytes')), ',.1f')} MiB** "
                                      f"(VmHWM {num(mib(p.get('hwm_after_gauge_bytes')), ',.1f')} MiB)"),
        ("RSS at 25% / 50% / 75% / 100% of N consumed", " / ".join(
            f"{num(x, ',.0f')}" for x in rss_quartiles(p.get("rss_trace") or [], p.get("n") or 0)) + " MiB"),
        ("RSS growth per pending timer", f"{num(p.get('rss_growth_per_pending_timer_bytes'), ',.0f')} bytes"),
        ("orch_timers_pending gauge", f"{num(p.get('timers_pending_gauge'))}"
                                      + ("" if p.get("gauge_reached") else " (did not reach N)")),
        ("RocksDB data dir on disk", f"{num(mib(p.get('data_dir_bytes')), ',.1f')} MiB"),
        ("burst timers (M), due 30 s after entry", num(b.get("m"))),
        ("burst: entries spread over", f"{num(b.get('entries_span_s'), ',.1f')} s "
                                       f"(worker consumed M in {num(b.get('ingest_s'), ',.1f')} s)"),
        ("**timer throughput** (actions / first-to-last decided_at)",
         f"**{num(b.get('fired_per_s'))} fired/s** over {num(b.get('fire_span_s'), ',.1f')} s "
         f"(peak {num(b.get('peak_fired_in_one_second'))} in one second)"),
        ("lateness p50 / p95 / p99 / max", f"{num(lat.get('p50'))} / {num(lat.get('p95'))} / "
                                           f"{num(lat.get('p99'))} / {num(lat.get('max'))} ms"),
        ("actions / distinct action_ids / duplicates / missing",
         f"{num(b.get('actions'))} / {num(b.get('distinct_action_ids'))} / {num(b.get('duplicates'))} / "
         f"{num(b.get('missing'))}"),
        ("ticks processed (orch_timers_fired_total) / max orch_timers_due seen",
         f"{num(b.get('ticks_processed'))} / {num(b.get('max_timers_due_seen'))}"),
        ("mean engine time per record during the burst", f"{num(b.get('processing_avg_ms'), ',.3f')} ms"),
        ("worker CPU (cores busy): pending ingest / whole burst phase / while firing",
         f"{num(p.get('worker_cpu_cores'), '.2f')} / {num(b.get('worker_cpu_cores'), '.2f')} / "
         f"{num(b.get('worker_cpu_cores_while_firing'), '.2f')}"),
        ("host CPU (cores busy, all processes) while firing",
         f"{num(b.get('host_cpu_cores_while_firing'), '.2f')} of {r['machine'].get('nproc')}"),
        ("RSS after the burst (VmHWM)", f"{num(mib(b.get('rss_after_bytes')), ',.1f')} MiB "
                                        f"({num(mib(b.get('hwm_bytes')), ',.1f')} MiB)"),
    ]
    libs = ", ".join(f"{k} {v}" for k, v in mf.get("libraries", {}).items())
    facts = [
        ("date (UTC)", mf.get("date")), ("nproc", mf.get("nproc")), ("CPU", mf.get("cpu")),
        ("memory", f"{num(mib(mf.get('memory_bytes')), ',.0f')} MiB"), ("Python", mf.get("python")),
        ("load average at start / end", f"{mf.get('loadavg_at_start')} / {mf.get('loadavg_at_end')}"),
        ("Kafka (orchestrator/localkafka/pom.xml)", mf.get("kafka")), ("libraries", libs), ("git", mf.get("git")),
        ("worker", f"1 process, {r['params']['partitions']} partitions, broker {mf.get('bootstrap')} on the same host"),
        ("command", f"`python -m benchmarks.bench_timers --pending {r['params']['pending']} "
                    f"--burst {r['params']['burst']} --partitions {r['params']['partitions']}`"),
    ]
    out = ["# Timer benchmark", "", "| measure | value |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in rows]
    out += ["", "Lateness = " + b.get("lateness_basis", "-") + "; the `entered` ts is the worker's clock when it "
            "scheduled the wait, so lateness is fire time minus due time.", "",
            "| machine | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in facts]
    if r.get("error"):
        out += ["", f"**The run failed:** {r['error']}"]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_timers", description=__doc__.split("\n\n")[0])
    ap.add_argument("--pending", type=int, default=1_000_000, help="pending (2-day) timers to hold (default 1000000)")
    ap.add_argument("--burst", type=int, default=50_000, help="timers falling due together (default 50000)")
    ap.add_argument("--partitions", type=int, default=8, help="ORCH_PARTITIONS of the worker (default 8)")
    ap.add_argument("--gauge-timeout", type=float, default=150.0,
                    help="seconds to wait for orch_timers_pending to reach N (default 150)")
    ap.add_argument("--json", action="store_true", help="print the JSON result instead of the Markdown")
    ap.add_argument("--keep", action="store_true", help="keep the worker's topics, consumer group and data dir")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    args = ap.parse_args(argv)
    if args.pending < 1 or args.burst < 1:
        ap.error("--pending and --burst must be at least 1")
    if not broker_reachable():
        print(f"no Kafka broker at {BOOTSTRAP}: start one (`make kafka-up`) or set ORCH_BOOTSTRAP", file=sys.stderr)
        return 2

    result: dict[str, Any] = {"benchmark": "timers", "machine": machine_facts(),
                              "params": {"pending": args.pending, "burst": args.burst, "partitions": args.partitions,
                                         "burst_wait_s": BURST_WAIT_MS / 1000}}
    workdir = Path(tempfile.mkdtemp(prefix="bench-timers-"))
    worker = Worker(workdir, journeys=JOURNEYS, policies=POLICIES, partitions=args.partitions)
    rc = 0
    try:
        note(f"starting a worker (prefix {worker.prefix}, log {worker.log_path})")
        worker.start()
        asyncio.run(run(args, worker, result))
    except (BenchError, OSError, asyncio.TimeoutError) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        rc = 1
    except KeyboardInterrupt:
        result["error"] = "interrupted"
        rc = 130
    finally:
        t = time.monotonic()
        code = worker.stop()
        result["stop"] = {"signal": "SIGTERM", "returncode": code, "seconds": round(time.monotonic() - t, 2)}
        if args.keep:
            note(f"kept topics {worker.prefix}.*, data dir {worker.data_dir}, log {worker.log_path}")
        else:
            try:
                deleted = asyncio.run(delete_own_topics(worker.prefix))
                note(f"deleted the benchmark's {len(deleted)} topics ({worker.prefix}.*)")
            except Exception as exc:  # cleanup is best effort; the numbers are what matter
                note(f"could not delete topics of {worker.prefix}: {exc}")
            if rc == 0:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                worker.remove_data()
                note(f"worker log kept: {worker.log_path}")

    result["machine"]["loadavg_at_end"] = loadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    md = markdown(result)
    (args.out / "timers.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    (args.out / "timers.md").write_text(md)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() if args.json else md)
    return rc


if __name__ == "__main__":
    sys.exit(main())
