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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from orchestrator.config import Settings
from orchestrator.core import Engine, JourneySet, load_journey_dir, load_policies, parse_event
from orchestrator.core.events import Rejection
from orchestrator.core.timeutil import format_ts
from orchestrator.simulate import Simulation
from tests.chaos.cluster import Cluster

HERE = Path(__file__).resolve().parent
JOURNEYS = HERE / "journeys"
POLICIES = HERE / "policies.yaml"
PARTITIONS = 6
MAX_EVENT_BYTES = 65536
SEED = 20261123
DEFAULT_EVENTS = 5000
DEFAULT_RATE = 400.0           # events per second offered to the cluster
DEFAULT_LIMIT_S = 240.0        # per scenario
DEFAULT_BUDGET_S = 840.0       # the whole run (cluster start included); later scenarios get less
MIN_SCENARIO_S = 45.0          # what a scenario needs at least (and what is kept for each one left)
WORKER_READY_S = 120.0
MISSING_GRACE_S = 15.0         # after quiescence, how long still-missing outputs are waited for

log = logging.getLogger("chaos")


# =============================================================================== the load
@dataclass
class Line:
    """One message of the load, in produce order."""

    value: bytes
    key: bytes | None
    kind: str                          # event | dup | stale | timer | bad
    customer: str | None = None
    reason: str | None = None          # expected dead-letter reason of a bad line
    simulate: bool = True              # False: left out of the simulation (see expected())


@dataclass
class LoadSpec:
    events: int = DEFAULT_EVENTS       # good events (duplicates and bad lines come on top)
    bad_rate: float = 0.02             # bad lines per good event
    dup_rate: float = 0.03             # exact (or re-serialised) re-sends of an event, same event_id
    ooo_rate: float = 0.05             # events whose ts is earlier than the customer's previous ones
    wrong_key_rate: float = 0.05       # customers whose events are keyed by an account id
    stale_rate: float = 0.005          # events two days old: update state, enrol nobody
    timer_rate: float = 0.0            # extra customers whose only event starts the 5 s cx-timer wait
    replay_tail: float = 0.0           # re-produce this fraction of the lines at the end (all again)


CATEGORIES = ("shoes", "bags", "hats", "watches", "coats")
PROFILE_UPDATES: tuple[dict[str, Any], ...] = (
    {"consent": {"sms": True}},
    {"consent": {"sms": True, "email": True}},
    {"consent": {"email": False}},
    {"ltv_tier": "gold"},
    {"ltv_tier": "gold", "consent": {"sms": True}},
    {"ltv_tier": None},
    {"first_name": "Ann", "timezone": "Europe/Paris"},
)
# (type, weight); properties are drawn in _props
EVENT_TYPES = (
    ("signup.completed", 10), ("profile.updated", 10), ("product.viewed", 18), ("category.viewed", 8),
    ("cart.updated", 15), ("checkout.started", 9), ("order.completed", 6), ("message.opened", 5),
    ("message.clicked", 2), ("message.unsubscribed", 2), ("message.delivered", 2), ("account.closed", 1),
    ("page.viewed", 8),
)


def _props(rng: random.Random, etype: str) -> dict[str, Any] | None:
    if etype == "signup.completed":
        return {"plan": rng.choice(("free", "free", "pro", "pro", "blocked"))}
    if etype == "profile.updated":
        return dict(rng.choice(PROFILE_UPDATES))
    if etype == "product.viewed":
        return {"price": rng.choice((20, 60, 99, 100, 150, 250, 300)), "category": rng.choice(CATEGORIES)}
    if etype == "category.viewed":
        return {"category": rng.choice(CATEGORIES)}
    if etype == "cart.updated":
        return {"value": rng.choice((10, 30, 49.99, 50, 80.5, 149, 150, 200))}
    if etype == "order.completed":
        return {"value": rng.randint(20, 300)}
    if etype.startswith("message."):
        return {"action_id": f"a-{rng.getrandbits(40):010x}", "channel": rng.choice(("email", "push", "sms"))}
    if etype == "page.viewed":
        return {"path": rng.choice(("/", "/pricing", "/blog"))} if rng.random() < 0.8 else None
    return {} if rng.random() < 0.5 else None


