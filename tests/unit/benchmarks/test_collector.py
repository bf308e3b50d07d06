"""The benchmark process's own garbage collector while it paces a load
(:func:`benchmarks.common.without_full_collections`): no full collections, whose pauses stalled the
paced producer and stamped arrivals late; young and middle ones go on; everything as before after it.
"""

from __future__ import annotations

import gc

import pytest

from benchmarks.common import without_full_collections


@pytest.fixture(autouse=True)
def collector_on():
    """As in the benchmark process: the collector on with its default thresholds (other tests, such
    as the batch path's, turn it off as the worker does)."""
    enabled, thresholds = gc.isenabled(), gc.get_threshold()
    gc.enable()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*thresholds)
    if not enabled:
        gc.disable()


def _collections() -> list[int]:
    return [generation["collections"] for generation in gc.get_stats()]


def _cycles(n: int) -> None:
    kept: list[object] = []
    for i in range(n):
        a: dict[str, object] = {}
        b = {"a": a, "i": i}
        a["b"] = b                     # a cycle: only the collector frees it
        kept.append(b)
        if len(kept) > 2_000:          # some live long enough to reach the middle generation
            kept.clear()


def test_no_full_collection_runs_inside_while_young_and_middle_ones_do():
    before = gc.get_threshold()
    with without_full_collections():
        start = _collections()
        _cycles(300_000)
        end = _collections()
        assert gc.isenabled()
    assert end[0] > start[0] and end[1] > start[1]          # young and middle collections went on
    assert end[2] == start[2]                                # no full one (the default runs several)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0                        # nothing left frozen


def test_without_it_the_same_load_makes_full_collections():
    # The control for the test above: the same allocations do trigger full collections by default.
    gc.collect()
    start = _collections()
    _cycles(300_000)
    assert _collections()[2] > start[2]


def test_cyclic_garbage_made_inside_is_collected_by_the_end():
    with without_full_collections():
        a: dict[str, object] = {}
        a["self"] = a
        gc.collect(1)                  # promoted past the middle generation: only a full one frees it
        del a
        garbage_before_exit = gc.collect(0)
    assert garbage_before_exit == 0
    assert gc.collect() == 0          # the exit's full collection already freed it
