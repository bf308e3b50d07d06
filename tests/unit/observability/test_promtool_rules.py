"""`promtool test rules` on deploy/prometheus/alerts.test.yml: every alert rule firing and not firing.

The unit tests live beside the rules (an operator runs the same command after editing them). This
module runs them, checks that each alert has both a firing and a not-firing case, and proves the
tests can fail: for every alert, a copy of the rules where it never fires, and one where it always
fires, must each make `promtool test rules` fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.observability.test_observability import ALERTS, load_alert_rules, run_promtool

RULE_TESTS = ALERTS.parent / "alerts.test.yml"


def rule_tests() -> dict[str, Any]:
    return yaml.safe_load(RULE_TESTS.read_text())


def cases(alert: str) -> list[dict[str, Any]]:
    return [case for test in rule_tests()["tests"] for case in test.get("alert_rule_test", [])
            if case["alertname"] == alert]


def test_the_rule_tests_pass():
    assert rule_tests()["rule_files"] == [ALERTS.name]
    result = run_promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("alert", sorted(r["alert"] for r in load_alert_rules()))
def test_every_alert_is_tested_firing_and_not_firing(alert):
    firing = [c for c in cases(alert) if c.get("exp_alerts")]
    quiet = [c for c in cases(alert) if not c.get("exp_alerts")]
    assert firing, f"{RULE_TESTS.name} never shows {alert} firing"
    assert quiet, f"{RULE_TESTS.name} never shows {alert} not firing"
    for case in firing:
        for exp in case["exp_alerts"]:   # annotations are templates: check them rendered
            assert {"summary", "description", "runbook_url"} <= set(exp.get("exp_annotations", {})), case


def run_mutant(tmp_path: Path, alert: str, expr: str) -> Any:
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                rule["expr"] = expr
    (tmp_path / ALERTS.name).write_text(yaml.safe_dump(rules))
    (tmp_path / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    return run_promtool("test", "rules", str(tmp_path / RULE_TESTS.name))


@pytest.mark.parametrize("alert", sorted(r["alert"] for r in load_alert_rules()))
def test_the_rule_tests_notice_an_alert_that_never_fires(alert, tmp_path):
    result = run_mutant(tmp_path, alert, "vector(1) == 0")
    assert result.returncode != 0 and alert in result.stdout + result.stderr, result.stdout


@pytest.mark.parametrize("alert", sorted(r["alert"] for r in load_alert_rules()))
def test_the_rule_tests_notice_an_alert_that_always_fires(alert, tmp_path):
    result = run_mutant(tmp_path, alert, 'label_replace(vector(1), "job", "orchestrator", "", "")')
    assert result.returncode != 0 and alert in result.stdout + result.stderr, result.stdout
