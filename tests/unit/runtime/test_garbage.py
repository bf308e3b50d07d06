"""The worker runs the cyclic garbage collector between batches, on the schedule Python's automatic runs
would keep (see ``orchestrator.runtime.worker.collect_garbage``)."""

from __future__ import annotations

import gc
import weakref

import pytest

from orchestrator.runtime.worker import GC_MIDDLE, GC_YOUNG, collect_garbage


class _Node:
    def __init__(self) -> None:
        self.me = self                      # a reference cycle: only the cyclic collector frees it


@pytest.fixture
def collector_off():
    was = gc.isenabled()
    gc.disable()
    gc.collect()
    yield
    if was:
        gc.enable()


def test_a_cycle_is_collected_between_batches_once_enough_was_allocated(collector_off):
    ref = weakref.ref(_Node())
    collect_garbage()
    assert ref() is not None, "not due: fewer than GC_YOUNG allocations since the last run"
    batch = [[] for _ in range(GC_YOUNG + 1_000)]   # what a batch holds
    collect_garbage()
    assert ref() is None
    del batch


def test_a_cycle_that_outlived_a_young_run_is_collected_by_a_later_middle_run(collector_off):
    node = _Node()
    ref = weakref.ref(node)
    gc.collect(0)                           # it survives a young run: in the middle generation now
    del node
    runs = 0
    while ref() is not None and runs <= GC_MIDDLE + 1:
        batch = [[] for _ in range(GC_YOUNG + 1_000)]
        collect_garbage()
        del batch
        runs += 1
    assert ref() is None, "the middle generation is collected too"
    assert runs >= GC_MIDDLE - 1, "and only every GC_MIDDLE young runs"
