"""The fault suite: ``python -m tests.chaos.run [--scenarios a,b] [--events N]`` (``make chaos``).

Every scenario runs real workers (``orchestrator worker`` processes) against a local 3-broker
KRaft cluster (:mod:`tests.chaos.cluster`), feeds them a deterministic load, injects its faults
while the load is being produced, and then checks the output topics against what the offline
simulator (:class:`orchestrator.simulate.Simulation`, same engine, virtual clock) computes from
exactly the same input lines in the same per-customer order.

Judgement, per scenario (docs/chaos.md has the long version):

- actions: ``lost`` = expected action_ids never seen on ``<prefix>.actions.*``, ``wrong`` =
  action_ids seen but not expected, plus expected ids seen with different content (channel,
  template, params, trigger, ...; ``decided_at`` is ignored). ``dup`` = action records minus
  distinct action_ids: at-least-once re-sends, reported only (adapters de-duplicate on the id);
- dead letters: the set of (partition, offset, reason) of the bad input lines must equal what
  was observed (distinct by the original coordinates);
- suppressions (by suppression_id, with their content) and decisions (as a set of tuples without
  timestamps) must match too;
- recovery: for each fault, the seconds from the fault until every expected action of the lines
  acknowledged before the fault had been seen.

The run prints a table and exits 1 if any scenario lost, got wrong or missed anything, or failed
to finish within its time limit. A JSON report with the ids involved is written next to the
worker logs in ``.orch/chaos/run/``.

This module holds the command line and the orchestration (produce, wait, judge, report); the
pieces live next to it: :mod:`~tests.chaos.load` (the lines), :mod:`~tests.chaos.expected` (the
simulator's outputs), :mod:`~tests.chaos.workers`, :mod:`~tests.chaos.observer` (the output
topics), :mod:`~tests.chaos.scenarios` (faults), :mod:`~tests.chaos.verify` (the judgement) and
:mod:`~tests.chaos.report`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from orchestrator.config import Settings
from tests.chaos.cluster import Cluster
from tests.chaos.expected import expected, make_engine
from tests.chaos.load import DEFAULT_EVENTS, SEED, Line, LoadSpec, generate
from tests.chaos.observer import Observer
from tests.chaos.report import fmt_s, table, write_report
from tests.chaos.scenarios import SCENARIOS, Ctx, Scenario, Step
from tests.chaos.verify import Outcome, incomplete, recovery, verify
from tests.chaos.workers import ALL_WORKERS, PARTITIONS, WORKER_READY_S

DEFAULT_RATE = 400.0           # events per second offered to the cluster
DEFAULT_LIMIT_S = 240.0        # per scenario
DEFAULT_BUDGET_S = 840.0       # the whole run (cluster start included); later scenarios get less
MIN_SCENARIO_S = 45.0          # what a scenario needs at least (and what is kept for each one left)
MISSING_GRACE_S = 15.0         # after quiescence, how long still-missing outputs are waited for

log = logging.getLogger("chaos")


# =============================================================================== running one scenario
async def create_topics(bootstrap: str, prefix: str, channels: tuple[str, ...]) -> None:
    """The worker's own topics (same names and settings), made before the observer subscribes."""
    from orchestrator.kafkaio.topics import ensure_topics
    await ensure_topics(Settings(bootstrap=bootstrap, topic_prefix=prefix, partitions=PARTITIONS, replication=3),
                        channels)


async def delete_topics(bootstrap: str, prefix: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(prefix + ".") or t.startswith(prefix + "-")]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


