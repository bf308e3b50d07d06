"""Identical outputs before and after a change: a digest of everything the engine decides on the
benchmark's backlog.

    python -m benchmarks.identical [--events N] [--seed S] [--against REV] [--json]

The backlog is the load benchmark's (:mod:`benchmarks.workload`: synthetic shoppers plus the
channel adapter's predicted feedback), made deterministically: seeded, fixed event ids, and fixed
timestamps on a virtual clock (2,000 events/s from 2026-01-01T00:00:00Z). It runs through the pure
engine with ``orchestrator.simulate.Simulation`` (the virtual clock fires each timer at its due
time), then the clock moves ``--horizon-days`` past the last event so every pending timer fires
too. Every record the engine emits (actions, suppressions, decisions, dead letters, with their ids
and times) is written as one canonical JSON line (keys sorted); the digest is the SHA-256 of those
lines. The counts by topic are printed beside it.

``--against REV`` also checks out ``REV`` in a temporary ``git worktree`` and replays the same
backlog (written once, by this tree) with that tree's ``orchestrator`` first on ``PYTHONPATH``, in
a subprocess, with the same journeys and policies. Exit status 1 if the digests differ, showing the
first differing record; 0 if they are identical.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
START_MS = 1_767_225_600_000          # 2026-01-01T00:00:00Z: the backlog's virtual clock starts here
DAY_MS = 86_400_000


# ------------------------------------------------------------------------------------- this tree only
def backlog_lines(events: int, *, seed: int = 42, customers: int = 200_000, journeys: Path | None = None,
                  policies: Path | None = None) -> list[bytes]:
    """The benchmark's backlog as JSON lines with fixed ids and timestamps (feedback predicted with
    this tree's engine, as the load benchmark does)."""
    from benchmarks.workload import JOURNEYS, POLICIES, Shoppers, build_backlog, load_engine, virtual_time
    shoppers = Shoppers(seed=seed, customers=customers, tag="identical")
    backlog, _ = build_backlog(shoppers, events, load_engine(journeys or JOURNEYS, policies or POLICIES),
                               start_ms=START_MS)
    return [orjson.dumps({**e, "ts": int(virtual_time(START_MS, i))}) for i, e in enumerate(backlog)]


# ------------------------------------------------------------------------------------- any tree
# What follows imports nothing from ``benchmarks``: it also runs as a script inside another
# revision's tree (``--replay``), where only that tree's ``orchestrator`` is imported.
def replay(lines: Iterable[bytes], journeys: Path, policies: Path, *, horizon_days: float = 30.0) -> list[bytes]:
    """Every record the engine emits over ``lines``, as canonical JSON lines, in emission order."""
    from orchestrator.core import Engine, JourneySet, load_journey_dir, load_policies
    from orchestrator.simulate import Simulation
    pol = load_policies(str(policies))
    loaded, problems = load_journey_dir(str(journeys), channels=pol.channels)
    if problems:
        raise SystemExit("journeys refused: " + "; ".join(str(p) for p in problems))
    sim = Simulation(Engine(JourneySet(loaded), pol))
    out: list[bytes] = []
    last = None
    for line_no, line in enumerate(lines, start=1):
        out.extend(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in sim.feed(line, line_no))
        last = sim.clock_ms
    if last is not None:
        out.extend(orjson.dumps(r, option=orjson.OPT_SORT_KEYS)
                   for r in sim.advance(last + int(horizon_days * DAY_MS)))
    return out


def digest(records: list[bytes]) -> str:
    h = hashlib.sha256()
    for r in records:
        h.update(r)
        h.update(b"\n")
    return "sha256:" + h.hexdigest()


def counts(records: list[bytes]) -> dict[str, int]:
    """Records by topic (``actions.<channel>``, ``suppressions``, ``decisions``, ``dlq``)."""
    c: Counter[str] = Counter(orjson.loads(r)["topic"] for r in records)
    return dict(sorted(c.items()))


def first_difference(ours: list[bytes], theirs: list[bytes]) -> tuple[int, bytes | None, bytes | None] | None:
    """(index, our record, their record) of the first difference; ``None`` if the lists are equal."""
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a != b:
            return i, a, b
    if len(ours) != len(theirs):
        i = min(len(ours), len(theirs))
        return i, ours[i] if i < len(ours) else None, theirs[i] if i < len(theirs) else None
    return None


