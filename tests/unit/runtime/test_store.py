"""The worker's partition store: states with their timer index, the changelog offset, restore."""

from __future__ import annotations

from pathlib import Path

from orchestrator.runtime.store import Stores
from orchestrator.runtime.transaction import due_bytes


def value(due_ms: int | None, body: bytes) -> bytes:
    return due_bytes(due_ms) + body


def test_write_keeps_the_timer_index_in_step_with_the_states(tmp_path: Path):
    store = Stores(str(tmp_path)).get(0)
    store.write([(b"ann", None, value(500, b"s1")), (b"bob", None, value(None, b"s2")),
                 (b"cid", None, value(100, b"s3"))], changelog_offset=3)
    assert [k[9:] for k in store.due(1000)] == [b"cid", b"ann"]          # due order
    assert [k[9:] for k in store.due(200)] == [b"cid"]
    # ann's timer moves, cid is deleted: the old index entries go with them.
    store.write([(b"ann", due_bytes(500), value(900, b"s1b")), (b"cid", due_bytes(100), None)], changelog_offset=5)
    assert [k[9:] for k in store.due(1000)] == [b"ann"]
    assert list(store.due(800)) == []
    assert store.get(b"cid") is None and store.get(b"ann") == value(900, b"s1b")
    assert store.changelog_offset() == 5 and store.count_timers() == 1


def test_due_resumes_after_a_cursor(tmp_path: Path):
    store = Stores(str(tmp_path)).get(1)
    store.write([(f"c{i}".encode(), None, value(100 + i, b"x")) for i in range(5)], changelog_offset=0)
    keys = list(store.due(1000))
    assert [k[9:] for k in store.due(1000, after=keys[1])] == [b"c2", b"c3", b"c4"]


def test_state_survives_a_reopen(tmp_path: Path):
    stores = Stores(str(tmp_path))
    stores.get(2).write([(b"ann", None, value(7, b"s"))], changelog_offset=41)
    stores.close()
    again = Stores(str(tmp_path)).get(2)
    assert again.get(b"ann") == value(7, b"s") and again.changelog_offset() == 41
    assert [k[9:] for k in again.due(10)] == [b"ann"]


def test_apply_changelog_rebuilds_states_and_timers_from_changelog_records(tmp_path: Path):
    store = Stores(str(tmp_path)).get(0)
    store.write([(b"ann", None, value(50, b"old"))], changelog_offset=0)
    store.apply_changelog([(b"cann", value(60, b"v1")), (b"cbob", value(None, b"b")), (b"cann", value(70, b"v2")),
                           (b"cbob", None)], last_offset=4)
    assert store.get(b"ann") == value(70, b"v2") and store.get(b"bob") is None
    assert [k for k in store.due(1000)] == [b"t" + due_bytes(70) + b"ann"]
    assert store.changelog_offset() == 4


def test_wipe_drops_a_partition(tmp_path: Path):
    stores = Stores(str(tmp_path))
    stores.get(3).write([(b"ann", None, value(None, b"s"))], changelog_offset=9)
    fresh = stores.wipe(3)
    assert fresh.get(b"ann") is None and fresh.changelog_offset() is None


def test_standby_targets_follow_the_partitions_after_the_owned_ones():
    from orchestrator.runtime.recovery import standby_targets
    assert standby_targets(1, 6, {0, 1, 2}) == {3, 4, 5}
    assert standby_targets(1, 6, {4, 5}) == {0, 1}
    assert standby_targets(2, 6, {5}) == {0, 1}
    assert standby_targets(1, 6, set(range(6))) == set()
    assert standby_targets(0, 6, {0}) == set()
    assert standby_targets(1, 6, set()) == set()


def test_journals_are_written_restored_and_tombstoned_with_the_states(tmp_path: Path):
    from orchestrator.runtime.store import journal_key
    stores = Stores(str(tmp_path))
    store = stores.get(2)
    j1, j2 = journal_key(b"e", 100), journal_key(b"k", 7)
    store.write([(b"ann", None, value(None, b"s"))], changelog_offset=3, journals=[(j1, b"one"), (j2, b"two")])
    assert store.journals() == [(j1, b"one"), (j2, b"two")]
    store.write([], changelog_offset=4, journals=[(j1, None)])            # tombstoned once committed
    assert store.journals() == [(j2, b"two")] and store.changelog_offset() == 4
    # A restore elsewhere applies the same changelog records: states and journals alike.
    other = Stores(str(tmp_path / "other")).get(2)
    other.apply_changelog([(b"c" + b"ann", value(None, b"s")), (j1, b"one"), (j2, b"two"), (j1, None)], 4)
    assert other.journals() == [(j2, b"two")] and other.get(b"ann") == value(None, b"s")