def _bad_lines(now_ms: int, n: int) -> list[tuple[bytes, str]]:
    """Every kind of bad input of SPEC §2/§3, with the dead-letter reason each must get."""
    good = {"event_id": f"bad-{n}", "customer_id": f"bad-c{n}", "type": "cart.updated", "ts": now_ms - 60_000,
            "properties": {"value": 80}}

    def ev(**changes: Any) -> bytes:
        e = {**good, **changes}
        return orjson.dumps({k: v for k, v in e.items() if v is not _DROP})

    return [
        (b'{"event_id": "bad-%d", "customer_id": "c-1", "type": "cart.upd' % n, "invalid_json"),   # cut off
        (b"this is not JSON", "invalid_json"),
        (b"\xff\xfe\x00\x01 binary", "invalid_json"),
        (b"", "invalid_json"),                                                                  # empty value
        (ev(event_id=12345), "invalid_schema"),                                                 # wrong types
        (ev(ts=True), "invalid_schema"),
        (ev(properties=[1, 2, 3]), "invalid_schema"),
        (ev(customer_id=42), "invalid_schema"),
        (ev(customer_id=_DROP), "invalid_schema"),                                              # missing customer_id
        (ev(type=_DROP), "invalid_schema"),
        (ev(type="Cart Updated!"), "invalid_schema"),
        (ev(customer_id="c" * 200), "invalid_schema"),                                          # too long
        (ev(ts="yesterday"), "invalid_schema"),
        (ev(type="message.read", properties={"action_id": "a-1", "channel": "email"}), "invalid_schema"),
        (ev(type="profile.updated", properties=_DROP), "invalid_schema"),
        (b"[1, 2, 3]", "invalid_schema"),
        (ev(properties={"blob": "x" * 70_000}), "too_large"),                                  # > 64 KiB
        (ev(ts=now_ms + 2 * 3_600_000), "future_timestamp"),
        (ev(ts=format_ts(now_ms + 86_400_000)), "future_timestamp"),
        (ev(type="message.opened", properties={"channel": "email"}), "invalid_feedback"),      # no action_id
        (ev(type="message.clicked", properties={"action_id": "a-9", "channel": "fax"}), "invalid_feedback"),
        (ev(type="message.delivered", properties={"action_id": "a-9"}), "invalid_feedback"),
        (ev(type="message.unsubscribed", properties={"action_id": 42, "channel": "email"}), "invalid_feedback"),
    ]


_DROP = object()
BAD_KINDS = len(_bad_lines(0, 0))