async def produce(ctx: Ctx, lines: list[Line], rate: float, steps: list[Step],
                  limit_at: float) -> list[tuple[int, int]]:
    """Send the lines in order at ``rate`` per second; start each step when its share of the load
    has been acknowledged (a step waits for the previous one to finish, so each fault happens
    while the load is still coming). Returns (partition, offset) of every line."""
    from aiokafka import AIOKafkaProducer
    producer = AIOKafkaProducer(bootstrap_servers=ctx.cluster.bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=5, max_request_size=2 * 1024 * 1024, request_timeout_ms=30_000)
    await producer.start()
    coords: list[tuple[int, int]] = []
    pending = list(steps)
    running: asyncio.Future | None = None
    chunk = max(1, int(rate / 10))
    started = time.monotonic()
    topic = f"{ctx.prefix}.events"
    try:
        i = 0
        while i < len(lines):
            while pending and ctx.acked >= pending[0].at * len(lines):
                if running is not None:
                    await running                    # one step at a time
                step = pending.pop(0)
                running = asyncio.ensure_future(asyncio.to_thread(ctx.run_step, step))
            futures = []
            for ln in lines[i:i + chunk]:
                futures.append(await producer.send(topic, value=ln.value, key=ln.key))
            for meta in await asyncio.gather(*futures):
                coords.append((meta.partition, meta.offset))
            i += len(futures)
            ctx.acked = i
            if time.monotonic() > limit_at:
                raise TimeoutError("time limit reached while producing")
            ahead = started + i / rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
        for step in pending:                          # (only with a step at 1.0)
            if running is not None:
                await running
            running = asyncio.ensure_future(asyncio.to_thread(ctx.run_step, step))
        if running is not None:
            await asyncio.wait_for(asyncio.shield(running), max(1.0, limit_at - time.monotonic()))
    finally:
        if running is not None and not running.done():   # never leave a step starting workers behind
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(running), WORKER_READY_S + 30)
        await producer.stop()
    return coords


async def quiescent(admin: Any, probe: Any, group: str, topics: list[str]) -> bool:
    """Whether the workers' group has committed every input: the events topic first, then the
    internal topic (which only grows while events or timers are being processed). In exactly-once a
    transaction's commit marker may follow the last record a group committed: a partition whose
    committed offset is short of its end only by such markers (a committed reader finds nothing
    after it) is done too."""
    from aiokafka import TopicPartition
    for topic in topics:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await probe.end_offsets(tps)
        committed = await admin.list_consumer_group_offsets(group, partitions=tps)
        for tp in tps:
            done = committed.get(tp)
            if ends[tp] > 0 and (done is None or done.offset < ends[tp]):
                if done is None or not await only_markers(probe, tp, done.offset, ends[tp]):
                    return False
    return True


async def only_markers(probe: Any, tp: Any, start: int, end: int) -> bool:
    """Whether a committed reader finds no record in ``tp`` from ``start`` to ``end``."""
    probe.assign([tp])
    probe.seek(tp, start)
    while await probe.position(tp) < end:
        batch = await probe.getmany(tp, timeout_ms=500)
        if batch.get(tp):
            return False
        if not batch and await probe.position(tp) < end:
            return False                  # nothing came back and the end was not reached: not yet
    return True


