"""The webhook adapter's HTTP endpoints on ``ORCH_WEB_HOST:--web-port`` (127.0.0.1:6067 by
default): ``/metrics`` (Prometheus) and ``/health``. Neither serves an id or a header value."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from orchestrator.adapters.metrics import AdapterMetrics
from orchestrator.errors import ConfigError

log = logging.getLogger("orchestrator.adapter")


async def start(host: str, port: int, metrics: AdapterMetrics, health: Callable[[], dict[str, Any]]) -> web.AppRunner:
    """Serve until the returned runner is cleaned up; a port in use is a :class:`ConfigError`."""

    async def get_metrics(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    async def get_health(_: web.Request) -> web.Response:
        return web.json_response(health())

    app = web.Application()
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/health", get_health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"cannot serve /metrics on {host}:{port} ({exc.strerror or exc}); "
                          "pass another --web-port") from None
    bound = runner.addresses[0][1] if runner.addresses else port    # --web-port 0: the port the system chose
    log.info("metrics on http://%s:%d/metrics", host, bound)
    return runner
