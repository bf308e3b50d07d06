"""The dashboard, the alert rules and the metric catalogue agree with the metrics the worker exports.

Unit tests, no Kafka. `promtool` (Debian package `prometheus`, installed by `make test`) checks the
rules and the scrape configuration and validates every dashboard query as PromQL; the alert rules'
unit tests are tests/unit/observability/test_promtool_rules.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from orchestrator.core.policies import DEFAULT_CHANNELS
from orchestrator.observability.metrics import Metrics

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "deploy" / "grafana" / "orchestrator-dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
METRICS_DOC = ROOT / "docs" / "metrics.md"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"

METRIC_TOKEN = re.compile(r"\borch_[a-z0-9_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
REQUIRED_ALERTS = {"OrchConsumerLagHigh", "OrchDeadLetterRateHigh", "OrchTimerLatenessHigh", "OrchNoProgress",
                   "OrchWorkerDown", "OrchTableRecoveryStuck", "OrchEngineErrors"}
# Grafana's variables, replaced by values that make the dashboard's queries plain PromQL.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "3h", "$job": ".+",
                "$instance": ".+"}


# ---------------------------------------------------------------------------- helpers (also used by
# tests/integration/test_metrics_scrape.py)
def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def load_alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def dashboard_queries() -> list[str]:
    """Every PromQL expression of a panel (targets' ``expr``), nested rows included."""
    return [value for key, value in _walk(load_dashboard()["panels"]) if key == "expr"]


def dashboard_variable_queries() -> list[str]:
    out = []
    for var in load_dashboard()["templating"]["list"]:
        if var["type"] == "query":
            q = var["query"]
            out.append(q["query"] if isinstance(q, dict) else q)
    return out


def alert_expressions() -> list[str]:
    return [rule["expr"] for rule in load_alert_rules()]


def exported_families(text: str) -> dict[str, str]:
    """``# TYPE`` lines of an exposition: metric name as exported -> type."""
    families = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            families[name] = kind
    return families


def fresh_families() -> dict[str, str]:
    return exported_families(Metrics(channels=DEFAULT_CHANNELS).render().decode())


def metric_name(token: str, families: dict[str, str]) -> str:
    """A series name as written in PromQL -> the family it belongs to (``_bucket``... of histograms)."""
    if token in families:
        return token
    for suffix in HISTOGRAM_SUFFIXES:
        base = token[: -len(suffix)]
        if token.endswith(suffix) and families.get(base) == "histogram":
            return base
    return token


def referenced_metrics(families: dict[str, str] | None = None) -> set[str]:
    """Families used by the dashboard (panels and variables) and the alert rules."""
    families = fresh_families() if families is None else families
    exprs = dashboard_queries() + dashboard_variable_queries() + alert_expressions()
    return {metric_name(t, families) for e in exprs for t in METRIC_TOKEN.findall(e)}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not on PATH: `make test` installs it (Debian package `prometheus`); "
                    "or `apt-get install --no-install-recommends prometheus` yourself", pytrace=False)
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=60)


def github_anchor(heading: str) -> str:
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


