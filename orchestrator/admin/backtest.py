"""``orchestrator backtest --journeys DIR [--policies F] --from T --to T [--json]``: what the journeys
in DIR would have decided over the events ``<prefix>.events`` still retains in a span, beside what
the live journeys decided in that span (README, "Which arm wins, and what a changed journey would
have done"). A pull request that changes a journey can show what it would have done last week.

0. **Check.** The span must end no later than now: the replay fires the timers due inside it, and
   timers not yet due would be decisions the live side cannot have (``--to 2099-01-01`` would hold
   millions of them in memory). Both topics must exist; without one the command says "no such
   topic" in one sentence, as the other read-only commands do, and reads nothing.

1. **Read.** Every partition of the events topic, from the first record whose timestamp is at or
   after ``--from`` (Kafka's offsets-for-times index) to the last one before ``--to``, merged in
   record-timestamp order (each partition keeps its order, so each customer's events do). No
   consumer group, no commit, no producer: no topic is written, and the worker is not disturbed.
2. **Replay.** Those events through :class:`orchestrator.simulate.Simulation`: the same engine as
   the worker, on a virtual clock driven by the events' ``ts``, as ``orchestrator simulate`` runs
   it; after the last event the clock runs on to ``--to``, so the timers due inside the span fire.
   Every customer starts with no state at ``--from``: what happened before the span (entries,
   sends that count toward caps, profiles) is not replayed, so journeys already in flight at
   ``--from`` show only on the live side.
3. **Compare.** Every decision whose ``ts`` is in ``[from, to)``, on ``<prefix>.decisions`` (the live
   side) and of the replay (the backtest side: a late or backdated event written inside the span is
   replayed, and what it decided before ``--from`` is left out, as on the live side), counted per journey id (any version)
   and node: entries and refused entries, sends by channel, each other gate outcome (holdout,
   no_consent, frequency_cap, quiet_hours_deferred, window_deferred), goals, exits by reason and
   preemptions. Decisions of shadow versions are left out on both sides.

On a terminal, standard error shows a progress line while each step runs (events read, events
replayed, the clock of the timers fired after the last event, live decisions read).
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import sys
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import orjson

from orchestrator.config import Settings, home_partition, max_event_bytes
from orchestrator.core import Engine, JourneySet
from orchestrator.core.journeys import Journey
from orchestrator.core.policies import Policies
from orchestrator.core.timeutil import format_ts, parse_ts_ms
from orchestrator.errors import ConfigError
from orchestrator.observability.progress import ProgressLine
from orchestrator.simulate import Simulation

ENTRY = "(entry)"            # the row of entries and refused entries: not a node (node names have no parentheses)
SIDES = ("live", "backtest")
PROGRESS_EVERY = 1000        # records between two updates of the progress line


async def read_events(settings: Settings, parts: list[int], since_ms: int, until_ms: int, *,
                      deadline_s: float = 600.0, progress: ProgressLine | None = None) -> list[bytes]:
    """The values of the events topic (its partitions ``parts``) with a record timestamp in
    ``[since_ms, until_ms)``, merged in timestamp order (see the module docstring)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from orchestrator.kafkaio.clients import read_to_end, start_client
    topic = settings.topics.events
    consumer = AIOKafkaConsumer(**settings.aiokafka_kwargs(), enable_auto_commit=False, isolation_level="read_committed",
                                auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024)
    await start_client(consumer, settings)
    try:
        tps = [TopicPartition(topic, p) for p in parts]
        firsts = await consumer.offsets_for_times({tp: since_ms for tp in tps})
        afters = await consumer.offsets_for_times({tp: until_ms for tp in tps})
        ends = await consumer.end_offsets(tps)
        starts, stops = {}, {}
        for tp in tps:
            first = firsts.get(tp)
            if first is None:
                continue                                    # nothing at or after --from
            after = afters.get(tp)
            starts[tp], stops[tp] = first.offset, after.offset if after is not None else ends[tp]
        got: dict[Any, list[tuple[int, bytes]]] = {tp: [] for tp in starts}
        total, done = sum(stops[tp] - starts[tp] for tp in starts), 0
        if progress is not None:
            progress.show(f"backtest: reading events: 0 of {total:,}")
        async for tp, msgs in read_to_end(consumer, starts, ends=stops, deadline_s=deadline_s):
            got[tp].extend((m.timestamp, m.value) for m in msgs if m.value is not None)
            done += len(msgs)
            if progress is not None:
                progress.show(f"backtest: reading events: {done:,} of {total:,}")
        streams = [got[tp] for tp in sorted(got, key=lambda tp: tp.partition)]
    finally:
        await consumer.stop()
    return [value for _, value in heapq.merge(*streams, key=lambda item: item[0])]


