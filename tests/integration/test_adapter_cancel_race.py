"""A cancel that reached its topic before its action was read always wins (real broker, real HTTP server).

docs/adapters.md: "a suppression that reached its topic before the action was delivered wins in
either order of arrival". The hard order is the one a running adapter sees: the suppression is
acknowledged by Kafka, then the action it cancels is produced, and the adapter reads the action
while its cancels reader has not yet read the suppression. Here every suppression comes behind a
burst of other suppressions on its partition (as when a journey exits or many customers are
erased at once), so that the cancels reader is some way behind, and other actions keep the
adapter busy meanwhile.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

from aiokafka import AIOKafkaProducer

from tests.integration.harness import BOOTSTRAP, dumps
from tests.integration.test_adapter import AdapterProcess, Provider, action, make_topics, new_prefix, suppression

PAIRS = 300
BURST = 300                 # other suppressions ahead of each cancelling one, on its partition
LOAD_PER_S = 300            # other actions produced meanwhile


async def _pairs(prefix: str, run: str, stop_load: threading.Event) -> list[str]:
    """Produce PAIRS (burst, suppression S; acknowledged) then (the action S cancels), one pair after
    the other, while other actions flow; return the cancelled action ids."""
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", enable_idempotence=True, linger_ms=0)
    await producer.start()
    load_sent = 0

    async def load() -> None:
        nonlocal load_sent
        started = time.monotonic()
        while not stop_load.is_set():
            due = int((time.monotonic() - started) * LOAD_PER_S)
            for i in range(load_sent, due):
                cust = f"load-{run}-{i % 97}"
                await producer.send(f"{prefix}.actions.email", dumps(action(f"a-{run}-load-{i}", cust)),
                                    key=cust.encode())
            load_sent = max(load_sent, due)
            await asyncio.sleep(0.01)

    loader = asyncio.ensure_future(load())
    cancelled: list[str] = []
    try:
        for i in range(PAIRS):
            cust = f"cust-{run}-{i}"
            aid = f"a-{run}-cancelled-{i}"
            filler = dumps(suppression(f"s-{run}-{i}-f", cust, [], ["web"]))
            for _ in range(BURST):
                await producer.send(f"{prefix}.suppressions", filler, key=cust.encode())
            await producer.send_and_wait(f"{prefix}.suppressions",
                                         dumps(suppression(f"s-{run}-{i}", cust, [aid], ["email"])),
                                         key=cust.encode())
            # The suppression is acknowledged: only now is the action it cancels produced.
            await producer.send_and_wait(f"{prefix}.actions.email", dumps(action(aid, cust)), key=cust.encode())
            cancelled.append(aid)
    finally:
        stop_load.set()
        await loader
        await producer.flush()
        await producer.stop()
    return cancelled


def test_a_suppression_acknowledged_before_its_action_is_produced_is_never_posted(tmp_path):
    prefix = new_prefix()
    make_topics(prefix, ("email", "web"))
    run = uuid.uuid4().hex[:6]
    with Provider() as provider:
        adapter = AdapterProcess(tmp_path, prefix, provider.url, "--concurrency", "8").start()
        try:
            cancelled = asyncio.run(_pairs(prefix, run, threading.Event()))
            ids = set(cancelled)
            # Every pair is decided: cancelled by the adapter, or (the defect) POSTed.
            deadline = time.monotonic() + 120
            while True:
                with provider.lock:
                    posted = {p["key"] for p in provider.posts} & ids
                decided = adapter.metric("orch_adapter_actions_total", channel="email", result="cancelled")
                if decided + len(posted) >= len(ids):
                    break
                assert time.monotonic() < deadline, f"{decided:g} cancelled, {len(posted)} POSTed of {len(ids)}"
                assert adapter.exit_code() is None, adapter.log_tail()
                time.sleep(0.2)
            loaded = adapter.metric("orch_adapter_actions_total", channel="email", result="delivered")
        finally:
            assert adapter.stop() == 0, adapter.log_tail()
    assert not posted, (f"{len(posted)} of {len(ids)} actions POSTed although Kafka had acknowledged their "
                        f"cancelling suppression before they were produced, e.g. {sorted(posted)[:3]}")
    assert loaded > 0, "no other action was delivered meanwhile: the adapter was not under load"


async def _transactional(prefix: str, aborted: list[tuple[str, str, bytes]],
                         committed: list[tuple[str, str, bytes]]) -> None:
    """Write ``aborted`` (topic suffix, key, value) in a transaction that is aborted, then
    ``committed`` in one that is committed, as a worker writing exactly-once does."""
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, transactional_id=f"{prefix}-tx")
    await producer.start()
    try:
        for records, commit in ((aborted, False), (committed, True)):
            await producer.begin_transaction()
            for suffix, key, value in records:
                await producer.send(f"{prefix}.{suffix}", value, key=key.encode())
            await (producer.commit_transaction() if commit else producer.abort_transaction())
    finally:
        await producer.stop()


def test_records_of_aborted_transactions_are_neither_delivered_nor_cancels(tmp_path):
    prefix = new_prefix()
    make_topics(prefix)
    run = uuid.uuid4().hex[:6]
    cust = f"cust-{run}"
    kept, dropped, ghost = (action(f"a-{run}-{n}", cust) for n in ("kept", "dropped", "ghost"))
    with Provider() as provider:
        adapter = AdapterProcess(tmp_path, prefix, provider.url).start()
        try:
            # An aborted transaction cancels `kept` and carries `ghost`; a committed one cancels
            # `dropped`. The suppressions topic now ends on a transaction marker, past the last record.
            asyncio.run(_transactional(
                prefix,
                aborted=[("suppressions", cust, dumps(suppression(f"s-{run}-x", cust, [kept["action_id"]], ["email"]))),
                         ("actions.email", cust, dumps(ghost))],
                committed=[("suppressions", cust,
                            dumps(suppression(f"s-{run}-y", cust, [dropped["action_id"]], ["email"])))]))
            asyncio.run(_transactional(prefix, aborted=[], committed=[
                ("actions.email", cust, dumps(kept)), ("actions.email", cust, dumps(dropped))]))
            provider.wait_delivered(1, adapter=adapter)
            adapter.wait_metric("orch_adapter_actions_total", 1, channel="email", result="cancelled")
        finally:
            assert adapter.stop() == 0, adapter.log_tail()
    assert [p["key"] for p in provider.posts] == [kept["action_id"]]
