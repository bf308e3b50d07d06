"""`orchestrator adapter webhook` against the real broker and a real local HTTP server.

The server (:class:`Provider`) behaves like providers that honour ``Idempotency-Key`` (Stripe,
Twilio): the first request with a key is processed (a *delivery*, counted per action id) and its
answer stored; a repeated key gets the stored answer and is not a second delivery (a *re-POST*,
counted); a key whose first request is still being processed gets 409. A 5xx is not stored, so a
retry is processed. Scripts make chosen action ids answer 503 or 400 first.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from orchestrator.testing.childproc import ChildProcess
from orchestrator.config import Settings
from orchestrator.kafkaio.topics import ensure_topics
from tests.integration.harness import BOOTSTRAP, WorkerProcess, dumps, event, free_port, produce, read_all, scrape, total

READY_TIMEOUT_S = 120.0
PARTITIONS = 4
SECRET = "Bearer s3cr3t-token-never-logged"


# ---------------------------------------------------------------------------- the provider
class Provider:
    """An HTTP server in a thread of its own (so tests may block), honouring Idempotency-Key."""

    def __init__(self, *, latency_s: float = 0.0) -> None:
        self.latency_s = latency_s
        self.port = free_port()
        self.lock = threading.Lock()
        self.deliveries: collections.Counter[str] = collections.Counter()   # processed, per key
        self.reposts: collections.Counter[str] = collections.Counter()      # repeated keys answered from the record
        self.posts: list[dict[str, Any]] = []                               # every request, in arrival order
        self.answers: dict[str, tuple[int, bytes]] = {}
        self.in_progress: set[str] = set()
        self.script: dict[str, list[int]] = {}        # key -> statuses to answer before processing
        self.suppressions: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/send?token=in-the-query"

    @property
    def suppressions_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/suppressions"

    def __enter__(self) -> "Provider":
        self._thread.start()
        assert self._ready.wait(30), "provider did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/send", self._send)
        app.router.add_post("/suppressions", self._suppression)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    async def _send(self, request: web.Request) -> web.Response:
        body = await request.read()
        key = request.headers.get("Idempotency-Key", "")
        with self.lock:
            self.posts.append({"key": key, "body": orjson.loads(body), "at": time.monotonic(),
                               "headers": dict(request.headers)})
            if key in self.answers:
                self.reposts[key] += 1
                status, text = self.answers[key]
                return web.Response(status=status, body=text, headers={"Idempotent-Replayed": "true"})
            if key in self.in_progress:
                return web.Response(status=409, text="a request with this key is in progress")
            statuses = self.script.get(key)
            if statuses:
                status = statuses.pop(0)
                if status < 500:
                    self.answers[key] = (status, b'{"error": "scripted"}')
                return web.Response(status=status, body=b'{"error": "scripted"}')
            self.in_progress.add(key)
            self.deliveries[key] += 1
        if self.latency_s:
            await asyncio.sleep(self.latency_s)     # processed; the answer is still on its way
        text = orjson.dumps({"id": f"msg-{uuid.uuid4().hex[:8]}"})
        with self.lock:
            self.answers[key] = (200, text)
            self.in_progress.discard(key)
        return web.Response(status=200, body=text, content_type="application/json")

    async def _suppression(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        with self.lock:
            self.suppressions.append({"key": request.headers.get("Idempotency-Key"), "body": body})
        return web.Response(status=204)

    def delivered(self) -> int:
        with self.lock:
            return len(self.deliveries)

    def wait_delivered(self, n: int, timeout_s: float = 120.0, adapter: "AdapterProcess | None" = None) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.delivered() >= n:
                return
            if adapter is not None and adapter.exit_code() is not None:
                raise AssertionError(f"adapter exited with {adapter.exit_code()}:\n{adapter.log_tail()}")
            time.sleep(0.01)
        raise AssertionError(f"{self.delivered()} < {n} delivered in {timeout_s}s"
                             + (f":\n{adapter.log_tail()}" if adapter else ""))


# ---------------------------------------------------------------------------- the adapter process
class AdapterProcess(ChildProcess):
    """``orchestrator adapter webhook`` in a subprocess, on its own prefix, data dir and port
    (``cwd``: run there with the default data dir, which is relative to it)."""

    def __init__(self, tmp: Path, prefix: str, url: str, *args: str, channels: str = "email",
                 data_dir: Path | None = None, extra_env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.prefix = prefix
        self.port = free_port()
        self.data_dir = data_dir or tmp / f"adapter-{prefix}"
        env = {**os.environ, "ORCH_BOOTSTRAP": BOOTSTRAP, "ORCH_TOPIC_PREFIX": prefix,
               "ORCH_ADAPTER_HEADER_AUTHORIZATION": SECRET, **(extra_env or {})}
        env.pop("ORCH_ADAPTER_DATA_DIR", None)
        argv = [sys.executable, "-m", "orchestrator", "adapter", "webhook", "--url", url, "--channel", channels,
                "--web-port", str(self.port), *([] if cwd else ["--data-dir", str(self.data_dir)]), *args]
        super().__init__(argv, env, tmp / f"adapter-{prefix}.log", cwd=cwd)

    def start(self) -> "AdapterProcess":
        super().start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.exit_code() is not None:
                raise AssertionError(f"adapter exited with {self.exit_code()}:\n{self.log_tail()}")
            if self.health().get("ready"):
                return self
            time.sleep(0.1)
        raise AssertionError(f"adapter not ready after {READY_TIMEOUT_S}s:\n{self.log_tail()}")

    def health(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as resp:
                return orjson.loads(resp.read())
        except OSError:
            return {}

    def metrics(self) -> dict[str, float]:
        return scrape(self.port) or {}

    def metric(self, name: str, **labels: str) -> float:
        want = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        return self.metrics().get(f"{name}{{{want}}}", 0.0)

    def wait_metric(self, name: str, n: float, timeout_s: float = 60.0, **labels: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.metric(name, **labels) >= n:
                return
            if self.exit_code() is not None:
                raise AssertionError(f"adapter exited with {self.exit_code()}:\n{self.log_tail()}")
            time.sleep(0.1)
        raise AssertionError(f"{name}{labels} = {self.metric(name, **labels)} < {n} after {timeout_s}s:\n"
                             f"{self.log_tail()}")


# ---------------------------------------------------------------------------- helpers
def new_prefix() -> str:
    return f"ad-{uuid.uuid4().hex[:10]}"


def make_topics(prefix: str, channels: tuple[str, ...] = ("email", "sms")) -> Settings:
    """The topics the way a worker creates them (the adapter creates none)."""
    settings = Settings(bootstrap=BOOTSTRAP, topic_prefix=prefix, partitions=PARTITIONS)
    asyncio.run(ensure_topics(settings, channels))
    return settings


def action(aid: str, customer: str, channel: str = "email", **extra: Any) -> dict[str, Any]:
    return {"action_id": aid, "customer_id": customer, "channel": channel, "template": "t-1",
            "params": {"n": 1}, "journey": "j", "journey_version": 1, "node": "send", "trigger_event_id": "e-1",
            "event_ts": "2026-01-01T00:00:00.000Z", "decided_at": "2026-01-01T00:00:00.000Z", **extra}


def send_actions(prefix: str, actions: list[dict[str, Any]]) -> None:
    by_topic: dict[str, list[tuple[bytes | None, bytes]]] = collections.defaultdict(list)
    for a in actions:
        by_topic[f"{prefix}.actions.{a['channel']}"].append((a["customer_id"].encode(), dumps(a)))
    for topic, messages in by_topic.items():
        asyncio.run(produce(topic, messages))


def suppression(sid: str, customer: str, cancels: list[str], channels: list[str]) -> dict[str, Any]:
    return {"suppression_id": sid, "customer_id": customer, "channels": channels, "journey": "j",
            "reason": "goal", "cancels": cancels, "ts": "2026-01-01T00:00:00.000Z"}


def send_suppressions(prefix: str, sups: list[dict[str, Any]]) -> None:
    asyncio.run(produce(f"{prefix}.suppressions", [(s["customer_id"].encode(), dumps(s)) for s in sups]))


def records(prefix: str, suffix: str, until=None, timeout_s: float = 60.0) -> list[dict[str, Any]]:  # noqa: ANN001
    return asyncio.run(read_all([f"{prefix}.{suffix}"], until=until, timeout_s=timeout_s))


# ---------------------------------------------------------------------------- tests
def test_delivers_each_action_once_with_its_key_and_headers_and_reports_feedback(tmp_path):
    prefix = new_prefix()
    make_topics(prefix)
    run = uuid.uuid4().hex[:6]
    sent = [action(f"a-{run}-{i}", f"cust-{run}-{i % 3}", "email" if i % 2 else "sms") for i in range(6)]
    # One more action, in four copies under different keys (so in different partitions, read at once).
    copied = action(f"a-{run}-copied", f"cust-{run}-c", "sms")
    with Provider() as provider:
        send_actions(prefix, sent)
        asyncio.run(produce(f"{prefix}.actions.sms", [(f"key-{i}".encode(), dumps(copied)) for i in range(4)]))
        adapter = AdapterProcess(tmp_path, prefix, provider.url, channels="email,sms").start()
        try:
            provider.wait_delivered(7, adapter=adapter)
            adapter.wait_metric("orch_adapter_actions_total", 3, channel="sms", result="duplicate")
            feedback = records(prefix, "events", until=lambda rs: len(rs) >= 7)
            feedback = [r for r in feedback if r["value"]["properties"]["action_id"] != copied["action_id"]]
            adapter.wait_metric("orch_adapter_actions_total", 3, channel="email", result="delivered")
            adapter.wait_metric("orch_adapter_actions_total", 4, channel="sms", result="delivered")
            text = urllib.request.urlopen(f"http://127.0.0.1:{adapter.port}/metrics", timeout=5).read().decode()
        finally:
            assert adapter.stop() == 0, adapter.log_tail()
    # The action JSON unchanged, its id as the Idempotency-Key, the headers from the environment.
    by_key = {p["key"]: p for p in provider.posts}
    assert set(by_key) == {a["action_id"] for a in sent + [copied]} and len(provider.posts) == 7
    for a in sent:
        post = by_key[a["action_id"]]
        assert post["body"] == a
        assert post["headers"]["Authorization"] == SECRET
        assert post["headers"]["Content-Type"] == "application/json"
    # One message.delivered per action on <prefix>.events, keyed by customer_id, deterministic id.
    assert len(feedback) == 6
    for r in feedback:
        ev = r["value"]
        assert ev["type"] == "message.delivered" and r["key"] == ev["customer_id"]
        assert ev["event_id"].startswith("fb-") and isinstance(ev["ts"], str)
        a = next(a for a in sent if a["action_id"] == ev["properties"]["action_id"])
        assert ev["customer_id"] == a["customer_id"] and ev["properties"]["channel"] == a["channel"]
    assert len({r["value"]["event_id"] for r in feedback}) == 6
    # Metrics: orch_adapter_* counters, no customer or action ids; the token never in the log.
    assert "orch_adapter_requests_total" in text and "orch_adapter_feedback_events_total" in text
    assert run not in text
    log = adapter.log_path.read_text()
    assert "s3cr3t" not in log and "in-the-query" not in log and run not in log


def test_flaky_endpoint_is_retried_a_refusal_and_an_exhausted_budget_are_dead_lettered(tmp_path):
    prefix = new_prefix()
    make_topics(prefix)
    run = uuid.uuid4().hex[:6]
    cust = f"cust-{run}"
    flaky, refused, down, after = (action(f"a-{run}-{n}", cust) for n in ("flaky", "refused", "down", "after"))
    with Provider() as provider:
        provider.script = {flaky["action_id"]: [503, 503], refused["action_id"]: [400],
                           down["action_id"]: [503] * 10_000}
        # One customer, so one partition, in this order; a record that is not JSON in between.
        asyncio.run(produce(f"{prefix}.actions.email", [
            (cust.encode(), dumps(flaky)), (cust.encode(), dumps(refused)), (cust.encode(), b"{not json"),
            (cust.encode(), dumps(down)), (cust.encode(), dumps(after))]))
        adapter = AdapterProcess(tmp_path, prefix, provider.url, "--retry-budget", "3").start()
        try:
            provider.wait_delivered(2, adapter=adapter)                     # flaky and after
            dlq = records(prefix, "dlq", until=lambda rs: len(rs) >= 3)
            feedback = records(prefix, "events", until=lambda rs: len(rs) >= 4)
            adapter.wait_metric("orch_adapter_retries_total", 2, target="email")
            metrics = adapter.metrics()
        finally:
            assert adapter.stop() == 0, adapter.log_tail()
    posts = collections.Counter(p["key"] for p in provider.posts)
    # 503, 503, then 200: delivered once after two retries.
    assert provider.deliveries[flaky["action_id"]] == 1 and posts[flaky["action_id"]] == 3
    # 400: one request, dead-lettered with the status, SPEC's DeadLetter fields.
    assert posts[refused["action_id"]] == 1 and refused["action_id"] not in provider.deliveries
    by_raw = {r["value"]["raw"]: r for r in dlq}
    letter = by_raw[dumps(refused).decode()]
    assert set(letter["value"]) == {"reason", "detail", "topic", "partition", "offset", "raw", "ts"}
    assert letter["value"]["reason"] == "delivery_failed" and "HTTP 400" in letter["value"]["detail"]
    assert letter["value"]["topic"] == f"{prefix}.actions.email" and letter["key"] == cust
    assert "in-the-query" not in letter["value"]["detail"]
    # Not JSON: dead-lettered invalid_json; the partition goes on.
    assert by_raw["{not json"]["value"]["reason"] == "invalid_json"
    # 503 until the budget ends: dead-lettered after several attempts; the next action still goes out.
    gave_up = by_raw[dumps(down).decode()]["value"]
    assert gave_up["reason"] == "delivery_failed" and "HTTP 503" in gave_up["detail"]
    assert "gave up after" in gave_up["detail"] and posts[down["action_id"]] >= 2
    assert provider.deliveries[after["action_id"]] == 1
    order = [p["key"] for p in provider.posts]
    assert max(i for i, k in enumerate(order) if k == down["action_id"]) < order.index(after["action_id"])
    # Feedback: delivered for two, failed (with the status) for the two dead-lettered ones.
    kinds = {r["value"]["properties"]["action_id"]: r["value"] for r in feedback}
    assert kinds[flaky["action_id"]]["type"] == kinds[after["action_id"]]["type"] == "message.delivered"
    assert kinds[refused["action_id"]]["type"] == "message.failed"
    assert kinds[refused["action_id"]]["properties"]["status"] == 400
    assert kinds[down["action_id"]]["type"] == "message.failed"
    assert metrics["orch_adapter_dead_letters_total{reason=delivery_failed}"] == 2
    assert metrics["orch_adapter_dead_letters_total{reason=invalid_json}"] == 1
    assert metrics["orch_adapter_actions_total{channel=email,result=dead_letter}"] == 2
    # The log (at the default level, info): the first failed attempt of each retried action at INFO,
    # its later ones only at DEBUG (not shown), the final failures at WARNING; never a customer id.
    lines = adapter.log_path.read_text().splitlines()
    retried = [line for line in lines if " answered HTTP 503; retrying in " in line]
    assert len(retried) == 2 and all(" INFO " in line and " attempt 1 " in line for line in retried), retried
    assert {flaky["action_id"], down["action_id"]} == {line.split("action ")[1].split(" ")[0] for line in retried}
    failed = [line for line in lines if "dead-lettered" in line]
    assert all(" WARNING " in line for line in failed) and len(failed) == 2, failed
    assert any(refused["action_id"] in line and "HTTP 400" in line for line in failed)
    assert any(down["action_id"] in line and "gave up after" in line for line in failed)
    assert cust not in "\n".join(lines)


def test_restart_and_replay_deliver_nothing_twice(tmp_path):
    prefix = new_prefix()
    make_topics(prefix)
    run = uuid.uuid4().hex[:6]
    first = [action(f"a-{run}-{i}", f"cust-{run}-{i}") for i in range(20)]
    later = [action(f"a-{run}-later-{i}", f"cust-{run}-{i}") for i in range(5)]
    with Provider() as provider:
        send_actions(prefix, first)
        adapter = AdapterProcess(tmp_path, prefix, provider.url).start()
        try:
            provider.wait_delivered(20, adapter=adapter)
            adapter.wait_metric("orch_adapter_feedback_events_total", 20, type="message.delivered")
        finally:
            assert adapter.stop() == 0, adapter.log_tail()
        # Same group after a graceful stop: everything was committed, nothing is read again.
        again = AdapterProcess(tmp_path, prefix, provider.url, data_dir=adapter.data_dir).start()
        try:
            send_actions(prefix, later)
            provider.wait_delivered(25, adapter=again)
            again.wait_metric("orch_adapter_feedback_events_total", 5, type="message.delivered")
            assert again.metric("orch_adapter_actions_total", channel="email", result="duplicate") == 0
        finally:
            assert again.stop() == 0, again.log_tail()
        # A new group reads every action again from the start: the store delivers none of them twice.
        replay = AdapterProcess(tmp_path, prefix, provider.url, "--group", f"{prefix}-replay",
                                data_dir=adapter.data_dir).start()
        try:
            replay.wait_metric("orch_adapter_actions_total", 25, channel="email", result="duplicate")
        finally:
            assert replay.stop() == 0, replay.log_tail()
    assert len(provider.posts) == 25 and sum(provider.deliveries.values()) == 25
    assert not provider.reposts


def test_another_channel_list_is_another_group_but_the_same_store(tmp_path):
    """The default group follows --channel; the default store does not: going from `email,web`
    to `email` reads the email actions again from the start and POSTs none of them again."""
    prefix = new_prefix()
    make_topics(prefix, ("email", "web"))
    run = uuid.uuid4().hex[:6]
    sent = [action(f"a-{run}-{i}", f"cust-{run}-{i}", "email" if i % 3 else "web") for i in range(30)]
    later = [action(f"a-{run}-later-{i}", f"cust-{run}-{i}") for i in range(5)]
    with Provider() as provider:
        send_actions(prefix, sent)
        both = AdapterProcess(tmp_path, prefix, provider.url, channels="email,web", cwd=tmp_path).start()
        try:
            provider.wait_delivered(len(sent), adapter=both)
            both.wait_metric("orch_adapter_feedback_events_total", len(sent), type="message.delivered")
        finally:
            assert both.stop() == 0, both.log_tail()
        email = AdapterProcess(tmp_path, prefix, provider.url, channels="email", cwd=tmp_path).start()
        try:
            send_actions(prefix, later)
            provider.wait_delivered(len(sent) + len(later), adapter=email)
            repeated = sum(1 for a in sent if a["channel"] == "email")
            email.wait_metric("orch_adapter_actions_total", repeated, channel="email", result="duplicate")
        finally:
            assert email.stop() == 0, email.log_tail()
    assert f"as group {prefix}-adapter-webhook-email-web;" in both.log_path.read_text()
    assert f"as group {prefix}-adapter-webhook-email;" in email.log_path.read_text()
    assert len(provider.posts) == len(sent) + len(later) and not provider.reposts
    assert (tmp_path / ".orch" / "adapter-webhook" / prefix / "CURRENT").is_file()


def test_a_cancelled_action_is_dropped_in_either_order_and_suppressions_are_passed_on(tmp_path):
    prefix = new_prefix()
    make_topics(prefix)
    run = uuid.uuid4().hex[:6]
    cust = f"cust-{run}"
    a0, a1, a2, a3 = (action(f"a-{run}-{n}", cust) for n in range(4))
    s1 = suppression(f"s-{run}-1", cust, [a1["action_id"]], ["email", "ads"])
    s2 = suppression(f"s-{run}-2", cust, [a2["action_id"]], ["email"])
    s3 = suppression(f"s-{run}-3", cust, [], ["ads"])
    with Provider() as provider:
        # Before the adapter runs: a1 on its topic first, its cancel after (behind 3,000 others, so that
        # reading it takes a while); a0 is not cancelled. The adapter reads the cancels up to the end
        # of their topic before it delivers anything.
        send_actions(prefix, [a1, a0])
        send_suppressions(prefix, [suppression(f"s-{run}-f{i}", cust, [], ["web"]) for i in range(3000)] + [s1])
        adapter = AdapterProcess(tmp_path, prefix, provider.url, "--suppressions-url",
                                 provider.suppressions_url).start()
        try:
            provider.wait_delivered(1, adapter=adapter)
            adapter.wait_metric("orch_adapter_actions_total", 1, channel="email", result="cancelled")
            # While it runs: the cancel of a2 arrives before a2 does.
            send_suppressions(prefix, [s2, s3])
            adapter.wait_metric("orch_adapter_cancels_stored_total", 2)
            send_actions(prefix, [a2, a3])
            provider.wait_delivered(2, adapter=adapter)                      # a3, after a2 in its partition
            adapter.wait_metric("orch_adapter_actions_total", 2, channel="email", result="cancelled")
            adapter.wait_metric("orch_adapter_suppressions_forwarded_total", 2, result="forwarded")
            adapter.wait_metric("orch_adapter_suppressions_forwarded_total", 3001, result="not_for_these_channels")
        finally:
            assert adapter.stop() == 0, adapter.log_tail()
    keys = {p["key"] for p in provider.posts}
    assert keys == {a0["action_id"], a3["action_id"]}, "a cancelled action was POSTed"
    # Passed on as they are, with their id as the Idempotency-Key; the ads-only one is not ours.
    assert [(s["key"], s["body"]) for s in provider.suppressions] == [(s1["suppression_id"], s1),
                                                                      (s2["suppression_id"], s2)]


def test_max_per_second_spaces_the_requests(tmp_path):
    prefix = new_prefix()
    make_topics(prefix)
    run = uuid.uuid4().hex[:6]
    n, rate = 20, 5.0
    with Provider() as provider:
        send_actions(prefix, [action(f"a-{run}-{i}", f"cust-{run}-{i}") for i in range(n)])
        adapter = AdapterProcess(tmp_path, prefix, provider.url, "--max-per-second", f"email={rate:g}").start()
        try:
            provider.wait_delivered(n, adapter=adapter)
            waited = adapter.metric("orch_adapter_rate_limit_wait_seconds_total", channel="email")
        finally:
            assert adapter.stop() == 0, adapter.log_tail()
    times = sorted(p["at"] for p in provider.posts)
    # A bucket of one token refilled 5 times a second: n requests span at least (n - 1) / rate.
    # (A lower bound only; a slow machine may take longer.) 50 ms of slack for timer granularity.
    assert times[-1] - times[0] >= (n - 1) / rate - 0.05
    assert waited > 0


def test_missing_topics_are_one_sentence(tmp_path):
    prefix = new_prefix()                      # nothing created under this prefix
    adapter = AdapterProcess(tmp_path, prefix, "http://127.0.0.1:9/x")
    ChildProcess.start(adapter)               # not AdapterProcess.start: it would wait for readiness
    deadline = time.monotonic() + 60
    while adapter.exit_code() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    code = adapter.stop()
    log = adapter.log_path.read_text()
    assert code == 1, log
    assert f"{prefix}.actions.email" in log and "do not exist" in log
    errors = [line for line in log.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in log, log


async def _committed_to_end(group: str, topics: list[str]) -> bool:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            if (await consumer.committed(tp) or 0) < ends[tp]:
                return False
        return True
    finally:
        await consumer.stop()


def test_sigkill_twice_mid_stream_delivers_every_action_exactly_once(tmp_path):
    prefix = new_prefix()
    make_topics(prefix)
    run = uuid.uuid4().hex[:6]
    n, customers, copies = 3000, 600, 300
    sent = [action(f"a-{run}-{i}", f"cust-{run}-{i % customers}", "email" if i % 2 else "sms") for i in range(n)]
    lanes, concurrency = 2 * PARTITIONS, 4
    in_flight_bound = lanes * concurrency            # requests in flight at a kill, at most
    kills: list[int] = []
    unknown_outcome = 0.0
    with Provider(latency_s=0.02) as provider:
        send_actions(prefix, sent)
        send_actions(prefix, sent[:copies])          # re-sent copies (same action_id), as a replaying worker does
        adapter = AdapterProcess(tmp_path, prefix, provider.url, "--concurrency", str(concurrency),
                                 channels="email,sms")
        try:
            for threshold in (n // 3, 2 * n // 3):
                adapter.start()
                provider.wait_delivered(threshold, adapter=adapter)
                unknown_outcome += adapter.metric("orch_adapter_unknown_outcome_resends_total", target="email")
                unknown_outcome += adapter.metric("orch_adapter_unknown_outcome_resends_total", target="sms")
                assert adapter.stop(signal.SIGKILL) == -signal.SIGKILL
                kills.append(provider.delivered())
                adapter = AdapterProcess(tmp_path, prefix, provider.url, "--concurrency", str(concurrency),
                                         channels="email,sms", data_dir=adapter.data_dir)
            adapter.start()
            provider.wait_delivered(n, adapter=adapter, timeout_s=300)
            group = f"{prefix}-adapter-webhook-email-sms"
            topics = [f"{prefix}.actions.email", f"{prefix}.actions.sms"]
            deadline = time.monotonic() + 120
            while not asyncio.run(_committed_to_end(group, topics)):
                assert time.monotonic() < deadline, f"offsets not committed to the end:\n{adapter.log_tail()}"
                time.sleep(0.5)
            unknown_outcome += adapter.metric("orch_adapter_unknown_outcome_resends_total", target="email")
            unknown_outcome += adapter.metric("orch_adapter_unknown_outcome_resends_total", target="sms")
            assert adapter.stop() == 0, adapter.log_tail()
        finally:
            adapter.stop(signal.SIGKILL)             # only if an assertion left it running
    feedback = records(prefix, "events", until=lambda rs: len({r["value"]["event_id"] for r in rs}) >= n)
    ids = {a["action_id"] for a in sent}
    reposts = sum(provider.reposts.values())
    assert all(k < n for k in kills), f"a kill came after the last delivery: {kills}"
    # Every action delivered exactly once (the provider counts the first request of each key), none lost.
    assert set(provider.deliveries) == ids and all(c == 1 for c in provider.deliveries.values())
    # Raw requests beyond the deliveries are re-POSTs of requests in flight at a kill, answered by the
    # provider from its Idempotency-Key record; the 300 copies were caught by the store, never POSTed.
    assert len(provider.posts) == n + reposts
    assert reposts <= len(kills) * in_flight_bound, f"{reposts} re-POSTs for {len(kills)} kills"
    # One feedback event id per action (re-sends after a kill carry the same id).
    by_event = collections.defaultdict(set)
    for r in feedback:
        by_event[r["value"]["event_id"]].add(r["value"]["properties"]["action_id"])
    assert all(len(v) == 1 for v in by_event.values()) and set().union(*by_event.values()) == ids
    print(f"\n{n} actions (+{copies} re-sent copies), SIGKILL at {kills} deliveries: {len(provider.posts)} "
          f"requests, {reposts} re-POSTs with a known Idempotency-Key (bound {len(kills)} x {in_flight_bound}; "
          f"the adapter counted {unknown_outcome:g} unknown-outcome re-sends before its next kill or stop), "
          f"{len(feedback)} feedback records for {len(by_event)} event ids")


def test_a_real_worker_takes_the_feedback(tmp_path):
    """Worker -> action -> adapter -> provider -> message.delivered -> the worker, which accepts it
    as a valid feedback event (not a dead letter), so journeys and caps see it."""
    worker = WorkerProcess(tmp_path).start()                # creates the topics
    try:
        with Provider() as provider:
            adapter = AdapterProcess(tmp_path, worker.prefix, provider.url, channels="email,inapp").start()
            try:
                cust = f"cust-{uuid.uuid4().hex[:6]}"
                asyncio.run(produce(worker.topic("events"), [
                    (cust.encode(), dumps(event(cust, "signup.completed", props={"plan": "pro"})))]))
                provider.wait_delivered(1, adapter=adapter)
                worker.wait_consumed(2)                      # the signup, then the adapter's feedback
            finally:
                assert adapter.stop() == 0, adapter.log_tail()
            metrics = worker.metrics()
    finally:
        worker.stop()
    [post] = provider.posts
    assert post["body"]["customer_id"] == cust and post["body"]["template"] == "welcome-1"
    assert total(metrics, "orch_events_in_total{result=valid}") == 2
    assert total(metrics, "orch_events_in_total{result=dead_letter}") == 0


def test_a_second_process_joining_takes_partitions_over_without_sending_anything_twice(tmp_path):
    prefix = new_prefix()
    make_topics(prefix)
    run = uuid.uuid4().hex[:6]
    n = 3000
    sent = [action(f"a-{run}-{i}", f"cust-{run}-{i % 500}") for i in range(n)]
    with Provider(latency_s=0.02) as provider:
        send_actions(prefix, sent)
        first = AdapterProcess(tmp_path, prefix, provider.url).start()
        second = AdapterProcess(tmp_path, prefix, provider.url, data_dir=tmp_path / "second-data")
        try:
            provider.wait_delivered(n // 6, adapter=first)
            second.start()                               # the group rebalances: partitions move mid-stream
            provider.wait_delivered(n, adapter=second, timeout_s=300)
            topics = [f"{prefix}.actions.email"]
            deadline = time.monotonic() + 120
            while not asyncio.run(_committed_to_end(f"{prefix}-adapter-webhook-email", topics)):
                assert time.monotonic() < deadline, f"offsets not committed to the end:\n{second.log_tail()}"
                time.sleep(0.5)
            by_second = second.metric("orch_adapter_actions_total", channel="email", result="delivered")
        finally:
            assert second.stop() == 0, second.log_tail()
            assert first.stop() == 0, first.log_tail()
    assert set(provider.deliveries) == {a["action_id"] for a in sent}
    assert 0 < by_second < n, "the second process never took a partition over"
    # A graceful hand-over finishes and commits what is in flight: nothing is POSTed twice.
    assert len(provider.posts) == n and not provider.reposts
