"""``orchestrator journeys graph``: a journey drawn as Mermaid, Graphviz DOT, SVG or PNG (the
drawing itself is :mod:`orchestrator.reports.graph`), with ``--stats`` its counts from the decisions."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import time
from pathlib import Path

from orchestrator.admin.journeys import journey_arg, policies_for, time_span, usage_error
from orchestrator.config import Settings, journeys_dir
from orchestrator.errors import ConfigError


def draw(args: argparse.Namespace) -> int:
    from orchestrator.reports import graph
    if (args.since or args.until) and not args.stats:
        usage_error("--from and --to choose the span of the counts: add --stats")
    since, until = time_span(args.since, args.until, int(time.time() * 1000))
    policies = policies_for(args)
    journey = journey_arg(args.journey, args.journeys or journeys_dir(),
                             policies.channels)
    counts = None
    if args.stats:
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
