"""The webhook adapter's lanes: the order records of one partition start in, the offset it may
commit, what stopping does, and one id at a time across lanes (no Kafka: records are plain
objects; no sleeping: the event loop is stepped until a condition holds)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition

from orchestrator.adapters.lanes import Exclusive, GiveUp, Item, Lane

TP = TopicPartition("orch.actions.email", 0)


def item(offset: int, key: bytes | None, ident: str | None = None) -> Item:
    msg = SimpleNamespace(topic=TP.topic, partition=TP.partition, offset=offset, key=key, value=b"{}")
    return Item(msg, {}, ident)


async def until(condition, what: str) -> None:
    """Step the event loop until ``condition()`` holds (a bounded number of steps, no clock)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


async def settle() -> None:
    for _ in range(200):
        await asyncio.sleep(0)


def test_an_item_serialises_on_its_record_key_and_its_id():
    assert item(0, b"c-1", "a-1").serial == (b"kc-1", b"ia-1")
    assert item(0, None, "a-1").serial == (b"ia-1",)
    assert item(0, b"c-1", None).serial == (b"kc-1",)         # not parsed: only its key
    assert item(0, None, None).serial == ()


async def test_records_start_in_offset_order_one_per_key_within_the_limit_and_commit_up_to_the_first_unfinished():
    gates = {o: asyncio.Event() for o in range(4)}
    started: list[int] = []

    async def handle(it: Item, stopping: asyncio.Event) -> None:
        started.append(it.msg.offset)
        await gates[it.msg.offset].wait()

    errors: list[BaseException] = []
    lane = Lane(TP, handle, 2, errors.append)
    lane.add([item(0, b"a"), item(1, b"a"), item(2, b"b"), item(3, b"c")])
    await until(lambda: started == [0], "the first record starts")
    await settle()
    assert started == [0]                 # 1 waits for 0 (same customer), and 2 and 3 may not pass it
    assert lane.advance() is None and lane.backlog() == 3
    gates[0].set()
    await until(lambda: started == [0, 1, 2], "1 and 2 start once 0 is done")
    await settle()
    assert started == [0, 1, 2]           # 3 waits: two in flight is the limit
    assert lane.advance() == 1
    gates[2].set()
    await until(lambda: started == [0, 1, 2, 3], "3 starts once 2 is done")
    assert lane.advance() == 1            # 2 is done, but 1 is not: nothing past 1 is committed
    gates[1].set()
    await until(lambda: lane.advance() == 3, "the offset moves past 1 and 2")
    gates[3].set()
    await until(lambda: lane.advance() == 4, "the offset moves past 3")
    await lane.stop()
    assert errors == []


async def test_a_record_given_up_or_failed_is_not_finished_and_stop_waits_for_what_is_in_flight():
    finished: list[int] = []
    release = asyncio.Event()
    boom = RuntimeError("Kafka refused a write")

    async def handle(it: Item, stopping: asyncio.Event) -> None:
        offset = it.msg.offset
        if offset == 1:
            raise GiveUp
        if offset == 2:
            raise boom
        if offset == 3:                   # waiting for a token or a backoff: cut by stop()
            await stopping.wait()
            raise GiveUp
        if offset == 4:                   # a request in flight: stop() lets it finish
            await release.wait()
        finished.append(offset)

    errors: list[BaseException] = []
    lane = Lane(TP, handle, 8, errors.append)
    lane.add([item(o, f"c-{o}".encode()) for o in range(5)])
    await until(lambda: errors == [boom] and finished == [0], "0 is done and 2 has failed")
    assert lane.advance() == 1            # 1 was given up: it stays to be read again
    stopping = asyncio.ensure_future(lane.stop())
    await settle()
    assert not stopping.done()            # 4 is still in flight
    release.set()
    await stopping
    assert finished == [0, 4]
    assert lane.advance() == 1 and not lane.tasks and not lane.busy


async def test_a_stopped_lane_starts_nothing_more():
    started: list[int] = []

    async def handle(it: Item, stopping: asyncio.Event) -> None:
        started.append(it.msg.offset)

    lane = Lane(TP, handle, 1, lambda exc: None)
    await lane.stop()
    lane.add([item(0, b"a")])
    await settle()
    assert started == [] and lane.backlog() == 1 and lane.advance() is None


async def test_one_id_is_held_by_one_record_at_a_time_across_lanes():
    exclusive = Exclusive()
    order: list[str] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def holder(name: str, stopping: asyncio.Event) -> None:
        async with exclusive.hold(b"aa-1", stopping):
            order.append(f"{name} in")
            first_in.set()
            await release.wait()
            order.append(f"{name} out")

    one = asyncio.ensure_future(holder("one", asyncio.Event()))
    await first_in.wait()
    two = asyncio.ensure_future(holder("two", asyncio.Event()))
    await settle()
    assert order == ["one in"]            # two waits for one
    release.set()
    await asyncio.gather(one, two)
    assert order == ["one in", "one out", "two in", "two out"]


async def test_waiting_for_an_id_is_given_up_when_the_lane_stops():
    exclusive = Exclusive()
    release = asyncio.Event()
    held = asyncio.Event()

    async def hold_it() -> None:
        async with exclusive.hold(b"aa-1", asyncio.Event()):
            held.set()
            await release.wait()

    holder = asyncio.ensure_future(hold_it())
    await held.wait()
    stopping = asyncio.Event()

    async def wait_for_it() -> None:
        async with exclusive.hold(b"aa-1", stopping):
            raise AssertionError("entered while another record held the id")

    waiter = asyncio.ensure_future(wait_for_it())
    await settle()
    stopping.set()
    with pytest.raises(GiveUp):
        await waiter
    release.set()
    await holder
    async with exclusive.hold(b"aa-1", asyncio.Event()):     # free again
        pass
