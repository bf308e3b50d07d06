"""``orchestrator journeys winner JOURNEY``: the arms of an A/B split compared, and the next version
of the definition without the split when one arm wins (README, "Which arm wins, and what a changed
journey would have done").

**Who is in which arm.** A split is a deterministic function of (journey, customer, node)
(:meth:`~orchestrator.core.journeys.SplitNode.arm_of`), so every treatment entry of the journey
version has its arm, whether or not it reached the split yet: an intention-to-treat comparison.
Customers who convert or leave before the split are spread over the arms by the same hash, so they
dilute a difference but never bias it; a split as the journey's ``start`` gives the sharpest test.
Held-out customers (the journey's or the global holdout) are never contacted: they are shown as
the baseline, not tested. Decisions of shadow versions are left out.

**The metric.** ``goal``: an entry converts when a ``goal`` decision ends it (a goal counts for the
customer's latest entry, as in ``orchestrator stats``).

**The test.** The leading arm (highest rate) against every other arm, two-sided, at ``1 -
confidence``, divided among the comparisons when there are more than two arms (Bonferroni), so
"beats every other" holds at the confidence asked for. Each comparison is a pooled two-proportion
z-test where its normal approximation holds (at least 5 expected conversions and 5 expected
non-conversions per arm at the pooled rate), else Fisher's exact test, which needs no
approximation (:func:`orchestrator.reports.stats.fisher_exact`); the report names the test and, for
Fisher's, the arm short of expected conversions (or non-conversions). A winner needs every
comparison significant. Otherwise the report says which arm leads and about how many more entries
it takes to tell it from the closest arm with 80 % power, if the rates stay as observed (and, where
the z-test does not apply yet, at least the entries that make it apply).

**Peeking.** Every report says it: running the command again and again and stopping at the first
winner makes a false win likelier than ``1 - confidence``; the entries per arm are to be decided
before the experiment starts, and the arms judged once they are in.

**The next version.** The definition's own text with as little changed as possible, so its diff
is the decision: ``version`` plus one, every reference to the split (``start``, ``next``,
``on_event``, ``on_timeout``) pointed at the winning arm's node, and the split node's lines
removed. Nodes only the other arms led to stay (``journeys validate`` warns that they are
unreachable). The result is parsed again before it is printed; a layout the text edit cannot
handle (the nodes written as one flow mapping) falls back to the definition written out anew,
which loses its comments, and the report says so.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import yaml

from orchestrator.config import Settings, journeys_dir
from orchestrator.core import yamlsrc
from orchestrator.core.journeyfiles import parse_journey
from orchestrator.core.journeys import Journey, SplitNode, reachable
from orchestrator.errors import ConfigError, DefinitionError
from orchestrator.reports import stats

METRICS = ("goal",)
PEEKING = ("running this again and again until a winner appears (peeking) makes a false win likelier than "
           "the confidence says: decide the entries per arm before the experiment starts (the 80% power "
           "estimate), and judge once they are in")
REFERENCE_KEYS = ("next", "on_event", "on_timeout")


def find_split(j: Journey, name: str | None) -> SplitNode:
    """The split to judge: the one named, else the journey's only split that a path reaches."""
    splits = {n: node for n, node in j.nodes.items() if isinstance(node, SplitNode)}
    if name is not None:
        if name not in splits:
            raise ConfigError(f"{j.id} v{j.version} has no split node {name!r} (splits: "
                              f"{', '.join(splits) or 'none'}); give one of them with --split")
        return splits[name]
    reached = reachable(j.nodes, j.start)
    live = [node for n, node in splits.items() if n in reached]
    if len(live) == 1:
        return live[0]
    if not live:
        raise ConfigError(f"{j.id} v{j.version} has no split that customers reach: nothing to compare")
    raise ConfigError(f"{j.id} v{j.version} has {len(live)} splits ({', '.join(n.name for n in live)}); "
                      "choose one with --split NODE")


