"""The dashboard and the lag alert, checked by the real Prometheus scraping a real worker under load.

Prometheus is the Debian package's server (``/usr/bin/prometheus``, installed with promtool by
``make test``), started here on 127.0.0.1 and a free port, with its own data folder in the test's
tmp dir and a generated configuration: job ``orchestrator`` scraping the worker every second,
rules evaluated every second.

1. A worker (tests/integration/harness.py) runs the integration journeys while a steady load of
   events goes in (sign-ups that send at once, carts that run timers, orders that convert, now and
   then a line of invalid JSON).
2. Every PromQL expression of every panel of deploy/grafana/orchestrator-dashboard.json must
   return data: at least one series with a finite value (a ratio may be NaN for a group with no
   entries, as Grafana shows it, but not for all of them). The dashboard's variables are replaced
   as Grafana would with these settings: ``$job`` and ``$instance`` by ``.+`` (their "All" value),
   ``$__rate_interval`` by ``10s`` (Grafana's minimum is 4 × the 1 s scrape interval; 10 s leaves
   room for scrapes a busy machine delays), ``$__range`` by ``3h`` (the dashboard's time range).
   The variables' own queries (``label_values(...)``) must list the job and the worker.
3. While the worker keeps up, OrchConsumerLagHigh is neither pending nor firing. Then the worker
   is stopped while the load goes on, and OrchConsumerLagHigh must fire.

The rules are a copy of deploy/prometheus/alerts.yml in which only the ``for:`` durations are cut
to 5 s (the shipped ones are minutes); every expression is the shipped one, byte for byte.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from orchestrator.testing.childproc import ChildProcess
from tests.integration.harness import BOOTSTRAP, WorkerProcess, free_port
from tests.unit.observability.test_observability import ALERTS, dashboard_queries, dashboard_variable_queries, load_dashboard

SCRAPE_INTERVAL = "1s"
SHORT_FOR = "5s"
DASHBOARD_VARS = {"$__rate_interval": "10s", "$job": ".+", "$instance": ".+"}
LOAD_EVENTS_PER_S = 40.0
PANELS_TIMEOUT_S = 180.0
ALERT_TIMEOUT_S = 240.0          # 60 s of the expression's threshold, 5 s of `for:`, evaluation, slack


def prometheus_binary() -> str:
    path = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
    if path is None:
        pytest.fail("the Prometheus server is not installed: `make test` installs it with promtool (Debian "
                    "package `prometheus`)", pytrace=False)
    return path


def dashboard_range() -> str:
    start = load_dashboard()["time"]["from"]
    assert start.startswith("now-"), start
    return start.removeprefix("now-")


def panel_query(expr: str) -> str:
    for var, value in {**DASHBOARD_VARS, "$__range": dashboard_range()}.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"a dashboard variable this test does not know: {expr}"
    return expr


class Prometheus(ChildProcess):
    """The real Prometheus server on 127.0.0.1, with rules ``rules`` and one scrape target."""

    def __init__(self, tmp: Path, target: str, rules: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = tmp / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL,
                       "evaluation_interval": SCRAPE_INTERVAL},
            "rule_files": [str(rules)],
            "scrape_configs": [{"job_name": "orchestrator", "static_configs": [{"targets": [target]}]}],
        }))
        super().__init__([prometheus_binary(), f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                          f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                         {"PATH": "/usr/bin:/bin"}, tmp / "prometheus.log")

    def start(self) -> "Prometheus":
        super().start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.exit_code() is not None:
                raise AssertionError(f"prometheus exited with {self.exit_code()}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready after 60 s:\n{self.log_tail()}")

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.api("query", query=expr)["result"]

    def alerts(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.api("alerts")["alerts"] if a["labels"].get("alertname") == name]


def has_data(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(series["value"][1])) for series in result)


def short_for_rules(tmp: Path) -> Path:
    """deploy/prometheus/alerts.yml with every `for:` cut to SHORT_FOR; expressions untouched."""
    shipped = yaml.safe_load(ALERTS.read_text())
    doc = yaml.safe_load(ALERTS.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = SHORT_FOR
    path = tmp / "alerts-short-for.yml"
    path.write_text(yaml.safe_dump(doc))
    copy = yaml.safe_load(path.read_text())
    assert [r["expr"] for g in copy["groups"] for r in g["rules"]] == \
        [r["expr"] for g in shipped["groups"] for r in g["rules"]]
    return path


class Load:
    """A steady stream of events for the worker's integration journeys, until stopped."""

    def __init__(self, topic: str) -> None:
        self.topic, self.sent, self.stopped = topic, 0, asyncio.Event()

    def event(self, n: int) -> tuple[bytes, bytes]:
        cid = f"load-{uuid.uuid4().hex[:10]}"
        now = int(time.time() * 1000)
        kind = n % 4
        if n % 200 == 199:
            return cid.encode(), b'{"event_id": "broken", not json'
        etype, props = [("signup.completed", {"plan": "pro"}), ("cart.updated", {"value": 80}),
                        ("order.completed", {"total": 10}), ("cart.updated", {"value": 90})][kind]
        if etype == "order.completed":          # converts the customer who signed up just before
            cid = self.last_signup
        if etype == "signup.completed":
            self.last_signup = cid
        return cid.encode(), orjson.dumps({"event_id": f"e-{uuid.uuid4().hex}", "customer_id": cid,
                                           "type": etype, "ts": now, "properties": props})

    async def run(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=5)
        await producer.start()
        try:
            started = time.monotonic()
            while not self.stopped.is_set():
                due = int((time.monotonic() - started) * LOAD_EVENTS_PER_S) + 1
                while self.sent < due:
                    key, value = self.event(self.sent)
                    await producer.send(self.topic, value=value, key=key)
                    self.sent += 1
                await producer.flush()
                try:
                    await asyncio.wait_for(self.stopped.wait(), timeout=0.1)
                except asyncio.TimeoutError:
                    pass
        finally:
            await producer.stop()


