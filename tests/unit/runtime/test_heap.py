"""After a burst, the worker gives the C heap's free memory back to the system, once
(``orchestrator.runtime.worker.HeapTrim``)."""

from __future__ import annotations

import pytest

from orchestrator.runtime.worker import MALLOC_TRIM, TRIM_AFTER_RECORDS, TRIM_QUIET_S, HeapTrim


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _trimmer() -> tuple[HeapTrim, _Clock, list[int]]:
    clock, calls = _Clock(), []
    return HeapTrim(trim=lambda pad: calls.append(pad) or 1, clock=clock), clock, calls


def test_small_batches_never_trim():
    heap, clock, calls = _trimmer()
    for _ in range(100):
        heap.batch(TRIM_AFTER_RECORDS - 1)
        clock.now += 1.0
        assert heap.idle() is False
    assert calls == []


def test_a_large_batch_is_trimmed_after_once_the_quiet_time_passed():
    heap, clock, calls = _trimmer()
    heap.batch(TRIM_AFTER_RECORDS)
    clock.now += TRIM_QUIET_S - 0.5
    assert heap.idle() is False, "too soon: the burst may go on"
    clock.now += 0.5
    assert heap.idle() is True and calls == [0]
    clock.now += 60
    assert heap.idle() is False and calls == [0], "once per burst"


def test_a_drain_of_large_batches_trims_only_when_it_ends():
    heap, clock, calls = _trimmer()
    for _ in range(30):                  # a large batch every second
        heap.batch(10_000)
        clock.now += 1.0
        assert heap.idle() is False
    heap.batch(15)                       # the backlog is done: the load is paced again
    clock.now += TRIM_QUIET_S
    assert heap.idle() is True and calls == [0]


def test_without_malloc_trim_nothing_is_called():
    clock = _Clock()
    heap = HeapTrim(trim=None, clock=clock)
    heap.batch(10_000)
    clock.now += 60
    assert heap.idle() is False and heap.trims == 0


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(MALLOC_TRIM is None, reason="this C library has no malloc_trim (not glibc)")
def test_malloc_trim_gives_freed_heap_memory_back():
    blocks = [bytes(1_000) + b"%d" % i for i in range(100_000)]   # about 100 MB from malloc (over 512 bytes each)
    pins = [*blocks[::50], blocks[-1]]   # kept throughout the heap, its top included: free() cannot shrink it
    del blocks
    freed = _rss_bytes()
    clock = _Clock()
    heap = HeapTrim(clock=clock)
    heap.batch(TRIM_AFTER_RECORDS)
    clock.now += TRIM_QUIET_S
    assert heap.idle() is True
    assert freed - _rss_bytes() > 50 * 1024 * 1024, "the freed blocks stayed resident"
    del pins
