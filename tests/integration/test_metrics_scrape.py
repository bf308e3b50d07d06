"""A real worker's /metrics has data for every metric the dashboard and the alerts use, and no customer id.

Events for two canary customers go through a real worker: a journey entry that converts (goal),
a journey that runs its timers to the end (exit), invalid JSON and an invalid schema. Then the
scrape must hold at least one sample of every metric used by deploy/grafana and deploy/prometheus,
and the canary must appear nowhere in /metrics, /stats or the worker's log.
"""

from __future__ import annotations

import time
import urllib.request
import uuid

from tests.integration.harness import dumps, event, produce, read_all
from tests.unit.observability.test_observability import HISTOGRAM_SUFFIXES, fresh_families, referenced_metrics

SCRAPE_TIMEOUT_S = 90.0


def get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return r.read().decode()


def sample_names(metrics: dict[str, float]) -> set[str]:
    return {key.split("{", 1)[0] for key in metrics}


def value(metrics: dict[str, float], key: str) -> float:
    return metrics.get(key, 0.0)


def has_data(name: str, kind: str, names: set[str]) -> bool:
    if kind == "histogram":
        return all(name + suffix in names for suffix in HISTOGRAM_SUFFIXES)
    return name in names


async def test_scrape_has_every_dashboard_and_alert_metric_and_no_customer_id(worker):
    canary = f"canary{uuid.uuid4().hex[:12]}"
    buyer, carter = f"{canary}-buyer", f"{canary}-cart"
    before = worker.consumed()
    bad_json = b'{"event_id": "e-' + canary.encode() + b'", "customer_id": "' + buyer.encode() + b'", "ty'
    bad_schema = event(buyer, "Signup Completed!", props={"email": f"{canary}@example.com"})
    messages = [
        (buyer.encode(), dumps(event(buyer, "signup.completed", props={"plan": "pro"}))),    # it-welcome entry
        (carter.encode(), dumps(event(carter, "cart.updated", props={"value": 80}))),        # it-cart: timers
        (buyer.encode(), bad_json),                                                           # invalid_json
        (buyer.encode(), dumps(bad_schema)),                                                  # invalid_schema
        (buyer.encode(), dumps(event(buyer, "order.completed", props={"total": 99}))),       # it-welcome goal
    ]
    await produce(worker.topic("events"), messages)
    worker.wait_consumed(before + len(messages))
    # it-cart: email after 2 s, push after a 4 s timeout, then exit "completed".
    await read_all([worker.topic("actions.push")],
                   until=lambda rs: any(r["value"]["customer_id"] == carter for r in rs), timeout_s=60)

    families = fresh_families()
    used = referenced_metrics(families)
    deadline = time.monotonic() + SCRAPE_TIMEOUT_S
    while True:
        metrics = worker.metrics()
        names = sample_names(metrics)
        missing = sorted(m for m in used if not has_data(m, families.get(m, ""), names))
        exits = sum(v for k, v in metrics.items() if k.startswith("orch_journey_exits_total{"))
        if not missing and exits >= 1:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"no samples after {SCRAPE_TIMEOUT_S}s for {missing} (exits: {exits}); "
                                 f"scrape: {sorted(names)}\n{worker.log_tail()}")
        time.sleep(0.5)

    # The data is there, not only the series.
    assert value(metrics, "orch_events_in_total{result=valid}") >= 3
    assert value(metrics, "orch_events_in_total{result=dead_letter}") >= 2
    assert value(metrics, "orch_dead_letters_total{reason=invalid_json}") >= 1
    assert value(metrics, "orch_dead_letters_total{reason=invalid_schema}") >= 1
    assert value(metrics, "orch_actions_total{channel=email}") >= 2
    assert value(metrics, "orch_actions_total{channel=push}") >= 1
    assert value(metrics, "orch_journey_entries_total{group=treatment,journey=it-welcome}") >= 1
    assert value(metrics, "orch_journey_entries_total{group=treatment,journey=it-cart}") >= 1
    assert value(metrics, "orch_journey_goals_total{group=treatment,journey=it-welcome}") >= 1
    assert value(metrics, "orch_journey_exits_total{journey=it-cart,reason=completed}") >= 1
    assert value(metrics, "orch_suppressions_total{reason=goal}") >= 1
    assert value(metrics, "orch_decisions_total{outcome=entered,shadow=false}") >= 2
    assert value(metrics, "orch_timers_fired_total{}") >= 2
    assert value(metrics, "orch_timer_lateness_seconds_count{}") >= 2
    # Only the welcome email was sent straight from an event; the cart's sends came after waits.
    assert value(metrics, "orch_event_to_action_seconds_count{}") == 1
    assert value(metrics, "orch_processing_seconds_count{}") >= 3
    assert abs(value(metrics, "orch_last_processed_event_timestamp_seconds{}") - time.time()) < 300
    assert value(metrics, "orch_table_recovery_in_progress{}") == 0
    assert value(metrics, "orch_journeys_loaded{}") >= 2
    lag = {k: v for k, v in metrics.items() if k.startswith("orch_consumer_lag_messages{")}
    topics = {k.split("topic=", 1)[1].rstrip("}") for k in lag}
    assert topics == {worker.topic("events"), worker.topic("internal.events-by-customer")}, lag
    assert all(v >= 0 for v in lag.values())
    assert [k for k in metrics if k.startswith("orch_build_info{")]

    # No customer id (nor anything derived from the events) in the metrics, the stats or the log.
    text = get(worker.port, "/metrics")
    stats = get(worker.port, "/stats")
    log = worker.log_path.read_text(errors="replace")
    for where, content in (("/metrics", text), ("/stats", stats), ("the worker's log", log)):
        assert canary not in content, f"customer id {canary} found in {where}"
    assert "it-welcome" in stats            # /stats does report the journeys, by id only
