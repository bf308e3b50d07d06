"""The load benchmark's report: ratios between the systems, the Markdown table, the PNG chart and
the JSON, written to ``benchmarks/results/<name>.{json,md,png}``.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import orjson

from benchmarks.common import MIB

SYSTEM_ORDER = ("passthrough", "quix_naive", "quix_journey", "naive_faust", "engine", "engine_eos")
# Ratios the engine is judged by against its Python peer (issue "Performance II"): name -> (target, at least?)
TARGETS = {"engine/quix_naive": (1.5, True), "engine/quix_journey": (1.0, True),
           "engine_cpu_per_1k/quix_journey_cpu_per_1k": (1.0, False),
           "engine_cpu_per_1k/quix_naive_cpu_per_1k": (1.0, False)}
# What exactly-once may cost against at-least-once (issue "Exactly-once"): events/s, p99 at the latency rate.
EOS_TARGETS = {"engine_eos/engine": (0.85, True), "engine_eos_p99/engine_p99": (2.0, False)}
# What a paced load may cost per event against a drain (issue "Performance III"): the engine's CPU per
# event in the latency phase against its own drain's.
PACED_TARGET = ("engine_paced_cpu/engine_cpu", 1.5)


def derive(result: dict[str, Any]) -> None:
    """Ratios between systems: sustained events/s, the same by committed offsets, CPU per 1k."""
    s = result["systems"]

    def tp(name: str, key: str = "events_per_s") -> float | None:
        return (s.get(name) or {}).get("throughput", {}).get(key)

    def committed(name: str) -> float | None:
        return ((s.get(name) or {}).get("throughput", {}).get("committed_offsets") or {}).get("events_per_s")

    eng, passt, naive = tp("engine"), tp("passthrough"), tp("naive_faust")
    core = ((s.get("pure_core") or {}).get("engine") or {}).get("events_per_s")
    ratios: dict[str, Any] = {}
    for other in ("quix_naive", "quix_journey", "naive_faust", "passthrough"):
        ratios.update(engine_against(other, eng, tp(other)))
    for other in ("quix_journey", "quix_naive"):
        ratios.update(engine_against(other, eng_cpu=tp("engine", "cpu_s_per_1k"), their_cpu=tp(other, "cpu_s_per_1k")))
    eos = tp("engine_eos")
    if eng and eos:
        ratios["engine_eos/engine"] = round(eos / eng, 4)
    p99 = {n: ((s.get(n) or {}).get("latency") or {}).get("p99_ms") for n in ("engine", "engine_eos")}
    if p99["engine"] and p99["engine_eos"]:
        ratios["engine_eos_p99/engine_p99"] = round(p99["engine_eos"] / p99["engine"], 4)
    for other in ("quix_naive", "quix_journey"):
        if committed("engine") and committed(other):
            ratios[f"engine/{other} (committed offsets)"] = round(committed("engine") / committed(other), 4)
    if eng and core:
        ratios["engine/pure_core"] = round(eng / core, 4)
    if naive and passt:
        ratios["naive_faust/passthrough"] = round(naive / passt, 5)
    paced = paced_cpu(result)
    if "engine" in paced:
        ratios[PACED_TARGET[0]] = paced["engine"]["ratio"]
        for other in ("quix_naive", "quix_journey"):
            if other in paced:
                ratios[f"engine_paced_cpu/{other}_paced_cpu"] = round(paced["engine"]["paced"] / paced[other]["paced"], 4)
    by_round = round_ratios(result.get("rounds") or [])
    if by_round:
        # Judged by the median over the alternating rounds; round 1 is the main sequence's drain.
        for key, values in by_round.items():
            ratios[key] = round(statistics.median(values), 4)
        result["ratios_by_round"] = by_round
    result["ratios"] = ratios


def engine_against(other: str, eng: float | None = None, theirs: float | None = None, *,
                   eng_cpu: float | None = None, their_cpu: float | None = None) -> dict[str, float]:
    """The engine's events/s and CPU per event against ``other``'s, under the keys the report and the
    targets use (each only where both were measured)."""
    out = {}
    if eng and theirs:
        out[f"engine/{other}"] = round(eng / theirs, 4)
    if eng_cpu and their_cpu:
        out[f"engine_cpu_per_1k/{other}_cpu_per_1k"] = round(eng_cpu / their_cpu, 4)
    return out


def paced_cpu(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each system's CPU per event at the paced load (its latency phase) beside its drain's: the median
    of its drains in the alternating rounds where it drained in more than one, else its one drain.
    Only systems with both, and a latency phase that consumed everything it was offered."""
    s = result.get("systems") or {}
    drains: dict[str, list[float]] = {}
    for row in result.get("rounds") or []:
        for name, d in row.items():
            if isinstance(d, dict) and d.get("cpu_s_per_1k"):
                drains.setdefault(name, []).append(d["cpu_s_per_1k"])
    out = {}
    for name in SYSTEM_ORDER:
        x = s.get(name) or {}
        lat, t = x.get("latency") or {}, x.get("throughput") or {}
        paced = lat.get("cpu_s_per_1k")
        drain = statistics.median(drains[name]) if len(drains.get(name, [])) > 1 else t.get("cpu_s_per_1k")
        if paced and drain and lat.get("all_consumed"):
            out[name] = {"paced": paced, "drain": drain, "ratio": round(paced / drain, 4)}
    return out