def compare_arms(j: Journey, split: SplitNode, decisions: Iterable[dict[str, Any]], *,
                 confidence: float = 0.95, metric: str = "goal") -> dict[str, Any]:
    """The report of the module docstring, as JSON-able data (``decisions`` in per-customer order)."""
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}: the metric is one of {', '.join(METRICS)}")
    k = len(split.arms)
    entries, goals = [0] * k, [0] * k
    held = {"entries": 0, "goals": 0}
    latest: dict[str, int | None] = {}            # customer -> arm of their latest entry (None: holdout)
    for d in decisions:
        if d.get("journey") != j.id or d.get("journey_version") != j.version or d.get("shadow"):
            continue
        outcome, cid = d.get("outcome"), d.get("customer_id")
        if not isinstance(cid, str):
            continue
        if outcome == "entered":
            if d.get("detail") == "holdout":
                latest[cid] = None
                held["entries"] += 1
            else:
                arm = latest[cid] = split.arm_of(j.id, cid)
                entries[arm] += 1
        elif outcome == "goal" and cid in latest:
            arm = latest.pop(cid)
            if arm is None:
                held["goals"] += 1
            else:
                goals[arm] += 1
    z = stats.z_two_sided(confidence)
    total_weight = sum(w for w, _ in split.arms)

    def rate(g: int, n: int) -> float | None:
        return g / n if n else None

    arms = [{"arm": i, "next": nxt, "share": w / total_weight, "entries": entries[i], "goals": goals[i],
             "rate": rate(goals[i], entries[i]), "ci": stats.rate_interval(goals[i], entries[i], z)}
            for i, (w, nxt) in enumerate(split.arms)]
    report: dict[str, Any] = {
        "journey": j.id, "version": j.version, "split": split.name, "metric": metric, "confidence": confidence,
        "arms": arms,
        "holdout": {**held, "rate": rate(held["goals"], held["entries"]),
                    "ci": stats.rate_interval(held["goals"], held["entries"], z)},
        "alpha": (1 - confidence) / max(1, k - 1), "leader": None, "comparisons": [], "winner": None,
        "more_entries": None, "peeking": PEEKING,
    }
    measured = [a for a in arms if a["entries"]]
    if len(measured) < k or k < 2:
        report["verdict"] = (f"not every arm has entries yet ({', '.join(str(a['entries']) for a in arms)}): "
                             "nothing to compare")
        return report
    leader = max(arms, key=lambda a: (a["rate"], -a["arm"]))
    report["leader"] = leader["arm"]
    alpha = report["alpha"]
    lz = stats.z_two_sided(1 - alpha)
    behind, few = [], []
    for a in arms:
        if a is leader:
            continue
        args = (leader["goals"], leader["entries"], a["goals"], a["entries"])
        holds = stats.normal_approximation_holds(*args)
        p = stats.two_proportion_test(*args) if holds else stats.fisher_exact(*args)
        ok = p is not None and p < alpha and leader["rate"] > a["rate"]
        comparison = {"arm": a["arm"], "difference": leader["rate"] - a["rate"],
                      "ci": stats.difference_interval(*args, lz), "p_value": p, "significant": ok,
                      "approximation_holds": holds, "test": "z" if holds else "fisher_exact"}
        if not holds:
            expected, of, n = stats.fewest_expected(*args)
            smaller = [b["arm"] for b in (leader, a) if b["entries"] == n]       # both when they are equal
            comparison["fewest_expected"] = {"arm": smaller[0] if len(smaller) == 1 else None,
                                             "entries": n, "of": of, "rate": expected / n, "expected": expected}
        report["comparisons"].append(comparison)
        if not ok:
            behind.append(a)
            if not holds:
                few.append((a, comparison))
    name = f"arm {leader['arm']} ({leader['next']})"
    if not behind:
        report["winner"] = leader["arm"]
        exact = [c for c in report["comparisons"] if c["test"] == "fisher_exact"]
        report["verdict"] = (f"{name} beats every other arm at {_share(confidence)} confidence"
                             + (f" (by Fisher's exact test where {_too_few(exact[0])})" if exact else ""))
        return report
    if all(a["rate"] == leader["rate"] for a in arms):
        report["verdict"] = (f"no arm leads: all convert at {_pct(leader['rate'])}; keep collecting entries "
                             "(how many cannot be told without a difference)")
        return report
    need = [stats.entries_per_arm(leader["rate"], a["rate"], alpha) for a in behind]
    closest = max(behind, key=lambda a: a["rate"])
    if any(n is None for n in need):
        report["verdict"] = (f"{name} leads, but arm {closest['arm']} ({closest['next']}) converts as well; "
                             "keep collecting entries")
        return report
    # Where the z-test does not apply yet, the arms need the entries that make it apply, too.
    need += [stats.entries_for_approximation(leader["goals"], leader["entries"], a["goals"], a["entries"])
             for a, _ in few]
    per_arm = max(n for n in need if n is not None)
    involved = [leader, *behind]
    more = {str(a["arm"]): max(0, per_arm - a["entries"]) for a in involved}   # (JSON keys are text)
    total = max(m / a["share"] for a, m in zip(involved, more.values()))
    report["more_entries"] = {"per_arm": per_arm, "by_arm": more, "journey_total": int(round(total))}
    more_text = (f"about {max(more.values()):,} more entries per arm (about {int(round(total)):,} more "
                 f"treatment entries into the journey)")
    if few:
        a, c = few[0]
        report["verdict"] = (f"{name} leads, not significantly at {_share(confidence)} by Fisher's exact test "
                             f"(p = {c['p_value']:.4f} against arm {a['arm']} ({a['next']})): {_too_few(c)}; "
                             f"{more_text} for the z-test to apply and tell it from arm {closest['arm']} "
                             f"({closest['next']}) with 80% power, if the rates stay as they are")
    elif total < 1:
        report["verdict"] = (f"{name} leads, not significantly at {_share(confidence)} although the arms have about "
                             f"the {per_arm:,} entries each that 80% power asks for at the rates seen: the "
                             "difference may be smaller than it looks; keep collecting entries")
    else:
        report["verdict"] = (f"{name} leads, not yet significantly at {_share(confidence)}: {more_text} to tell "
                             f"it from arm {closest['arm']} ({closest['next']}) with 80% power, if the rates stay "
                             "as they are")
    return report