async def run_scenario(sc: Scenario, cluster: Cluster, root: Path, n_events: int, rate: float,
                       limit_s: float, keep_topics: bool, guarantee: str = "at-least-once") -> Outcome:
    started = time.monotonic()
    limit_at = started + limit_s
    out = Outcome(sc.name, guarantee=guarantee)
    tag = "eos" if guarantee == "exactly-once" else "alo"
    folder = root / f"{sc.name}-{tag}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    prefix = f"cx-{sc.name}-{tag}"
    ctx = Ctx(sc, cluster, folder, prefix, guarantee)
    engine = make_engine()
    channels = engine.policies.channels
    spec = LoadSpec(**{**sc.load.__dict__, "events": n_events})
    seed = SEED + sum(map(ord, sc.name))
    lines = generate(spec, seed=seed, tag=sc.name, now_ms=time.time_ns() // 1_000_000, channels=channels)
    exp = expected(lines)
    out.lines = len(lines)
    out.expected_actions = len(exp.actions)
    out.dlq_expected = len(exp.dlq)
    out.details["expected_outcomes"] = dict(sorted(exp.outcomes.items()))
    out.details["line_kinds"] = dict(Counter(ln.kind for ln in lines))
    log.info("[%s] %s", sc.name, sc.summary)
    log.info("  load: %d lines %s; expected %d actions, %d suppressions, %d dead letters",
             len(lines), out.details["line_kinds"], len(exp.actions), len(exp.suppressions), len(exp.dlq))
    observer = Observer(cluster.bootstrap, prefix, channels)
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    probe = AIOKafkaConsumer(bootstrap_servers=cluster.bootstrap, enable_auto_commit=False,
                             isolation_level="read_committed")
    coords: list[tuple[int, int]] = []
    try:
        await create_topics(cluster.bootstrap, prefix, channels)
        await admin.start()
        await probe.start()
        await observer.start()
        await asyncio.to_thread(ctx.start_workers, [f"w{i}" for i in range(1, sc.workers + 1)])
        coords = await produce(ctx, lines, rate, sc.steps, limit_at)
        log.info("  load produced and every step done after %.1f s; waiting for the workers to commit "
                 "every input", time.monotonic() - started)
        group = f"{prefix}-orchestrator"
        inputs = [f"{prefix}.events", f"{prefix}.internal.events-by-customer"]
        while True:
            with contextlib.suppress(Exception):
                if await quiescent(admin, probe, group, inputs) and await observer.caught_up():
                    break
            dead = [f"{w.name} (exit status {w.proc.returncode})" for w in ctx.workers.values() if w.crashed()]
            if dead:
                raise RuntimeError(f"worker(s) {', '.join(dead)} exited by themselves; see the logs in {folder}")
            if time.monotonic() > limit_at:
                raise TimeoutError(f"inputs not all committed within the {limit_s:.0f} s limit")
            await asyncio.sleep(0.25)
        # Outputs still missing now are either lost or not due yet (a timer): wait a little for
        # them, then once more for every input (timer ticks included) to be committed.
        grace = time.monotonic() + MISSING_GRACE_S
        while incomplete(exp, observer) and time.monotonic() < grace:
            await asyncio.sleep(0.25)
        while time.monotonic() < grace + MISSING_GRACE_S:
            with contextlib.suppress(Exception):
                if await quiescent(admin, probe, group, inputs) and await observer.caught_up():
                    break
            await asyncio.sleep(0.25)
    except Exception as e:  # noqa: BLE001 - reported in the table; the verifier still runs
        out.error = f"{type(e).__name__}: {e}"
        log.error("  %s", out.error)
    finally:
        out.workers = "/".join(str(w.starts) for w in ctx.workers.values())
        for w in ctx.workers.values():
            if w.alive() and not w.stop(30):
                ctx.note(f"{w.name} needed SIGKILL at the end")
        with contextlib.suppress(Exception):
            await observer.drain(30)
        await observer.stop()
        with contextlib.suppress(Exception):
            await admin.close()
        with contextlib.suppress(Exception):
            await probe.stop()
    verify(out, exp, observer, lines, coords)
    out.faults, out.notes = ctx.faults, ctx.notes
    for f in ctx.faults:
        f.recovery_s = recovery(f, exp, observer)
    if ctx.faults:
        values = [f.recovery_s for f in ctx.faults]
        out.recovery_s = None if any(v is None for v in values) else max(values)  # type: ignore[type-var]
    out.seconds = time.monotonic() - started
    out.details["worker_logs"] = {w.name: str(w.log_path) for w in ctx.workers.values()}
    if not keep_topics:
        with contextlib.suppress(Exception):
            await delete_topics(cluster.bootstrap, prefix)
    log.info("  %s: lost %d, wrong %d, duplicates %d (other outputs %d), dead letters off by %d, suppressions off "
             "by %d, decisions off by %d, recovery %s, %.0f s", "PASS" if out.passed else "FAIL", out.lost, out.wrong,
             out.dup, out.dup_other, out.dlq_diff, out.supp_diff, out.dec_diff, fmt_s(out.recovery_s), out.seconds)
    return out


# =============================================================================== main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.chaos.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--scenarios", default=",".join(SCENARIOS),
                   help=f"comma-separated subset of: {', '.join(SCENARIOS)} (default: all)")
    p.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="good events per scenario (default %(default)s)")
    p.add_argument("--rate", type=float, default=DEFAULT_RATE, help="events per second offered (default %(default)s)")
    p.add_argument("--limit", type=float, default=DEFAULT_LIMIT_S, help="seconds per scenario (default %(default)s)")
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S,
                   help="seconds for the whole run; a scenario that would not fit is not run and fails "
                        "(default %(default)s)")
    p.add_argument("--guarantee", choices=("at-least-once", "exactly-once", "both"), default="both",
                   help="the workers' ORCH_PROCESSING_GUARANTEE; both runs every scenario in each mode, "
                        "exactly-once also failing on any output seen twice (default %(default)s)")
    p.add_argument("--keep", action="store_true", help="keep the cluster running and the topics at the end")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        p.error(f"unknown scenario(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(SCENARIOS)}")
    args.names = names
    args.guarantees = ["at-least-once", "exactly-once"] if args.guarantee == "both" else [args.guarantee]
    if args.budget == DEFAULT_BUDGET_S:
        args.budget *= len(args.guarantees)
    return args