def round_ratios(rounds: list[dict[str, Any]]) -> dict[str, list[float]]:
    """The engine against the Quix apps in each round of alternating drains (rounds where both
    drained): events/s and CPU per event."""
    out: dict[str, list[float]] = {}
    for row in rounds:
        eng = row.get("engine") or {}
        for other in ("quix_naive", "quix_journey"):
            o = row.get(other) or {}
            for key, ratio in engine_against(other, eng.get("events_per_s"), o.get("events_per_s"),
                                             eng_cpu=eng.get("cpu_s_per_1k"), their_cpu=o.get("cpu_s_per_1k")).items():
                out.setdefault(key, []).append(ratio)
    return {k: v for k, v in out.items() if len(v) > 1}


def fmt(v: Any, digits: int = 0, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and digits == 0:
        return f"{v:,.0f}{unit}"
    if isinstance(v, (int, float)):
        return f"{v:,.{digits}f}{unit}"
    return str(v)


def committed(c: dict[str, Any] | None) -> str:
    """The committed-offsets rate and the commits it spans (one or two: a coarse figure)."""
    if not c:
        return "-"
    n = c.get("commits") or 0
    return f"{fmt(c.get('events_per_s'))} ({n} commit{'s' if n != 1 else ''})"


def markdown(r: dict[str, Any]) -> str:
    s = r.get("systems", {})
    rate = r.get("latency_rate_per_s")
    m = r.get("machine", {})
    out = ["# Load benchmark", "",
           f"{m.get('date', '')}, {m.get('nproc')} cores ({m.get('cpu') or '?'}), Kafka {m.get('kafka') or '?'} "
           f"at {m.get('bootstrap')}, git {m.get('git') or '?'}; load average {m.get('loadavg_at_start')} at start "
           f"(host CPU {fmt(m.get('host_cpu_busy_pct_before'), 0)}% busy before the run), "
           f"{m.get('loadavg_at_end')} at the end. Whole run: {r.get('duration_s')} s.", ""]
    w = r.get("workload", {})
    if w:
        out += [f"Workload: {w.get('events', 0):,} events ({w.get('mean_event_bytes')} bytes on average) from "
                f"{w.get('distinct_customers', 0):,} customers (Zipf-like popularity: the top 1% send "
                f"{100 * w.get('top_1pct_customers_share', 0):.0f}% of the events, the heaviest one "
                f"{100 * w.get('heaviest_customer_share', 0):.2f}%); {100 * w.get('feedback_share', 0):.1f}% are "
                f"channel feedback; the engine decides {w.get('predicted_actions', 0):,} actions and "
                f"{w.get('predicted_journey_entries', 0):,} journey entries on them. "
                f"{r['params'].get('partitions')} partitions everywhere.", ""]
    out += [f"| system | sustained events/s | by committed offsets | event-to-output p50 / p95 / p99 ms at "
            f"{fmt(rate)}/s | consumed/s in the latency phase | CPU s per 1k events | cores busy | broker CPU s "
            f"per 1k | peak memory MiB | others' cores busy |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in SYSTEM_ORDER:
        x = s.get(name)
        if not x:
            continue
        t = x.get("throughput", {})
        lat = x.get("latency", {})
        latency = (f"{fmt(lat.get('p50_ms'))} / {fmt(lat.get('p95_ms'))} / {fmt(lat.get('p99_ms'))}"
                   if lat.get("latency_samples") else "-")
        err = " (failed: see JSON)" if x.get("error") else ""
        out.append(f"| {x.get('label', name)}{err} | {fmt(t.get('events_per_s'))} | "
                   f"{committed(t.get('committed_offsets'))} | {latency} | "
                   f"{fmt(lat.get('consumed_rate_per_s'))} | "
                   f"{fmt(t.get('cpu_s_per_1k'), 3)} | {fmt(t.get('cpu_cores_used'), 2)} | "
                   f"{fmt(t.get('broker_cpu_s_per_1k'), 3)} | "
                   f"{fmt((x.get('peak_memory_bytes') or 0) / MIB if x.get('peak_memory_bytes') else None, 0)} | "
                   f"{fmt(t.get('other_cpu_cores_used'), 2)} |")
    pc = s.get("pure_core")
    if pc:
        e, wp = pc.get("engine", {}), pc.get("worker_path", {})
        out.append(f"| pure core, engine only (no Kafka), per core | {fmt(e.get('events_per_s'))} | - | - | - | "
                   f"{fmt(e.get('cpu_s_per_1k'), 3)} | 1 | - | - | - |")
        out.append(f"| pure core + the worker's codecs (no Kafka), per core | {fmt(wp.get('events_per_s'))} | - | - | - | "
                   f"{fmt(wp.get('cpu_s_per_1k'), 3)} | 1 | - | - | - |")
    out.append("")
    out += against_quix(r) + rounds_table(r) + paced_table(r) + engine_state(r)
    ratios = r.get("ratios", {})
    if ratios:
        out.append("All ratios (events/s unless named): " + ", ".join(f"{k} = {v:.3g}" for k, v in ratios.items())
                   + ".")
        out.append("")
    if pc:
        e = pc.get("engine", {})
        out += [f"Pure core: {e.get('events', 0):,} events; {100 * (e.get('enrolled_share') or 0):.1f}% of them enrolled a "
                f"customer in a journey ({fmt(e.get('enrolled_us'), 1)} µs each) and the rest cost "
                f"{fmt(e.get('other_us'), 1)} µs each; {fmt(e.get('enrolled_events_per_s'))} enrolling events/s, "
                f"{fmt(e.get('other_events_per_s'))} other events/s per core.", ""]
    eng_lat = (s.get("engine") or {}).get("latency") or {}
    if eng_lat:
        out += [f"Latency phase (engine): {eng_lat.get('events_sent', 0):,} events + {eng_lat.get('feedback_sent', 0):,} "
                f"feedback events from the simulated adapter in {eng_lat.get('warmup_s', 0) + eng_lat.get('measure_s', 0):.0f} s, "
                f"{eng_lat.get('latency_samples', 0):,} actions measured; consumed at "
                f"{fmt(eng_lat.get('consumed_rate_per_s'))}/s with {fmt(eng_lat.get('cpu_s_per_1k'), 3)} CPU s per 1k "
                f"events; lag {fmt(eng_lat.get('lag_at_start_of_measurement'))} events at the start of the measurement, "
                f"{fmt(eng_lat.get('lag_at_end_of_measurement'))} at its end; everything consumed in the end: "
                f"{eng_lat.get('all_consumed')}."]
        wr = eng_lat.get("worker_reported_event_to_action") or {}
        if wr.get("count"):
            out[-1] += (f" The worker's own histogram (event `ts` to the action queued on its producer) puts "
                        f"p50 / p95 / p99 at or below {fmt(wr.get('p50_le_s'), 3)} / {fmt(wr.get('p95_le_s'), 3)} / "
                        f"{fmt(wr.get('p99_le_s'), 3)} s (bucket bounds).")
        stalls = eng_lat.get("bench_loop_delay_ms") or {}
        if stalls:
            out[-1] += (f" The benchmark's own event loop was late by up to {fmt(stalls.get('max'))} ms "
                        f"(p99 {fmt(stalls.get('p99'))} ms): arrivals stamped that late inflate every p99 above.")
        out.append("")
    sc = r.get("scaling")
    if sc:
        out += [f"## Scale-out: engine worker processes on one broker ({sc.get('events', 0):,} events, "
                f"{sc.get('cores')} cores on this machine)", "",
                "| workers | events/s | scaling ratio | efficiency | CPU s per 1k | worker cores busy "
                "| broker cores busy | host CPU busy |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in sc.get("rows", []):
            if row.get("error"):
                out.append(f"| {row['workers']} | failed: {row['error'].splitlines()[0][:80]} | | | | | | |")
                continue
            out.append(f"| {row['workers']} | {fmt(row.get('events_per_s'))} | {fmt(row.get('scaling_ratio'), 2)} | "
                       f"{fmt(row.get('efficiency'), 2)} | {fmt(row.get('cpu_s_per_1k'), 3)} | "
                       f"{fmt(row.get('cpu_cores_used'), 2)} | {fmt(row.get('broker_cpu_cores_used'), 2)} | "
                       f"{fmt(row.get('host_cpu_busy_pct'), 0)}% |")
        out += ["", f"Method: {sc.get('method')}.", ""]
        if (sc.get("cores") or 0) <= 2:
            out += [f"With {sc.get('cores')} cores shared by the workers, the broker and the benchmark itself, "
                    "more than about two busy worker processes cannot run faster; a ratio near 1 for 4 workers "
                    "here says nothing about 4 cores. Rerun on a bigger machine to measure real scale-out.", ""]
    if r.get("errors"):
        out += ["**Errors:** " + "; ".join(r["errors"]), ""]
    out += ["How to read this, and the method: `docs/benchmarks.md`. Raw numbers: `load.json`.", ""]
    return "\n".join(out)


def against_quix(r: dict[str, Any]) -> list[str]:
    """The engine against the Quix Streams apps, with the targets it is judged by."""
    ratios = r.get("ratios", {})
    by_round: dict[str, list[float]] = r.get("ratios_by_round") or {}
    names = {"engine/quix_naive": "engine / naive Quix events/s",
             "engine/quix_journey": "engine / Quix journey app events/s",
             "engine_cpu_per_1k/quix_naive_cpu_per_1k": "engine / naive Quix CPU s per 1k events",
             "engine_cpu_per_1k/quix_journey_cpu_per_1k": "engine / Quix journey app CPU s per 1k events"}
    rows = []
    for key, label in names.items():
        if key not in ratios:
            continue
        target, at_least = TARGETS[key]
        met = ratios[key] >= target if at_least else ratios[key] <= target
        by = ratios.get(f"{key} (committed offsets)")
        each = by_round.get(key)
        rows.append(f"| {label} | {ratios[key]:.2f} | {'≥' if at_least else '≤'} {target:g} | "
                    f"{'met' if met else 'missed'} | {fmt(by, 2)} |"
                    + (f" {' / '.join(f'{v:.2f}' for v in each or [])} |" if by_round else ""))
    head = "| ratio | measured | target | | by committed offsets |"
    rule = "|---|---:|---:|---|---:|"
    if by_round:
        head, rule = "| ratio | measured | target | | by committed offsets (round 1) | each round |", rule + "---|"
    intro = ("Against Quix Streams (same backlog, same run; events/s and CPU per event are the median of "
             f"{len(r.get('rounds', []))} rounds of drains in alternation, round 1 the table's above):"
             if by_round else "Against Quix Streams (same backlog, same run):")
    out = [intro, "", head, rule, *rows, ""] if rows else []
    eos_names = {"engine_eos/engine": "exactly-once / at-least-once events/s (drain)",
                 "engine_eos_p99/engine_p99": "exactly-once / at-least-once event-to-output p99"}
    eos_rows = []
    for key, label in eos_names.items():
        if key in ratios:
            target, at_least = EOS_TARGETS[key]
            met = ratios[key] >= target if at_least else ratios[key] <= target
            eos_rows.append(f"| {label} | {ratios[key]:.2f} | {'≥' if at_least else '≤'} {target:g} | "
                            f"{'met' if met else 'missed'} |")
    if eos_rows:
        out += ["What exactly-once costs (same backlog, same run):", "", "| ratio | measured | target | |",
                "|---|---:|---:|---|", *eos_rows, ""]
    return out


def rounds_table(r: dict[str, Any]) -> list[str]:
    """Each round of the drains in alternation: events/s and CPU s per 1k events per system."""
    rounds = r.get("rounds") or []
    if len(rounds) < 2:
        return []
    names = [n for n in SYSTEM_ORDER if any(n in row for row in rounds)]
    out = ["Drains in alternation (round 1 is the sequence above; then each system again, one after the "
           "other, fresh topics and state each time): events/s, CPU s per 1k events.", "",
           "| round | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for k, row in enumerate(rounds, 1):
        cells = []
        for n in names:
            d = row.get(n) or {}
            cells.append("failed" if "error" in d else f"{fmt(d.get('events_per_s'))}, {fmt(d.get('cpu_s_per_1k'), 3)}")
        out.append(f"| {k} | " + " | ".join(cells) + " |")
    return out + [""]


def paced_table(r: dict[str, Any]) -> list[str]:
    """CPU per event at the paced load against each system's own drain: what small batches cost."""
    paced = paced_cpu(r)
    if "engine" not in paced:
        return []
    medians = " (the median of its drains in alternation where it had several)" if r.get("rounds") else ""
    out = [f"CPU per event at the paced load (the latency phases, {fmt(r.get('latency_rate_per_s'))} events/s offered) "
           f"against each system's drain{medians}: what small batches, on a machine shared with the load generator "
           "and the broker, cost each system per event. Systems whose latency phase did not consume everything "
           "offered are left out.", "",
           "| system | paced CPU s per 1k events | drain CPU s per 1k events | paced / drain |", "|---|---:|---:|---:|"]
    for name, v in paced.items():
        label = ((r.get("systems") or {}).get(name) or {}).get("label", name)
        out.append(f"| {label} | {v['paced']:.3f} | {v['drain']:.3f} | {v['ratio']:.2f} |")
    target = PACED_TARGET[1]
    ratio = paced["engine"]["ratio"]
    line = (f"Engine paced / its drain: {ratio:.2f} (target ≤ {target:g}: {'met' if ratio <= target else 'missed'})")
    peers = [f"{label} {r['ratios'][f'engine_paced_cpu/{q}_paced_cpu']:.2f}"
             for q, label in (("quix_naive", "naive Quix"), ("quix_journey", "Quix journey app"))
             if f"engine_paced_cpu/{q}_paced_cpu" in (r.get("ratios") or {})]
    if peers:
        line += "; the engine's paced CPU per event against the Quix apps' paced: " + ", ".join(peers)
    return out + ["", line + ".", ""]


def engine_state(r: dict[str, Any]) -> list[str]:
    """What the engine's state costs, and how many events took the re-keying hop."""
    e = (r.get("systems") or {}).get("engine") or {}
    out = []
    st = e.get("state")
    if st and st.get("customers"):
        out.append(f"Engine state, read from `{st.get('topic')}` after the run: {st['customers']:,} customers, "
                   f"state bytes p50 / p99 / max {fmt(st.get('state_bytes_p50'))} / "
                   f"{fmt(st.get('state_bytes_p99'))} / {fmt(st.get('state_bytes_max'))} "
                   f"(without the 8-byte due prefix); the changelog carried {st.get('records', 0):,} records, "
                   f"{fmt(st.get('changelog_bytes_per_event'), 0)} bytes and "
                   f"{fmt(st.get('changelog_records_per_event'), 2)} records per event decided "
                   f"({st.get('events', 0):,} events), of which journals (the outputs kept for a replay until "
                   f"their offsets are committed) {fmt(st.get('journal_bytes_per_event'), 0)} bytes per event in "
                   f"{st.get('journal_records', 0):,} records.")
    elif e.get("state_error"):
        out.append(f"Engine state: not read ({e['state_error']}).")
    rk = (e.get("throughput") or {}).get("rekeying")
    if rk:
        n = (e.get("throughput") or {}).get("backlog") or 0
        share = f" ({100 * rk['rekeyed_events'] / n:.1f}%)" if n else ""
        producer = (e.get("throughput") or {}).get("producer")
        how = ("confluent-kafka's default partitioner (CRC32)" if producer == "confluent-default"
               else "murmur2, like the Java client")
        setting = (e.get("throughput") or {}).get("engine_partitioner") or "murmur2"
        out.append(f"The backlog was produced with {how}, the engine ran with ORCH_PRODUCER_PARTITIONER={setting}: "
                   f"{rk['rekeyed_events']:,} of {n:,} events{share} took "
                   f"the re-keying hop through the internal topic (a second produce and consume each).")
    return out + [""] if out else []


def chart(r: dict[str, Any], path: Path) -> str | None:
    """A PNG with throughput, latency and scale-out. Returns why not, if it could not be drawn."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib)"
    s = r.get("systems", {})
    names, tps = [], []
    labels = {"passthrough": "aiokafka\npassthrough", "quix_naive": "naive Quix\nget+set",
              "quix_journey": "Quix\n1 journey", "naive_faust": "naive Faust\nget+set", "engine": "engine\n(worker)",
              "engine_eos": "engine\nexactly-once"}
    for n in SYSTEM_ORDER:
        v = (s.get(n) or {}).get("throughput", {}).get("events_per_s")
        if v:
            names.append(labels[n])
            tps.append(v)
    pc = s.get("pure_core") or {}
    for key, label in (("engine", "pure core\n(1 core)"), ("worker_path", "core+codecs\n(1 core)")):
        v = (pc.get(key) or {}).get("events_per_s")
        if v:
            names.append(label)
            tps.append(v)
    sc = (r.get("scaling") or {}).get("rows", [])
    panels = 2 + (1 if sc else 0)
    fig, axes = plt.subplots(1, panels, figsize=(6.0 * panels, 4.8))
    ax = axes[0]
    colors = ["#4c72b0", "#dd8452", "#da8bc3", "#55a868", "#c44e52", "#8172b2", "#b8a2d8"][: len(names)]
    bars = ax.bar(names, tps, color=colors)
    ax.set_yscale("log")
    ax.set_ylabel("events/s (log scale)")
    ax.set_title("Sustained throughput")
    for b, v in zip(bars, tps):
        ax.annotate(f"{v:,.0f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax = axes[1]
    rate = r.get("latency_rate_per_s")
    lnames, series = [], {"p50": [], "p95": [], "p99": []}
    for n in SYSTEM_ORDER:
        lat = (s.get(n) or {}).get("latency") or {}
        if lat.get("latency_samples"):
            lnames.append(labels[n])
            for p in series:
                series[p].append(max(1, lat.get(f"{p}_ms") or 1))
    width = 0.26
    for i, (p, vals) in enumerate(series.items()):
        xs = [j + (i - 1) * width for j in range(len(lnames))]
        ax.bar(xs, vals, width, label=p)
        for x, v in zip(xs, vals):
            ax.annotate(f"{v:,.0f}", (x, max(v, 1)), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(lnames)))
    ax.set_xticklabels(lnames, fontsize=8)
    values = [v for vals in series.values() for v in vals]
    if values and max(values) / max(1, min(values)) > 30:
        ax.set_yscale("log")
        ax.set_ylabel("ms (log scale)")
    else:
        ax.set_ylabel("ms")
    ax.set_title(f"Event-to-output latency at {rate:,.0f} events/s" if rate else "Event-to-output latency")
    if lnames:
        ax.legend(fontsize=8)
    if sc:
        ax = axes[2]
        ks = [row["workers"] for row in sc if row.get("events_per_s")]
        vs = [row["events_per_s"] for row in sc if row.get("events_per_s")]
        if ks:
            ax.plot(ks, vs, "o-", label="measured")
            one = next((row["events_per_s"] for row in sc if row["workers"] == 1 and row.get("events_per_s")), None)
            if one:
                ax.plot(ks, [one * k for k in ks], "--", color="grey", label="linear")
            cores = (r.get("scaling") or {}).get("cores")
            if cores:
                ax.axvline(cores, color="#c44e52", linestyle=":", label=f"{cores} cores")
            for k, v in zip(ks, vs):
                ax.annotate(f"{v:,.0f}", (k, v), ha="left", va="bottom", fontsize=8)
        ax.set_xticks([row["workers"] for row in sc])
        ax.set_xlabel("worker processes")
        ax.set_ylabel("events/s")
        ax.set_title("Engine scale-out, one broker")
        if ks:
            ax.legend(fontsize=8)
    m = r.get("machine", {})
    fig.suptitle(f"orchestrator load benchmark - {m.get('nproc')} cores, {m.get('date', '')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def write_results(result: dict[str, Any], out: Path, name: str = "load") -> None:
    out.mkdir(parents=True, exist_ok=True)
    why = chart(result, out / f"{name}.png")
    if why:
        result["chart"] = f"not drawn: {why}"
    (out / f"{name}.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    (out / f"{name}.md").write_text(markdown(result))
