"""The webhook adapter's durable store: outcomes, cancels, positions, the window (real RocksDB)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.adapters import dedup
from orchestrator.adapters.dedup import DedupStore
from orchestrator.errors import ConfigError

HOUR = 3_600_000
DAY = 24 * HOUR


def test_an_outcome_survives_a_reopen(tmp_path: Path):
    store = DedupStore(tmp_path / "db", DAY)
    store.put(dedup.ACTION, "a-1", dedup.IN_FLIGHT, 1_000)
    store.put(dedup.ACTION, "a-1", dedup.FAILED, 1_500, status=400, detail="HTTP 400 Bad Request")
    store.put(dedup.ACTION, "a-2", dedup.DELIVERED, 2_000, status=202)
    store.close()
    again = DedupStore(tmp_path / "db", DAY)
    failed = again.get(dedup.ACTION, "a-1")
    assert failed == dedup.Mark(dedup.FAILED, 1_000, 1_500, 400, "HTTP 400 Bad Request")
    assert again.get(dedup.ACTION, "a-2") == dedup.Mark(dedup.DELIVERED, 2_000, 2_000, 202, "")
    assert again.get(dedup.ACTION, "a-3") is None
    assert again.get(dedup.SUPPRESSION, "a-1") is None          # kinds are separate namespaces
    again.close()


def test_done_keeps_the_answer_and_drops_the_detail(tmp_path: Path):
    store = DedupStore(tmp_path / "db", DAY)
    store.put(dedup.ACTION, "a-1", dedup.IN_FLIGHT, 10)
    store.put(dedup.ACTION, "a-1", dedup.FAILED, 20, status=503, detail="gave up")
    done = store.put(dedup.ACTION, "a-1", dedup.FAILED_DONE, 30)
    assert done == dedup.Mark(dedup.FAILED_DONE, 10, 20, 503, "")
    with pytest.raises(ValueError):
        store.put(dedup.ACTION, "a-1", "Z", 40)


def test_cancels_and_positions_are_written_together(tmp_path: Path):
    store = DedupStore(tmp_path / "db", DAY)
    assert store.add_cancels(["a-1", "a-2", "a-1"], 1_000, {0: 5, 3: 17}) == 2
    assert store.add_cancels(["a-2", "a-3"], 2_000, {0: 6}) == 1
    store.close()
    again = DedupStore(tmp_path / "db", DAY)
    assert again.cancelled("a-1") and again.cancelled("a-3") and not again.cancelled("a-4")
    assert again.positions() == {0: 6, 3: 17}
    again.forget_positions()
    assert again.positions() == {} and again.cancelled("a-1")


def test_prune_forgets_ids_older_than_the_window_only(tmp_path: Path):
    store = DedupStore(tmp_path / "db", DAY)
    store.put(dedup.ACTION, "old", dedup.IN_FLIGHT, 1 * HOUR)
    store.put(dedup.ACTION, "old", dedup.DELIVERED_DONE, 30 * HOUR)   # later states keep the first time
    store.put(dedup.ACTION, "new", dedup.CANCELLED, 20 * HOUR)
    store.put(dedup.SUPPRESSION, "s-old", dedup.DELIVERED_DONE, 2 * HOUR)
    store.add_cancels(["x-old"], 3 * HOUR, {0: 1})
    store.add_cancels(["x-new"], 22 * HOUR, {0: 2})
    assert store.prune(DAY) == 0                                     # nothing is a day old yet
    assert store.prune(DAY + 3 * HOUR + 1) == 3
    assert store.get(dedup.ACTION, "old") is None and store.get(dedup.SUPPRESSION, "s-old") is None
    assert not store.cancelled("x-old")
    assert store.get(dedup.ACTION, "new") is not None and store.cancelled("x-new")
    assert store.positions() == {0: 2}                               # positions are not ids: kept
    # Recorded again after it was forgotten: a new window, its own index entry.
    store.put(dedup.ACTION, "old", dedup.IN_FLIGHT, 40 * HOUR)
    assert store.prune(40 * HOUR + DAY - 1) == 2                     # "new" and "x-new" only
    assert store.get(dedup.ACTION, "old").first_ms == 40 * HOUR
    assert store.prune(40 * HOUR + DAY + 1) == 1 and store.get(dedup.ACTION, "old") is None


def test_prune_works_in_chunks(tmp_path: Path):
    store = DedupStore(tmp_path / "db", HOUR)
    for i in range(25):
        store.put(dedup.ACTION, f"a-{i}", dedup.DELIVERED_DONE, i)
    assert [store.prune(2 * HOUR, limit=10) for _ in range(4)] == [10, 10, 5, 0]


def test_a_data_dir_in_use_is_one_sentence(tmp_path: Path):
    first = DedupStore(tmp_path / "db", DAY)
    with pytest.raises(ConfigError, match="in use by another adapter process"):
        DedupStore(tmp_path / "db", DAY)
    first.close()


# ---------------------------------------------------------------------------- stores of earlier versions
def old_store(root: Path, group: str, delivered: str) -> Path:
    """A store laid out the way earlier versions did by default: ``.orch/adapter/<group>``."""
    store = DedupStore(root / group, DAY)
    store.put(dedup.ACTION, delivered, dedup.DELIVERED_DONE, 1_000)
    store.close()
    return root / group


def test_the_one_store_of_an_earlier_version_is_taken_over(tmp_path: Path):
    old_root, new = tmp_path / "adapter", tmp_path / "adapter-webhook" / "orch"
    moved = old_store(old_root, "orch-adapter-webhook-email-web", "a-1")
    old_store(old_root, "staging-adapter-webhook-email", "a-2")      # another prefix's: left alone
    assert dedup.adopt_old_store(old_root, new, "orch") == moved
    assert not moved.exists() and (old_root / "staging-adapter-webhook-email").exists()
    store = DedupStore(new, DAY)
    assert store.get(dedup.ACTION, "a-1").state == dedup.DELIVERED_DONE     # known: not POSTed again
    store.close()
    assert dedup.adopt_old_store(old_root, new, "orch") is None             # done once


def test_a_store_under_a_group_of_its_own_name_is_taken_over_too(tmp_path: Path):
    old_root, new = tmp_path / "adapter", tmp_path / "adapter-webhook" / "orch"
    moved = old_store(old_root, "my-email-adapter", "a-1")                  # --group my-email-adapter
    assert dedup.adopt_old_store(old_root, new, "orch") == moved


def test_several_stores_of_an_earlier_version_are_refused_in_one_sentence(tmp_path: Path):
    old_root, new = tmp_path / "adapter", tmp_path / "adapter-webhook" / "orch"
    old_store(old_root, "orch-adapter-webhook-email-web", "a-1")
    old_store(old_root, "orch-adapter-webhook-email", "a-2")
    with pytest.raises(ConfigError, match=r"holds 2 stores of an earlier adapter version, one per consumer group "
                                          r"\(orch-adapter-webhook-email, orch-adapter-webhook-email-web\)") as err:
        dedup.adopt_old_store(old_root, new, "orch")
    assert "--data-dir" in str(err.value) and str(new) in str(err.value)
    assert not new.exists() and len(list(old_root.iterdir())) == 2             # nothing moved


def test_an_existing_store_or_no_old_one_leaves_everything_as_it_is(tmp_path: Path):
    old_root, new = tmp_path / "adapter", tmp_path / "adapter-webhook" / "orch"
    assert dedup.adopt_old_store(old_root, new, "orch") is None             # no .orch/adapter at all
    old_store(old_root, "orch-adapter-webhook-email", "a-1")
    DedupStore(new, DAY).close()
    assert dedup.adopt_old_store(old_root, new, "orch") is None
    assert (old_root / "orch-adapter-webhook-email").exists()


def test_an_old_store_in_use_is_not_moved(tmp_path: Path):
    old_root, new = tmp_path / "adapter", tmp_path / "adapter-webhook" / "orch"
    path = old_store(old_root, "orch-adapter-webhook-email", "a-1")
    running = DedupStore(path, DAY)                                           # an adapter still running on it
    try:
        with pytest.raises(ConfigError, match="in use by another adapter process"):
            dedup.adopt_old_store(old_root, new, "orch")
    finally:
        running.close()
    assert path.exists() and not new.exists()
