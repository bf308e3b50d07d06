"""The worker's HTTP endpoints on ``ORCH_WEB_HOST:ORCH_WEB_PORT`` (127.0.0.1 by default):
``/metrics`` (Prometheus), ``/health`` and ``/stats`` (this worker's journey statistics).
No endpoint serves customer state."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from orchestrator.config import Settings
from orchestrator.reports.stats import journey_report
from orchestrator.observability.metrics import Metrics

log = logging.getLogger("orchestrator.worker")


async def serve(settings: Settings, metrics: Metrics, health: Callable[[], dict[str, Any]],
                stats: Callable[[], dict[tuple[str, int], dict[str, Any]]]) -> None:
    """Serve until cancelled."""

    async def get_metrics(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    async def get_health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", **health()})

    async def get_stats(_: web.Request) -> web.Response:
        rows = [{"journey": j, "version": v, **row} for (j, v), row in sorted(stats().items())]
        return web.json_response({"scope": "this worker since it started; `orchestrator stats` reads "
                                           "every worker's decisions from Kafka",
                                  "journeys": [journey_report(r) for r in rows]})

    app = web.Application()
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/health", get_health)
    app.router.add_get("/stats", get_stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.web_host, settings.web_port)
    await site.start()
    log.info("metrics on http://%s:%d/metrics", settings.web_host, settings.web_port)
    try:
        while True:
            await asyncio.sleep(3600)
    finally:
        await runner.cleanup()
