"""``python -m benchmarks.identical``: the digest of what the engine decides on the benchmark's
backlog is stable from run to run and changes as soon as one output does (no Kafka)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import orjson
import pytest

from benchmarks.identical import backlog_lines, counts, digest, first_difference, main, replay

ROOT = Path(__file__).resolve().parents[3]
JOURNEYS = ROOT / "journeys"
POLICIES = ROOT / "policies.yaml"
EVENTS = 1500


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return backlog_lines(EVENTS)


def test_the_backlog_is_made_the_same_way_every_time(lines: list[bytes]) -> None:
    assert backlog_lines(EVENTS) == lines
    assert len(lines) == EVENTS
    first = orjson.loads(lines[0])
    assert first["event_id"].startswith("e-identical-") and isinstance(first["ts"], int)


def test_the_digest_is_stable_and_covers_actions_suppressions_and_decisions(lines: list[bytes]) -> None:
    one = replay(lines, JOURNEYS, POLICIES)
    two = replay(lines, JOURNEYS, POLICIES)
    assert one == two
    assert digest(one) == digest(two)
    by_topic = counts(one)
    assert sum(v for k, v in by_topic.items() if k.startswith("actions.")) > 0
    assert by_topic.get("decisions", 0) > 0
    # The records carry their ids, so an id that changed would change the digest.
    assert any(b'"action_id":"a-' in r for r in one)


def test_the_digest_changes_when_one_output_changes(lines: list[bytes], tmp_path: Path) -> None:
    changed = tmp_path / "journeys"
    shutil.copytree(JOURNEYS, changed)
    path = changed / "cart-recovery.yaml"
    text = path.read_text()
    assert "template: cart-reminder-2" in text
    path.write_text(text.replace("template: cart-reminder-2", "template: cart-reminder-2b"))

    ours = replay(lines, JOURNEYS, POLICIES)
    theirs = replay(lines, changed, POLICIES)
    assert counts(ours) == counts(theirs)           # the same number of everything ...
    assert digest(ours) != digest(theirs)           # ... but not the same outputs
    diff = first_difference(ours, theirs)
    assert diff is not None
    index, a, b = diff
    assert ours[:index] == theirs[:index]
    assert a is not None and b is not None
    assert orjson.loads(a)["value"]["template"] == "cart-reminder-2"
    assert orjson.loads(b)["value"]["template"] == "cart-reminder-2b"


def test_the_command_prints_the_same_digest(lines: list[bytes], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--events", str(EVENTS), "--json"]) == 0
    printed = orjson.loads(capsys.readouterr().out)
    assert printed["digest"] == digest(replay(lines, JOURNEYS, POLICIES))
    assert printed["events"] == EVENTS


def _engine_unchanged_since_head() -> bool:
    try:
        status = subprocess.run(["git", "status", "--porcelain", "--", "orchestrator"], cwd=ROOT,
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return status.returncode == 0 and not status.stdout.strip()


@pytest.mark.skipif(not _engine_unchanged_since_head(),
                    reason="needs a git checkout whose orchestrator/ matches HEAD (a work in progress may differ)")
def test_against_head_replays_in_a_worktree_of_that_revision(capsys: pytest.CaptureFixture[str]) -> None:
    before = subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True).stdout
    assert main(["--events", "800", "--json", "--against", "HEAD"]) == 0
    printed = orjson.loads(capsys.readouterr().out)
    assert printed["identical"] is True
    assert printed["against"]["digest"] == printed["digest"]
    # The temporary worktree is gone again.
    assert subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True).stdout == before
