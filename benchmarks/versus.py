"""The pure core of two revisions on the same machine, in one run: how much faster (or slower) a
change made the engine.

    python -m benchmarks.versus --against REV [--events N] [--rounds R] [--journeys-of REV|this]

One backlog (the load benchmark's workload, :mod:`benchmarks.workload`, with fixed ids and
timestamps, as :mod:`benchmarks.identical` makes it) is written once. Then, ``--rounds`` times,
alternating the two trees so that a drift of the machine's speed hits both alike, a fresh
subprocess of each tree times ``Engine.on_event`` over it: CPU time of one thread (events/s per
core), each state kept in a dict, garbage from building the events frozen. ``REV`` runs from a
temporary ``git worktree``; this tree from its own checkout. Both sides use the same journeys and
policies: by default those of ``REV`` (an older engine may not read this tree's journeys), or this
tree's with ``--journeys-of this``. The median of each side, their ratio and the machine's load
average before and after are printed (``--json`` for the raw rounds).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


# ------------------------------------------------------------------------------------- any tree
# ``--time`` runs this file as a script inside either tree: it imports only that tree's orchestrator.
def time_engine(lines: list[bytes], journeys: Path, policies: Path) -> dict[str, float]:
    """CPU seconds of ``Engine.on_event`` over ``lines`` (each event decided at its own ``ts``)."""
    import gc
    import time

    from orchestrator.core import Engine, JourneySet, load_journey_dir, load_policies, parse_event
    pol = load_policies(str(policies))
    loaded, problems = load_journey_dir(str(journeys), channels=pol.channels)
    if problems:
        raise SystemExit("journeys refused: " + "; ".join(problems))
    engine = Engine(JourneySet(loaded), pol)
    events = [parse_event(line, max_bytes=1 << 20, now_ms=1 << 62, channels=pol.channels) for line in lines]
    states: dict[str, object] = {}
    gc.collect()
    gc.freeze()
    cpu = time.process_time()
    for ev in events:
        r = engine.on_event(states.get(ev.customer_id), ev, ev.ts_ms)
        if r.state is None:
            states.pop(ev.customer_id, None)
        else:
            states[ev.customer_id] = r.state
    cpu = time.process_time() - cpu
    gc.unfreeze()
    return {"events": len(events), "cpu_s": cpu, "events_per_s": len(events) / cpu}


def _time_main(args: argparse.Namespace) -> int:
    import orchestrator
    if args.expect_tree and not Path(orchestrator.__file__).resolve().is_relative_to(Path(args.expect_tree).resolve()):
        print(f"imported orchestrator from {orchestrator.__file__}, not from {args.expect_tree}", file=sys.stderr)
        return 2
    lines = Path(args.time).read_bytes().splitlines()
    print(orjson.dumps(time_engine(lines, Path(args.journeys), Path(args.policies))).decode())
    return 0


# ------------------------------------------------------------------------------------- this tree only
def _run(tree: Path, backlog: Path, journeys: Path, policies: Path) -> dict[str, float]:
    from benchmarks.common import run_in_tree
    return run_in_tree(Path(__file__).resolve(), tree, ["--time", str(backlog), "--journeys", str(journeys),
                                                        "--policies", str(policies)], "timing the engine")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.versus", description=__doc__.split("\n\n")[0])
    ap.add_argument("--against", metavar="REV", help="the revision to compare with (e.g. main, a commit)")
    ap.add_argument("--events", type=int, default=100_000, help="events in the backlog (default 100,000)")
    ap.add_argument("--rounds", type=int, default=3, help="timed runs of each tree, alternating (default 3)")
    ap.add_argument("--journeys-of", default="rev", choices=["rev", "this"],
                    help="whose journeys/ and policies.yaml both sides run (default: REV's)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--time", help=argparse.SUPPRESS)
    ap.add_argument("--journeys", help=argparse.SUPPRESS)
    ap.add_argument("--policies", help=argparse.SUPPRESS)
    ap.add_argument("--expect-tree", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.time:
        return _time_main(args)
    if not args.against:
        ap.error("--against REV is required")
    from benchmarks.common import checkout, loadavg
    from benchmarks.identical import backlog_lines
    with tempfile.TemporaryDirectory(prefix="versus-") as tmp, checkout(args.against, Path(tmp) / "tree") as other:
        side = other if args.journeys_of == "rev" else ROOT
        journeys, policies = side / "journeys", side / "policies.yaml"
        backlog = Path(tmp) / "backlog.jsonl"
        backlog.write_bytes(b"".join(line + b"\n" for line in
                                     backlog_lines(args.events, journeys=journeys, policies=policies)))
        load_before = loadavg()
        rounds: dict[str, list[dict[str, float]]] = {"this": [], "against": []}
        for _ in range(args.rounds):
            rounds["against"].append(_run(other, backlog, journeys, policies))
            rounds["this"].append(_run(ROOT, backlog, journeys, policies))
        load_after = loadavg()
    med = {k: statistics.median(r["events_per_s"] for r in v) for k, v in rounds.items()}
    report = {"against": args.against, "events": args.events, "journeys_of": args.journeys_of,
              "events_per_s": med, "ratio": med["this"] / med["against"], "rounds": rounds,
              "load_average": {"before": load_before, "after": load_after}}
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        print(f"pure core, {args.events:,} events, journeys of {args.against if args.journeys_of == 'rev' else 'this tree'}, "
              f"median of {args.rounds} alternating rounds (events/s per core):")
        print(f"  {args.against}: {med['against']:,.0f}")
        print(f"  this tree: {med['this']:,.0f}")
        print(f"  ratio: {report['ratio']:.2f}x   (load average {load_before} before, {load_after} after)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
