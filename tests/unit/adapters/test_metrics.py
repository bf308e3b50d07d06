"""The webhook adapter's metrics: documented in docs/adapters.md, bounded labels only."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from orchestrator.adapters.metrics import AdapterMetrics

DOC = Path(__file__).resolve().parents[3] / "docs" / "adapters.md"
TOKEN = re.compile(r"\borch_adapter_[a-z0-9_]+")
SUFFIXES = ("_bucket", "_sum", "_count")


def exported(forwarding: bool = True) -> dict[str, set[str]]:
    """Exported sample names (as a scrape shows them) -> their label names."""
    text = AdapterMetrics(["email", "sms"], forwarding=forwarding).render().decode()
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            for suffix in SUFFIXES:
                if name.endswith(suffix) and family.type == "histogram":
                    name = name[: -len(suffix)]
            out.setdefault(name, set()).update(k for k in sample.labels if k != "le")
    return out


def test_every_exported_metric_is_documented_and_every_documented_one_exists():
    text = AdapterMetrics(["email"], forwarding=True).render().decode()
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}   # as scraped
    documented = set(TOKEN.findall(DOC.read_text()))
    assert names - documented == set(), "exported but not in docs/adapters.md"
    assert documented - names == set(), "in docs/adapters.md but not exported"


def test_labels_are_bounded():
    allowed = {"channel", "target", "result", "outcome", "reason", "type", "topic", "partition", "version"}
    for name, labels in exported().items():
        assert labels <= allowed, f"{name} has labels {labels - allowed}"


def test_known_series_exist_at_zero_before_anything_happens():
    text = AdapterMetrics(["email"], forwarding=False).render().decode()
    assert 'orch_adapter_actions_total{channel="email",result="cancelled"} 0.0' in text
    assert 'orch_adapter_requests_total{outcome="timeout",target="email"} 0.0' in text
    assert 'orch_adapter_dead_letters_total{reason="delivery_failed"} 0.0' in text
    assert "orch_adapter_suppressions_forwarded_total{" not in text      # only with --suppressions-url
    assert "_created" not in text


async def test_lag_has_a_series_for_every_assigned_partition_an_idle_one_at_zero():
    """Once only partitions that had returned a record had a series; an idle assigned partition had
    none (docs: per assigned partition, known series at zero)."""
    from aiokafka import TopicPartition

    from orchestrator.adapters.housekeeping import observe_lag

    topic = "p.actions.sms"

    class Consumer:                      # what observe_lag asks of the client: its assignment and ends
        def assignment(self) -> set[TopicPartition]:
            return {TopicPartition(topic, p) for p in (0, 1, 2)}

        def highwater(self, tp: TopicPartition) -> int | None:
            return {0: 10, 1: 7}.get(tp.partition)       # partition 2: no fetch has answered yet

    class Busy:                          # a lane: the offset it commits next
        def advance(self) -> int:
            return 4

    metrics = AdapterMetrics(["sms"], forwarding=False)
    await observe_lag(Consumer(), {TopicPartition(topic, 0): Busy()}, metrics)   # type: ignore[arg-type]
    text = metrics.render().decode()
    assert f'orch_adapter_consumer_lag_messages{{partition="0",topic="{topic}"}} 6.0' in text
    assert f'orch_adapter_consumer_lag_messages{{partition="1",topic="{topic}"}} 0.0' in text
    assert 'partition="2"' not in text                                            # its end is not known yet
