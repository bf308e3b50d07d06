"""The batch path's rooms, each alone with a fake producer and a real RocksDB in a temporary folder:
the collector (records out), the transaction (a batch's customer states) and the journal (outputs by input)."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest
from aiokafka import TopicPartition

from orchestrator.core.state import CustomerState, Instance, decode_state
from orchestrator.errors import WorkerFailure
from orchestrator.runtime.checkpoint import Checkpoint, Flush
from orchestrator.runtime.collector import Collector, append
from orchestrator.runtime.dedup import DedupStores
from orchestrator.runtime.journal import EVENTS, INTERNAL, Journal
from orchestrator.runtime.journalcodec import Output
from orchestrator.kafkaio.clients import partition_for
from orchestrator.runtime.store import DUE_LEN, STATE, Stores, journal_key
from orchestrator.runtime.transaction import Change, Overlay, Transaction, encode_value
from orchestrator.runtime.window import Window
from tests.unit.runtime.fakekafka import FakeBatch, FakeProducer


def fail(exc: BaseException):  # noqa: ANN201
    raise WorkerFailure(str(exc))


def collector(producer: FakeProducer, **counts: int) -> Collector:
    return Collector(lambda via: producer, {"out": 4, "log": 4, **counts}, partition_for, fail)


# ---------------------------------------------------------------------------------------------- collector
async def test_the_collector_places_keys_with_the_partitioner_and_sends_on_submit():
    producer = FakeProducer()
    out = collector(producer)
    out.send("out", b"c-1", b"a")
    out.send("out", b"c-1", b"b")
    out.send("log", b"c-1", b"x", 3)                       # an explicit partition wins
    assert producer.sent == []                            # nothing handed over before submit
    sent = await out.submit()
    p = partition_for(b"c-1", 4)
    assert producer.on("out") == [(p, b"c-1", b"a"), (p, b"c-1", b"b")]
    assert producer.on("log") == [(3, b"c-1", b"x")]
    assert sorted((s.topic, s.partition, s.records) for s in sent) == [("log", 3, 1), ("out", p, 2)]
    assert await out.submit() == []                       # the next batch starts empty


async def test_records_without_a_key_go_round_robin():
    producer = FakeProducer()
    out = collector(producer)
    for i in range(8):
        out.send("out", None, str(i).encode())
    await out.submit()
    assert sorted({p for p, _, _ in producer.on("out")}) == [0, 1, 2, 3]


async def test_a_full_producer_batch_starts_another_and_a_record_too_big_for_any_stops_the_worker():
    producer = FakeProducer()
    producer.create_batch = lambda: FakeBatch(max_records=2)          # type: ignore[method-assign]
    out = collector(producer)
    for i in range(5):
        out.send("out", b"k", str(i).encode(), 0)
    sent = await out.submit()
    assert [s.records for s in sent] == [2, 2, 1] and [v for _, _, v in producer.on("out")] == [b"0", b"1", b"2",
                                                                                                b"3", b"4"]
    producer.create_batch = lambda: FakeBatch(max_records=0)          # type: ignore[method-assign]
    with pytest.raises(WorkerFailure):
        out.send("out", b"k", b"too big", 0)


# ---------------------------------------------------------------------------------------------- transaction
def state(due: int | None = None) -> CustomerState:
    s = CustomerState(profile={"tier": "gold"})
    if due is not None:
        s.instances["j"] = Instance(journey="j", version=1, instance_id="e-1", node="wait", entered_ms=1,
                                    trigger_event_id="e-1", trigger_ts_ms=1, due_ms=due)
    return s


def test_records_go_into_aiokafkas_batches_as_its_own_append_puts_them():
    """The collector puts records into aiokafka's BatchBuilder without its Python ``append`` (one frame
    per record out); the batch built must hold the same records, and a full batch must refuse and
    close alike. Fails if aiokafka's batch internals change."""
    from aiokafka.producer.message_accumulator import BatchBuilder
    from aiokafka.record.default_records import DefaultRecordBatch

    def read(b: BatchBuilder) -> list:
        return [(r.offset, r.key, r.value, list(r.headers)) for r in DefaultRecordBatch(bytes(b._build()))]

    records = [(b"c-1", b'{"a":1}'), (None, b"no key"), (b"c-2", None)]
    ours, theirs = BatchBuilder(16384, 0), BatchBuilder(16384, 0)
    for key, value in records:
        assert append(ours, key, value) and theirs.append(timestamp=None, key=key, value=value) is not None
    assert read(ours) == read(theirs) == [(i, k, v, []) for i, (k, v) in enumerate(records)]
    small_ours, small_theirs = BatchBuilder(200, 0), BatchBuilder(200, 0)
    n = 0
    while append(small_ours, b"k", b"x" * 30):
        n += 1
    m = 0
    while small_theirs.append(timestamp=None, key=b"k", value=b"x" * 30) is not None:
        m += 1
    assert n == m > 1 and small_ours._closed and not append(small_ours, b"k", b"x")
    assert read(small_ours) == read(small_theirs)