def replay(journeys: Iterable[Journey], policies: Policies, events: list[bytes], until_ms: int, *,
           progress: ProgressLine | None = None) -> tuple[list[dict[str, Any]], Simulation]:
    """The decisions the journeys make over ``events`` (step 2 of the module docstring)."""
    sim = Simulation(Engine(JourneySet(journeys), policies), max_event_bytes=max_event_bytes(),
                     partition_of=home_partition())
    decisions: list[dict[str, Any]] = []

    def fed() -> Iterable[bytes]:
        for n, event in enumerate(events, start=1):
            if progress is not None and n % PROGRESS_EVERY == 0:
                progress.show(f"backtest: replaying: {n:,} of {len(events):,} events, {len(decisions):,} decisions")
            yield event

    for r in sim.run(fed()):
        if r["topic"] == "decisions":
            decisions.append(r["value"])
    for n, r in enumerate(sim.advance(until_ms - 1), start=1):
        if r["topic"] == "decisions":
            decisions.append(r["value"])
        if progress is not None and n % PROGRESS_EVERY == 0 and sim.clock_ms is not None:
            progress.show(f"backtest: timers after the last event: clock at {format_ts(sim.clock_ms)}, "
                          f"{len(decisions):,} decisions")
    return decisions, sim


def label(d: dict[str, Any]) -> tuple[str, str] | None:
    """(node row, outcome label) a decision is counted under; ``None`` for a shadow version's."""
    if d.get("shadow"):
        return None
    outcome = str(d.get("outcome"))
    if outcome == "entered":
        return ENTRY, "entered"
    if outcome == "entry_refused":
        return ENTRY, f"entry_refused {d.get('detail')}"
    if outcome == "sent":
        return str(d.get("node")), f"sent {d.get('channel')}"
    if outcome == "exited":
        return str(d.get("node")), f"exited {d.get('detail')}"
    return str(d.get("node")), outcome


def count(decisions: Iterable[dict[str, Any]], since_ms: int | None = None,
          until_ms: int | None = None) -> Counter[tuple[str, str, str]]:
    """(journey, node row, outcome label) -> decisions, of those with ``ts`` in ``[since_ms, until_ms)``."""
    out: Counter[tuple[str, str, str]] = Counter()
    for d in decisions:
        if since_ms is not None or until_ms is not None:
            ts = parse_ts_ms(d.get("ts"))
            if ts is None or (since_ms is not None and ts < since_ms) or (until_ms is not None and ts >= until_ms):
                continue
        key = label(d)
        if key is not None:
            out[(str(d.get("journey")), *key)] += 1
    return out


def compare(live: Counter[tuple[str, str, str]], backtest: Counter[tuple[str, str, str]], *,
            since_ms: int, until_ms: int, events: int, sim: Simulation | None = None) -> dict[str, Any]:
    """The report: one row per (journey, node, outcome) seen on either side."""
    def order(key: tuple[str, str, str]) -> tuple:
        return (key[0], key[1] != ENTRY, key[1], key[2])

    rows = [{"journey": j, "node": n, "outcome": o, "live": live.get((j, n, o), 0),
             "backtest": backtest.get((j, n, o), 0)} for j, n, o in sorted(set(live) | set(backtest), key=order)]
    for r in rows:
        r["difference"] = r["backtest"] - r["live"]
    ignored: dict[str, Any] = {}
    if sim is not None:
        ignored = {"duplicates": len(sim.duplicates), "too_old_to_enrol": len(sim.stale),
                   "dead_letters": {k: len(v) for k, v in sorted(sim.dead_letters.items())}}
    return {"from": format_ts(since_ms), "to": format_ts(until_ms), "events": events, "replay_ignored": ignored,
            "rows": rows,
            "totals": {side: sum(r[side] for r in rows) for side in SIDES}}


