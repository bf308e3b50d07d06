"""``make run``: a local broker, a worker with the example journeys, demo traffic,
and a live one-line progress view. Ctrl-C stops everything it started, and is a normal
end (exit 0): the demo takes the terminal's foreground for its own process group, so Ctrl-C
reaches the demo alone (not a ``make`` above it, which would report an error), and the demo
stops its worker with SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from orchestrator.config import Settings
from orchestrator.observability.progress import ProgressLine
from orchestrator.observability.scrape import scrape
from orchestrator.observability.scrape import total as _sum

CATEGORIES = ("shoes", "bags", "jackets", "watches", "hats")


class DemoTraffic:
    """Synthetic shoppers: sign-ups, product views, carts, orders, profile updates, a few bad events."""

    def __init__(self, seed: int = 7, customers: int = 5000) -> None:
        self.rng = random.Random(seed)
        self.customers = customers
        self.n = 0
        self.run_id = f"{int(time.time())}"

    def next(self) -> bytes:
        r, rng = self.rng, self.rng.random()
        self.n += 1
        cid = f"demo-{self.run_id}-{int(r.paretovariate(0.6)) % self.customers}"
        ts = int(time.time() * 1000)
        eid = f"d-{self.run_id}-{self.n}"
        if rng < 0.01:
            return b'{"event_id": "broken", this is not json'
        if rng < 0.10:
            return orjson.dumps({"event_id": eid, "customer_id": cid, "type": "signup.completed", "ts": ts,
                                 "properties": {"plan": r.choice(["free", "pro"])}})
        if rng < 0.55:
            return orjson.dumps({"event_id": eid, "customer_id": cid, "type": "product.viewed", "ts": ts,
                                 "properties": {"price": r.randint(20, 300), "category": r.choice(CATEGORIES)}})
        if rng < 0.80:
            return orjson.dumps({"event_id": eid, "customer_id": cid, "type": "cart.updated", "ts": ts,
                                 "properties": {"value": round(r.uniform(10, 300), 2)}})
        if rng < 0.92:
            return orjson.dumps({"event_id": eid, "customer_id": cid, "type": "order.completed", "ts": ts,
                                 "properties": {"total": round(r.uniform(10, 300), 2)}})
        return orjson.dumps({"event_id": eid, "customer_id": cid, "type": "profile.updated", "ts": ts,
                             "properties": {"timezone": r.choice(["Europe/Paris", "America/New_York", "UTC"]),
                                            "consent": {"sms": r.random() < 0.5}}})


class LagProbe:
    """Events not yet consumed by the worker's group, over all partitions of the events topic.

    One consumer and one admin client for the whole run (a consumer stopped right after it
    started trips an aiokafka shutdown race).
    """

    def __init__(self, settings: Settings) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient
        self.settings = settings
        self.parts: list[int] | None = None
        self.admin = AIOKafkaAdminClient(**settings.aiokafka_kwargs())
        self.consumer = AIOKafkaConsumer(**settings.aiokafka_kwargs(), enable_auto_commit=False)

    async def start(self) -> None:
        from orchestrator.runtime.kafka import start_client
        await start_client(self.admin, self.settings)
        await start_client(self.consumer, self.settings)

    async def close(self) -> None:
        await asyncio.sleep(0)
        await self.consumer.stop()
        await self.admin.close()

    async def lag(self) -> int | None:
        from aiokafka import TopicPartition
        topic = self.settings.events_topic
        try:
            if self.parts is None:
                described = await self.admin.describe_topics([topic])
                self.parts = [p["partition"] for d in described if d["error_code"] == 0 for p in d["partitions"]]
            parts = self.parts
            tps = [TopicPartition(topic, p) for p in parts]
            if not tps:
                return None
            ends = await self.consumer.end_offsets(tps)
            committed = await self.admin.list_consumer_group_offsets(self.settings.app_id, partitions=tps)
        except Exception:
            return None
        lag = 0
        for tp in tps:
            done = committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0
            lag += max(0, ends[tp] - done)
        return lag


class Rates:
    """Rates from two scrapes of the worker's /metrics, as the text of the progress line."""

    def __init__(self, channels: tuple[str, ...]) -> None:
        self.channels = channels
        self.last: dict[str, float] = {}
        self.last_t = time.monotonic()

    def render(self, metrics: dict[str, float], lag: int | None, produced: int) -> str:
        t = time.monotonic()
        dt = max(t - self.last_t, 1e-6)
        prev = self.last or metrics

        def rate(prefix: str) -> float:
            return (_sum(metrics, prefix) - _sum(prev, prefix)) / dt

        if not metrics:
            return f"waiting for the worker... (demo events sent: {produced})"
        by_channel = " ".join(f"{c} {rate(f'orch_actions_total{{channel={c}}}'):.0f}" for c in self.channels
                              if _sum(metrics, f"orch_actions_total{{channel={c}}}"))
        line = (f"events in {rate('orch_events_in_total'):6.0f}/s | actions out {rate('orch_actions_total'):5.0f}/s"
                f" ({by_channel or 'none yet'}) | actions total {_sum(metrics, 'orch_actions_total'):.0f}"
                f" | dead letters {_sum(metrics, 'orch_dead_letters_total'):.0f}"
                f" | lag {'?' if lag is None else lag}")
        self.last, self.last_t = metrics, t
        return line


