"""The worker's batch path without a broker: records in, decided by the core, records out (fake producer)."""

from __future__ import annotations

import time
from dataclasses import replace

import orjson
import pytest

from orchestrator.config import Settings
from orchestrator.core import Engine, Policies
from orchestrator.core.events import EventTypes
from orchestrator.core.expressions import Expression
from orchestrator.core.state import PROFILE_MAX_BYTES
from orchestrator.errors import WorkerFailure
from orchestrator.observability.metrics import Metrics
from orchestrator.runtime.batch import Decider
from orchestrator.runtime.checkpoint import Checkpoint
from orchestrator.runtime.counters import Counters
from orchestrator.runtime.dedup import DedupStores
from orchestrator.runtime.eventtime import Clocks
from orchestrator.runtime.ingest import IngestRules
from orchestrator.runtime.store import Stores
from orchestrator.runtime.window import Window
from tests.unit.core.helpers import journey, raw_event
from tests.unit.runtime.fakekafka import FakeProducer, record, records

INSTANT = """
journey: instant
entry: {on: cart.updated, reentry: always}
start: email
nodes:
  email: {send: email, template: t, next: done}
  done: {exit: completed}
"""


def _bug(ns, now_ms):  # noqa: ANN001, ANN202 - an Expression's function
    raise RuntimeError("a bug that must not stop the partition (message may quote c-1)")


def with_a_bug() -> list:
    """The journeys of these tests, and one with a bug: its entry condition raises on events of type
    ``boom``, after the engine has already changed the customer's state for the event (its time, its
    activity); a real Engine decides them all."""
    instant = journey(INSTANT)
    buggy = replace(instant, id="buggy", entry_on=EventTypes(("boom",)),
                    entry_if=Expression("bug()", _bug, frozenset()))
    return [instant, buggy]


NOW = int(time.time() * 1000)         # the batch path's max_event_age is measured against the wall clock


def fail(exc: BaseException):  # noqa: ANN201
    raise WorkerFailure(str(exc))


@pytest.fixture
def batch(tmp_path):
    yield from make_batch(tmp_path, with_a_bug())


def make_batch(tmp_path, journeys: list):  # noqa: ANN201 - the fixture's generator
    settings = Settings(topic_prefix="t", partitions=1, data_dir=str(tmp_path))
    policies = Policies()
    engine = Engine(journeys, policies)
    stores = Stores(settings.data_dir)
    metrics = Metrics(policies.channels)
    producer = FakeProducer()

    async def commit(offsets):  # noqa: ANN001, ANN202
        return None

    window = Window(DedupStores(settings.data_dir, stores.memory))
    checkpoint = Checkpoint(stores, commit, {0}, fail, on_ticks_done=lambda keys: None,
                            on_timer_indexed=lambda p, key: None, window=window)
    names = {settings.topics.suffix(name): name for name in settings.topics.outputs(policies.channels)}
    counts = {name: 1 for name in [*names.values(), settings.topics.internal_events, settings.topics.changelog]}
    decider = Decider(settings.topics, IngestRules.of(settings), engine, stores, Counters(metrics, policies.channels),
                      checkpoint, producer, names, counts, fail, Clocks(settings.topics.events), window)
    yield settings, decider, producer, metrics
    stores.close()
    window.stores.close()


def dead_letters(producer: FakeProducer) -> list[dict]:
    return [orjson.loads(v) for _, _, v in producer.on("t.dlq")]


