"""Lanes: the order in which the webhook adapter works through the records of its partitions.

Each assigned partition is a :class:`Lane`: its records start in offset order, up to
``--concurrency`` at a time but never two of one key (customer) or one id (action or suppression)
at once, and the offset it may commit is the first record that is not finished (step 6 of
:mod:`orchestrator.adapters.webhook`). :class:`Exclusive` carries "one id at a time" across lanes,
since a copy of an action keyed differently lands in another partition.

A lane runs whatever handler it is given and knows nothing of HTTP or Kafka. A handler that
raises :class:`GiveUp` (the lane is stopping: its partition is revoked or the adapter stops)
leaves its record unfinished, so the offset stays before it and the partition's next owner, or
the next run, reads it again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiokafka import TopicPartition

from orchestrator.core.events import Rejection


class GiveUp(Exception):
    """The partition is being revoked or the adapter stops: leave this record to the next run."""


class Item:
    """One fetched record on its way through a lane: the Kafka record, what it parsed to, the
    keys no other record may hold while it is in flight (its record key and its id), and a
    ``fence``: what the handler waits for before it decides (the webhook adapter's: the cancels
    read up to where they were when the record was read, :meth:`~orchestrator.adapters.cancels.Cancels.fence`)."""

    __slots__ = ("msg", "data", "serial", "fence", "done")

    def __init__(self, msg: Any, data: dict[str, Any] | Rejection, ident: str | None,
                 fence: asyncio.Future | None = None) -> None:
        self.msg = msg
        self.data = data
        self.fence = fence
        serial: list[bytes] = [] if msg.key is None else [b"k" + msg.key]
        if ident is not None:
            serial.append(b"i" + ident.encode())
        self.serial = tuple(serial)  # never two records with one of these in flight at once
        self.done = False


class Lane:
    """An assigned partition: records start in offset order, at most ``limit`` at a time and
    never two sharing a serial key; the offset to commit is the first record not done."""

    def __init__(self, tp: TopicPartition, handle: Callable[[Item, asyncio.Event], Awaitable[None]], limit: int,
                 on_error: Callable[[BaseException], None]) -> None:
        self.tp, self.handle, self.limit, self.on_error = tp, handle, limit, on_error
        self.queue: deque[Item] = deque()         # not started
        self.order: deque[Item] = deque()         # not yet counted into next_offset
        self.busy: set[bytes] = set()
        self.tasks: set[asyncio.Task] = set()
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.next_offset: int | None = None       # every record before it is done
        self.committed: int | None = None
        self.runner = asyncio.ensure_future(self._run())

    def add(self, items: list[Item]) -> None:
        self.queue.extend(items)
        self.order.extend(items)
        self.wake.set()

    def backlog(self) -> int:
        return len(self.queue)

    def advance(self) -> int | None:
        """The offset to commit: one past the last record that, with every earlier one, is done."""
        order = self.order
        while order and order[0].done:
            self.next_offset = order.popleft().msg.offset + 1
        return self.next_offset

    async def _run(self) -> None:
        while not self.stopping.is_set():
            head = self.queue[0] if self.queue else None
            if head is None or len(self.tasks) >= self.limit or any(k in self.busy for k in head.serial):
                self.wake.clear()
                await self.wake.wait()
                continue
            self.queue.popleft()
            self.busy.update(head.serial)
            task = asyncio.ensure_future(self._one(head))
            self.tasks.add(task)

    async def _one(self, item: Item) -> None:
        try:
            await self.handle(item, self.stopping)
            item.done = True
        except GiveUp:
            pass
        except Exception as exc:  # noqa: BLE001 - e.g. Kafka refused a write: stop, commit no further
            self.on_error(exc)
        finally:
            self.busy.difference_update(item.serial)
            self.tasks.discard(asyncio.current_task())  # type: ignore[arg-type]
            self.wake.set()

    async def stop(self) -> None:
        """Start nothing more; wait for what is started (requests in flight finish, waits are cut)."""
        self.stopping.set()
        self.wake.set()
        await self.runner
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)


class Exclusive:
    """One record per id at a time across lanes (a copy of an action keyed differently lands in
    another partition, so its lane's serial keys do not see the first one)."""

    def __init__(self) -> None:
        self._held: dict[bytes, asyncio.Future] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: bytes, stopping: asyncio.Event) -> AsyncIterator[None]:
        """Hold ``key`` for the block, after whoever holds it now. Waiting is given up
        (:class:`GiveUp`) when this record's lane stops."""
        while (other := self._held.get(key)) is not None:
            await until(other, stopping)
        mine = asyncio.get_running_loop().create_future()
        self._held[key] = mine
        try:
            yield
        finally:
            del self._held[key]
            mine.set_result(None)


async def until(fut: asyncio.Future, stopping: asyncio.Event) -> Any:
    """Wait for ``fut`` without cancelling it (others may wait for it too) and return its result;
    raise :class:`GiveUp` if ``stopping`` is set first."""
    if not fut.done():
        await first(asyncio.shield(fut), stopping.wait())
        if stopping.is_set():
            raise GiveUp
    return fut.result()


async def first(*waits: Awaitable[Any]) -> None:
    """Wait until one of ``waits`` is done; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
