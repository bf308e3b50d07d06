"""Reading a worker's ``/metrics`` back (the demo's progress line, tests, benchmarks)."""

from __future__ import annotations

import urllib.request


def parse(text: str) -> dict[str, float]:
    """Prometheus text -> {``name{label=value,...}``: value}, labels sorted by name."""
    from prometheus_client.parser import text_string_to_metric_families
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def scrape(url: str, timeout_s: float = 2.0) -> dict[str, float] | None:
    """The parsed metrics at ``url``; ``None`` if nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return parse(resp.read().decode())
    except OSError:
        return None


def scrape_port(port: int, timeout_s: float = 2.0) -> dict[str, float] | None:
    """A local worker's metrics by its ``ORCH_WEB_PORT``."""
    return scrape(f"http://127.0.0.1:{port}/metrics", timeout_s)


def total(metrics: dict[str, float], prefix: str) -> float:
    """Sum of every series whose key starts with ``prefix`` (e.g. ``orch_events_in_total{``)."""
    return sum(v for k, v in metrics.items() if k.startswith(prefix))
