"""Steps 3-5 of the worker's protocol (see :mod:`orchestrator.runtime.worker`): a decided batch
made durable, then committed.

For every batch handed over, in order (all those waiting at once; at-least-once, at most every
``STEP_EVERY_S``):

3. wait until Kafka has acknowledged every output and changelog record of the batch; in
   exactly-once, then commit each input partition's transaction, its input offsets in it
   (:mod:`~orchestrator.runtime.transactions`);
4. write its changed states to RocksDB in one write batch, with the changelog offset;
5. commit its input offsets (at-least-once): at most every ``COMMIT_INTERVAL_S`` (a commit is a
   round trip and work for the group coordinator; the states and journals are durable already),
   and at once when the worker stops or partitions are revoked.

Until step 4, a batch's new states live in the :attr:`Checkpoint.overlay`
(:class:`~orchestrator.runtime.transaction.Overlay`), which later batches read first: deciding never
waits for Kafka round trips. The local database is never ahead of
the changelog, and an input offset is committed only after its state change is durable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import NoReturn

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError

from orchestrator.errors import WorkerFailure
from orchestrator.runtime.window import Window
from orchestrator.runtime.store import Stores
from orchestrator.runtime.transaction import Change, Overlay
from orchestrator.runtime.transactions import Transactions

log = logging.getLogger("orchestrator.worker")

MAX_BATCHES_IN_FLIGHT = 8         # handed to the checkpoint, not yet committed
COMMIT_INTERVAL_S = 0.25          # offsets of durable batches are committed at most this often
# At-least-once, steps 3-5 start at most this often, for every batch handed over meanwhile: under a
# paced load batches are small (a fetch waits 5 ms), and each step's RocksDB writes and window records
# are per partition, whatever the number of events. Outputs are sent when a batch is decided, so this
# delays only the local write and the offset commit. Not in exactly-once: a partition's outputs are
# visible, and its next transaction may begin, only once the step has committed its transaction.
STEP_EVERY_S = 0.02


class Flush:
    """A decided batch on its way to Kafka, RocksDB and the offset commit."""

    __slots__ = ("futures", "changelog", "changes", "commits", "ticks", "seq", "journals", "seen", "seen_changelog",
                 "transactions")

    def __init__(self, seq: int, futures: list[asyncio.Future], changelog: list[tuple[int, asyncio.Future, int]],
                 changes: dict[int, list[Change]],
                 commits: dict[TopicPartition, int], ticks: list[bytes],
                 journals: dict[int, list[tuple[bytes, bytes | None]]] | None = None,
                 seen: dict[int, bytes] | None = None,
                 seen_changelog: list[tuple[int, asyncio.Future, int]] | None = None,
                 transactions: set[int] | None = None) -> None:
        self.seq, self.futures, self.changelog, self.changes = seq, futures, changelog, changes
        self.commits, self.ticks, self.journals = commits, ticks, journals or {}
        # The duplicate window's new keys by partition, and their changelog records.
        self.seen, self.seen_changelog = seen or {}, seen_changelog or []
        self.transactions = transactions or set()       # exactly-once: the input partitions with one open


class Checkpoint:
    """Runs steps 3-5 for the batches handed over, in order, in a task of its own (:meth:`run`)."""

    def __init__(self, stores: Stores, commit: Callable[[dict[TopicPartition, int]], Awaitable[None]],
                 ready: set[int], fail: Callable[[BaseException], NoReturn],
                 on_ticks_done: Callable[[list[bytes]], None],
                 on_timer_indexed: Callable[[int, bytes], None], window: Window,
                 txns: Transactions | None = None,
                 send_seen: Callable[[dict[int, bytes]], Awaitable[dict[int, int]]] | None = None) -> None:
        self.stores, self.commit, self.ready, self.fail = stores, commit, ready, fail
        self.window, self.txns = window, txns
        # At-least-once: sends a batch's duplicate-window keys (partition -> changelog offset of each).
        self.send_seen = send_seen
        self.on_ticks_done, self.on_timer_indexed = on_ticks_done, on_timer_indexed
        self.overlay = Overlay()                 # states written by batches not yet in RocksDB
        # Committed offset (the next to process) per input partition: the lag gauge, journal pruning.
        self.positions: dict[TopicPartition, int] = {}
        self.failed: BaseException | None = None
        self._queue: asyncio.Queue[Flush] = asyncio.Queue(MAX_BATCHES_IN_FLIGHT)
        self._flushing = False
        self._pending = 0                        # batches handed over and not yet through steps 3-5
        self._uncommitted: dict[TopicPartition, int] = {}    # durable (steps 3-4 done), not yet committed
        self._committed_at = 0.0
        self._stepped_at = 0.0

    async def hand_over(self, flush: Flush) -> None:
        """Queue a decided batch (waits while ``MAX_BATCHES_IN_FLIGHT`` are not yet committed)."""
        await self._queue.put(flush)
        self._pending += 1                 # no await between the put and this: drain() sees both or neither

    async def drain(self) -> None:
        """Wait until every batch handed over is committed (or the checkpoint failed). Counted from
        :meth:`hand_over` to the end of its steps: a batch just taken off the queue, not yet being
        flushed, is still waited for (a revocation must not close what its commit needs)."""
        while self._pending or self._flushing:
            if self.failed is not None:
                return
            await asyncio.sleep(0.005)
        if self._uncommitted and self.failed is None:
            await self._commit()

    def forget(self, partitions: set[int]) -> None:
        """Partitions revoked: their committed offsets are someone else's business now."""
        for tp in [tp for tp in self.positions if tp.partition in partitions]:
            del self.positions[tp]

    async def run(self) -> None:
        """Steps 3-5 for every batch handed over, in order; all waiting batches at once."""
        queue = self._queue
        waiting: asyncio.Future[Flush] | None = None      # one get() kept across idle ticks, never cancelled
        try:
            while True:
                if waiting is None:
                    waiting = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({waiting}, timeout=COMMIT_INTERVAL_S)
                if not done:                      # idle: commit what is durable
                    if self._uncommitted and self.failed is None:
                        self._flushing = True
                        try:
                            await self._commit()
                        finally:
                            self._flushing = False
                    continue
                items, waiting = [waiting.result()], None
                if self.txns is None:
                    pause = self._stepped_at + STEP_EVERY_S - time.monotonic()
                    if pause > 0:
                        await asyncio.sleep(pause)
                self._stepped_at = time.monotonic()
                await self._step(items)
        finally:
            if waiting is not None:
                waiting.cancel()

    async def _step(self, items: list[Flush]) -> None:
        """Steps 3-5 for ``items`` and every batch waiting behind them."""
        queue = self._queue
        while not queue.empty():
            items.append(queue.get_nowait())
        self._flushing = True
        try:
            await self._flush(items)
            self._pending -= len(items)
        except Exception as exc:  # noqa: BLE001 - e.g. RocksDB cannot write: stop, commit nothing more
            if not isinstance(exc, WorkerFailure):
                log.exception("could not complete a batch; stopping so its inputs are replayed")
            self.failed = exc
            while True:                # nothing more is committed; let the worker stop
                await queue.get()
        finally:
            self._flushing = False

    async def _flush(self, items: list[Flush]) -> None:
        # Step 3: every output and changelog record acknowledged.
        futures = [f for item in items for f in item.futures]
        if futures:
            results = await asyncio.gather(*futures, return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    self.fail(r)
        # Step 3, exactly-once: each batch's transactions, in order, with their input offsets.
        if self.txns is not None:
            for item in items:
                by_partition: dict[int, dict[TopicPartition, int]] = {}
                for tp, offset in item.commits.items():
                    by_partition.setdefault(tp.partition, {})[tp] = offset
                await asyncio.gather(*(self.txns.commit(p, by_partition.get(p, {})) for p in item.transactions))
        # Step 4, for all these batches at once: each partition's changed states and journal records
        # in one RocksDB write, in batch order (a later batch's value of a key is the one left), with
        # the changelog offset they correspond to; then the same for the duplicate window's keys.
        states: dict[int, list[Change]] = {}
        journals: dict[int, list[tuple[bytes, bytes | None]]] = {}
        offsets: dict[int, int] = {}
        seen: dict[int, list[bytes]] = {}
        seen_offsets: dict[int, int] = {}
        for item in items:
            for p, changes in item.changes.items():
                states.setdefault(p, []).extend(changes)
            for p, records in item.journals.items():
                journals.setdefault(p, []).extend(records)
            for p, fut, count in item.changelog:
                offsets[p] = max(offsets.get(p, -1), fut.result().offset + count - 1)
            for p, blob in item.seen.items():
                seen.setdefault(p, []).append(blob)
            for p, fut, count in item.seen_changelog:
                seen_offsets[p] = max(seen_offsets.get(p, -1), fut.result().offset + count - 1)
        window_keys = {p: b"".join(blobs) for p, blobs in seen.items()}
        if self.send_seen is not None and window_keys:
            # At-least-once: the window's keys go to their changelog only now that the states and
            # journals are durable (one record per partition for all these batches: one round trip).
            try:
                seen_offsets = await self.send_seen(window_keys)
            except Exception as exc:  # noqa: BLE001 - as any output that cannot be delivered
                self.fail(exc)
        for p in states.keys() | journals.keys():
            first_timer = self.stores.get(p).write(states.get(p, []), offsets.get(p), journals.get(p, ()))
            if first_timer is not None:
                self.on_timer_indexed(p, first_timer)
        for p, blob in window_keys.items():
            self.window.stores.get(p).write(blob, seen_offsets.get(p))
        commits: dict[TopicPartition, int] = {}
        overlay = self.overlay
        for item in items:
            for changes in item.changes.values():
                overlay.settled(item.seq, changes)
            self.window.settled(item.seq)
            self.on_ticks_done(item.ticks)
            commits.update(item.commits)
        # Step 5: the input offsets, for the partitions still ours (at most every COMMIT_INTERVAL_S);
        # in exactly-once they were committed with the transactions.
        if self.txns is not None:
            self.positions.update(commits)
            return
        self._uncommitted.update(commits)
        if time.monotonic() - self._committed_at >= COMMIT_INTERVAL_S:
            await self._commit()

    async def _commit(self) -> None:
        commits = {tp: o for tp, o in self._uncommitted.items() if tp.partition in self.ready}
        self._uncommitted = {}
        self._committed_at = time.monotonic()
        if commits:
            try:
                await self.commit(commits)
            except Exception as exc:  # noqa: BLE001 - e.g. the group rebalanced meanwhile
                # Harmless: the state is durable; whoever owns the partitions replays these inputs,
                # finds them in the journal (same outputs, same ids) and decides nothing twice.
                log.log(logging.INFO if isinstance(exc, CommitFailedError) else logging.WARNING,   # the group moved on
                        "offset commit failed (%s); those inputs will be replayed", type(exc).__name__)
            else:
                self.positions.update(commits)