def test_a_state_is_read_from_the_overlay_first_then_rocksdb_and_once_per_batch(tmp_path):
    stores = Stores(str(tmp_path))
    stores.get(0).write([(b"a", None, encode_value(state(5)))], None)
    stores.get(0).write([(b"b", None, encode_value(state()))], None)
    overlay = Overlay()
    overlay.values[b"b"] = (1, encode_value(state(9)))                # a newer state, not yet in RocksDB
    tx = Transaction(stores, overlay, 2)
    a, b = tx.entry(b"a", 0), tx.entry(b"b", 0)
    assert a.state.next_due_ms() == 5 and a.old_due == (5).to_bytes(DUE_LEN, "big")
    assert b.state.next_due_ms() == 9                                  # the overlay's
    assert tx.entry(b"a", 0) is a                                      # once per batch
    assert tx.entry(b"nobody", 0).state is None and tx.entry(b"nobody", 0).old_due is None
    stores.close()


def test_the_stores_read_are_the_ones_open_now_a_partition_not_open_yet_is_opened(tmp_path):
    """The transaction and the window ask the stores' open databases directly (not through
    ``stores.get``): a partition not open yet is opened, and one wiped since is read as it is now."""
    stores = Stores(str(tmp_path))
    dedup = DedupStores(str(tmp_path), stores.memory)
    window = Window(dedup)
    assert Transaction(stores, Overlay(), 1).entry(b"a", 3).state is None and 3 in stores.open
    key = b"k" * 16
    assert window.first(5, key) and 5 in dedup.open
    stores.get(0).write([(b"a", None, encode_value(state(5)))], None)
    window.changes(None, "dd", 1)
    dedup.get(5).write(key, 1)
    window.settled(1)
    assert Transaction(stores, Overlay(), 2).entry(b"a", 0).state.next_due_ms() == 5
    assert not window.first(5, key)                                   # in RocksDB
    stores.wipe(0), dedup.wipe(5)                                     # a restore starts over
    assert Transaction(stores, Overlay(), 3).entry(b"a", 0).state is None
    assert window.first(5, key)
    stores.close(), dedup.close()


def test_what_counts_as_a_change(tmp_path):
    stores = Stores(str(tmp_path))
    stores.get(0).write([(b"a", None, encode_value(state(5)))], None)
    tx = Transaction(stores, Overlay(), 1)
    e = tx.entry(b"a", 0)
    Transaction.update(e, e.state, tick=True, outputs=False, old_due=5)          # a wake-up that did nothing
    assert not e.dirty
    Transaction.update(e, e.state, tick=False, outputs=False, old_due=5)         # any event changes the state
    assert e.dirty
    f = tx.entry(b"new", 0)
    Transaction.update(f, state(), tick=True, outputs=False, old_due=None)      # a state where there was none
    assert f.dirty
    g = tx.entry(b"a2", 0)
    Transaction.update(g, None, tick=True, outputs=False, old_due=None)         # deleting nothing changes nothing
    assert not g.dirty
    stores.close()


