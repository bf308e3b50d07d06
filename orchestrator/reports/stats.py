"""Journey statistics: entries, exits, goals, conversion per group, and lift with a 95 % interval.

Treatment customers walk the journey and are contacted; holdout customers walk it
without contact. A journey "works" if treatment converts better than holdout:

- ``lift`` = conversion(treatment) - conversion(holdout), in absolute terms, with a
  normal-approximation (Wald) 95 % interval, cut to the -1 .. +1 a difference of two rates can be
  (with a handful of customers the approximation reaches past it);
- ``relative_lift`` = conversion(treatment) / conversion(holdout) - 1, with a 95 %
  interval from the delta method on the log of the ratio.

Intervals are ``None`` when a group is too small to say anything (no entries, or no
conversions where a ratio needs them).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from statistics import NormalDist
from typing import Any

Z95 = 1.959963984540054
POWER = 0.80                # for "how many more entries": the chance to see a difference that is there


def _rate(goals: int, entries: int) -> float | None:
    return goals / entries if entries else None


def lift_interval(g_t: int, n_t: int, g_h: int, n_h: int) -> dict[str, Any]:
    """Absolute and relative lift of treatment over holdout, each with a 95 % interval."""
    p_t, p_h = _rate(g_t, n_t), _rate(g_h, n_h)
    out: dict[str, Any] = {"lift": None, "lift_ci95": None, "relative_lift": None, "relative_lift_ci95": None}
    if p_t is None or p_h is None:
        return out
    diff = p_t - p_h
    se = math.sqrt(p_t * (1 - p_t) / n_t + p_h * (1 - p_h) / n_h)
    out["lift"] = diff
    out["lift_ci95"] = [max(-1.0, diff - Z95 * se), min(1.0, diff + Z95 * se)]
    if g_t > 0 and g_h > 0:
        ratio = p_t / p_h
        se_log = math.sqrt((1 - p_t) / g_t + (1 - p_h) / g_h)
        out["relative_lift"] = ratio - 1
        out["relative_lift_ci95"] = [math.exp(math.log(ratio) - Z95 * se_log) - 1,
                                     math.exp(math.log(ratio) + Z95 * se_log) - 1]
    return out


def journey_report(row: dict[str, Any]) -> dict[str, Any]:
    """From counts (entries/goals by group, exits by reason) to the full report of one journey version."""
    entries, goals, exits = row["entries"], row["goals"], row["exits"]
    n_t, n_h = entries.get("treatment", 0), entries.get("holdout", 0)
    g_t, g_h = goals.get("treatment", 0), goals.get("holdout", 0)
    total_entries = n_t + n_h
    ended = g_t + g_h + sum(exits.values())
    return {
        "journey": row["journey"], "version": row["version"],
        "active": max(0, total_entries - ended),
        "entries": {"treatment": n_t, "holdout": n_h, "total": total_entries},
        "goals": {"treatment": g_t, "holdout": g_h, "total": g_t + g_h},
        "exits": dict(sorted(exits.items())),
        "conversion": {"treatment": _rate(g_t, n_t), "holdout": _rate(g_h, n_h)},
        **lift_interval(g_t, n_t, g_h, n_h),
    }


def from_decisions(decisions: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Reports per journey version from Decision records (the ``decisions`` topic, in order).

    An ``entered`` decision's detail says the group; goals and exits are attributed to the
    group of the customer's latest entry into that journey.
    """
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    group_of: dict[tuple[str, str], str] = {}
    for d in decisions:
        outcome = d.get("outcome")
        if d.get("shadow"):
            continue            # shadow versions contact nobody: see `journeys diff --shadow`
        if outcome not in ("entered", "goal", "exited", "preempted"):
            continue
        journey, version, customer = d.get("journey"), d.get("journey_version"), d.get("customer_id")
        if not isinstance(journey, str) or not isinstance(version, int):
            continue
        row = rows.setdefault((journey, version), {"journey": journey, "version": version,
                                                   "entries": {"treatment": 0, "holdout": 0},
                                                   "goals": {"treatment": 0, "holdout": 0}, "exits": {}})
        if outcome == "entered":
            group = "holdout" if d.get("detail") == "holdout" else "treatment"
            group_of[(customer, journey)] = group
            row["entries"][group] += 1
        elif outcome == "goal":
            row["goals"][group_of.get((customer, journey), "treatment")] += 1
        else:
            reason = "preempted" if outcome == "preempted" else str(d.get("detail") or "exit")
            row["exits"][reason] = row["exits"].get(reason, 0) + 1
    return [journey_report(r) for _, r in sorted(rows.items())]