# ------------------------------------------------------------------------------------- --against
def replay_at(rev: str, backlog: Path, journeys: Path, policies: Path, horizon_days: float) -> list[bytes]:
    """Replay ``backlog`` with the ``orchestrator`` of revision ``rev`` (a temporary git worktree)."""
    from benchmarks.common import checkout
    with tempfile.TemporaryDirectory(prefix="identical-") as tmp, checkout(rev, Path(tmp) / "tree") as tree:
        out = Path(tmp) / "records.jsonl"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), *filter(None, [os.environ.get("PYTHONPATH")])])}
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--replay", str(backlog),
                               "--journeys", str(journeys), "--policies", str(policies),
                               "--horizon-days", str(horizon_days), "--records", str(out),
                               "--expect-tree", str(tree)],
                              cwd=tree, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"replaying at {rev} failed:\n{(done.stderr or done.stdout).strip()[-2000:]}")
        return out.read_bytes().splitlines()


def _replay_main(args: argparse.Namespace) -> int:
    """``--replay``: this file run as a script inside another tree."""
    import orchestrator
    if args.expect_tree and not Path(orchestrator.__file__).resolve().is_relative_to(Path(args.expect_tree).resolve()):
        print(f"imported orchestrator from {orchestrator.__file__}, not from {args.expect_tree}", file=sys.stderr)
        return 2
    records = replay(Path(args.replay).read_bytes().splitlines(), Path(args.journeys), Path(args.policies),
                     horizon_days=args.horizon_days)
    Path(args.records).write_bytes(b"".join(r + b"\n" for r in records))
    return 0


def _show(record: bytes | None) -> str:
    return "(none: the list ends here)" if record is None else record.decode()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.identical", description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=20_000, help="events in the backlog (default 20,000)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--customers", type=int, default=200_000, help="customer population (default 200,000)")
    ap.add_argument("--journeys", type=Path, default=ROOT / "journeys", help="journeys folder (default journeys/)")
    ap.add_argument("--policies", type=Path, default=ROOT / "policies.yaml", help="policies (default policies.yaml)")
    ap.add_argument("--horizon-days", type=float, default=30.0,
                    help="days the virtual clock runs on after the last event, firing timers (default 30)")
    ap.add_argument("--against", metavar="REV", help="also replay with the orchestrator of git revision REV and compare")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--replay", help=argparse.SUPPRESS)
    ap.add_argument("--records", help=argparse.SUPPRESS)
    ap.add_argument("--expect-tree", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.replay:
        return _replay_main(args)
    journeys, policies = args.journeys.resolve(), args.policies.resolve()
    lines = backlog_lines(args.events, seed=args.seed, customers=args.customers, journeys=journeys, policies=policies)
    ours = replay(lines, journeys, policies, horizon_days=args.horizon_days)
    result: dict[str, Any] = {"events": len(lines), "seed": args.seed, "records": len(ours), "counts": counts(ours),
                              "digest": digest(ours)}
    diff = None
    if args.against:
        with tempfile.NamedTemporaryFile(prefix="identical-backlog-", suffix=".jsonl") as f:
            f.write(b"".join(line + b"\n" for line in lines))
            f.flush()
            theirs = replay_at(args.against, Path(f.name), journeys, policies, args.horizon_days)
        result["against"] = {"rev": args.against, "records": len(theirs), "counts": counts(theirs),
                             "digest": digest(theirs)}
        diff = first_difference(ours, theirs)
        result["identical"] = diff is None
        if diff is not None:
            result["first_difference"] = {"index": diff[0], "ours": _show(diff[1]), "theirs": _show(diff[2])}
    if args.json:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    else:
        print(f"{result['events']:,} events (seed {args.seed}), {result['records']:,} records: "
              + ", ".join(f"{k} {v:,}" for k, v in result["counts"].items()))
        print(f"this tree: {result['digest']}")
        if args.against:
            a = result["against"]
            print(f"{args.against}: {a['digest']} ({a['records']:,} records)")
            if diff is None:
                print("identical")
            else:
                print(f"different: first at record #{diff[0]}\n  this tree: {_show(diff[1])}\n"
                      f"  {args.against}: {_show(diff[2])}")
    return 0 if diff is None else 1


if __name__ == "__main__":
    sys.exit(main())
