"""``orchestrator journeys graph``: a journey drawn as Mermaid, Graphviz DOT, SVG or PNG (the
drawing itself is :mod:`orchestrator.core.graph`), with ``--stats`` its counts from the decisions."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from orchestrator.admin.journeys import policies_for
from orchestrator.config import Settings
from orchestrator.errors import ConfigError


def journey_to_draw(spec: str, folder: str, channels: tuple[str, ...]):  # noqa: ANN202 - Journey
    """JOURNEY is a file, or an id in the folder (its highest version, as a worker runs it)."""
    from orchestrator.core.journeys import load_journey_dir, load_journey_file
    path = Path(spec)
    if path.is_file():
        return load_journey_file(path, channels=channels)
    journeys, problems = load_journey_dir(folder, channels=channels)
    matches = [j for j in journeys if j.id == spec]
    for problem in problems:        # a broken file may be a newer version of this journey
        print(problem, file=sys.stderr)
    if not matches:
        known = ", ".join(sorted({j.id for j in journeys})) or "none"
        raise ConfigError(f"no journey {spec!r} in {folder} (journeys there: {known}); give an id from "
                          "`orchestrator journeys list` or the path of a journey file")
    return max(matches, key=lambda j: j.version)


def time_arg(value: str | None, now_ms: int) -> int | None:
    """``--from``/``--to``: RFC 3339, a date (UTC midnight), epoch ms, or a duration ago (``24h``)."""
    from orchestrator.core.durations import parse_duration_ms
    from orchestrator.core.timeutil import parse_ts_ms
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        return now_ms - parse_duration_ms(text)
    except ValueError:
        pass
    ms = parse_ts_ms(text + "T00:00:00Z" if len(text) == 10 else text)
    if ms is None:
        raise ConfigError(f"{value!r} is not a time: give an RFC 3339 time (2026-11-23T10:00:00Z), a date "
                          "(2026-11-23), epoch milliseconds, or a duration ago (24h, 7d)")
    return ms


def draw(args: argparse.Namespace) -> int:
    from orchestrator.core import graph
    if (args.since or args.until) and not args.stats:
        raise ConfigError("--from and --to choose the span of the counts: add --stats")
    policies = policies_for(args)
    journey = journey_to_draw(args.journey, args.journeys or os.environ.get("ORCH_JOURNEYS") or "journeys",
                             policies.channels)
    counts = None
    if args.stats:
        now_ms = int(time.time() * 1000)
        since, until = time_arg(args.since, now_ms), time_arg(args.until, now_ms)
        if since is not None and until is not None and since >= until:
            raise ConfigError("--from must be before --to")
        from orchestrator.admin.stats import read_decisions
        decisions = asyncio.run(read_decisions(Settings.from_env()))
        counts = graph.count_decisions(journey, decisions, since_ms=since, until_ms=until)
    pic = graph.picture(journey)
    text = graph.to_mermaid(pic, counts) if args.format == "mermaid" else graph.to_dot(pic, counts)
    data = text.encode()
    if args.format in ("svg", "png"):
        dot = shutil.which("dot")
        if dot is None:
            raise ConfigError(f"--format {args.format} needs Graphviz's `dot`: install the graphviz package "
                              "(apt-get install graphviz, or `make graphviz`), or use --format mermaid or dot")
        proc = subprocess.run([dot, f"-T{args.format}"], input=data, capture_output=True, timeout=120)
        if proc.returncode != 0:
            raise ConfigError(f"dot failed: {proc.stderr.decode(errors='replace').strip()}")
        data = proc.stdout
    if args.output and args.output != "-":
        Path(args.output).write_bytes(data)
        return 0
    if args.format == "png" and sys.stdout.isatty():
        raise ConfigError("a PNG is binary: write it to a file with -o FILE")
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
    return 0
