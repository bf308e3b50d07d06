"""``make run``: a local broker, a worker with the example journeys, demo traffic,
and a live one-line progress view. Ctrl-C stops everything it started."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from orchestrator.config import Settings
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
        await self.admin.start()
        await self.consumer.start()

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


class ProgressLine:
    """Rates from two scrapes of the worker's /metrics, printed on one line."""

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
    producer = AIOKafkaProducer(**settings.aiokafka_kwargs(), linger_ms=10)
    await producer.start()
    probe = LagProbe(settings)
    await probe.start()
    traffic = DemoTraffic()
    progress = ProgressLine(channels)
    url = f"http://{settings.web_host}:{settings.web_port}/metrics"
    started = time.monotonic()
    next_report = started + 1.0
    interval = 1.0 / rate
    sent = 0
    try:
        while duration_s <= 0 or time.monotonic() - started < duration_s:
            if worker.poll() is not None:
                raise SystemExit(f"the worker exited with code {worker.returncode}; see .orch/demo-worker.log")
            due = int((time.monotonic() - started) / interval)
            while sent < due:
                value = traffic.next()
                from orchestrator.runtime.client import key_of
                await producer.send(settings.events_topic, value=value, key=key_of(value))
                sent += 1
            if time.monotonic() >= next_report:
                metrics = await asyncio.to_thread(scrape, url)
                lag = await probe.lag()
                line = progress.render(metrics, lag, sent)
                sys.stdout.write("\r\x1b[2K" + line if sys.stdout.isatty() else line + "\n")
                sys.stdout.flush()
                next_report += 1.0
            await asyncio.sleep(min(interval, 0.05))
    finally:
        await producer.stop()
        await probe.close()


def run_demo(*, rate: float = 200.0, duration_s: float = 0.0) -> int:
    from orchestrator import localkafka
    from orchestrator.config import external_bootstrap
    settings = Settings.from_env()
    started_kafka = False
    if not external_bootstrap():
        was_running = localkafka.status().get("running", False)
        print("starting the local Kafka broker..." if not was_running else "local Kafka broker already running")
        localkafka.up()
        started_kafka = not was_running
    Path(".orch").mkdir(exist_ok=True)
    log = open(".orch/demo-worker.log", "ab")
    print(f"starting a worker (journeys: {settings.journeys}, log: .orch/demo-worker.log, "
          f"metrics: http://{settings.web_host}:{settings.web_port}/metrics)")
    worker = subprocess.Popen([sys.executable, "-m", "orchestrator", "worker"], stdout=log, stderr=log)
    print(f"sending demo traffic at {rate:.0f} events/s; Ctrl-C stops everything")
    code = 0
    try:
        asyncio.run(_run(settings, rate, duration_s, worker))
    except KeyboardInterrupt:
        pass
    except SystemExit as exc:
        print(f"\n{exc}", file=sys.stderr)
        code = 1
    finally:
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
    return code
