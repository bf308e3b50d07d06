"""The worker's HTTP endpoints on ``ORCH_WEB_HOST:ORCH_WEB_PORT`` (127.0.0.1 by default):
``/metrics`` (Prometheus), ``/health`` and ``/stats`` (this worker's journey statistics).
No endpoint serves customer state.

The worker takes its address with :func:`bind` before it joins its consumer group, so an address
in use stops it (one sentence, exit 1) before it holds any partition; :func:`serve` then serves on
those sockets.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import socket
import urllib.request
from collections.abc import Callable
from typing import Any

from aiohttp import web

from orchestrator.config import Settings
from orchestrator.errors import ConfigError
from orchestrator.reports.stats import journey_report
from orchestrator.observability.metrics import Metrics

log = logging.getLogger("orchestrator.worker")

BACKLOG = 128                      # aiohttp's own default
_bound: dict[tuple[str, int], list[socket.socket]] = {}     # (host, port) -> what bind() took, for serve()


def bind(settings: Settings) -> None:
    """Take ``ORCH_WEB_HOST:ORCH_WEB_PORT`` now (every address the host name has, as aiohttp would),
    for :func:`serve` to use; a :class:`ConfigError` in one sentence when it cannot be had."""
    host, port = settings.web_host, settings.web_port
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"ORCH_WEB_HOST {host!r} is not an address of this machine ({exc.strerror}); "
                          "set it to one, such as 127.0.0.1 or 0.0.0.0") from None
    socks: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)      # as asyncio does
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
    except OSError as exc:
        for sock in socks:
            sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"{host}:{port} is already in use by {_user_of(host, port)}: stop it, or give this "
                              "worker a free port with ORCH_WEB_PORT") from None
        raise ConfigError(f"cannot serve /metrics on {host}:{port} ({exc.strerror or exc}); set ORCH_WEB_HOST "
                          "to an address of this machine and ORCH_WEB_PORT to a free port") from None
    _bound[(host, port)] = socks


def _user_of(host: str, port: int) -> str:
    """Who holds the address: another worker when a worker's ``/health`` answers there."""
    answer = read_health(host, port)
    worker = answer is not None and "partitions" in answer and "journeys" in answer
    return "another worker (its /health answers there)" if worker else "another program"


def read_health(host: str, port: int, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """What ``/health`` answers at ``host:port`` (a wildcard host is asked on 127.0.0.1), or ``None``
    when nothing answers there with a JSON object."""
    where = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    try:
        with urllib.request.urlopen(f"http://{where}:{port}/health", timeout=timeout_s) as resp:
            answer = json.loads(resp.read())
    except (OSError, ValueError):
        return None
    return answer if isinstance(answer, dict) else None


async def serve(settings: Settings, metrics: Metrics, health: Callable[[], dict[str, Any]],
                stats: Callable[[], dict[tuple[str, int], dict[str, Any]]]) -> None:
    """Serve until cancelled, on the sockets :func:`bind` took for these settings (else binds now)."""

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
    socks = _bound.pop((settings.web_host, settings.web_port), None)
    sites = ([web.SockSite(runner, sock) for sock in socks] if socks
             else [web.TCPSite(runner, settings.web_host, settings.web_port)])
    for site in sites:
        await site.start()
    port = socks[0].getsockname()[1] if socks else settings.web_port
    log.info("metrics on http://%s:%d/metrics", settings.web_host, port)
    try:
        while True:
            await asyncio.sleep(3600)
    finally:
        await runner.cleanup()