async def test_an_engine_error_is_dead_lettered_counted_and_the_partition_goes_on(batch):
    settings, decider, producer, metrics = batch
    ev = settings.topics.events
    await decider.run(records(record(ev, 0, 10, b"c-1", raw_event("boom", "c-1", NOW, "e-boom")),
                              record(ev, 0, 11, b"c-1", raw_event("cart.updated", "c-1", NOW + 1, "e-cart"))), {0})
    [dead] = dead_letters(producer)
    assert dead["reason"] == "engine_error"
    assert dead["detail"].startswith("RuntimeError in the engine, deciding an event of type boom")
    assert "c-1" not in dead["detail"]                     # the exception's message is not copied
    assert (dead["topic"], dead["partition"], dead["offset"]) == (ev, 0, 10)
    assert orjson.loads(dead["raw"])["event_id"] == "e-boom"
    assert [k for _, k, _ in producer.on("t.dlq")] == [b"c-1"]
    assert len(producer.on("t.actions.email")) == 1        # the next event of the partition was decided
    text = metrics.render().decode()
    assert "orch_engine_errors_total 1.0" in text
    assert 'orch_dead_letters_total{reason="engine_error"} 1.0' in text
    assert 'orch_events_in_total{result="dead_letter"} 1.0' in text


async def test_values_a_state_cannot_keep_never_stop_the_batch_path(batch):
    # A profile property beyond 64 bits once reached the state's encoding at the end of the batch, outside
    # every record's error handling: the worker stopped, and stopped again on the replay after its restart.
    settings, decider, producer, _ = batch
    ev = settings.topics.events
    big = raw_event("profile.updated", "c-4", NOW, "e-big", points=10**30)
    address: object = 1
    for _ in range(33):                                    # objects and lists at most 32 deep
        address = [address]
    deep = raw_event("profile.updated", "c-4", NOW, "e-deep", address=address)
    flush = await decider.run(records(record(ev, 0, 20, b"c-4", big), record(ev, 0, 21, b"c-4", deep),
                                      record(ev, 0, 22, b"c-4", raw_event("cart.updated", "c-4", NOW + 1, "e-c4"))), {0})
    assert [(d["reason"], d["offset"]) for d in dead_letters(producer)] == [("invalid_schema", 20), ("invalid_schema", 21)]
    assert "$.properties.points" in dead_letters(producer)[0]["detail"]
    assert len(producer.on("t.actions.email")) == 1        # the partition went on
    assert flush.changes                                   # and the customer's state was written


async def test_a_profile_update_the_state_cannot_hold_is_dead_lettered_too_large(batch):
    settings, decider, producer, metrics = batch
    ev = settings.topics.events
    field = "x" * 60_000
    updates = [record(ev, 0, i, b"c-5", raw_event("profile.updated", "c-5", NOW, f"e-p{i}", **{f"f{i}": field}))
               for i in range(10)]
    flush = await decider.run(records(*updates, record(ev, 0, 10, b"c-5", raw_event("cart.updated", "c-5", NOW + 1,
                                                                                     "e-c5"))), {0})
    assert [(d["reason"], d["offset"]) for d in dead_letters(producer)] == [("too_large", 8), ("too_large", 9)]
    assert len(producer.on("t.actions.email")) == 1        # the partition went on, the customer too
    [(_, _, value)] = [c for changes in flush.changes.values() for c in changes]
    assert PROFILE_MAX_BYTES - 60_000 < len(value) < PROFILE_MAX_BYTES + 2_000   # the profile and the rest
    text = metrics.render().decode()
    assert 'orch_dead_letters_total{reason="too_large"} 2.0' in text
    assert 'orch_events_in_total{result="dead_letter"} 2.0' in text and 'orch_events_in_total{result="valid"} 9.0' in text


FAN_OUT = """
journey: fan-out
entry: {on: cart.updated, reentry: always}
capture: {all: "[event, event, event, event, event, event, event, event, event, event, event, event, event, event, event, event, event, event]"}
start: email
nodes:
  email: {send: email, template: t, next: wait}
  wait: {wait: 1h, next: done}
  done: {exit: completed}
"""


