"""``make run``: a local broker, a worker with the example journeys, demo traffic, and a live
one-line progress view, each step on a line of its own with its seconds while it waits.

Ctrl-C at any moment stops everything the demo started (worker, broker, traffic) and is a normal
end (exit 0): the demo takes the terminal's foreground for its own process group first of all
(:func:`~orchestrator.admin.makerun.take_terminal`), so Ctrl-C reaches the demo alone, not a
``make`` above it (which would report an error); the worker runs in a group of its own and the
broker in a session of its own, and the demo stops them (SIGTERM) whenever it stops.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time
from typing import IO

import orjson

from orchestrator.admin.makerun import take_terminal
from orchestrator.config import Settings, external_bootstrap, orch_home
from orchestrator.observability.progress import ProgressLine, ticking
from orchestrator.observability.scrape import scrape
from orchestrator.observability.scrape import total as _sum

CATEGORIES = ("shoes", "bags", "jackets", "watches", "hats")


class DemoTraffic:
    """Synthetic shoppers: sign-ups, product views, carts, checkouts, orders, profile updates, and 1 % of
    bad events on purpose (not JSON: dead-lettered ``invalid_json``)."""

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
        if rng < 0.50:
            return orjson.dumps({"event_id": eid, "customer_id": cid, "type": "product.viewed", "ts": ts,
                                 "properties": {"price": r.randint(20, 300), "category": r.choice(CATEGORIES)}})
        if rng < 0.72:
            return orjson.dumps({"event_id": eid, "customer_id": cid, "type": "cart.updated", "ts": ts,
                                 "properties": {"value": round(r.uniform(10, 300), 2)}})
        if rng < 0.80:
            return orjson.dumps({"event_id": eid, "customer_id": cid, "type": "checkout.started", "ts": ts,
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
        self.consumer = AIOKafkaConsumer(**settings.aiokafka_kwargs(), enable_auto_commit=False, isolation_level="read_committed")

    async def start(self) -> None:
        from orchestrator.kafkaio.clients import start_client
        await start_client(self.admin, self.settings)
        await start_client(self.consumer, self.settings)

    async def close(self) -> None:
        await asyncio.sleep(0)
        await self.consumer.stop()
        await self.admin.close()

    async def lag(self) -> int | None:
        from aiokafka import TopicPartition
        topic = self.settings.topics.events
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

    def __init__(self, channels: tuple[str, ...], dlq_topic: str = "orch.dlq") -> None:
        self.channels = channels
        self.dlq_topic = dlq_topic
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
                f" | dead letters {self.dead_letters(metrics)}"
                f" | lag {'?' if lag is None else lag}")
        self.last, self.last_t = metrics, t
        return line

    def dead_letters(self, metrics: dict[str, float]) -> str:
        """The count, with what the demo's own bad events are (the rest, if any, is worth a look)."""
        dead = _sum(metrics, "orch_dead_letters_total")
        deliberate = _sum(metrics, "orch_dead_letters_total{reason=invalid_json}")
        if not dead:
            return "0"
        if dead == deliberate:
            return f"{dead:.0f} (the demo's deliberate bad events)"
        return (f"{dead:.0f} ({deliberate:.0f} the demo's deliberate bad events, {dead - deliberate:.0f} others: "
                f"see {self.dlq_topic})")


async def _run(settings: Settings, rate: float, duration_s: float, demo: "Demo") -> None:
    from aiokafka import AIOKafkaProducer
    from orchestrator.core import load_policies
    channels = load_policies(settings.policies).channels
    from orchestrator.kafkaio.clients import start_client
    producer = AIOKafkaProducer(**settings.aiokafka_kwargs(), linger_ms=10)
    await start_client(producer, settings)
    probe = LagProbe(settings)
    await probe.start()
    traffic = DemoTraffic()
    rates = Rates(channels, settings.topics.dlq)
    line = ProgressLine(sys.stdout, every_s=1.0)
    url = f"http://{settings.web_host}:{settings.web_port}/metrics"
    started = time.monotonic()
    next_report = started + 1.0
    interval = 1.0 / rate
    sent = 0
    try:
        while duration_s <= 0 or time.monotonic() - started < duration_s:
            demo.check_worker()
            due = int((time.monotonic() - started) / interval)
            while sent < due:
                value = traffic.next()
                from orchestrator.admin.produce import key_of
                await producer.send(settings.topics.events, value=value, key=key_of(value))
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