def test_changes_go_to_the_changelog_and_the_overlay_until_settled(tmp_path):
    stores = Stores(str(tmp_path))
    stores.get(1).write([(b"gone", None, encode_value(state()))], None)
    producer = FakeProducer()
    out = collector(producer)
    overlay = Overlay()
    tx = Transaction(stores, overlay, 7)
    kept = tx.entry(b"kept", 1)
    Transaction.update(kept, state(42), tick=False, outputs=False, old_due=None)
    gone = tx.entry(b"gone", 1)
    Transaction.update(gone, None, tick=False, outputs=False, old_due=None)
    changes = tx.changes(out, "log")
    assert changes == {1: [Change(b"kept", None, encode_value(state(42))), Change(b"gone", bytes(DUE_LEN), None)]}
    assert overlay.values == {b"kept": (7, encode_value(state(42))), b"gone": (7, None)}
    overlay.values[b"gone"] = (8, b"a later batch wrote it again")
    overlay.settled(7, changes[1])
    assert overlay.values == {b"gone": (8, b"a later batch wrote it again")}
    stores.close()


def test_a_decision_that_raised_leaves_an_unchanged_customer_as_stored(tmp_path):
    stores = Stores(str(tmp_path))
    stores.get(0).write([(b"a", None, encode_value(state()))], None)
    tx = Transaction(stores, Overlay(), 1)
    tx.entry(b"a", 0).state.profile["half"] = "changed"              # what an engine bug might do
    tx.discard(b"a")
    assert "half" not in tx.entry(b"a", 0).state.profile              # read again as stored
    changed = tx.entry(b"a", 0)
    Transaction.update(changed, state(3), tick=False, outputs=False, old_due=None)
    tx.discard(b"a")
    assert tx.entry(b"a", 0) is changed                               # earlier changes of the batch stay
    stores.close()


# ---------------------------------------------------------------------------------------------- journal
TOPICS = {EVENTS: "ev", INTERNAL: "in"}


async def test_an_input_decided_before_a_crash_gets_its_first_outputs_once(tmp_path):
    stores = Stores(str(tmp_path))
    producer = FakeProducer()
    out = collector(producer)
    journal = Journal(TOPICS)
    first = [Output("actions.email", "c-1", b'{"action_id":"a-1"}'), Output("decisions", "c-1", b"{}")]
    journal.record(2, EVENTS, 10, first)
    journal.record(2, EVENTS, 11, [Output("decisions", "c-2", b"{}")])
    rows = journal.write(out, "log", {})
    await out.submit()
    [(key, value)] = rows[2]
    assert key == journal_key(EVENTS, 10) and producer.on("log") == [(2, key, value)]
    stores.get(2).write([], None, rows[2])
    # A new owner of partition 2 whose committed offset is 11: input 10 is done, 11 is replayed.
    again = Journal(TOPICS)
    again.adopt(2, stores.get(2), {EVENTS: 11, INTERNAL: None})
    assert again.replayed(2, EVENTS, 10) is None
    assert again.replayed(2, EVENTS, 11) == [Output("decisions", "c-2", b"{}")]
    assert again.replayed(2, EVENTS, 11) is None                     # once
    assert again.replayed(2, INTERNAL, 11) is None
    stores.close()


async def test_a_journal_is_tombstoned_once_every_offset_it_covers_is_committed():
    producer = FakeProducer()
    out = collector(producer)
    journal = Journal(TOPICS)
    journal.record(0, INTERNAL, 5, [Output("decisions", "c", b"{}")])
    journal.record(0, INTERNAL, 6, [Output("decisions", "c", b"{}")])
    journal.write(out, "log", {})
    assert journal.write(out, "log", {TopicPartition("in", 0): 6}) == {}            # 6 not committed yet
    assert journal.write(out, "log", {TopicPartition("in", 0): 7}) == {0: [(journal_key(INTERNAL, 5), None)]}
    await out.submit()
    assert producer.on("log")[-1] == (0, journal_key(INTERNAL, 5), None)
    assert journal.write(out, "log", {TopicPartition("in", 0): 7}) == {}            # once


def test_a_revoked_partitions_journals_are_forgotten(tmp_path):
    stores = Stores(str(tmp_path))
    value = msgspec.msgpack.encode([(3, [("decisions", "c", b"{}")])])
    stores.get(4).write([], None, [(journal_key(EVENTS, 3), value)])
    journal = Journal(TOPICS)
    journal.adopt(4, stores.get(4), {EVENTS: None, INTERNAL: None})
    journal.forget({4})
    assert journal.replayed(4, EVENTS, 3) is None
    stores.close()


