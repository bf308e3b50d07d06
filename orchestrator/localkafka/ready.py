"""Is the broker up yet? A metadata request, polled until it answers or the broker dies."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from orchestrator.errors import LocalKafkaError
from orchestrator.localkafka.config import BrokerFiles
from orchestrator.localkafka.process import POLL_S, tail

PROBE_TIMEOUT_MS = 2000  # per-attempt request timeout of the readiness probe


async def probe(bootstrap: str, **connection: Any) -> bool:
    """Whether the broker at ``bootstrap`` answers a metadata request listing a broker (``connection``:
    aiokafka's security options, for a cluster that needs them)."""
    from aiokafka import AIOKafkaClient
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap,
        client_id="orchestrator-kafka-local",
        request_timeout_ms=PROBE_TIMEOUT_MS,
        **connection,
    )
    try:
        await client.bootstrap()
        return bool(client.cluster.brokers())
    except Exception:  # not up yet: refused connection, timeout, no metadata, ...
        return False
    finally:
        with contextlib.suppress(Exception):
            await client.close()


def run_async(make_coro: Callable[[], Any]) -> Any:
    """Run a coroutine to completion, even when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coro())
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(make_coro())
        except BaseException as e:  # re-raised in the caller's thread
            result["error"] = e

    thread = threading.Thread(target=target, name="kafka-local-wait")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


@contextlib.contextmanager
def quiet_aiokafka() -> Iterator[None]:
    """Silence aiokafka's 'Unable connect' errors while the broker is still starting."""
    logger = logging.getLogger("aiokafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def wait_ready(bootstrap: str, *, wait_s: float, alive: Callable[[], bool], files: BrokerFiles) -> None:
    """Poll ``bootstrap`` until it answers; raise if ``alive()`` turns false or ``wait_s`` passes."""

    async def loop() -> None:
        deadline = time.monotonic() + wait_s
        while True:
            if await probe(bootstrap):
                return
            if not alive():
                raise died_error(files)
            if time.monotonic() >= deadline:
                raise LocalKafkaError(
                    f"The local Kafka broker did not answer on {bootstrap} within {wait_s:g} s; "
                    f"see {files.log} (it is left running: `orchestrator kafka down` stops it)."
                )
            await asyncio.sleep(POLL_S)

    with quiet_aiokafka():
        run_async(loop)


def died_error(files: BrokerFiles) -> LocalKafkaError:
    """The error for a broker that exited while starting, quoting its last output lines."""
    quoted, source = tail(files.out), files.out
    if not quoted.strip():
        quoted, source = tail(files.log), files.log
    return LocalKafkaError(
        f"The local Kafka broker exited while starting; see {files.log} "
        f"(last lines of {source} below).\n{quoted}"
    )
