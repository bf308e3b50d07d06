"""The ``orchestrator`` command (SPEC §6)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import orjson

from orchestrator import __version__
from orchestrator.errors import ConfigError, DefinitionError, OrchestratorError


def _settings():
    from orchestrator.config import Settings
    return Settings.from_env()


def _setup_logging(level: str, fmt: str) -> None:
    from orchestrator.observability.logs import setup_logging
    setup_logging(level, fmt)


# ---------------------------------------------------------------------------- worker
def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings()
    _setup_logging(args.loglevel, settings.log_format)
    from orchestrator.runtime.worker import run_worker
    run_worker(settings)
    return 0


# ---------------------------------------------------------------------------- produce
def cmd_produce(args: argparse.Namespace) -> int:
    settings = _settings()
    from orchestrator.runtime.client import produce_lines
    stream = open(args.file, "rb") if args.file and args.file != "-" else sys.stdin.buffer
    with stream:
        sent = asyncio.run(produce_lines(settings, stream, topic=settings.topic(args.topic)))
    print(f"sent {sent} events to {settings.topic(args.topic)}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- journeys
def _load_policies(path: str | None):
    from orchestrator.core import load_policies
    return load_policies(path)


def cmd_journeys_validate(args: argparse.Namespace) -> int:
    from orchestrator.core.journeys import journey_files, load_journey_file
    policies = _load_policies(args.policies or os.environ.get("ORCH_POLICIES") or "policies.yaml")
    paths: list[Path] = []
    for item in args.paths or [os.environ.get("ORCH_JOURNEYS") or "journeys"]:
        p = Path(item)
        if p.is_dir():
            paths.extend(journey_files(p))
        elif p.exists():
            paths.append(p)
        else:
            print(f"{p}: no such file or folder", file=sys.stderr)
            return 2
    bad = 0
    for path in paths:
        try:
            j = load_journey_file(path, channels=policies.channels)
        except DefinitionError as exc:
            bad += 1
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            continue
        for warning in j.warnings:
            print(warning, file=sys.stderr)
        print(f"{path}: ok ({j.id} version {j.version}, {len(j.nodes)} nodes"
              f"{f', {len(j.warnings)} warning(s)' if j.warnings else ''})")
    if not paths:
        print("no journey files found", file=sys.stderr)
        return 2
    return 1 if bad else 0


def cmd_journeys_list(args: argparse.Namespace) -> int:
    if args.published:
        from orchestrator.core.journeys import parse_journey
        from orchestrator.runtime.registry import latest_by_id, read_published
        settings = _settings()
        policies = _load_policies(args.policies or settings.policies)
        published, _ = asyncio.run(read_published(settings))
        for key, pub in sorted(latest_by_id(published).items()):
            if pub.text is None:
                print(f"{key}\t(tombstone)")
                continue
            try:
                j = parse_journey(pub.text, pub.source, channels=policies.channels)
            except DefinitionError as exc:
                print(f"{key}\tINVALID: {exc.problems[0]}")
                continue
            from orchestrator.core.timeutil import format_ts
            flags = ["enabled" if j.enabled else "disabled"] + (["shadow"] if j.shadow else [])
            print("\t".join([j.id, f"v{j.version}", f"entry={j.entry_on}", *flags,
                             f"published {format_ts(pub.timestamp_ms)}"]))
        return 0
    from orchestrator.core import load_journey_dir
    policies = _load_policies(args.policies or os.environ.get("ORCH_POLICIES") or "policies.yaml")
    journeys, problems = load_journey_dir(args.dir or os.environ.get("ORCH_JOURNEYS") or "journeys",
                                          channels=policies.channels)
    for j in sorted(journeys, key=lambda j: j.id):
        print(f"{j.id}\tv{j.version}\tentry={j.entry_on}\tpriority={j.priority}\tgroup={j.group or '-'}"
              f"\t{'enabled' if j.enabled else 'disabled'}\t{j.source}")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


def _local_definitions(paths: list[str], channels: tuple[str, ...]) -> tuple[list[tuple[Path, str, object]], list[str]]:
    """(path, text, Journey) for every journey file under ``paths``, and every problem found."""
    from orchestrator.core.journeys import journey_files, parse_journey
    found: list[Path] = []
    for item in paths or [os.environ.get("ORCH_JOURNEYS") or "journeys"]:
        p = Path(item)
        found.extend(journey_files(p) if p.is_dir() else [p])
    out, problems = [], []
    for path in found:
        try:
            text = path.read_text(encoding="utf-8")
            out.append((path, text, parse_journey(text, str(path), channels=channels)))
        except OSError as exc:
            problems.append(f"{path}:1: cannot read file: {exc}")
        except DefinitionError as exc:
            problems.extend(exc.problems)
    return out, problems


def cmd_journeys_publish(args: argparse.Namespace) -> int:
    from orchestrator.runtime.registry import publish, published_versions, read_published
    settings = _settings()
    policies = _load_policies(args.policies or settings.policies)
    local, problems = _local_definitions(args.paths, policies.channels)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print("nothing published: fix the definitions above first", file=sys.stderr)
        return 1
    published, _ = asyncio.run(read_published(settings))
    versions = published_versions(published, policies.channels)
    to_send: list[tuple[str, str]] = []
    for path, text, j in local:
        known = versions.get(j.id, {})
        if j.version in known:
            if known[j.version] == text:
                print(f"{path}: {j.id} version {j.version} is already published, unchanged")
                continue
            print(f"{path}: {j.id} version {j.version} is already published with different content; "
                  f"bump version: to publish a change (customers in flight keep their version)", file=sys.stderr)
            return 1
        if known and max(known) > j.version and not args.force:
            print(f"{path}: {j.id} version {j.version} is older than the published version {max(known)}; "
                  "publish a higher version (or use --force)", file=sys.stderr)
            return 1
        to_send.append((j.id, text))
        print(f"{path}: publishing {j.id} version {j.version}"
              f"{' (shadow)' if j.shadow else ''}{' (disabled)' if not j.enabled else ''}")
    if to_send:
        asyncio.run(publish(settings, to_send))
        print(f"published {len(to_send)} journey(s) to {settings.topic('journeys')}; workers load them without a restart")
    return 0


def cmd_journeys_diff(args: argparse.Namespace) -> int:
    import difflib

    from orchestrator.runtime.registry import latest_by_id, read_published
    settings = _settings()
    if args.shadow:
        from orchestrator.core.shadow import compare, render_comparison
        from orchestrator.runtime.stats import read_decisions
        decisions = asyncio.run(read_decisions(settings))
        report = compare(decisions, args.shadow)
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() if args.json else render_comparison(report))
        return 0
    policies = _load_policies(args.policies or settings.policies)
    local, problems = _local_definitions(args.paths, policies.channels)
    for problem in problems:
        print(problem, file=sys.stderr)
    published, _ = asyncio.run(read_published(settings))
    latest = latest_by_id(published)
    changed = 0
    for path, text, j in local:
        cur = latest.get(j.id)
        if cur is None or cur.text is None:
            print(f"{j.id}: new (version {j.version}, {path}), not published yet")
            changed += 1
        elif cur.text == text:
            print(f"{j.id}: unchanged (version {j.version})")
        else:
            changed += 1
            diff = difflib.unified_diff(cur.text.splitlines(keepends=True), text.splitlines(keepends=True),
                                        fromfile=f"{j.id} (published)", tofile=str(path))
            sys.stdout.writelines(diff)
    return 1 if problems else (3 if changed and args.exit_code else 0)


def _journey_arg(spec: str, folder: str, channels: tuple[str, ...]):  # noqa: ANN202 - Journey
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


def _time_arg(value: str | None, now_ms: int) -> int | None:
    """``--from``/``--to``: RFC 3339, a date (UTC midnight), epoch ms, a duration ago (``24h``), or ``now``."""
    from orchestrator.core.durations import parse_duration_ms
    from orchestrator.core.timeutil import parse_ts_ms
    if value is None:
        return None
    text = value.strip()
    if text == "now":
        return now_ms
    if text.isdigit():
        return int(text)
    try:
        return now_ms - parse_duration_ms(text)
    except ValueError:
        pass
    ms = parse_ts_ms(text + "T00:00:00Z" if len(text) == 10 else text)
    if ms is None:
        raise ConfigError(f"{value!r} is not a time: give an RFC 3339 time (2026-11-23T10:00:00Z), a date "
                          "(2026-11-23), epoch milliseconds, a duration ago (24h, 7d), or now")
    return ms


def cmd_journeys_graph(args: argparse.Namespace) -> int:
    import shutil
    import subprocess
    import time

    from orchestrator.core import graph
    if (args.since or args.until) and not args.stats:
        raise ConfigError("--from and --to choose the span of the counts: add --stats")
    policies = _load_policies(args.policies or os.environ.get("ORCH_POLICIES") or "policies.yaml")
    journey = _journey_arg(args.journey, args.journeys or os.environ.get("ORCH_JOURNEYS") or "journeys",
                             policies.channels)
    counts = None
    if args.stats:
        now_ms = int(time.time() * 1000)
        since, until = _time_arg(args.since, now_ms), _time_arg(args.until, now_ms)
        if since is not None and until is not None and since >= until:
            raise ConfigError("--from must be before --to")
        from orchestrator.runtime.stats import read_decisions
        decisions = asyncio.run(read_decisions(_settings()))
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


def _confidence(value: float) -> float:
    if not 50 <= value < 100:
        raise ConfigError(f"--confidence {value:g} is not a percentage between 50 and 100: give one like 95")
    return value / 100


def cmd_journeys_winner(args: argparse.Namespace) -> int:
    from orchestrator.admin.winner import render_report, winner
    from orchestrator.runtime.stats import read_decisions
    confidence = _confidence(args.confidence)
    policies = _load_policies(args.policies or os.environ.get("ORCH_POLICIES") or "policies.yaml")
    j = _journey_arg(args.journey, args.journeys or os.environ.get("ORCH_JOURNEYS") or "journeys",
                       policies.channels)
    text = Path(j.source).read_text(encoding="utf-8")
    decisions = asyncio.run(read_decisions(_settings()))
    report, new_text = winner(j, text, decisions, split=args.split, confidence=confidence, metric=args.metric,
                              channels=policies.channels)
    if args.output and new_text is not None:
        Path(args.output).write_text(new_text, encoding="utf-8")
    if args.json:
        print(orjson.dumps({**report, "next_version_text": new_text}, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(render_report(report))
    if new_text is not None:
        nv = report["next_version"]
        where = f"written to {args.output}" if args.output else "below; -o FILE writes it to a file"
        note = "" if nv["comments_kept"] else " (written out anew: the file's comments are not kept)"
        print(f"\nnext version of {j.source}: version {nv['version']}, split {nv['replaces']} replaced by "
              f"{nv['by']}{note}; {where}; then `journeys diff` and `journeys publish` it")
        if not args.output:
            print()
            sys.stdout.write(new_text)
    return 0


# ---------------------------------------------------------------------------- simulate
def cmd_simulate(args: argparse.Namespace) -> int:
    from orchestrator.core import Engine, JourneySet, load_journey_dir
    from orchestrator.simulate import Simulation
    policies = _load_policies(args.policies)
    journeys, problems = load_journey_dir(args.journeys, channels=policies.channels)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1
    if not journeys:
        print(f"{args.journeys}: no journeys found", file=sys.stderr)
        return 1
    sim = Simulation(Engine(JourneySet(journeys), policies))
    stream = open(args.events, "rb") if args.events != "-" else sys.stdin.buffer
    out = sys.stdout.buffer
    progress = _Progress("simulate", enabled=sys.stderr.isatty())
    with stream:
        for record in sim.run(progress.count(stream)):
            out.write(orjson.dumps(record) + b"\n")
            progress.outputs += 1
    out.flush()
    progress.done()
    for line in _simulate_summary(sim):
        print(line, file=sys.stderr)
    return 0


def _simulate_summary(sim) -> list[str]:  # noqa: ANN001 - a Simulation
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


class _Progress:
    """A live line on stderr (only on a terminal): lines read, outputs, rate."""

    def __init__(self, what: str, *, enabled: bool) -> None:
        import time
        self.what, self.enabled, self.time = what, enabled, time.monotonic
        self.lines = self.outputs = 0
        self.started = self.last = self.time()

    def count(self, lines):  # noqa: ANN001, ANN201 - any iterable of lines
        for line in lines:
            self.lines += 1
            if self.enabled and self.lines % 1000 == 0 and self.time() - self.last >= 0.5:
                self.last = self.time()
                rate = self.lines / max(self.last - self.started, 1e-9)
                sys.stderr.write(f"\r{self.what}: {self.lines:,} events read, {self.outputs:,} outputs, "
                                 f"{rate:,.0f} events/s")
                sys.stderr.flush()
            yield line

    def done(self) -> None:
        if self.enabled:
            elapsed = self.time() - self.started
            sys.stderr.write(f"\r\x1b[2K{self.what}: {self.lines:,} events, {self.outputs:,} outputs in "
                             f"{elapsed:.1f} s\n")


# ---------------------------------------------------------------------------- backtest
def cmd_backtest(args: argparse.Namespace) -> int:
    import time

    from orchestrator.admin.backtest import backtest, render
    from orchestrator.core import load_journey_dir
    now_ms = int(time.time() * 1000)
    since, until = _time_arg(args.since, now_ms), _time_arg(args.until, now_ms)
    if since >= until:
        raise ConfigError("--from must be before --to")
    settings = _settings()
    policies = _load_policies(args.policies or settings.policies)
    journeys, problems = load_journey_dir(args.journeys, channels=policies.channels)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print("nothing replayed: fix the definitions above first", file=sys.stderr)
        return 1
    if not journeys:
        raise ConfigError(f"{args.journeys}: no journeys found; give the folder of the journeys to try")
    report = asyncio.run(backtest(settings, journeys, policies, since, until))
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() if args.json else render(report))
    return 0


# ---------------------------------------------------------------------------- kafka
def cmd_kafka(args: argparse.Namespace) -> int:
    from orchestrator import localkafka
    from orchestrator.config import external_bootstrap
    try:
        if args.action == "up":
            if external_bootstrap():
                print(f"ORCH_BOOTSTRAP is set ({external_bootstrap()}); not starting a local broker")
                return 0
            bootstrap = localkafka.up()
            print(f"kafka is up at {bootstrap}")
        elif args.action == "down":
            stopped = localkafka.down()
            print("kafka stopped" if stopped else "kafka was not running")
        else:
            print(orjson.dumps(localkafka.status(), option=orjson.OPT_INDENT_2).decode())
    except localkafka.LocalKafkaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------- explain
def cmd_explain(args: argparse.Namespace) -> int:
    settings = _settings()
    from orchestrator.runtime.explain import explain, render_text
    report = asyncio.run(explain(settings, args.customer_id, limit=args.limit))
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        print(render_text(report))
    return 0


# ---------------------------------------------------------------------------- stats
def cmd_stats(args: argparse.Namespace) -> int:
    settings = _settings()
    from orchestrator.core.stats import render_table
    from orchestrator.runtime.stats import journey_stats

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            sys.stderr.write(f"\rreading decisions: {done}/{total}")
            sys.stderr.flush()

    reports = asyncio.run(journey_stats(settings, progress=progress))
    if sys.stderr.isatty():
        sys.stderr.write("\r\x1b[2K")
    if args.journey:
        reports = [r for r in reports if r["journey"] == args.journey]
    if args.json:
        print(orjson.dumps(reports, option=orjson.OPT_INDENT_2).decode())
    elif reports:
        print(render_table(reports))
    else:
        print("no journey decisions yet")
    return 0


# ---------------------------------------------------------------------------- adapter
def cmd_adapter(args: argparse.Namespace) -> int:
    settings = _settings()
    _setup_logging(args.loglevel, settings.log_format)
    from orchestrator.adapters.options import webhook_options
    from orchestrator.adapters.webhook import run_webhook
    run_webhook(settings, webhook_options(args, topic_prefix=settings.topic_prefix, env=os.environ))
    return 0


# ---------------------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    from orchestrator.demo import run_demo
    return run_demo(rate=args.rate, duration_s=args.duration)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orchestrator", description="Real-time journey orchestration on Kafka.")
    p.add_argument("--version", action="version", version=f"orchestrator {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    w = sub.add_parser("worker", help="run a worker (consumes events, produces actions)")
    w.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    w.set_defaults(fn=cmd_worker)

    pr = sub.add_parser("produce", help="send JSON-lines events (FILE or stdin) to <prefix>.events")
    pr.add_argument("file", nargs="?", metavar="FILE")
    pr.add_argument("--topic", default="events", help="topic suffix (default: events)")
    pr.set_defaults(fn=cmd_produce)

    j = sub.add_parser("journeys", help="validate or list journey definitions")
    jsub = j.add_subparsers(dest="action", required=True, metavar="ACTION")
    jv = jsub.add_parser("validate", help="check journey files; prints file:line: message for each problem")
    jv.add_argument("paths", nargs="*", metavar="PATH", help="files or folders (default: $ORCH_JOURNEYS)")
    jv.add_argument("--policies", help="policies file (channels); default $ORCH_POLICIES")
    jv.set_defaults(fn=cmd_journeys_validate)
    jl = jsub.add_parser("list", help="list the journeys in a folder, or the published ones")
    jl.add_argument("dir", nargs="?", help="folder (default: $ORCH_JOURNEYS)")
    jl.add_argument("--published", action="store_true", help="list what is published on <prefix>.journeys")
    jl.add_argument("--policies")
    jl.set_defaults(fn=cmd_journeys_list)
    jp = jsub.add_parser("publish", help="validate, then publish to <prefix>.journeys (workers reload live)")
    jp.add_argument("paths", nargs="*", metavar="PATH", help="files or folders (default: $ORCH_JOURNEYS)")
    jp.add_argument("--policies")
    jp.add_argument("--force", action="store_true", help="publish even if a higher version is published")
    jp.set_defaults(fn=cmd_journeys_publish)
    jd = jsub.add_parser("diff", help="local definitions against the published ones; or --shadow JOURNEY")
    jd.add_argument("paths", nargs="*", metavar="PATH")
    jd.add_argument("--policies")
    jd.add_argument("--shadow", metavar="JOURNEY", help="compare a shadow version's decisions with the live one's")
    jd.add_argument("--json", action="store_true")
    jd.add_argument("--exit-code", action="store_true", help="exit 3 when something differs (for CI)")
    jd.set_defaults(fn=cmd_journeys_diff)

    jg = jsub.add_parser("graph", help="draw a journey (Mermaid, Graphviz DOT, SVG, PNG), with --stats its counts")
    jg.add_argument("journey", metavar="JOURNEY", help="a journey id in the journeys folder, or a file")
    jg.add_argument("--journeys", metavar="DIR", help="journeys folder (default: $ORCH_JOURNEYS, else journeys)")
    jg.add_argument("--policies", help="policies file (channels); default $ORCH_POLICIES")
    jg.add_argument("--format", choices=["mermaid", "dot", "svg", "png"], default="mermaid",
                    help="mermaid (default) and dot are text; svg and png need Graphviz's dot")
    jg.add_argument("--stats", action="store_true", help="counts per node and arrow from <prefix>.decisions")
    jg.add_argument("--from", dest="since", metavar="T", help="with --stats: from this time (RFC 3339, date, "
                    "epoch ms, or a duration ago like 24h)")
    jg.add_argument("--to", dest="until", metavar="T", help="with --stats: until this time (default: now)")
    jg.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    jg.set_defaults(fn=cmd_journeys_graph)

    jw = jsub.add_parser("winner", help="compare the arms of a split (from <prefix>.decisions); when one wins, "
                         "print the next version with the split replaced by it")
    jw.add_argument("journey", metavar="JOURNEY", help="a journey id in the journeys folder, or a file")
    jw.add_argument("--metric", choices=["goal"], default="goal", help="what counts as a conversion (default goal)")
    jw.add_argument("--confidence", type=float, default=95.0, metavar="PCT",
                    help="confidence of the two-sided test, in percent (default 95)")
    jw.add_argument("--split", metavar="NODE", help="the split node (default: the journey's only reachable split)")
    jw.add_argument("--journeys", metavar="DIR", help="journeys folder (default: $ORCH_JOURNEYS, else journeys)")
    jw.add_argument("--policies", help="policies file (channels); default $ORCH_POLICIES")
    jw.add_argument("-o", "--output", metavar="FILE", help="write the next version to FILE")
    jw.add_argument("--json", action="store_true", help="print the report (and the next version) as JSON")
    jw.set_defaults(fn=cmd_journeys_winner)

    s = sub.add_parser("simulate", help="offline dry run over a JSON-lines file, virtual clock")
    s.add_argument("--journeys", required=True, metavar="DIR")
    s.add_argument("--policies", metavar="F")
    s.add_argument("events", metavar="EVENTS.jsonl")
    s.set_defaults(fn=cmd_simulate)

    bt = sub.add_parser("backtest", help="replay the events <prefix>.events retains in a span through the "
                        "journeys in DIR; compare with the live decisions of that span (writes no topic)")
    bt.add_argument("--journeys", required=True, metavar="DIR", help="the journeys to try (e.g. a changed copy)")
    bt.add_argument("--policies", metavar="F", help="policies file (default $ORCH_POLICIES, else policies.yaml)")
    bt.add_argument("--from", dest="since", required=True, metavar="T",
                    help="RFC 3339 time, date (UTC midnight), epoch ms, or a duration ago (7d)")
    bt.add_argument("--to", dest="until", required=True, metavar="T", help="end of the span (same forms, or now)")
    bt.add_argument("--json", action="store_true", help="print the comparison as JSON")
    bt.set_defaults(fn=cmd_backtest)

    e = sub.add_parser("explain", help="a customer's state and recent decisions (why did / didn't they get it?)")
    e.add_argument("customer_id", metavar="CUSTOMER_ID")
    e.add_argument("--limit", type=int, default=20, help="recent decisions to show (default 20)")
    e.add_argument("--json", action="store_true", help="print JSON instead of text")
    e.set_defaults(fn=cmd_explain)

    st = sub.add_parser("stats", help="per journey and version: active, entries, exits, goals, conversion, lift")
    st.add_argument("--journey", help="only this journey id")
    st.add_argument("--json", action="store_true", help="print JSON instead of a table")
    st.set_defaults(fn=cmd_stats)

    k = sub.add_parser("kafka", help="local single-node Kafka (KRaft) for development and tests")
    k.add_argument("action", choices=["up", "down", "status"])
    k.set_defaults(fn=cmd_kafka)

    ad = sub.add_parser("adapter", help="reference channel adapter: `adapter webhook` POSTs each action to a URL once")
    adsub = ad.add_subparsers(dest="adapter", required=True, metavar="KIND")
    aw = adsub.add_parser("webhook", help="actions of some channels -> HTTP POST; de-duplicated, suppressions "
                          "honoured, rate-limited, retried, dead-lettered, feedback to <prefix>.events")
    from orchestrator.adapters.options import add_webhook_arguments
    add_webhook_arguments(aw)
    aw.set_defaults(fn=cmd_adapter)

    d = sub.add_parser("demo", help="worker + demo traffic + live progress line (what `make run` runs)")
    d.add_argument("--rate", type=float, default=200.0, help="demo events per second")
    d.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: until Ctrl-C)")
    d.set_defaults(fn=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        code = args.fn(args)
        sys.stdout.flush()          # here, so a closed pipe is caught below and not at exit
        return code
    except BrokenPipeError:
        # The reader went away (`orchestrator simulate ... | head`): stop quietly, as Unix tools
        # do when SIGPIPE ends them (the shell shows 128 + 13). Point stdout at /dev/null so the
        # interpreter's final flush does not complain about the closed pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141
    except (ConfigError, DefinitionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OrchestratorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