def test_the_stored_value_is_the_due_time_then_the_state():
    raw = encode_value(state(77))
    assert int.from_bytes(raw[:DUE_LEN], "big") == 77
    assert decode_state(raw[DUE_LEN:]) == state(77)
    assert encode_value(state())[:DUE_LEN] == bytes(DUE_LEN)
    assert STATE == b"c"


async def test_each_input_partitions_records_go_through_its_own_producer():
    # Exactly-once: the records of one input partition's work are its transaction's.
    producers = {0: FakeProducer(), 1: FakeProducer()}
    out = Collector(lambda via: producers[via], {"out": 4, "log": 4}, partition_for, fail)
    out.via = 0
    out.send("out", b"c-1", b"from 0")
    out.via = 1
    out.send("out", b"c-1", b"from 1")
    out.send("log", b"k", b"state of 0", 0, via=0)
    assert out.vias() == {0, 1}
    sent = await out.submit()
    assert [v for _, _, v in producers[0].on("out")] == [b"from 0"]
    assert producers[0].on("log") == [(0, b"k", b"state of 0")]
    assert [v for _, _, v in producers[1].on("out")] == [b"from 1"] and producers[1].on("log") == []
    assert sorted((s.via, s.topic) for s in sent) == [(0, "log"), (0, "out"), (1, "out")]


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
async def test_drain_waits_for_a_batch_taken_off_the_queue_but_not_yet_flushed(tmp_path, turns):
    """A revocation drains the checkpoint, then closes the partitions' producers: drain() must not
    return while a batch handed over is between the queue and its flush, at any turn of the loop
    (it did: the exactly-once commit then found its partition's producer closed)."""
    stores = Stores(str(tmp_path))
    committed: list[dict] = []

    async def commit(offsets):  # noqa: ANN001, ANN202
        committed.append(offsets)

    def fail(exc):  # noqa: ANN001, ANN202
        raise exc

    checkpoint = Checkpoint(stores, commit, {0}, fail, on_ticks_done=lambda keys: None,
                            on_timer_indexed=lambda p, key: None, window=Window(DedupStores(str(tmp_path), stores.memory)))
    runner = asyncio.create_task(checkpoint.run())
    acked: asyncio.Future = asyncio.get_running_loop().create_future()
    tp = TopicPartition("t.events", 0)
    await checkpoint.hand_over(Flush(1, [acked], [], {}, {tp: 7}, []))
    for _ in range(turns):
        await asyncio.sleep(0)
    draining = asyncio.create_task(checkpoint.drain())
    await asyncio.sleep(0.05)
    assert not draining.done(), "drain() returned before the batch's outputs were acknowledged"
    acked.set_result(None)
    await asyncio.wait_for(draining, 5)
    assert committed == [{tp: 7}] and checkpoint.positions == {tp: 7}
    runner.cancel()
    stores.close()


class _Acked:
    def __init__(self, offset: int) -> None:
        self.offset = offset


def _acked(offset: int) -> asyncio.Future:
    fut = asyncio.get_running_loop().create_future()
    fut.set_result(_Acked(offset))
    return fut


