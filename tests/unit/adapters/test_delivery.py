"""What the webhook adapter logs while it retries (a real local HTTP server, the real store; no Kafka)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import orjson
from aiohttp import web

from orchestrator.adapters import dedup
from orchestrator.adapters.dedup import DedupStore
from orchestrator.adapters.delivery import Delivery
from orchestrator.adapters.metrics import AdapterMetrics
from orchestrator.adapters.options import WebhookOptions
from orchestrator.adapters.retry import RetryPolicy

CUSTOMER = "cust-jane-doe-1984"


async def deliver_with_answers(tmp_path: Path, statuses: list[int], budget_s: float) -> tuple[str, int]:
    """POST one action to a server that answers ``statuses`` in turn (then 200); the result and the
    number of requests it received."""
    answers = list(statuses)
    received = 0

    async def handle(request: web.Request) -> web.Response:
        nonlocal received
        received += 1
        await request.read()
        status = answers.pop(0) if answers else 200
        return web.Response(status=status, text=f"customer {CUSTOMER} is busy")   # a body that echoes personal data

    app = web.Application()
    app.router.add_post("/send", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    store = DedupStore(tmp_path / "store", 86_400_000)
    options = WebhookOptions(url=f"http://127.0.0.1:{port}/send", channels=("email",), group="g", data_dir=tmp_path,
                             retry=RetryPolicy(budget_s, base_s=0.01, cap_s=0.02))
    delivery = Delivery(options, store, AdapterMetrics(["email"], forwarding=False))
    delivery.open()
    try:
        body = orjson.dumps({"action_id": "a-17", "customer_id": CUSTOMER})
        result, _, _ = await delivery.send(dedup.ACTION, "a-17", options.url, body, "email", asyncio.Event(),
                                           rate_limited=True)
    finally:
        await delivery.close()
        await runner.cleanup()
        store.close()
    return result, received


def adapter_records(caplog) -> list[logging.LogRecord]:  # noqa: ANN001
    return [r for r in caplog.records if r.name == "orchestrator.adapter"]


async def test_the_first_failed_attempt_is_info_and_each_further_backoff_debug(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="orchestrator.adapter")
    result, received = await deliver_with_answers(tmp_path, [503, 503, 429], budget_s=30)
    assert (result, received) == ("delivered", 4)
    records = adapter_records(caplog)
    assert [r.levelno for r in records] == [logging.INFO, logging.DEBUG, logging.DEBUG]
    first, *later = [r.getMessage() for r in records]
    assert first.startswith("action a-17 (email): attempt 1 answered HTTP 503; retrying in ")
    assert later[0].startswith("action a-17 (email): attempt 2 answered HTTP 503; retrying in ")
    assert later[1].startswith("action a-17 (email): attempt 3 answered HTTP 429; retrying in ")
    assert not any(CUSTOMER in r.getMessage() for r in caplog.records)


async def test_a_failure_without_a_retry_logs_no_backoff(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="orchestrator.adapter")
    assert await deliver_with_answers(tmp_path, [400], budget_s=30) == ("failed", 1)
    assert await deliver_with_answers(tmp_path / "no-budget", [503], budget_s=0) == ("failed", 1)
    assert adapter_records(caplog) == []      # the final failure is the dead letter's warning, where it is written