async def amain(args: argparse.Namespace) -> int:
    root = (Path(os.environ.get("ORCH_HOME") or ".orch") / "chaos" / "run").absolute()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    cluster = Cluster()
    suite_started = time.monotonic()
    outcomes: list[Outcome] = []
    try:
        log.info("starting the 3-broker cluster (%s)", cluster.bootstrap)
        await asyncio.to_thread(cluster.start)
        log.info("cluster ready after %.1f s", time.monotonic() - suite_started)
        runs = [(name, g) for g in args.guarantees for name in args.names]
        for k, (name, guarantee) in enumerate(runs):
            left = args.budget - (time.monotonic() - suite_started) - MIN_SCENARIO_S * (len(runs) - k - 1)
            if left < MIN_SCENARIO_S:
                outcomes.append(Outcome(name, guarantee=guarantee,
                                        error=f"not run: the suite's {args.budget:.0f} s budget is spent"))
                log.error("[%s, %s] not run: the suite's %.0f s budget is spent", name, guarantee, args.budget)
                continue
            await asyncio.to_thread(cluster.wait_in_sync, 60)
            log.info("---- %s, %s", name, guarantee)
            outcomes.append(await run_scenario(SCENARIOS[name], cluster, root, args.events, args.rate,
                                               min(args.limit, left), args.keep, guarantee))
    finally:
        if not args.keep:
            await asyncio.to_thread(cluster.stop)
    report = write_report(root, outcomes, args)
    print()
    print(f"chaos suite: {len(outcomes)} scenarios, 3 brokers (RF 3, min.insync.replicas 2), "
          f"{args.events} events each at {args.rate:g}/s, {time.monotonic() - suite_started:.0f} s in all")
    for guarantee in args.guarantees:
        print(f"\n{guarantee}:")
        print(table([o for o in outcomes if o.guarantee == guarantee]))
    print(f"\nlost/wrong: action_ids expected by simulate but never seen / seen but not expected (or changed);"
          f"\ndup: action records - distinct action_ids; dup other: suppression, decision and dead-letter records"
          f"\nseen more often than simulate made them (read committed). At-least-once re-sends some after a"
          f"\ncrash (adapters de-duplicate on the ids); in exactly-once any copy fails the scenario."
          f"\ndetails: {report}")
    failed = [o for o in outcomes if not o.passed]
    for o in failed:
        tag = "eos" if o.guarantee == "exactly-once" else "alo"
        print(f"FAILED {o.name} ({o.guarantee}): {o.error or ''} lost={o.lost} wrong={o.wrong} dup={o.dup} "
              f"dup other={o.dup_other} dlq±={o.dlq_diff} supp±={o.supp_diff} dec±={o.dec_diff}; worker logs: "
              f"{root / f'{o.name}-{tag}'}")
    return 1 if failed or len(outcomes) < len(args.names) * len(args.guarantees) else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        return asyncio.run(amain(args))
    except KeyboardInterrupt:
        return 130
    finally:   # after an interruption: nothing of ours keeps running (the brokers unless --keep)
        for w in ALL_WORKERS:
            w.kill()
        if not args.keep:
            cluster = Cluster()
            if any(n.alive() for n in cluster.nodes.values()):
                cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
