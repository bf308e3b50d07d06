"""``orchestrator simulate``: the offline dry run (:class:`orchestrator.simulate.Simulation`) over a
JSON-lines file, one JSON line per output record, and on stderr what it ignored, by line number."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Iterator

import orjson

from orchestrator.admin.journeys import policies_for
from orchestrator.errors import ConfigError
from orchestrator.observability.progress import ProgressLine


def simulate(args: argparse.Namespace) -> int:
    from orchestrator.config import home_partition, max_event_bytes
    from orchestrator.core import Engine, JourneySet, load_journey_dir
    from orchestrator.core.journeyfiles import journey_dir_problem
    from orchestrator.simulate import Simulation
    policies = policies_for(args)    # --policies, else ORCH_POLICIES, else policies.yaml: what a worker reads
    problem = journey_dir_problem(args.journeys, option="--journeys DIR")
    if problem is not None:
        raise ConfigError(problem)
    journeys, problems = load_journey_dir(args.journeys, channels=policies.channels)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1
    if not journeys:
        print(f"{args.journeys}: no journeys found", file=sys.stderr)
        return 1
    sim = Simulation(Engine(JourneySet(journeys), policies), max_event_bytes=max_event_bytes(),
                     partition_of=home_partition())
    try:
        stream = open(args.events, "rb") if args.events != "-" else sys.stdin.buffer
    except OSError as exc:
        print(f"error: cannot read {args.events!r} ({exc.strerror or exc}); give a JSON-lines file of events, "
              "or - for standard input", file=sys.stderr)
        return 1
    out = sys.stdout.buffer
    progress = _Counted("simulate")
    with stream:
        for record in sim.run(progress.count(stream)):
            out.write(orjson.dumps(record) + b"\n")
            progress.outputs += 1
    out.flush()
    progress.done()
    for line in summary(sim):
        print(line, file=sys.stderr)
    return 0


def summary(sim) -> list[str]:  # noqa: ANN001 - a Simulation
    """What the run ignored or refused, with line numbers, so nothing passes unnoticed."""
    from orchestrator.core.durations import format_duration_ms
    out = []
    if sim.duplicates:
        out.append(f"simulate: {_count(sim.duplicates, 'line')} ignored as duplicates (event_id already seen): "
                   f"{_line_ranges(sim.duplicates)}")
    if sim.stale:
        age = sim.engine.policies.max_event_age_ms
        out.append(f"simulate: {_count(sim.stale, 'line')} too old to enrol anyone (more than "
                   f"{format_duration_ms(age)} before the clock; state updated only): {_line_ranges(sim.stale)}")
    for name, lines in sorted(sim.invalid_fields.items()):
        what = "not applied" if name == "consent" else "kept, read as UTC"
        out.append(f"simulate: {_count(lines, 'line')} set {name} to a value the engine cannot use ({what}): "
                   f"{_line_ranges(lines)}")
    for reason, lines in sorted(sim.dead_letters.items()):
        out.append(f"simulate: {_count(lines, 'line')} dead-lettered {reason}: {_line_ranges(lines)}")
    return out


def _count(items: list, noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _line_ranges(numbers: list[int], limit: int = 20) -> str:
    """``3, 7-9, 12`` (runs joined), at most ``limit`` parts."""
    parts: list[str] = []
    start = prev = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    more = len(parts) - limit
    return ", ".join(parts[:limit]) + (f", and {more} more" if more > 0 else "")


class _Counted:
    """Lines read and outputs written, on the progress line (only on a terminal)."""

    def __init__(self, what: str) -> None:
        self.what, self.line = what, ProgressLine(tty_only=True, every_s=0.5)
        self.lines = self.outputs = 0
        self.started = time.monotonic()

    def count(self, lines: Iterable[bytes]) -> Iterator[bytes]:
        for line in lines:
            self.lines += 1
            if self.lines % 1000 == 0:
                rate = self.lines / max(time.monotonic() - self.started, 1e-9)
                self.line.show(f"{self.what}: {self.lines:,} events read, {self.outputs:,} outputs, {rate:,.0f} events/s")
            yield line

    def done(self) -> None:
        self.line.clear()
        if self.line.tty:
            elapsed = time.monotonic() - self.started
            self.line.done(f"{self.what}: {self.lines:,} events, {self.outputs:,} outputs in {elapsed:.1f} s")