class WorkerExited(Exception):
    """The demo's worker ended on its own; ``str()`` says how, with its last log line."""


class Demo:
    """What the demo starts, in order (the local broker unless one runs already or ``ORCH_BOOTSTRAP``
    names a cluster, the topics, a worker, the traffic), and :meth:`stop`, which stops what it started
    whenever the demo ends, Ctrl-C included."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        home = orch_home()
        self.log_path = home / "demo-worker.log"
        self.started_broker = False          # set before the broker starts: a Ctrl-C may come at any moment
        self.worker: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] | None = None

    def run(self, rate: float, duration_s: float) -> None:
        from orchestrator import localkafka
        from orchestrator.core import load_policies
        from orchestrator.localkafka.install import jars_complete, kafka_version, lib_dir
        from orchestrator.kafkaio.topics import check_topics, ensure_topics
        from orchestrator.runtime.web import read_health
        s = self.settings
        if not external_bootstrap():
            status = localkafka.status()
            if status.get("running"):
                print(f"the local Kafka broker already runs at {status['bootstrap']}")
            else:
                version = kafka_version()
                fetch = "" if jars_complete(lib_dir(version), version) else f" (fetching Kafka {version} first)"
                self.started_broker = True
                with ticking(f"starting the local Kafka broker at {status['bootstrap']}{fetch}..."):
                    localkafka.up()
        # The topics as the worker makes them, before the demo's traffic (with the broker's defaults, a
        # producer-created events topic would not match ORCH_PARTITIONS) and before the worker.
        with ticking(f"creating the topics {s.topic_prefix}.* ({s.partitions} partitions) if missing..."):
            asyncio.run(check_topics(s))
            asyncio.run(ensure_topics(s, load_policies(s.policies).channels))
            asyncio.run(check_topics(s))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "ab")
        # Its own process group: Ctrl-C reaches the demo only, which then stops the worker with SIGTERM.
        self.worker = subprocess.Popen([sys.executable, "-m", "orchestrator", "worker"], stdout=self.log,
                                       stderr=self.log, process_group=0)
        with ticking(f"starting a worker (journeys: {s.journeys}, log: {self.log_path})..."):
            while (answer := read_health(s.web_host, s.web_port)) is None or not answer.get("partitions"):
                self.check_worker()
                time.sleep(0.2)
        print(f"the worker holds partitions {', '.join(map(str, answer['partitions']))}; metrics: "
              f"http://{s.web_host}:{s.web_port}/metrics")
        print(f"sending demo traffic at {rate:.0f} events/s; Ctrl-C stops everything")
        asyncio.run(_run(s, rate, duration_s, self))

    def check_worker(self) -> None:
        """Raise :class:`WorkerExited` if the worker has ended."""
        if self.worker is None or self.worker.poll() is None:
            return
        last = ""
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
            last = f": {lines[-1]}" if lines else ""
        except OSError:
            pass
        raise WorkerExited(f"the worker exited with code {self.worker.returncode}{last} (see {self.log_path})")

    def stop(self) -> None:
        from orchestrator import localkafka
        if self.worker is not None and self.worker.poll() is None:
            print("stopping the worker...")
            self.worker.send_signal(signal.SIGTERM)
            try:
                self.worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()
        if self.log is not None:
            self.log.close()
        if self.started_broker and localkafka.status().get("running"):
            print("stopping the local Kafka broker...")
            localkafka.down()


def run_demo(*, rate: float = 200.0, duration_s: float = 0.0) -> int:
    """The demo until Ctrl-C (or ``duration_s``): 0 then, 1 if the worker ended on its own; every
    process it started is stopped either way."""
    give_back = take_terminal()              # first of all: from now on Ctrl-C reaches the demo alone
    demo = Demo(Settings.from_env())
    code = 0
    try:
        demo.run(rate, duration_s)
    except KeyboardInterrupt:
        print("\nCtrl-C: stopping what the demo started")
    except WorkerExited as exc:
        print(f"\n{exc}", file=sys.stderr)
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)    # a second Ctrl-C must not orphan the worker or broker
        try:
            demo.stop()
        finally:
            give_back()
            signal.signal(signal.SIGINT, signal.default_int_handler)
    print("the demo has stopped everything it started")
    return code
