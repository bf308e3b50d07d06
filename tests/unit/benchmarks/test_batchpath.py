"""``python -m benchmarks.batchpath``: the worker's batch path without a broker, fed as aiokafka's
``getmany`` feeds it in a drain, decides what the pure engine decides."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from benchmarks.batchpath import FETCH_BYTES, backlog, getmany_batches, outputs_digest, time_batch_path
from orchestrator.kafkaio.clients import partition_for

ROOT = Path(__file__).resolve().parents[3]
JOURNEYS = ROOT / "journeys"
POLICIES = ROOT / "policies.yaml"


def _line(i: int, customer: str, pad: int = 0) -> bytes:
    return orjson.dumps({"event_id": f"e-{i}", "customer_id": customer, "type": "page.viewed", "ts": 1,
                         "properties": {"pad": "x" * pad}})


def test_batches_come_as_getmany_returns_them_in_a_drain() -> None:
    # Records of ~10 KB: a fetched chunk of a partition holds about 100 of them.
    lines = [_line(i, f"c-{i % 37}", pad=10_000) for i in range(2_000)]
    batches = getmany_batches(lines, "t.events", 4, 60)
    seen: dict[int, list[int]] = {}
    for b in batches:
        assert sum(len(rs) for rs in b.values()) <= 60
        for tp, rs in b.items():
            for r in rs:
                assert partition_for(r.key, 4) == tp.partition            # each event in its customer's partition
                seen.setdefault(tp.partition, []).append(r.offset)
    assert sum(len(v) for v in seen.values()) == len(lines)              # every event once
    for offsets in seen.values():
        assert offsets == list(range(len(offsets)))                       # in order, no gap
    assert all(sum(len(rs) for rs in b.values()) == 60 for b in batches[:-1])
    # A batch takes a partition's fetched chunk (here ~100 records) before the next partition's: a
    # batch of 60 holds records of one partition, or the end of one chunk and the start of the next.
    assert 60 < FETCH_BYTES // len(lines[0]) < 120
    assert all(len(b) <= 2 for b in batches)
    assert sum(len(b) == 1 for b in batches) > len(batches) // 3


def test_the_batch_path_decides_and_writes_states() -> None:
    lines = backlog(3_000, JOURNEYS, POLICIES)
    small = time_batch_path(lines, JOURNEYS, POLICIES, batch=200)
    large = time_batch_path(lines, JOURNEYS, POLICIES, batch=3_000)
    assert small["events"] == large["events"] == 3_000
    # Same decisions whatever the batching: the same outputs, fewer state writes in larger batches.
    outputs = {k: v for k, v in small["by_topic"].items() if "internal" not in k}
    assert outputs == {k: v for k, v in large["by_topic"].items() if "internal" not in k}
    assert outputs["bp.decisions"] > 0 and any(k.startswith("bp.actions.") for k in outputs)
    assert 0 < large["changelog_records_per_event"] < small["changelog_records_per_event"] <= 1


def test_the_outputs_digest_sees_every_output_and_not_the_wall_clock() -> None:
    action = {"action_id": "a-1", "customer_id": "c-1", "decided_at": "2026-12-06T10:00:00.000Z"}
    kept = [("bp.actions.email", 0, [(b"c-1", orjson.dumps(action))]),
            ("bp.internal.state-changelog", 0, [(b"cc-1", b"\x00" * 9)])]
    base = outputs_digest(kept)
    later = [("bp.actions.email", 0, [(b"c-1", orjson.dumps({**action, "decided_at": "2026-12-06T11:00:00.000Z"}))]),
             ("bp.internal.state-changelog", 0, [(b"cc-1", b"\x01" * 9)])]
    assert outputs_digest(later) == base                     # the wall clock and internal records aside
    assert outputs_digest([("bp.actions.email", 0, [(b"c-1", orjson.dumps({**action, "action_id": "a-2"}))])]) != base
    assert outputs_digest([("bp.actions.email", 1, [(b"c-1", orjson.dumps(action))])]) != base


def test_the_digest_of_a_run_is_the_same_every_time() -> None:
    lines = backlog(2_000, JOURNEYS, POLICIES)
    first = time_batch_path(lines, JOURNEYS, POLICIES, digest=True)
    assert first["outputs_digest"] == time_batch_path(lines, JOURNEYS, POLICIES, digest=True)["outputs_digest"]
    assert first["outputs_digest"] == time_batch_path(lines, JOURNEYS, POLICIES, batch=300, digest=True)["outputs_digest"]


def test_instructions_per_event_are_the_difference_of_two_cachegrind_counts() -> None:
    from benchmarks.batchpath import instruction_count, per_event
    summary = ("==4242== \n==4242== I   refs:      3,450,462,737\n==4242== \n")
    assert instruction_count(summary) == 3_450_462_737
    with pytest.raises(ValueError, match="I refs"):
        instruction_count("==4242== ERROR SUMMARY: 0 errors\n")
    # startup (what both runs pay once) cancels out: 1,000,000 + 100/event
    assert per_event((4_000, 1_000_000 + 400_000), (12_000, 1_000_000 + 1_200_000)) == 100
    with pytest.raises(ValueError):
        per_event((12_000, 5), (4_000, 1))


def test_instructions_without_valgrind_say_what_is_missing(monkeypatch) -> None:
    import shutil

    from benchmarks import batchpath
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="needs valgrind on PATH"):
        batchpath._instructions(batchpath.ROOT, [], JOURNEYS, POLICIES, None)  # type: ignore[arg-type]
