"""Compare a shadow journey version's decisions with the live version's (``journeys diff --shadow``)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any


def compare(decisions: Iterable[dict[str, Any]], journey: str) -> dict[str, Any]:
    """Summaries of live and shadow decisions of ``journey`` and how often they agree per customer."""
    sides: dict[str, dict[str, Any]] = {
        side: {"versions": set(), "customers": set(), "outcomes": Counter(), "sends": Counter()}
        for side in ("live", "shadow")}
    sequences: dict[str, dict[str, list[str]]] = {"live": defaultdict(list), "shadow": defaultdict(list)}
    for d in decisions:
        if d.get("journey") != journey:
            continue
        side = "shadow" if d.get("shadow") else "live"
        s = sides[side]
        s["versions"].add(d.get("journey_version"))
        s["outcomes"][d.get("outcome")] += 1
        cid = d.get("customer_id")
        if d.get("outcome") == "entered":
            s["customers"].add(cid)
        if d.get("outcome") == "sent":
            s["sends"][f"{d.get('channel')}:{d.get('detail')}"] += 1
            sequences[side][cid].append(f"{d.get('channel')}:{d.get('detail')}")
    both = sides["live"]["customers"] & sides["shadow"]["customers"]
    same = sum(1 for c in both if sequences["live"].get(c, []) == sequences["shadow"].get(c, []))
    report: dict[str, Any] = {"journey": journey}
    for side, s in sides.items():
        report[side] = {"versions": sorted(v for v in s["versions"] if v is not None),
                        "customers": len(s["customers"]), "outcomes": dict(sorted(s["outcomes"].items())),
                        "sends": dict(sorted(s["sends"].items()))}
    report["customers_in_both"] = len(both)
    report["same_sends"] = same
    report["agreement"] = same / len(both) if both else None
    return report


def render_comparison(r: dict[str, Any]) -> str:
    lines = [f"journey {r['journey']}: live versions {r['live']['versions'] or '-'}, "
             f"shadow versions {r['shadow']['versions'] or '-'}"]
    outcomes = sorted(set(r["live"]["outcomes"]) | set(r["shadow"]["outcomes"]))
    sends = sorted(set(r["live"]["sends"]) | set(r["shadow"]["sends"]))
    lines.append(f"  {'':32} {'live':>10} {'shadow':>10}")
    lines.append(f"  {'customers entered':32} {r['live']['customers']:>10} {r['shadow']['customers']:>10}")
    for o in outcomes:
        lines.append(f"  {'outcome ' + str(o):32} {r['live']['outcomes'].get(o, 0):>10} "
                     f"{r['shadow']['outcomes'].get(o, 0):>10}")
    for k in sends:
        lines.append(f"  {'send ' + k:32} {r['live']['sends'].get(k, 0):>10} {r['shadow']['sends'].get(k, 0):>10}")
    if r["agreement"] is None:
        lines.append("  no customer entered both versions yet")
    else:
        lines.append(f"  same sends for {r['same_sends']} of {r['customers_in_both']} customers in both "
                     f"({100 * r['agreement']:.1f}%)")
    return "\n".join(lines)