async def test_batches_handed_over_within_a_step_interval_are_made_durable_in_one_step(tmp_path):
    """At-least-once, the checkpoint steps at most every STEP_EVERY_S: the batches handed over meanwhile
    get one RocksDB write per partition (states and journals, in batch order: the later value of a key
    stays, its timer moves), one duplicate-window record and write per partition, one commit."""
    from orchestrator.core.dedup import KEY_LEN
    from orchestrator.runtime.checkpoint import STEP_EVERY_S
    from orchestrator.runtime.store import timer_key
    from orchestrator.runtime.transaction import due_bytes

    stores = Stores(str(tmp_path))
    dedup = DedupStores(str(tmp_path), stores.memory)
    window = Window(dedup)
    committed: list[dict] = []
    sent_seen: list[dict] = []

    async def commit(offsets):  # noqa: ANN001, ANN202
        committed.append(offsets)

    async def send_seen(keys):  # noqa: ANN001, ANN202
        sent_seen.append(keys)
        return {p: 100 + p for p in keys}

    def fail(exc):  # noqa: ANN001, ANN202
        raise exc

    checkpoint = Checkpoint(stores, commit, {0, 1}, fail, on_ticks_done=lambda keys: None,
                            on_timer_indexed=lambda p, key: None, window=window, send_seen=send_seen)
    writes: list[int] = []
    for p in (0, 1):
        for store in (stores.get(p), dedup.get(p)):
            real = store.write

            def counted(*args, _p=p, _real=real):  # noqa: ANN002, ANN202
                writes.append(_p)
                return _real(*args)
            store.write = counted
    first, later = encode_value(state(1_000)), encode_value(state(2_000))
    k1, k2, k3 = (bytes([n]) * KEY_LEN for n in (1, 2, 3))
    tp0, tp1 = TopicPartition("t.events", 0), TopicPartition("t.events", 1)
    window.first(0, k1)
    seen_1 = window.changes(None, "dd", 1)              # the window's keys of each batch, as a batch hands them over
    window.first(0, k2)
    window.first(1, k3)
    seen_2 = window.changes(None, "dd", 2)
    assert window.overlay == {k1, k2, k3}
    batches = [
        Flush(1, [], [(0, _acked(10), 1)], {0: [Change(b"c", None, first)]}, {tp0: 5}, [], seen=seen_1),
        Flush(2, [], [(0, _acked(11), 2), (1, _acked(20), 1)],
              {0: [Change(b"c", first[:DUE_LEN], later)], 1: [Change(b"d", None, first)]}, {tp0: 9, tp1: 3}, [],
              seen=seen_2),
    ]
    for flush in batches:
        for p, changes in flush.changes.items():
            for change in changes:
                checkpoint.overlay.values[change.key] = (flush.seq, change.new)
    checkpoint._stepped_at = time.monotonic()          # a step has just been made
    runner = asyncio.create_task(checkpoint.run())
    for flush in batches:
        await checkpoint.hand_over(flush)
        for _ in range(100):                            # the checkpoint takes the first one at once
            if checkpoint._queue.empty():
                break
            await asyncio.sleep(0)
        for _ in range(10):
            await asyncio.sleep(0)
    await asyncio.sleep(STEP_EVERY_S * 3)
    await asyncio.wait_for(checkpoint.drain(), 5)
    runner.cancel()

    assert sorted(writes) == [0, 0, 1, 1], "one state write and one window write per partition"
    assert sent_seen == [{0: k1 + k2, 1: k3}]
    assert stores.get(0).get(b"c") == later and stores.get(1).get(b"d") == first
    assert stores.get(0).changelog_offset() == 12 and stores.get(1).changelog_offset() == 20
    db = stores.get(0).db
    assert db.get(timer_key(due_bytes(2_000), b"c")) is not None and db.get(timer_key(due_bytes(1_000), b"c")) is None
    assert dedup.get(0).seen(k1) and dedup.get(0).seen(k2) and dedup.get(1).seen(k3)
    assert dedup.get(0).changelog_offset() == 100 and dedup.get(1).changelog_offset() == 101
    assert checkpoint.overlay.values == {} and window.overlay == set()
    assert committed == [{tp0: 9, tp1: 3}]
    stores.close()
    dedup.close()


def test_a_full_batchs_window_keys_of_one_partition_fit_one_producer_batch():
    """The duplicate window's record of a partition and batch holds 16 bytes per event it saw first;
    in exactly-once it goes through the collector, which stops the worker on a record that does not
    fit a producer batch. A batch of BATCH_MAX events all of one partition must fit."""
    from aiokafka.producer.message_accumulator import BatchBuilder

    from orchestrator.core.dedup import KEY_LEN
    from orchestrator.runtime.worker import BATCH_MAX, PRODUCER
    builder = BatchBuilder(PRODUCER["max_batch_size"], 0)
    assert builder.append(timestamp=None, key=None, value=b"k" * (BATCH_MAX * KEY_LEN)) is not None