def render_table(reports: list[dict[str, Any]]) -> str:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.2f}%"

    def ci(x: list[float] | None) -> str:
        return "-" if x is None else f"[{100 * x[0]:+.2f}, {100 * x[1]:+.2f}]"

    head = ("journey", "ver", "active", "entries", "holdout", "goals", "conv T", "conv H", "lift (pp)", "95% CI")
    rows = [head]
    for r in reports:
        lift = r["lift"]
        rows.append((r["journey"], str(r["version"]), str(r["active"]), str(r["entries"]["total"]),
                     str(r["entries"]["holdout"]), str(r["goals"]["total"]), pct(r["conversion"]["treatment"]),
                     pct(r["conversion"]["holdout"]), "-" if lift is None else f"{100 * lift:+.2f}",
                     ci(r["lift_ci95"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    for r in reports:
        if r["exits"]:
            lines.append(f"{r['journey']} v{r['version']} exits: "
                         + ", ".join(f"{k} {v}" for k, v in r["exits"].items()))
    return "\n".join(lines)


# ---------------------------------------------------------------------------- comparing arms (journeys winner)
def z_two_sided(confidence: float) -> float:
    """The normal quantile of a two-sided interval or test at ``confidence`` (0.95 -> 1.96)."""
    return NormalDist().inv_cdf(1 - (1 - confidence) / 2)


def rate_interval(goals: int, entries: int, z: float) -> list[float] | None:
    """Wilson score interval of a conversion rate (sound for small counts and rates near 0 or 1)."""
    if not entries:
        return None
    p = goals / entries
    denom = 1 + z * z / entries
    centre = (p + z * z / (2 * entries)) / denom
    half = z * math.sqrt(p * (1 - p) / entries + z * z / (4 * entries * entries)) / denom
    return [max(0.0, centre - half), min(1.0, centre + half)]


def two_proportion_test(g1: int, n1: int, g2: int, n2: int) -> float | None:
    """Two-sided p-value of the pooled two-proportion z-test of rate 1 = rate 2 (``None``: no data)."""
    if not n1 or not n2:
        return None
    pooled = (g1 + g2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0                          # no conversions at all, or nothing but: no difference to see
    z = (g1 / n1 - g2 / n2) / se
    return 2 * (1 - NormalDist().cdf(abs(z)))


EXPECTED_MIN = 5            # expected conversions (and non-conversions) per arm the z-test needs


def fewest_expected(g1: int, n1: int, g2: int, n2: int) -> tuple[float, str, int]:
    """(count, ``conversions`` or ``non-conversions``, entries of that arm): the smallest of the
    conversions and non-conversions each arm would expect at the pooled rate of both."""
    pooled = (g1 + g2) / (n1 + n2)
    n = min(n1, n2)
    return (n * pooled, "conversions", n) if pooled <= 0.5 else (n * (1 - pooled), "non-conversions", n)


def normal_approximation_holds(g1: int, n1: int, g2: int, n2: int) -> bool:
    """The textbook condition for the z-test: at least 5 expected conversions and 5 expected
    non-conversions in each arm at the pooled rate."""
    if not n1 or not n2:
        return False
    return fewest_expected(g1, n1, g2, n2)[0] >= EXPECTED_MIN


def entries_for_approximation(g1: int, n1: int, g2: int, n2: int) -> int | None:
    """Entries each arm needs for :func:`normal_approximation_holds` at the pooled rate seen so far
    (``None``: no conversions, or nothing but, to estimate it from)."""
    pooled = (g1 + g2) / (n1 + n2)
    if pooled in (0.0, 1.0):
        return None
    return math.ceil(EXPECTED_MIN / min(pooled, 1 - pooled) - 1e-9)


def fisher_exact(g1: int, n1: int, g2: int, n2: int) -> float | None:
    """Two-sided p-value of Fisher's exact test of rate 1 = rate 2 (``None``: no data).

    Given the total conversions, the conversions of arm 1 follow the hypergeometric distribution;
    the p-value sums the probabilities of every split of them no more likely than the one observed
    (with R's relative tolerance of 1e-7 for ties), so it needs no normal approximation and holds
    for any counts. Log-probabilities from ``lgamma`` keep it fast for large arms."""
    if not n1 or not n2:
        return None
    total, goals = n1 + n2, g1 + g2

    def log_comb(n: int, k: int) -> float:
        return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)

    base = log_comb(total, n1)

    def log_p(k: int) -> float:
        return log_comb(goals, k) + log_comb(total - goals, n1 - k) - base

    observed = log_p(g1) + math.log1p(1e-7)
    p = math.fsum(math.exp(lp) for k in range(max(0, goals - n2), min(goals, n1) + 1)
                  if (lp := log_p(k)) <= observed)
    return min(1.0, p)


def difference_interval(g1: int, n1: int, g2: int, n2: int, z: float) -> list[float] | None:
    """Wald interval of rate 1 - rate 2 (as ``lift_interval``, at any confidence)."""
    if not n1 or not n2:
        return None
    p1, p2 = g1 / n1, g2 / n2
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    return [p1 - p2 - z * se, p1 - p2 + z * se]


def entries_per_arm(p1: float, p2: float, alpha: float, power: float = POWER) -> int | None:
    """Entries each of two arms needs for a two-sided test at ``alpha`` to detect rates ``p1`` vs
    ``p2`` with ``power`` (the usual normal-approximation formula); ``None`` if they are equal."""
    if p1 == p2:
        return None
    za, zb = NormalDist().inv_cdf(1 - alpha / 2), NormalDist().inv_cdf(power)
    mean = (p1 + p2) / 2
    n = (za * math.sqrt(2 * mean * (1 - mean)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2 / (p1 - p2) ** 2
    return math.ceil(n)