def _too_few(c: dict[str, Any]) -> str:
    """Why a comparison used Fisher's exact test: the arm short of expected conversions (or non-conversions)."""
    f = c["fewest_expected"]
    rate = "pooled rate" if f["of"] == "conversions" else "pooled non-conversion rate"
    which = "each arm" if f["arm"] is None else f"arm {f['arm']}"
    return (f"too few {f['of']} are expected for the z-test ({which}: {f['entries']:,} entries × "
            f"{_pct(f['rate'])} {rate} = {f['expected']:.1f}, fewer than {stats.EXPECTED_MIN})")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _share(x: float) -> str:
    """``0.95`` -> ``95%``, ``0.999`` -> ``99.9%``, ``1/3`` -> ``33.3%``."""
    return f"{round(100 * x, 1):g}%"


def render_report(r: dict[str, Any]) -> str:
    """The report as a table and a verdict line (what the command prints)."""
    conf = _share(r["confidence"])
    lines = [f"journey {r['journey']} v{r['version']}, split {r['split']}, metric {r['metric']}, "
             f"{conf} confidence (two-sided)"]

    def ci(x: list[float] | None) -> str:
        return "-" if x is None else f"[{100 * x[0]:.2f}%, {100 * x[1]:.2f}%]"

    head = ("arm", "next", "share", "entries", "goals", "rate", f"{conf} CI")
    rows = [head]
    for a in r["arms"]:
        rows.append((str(a["arm"]), a["next"], _share(a["share"]), f"{a['entries']:,}", f"{a['goals']:,}",
                     _pct(a["rate"]), ci(a["ci"])))
    h = r["holdout"]
    if h["entries"]:
        rows.append(("holdout", "(not contacted)", "-", f"{h['entries']:,}", f"{h['goals']:,}", _pct(h["rate"]),
                     ci(h["ci"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    for c in r["comparisons"]:
        p = "-" if c["p_value"] is None else f"{c['p_value']:.4f}"
        lo, hi = c["ci"]
        test = "the z-test" if c["approximation_holds"] else f"Fisher's exact test, as {_too_few(c)}"
        lines.append(f"arm {r['leader']} vs arm {c['arm']}: {100 * c['difference']:+.2f} pp "
                     f"(CI {100 * lo:+.2f} to {100 * hi:+.2f}), p = {p}, alpha {r['alpha']:.4g}: "
                     f"{'significant' if c['significant'] else 'not significant'} by {test}")
    lines.append(("winner: " if r["winner"] is not None else "no winner: ") + r["verdict"])
    lines.append(f"note: {PEEKING}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- the next version
def next_version(text: str, filename: str, j: Journey, split: str, target: str, *,
                 channels: tuple[str, ...]) -> tuple[str, bool]:
    """(the next version's text, whether the original text was kept apart from the edits)."""
    try:
        edited = _edit_text(text, filename, split, target, j.version)
        _check(edited, filename, j, split, channels)
        return edited, True
    except (DefinitionError, _Layout):
        pass
    rewritten = _rewrite_data(text, filename, split, target, j.version)
    try:
        _check(rewritten, filename, j, split, channels)
    except (DefinitionError, _Layout) as exc:
        raise ConfigError(f"could not write the next version of {filename} ({exc}); replace the split "
                          f"{split!r} by {target!r} and bump version: by hand") from None
    return rewritten, False


class _Layout(Exception):
    """The text is laid out in a way the line edit does not handle."""


def _value(node: yaml.Node, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return k, v
    return None


def _edit_text(text: str, filename: str, split: str, target: str, version: int) -> str:
    root = yamlsrc.compose(text, filename)
    if not isinstance(root, yaml.MappingNode):
        raise _Layout()
    edits: list[tuple[int, int, str]] = []                  # (start, end, replacement) in the text

    found = _value(root, "version")
    if found is not None:
        edits.append((found[1].start_mark.index, found[1].end_mark.index, str(version + 1)))
    else:
        jid = _value(root, "journey")
        if jid is None or jid[0].start_mark.column != 0 or jid[1].end_mark.line != jid[0].start_mark.line:
            raise _Layout()
        end = text.find("\n", jid[1].end_mark.index)
        end = len(text) if end < 0 else end
        edits.append((end, end, f"\nversion: {version + 1}"))

    def refer(node: yaml.Node) -> None:
        """Point every reference to the split inside ``node`` at the target."""
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value in REFERENCE_KEYS and \
                        isinstance(v, yaml.ScalarNode) and v.value == split:
                    edits.append((v.start_mark.index, v.end_mark.index, target))
                else:
                    refer(v)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                refer(item)

    start = _value(root, "start")
    if start is not None and isinstance(start[1], yaml.ScalarNode) and start[1].value == split:
        edits.append((start[1].start_mark.index, start[1].end_mark.index, target))
    nodes = _value(root, "nodes")
    if nodes is None or not isinstance(nodes[1], yaml.MappingNode) or nodes[1].flow_style:
        raise _Layout()
    for k, v in nodes[1].value:
        if isinstance(k, yaml.ScalarNode) and k.value == split:
            edits.append(_line_span(text, k.start_mark.index, v.end_mark.index))
        else:
            refer(v)
    out = text
    for begin, end, new in sorted(edits, reverse=True):
        out = out[:begin] + new + out[end:]
    return out


def _line_span(text: str, begin: int, end: int) -> tuple[int, int, str]:
    """The whole lines from ``begin`` to ``end`` (an entry of a block mapping), for removal."""
    line_start = text.rfind("\n", 0, begin) + 1
    if text[line_start:begin].strip():
        raise _Layout()                                     # something else before the key on its line
    before_end = text.rfind("\n", 0, end) + 1
    if not text[before_end:end].strip():
        end = before_end                                    # a block value ends where the next line starts
    else:
        nl = text.find("\n", end)
        rest = text[end:nl if nl >= 0 else len(text)]
        if rest.strip() and not rest.strip().startswith("#"):
            raise _Layout()                                 # something else after the value on its line
        end = len(text) if nl < 0 else nl + 1
    return line_start, end, ""


def _rewrite_data(text: str, filename: str, split: str, target: str, version: int) -> str:
    data = yamlsrc.load(text, filename).data

    def refer(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: (target if k in REFERENCE_KEYS and v == split else refer(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [refer(v) for v in value]
        return value

    out = {k: v for k, v in data.items()}
    out["version"] = version + 1
    if out.get("start") == split:
        out["start"] = target
    out["nodes"] = {name: refer(node) for name, node in data["nodes"].items() if name != split}
    return yaml.safe_dump(out, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100)


def _check(text: str, filename: str, j: Journey, split: str, channels: tuple[str, ...]) -> None:
    """The next version must parse, carry the next version number, and have no trace of the split."""
    nj = parse_journey(text, filename, channels=channels)
    if nj.version != j.version + 1 or nj.id != j.id or split in nj.nodes or \
            set(nj.nodes) != set(j.nodes) - {split}:
        raise _Layout()


def winner(j: Journey, text: str, decisions: Iterable[dict[str, Any]], *, split: str | None = None,
           confidence: float = 0.95, metric: str = "goal",
           channels: tuple[str, ...]) -> tuple[dict[str, Any], str | None]:
    """The report and, when an arm wins, the next version's text (``text`` is the definition's file)."""
    node = find_split(j, split)
    report = compare_arms(j, node, decisions, confidence=confidence, metric=metric)
    if report["winner"] is None:
        return report, None
    target = node.arms[report["winner"]][1]
    new_text, kept = next_version(text, j.source, j, node.name, target, channels=channels)
    report["next_version"] = {"version": j.version + 1, "replaces": node.name, "by": target,
                              "comments_kept": kept}
    return report, new_text


def _confidence(value: float) -> float:
    if not 50 <= value < 100:
        raise ConfigError(f"--confidence {value:g} is not a percentage between 50 and 100: give one like 95")
    return value / 100


def run(args: argparse.Namespace) -> int:
    """``orchestrator journeys winner``."""
    from orchestrator.admin.journeys import journey_arg, policies_for
    from orchestrator.admin.stats import read_decisions
    confidence = _confidence(args.confidence)
    policies = policies_for(args)
    j = journey_arg(args.journey, args.journeys or journeys_dir(), policies.channels)
    text = Path(j.source).read_text(encoding="utf-8")
    decisions = asyncio.run(read_decisions(Settings.from_env()))
    report, new_text = winner(j, text, decisions, split=args.split, confidence=confidence, metric=args.metric,
                              channels=policies.channels)
    if args.output and new_text is not None:
        Path(args.output).write_text(new_text, encoding="utf-8")
    if args.json:
        print(orjson.dumps({**report, "next_version_text": new_text}, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(render_report(report))
    if new_text is not None:
        nv = report["next_version"]
        where = f"written to {args.output}" if args.output else "below; -o FILE writes it to a file"
        note = "" if nv["comments_kept"] else " (written out anew: the file's comments are not kept)"
        print(f"\nnext version of {j.source}: version {nv['version']}, split {nv['replaces']} replaced by "
              f"{nv['by']}{note}; {where}; then `journeys diff` and `journeys publish` it")
        if not args.output:
            print()
            sys.stdout.write(new_text)
    return 0
