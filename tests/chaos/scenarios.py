"""The scenarios: how many workers, which faults at which share of the load, and which load
(docs/chaos.md, "The scenarios"). A fault step blocks; it runs in a thread while the load goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.chaos.cluster import Cluster
from tests.chaos.load import LoadSpec
from tests.chaos.workers import PARTITIONS, WORKER_READY_S, ChaosWorker

log = logging.getLogger("chaos")


@dataclass
class Fault:
    label: str
    at: float                        # time.monotonic() of the injection
    acked: int                       # lines acknowledged by the cluster before it
    acked_end: int | None = None     # ... and before its step was over (restarted worker ready, ...)
    recovery_s: float | None = None


@dataclass
class Step:
    at: float                        # fraction of the load produced when the step starts
    label: str
    run: Callable[["Ctx"], None]     # blocking; runs in a thread while the load goes on


@dataclass
class Scenario:
    name: str
    summary: str
    workers: int
    steps: list[Step] = field(default_factory=list)
    load: LoadSpec = field(default_factory=LoadSpec)


class Ctx:
    """What a scenario's steps act on."""

    def __init__(self, scenario: Scenario, cluster: Cluster, folder: Path, prefix: str,
                 guarantee: str = "at-least-once") -> None:
        self.scenario, self.cluster, self.folder, self.prefix = scenario, cluster, folder, prefix
        self.guarantee = guarantee        # the workers' ORCH_PROCESSING_GUARANTEE
        self.workers: dict[str, ChaosWorker] = {}
        self.faults: list[Fault] = []
        self.acked = 0
        self.notes: list[str] = []

    def worker(self, name: str) -> ChaosWorker:
        if name not in self.workers:
            self.workers[name] = ChaosWorker(name, self.folder, self.prefix, self.cluster.bootstrap, self.guarantee)
        return self.workers[name]

    def start_workers(self, names: list[str]) -> None:
        """Start several at once (a shared rebalance), each waited for."""
        deadline = time.monotonic() + WORKER_READY_S
        for n in names:
            self.worker(n).spawn()
        for n in names:
            self.worker(n).wait_ready(deadline)

    def fault(self, label: str) -> Fault:
        f = Fault(label, time.monotonic(), self.acked)
        self.faults.append(f)
        log.info("  fault: %s (after %d lines acknowledged)", label, f.acked)
        return f

    def run_step(self, step: "Step") -> None:
        """Run a step (in a thread); its faults end when it returns."""
        step.run(self)
        for f in self.faults:
            if f.acked_end is None:
                f.acked_end = self.acked

    def note(self, text: str) -> None:
        self.notes.append(text)
        log.info("  note: %s", text)

    def running(self) -> list[ChaosWorker]:
        return [w for w in self.workers.values() if w.alive()]


def sigkill_restart(name: str) -> Callable[[Ctx], None]:
    def run(ctx: Ctx) -> None:
        w = ctx.worker(name)
        if not w.wait_active():
            ctx.note(f"{name} had taken no input yet when killed")
        ctx.fault(f"SIGKILL {name}")
        w.kill()
        w.start()
    return run


def graceful_restart(name: str) -> Callable[[Ctx], None]:
    def run(ctx: Ctx) -> None:
        w = ctx.worker(name)
        w.wait_active()
        ctx.fault(f"SIGTERM {name}, restart")
        if not w.stop():
            ctx.note(f"{name} needed SIGKILL after SIGTERM")
        w.start()
    return run


def scale_to(names: list[str]) -> Callable[[Ctx], None]:
    def run(ctx: Ctx) -> None:
        current = [n for n, w in ctx.workers.items() if w.alive()]
        ctx.fault(f"scale {len(current)} -> {len(names)}")
        for n in current:
            if n not in names and not ctx.worker(n).stop():
                ctx.note(f"{n} needed SIGKILL after SIGTERM")
        new = [n for n in names if not ctx.worker(n).alive()]
        if new:
            ctx.start_workers(new)
    return run


def broker_kill() -> Callable[[Ctx], None]:
    def run(ctx: Ctx) -> None:
        counts = ctx.cluster.leader_counts(f"{ctx.prefix}.events")
        node = max(sorted(counts), key=lambda n: counts[n])      # the one leading most input partitions
        ctx.broker_down = node  # type: ignore[attr-defined]
        ctx.fault(f"SIGKILL broker {node} (leads {counts[node]}/{PARTITIONS} event partitions)")
        ctx.cluster.kill(node)
    return run


def broker_restart() -> Callable[[Ctx], None]:
    def run(ctx: Ctx) -> None:
        node = ctx.broker_down  # type: ignore[attr-defined]
        ctx.fault(f"restart broker {node}")
        started = time.monotonic()
        ctx.cluster.restart(node)
        ctx.note(f"broker {node} back and in sync after {time.monotonic() - started:.1f} s")
    return run


def wipe_restart(name: str, kill: bool) -> Callable[[Ctx], None]:
    def run(ctx: Ctx) -> None:
        w = ctx.worker(name)
        w.wait_active()
        ctx.fault(f"{'SIGKILL' if kill else 'SIGTERM'} {name}, delete its RocksDB folder, restart")
        if kill:
            w.kill()
        elif not w.stop():
            ctx.note(f"{name} needed SIGKILL after SIGTERM")
        w.wipe()
        w.start()
    return run


SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("sigkill", "3 workers; SIGKILL one three times mid-load (w1, w2, w3), each restarted at once",
             3, [Step(0.2, "kill w1", sigkill_restart("w1")), Step(0.45, "kill w2", sigkill_restart("w2")),
                 Step(0.7, "kill w3", sigkill_restart("w3"))]),
    Scenario("graceful", "2 workers; SIGTERM w1 mid-load and restart it, then the same for w2",
             2, [Step(0.3, "restart w1", graceful_restart("w1")), Step(0.65, "restart w2", graceful_restart("w2"))]),
    Scenario("scale", "1 worker, scaled to 3 mid-load, then back to 1 (SIGTERM)",
             1, [Step(0.25, "scale up", scale_to(["w1", "w2", "w3"])), Step(0.6, "scale down", scale_to(["w1"]))]),
    Scenario("broker", "2 workers; SIGKILL the broker leading most input partitions mid-load, restart it later",
             2, [Step(0.3, "kill broker", broker_kill()), Step(0.6, "restart broker", broker_restart())]),
    Scenario("rocksdb", "2 workers; w1 SIGKILLed and w2 stopped, each restarted without its RocksDB folder",
             2, [Step(0.35, "wipe w1", wipe_restart("w1", kill=True)),
                 Step(0.7, "wipe w2", wipe_restart("w2", kill=False))]),
    Scenario("bad-input", "2 workers; a quarter of the lines are bad input of every kind (SPEC §2)",
             2, [], LoadSpec(bad_rate=0.25)),
    Scenario("dup-ooo", "2 workers; many duplicates (same event_id), out-of-order timestamps, and the first "
             "fifth of the load produced again at the end", 2, [],
             LoadSpec(dup_rate=0.2, ooo_rate=0.3, replay_tail=0.2)),
    Scenario("timers", "2 workers; customers waiting 5 s (cx-timer), w1 SIGKILLed mid-load; every timer action "
             "exactly once by action_id", 2, [Step(0.5, "kill w1", sigkill_restart("w1"))],
             LoadSpec(timer_rate=0.25)),
]}