# ---------------------------------------------------------------------------- the dashboard
def test_dashboard_is_a_grafana_model_with_a_prometheus_datasource_variable():
    d = load_dashboard()
    assert d["uid"] and d["title"] and isinstance(d["schemaVersion"], int)
    [ds] = [v for v in d["templating"]["list"] if v["type"] == "datasource"]
    assert ds["query"] == "prometheus"
    ds_ref = "${" + ds["name"] + "}"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in d["panels"]:
        g = panel["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == ds_ref, panel["title"]
        assert panel["targets"], panel["title"]
        for t in panel["targets"]:
            assert t["datasource"]["uid"] == ds_ref and t["expr"].strip(), panel["title"]
    for var in d["templating"]["list"]:
        if var["type"] == "query":
            assert var["datasource"]["uid"] == ds_ref


def test_dashboard_has_the_panels_an_operator_needs():
    queries = dashboard_queries()
    used = referenced_metrics()
    assert {
        "orch_events_in_total", "orch_dead_letters_total", "orch_actions_total", "orch_suppressions_total",
        "orch_decisions_total", "orch_journey_entries_total", "orch_journey_goals_total",
        "orch_event_to_action_seconds", "orch_processing_seconds", "orch_timers_pending", "orch_timers_due",
        "orch_timers_fired_total", "orch_timer_lateness_seconds", "orch_consumer_lag_messages",
        "orch_last_processed_event_timestamp_seconds", "orch_table_recovery_in_progress",
        "orch_table_recovery_remaining_records", "orch_build_info",
    } <= used
    for phi in ("0.5", "0.95", "0.99"):
        assert any(f"histogram_quantile({phi}, " in q and "orch_event_to_action_seconds_bucket" in q
                   for q in queries), phi
    assert any("histogram_quantile(0.99, " in q and "orch_timer_lateness_seconds_bucket" in q for q in queries)
    assert any(q.startswith("time() - ") and "orch_last_processed_event_timestamp_seconds" in q for q in queries)
    for by in ("result", "reason", "channel", "outcome", "journey, group", "topic, partition"):
        assert any(f"by ({by})" in q for q in queries), by
    # Counters are only ever shown as rates or increases, never as raw ever-growing totals.
    for q in queries:
        for token in METRIC_TOKEN.findall(q):
            if token.endswith(("_total", "_bucket")):
                assert re.search(r"(rate|increase)\(" + token, q), q


def test_dashboard_queries_are_valid_promql(tmp_path):
    rules = []
    for i, q in enumerate(dashboard_queries()):
        for var, value in GRAFANA_VARS.items():
            q = q.replace(var, value)
        assert "$" not in q, f"unknown Grafana variable in {q}"
        rules.append({"record": f"dashboard:query_{i}", "expr": q})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------- metrics exist
def test_every_metric_in_the_dashboard_and_the_alerts_is_exported_by_the_worker():
    families = fresh_families()
    used = referenced_metrics(families)
    assert len(used) >= 15
    missing = sorted(used - set(families))
    assert not missing, f"used by the dashboard or the alert rules but not in Metrics.render(): {missing}"


def test_metric_catalogue_documents_every_exported_metric_and_nothing_else():
    families = fresh_families()
    doc = METRICS_DOC.read_text()
    documented = set(METRIC_TOKEN.findall(doc))
    undocumented = sorted(name for name in families if f"`{name}`" not in doc)
    assert not undocumented, f"exported but not in docs/metrics.md: {undocumented}"
    stale = sorted(t for t in documented if metric_name(t, families) not in families)
    assert not stale, f"docs/metrics.md names metrics the worker does not export: {stale}"


def test_exported_metrics_follow_the_naming_rules():
    text = Metrics(channels=DEFAULT_CHANNELS).render().decode()
    for name, kind in exported_families(text).items():
        assert name.startswith("orch_"), name
        if kind == "counter":
            assert name.endswith("_total"), name
        if kind == "histogram":
            assert name.endswith("_seconds"), name
    assert "_created" not in text
    assert 'orch_timer_lateness_seconds_bucket{le="1.0"}' in text        # the timer SLO is a boundary
    assert 'orch_event_to_action_seconds_bucket{le="0.1"}' in text       # the first-action SLO too


# ---------------------------------------------------------------------------- alert rules
def test_alert_rules_are_the_required_ones_with_runbooks():
    rules = load_alert_rules()
    assert {r["alert"] for r in rules} == REQUIRED_ALERTS
    headings = [line.lstrip("#").strip() for line in OPERATIONS_DOC.read_text().splitlines()
                if re.match(r"#{1,6} ", line)]
    anchors = {github_anchor(h) for h in headings}
    for r in rules:
        a = r["annotations"]
        assert a["summary"].strip() and a["description"].strip(), r["alert"]
        doc, _, anchor = a["runbook_url"].partition("#")
        assert doc == "docs/operations.md" and anchor in anchors, (r["alert"], a["runbook_url"], anchors)
        assert r["labels"]["severity"] in ("page", "ticket"), r["alert"]
        assert "for" in r, r["alert"]


def test_lag_alert_is_in_seconds_and_only_while_messages_wait():
    [lag] = [r for r in load_alert_rules() if r["alert"] == "OrchConsumerLagHigh"]
    assert "time() - " in lag["expr"] and "orch_last_processed_event_timestamp_seconds" in lag["expr"]
    assert "orch_consumer_lag_messages) > 0" in lag["expr"]


def test_promtool_check_rules():
    result = run_promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(REQUIRED_ALERTS)} rules found" in result.stdout + result.stderr


def test_promtool_check_config():
    result = run_promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


# Firing and not firing, per alert: deploy/prometheus/alerts.test.yml, run by
# tests/unit/observability/test_promtool_rules.py.
