"""The timer benchmark's report: ``timers.md``."""

from __future__ import annotations

import math
from typing import Any

from benchmarks.timers.phases import mib

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
        ("command", f"`python -m benchmarks.timers --pending {r['params']['pending']} "
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