async def test_a_state_grown_past_its_limit_in_a_batch_is_not_written_and_the_worker_goes_on(tmp_path):
    # A profile update is refused before it grows the state; a journey capturing large values can still
    # grow it in one batch. The state is then not written: the customer keeps what it had (here nothing).
    gen = make_batch(tmp_path, [journey(FAN_OUT)])
    settings, decider, producer, metrics = next(gen)
    ev = settings.topics.events
    big = raw_event("cart.updated", "c-6", NOW, "e-1", note="y" * 60_000)
    flush = await decider.run(records(record(ev, 0, 7, b"c-6", big),                    # 18 x 60 KB in its vars
                                      record(ev, 0, 8, b"c-7", raw_event("cart.updated", "c-7", NOW, "e-7"))), {0})
    assert [c.key for changes in flush.changes.values() for c in changes] == [b"c-7"]   # c-6's is not written
    [dead] = dead_letters(producer)
    assert (dead["reason"], dead["topic"], dead["partition"], dead["offset"]) == ("too_large", ev, 0, 7)
    assert dead["detail"].startswith("the customer's state would be ") and "their changes are not kept" in dead["detail"]
    text = metrics.render().decode()
    assert 'orch_events_in_total{result="dead_letter"} 1.0' in text and 'orch_events_in_total{result="valid"} 1.0' in text
    assert len(producer.on("t.actions.email")) == 2           # the outputs already queued went out (same ids again later)
    assert decider._tx.entry(b"c-6", 0).state is None          # what the customer had: nothing
    again = await decider.run(records(record(ev, 0, 9, b"c-6", raw_event("cart.updated", "c-6", NOW + 1, "e-2"))), {0})
    assert [c.key for changes in again.changes.values() for c in changes] == [b"c-6"]  # and it goes on from there
    gen.close()


async def test_what_the_engine_half_changed_before_raising_is_not_kept(batch):
    settings, decider, producer, _ = batch
    ev = settings.topics.events
    boom = raw_event("boom", "c-2", NOW, "e-boom-2")
    await decider.run(records(record(ev, 0, 0, b"c-2", boom)), {0})
    await decider.run(records(record(ev, 0, 1, b"c-2", boom)), {0})           # the same event again
    # Not a duplicate: the failed decision remembered nothing, so it fails (and is dead-lettered) again.
    assert [d["offset"] for d in dead_letters(producer)] == [0, 1]


async def test_an_undecodable_internal_record_is_dead_lettered_engine_error(batch):
    settings, decider, producer, metrics = batch
    await decider.run(records(record(settings.topics.internal_events, 0, 5, b"c-3", b"\xff\x00 not msgpack")), {0})
    [dead] = dead_letters(producer)
    assert dead["reason"] == "engine_error"
    assert "decoding a record of the internal topic" in dead["detail"]
    assert (dead["topic"], dead["offset"]) == (settings.topics.internal_events, 5)
    text = metrics.render().decode()
    assert "orch_engine_errors_total 1.0" in text
    assert 'orch_events_in_total{result="dead_letter"} 0.0' in text          # not an event
    assert 'orch_dead_letters_total{reason="engine_error"} 1.0' in text


async def test_the_batch_path_sizes_each_journal_entry_as_the_journal_does(batch):
    """The batch path adds up an input's journal size as it builds its outputs (``Decider._emit``); the
    records the journal is cut into depend on it, so it must be exactly :func:`entry_size` of what it
    keeps. (The journal is compiled with the batch path: its methods cannot be wrapped per instance,
    so the size is checked where it is made.)"""
    from orchestrator.core.events import Event
    from orchestrator.core.validation import parse_event
    from orchestrator.runtime.journal import ENTRY_BYTES, entry_size
    _, decider, _, _ = batch
    ev = parse_event(raw_event("cart.updated", "c-3", NOW, "e-3a"), max_bytes=1 << 20, now_ms=NOW)
    assert isinstance(ev, Event)
    result = decider.engine.on_event(None, ev, NOW)
    assert result.outputs, "an input with outputs"
    journaled, size = decider._emit(b"c-3", ev, result.outputs, 0)
    assert len(journaled) == len(result.outputs) and size == entry_size(journaled)
    assert ENTRY_BYTES == entry_size([])          # what the batch path counts for an input without outputs
