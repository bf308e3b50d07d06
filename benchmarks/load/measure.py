"""What the load benchmark measures and how: samples of a system's consumed count and of the CPU
time of the system, the broker, this process and the whole host; the rate and costs over a window
of the drain; the slope of a group's committed offsets; the worker's own histograms; a py-spy
profile of the worker.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.common import host_cpu_s, proc_cpu_s
from benchmarks.load.systems import System


def bucket_quantiles(before: dict[float, float], after: dict[float, float]) -> dict[str, Any]:
    """p50/p95/p99 upper bounds (seconds) from the growth of a Prometheus histogram."""
    les = sorted(after)
    cum = [(le, after[le] - before.get(le, 0.0)) for le in les]
    n = cum[-1][1] if cum else 0.0
    out: dict[str, Any] = {"count": int(n)}
    for p in (50, 95, 99):
        out[f"p{p}_le_s"] = next((le for le, c in cum if n and c >= p / 100 * n), None)
    return out


class Sampler:
    """Samples (wall time, consumed, system CPU s, broker CPU s, host busy CPU s, host total CPU s,
    this process's CPU s)."""

    def __init__(self, system: System, broker: int | None) -> None:
        self.system, self.broker = system, broker
        self.samples: list[tuple[float, float, float, float, float, float, float]] = []

    async def take(self) -> tuple[float, float, float, float, float, float, float]:
        c = await self.system.count()
        h = host_cpu_s()
        s = (time.time(), c, self.system.cpu(), (proc_cpu_s(self.broker) or 0.0) if self.broker else 0.0,
             h[0], h[1], time.process_time())
        self.samples.append(s)
        return s

    def rate(self, window_s: float = 3.0) -> float:
        if len(self.samples) < 2:
            return 0.0
        t1, c1 = self.samples[-1][:2]
        t0, c0 = self.samples[0][:2]
        for s in self.samples:
            if t1 - s[0] >= window_s:
                t0, c0 = s[:2]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0


def interp(samples: list[tuple[float, ...]], t: float, col: int) -> float:
    """Column ``col`` of the samples, linearly interpolated at wall time ``t`` (clamped)."""
    if t <= samples[0][0]:
        return samples[0][col]
    for a, b in zip(samples, samples[1:]):
        if a[0] <= t <= b[0]:
            if b[0] == a[0]:
                return b[col]
            return a[col] + (b[col] - a[col]) * (t - a[0]) / (b[0] - a[0])
    return samples[-1][col]


def window_between(samples: list[tuple[float, ...]], t_lo: float, t_hi: float, events: float) -> dict[str, Any] | None:
    """Rate and costs of ``events`` consumed between wall times ``t_lo`` and ``t_hi``."""
    dt = t_hi - t_lo
    if dt <= 0 or events <= 0 or len(samples) < 2:
        return None

    def delta(col: int) -> float:
        return interp(samples, t_hi, col) - interp(samples, t_lo, col)

    cpu, broker, busy, tot, own = delta(2), delta(3), delta(4), delta(5), delta(6)
    return {
        "events_per_s": round(events / dt, 1),
        "window_s": round(dt, 2), "window_events": int(events),
        "cpu_s_per_1k": round(cpu / events * 1000, 4),
        "cpu_cores_used": round(cpu / dt, 2),
        "broker_cpu_s_per_1k": round(broker / events * 1000, 4) if broker else None,
        "broker_cpu_cores_used": round(broker / dt, 2) if broker else None,
        "bench_cpu_cores_used": round(own / dt, 2),
        "host_cpu_busy_pct": round(100 * busy / tot, 1) if tot else None,
        # Everything else on the host (other people's jobs): skews the numbers when it is not ~0.
        "other_cpu_cores_used": round(max(0.0, busy - cpu - broker - own) / dt, 2) if tot else None,
    }


def window_stats(samples: list[tuple[float, ...]], lo_count: float, hi_count: float, *,
                 t_min: float = 0.0, min_s: float = 1.0) -> dict[str, Any] | None:
    """Between the first sample at/above ``lo_count`` (and at/after ``t_min``) and the first
    at/above ``hi_count``, if they are at least ``min_s`` apart."""
    lo = next((s for s in samples if s[1] >= lo_count and s[0] >= t_min), None)
    hi = next((s for s in samples if s[1] >= hi_count), None)
    if lo is None or hi is None or hi[0] - lo[0] < min_s or hi[1] <= lo[1]:
        return None
    return window_between(samples, lo[0], hi[0], hi[1] - lo[1])



def commit_window(samples: list[tuple[float, ...]], lo: float, hi: float) -> tuple[tuple[float, float],
                                                                                    tuple[float, float]] | None:
    """Two commits of a group, from samples ``(wall time, committed, ...)``: the first that reached
    ``lo`` and the first that reached ``hi`` (or, when one commit covered both, the commit before
    it). Each commit is dated by the first sample that saw it: a commit lands about once a second,
    so a drain of a few seconds spans few commits (and the time of each is known to one sampling
    interval)."""
    points: list[tuple[float, float]] = []
    for s in samples:
        if not points or s[1] != points[-1][1]:
            points.append((s[0], s[1]))
    a = next((i for i, p in enumerate(points) if p[1] >= lo), None)
    b = next((i for i, p in enumerate(points) if p[1] >= hi), None)
    if a is None or b is None:
        return None
    if a == b:
        a -= 1
        if a < 0 or points[a][1] <= 0:       # no earlier commit: only start-up before it
            return None
    return points[a], points[b]


def committed_slope(samples: list[tuple[float, ...]], lo: float, hi: float) -> dict[str, Any] | None:
    """Events/s between two commits of a group (:func:`commit_window`), and how many commits the
    window spans."""
    w = commit_window(samples, lo, hi)
    if w is None:
        return None
    (ta, ca), (tb, cb) = w
    if tb <= ta:
        return None
    commits = len({s[1] for s in samples if ca <= s[1] <= cb}) - 1
    return {"events_per_s": round((cb - ca) / (tb - ta), 1), "window_s": round(tb - ta, 2),
            "window_events": int(cb - ca), "commits": commits}


class Profiler:
    """``py-spy record`` (non-blocking, 100 Hz) on the first process of a system, summarised:
    the share of samples whose innermost Python frame is in each package (self time), the share
    of samples in which a package appears at all (inclusive), and the top functions by self time."""

    def __init__(self, seconds: float, path: Path) -> None:
        self.seconds = seconds
        self.proc: subprocess.Popen[bytes] | None = None
        self.path = path                 # collapsed stacks, kept with the logs (--keep)
        self.error: str | None = None

    @staticmethod
    def executable() -> str | None:
        here = Path(sys.executable).parent / "py-spy"
        return str(here) if here.exists() else shutil.which("py-spy")

    def start(self, system: System) -> None:
        exe = self.executable()
        if exe is None:
            self.error = "py-spy not installed (pip install py-spy)"
            return
        self.proc = subprocess.Popen([exe, "record", "-p", str(system.procs[0].pid), "-d", str(int(self.seconds)),
                                      "-r", "100", "--nonblocking", "-f", "raw", "-o", str(self.path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def finish(self) -> dict[str, Any]:
        if self.proc is None:
            return {"error": self.error or "not started"}
        try:
            _, err = self.proc.communicate(timeout=self.seconds + 60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        if not self.path.exists():
            return {"error": (err or b"").decode(errors="replace").strip()[-300:] or "no output"}
        summary = summarise_profile(self.path.read_text(errors="replace"))
        summary["seconds"] = self.seconds
        return summary


PROFILE_PACKAGES = (
    ("orchestrator/core/", "orchestrator.core (the engine)"),
    ("orchestrator/runtime/", "orchestrator.runtime (worker glue)"),
    ("orchestrator/observability/", "orchestrator.observability (metrics)"),
    ("prometheus_client/", "prometheus_client"),
    ("faust/", "faust"),
    ("mode/", "mode"),
    ("aiokafka/", "aiokafka"),
    ("rocksdict", "rocksdict"),
    ("msgspec", "msgspec"),
    ("orjson", "orjson"),
    ("asyncio/", "asyncio"),
    ("uvloop", "uvloop"),
    ("aiohttp/", "aiohttp"),
)


def _package(frame: str) -> str:
    for needle, name in PROFILE_PACKAGES:
        if needle in frame:
            return name
    m = re.search(r"\(([^)]*?)(?::\d+)?\)$", frame)
    return f"other ({m.group(1).split('/')[0]})" if m else "other"


def summarise_profile(raw: str) -> dict[str, Any]:
    """Collapsed stacks ("f1 (file:line);f2 (...) count" per line) -> shares by package and function."""
    selfp: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    funcs: Counter[str] = Counter()
    callers: dict[str, Counter[str]] = {}
    n = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        n += c
        leaf = frames[-1]
        selfp[_package(leaf)] += c
        funcs[leaf] += c
        chain = " <- ".join(reversed(frames[-6:-1]))
        callers.setdefault(leaf, Counter())[chain] += c
        for pkg in {_package(f) for f in frames}:
            incl[pkg] += c
    if not n:
        return {"samples": 0}
    pct = lambda c: round(100 * c / n, 1)  # noqa: E731
    return {"samples": n,
            "self_by_package": {k: pct(v) for k, v in selfp.most_common()},
            "inclusive_by_package": {k: pct(v) for k, v in incl.most_common()},
            "top_functions_self": {k: pct(v) for k, v in funcs.most_common(25)},
            "callers_of_top_functions": {f: {k: pct(v) for k, v in callers[f].most_common(4)}
                                         for f, _ in funcs.most_common(3)}}