def render(report: dict[str, Any]) -> str:
    """The report as a table (what the command prints without ``--json``)."""
    lines = [f"backtest from {report['from']} to {report['to']}: {report['events']:,} events replayed"]
    ign = report.get("replay_ignored") or {}
    notes = [f"{n:,} {what}" for what, n in (("duplicates", ign.get("duplicates", 0)),
                                             ("too old to enrol", ign.get("too_old_to_enrol", 0))) if n]
    notes += [f"{n:,} dead-lettered {reason}" for reason, n in (ign.get("dead_letters") or {}).items()]
    if notes:
        lines.append("  replay ignored: " + ", ".join(notes))
    if not report["rows"]:
        lines.append("no decisions on either side in this span")
        return "\n".join(lines)
    head = ("journey", "node", "outcome", "live", "backtest", "difference")
    rows = [head] + [(r["journey"], r["node"], r["outcome"], f"{r['live']:,}", f"{r['backtest']:,}",
                      f"{r['difference']:+,}" if r["difference"] else "0") for r in report["rows"]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    right = {3, 4, 5}
    for row in rows:
        lines.append("  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                               for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
    return "\n".join(lines)


async def backtest(settings: Settings, journeys: list[Journey], policies: Policies, since_ms: int,
                   until_ms: int, *, progress: ProgressLine | None = None) -> dict[str, Any]:
    """Steps 1-3 of the module docstring against the deployment ``settings`` names (the topics
    must exist: step 0)."""
    from orchestrator.admin.explain import NO_WORKER_YET
    from orchestrator.admin.stats import read_decisions
    from orchestrator.kafkaio.topics import require_topics
    topic = settings.topics.events
    parts = (await require_topics(settings, [topic, settings.topics.decisions], hint=NO_WORKER_YET))[topic]
    events = await read_events(settings, parts, since_ms, until_ms, progress=progress)
    decisions, sim = replay(journeys, policies, events, until_ms, progress=progress)

    def reading(done: int, total: int) -> None:
        if progress is not None:
            progress.show(f"backtest: reading live decisions: {done:,} of {total:,}")

    live = await read_decisions(settings, progress=reading)
    return sides(live, decisions, since_ms=since_ms, until_ms=until_ms, events=len(events), sim=sim)


def sides(live: Iterable[dict[str, Any]], replayed: Iterable[dict[str, Any]], *, since_ms: int, until_ms: int,
          events: int, sim: Simulation | None = None) -> dict[str, Any]:
    """Step 3: both sides counted by the same rule, a decision's ``ts`` in ``[since_ms, until_ms)``. (An
    event dated before ``--from`` but written inside the span, by a late or backdated producer, is
    replayed; its decisions are before the span, as the live ones are.)"""
    return compare(count(live, since_ms, until_ms), count(replayed, since_ms, until_ms), since_ms=since_ms,
                   until_ms=until_ms, events=events, sim=sim)


def run(args: argparse.Namespace) -> int:
    """``orchestrator backtest``."""
    from orchestrator.admin.journeys import time_span
    from orchestrator.core import load_journey_dir, load_policies
    from orchestrator.core.journeyfiles import journey_dir_problem
    since, until = time_span(args.since, args.until, int(time.time() * 1000))
    assert since is not None and until is not None        # both options are required (orchestrator/cli.py)
    settings = Settings.from_env()
    policies = load_policies(args.policies or settings.policies)
    missing = journey_dir_problem(args.journeys, option="--journeys DIR")
    if missing is not None:
        raise ConfigError(missing)
    journeys, problems = load_journey_dir(args.journeys, channels=policies.channels)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print("nothing replayed: fix the definitions above first", file=sys.stderr)
        return 1
    if not journeys:
        raise ConfigError(f"{args.journeys}: no journeys found; give the folder of the journeys to try")
    line = ProgressLine(tty_only=True)
    try:
        report = asyncio.run(backtest(settings, journeys, policies, since, until, progress=line))
    finally:
        line.clear()
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() if args.json else render(report))
    return 0