def test_a_batch_journal_is_cut_in_records_under_the_size_limit():
    import msgspec

    from orchestrator.runtime.journal import JOURNAL_MAX_BYTES, entry_size, runs
    from orchestrator.runtime.journalcodec import Entry, Output
    out = Output("decisions", "c-1", b"x" * 900)
    entries = [Entry(offset, [out, out, out]) for offset in range(500)]     # ~1.4 MB of outputs
    cut = [entries[a:b] for a, b in runs([entry_size(e.outputs) for e in entries])]
    assert len(cut) > 1
    assert [e for c in cut for e in c] == entries                            # in order, nothing lost
    assert all(len(msgspec.msgpack.encode(c)) <= JOURNAL_MAX_BYTES + 4096 for c in cut)
    assert runs([entry_size([out])]) == [(0, 1)] and runs([]) == []
    big = entry_size([Output("actions.email", "c-2", b"y" * (JOURNAL_MAX_BYTES + 1))])
    assert runs([entry_size([out]), big, entry_size([out])]) == [(0, 1), (1, 2), (2, 3)]   # a big one alone


def test_a_journal_record_keeps_the_format_written_before_its_parts_had_names():
    import msgspec

    from orchestrator.runtime.journalcodec import Entry, Output
    from orchestrator.runtime.journalcodec import decoder as _decoder, encoder as _encoder
    entry = Entry(7, [Output("decisions", "c-1", b"x")])
    assert _encoder.encode([entry]) == msgspec.msgpack.encode([(7, [("decisions", "c-1", b"x")])])
    assert _decoder.decode(msgspec.msgpack.encode([(7, [("decisions", "c-1", b"x")])])) == [entry]


def test_memory_counts_the_shared_block_cache_once_and_index_and_filter_blocks_in_it(tmp_path: Path):
    """orch_rocksdb_memory_bytes: memtables summed over the databases, the one shared cache read once;
    after a flush the files' index and filter blocks are charged to the cache, not to table readers."""
    from orchestrator.runtime.store import SHARED_CACHE, memory_bytes
    stores = Stores(str(tmp_path))
    dbs = [stores.get(p) for p in range(3)]
    for i, store in enumerate(dbs):
        store.write([(f"c{i}-{n}".encode(), None, value(None, b"x" * 200)) for n in range(10_000)], changelog_offset=1)
    before = memory_bytes([s.db for s in dbs])
    one = memory_bytes([dbs[0].db])
    assert before["memtables"] > 3 * 10_000 * 200 and one["memtables"] * 2 < before["memtables"]
    assert before["block_cache"] == one["block_cache"]                  # shared: not counted three times
    for store in dbs:
        store.db.flush()
    assert dbs[0].get(b"c0-1") is not None                               # read through the files now
    after = memory_bytes([s.db for s in dbs])
    assert after["memtables"] < before["memtables"]
    assert 0 < after["block_cache"] <= SHARED_CACHE
    # The files' index and filter blocks (about 12 KB each here) are in the cache; outside it only
    # the readers' own few KB. Uncached, table_readers would hold all of them (and grow with the data).
    assert after["table_readers"] < after["block_cache"] / 5


def test_the_memtables_of_all_the_databases_stay_within_one_budget(tmp_path: Path):
    """However many partitions a worker opens, their memtables together stay near one budget (each
    database alone may hold up to 2 x 4 MiB): past it, the database written to is flushed early."""
    import time

    from orchestrator.runtime.store import Memory, memory_bytes
    budget = 8 * 1024 * 1024
    stores = Stores(str(tmp_path), Memory(memtables_bytes=budget))
    dbs = [stores.get(p) for p in range(6)]
    for start in range(0, 10_000, 1_000):                # 3.3 MB each in the end: under one database's limit
        for i, store in enumerate(dbs):
            store.write([(f"c{i}-{n}".encode(), None, value(None, b"x" * 300)) for n in range(start, start + 1_000)],
                        changelog_offset=start)
    # A memtable being flushed still counts until it is written out (background threads): wait for
    # that, not for a time. Without the budget nothing is ever flushed here (6 x 3.3 MB stay).
    deadline = time.monotonic() + 30
    while memory_bytes([s.db for s in dbs])["memtables"] > budget * 1.5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert memory_bytes([s.db for s in dbs])["memtables"] <= budget * 1.5
    assert all(s.get(f"c{i}-9999".encode()) == value(None, b"x" * 300) for i, s in enumerate(dbs))
    stores.close()
