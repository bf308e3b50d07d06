"""``python -m benchmarks.load soak``: does the engine's cost per event stay flat over time?

One engine worker, started as the load benchmark's engine system starts it, gets the synthetic
shoppers at a fixed rate, the simulated channel adapter's feedback counted in it, for ``--minutes``.
Every ``--interval-s``, one row: the events the worker decided, the rate offered, the worker's CPU
seconds per 1,000 events and its RSS, the sizes of the customer states written in the interval, the
changelog bytes per event, the bytes per event of the worker's other internal topics, the consumer
lag and the load average. At the end, per measure, its growth from the first third of the intervals
after the warm-up to the last third (at least three each): 10 % or less passes. The method: docs/benchmarks.md, "Soak".

The interval accounting (:func:`interval_row`) and the verdict (:func:`verdict`) are pure; the run
(:func:`soak`) measures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from benchmarks.common import MIB, BenchError, Progress, admin, create_topics, delete_prefix, \
    end_offsets, loadavg, machine_facts, make_producer, note, percentile, scrape, total
from benchmarks.load.kafkaio import Adapter, GroupOffsets, OutputSink, changelog_stats, paced, topic_bytes
from benchmarks.load.report import fmt
from benchmarks.load.runner import LIBRARIES
from benchmarks.load.systems import EVENTS_IN, EngineWorkers
from benchmarks.workload import Shoppers
from orchestrator.config import Topics
from orchestrator.observability.metrics import ROCKSDB_MEMORY

WINDOW = 3                    # intervals averaged at each end of the run, at least: a third of those judged
LIMIT = 0.10                  # the growth that still passes
# (key of a row, label): the measures judged; the other internal topics are judged too, by name.
MEASURES = (("cpu_s_per_1k", "CPU s per 1k events"), ("rss_mib", "RSS MiB"),
            ("state_bytes_p50", "state bytes p50"), ("state_bytes_p99", "state bytes p99"),
            ("state_bytes_max", "state bytes max"), ("changelog_bytes_per_event", "changelog bytes per event"))
PROBLEMS = ("orch_dead_letters_total{", "orch_engine_errors_total", "orch_output_errors_total")


# ------------------------------------------------------------------------------------- the plan
class Plan(NamedTuple):
    intervals: int            # in the whole run
    warmup: int               # of them, the warm-up


def plan(*, rate: float, minutes: float, interval_s: float, warmup_minutes: float) -> Plan:
    """The intervals of a run, or :class:`ValueError` (one sentence) for options it cannot honour."""
    if not rate > 0:
        raise ValueError(f"--rate must be above 0 events/s (a soak holds a fixed rate), not {rate:g}")
    if not interval_s > 0:
        raise ValueError(f"--interval-s must be above 0, not {interval_s:g}")
    if not minutes > 0 or not math.isfinite(minutes):
        raise ValueError(f"--minutes must be above 0, not {minutes:g}")
    if not warmup_minutes >= 0 or not math.isfinite(warmup_minutes):
        raise ValueError(f"--warmup-minutes must be 0 or more, not {warmup_minutes:g}")
    counts = []
    for option, value in (("--minutes", minutes), ("--warmup-minutes", warmup_minutes)):
        n = round(value * 60 / interval_s)
        if abs(n * interval_s - value * 60) > 1e-6:
            raise ValueError(f"{option} {value:g} is not a whole number of {interval_s:g}-second intervals "
                             f"(--interval-s)")
        counts.append(n)
    n, warm = counts
    if n - warm < 2 * WINDOW:
        raise ValueError(f"--minutes {minutes:g} with --warmup-minutes {warmup_minutes:g} leaves {max(0, n - warm)} "
                         f"intervals of {interval_s:g} s after the warm-up, and the verdict compares at least the "
                         f"first {WINDOW} of them with the last {WINDOW}: at least {2 * WINDOW} are needed")
    return Plan(n, warm)


# ------------------------------------------------------------------------------------- accounting
@dataclass(frozen=True)
class Mark:
    """The worker's and the generator's cumulative counters at one interval boundary."""

    t: float                  # seconds since the load started
    offered: int              # events handed to the producer, the adapter's feedback included
    consumed: float           # the worker's orch_events_in_total
    cpu_s: float              # the worker's utime + stime (/proc/<pid>/stat)
    rss_bytes: int | None     # the worker's VmRSS
    problems: float           # the worker's dead letters, engine errors and output errors
    lag: int | None           # the events topic's end offsets minus the group's committed offsets
    loadavg: str | None       # the machine's 1/5/15-minute load average
    rocksdb: dict[str, float] | None = None   # the worker's orch_rocksdb_memory_bytes by kind


def interval_row(index: int, a: Mark, b: Mark, *, warmup: bool, changelog: dict[str, Any],
                 others: dict[str, dict[str, int]], latency_ms: list[float] | None = None) -> dict[str, Any]:
    """One interval, from the marks at its start and end: ``changelog`` is :func:`changelog_stats`
    of the changelog records appended in between (with the interval's events), ``others`` the
    records and bytes appended to each other internal topic (by name after the prefix),
    ``latency_ms`` the event-to-action latencies of the actions that arrived meanwhile."""
    events = b.consumed - a.consumed
    dt = b.t - a.t
    per_event = (lambda v: round(v / events, 1)) if events > 0 else (lambda v: None)  # noqa: E731
    lat = sorted(latency_ms or [])
    return {
        "interval": index, "start_s": round(a.t, 1), "end_s": round(b.t, 1), "warmup": warmup,
        "offered": b.offered - a.offered, "offered_per_s": round((b.offered - a.offered) / dt, 1) if dt > 0 else None,
        "events": int(events), "events_per_s": round(events / dt, 1) if dt > 0 else None,
        "cpu_s_per_1k": round((b.cpu_s - a.cpu_s) / events * 1000, 4) if events > 0 else None,
        "rss_mib": round(b.rss_bytes / MIB, 1) if b.rss_bytes else None,
        "rocksdb_mib": {kind: round(v / MIB, 1) for kind, v in sorted((b.rocksdb or {}).items())},
        "states": changelog.get("customers"),
        "state_bytes_p50": changelog.get("state_bytes_p50"), "state_bytes_p99": changelog.get("state_bytes_p99"),
        "state_bytes_max": changelog.get("state_bytes_max"),
        "changelog_records": changelog.get("records"), "changelog_bytes": changelog.get("bytes"),
        "changelog_bytes_per_event": per_event(changelog["bytes"]) if "bytes" in changelog else None,
        "journal_bytes_per_event": changelog.get("journal_bytes_per_event"),
        "other_bytes_per_event": {name: per_event(c["bytes"]) for name, c in sorted(others.items())},
        "problems": int(b.problems - a.problems),
        "lag_at_end": b.lag, "loadavg_at_end": b.loadavg,
        "event_to_action_p50_ms": percentile(lat, 50), "event_to_action_p99_ms": percentile(lat, 99),
    }


def rocksdb_cell(mib: dict[str, float] | None) -> str:
    """The RocksDB part of the RSS: the total, then block cache / memtables / table readers."""
    if not mib:
        return "-"
    parts = " / ".join(fmt(mib.get(kind), 0) for kind in ROCKSDB_MEMORY)
    return f"{fmt(sum(mib.values()), 0)} ({parts})"


def measures(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(key, label) of every measure judged: the fixed ones, then each other internal topic seen."""
    others = sorted({name for r in rows for name in r.get("other_bytes_per_event", {})})
    return [*MEASURES, *((f"other:{name}", f"{name} bytes per event") for name in others)]


def value(row: dict[str, Any], key: str) -> float | None:
    if key.startswith("other:"):
        return row.get("other_bytes_per_event", {}).get(key[len("other:"):])
    return row.get(key)


def growth(first: list[float | None], last: list[float | None], limit: float = LIMIT) -> dict[str, Any]:
    """The mean of ``last`` over the mean of ``first``, minus 1, and whether it is ``limit`` or less.
    Missing values are left out; with none on one side there is no verdict (``passed`` None). From
    a mean of 0, any growth fails (``growth`` None) and none passes."""
    a, b = [v for v in first if v is not None], [v for v in last if v is not None]
    if not a or not b:
        return {"first": None, "last": None, "growth": None, "passed": None}
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    if ma == 0:
        g = 0.0 if mb == 0 else None
    else:
        g = round(mb / ma - 1, 4)         # to 0.01 %: 1.1 over 1.0 is 10 %, not 10.000000000000009 %
    return {"first": round(ma, 4), "last": round(mb, 4), "growth": g, "passed": g is not None and g <= limit}


def window_of(after: int) -> int:
    """Intervals averaged at each end when ``after`` follow the warm-up: a third of them, at least
    :data:`WINDOW`. On a shared 2-core machine the CPU per event of one 60-second interval has a
    standard deviation of about 7 % of the run's mean (7.3 % in the soak at d863d9c), so the growth
    between two means of three intervals has one of about 6 %: a run that does not grow at all
    fails the 10 % limit about one time in twenty. Between two means of a third (8 of 25 intervals
    in a 30-minute soak) it is about 3.7 % (one time in 300), and the verdict still compares the
    run's start with its end."""
    return max(WINDOW, after // 3)


def verdict(rows: list[dict[str, Any]], window: int | None = None, limit: float = LIMIT) -> dict[str, Any]:
    """Per measure, :func:`growth` from the first ``window`` intervals after the warm-up to the last
    ``window`` (default :func:`window_of`); ``passed`` when every measure with a verdict passed."""
    after = [r for r in rows if not r["warmup"]]
    if window is None:
        window = window_of(len(after))
    out: dict[str, Any] = {"window": window, "limit": limit, "intervals_after_warmup": len(after)}
    if len(after) < 2 * window:
        out.update(passed=None, measures=[],
                   reason=f"only {len(after)} intervals after the warm-up; {2 * window} are needed")
        return out
    first, last = after[:window], after[-window:]
    out["first_intervals"] = [r["interval"] for r in first]
    out["last_intervals"] = [r["interval"] for r in last]
    judged = []
    for key, label in measures(after):
        g = growth([value(r, key) for r in first], [value(r, key) for r in last], limit)
        judged.append({"measure": key, "label": label, **g})
    out["measures"] = judged
    decided = [m["passed"] for m in judged if m["passed"] is not None]
    out["passed"] = all(decided) if decided else None
    return out


# ------------------------------------------------------------------------------------- report
def markdown(r: dict[str, Any]) -> str:
    m, p = r.get("machine", {}), r.get("params", {})
    rows = r.get("rows", [])
    others = sorted({name for row in rows for name in row.get("other_bytes_per_event", {})})
    out = ["# Soak", "",
           f"{m.get('date', '')}, {m.get('nproc')} cores ({m.get('cpu') or '?'}), Kafka {m.get('kafka') or '?'} at "
           f"{m.get('bootstrap')}, git {m.get('git') or '?'}; load average {m.get('loadavg_at_start')} at start, "
           f"{m.get('loadavg_at_end')} at the end.", "",
           f"One engine worker, {fmt(p.get('rate'))} events/s offered (the shoppers and the simulated adapter's "
           f"feedback), {fmt(p.get('minutes'), 1)} minutes in intervals of {fmt(p.get('interval_s'))} s, the first "
           f"{fmt(p.get('warmup_minutes'), 1)} minutes warm-up; {fmt(p.get('customers'))} customers, seed "
           f"{p.get('seed')}, {p.get('partitions')} partitions.", "",
           "| # | end s | | events | offered/s | CPU s per 1k events | RSS MiB | of which RocksDB MiB | states written "
           "| state bytes p50 "
           "| p99 | max | changelog bytes per event | " + "".join(f"{n} bytes per event | " for n in others)
           + "lag at end | load 1 min |",
           "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(others) + "---:|---:|"]
    for row in rows:
        ob = row.get("other_bytes_per_event", {})
        load1 = (row.get("loadavg_at_end") or "-").split()[0]
        out.append(f"| {row['interval']} | {fmt(row.get('end_s'))} | {'warm-up' if row.get('warmup') else ''} | "
                   f"{fmt(row.get('events'))} | {fmt(row.get('offered_per_s'))} | {fmt(row.get('cpu_s_per_1k'), 3)} | "
                   f"{fmt(row.get('rss_mib'), 0)} | {rocksdb_cell(row.get('rocksdb_mib'))} | {fmt(row.get('states'))} | {fmt(row.get('state_bytes_p50'))} | "
                   f"{fmt(row.get('state_bytes_p99'))} | {fmt(row.get('state_bytes_max'))} | "
                   f"{fmt(row.get('changelog_bytes_per_event'), 0)} | "
                   + "".join(f"{fmt(ob.get(n), 1)} | " for n in others)
                   + f"{fmt(row.get('lag_at_end'))} | {load1} |")
    out.append("")
    v = r.get("verdict") or {}
    if v.get("measures"):
        f, l = v["first_intervals"], v["last_intervals"]
        out += [f"Growth = mean of intervals {f[0]}-{f[-1]} (the first {len(f)} after the warm-up) to the mean of "
                f"intervals {l[0]}-{l[-1]} (the last {len(l)}): a third of the intervals after the warm-up at each "
                f"end, at least {WINDOW}; {100 * v['limit']:.0f} % or less passes.", "",
                f"| measure | intervals {f[0]}-{f[-1]} | intervals {l[0]}-{l[-1]} | growth | verdict |",
                "|---|---:|---:|---:|---|"]
        for x in v["measures"]:
            digits = 3 if x["measure"] == "cpu_s_per_1k" else 1
            g = ("-" if x["passed"] is None else "from 0" if x["growth"] is None
                 else f"{100 * x['growth']:+.1f} %")
            word = {True: "pass", False: "**grows**", None: "no data"}[x["passed"]]
            out.append(f"| {x['label']} | {fmt(x['first'], digits)} | {fmt(x['last'], digits)} | {g} | {word} |")
        out.append("")
        failed = [x["label"] for x in v["measures"] if x["passed"] is False]
        out += [("**Verdict: grows.** More than " f"{100 * v['limit']:.0f} % growth: " + ", ".join(failed) + "."
                 if failed else f"**Verdict: flat.** No measure grew more than {100 * v['limit']:.0f} %."), ""]
    elif v:
        out += [f"No verdict: {v.get('reason')}.", ""]
    out += facts(r)
    if r.get("errors"):
        out += ["**Errors:** " + "; ".join(r["errors"]), ""]
    out += ["The columns and the method: `docs/benchmarks.md`, \"Soak\". Raw numbers: the JSON.", ""]
    return "\n".join(out)


def facts(r: dict[str, Any]) -> list[str]:
    """Did the generator hold the rate, did the worker keep up, did it fail on anything."""
    rows, rate = r.get("rows", []), (r.get("params") or {}).get("rate")
    if not rows or not rate:
        return []
    offered = [row["offered_per_s"] for row in rows if row.get("offered_per_s") is not None]
    short = [row["interval"] for row in rows if (row.get("offered_per_s") or 0) < 0.95 * rate]
    text = (f"Offered {fmt(min(offered))} to {fmt(max(offered))} events/s per interval (asked {fmt(rate)})"
            + (f"; below 95 % of the rate in intervals {', '.join(map(str, short))}: the generator did not hold "
               f"it there." if short else "."))
    last = rows[-1]
    if last.get("lag_at_end") is not None:
        text += (f" Consumer lag at the end {fmt(last['lag_at_end'])} events ({last['lag_at_end'] / rate:,.1f} s "
                 f"of input at the rate); the largest at an interval's end "
                 f"{fmt(max(row.get('lag_at_end') or 0 for row in rows))}.")
    problems = sum(row.get("problems") or 0 for row in rows)
    text += (f" The worker dead-lettered or failed on {problems:,} records." if problems
             else " No dead letter, engine error or output error.")
    return [text, ""]


def write(result: dict[str, Any], *, json_path: Path | None, results_dir: Path | None) -> list[Path]:
    """The JSON at ``json_path``, and ``soak.json`` + ``soak.md`` in ``results_dir``, when given."""
    written = []
    data = orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n"
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_bytes(data)
        written.append(json_path)
    if results_dir is not None:
        results_dir.mkdir(parents=True, exist_ok=True)
        (results_dir / "soak.json").write_bytes(data)
        (results_dir / "soak.md").write_text(markdown(result))
        written += [results_dir / "soak.json", results_dir / "soak.md"]
    return written


# ------------------------------------------------------------------------------------- the run
class Probe:
    """Reads the marks of a running worker: its /proc and /metrics, its group's committed offsets,
    and the end offsets of the events topic and of every internal topic of the prefix."""

    def __init__(self, system: EngineWorkers, offsets: GroupOffsets) -> None:
        self.system, self.offsets = system, offsets
        self.topics = Topics(system.prefix)

    async def internal_topics(self) -> list[str]:
        """The changelog first, then every other ``<prefix>.internal.*`` topic that exists now."""
        client = admin()
        await client.start()
        try:
            names = await client.list_topics()
        finally:
            await client.close()
        changelog = self.topics.changelog
        return [changelog, *sorted(t for t in names if t.startswith(self.topics.name("internal.")) and t != changelog)]

    async def metrics(self) -> dict[str, float]:
        port = self.system.ports[0]
        for _ in range(3):
            m = await asyncio.to_thread(scrape, port, 5.0)
            if m is not None:
                return m
            self.system.check()
        raise BenchError("the worker did not answer /metrics three times in a row (5 s each)")

    async def mark(self, t0: float, offered: int) -> tuple[Mark, dict[str, dict[Any, int]]]:
        """The counters now, and the end offsets of the internal topics by topic."""
        t = time.monotonic() - t0
        proc = self.system.procs[0]
        cpu, rss = proc.cpu(), proc.mem().get("VmRSS")
        m = await self.metrics()
        consumed = total(m, EVENTS_IN)
        problems = sum(total(m, name) for name in PROBLEMS)
        rocksdb = {kind: m.get(f"orch_rocksdb_memory_bytes{{kind={kind}}}", 0.0) for kind in ROCKSDB_MEMORY}
        internal = await self.internal_topics()
        ends = await end_offsets([self.system.input_topic, *internal])
        committed = await self.offsets.committed()
        by_topic: dict[str, dict[Any, int]] = {name: {} for name in internal}
        events_end = 0
        for tp, off in ends.items():
            if tp.topic == self.system.input_topic:
                events_end += off
            else:
                by_topic[tp.topic][tp] = off
        return Mark(t=t, offered=offered, consumed=consumed, cpu_s=cpu, rss_bytes=rss, problems=problems,
                    lag=int(max(0, events_end - committed)), loadavg=loadavg(), rocksdb=rocksdb), by_topic


async def slice_stats(topics: Topics, events: float, start: dict[str, dict[Any, int]],
                      stop: dict[str, dict[Any, int]]) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
    """The changelog's and every other internal topic's records appended between two marks (a topic
    first seen at ``stop`` is read from its beginning)."""
    changelog = await changelog_stats(topics.changelog, events, start=start.get(topics.changelog),
                                      stop=stop[topics.changelog])
    others = {}
    for name, ends in stop.items():
        if name != topics.changelog:
            others[topics.suffix(name) or name] = await topic_bytes(name, start=start.get(name), stop=ends)
    return changelog, others


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    schedule = plan(rate=args.rate, minutes=args.minutes, interval_s=args.interval_s,
                    warmup_minutes=args.warmup_minutes)
    run_id = uuid.uuid4().hex[:6]
    prefix = f"soak-{run_id}"
    result: dict[str, Any] = {"benchmark": "soak", "run_id": run_id, "prefix": prefix,
                              "machine": machine_facts(LIBRARIES),
                              "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                                         if k != "cmd"},
                              "rows": [], "errors": []}
    workdir = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    system = EngineWorkers(workdir, prefix, args.partitions, workers=1)
    progress = Progress()
    t_begin = time.monotonic()
    producer = sink = adapter = offsets = None
    generator: asyncio.Task[int] | None = None
    reader: asyncio.Task[None] | None = None
    slices: asyncio.Queue[tuple[Any, ...] | None] = asyncio.Queue()
    try:
        await create_topics(system.topics_to_create())
        note(f"soak: one engine worker, prefix {prefix}, {args.rate:,.0f} events/s for {args.minutes:g} min "
             f"({schedule.intervals} intervals of {args.interval_s:g} s, {schedule.warmup} of warm-up)")
        await system.start()
        producer = make_producer(linger_ms=5)
        await producer.start()
        adapter = Adapter(producer, system.input_topic)
        sink = OutputSink(system.output_topics(), on_record=adapter.on_action)
        await sink.start()
        adapter.start()
        offsets = GroupOffsets(system.group, system.input_topic, args.partitions)
        await offsets.open()
        probe = Probe(system, offsets)
        shoppers = Shoppers(seed=args.seed, customers=args.customers, zipf_s=args.zipf_s, zipf_q=args.zipf_q,
                            tag=run_id)
        gc.collect()
        gc.freeze()                   # the shoppers' tables stay: keep the collector off them
        produced = [0]

        def source() -> dict[str, Any]:
            produced[0] += 1
            return shoppers.next()

        def offered() -> int:
            return produced[0] + adapter.sent

        async def read_slices() -> None:
            while (item := await slices.get()) is not None:
                k, a, b, a_ends, b_ends, latency = item
                t_read = time.monotonic()
                try:
                    # In a thread with its own loop: decoding a minute of changelog must not stall
                    # the generator's pacing in this one.
                    changelog, others = await asyncio.to_thread(
                        asyncio.run, slice_stats(probe.topics, b.consumed - a.consumed, a_ends, b_ends))
                except Exception as exc:  # noqa: BLE001 - the interval's other measures stand
                    result["errors"].append(f"interval {k}: reading the internal topics: {type(exc).__name__}: {exc}")
                    changelog, others = {}, {}
                row = interval_row(k, a, b, warmup=k <= schedule.warmup, changelog=changelog, others=others,
                                   latency_ms=latency)
                row["internal_topics_read_s"] = round(time.monotonic() - t_read, 1)
                result["rows"].append(row)
                progress.done()
                note(f"interval {k}/{schedule.intervals}{' (warm-up)' if row['warmup'] else ''}: "
                     f"{row['events']:,} events ({fmt(row['offered_per_s'])}/s offered), "
                     f"{fmt(row['cpu_s_per_1k'], 3)} CPU s per 1k, RSS {fmt(row['rss_mib'], 0)} MiB, state bytes "
                     f"p50/p99/max {fmt(row['state_bytes_p50'])}/{fmt(row['state_bytes_p99'])}/"
                     f"{fmt(row['state_bytes_max'])}, changelog {fmt(row['changelog_bytes_per_event'], 0)} bytes "
                     f"per event, lag {fmt(row['lag_at_end'])}, load {row['loadavg_at_end']}")

        t0 = time.monotonic()
        prev, prev_ends = await probe.mark(t0, offered())
        generator = asyncio.create_task(paced(producer, system.input_topic, source, rate=args.rate,
                                              duration_s=math.inf, extra=lambda: adapter.sent))
        reader = asyncio.create_task(read_slices())
        for k in range(1, schedule.intervals + 1):
            boundary = t0 + k * args.interval_s
            while (left := boundary - time.monotonic()) > 0:
                system.check()
                if generator.done():
                    generator.result()                 # raises what stopped it
                    raise BenchError("the load generator stopped")
                if reader.done():
                    reader.result()
                    raise BenchError("the changelog reader stopped")
                el = time.monotonic() - t0
                progress.show(f"soak: interval {k}/{schedule.intervals}"
                              f"{' (warm-up)' if k <= schedule.warmup else ''} | {el:,.0f}/"
                              f"{schedule.intervals * args.interval_s:,.0f} s | offered {offered():,} "
                              f"({offered() / max(el, 1e-6):,.0f}/s) | feedback {adapter.sent:,} | "
                              f"actions {sink.count:,} | rows {len(result['rows'])}")
                await asyncio.sleep(min(left, 1.0))
            mark, ends = await probe.mark(t0, offered())
            latency = [lat for _, lat in sink.samples]
            sink.samples.clear()              # per interval, and bounded over a long run
            slices.put_nowait((k, prev, mark, prev_ends, ends, latency))
            prev, prev_ends = mark, ends
        progress.done()
        note("soak: load stopped; reading the last intervals' changelog")
    except Exception as exc:  # noqa: BLE001 - the rows measured so far are reported
        result["errors"].append(str(exc).splitlines()[0] if isinstance(exc, BenchError)
                                else f"{type(exc).__name__}: {exc}")
        note(f"soak failed: {exc}")
    finally:
        progress.done()
        if generator is not None:
            generator.cancel()
            try:
                await generator
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - already reported, or cancelled
                pass
        if adapter is not None:
            await adapter.stop()
        if sink is not None:
            await sink.stop()
        if producer is not None:
            await producer.stop()
        if reader is not None:
            slices.put_nowait(None)
            try:
                await reader
            except Exception as exc:  # noqa: BLE001 - the rows read so far are kept
                result["errors"].append(f"reading the changelog: {type(exc).__name__}: {exc}")
        if offsets is not None:
            await offsets.close()
        mems = system.mem()
        result["peak_memory_bytes"] = mems[0].get("VmHWM") if mems else None
        result["exit_codes"] = await system.stop()
        await system.close()
        result["machine"]["loadavg_at_end"] = loadavg()
        result["duration_s"] = round(time.monotonic() - t_begin, 1)
        if args.keep:
            note(f"kept {workdir} (worker log and data) and the topics of {prefix}")
        else:
            try:
                await delete_prefix(prefix)
            except Exception as exc:  # noqa: BLE001 - cleanup is best effort
                note(f"could not delete the topics of {prefix}: {exc}")
            if result["errors"]:
                note(f"worker log kept in {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    result["rows"].sort(key=lambda r: r["interval"])
    result["verdict"] = verdict(result["rows"])
    return result