async def _run(settings: Settings, rate: float, duration_s: float, worker: subprocess.Popen) -> None:
    from aiokafka import AIOKafkaProducer
    from orchestrator.core import load_policies
    channels = load_policies(settings.policies).channels
    from orchestrator.runtime.kafka import start_client
    producer = AIOKafkaProducer(**settings.aiokafka_kwargs(), linger_ms=10)
    await start_client(producer, settings)
    probe = LagProbe(settings)
    await probe.start()
    traffic = DemoTraffic()
    rates = Rates(channels)
    line = ProgressLine(sys.stdout, every_s=1.0)
    url = f"http://{settings.web_host}:{settings.web_port}/metrics"
    started = time.monotonic()
    next_report = started + 1.0
    interval = 1.0 / rate
    sent = 0
    try:
        while duration_s <= 0 or time.monotonic() - started < duration_s:
            if worker.poll() is not None:
                raise SystemExit(f"the worker exited with code {worker.returncode}")
            due = int((time.monotonic() - started) / interval)
            while sent < due:
                value = traffic.next()
                from orchestrator.admin.produce import key_of
                await producer.send(settings.events_topic, value=value, key=key_of(value))
                sent += 1
            if time.monotonic() >= next_report:
                metrics = await asyncio.to_thread(scrape, url)
                lag = await probe.lag()
                line.show(rates.render(metrics, lag, sent), force=True)
                next_report += 1.0
            await asyncio.sleep(min(interval, 0.05))
    finally:
        await producer.stop()
        await probe.close()


def _set_foreground(fd: int, pgrp: int) -> None:
    """``tcsetpgrp`` from a process group that may be in the background (which SIGTTOU would stop)."""
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(fd, pgrp)
    finally:
        signal.signal(signal.SIGTTOU, previous)


def take_terminal() -> Callable[[], None]:
    """Make Ctrl-C reach this process only; returns the function that gives the terminal back.

    Under ``make run``, the demo shares make's process group, so Ctrl-C interrupts make too and
    make reports "*** [run] Interrupt" or "Error 1" for what was a requested stop. In a group of
    its own, in the terminal's foreground, the demo alone gets Ctrl-C, stops cleanly and exits 0,
    and make with it. Nothing changes without a terminal, or when the demo already leads its own
    group (started from a shell).
    """
    def nothing() -> None:
        return None

    try:
        fd = sys.stdin.fileno()
        if not os.isatty(fd) or os.getpgrp() == os.getpid() or os.tcgetpgrp(fd) != os.getpgrp():
            return nothing
        previous = os.getpgrp()
        os.setpgid(0, 0)
        _set_foreground(fd, os.getpgrp())
    except (OSError, ValueError):
        return nothing

    def give_back() -> None:
        with contextlib.suppress(OSError):
            _set_foreground(fd, previous)
    return give_back


def run_demo(*, rate: float = 200.0, duration_s: float = 0.0) -> int:
    from orchestrator import localkafka
    from orchestrator.config import external_bootstrap
    from orchestrator.core import load_policies
    from orchestrator.runtime.topics import check_topics, ensure_topics
    settings = Settings.from_env()
    started_kafka = False
    if not external_bootstrap():
        was_running = localkafka.status().get("running", False)
        print("starting the local Kafka broker..." if not was_running else "local Kafka broker already running")
        localkafka.up()
        started_kafka = not was_running
    # The topics as the worker makes them, before the demo's traffic (with the broker's defaults, a
    # producer-created events topic would not match ORCH_PARTITIONS) and before the worker.
    asyncio.run(check_topics(settings))
    asyncio.run(ensure_topics(settings, load_policies(settings.policies).channels))
    asyncio.run(check_topics(settings))
    home = Path(os.environ.get("ORCH_HOME") or ".orch")
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "demo-worker.log"
    log = open(log_path, "ab")
    print(f"starting a worker (journeys: {settings.journeys}, log: {log_path}, "
          f"metrics: http://{settings.web_host}:{settings.web_port}/metrics)")
    give_back = take_terminal()
    # Its own process group: Ctrl-C reaches the demo only, which then stops the worker with SIGTERM.
    worker = subprocess.Popen([sys.executable, "-m", "orchestrator", "worker"], stdout=log, stderr=log,
                              process_group=0)
    print(f"sending demo traffic at {rate:.0f} events/s; Ctrl-C stops everything")
    code = 0
    try:
        asyncio.run(_run(settings, rate, duration_s, worker))
    except KeyboardInterrupt:
        pass
    except SystemExit as exc:
        print(f"\n{exc}; see {log_path}", file=sys.stderr)
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)     # a second Ctrl-C must not orphan the worker
        try:
            if worker.poll() is not None and code == 0:
                print(f"\nthe worker exited with code {worker.returncode}; see {log_path}", file=sys.stderr)
                code = 1
            print("\nstopping the worker...")
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait()
            log.close()
            if started_kafka:
                print("stopping the local Kafka broker...")
                localkafka.down()
        finally:
            give_back()
            signal.signal(signal.SIGINT, signal.default_int_handler)
    return code