async def until(check: Any, timeout_s: float, what: Any) -> Any:
    """Poll ``check()`` (in a thread: it does HTTP) until it returns something true."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await asyncio.to_thread(check)
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what() if callable(what) else what}")
        await asyncio.sleep(1.0)


async def test_dashboard_has_data_and_the_lag_alert_fires_when_the_worker_stops(tmp_path):
    prometheus_binary()                 # fails before a worker is started that nothing would stop
    worker = WorkerProcess(tmp_path).start()
    load = Load(worker.topic("events"))
    load_task = asyncio.create_task(load.run())
    prometheus = Prometheus(tmp_path, f"127.0.0.1:{worker.port}", short_for_rules(tmp_path)).start()
    try:
        queries = {q: panel_query(q) for q in dashboard_queries()}
        assert len(queries) >= 25
        missing: list[str] = []

        def panels_have_data() -> bool:
            missing[:] = [q for q, expr in queries.items() if not has_data(prometheus.query(expr))]
            return not missing

        await until(panels_have_data, PANELS_TIMEOUT_S,
                    lambda: f"panels without data: {missing}\nworker:\n{worker.log_tail(10)}")
        assert load.sent > 0 and not load_task.done()

        # The dashboard's variables: label_values(orch_build_info, job), then its instances.
        for query in dashboard_variable_queries():
            metric, _, label = query.removeprefix("label_values(").removesuffix(")").rpartition(", ")
            values = prometheus.api(f"label/{label}/values", **{"match[]": metric.replace("$job", ".+")})
            assert values == (["orchestrator"] if label == "job" else [f"127.0.0.1:{worker.port}"]), query

        # A worker that keeps up raises no lag alert, not even a pending one.
        assert prometheus.alerts("OrchConsumerLagHigh") == []
        assert has_data(prometheus.query("sum(orch_consumer_lag_messages)"))

        worker.stop()
        stopped_at = time.monotonic()
        sent_at_stop = load.sent

        def lag_alert_firing() -> list[dict[str, Any]]:
            return [a for a in prometheus.alerts("OrchConsumerLagHigh") if a["state"] == "firing"]

        firing = await until(lag_alert_firing, ALERT_TIMEOUT_S,
                             lambda: f"OrchConsumerLagHigh: {prometheus.alerts('OrchConsumerLagHigh')}")
        assert firing[0]["labels"]["job"] == "orchestrator"
        assert time.monotonic() - stopped_at >= 60        # the shipped threshold: 60 s behind
        assert load.sent > sent_at_stop and not load_task.done()   # the load went on meanwhile
    finally:
        load.stopped.set()
        await asyncio.wait_for(load_task, 60)
        prometheus.stop()
        worker.stop()