def generate(spec: LoadSpec, *, seed: int, tag: str, now_ms: int,
             channels: tuple[str, ...]) -> list[Line]:
    """The load: a fixed-seed interleaving of per-customer funnels plus duplicates, out-of-order
    timestamps, stale events, wrongly keyed customers and every kind of bad input.

    Timestamps lie in the ten minutes before ``now_ms`` (so nothing is 'future' for the worker
    and every window of the policies sees all of them, on either clock).
    """
    rng = random.Random(seed)
    types, weights = zip(*EVENT_TYPES)
    scripts: list[list[tuple[str, dict[str, Any] | None]]] = []
    total = 0
    while total < spec.events:
        n = min(rng.randint(3, 14), spec.events - total)
        script = [(t, _props(rng, t)) for t in rng.choices(types, weights, k=n)]
        if rng.random() < 0.5:                       # most funnels start at sign-up
            script[0] = ("signup.completed", _props(rng, "signup.completed"))
        scripts.append(script)
        total += n
    customers = [f"{tag}-c{i:05d}" for i in range(len(scripts))]
    keys = {c: (f"acct-{i % 7}".encode() if rng.random() < spec.wrong_key_rate else c.encode())
            for i, c in enumerate(customers)}
    order = [i for i, s in enumerate(scripts) for _ in s]
    rng.shuffle(order)

    base = now_ms - 10 * 60_000
    step = max(1, (10 * 60_000 - 5_000) // max(1, len(order)))
    cursor = [0] * len(scripts)
    last_ts: dict[str, int] = {}
    pending_dups: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
    lines: list[Line] = []
    bad_counter = 0
    for pos, ci in enumerate(order):
        cid = customers[ci]
        etype, props = scripts[ci][cursor[ci]]
        cursor[ci] += 1
        ts = base + pos * step
        kind = "event"
        # (the first line stays a normal, recent event: simulate's clock starts at its ts)
        if pos and rng.random() < spec.ooo_rate and cid in last_ts:
            ts = last_ts[cid] - rng.randint(1_000, 180_000)         # earlier than this customer's last event
        elif pos and rng.random() < spec.stale_rate:
            ts, kind = now_ms - 2 * 86_400_000, "stale"
        last_ts[cid] = max(last_ts.get(cid, 0), ts)
        event: dict[str, Any] = {"event_id": f"{cid}-e{cursor[ci]}", "customer_id": cid, "type": etype,
                                 "ts": ts if rng.random() < 0.7 else format_ts(ts)}
        if props is not None:
            event["properties"] = props
        if rng.random() < 0.1:
            event["account_id"] = keys[cid].decode() if keys[cid] != cid.encode() else "acme"
        value = orjson.dumps(event)
        lines.append(Line(value, keys[cid], kind, cid))
        # Duplicates of earlier events of this customer come out after later ones of it.
        for due_pos, dup in [d for d in pending_dups[cid] if d[0] <= pos]:
            lines.append(Line(dup, keys[cid], "dup", cid))
            pending_dups[cid].remove((due_pos, dup))
        if rng.random() < spec.dup_rate:
            dup = value
            if rng.random() < 0.3:   # same event_id, re-serialised by a retrying producer
                alt = dict(event)
                alt["ts"] = format_ts(ts) if isinstance(event["ts"], int) else ts
                dup = orjson.dumps(dict(reversed(list(alt.items()))))
            pending_dups[cid].append((pos + rng.randint(0, 40), dup))
        if rng.random() < spec.bad_rate:                # kinds in turn, so each comes up
            raw, reason = _bad_lines(now_ms, bad_counter)[bad_counter % BAD_KINDS]
            key = rng.choice((None, b"garbage-key", cid.encode()))
            lines.append(Line(raw, key, "bad", None, reason))
            bad_counter += 1
    for cid, dups in pending_dups.items():                   # the rest at the end, in order
        for _, dup in dups:
            lines.append(Line(dup, keys[cid], "dup", cid))
    if spec.bad_rate > 0:                                      # every kind at least once
        while bad_counter < BAD_KINDS:
            raw, reason = _bad_lines(now_ms, bad_counter)[bad_counter]
            lines.insert(rng.randint(1, len(lines)), Line(raw, None, "bad", None, reason))
            bad_counter += 1
    if spec.timer_rate > 0:
        n_timer = int(spec.events * spec.timer_rate)
        for i in range(n_timer):
            cid = f"{tag}-t{i:05d}"
            value = orjson.dumps({"event_id": f"{cid}-e1", "customer_id": cid, "type": "timer.test",
                                  "ts": base + (i * 10 * 60_000) // max(1, n_timer), "properties": {"n": i}})
            lines.insert(rng.randint(1, len(lines)), Line(value, cid.encode(), "timer", cid))
    if spec.replay_tail > 0:                                   # a producer re-sending what it sent before
        lines.extend(Line(ln.value, ln.key, "dup" if ln.kind != "bad" else "bad", ln.customer, ln.reason)
                     for ln in lines[: int(len(lines) * spec.replay_tail)])
    # Self-check: each bad line is refused with the intended reason (the worker's own validator,
    # at the wall-clock time the worker will see), each other line is accepted.
    for ln in lines:
        parsed = parse_event(ln.value, max_bytes=MAX_EVENT_BYTES, now_ms=now_ms, channels=channels)
        got = parsed.reason if isinstance(parsed, Rejection) else None
        if got != ln.reason:
            raise AssertionError(f"load generator: {ln.value[:120]!r} gives {got}, meant {ln.reason}")
        # simulate's clock is virtual, so it cannot tell a 'future' timestamp: the worker
        # dead-letters those lines, simulate would decide on them. Leave them out of it.
        ln.simulate = ln.reason != "future_timestamp"
    return lines


# =============================================================================== expected outputs
def action_fingerprint(a: dict[str, Any]) -> tuple:
    """An action without its wall-clock fields; a timer's trigger id without its firing time."""
    trigger = str(a.get("trigger_event_id"))
    if trigger.startswith("timer:"):
        trigger = trigger.rsplit(":", 1)[0]
    return (a.get("customer_id"), a.get("channel"), a.get("template"), orjson.dumps(a.get("params"),
            option=orjson.OPT_SORT_KEYS), a.get("journey"), a.get("journey_version"), a.get("node"),
            trigger, a.get("event_ts"))


def suppression_fingerprint(s: dict[str, Any]) -> tuple:
    return (s.get("customer_id"), tuple(s.get("channels") or ()), s.get("journey"), s.get("reason"),
            tuple(s.get("cancels") or ()))


def decision_tuple(d: dict[str, Any]) -> tuple:
    return (d.get("customer_id"), d.get("journey"), d.get("journey_version"), d.get("node"), d.get("channel"),
            d.get("outcome"), d.get("detail"), d.get("action_id"), bool(d.get("shadow")))


@dataclass
class Expected:
    actions: dict[str, tuple] = field(default_factory=dict)        # action_id -> fingerprint
    action_line: dict[str, int] = field(default_factory=dict)      # action_id -> index of its line
    timer_actions: set[str] = field(default_factory=set)           # sent when a wait ended
    suppressions: dict[str, tuple] = field(default_factory=dict)
    decisions: set[tuple] = field(default_factory=set)
    dlq: dict[int, str] = field(default_factory=dict)              # line index -> reason
    outcomes: Counter = field(default_factory=Counter)


def make_engine() -> Engine:
    policies = load_policies(POLICIES)
    journeys, problems = load_journey_dir(JOURNEYS, channels=policies.channels)
    if problems:
        raise SystemExit("chaos journeys refused:\n" + "\n".join(problems))
    return Engine(JourneySet(journeys), policies)


def expected(lines: list[Line]) -> Expected:
    """Run the offline simulator over the lines in produce order (Kafka keeps each customer's
    events in order: one key, one partition), then run its clock on by a minute."""
    sim = Simulation(make_engine(), max_event_bytes=MAX_EVENT_BYTES)
    exp = Expected()

    def take(i: int, records: Any) -> None:
        for r in records:
            topic, v = r["topic"], r["value"]
            if topic.startswith("actions."):
                exp.actions[v["action_id"]] = action_fingerprint(v)
                exp.action_line.setdefault(v["action_id"], i)
                if str(v.get("trigger_event_id")).startswith("timer:"):
                    exp.timer_actions.add(v["action_id"])
            elif topic == "suppressions":
                exp.suppressions[v["suppression_id"]] = suppression_fingerprint(v)
            elif topic == "decisions":
                exp.decisions.add(decision_tuple(v))
                exp.outcomes[v["outcome"]] += 1
            elif topic == "dlq":
                exp.dlq[i] = v["reason"]

    for i, ln in enumerate(lines):
        if ln.simulate:
            take(i, sim.feed(ln.value, i))
        if ln.reason is not None:
            if ln.simulate and exp.dlq.get(i) != ln.reason:
                raise AssertionError(f"simulate gives {exp.dlq.get(i)} for a {ln.reason} line: {ln.value[:100]!r}")
            exp.dlq[i] = ln.reason
    # After the last line the worker's wall clock goes on: timers due within a minute fire (the
    # 5 s waits of cx-timer); the 30 d wait_for timeouts of the other journeys never do.
    take(len(lines), sim.advance((sim.clock_ms or 0) + 60_000))
    return exp


# =============================================================================== workers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape_total(port: int, prefix: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    total = 0.0
    for line in text.splitlines():
        if line.startswith(prefix) and not line.startswith("#"):
            with contextlib.suppress(ValueError, IndexError):
                total += float(line.rsplit(" ", 1)[1])
    return total


ALL_WORKERS: list["ChaosWorker"] = []     # for the last-resort cleanup in main()


class ChaosWorker:
    """One ``orchestrator worker`` process of a scenario (restartable; same data dir and port)."""

    def __init__(self, name: str, folder: Path, prefix: str, bootstrap: str) -> None:
        self.name = name
        self.data_dir = folder / f"{name}-data"
        self.log_path = folder / f"{name}.log"
        self.port = free_port()
        self.env = {**os.environ, "ORCH_BOOTSTRAP": bootstrap, "ORCH_REPLICATION": "3",
                    "ORCH_TOPIC_PREFIX": prefix, "ORCH_PARTITIONS": str(PARTITIONS),
                    "ORCH_DATA_DIR": str(self.data_dir), "ORCH_WEB_PORT": str(self.port),
                    "ORCH_JOURNEYS": str(JOURNEYS), "ORCH_POLICIES": str(POLICIES)}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.wanted = False          # started by the suite and not (yet) stopped or killed by it
        ALL_WORKERS.append(self)

    def spawn(self) -> None:
        self.starts += 1
        self.wanted = True
        with open(self.log_path, "ab") as out:
            out.write(f"\n===== chaos: start #{self.starts} of {self.name} at {time.strftime('%H:%M:%S')}\n".encode())
            self.proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "worker"], env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, deadline: float) -> None:
        while scrape_total(self.port, "orch_events_in_total") is None:
            if not self.alive():
                raise RuntimeError(f"worker {self.name} exited with {self.proc.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker {self.name} not ready in time; see {self.log_path}")
            time.sleep(0.2)

    def start(self, wait_s: float = WORKER_READY_S) -> "ChaosWorker":
        self.spawn()
        self.wait_ready(time.monotonic() + wait_s)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def consumed(self) -> float:
        return scrape_total(self.port, "orch_events_in_total") or 0.0

    def wait_active(self, wait_s: float = 60.0) -> bool:
        """Until this process has taken input (it holds partitions and processes); False if not."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.consumed() > 0:
                return True
            if not self.alive():
                return False
            time.sleep(0.2)
        return False

    def crashed(self) -> bool:
        """Exited while the suite wanted it running."""
        return self.wanted and self.proc is not None and self.proc.poll() is not None

    def kill(self) -> None:
        self.wanted = False
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout_s: float = 60.0) -> bool:
        """SIGTERM and wait; SIGKILL after ``timeout_s``. True if it stopped by itself."""
        self.wanted = False
        if not self.alive():
            return True
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            log.warning("worker %s ignored SIGTERM for %.0f s; killing it", self.name, timeout_s)
            self.kill()
            return False

    def wipe(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)


# =============================================================================== observing the outputs
class Observer:
    """Reads every output topic of a scenario from the start, for as long as the scenario runs."""

    def __init__(self, bootstrap: str, prefix: str, channels: tuple[str, ...]) -> None:
        self.bootstrap = bootstrap
        self.action_topics = [f"{prefix}.actions.{c}" for c in channels]
        self.topics = self.action_topics + [f"{prefix}.suppressions", f"{prefix}.decisions", f"{prefix}.dlq"]
        self.prefix = prefix
        self.action_records = 0
        self.action_counts: Counter = Counter()
        self.decided_at: dict[str, set[str]] = defaultdict(set)
        self.actions: dict[str, set[tuple]] = defaultdict(set)
        self.first_seen: dict[str, float] = {}
        self.supp_records = 0
        self.suppressions: dict[str, set[tuple]] = defaultdict(set)
        self.decision_records = 0
        self.decisions: set[tuple] = set()
        self.dlq_records = 0
        self.dlq: dict[tuple[int, int], set[str]] = defaultdict(set)   # (events partition, offset) -> reasons
        self.dlq_foreign: list[dict[str, Any]] = []
        self.unparsable = 0
        self._consumer: Any = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                          auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024)
        await self._consumer.start()
        tps = [TopicPartition(t, p) for t in self.topics for p in range(PARTITIONS)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a broker going away; the consumer reconnects
                log.debug("observer: %s", e)
                await asyncio.sleep(0.2)
                continue
            now = time.monotonic()
            for tp, msgs in batch.items():
                for m in msgs:
                    self._take(tp.topic, m.value, now)

    def _take(self, topic: str, raw: bytes, now: float) -> None:
        try:
            v = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.unparsable += 1
            return
        if topic in self.action_topics:
            self.action_records += 1
            aid = v.get("action_id")
            self.action_counts[aid] += 1
            self.decided_at[aid].add(v.get("decided_at"))
            self.actions[aid].add(action_fingerprint(v))
            self.first_seen.setdefault(aid, now)
        elif topic.endswith(".suppressions"):
            self.supp_records += 1
            self.suppressions[v.get("suppression_id")].add(suppression_fingerprint(v))
        elif topic.endswith(".decisions"):
            self.decision_records += 1
            self.decisions.add(decision_tuple(v))
        else:
            self.dlq_records += 1
            if v.get("topic") == f"{self.prefix}.events":
                self.dlq[(v.get("partition"), v.get("offset"))].add(v.get("reason"))
            else:
                self.dlq_foreign.append(v)

    async def caught_up(self) -> bool:
        tps = list(self._consumer.assignment())
        ends = await self._consumer.end_offsets(tps)
        for tp in tps:
            if await self._consumer.position(tp) < ends[tp]:
                return False
        return True

    async def drain(self, timeout_s: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if await self.caught_up():
                    return True
            except Exception as e:  # noqa: BLE001
                log.debug("observer drain: %s", e)
            await asyncio.sleep(0.2)
        return False

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()


# =============================================================================== scenarios
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

    def __init__(self, scenario: Scenario, cluster: Cluster, folder: Path, prefix: str) -> None:
        self.scenario, self.cluster, self.folder, self.prefix = scenario, cluster, folder, prefix
        self.workers: dict[str, ChaosWorker] = {}
        self.faults: list[Fault] = []
        self.acked = 0
        self.notes: list[str] = []

    def worker(self, name: str) -> ChaosWorker:
        if name not in self.workers:
            self.workers[name] = ChaosWorker(name, self.folder, self.prefix, self.cluster.bootstrap)
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


# =============================================================================== running one scenario
@dataclass
class Outcome:
    name: str
    workers: str = ""
    lines: int = 0
    expected_actions: int = 0
    action_records: int = 0
    lost: int = 0
    wrong: int = 0
    dup: int = 0
    dlq_expected: int = 0
    dlq_diff: int = 0
    supp_diff: int = 0
    dec_diff: int = 0
    recovery_s: float | None = None
    seconds: float = 0.0
    error: str | None = None
    faults: list[Fault] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return (self.error is None and self.lost == 0 and self.wrong == 0 and self.dlq_diff == 0
                and self.supp_diff == 0 and self.dec_diff == 0)


async def create_topics(bootstrap: str, prefix: str, channels: tuple[str, ...]) -> None:
    """The worker's own topics (same names and settings), made before the observer subscribes."""
    from orchestrator.runtime.topics import ensure_topics
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
    internal topic (which only grows while events or timers are being processed)."""
    from aiokafka import TopicPartition
    for topic in topics:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await probe.end_offsets(tps)
        committed = await admin.list_consumer_group_offsets(group, partitions=tps)
        for tp in tps:
            done = committed.get(tp)
            if ends[tp] > 0 and (done is None or done.offset < ends[tp]):
                return False
    return True


async def run_scenario(sc: Scenario, cluster: Cluster, root: Path, n_events: int, rate: float,
                       limit_s: float, keep_topics: bool) -> Outcome:
    started = time.monotonic()
    limit_at = started + limit_s
    out = Outcome(sc.name)
    folder = root / sc.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    prefix = f"cx-{sc.name}"
    ctx = Ctx(sc, cluster, folder, prefix)
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
    probe = AIOKafkaConsumer(bootstrap_servers=cluster.bootstrap, enable_auto_commit=False)
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
    log.info("  %s: lost %d, wrong %d, duplicates %d, dead letters off by %d, suppressions off by %d, "
             "decisions off by %d, recovery %s, %.0f s", "PASS" if out.passed else "FAIL", out.lost, out.wrong,
             out.dup, out.dlq_diff, out.supp_diff, out.dec_diff, _fmt_s(out.recovery_s), out.seconds)
    return out


def incomplete(exp: Expected, obs: Observer) -> bool:
    return (any(a not in obs.actions for a in exp.actions)
            or any(s not in obs.suppressions for s in exp.suppressions)
            or not exp.decisions <= obs.decisions)


def verify(out: Outcome, exp: Expected, obs: Observer, lines: list[Line], coords: list[tuple[int, int]]) -> None:
    """Expected (simulate) vs observed (the topics)."""
    seen = set(obs.actions)
    lost = sorted(set(exp.actions) - seen)
    unexpected = sorted(seen - set(exp.actions))
    changed = sorted(a for a in set(exp.actions) & seen if obs.actions[a] != {exp.actions[a]})
    out.lost, out.wrong = len(lost), len(unexpected) + len(changed)
    out.action_records = obs.action_records
    out.dup = obs.action_records - len(seen)
    d = out.details
    dup_by_node: Counter = Counter()
    for aid, n in obs.action_counts.items():
        if n > 1:
            fp = next(iter(obs.actions[aid]))
            dup_by_node[f"{fp[4]}/{fp[6]}"] += n - 1
    d["duplicates_by_journey_node"] = dict(dup_by_node.most_common())
    # A copy with the same decided_at is a re-send of the record (the outbox, or a producer retry);
    # another decided_at means the input was decided again (its state write was lost too).
    dups = [a for a, n in obs.action_counts.items() if n > 1]
    d["duplicates_resent"] = sum(1 for a in dups if len(obs.decided_at[a]) == 1)
    d["duplicates_redecided"] = sum(1 for a in dups if len(obs.decided_at[a]) > 1)
    d["lost_actions"] = [{"action_id": a, "line": exp.action_line[a], "action": exp.actions[a],
                          "line_value": lines[exp.action_line[a]].value.decode(errors="replace")[:300]
                          if exp.action_line[a] < len(lines) else "(timer after the last line)"} for a in lost[:50]]
    d["unexpected_actions"] = [{"action_id": a, "seen": sorted(obs.actions[a])} for a in unexpected[:50]]
    d["changed_actions"] = [{"action_id": a, "expected": exp.actions[a], "seen": sorted(obs.actions[a])}
                            for a in changed[:50]]
    # dead letters, by the coordinates the bad lines were acknowledged at
    want = {coords[i]: r for i, r in exp.dlq.items() if i < len(coords)}
    got = {k: v for k, v in obs.dlq.items()}
    dlq_lost = [k for k in want if want[k] not in got.get(k, set())]
    dlq_wrong = [k for k in got if k not in want or got[k] != {want[k]}]
    out.dlq_diff = len(dlq_lost) + len(dlq_wrong) + len(obs.dlq_foreign) + obs.unparsable
    d["dead_letters_expected_by_reason"] = dict(Counter(want.values()))
    d["dead_letters_seen_by_reason"] = dict(Counter(r for rs in got.values() for r in rs))
    d["dead_letter_records"] = obs.dlq_records
    d["dead_letters_lost"] = [{"coord": k, "reason": want[k]} for k in dlq_lost[:20]]
    d["dead_letters_wrong"] = [{"coord": k, "seen": sorted(got[k]), "expected": want.get(k)} for k in dlq_wrong[:20]]
    d["dead_letters_from_other_topics"] = obs.dlq_foreign[:10]
    # suppressions and decisions
    s_lost = [s for s in exp.suppressions if s not in obs.suppressions]
    s_wrong = [s for s in obs.suppressions if s not in exp.suppressions or obs.suppressions[s] != {exp.suppressions[s]}]
    out.supp_diff = len(s_lost) + len(s_wrong)
    d["suppressions"] = {"expected": len(exp.suppressions), "seen": len(obs.suppressions),
                         "records": obs.supp_records, "lost": s_lost[:20],
                         "wrong": [{"id": s, "seen": sorted(obs.suppressions[s]), "expected": exp.suppressions.get(s)}
                                   for s in s_wrong[:20]]}
    dec_lost = exp.decisions - obs.decisions
    dec_wrong = obs.decisions - exp.decisions
    out.dec_diff = len(dec_lost) + len(dec_wrong)
    d["decisions"] = {"expected": len(exp.decisions), "seen": len(obs.decisions), "records": obs.decision_records,
                      "lost": sorted(map(list, dec_lost), key=str)[:20],
                      "wrong": sorted(map(list, dec_wrong), key=str)[:20]}


def recovery(f: Fault, exp: Expected, obs: Observer) -> float | None:
    """Seconds from the fault until every expected action of the lines acknowledged before the
    fault's step was over (the restarted worker ready, the new workers up, ...) had been seen;
    actions sent when a wait ended are left out (they are late on purpose). None if some of
    those actions never were seen."""
    upto = f.acked if f.acked_end is None else f.acked_end
    last = f.at
    for aid, line in exp.action_line.items():
        if line < upto and aid not in exp.timer_actions:
            seen = obs.first_seen.get(aid)
            if seen is None:
                return None
            last = max(last, seen)
    return last - f.at


# =============================================================================== report
def _fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def table(outcomes: list[Outcome]) -> str:
    head = ("scenario", "starts", "lines", "actions", "lost", "dup", "wrong", "dlq±", "supp±", "dec±",
            "recovery s", "time s", "result")
    rows = [head]
    for o in outcomes:
        result = "PASS" if o.passed else "ERROR" if o.error and not (o.lost or o.wrong) else "FAIL"
        rows.append((o.name, o.workers, str(o.lines), str(o.expected_actions), str(o.lost), str(o.dup),
                     str(o.wrong), str(o.dlq_diff), str(o.supp_diff), str(o.dec_diff), _fmt_s(o.recovery_s),
                     f"{o.seconds:.0f}", result))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    lines = [fmt(rows[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows[1:]]
    return "\n".join(lines)


def write_report(root: Path, outcomes: list[Outcome], args: argparse.Namespace) -> Path:
    path = root / "report.json"
    doc = {"events": args.events, "rate": args.rate, "scenarios": [
        {"name": o.name, "passed": o.passed, "error": o.error, "lines": o.lines,
         "worker_starts": o.workers, "expected_actions": o.expected_actions, "action_records": o.action_records,
         "lost": o.lost, "wrong": o.wrong, "duplicates": o.dup, "dead_letters_off": o.dlq_diff,
         "suppressions_off": o.supp_diff, "decisions_off": o.dec_diff, "recovery_s": o.recovery_s,
         "seconds": round(o.seconds, 1), "notes": o.notes,
         "faults": [{"label": f.label, "lines_acked_before": f.acked,
                    "lines_acked_before_step_end": f.acked_end, "recovery_s": f.recovery_s} for f in o.faults],
         **o.details} for o in outcomes]}
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2, default=str))
    return path


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
    p.add_argument("--keep", action="store_true", help="keep the cluster running and the topics at the end")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        p.error(f"unknown scenario(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(SCENARIOS)}")
    args.names = names
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
        for k, name in enumerate(args.names):
            left = args.budget - (time.monotonic() - suite_started) - MIN_SCENARIO_S * (len(args.names) - k - 1)
            if left < MIN_SCENARIO_S:
                outcomes.append(Outcome(name, error=f"not run: the suite's {args.budget:.0f} s budget is spent"))
                log.error("[%s] not run: the suite's %.0f s budget is spent", name, args.budget)
                continue
            await asyncio.to_thread(cluster.wait_in_sync, 60)
            outcomes.append(await run_scenario(SCENARIOS[name], cluster, root, args.events, args.rate,
                                               min(args.limit, left), args.keep))
    finally:
        if not args.keep:
            await asyncio.to_thread(cluster.stop)
    report = write_report(root, outcomes, args)
    print()
    print(f"chaos suite: {len(outcomes)} scenarios, 3 brokers (RF 3, min.insync.replicas 2), "
          f"{args.events} events each at {args.rate:g}/s, {time.monotonic() - suite_started:.0f} s in all")
    print(table(outcomes))
    print(f"\nlost/wrong: action_ids expected by simulate but never seen / seen but not expected (or changed);"
          f"\ndup: action records - distinct action_ids (at-least-once re-sends; adapters de-duplicate)."
          f"\ndetails: {report}")
    failed = [o for o in outcomes if not o.passed]
    for o in failed:
        print(f"FAILED {o.name}: {o.error or ''} lost={o.lost} wrong={o.wrong} dlq±={o.dlq_diff} "
              f"supp±={o.supp_diff} dec±={o.dec_diff}; worker logs: {root / o.name}")
    return 1 if failed or len(outcomes) < len(args.names) else 0


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
