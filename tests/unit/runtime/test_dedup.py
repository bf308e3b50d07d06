"""The worker's duplicate window: keys in a RocksDB with a time-to-live, an overlay until Kafka has
acknowledged a batch, one changelog record per partition and batch, a restore from it."""

from __future__ import annotations

from orchestrator.core import dedup
from orchestrator.errors import WorkerFailure
from orchestrator.kafkaio.clients import partition_for
from orchestrator.runtime.collector import Collector
from orchestrator.runtime.dedup import TTL_S, DedupStores
from orchestrator.runtime.store import Memory
from orchestrator.runtime.window import Window
from tests.unit.runtime.fakekafka import FakeProducer


def fail(exc: BaseException):  # noqa: ANN201
    raise WorkerFailure(str(exc))


K1, K2, K3 = (dedup.key("c-1", f"e-{i}") for i in (1, 2, 3))


async def test_a_key_is_new_once_whether_in_the_batch_the_overlay_or_rocksdb(tmp_path):
    stores = DedupStores(str(tmp_path), Memory(1 << 20))
    window = Window(stores)
    producer = FakeProducer()
    out = Collector(lambda via: producer, {"dd": 2}, partition_for, fail)
    assert window.first(0, K1) and window.first(1, K2)
    assert not window.first(0, K1)                                    # the same batch
    changes = window.changes(out, "dd", 7)
    assert changes == {0: K1, 1: K2}
    await out.submit()
    assert sorted(producer.on("dd")) == [(0, None, K1), (1, None, K2)]   # one record per partition
    assert not window.first(0, K1)                                    # a later batch: the overlay
    assert window.first(0, K3)
    window.changes(out, "dd", 8)
    stores.get(0).write(changes[0], 41)                               # step 4: into RocksDB
    stores.get(1).write(changes[1], 42)
    window.settled(7)
    assert window.overlay == {K3}                                     # batch 8's key stays until it settles
    assert not window.first(0, K1) and not window.first(1, K2)        # RocksDB
    assert not window.first(0, K3)                                    # the overlay
    assert stores.get(0).changelog_offset() == 41
    window.settled(8)
    assert window.overlay == set() and window.first(0, K3)            # never written: new again
    stores.close()


def test_a_key_of_an_event_that_was_not_decided_is_forgotten(tmp_path):
    window = Window(DedupStores(str(tmp_path), Memory(1 << 20)))
    assert window.first(0, K1)
    window.forget(0, K1)
    assert window.first(0, K1)
    window.stores.close()


def test_a_wiped_store_is_restored_from_its_changelog_records(tmp_path):
    stores = DedupStores(str(tmp_path), Memory(1 << 20))
    stores.get(3).apply_changelog([(None, K1 + K2), (None, None), (None, K3)], 12)
    assert all(stores.get(3).seen(k) for k in (K1, K2, K3)) and stores.get(3).changelog_offset() == 12
    fresh = stores.wipe(3)
    assert not fresh.seen(K1) and fresh.changelog_offset() is None
    stores.close()


def test_keys_live_at_least_the_window_in_rocksdb():
    assert TTL_S * 1000 >= dedup.WINDOW_MS >= 24 * 3_600_000
