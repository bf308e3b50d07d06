"""``orchestrator journeys validate|list|publish|diff``: definitions in a folder, and what is
published on ``<prefix>.journeys`` (judged with the worker's own rules, see
:func:`orchestrator.runtime.registry.survey`)."""

from __future__ import annotations

import argparse
import asyncio
import difflib
import sys
from pathlib import Path
from typing import NoReturn

import orjson
from aiokafka import AIOKafkaProducer

from orchestrator.config import Settings, journeys_dir, policies_file
from orchestrator.core import load_policies
from orchestrator.errors import ConfigError, DefinitionError
from orchestrator.kafkaio.clients import start_client


def policies_for(args: argparse.Namespace):  # noqa: ANN201 - Policies
    """``--policies``, else ``ORCH_POLICIES``, else ``policies.yaml`` (the defaults if that is absent)."""
    return load_policies(args.policies or policies_file())


def journey_arg(spec: str, folder: str, channels: tuple[str, ...]):  # noqa: ANN201 - Journey
    """JOURNEY is a file, or an id in the folder (its highest version, as a worker runs it)."""
    from orchestrator.core.journeyfiles import load_journey_dir, load_journey_file
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


def usage_error(message: str) -> NoReturn:
    """Refuse options that cannot go together as argparse refuses a bad option: exit code 2, but
    one sentence (``error: ...``) on standard error and no usage text."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def time_span(since: str | None, until: str | None, now_ms: int) -> tuple[int | None, int | None]:
    """``--from``/``--to`` of a command that reads what happened: (from, to) in epoch ms, ``None``
    where not given (``--to``: up to now). Refused as a usage error: a value that is not a time, a
    ``--to`` later than now (nothing after now has happened yet), a ``--from`` not before the end."""
    from orchestrator.core.timeutil import format_ts
    try:
        start, end = time_arg(since, now_ms), time_arg(until, now_ms)
    except ConfigError as exc:
        usage_error(str(exc))
    if end is not None and end > now_ms:
        usage_error(f"--to {until} ({format_ts(end)}) is later than now ({format_ts(now_ms)}): nothing after "
                    "now has happened yet; give a time up to now")
    if start is not None and start >= (now_ms if end is None else end):
        usage_error(f"--from {since} ({format_ts(start)}) is not before "
                    + (f"now ({format_ts(now_ms)}); give a time in the past (7d: the last week)" if end is None
                       else f"--to {until} ({format_ts(end)}); give the earlier time with --from"))
    return start, end


def validate(args: argparse.Namespace) -> int:
    from orchestrator.core.journeyfiles import duplicate_version, journey_files, load_journey_file
    policies = policies_for(args)
    paths: list[Path] = []
    given = args.paths or [journeys_dir()]
    missing = 0                       # every path that is not there is reported; the others are validated
    for item in given:
        p = Path(item)
        if p.is_dir():
            paths.extend(journey_files(p))
        elif p.exists():
            paths.append(p)
        else:
            print(f"{p}: no such file or folder", file=sys.stderr)
            missing += 1
    bad = 0
    seen: dict[tuple[str, int], Path] = {}
    for path in paths:
        try:
            j = load_journey_file(path, channels=policies.channels)
        except DefinitionError as exc:
            bad += 1
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            continue
        if (j.id, j.version) in seen:
            # What a worker's journeys folder (load_journey_dir) refuses: one id and version twice.
            bad += 1
            print(duplicate_version(path, j, seen[(j.id, j.version)]), file=sys.stderr)
            continue
        seen[(j.id, j.version)] = path
        for warning in j.warnings:
            print(warning, file=sys.stderr)
        print(f"{path}: ok ({j.id} version {j.version}, {len(j.nodes)} nodes"
              f"{f', {len(j.warnings)} warning(s)' if j.warnings else ''})")
    if missing:
        return 2
    if not paths:
        print(f"no journey files found in {', '.join(str(g) for g in given)} (*.yaml, *.yml)", file=sys.stderr)
        return 2
    return 1 if bad else 0


def list_journeys(args: argparse.Namespace) -> int:
    if args.published:
        from orchestrator.core.timeutil import format_ts
        from orchestrator.runtime.registry import read_published, survey
        settings = Settings.from_env()
        policies = load_policies(args.policies or settings.policies)
        published, _ = asyncio.run(read_published(settings))
        for jid, view in sorted(survey(settings, published, policies.channels).items()):
            rows = [(j, "live") for j in [view.live] if j is not None]
            rows += [(j, "shadow") for j in [view.shadow] if j is not None]
            rows += [(j, "old shadow" if j.shadow else "older") for j in reversed(view.older)]
            for j, status in rows:
                flags = ["enabled" if j.enabled else "disabled"]
                print("\t".join([j.id, f"v{j.version}", status, f"entry={j.entry_on}", *flags,
                                 f"published {format_ts(view.published_ms[j.version])}"]))
            for v in view.refused:
                print("\t".join([jid, f"v{v.version}" if v.version is not None else "v?", v.result,
                                 f"published {format_ts(v.pub.timestamp_ms)}", v.reason]))
            if not rows and not view.refused:
                print(f"{jid}\t(tombstone)")
        return 0
    from orchestrator.core import load_journey_dir
    from orchestrator.core.journeyfiles import journey_dir_problem
    policies = policies_for(args)
    folder = args.dir or journeys_dir()
    problem = journey_dir_problem(folder)
    if problem is not None:
        raise ConfigError(problem)
    if not Path(folder).is_dir():     # the default folder, which may be absent (journey_dir_problem)
        print(f"no journeys folder {str(folder)!r} here: nothing to list (give --dir or ORCH_JOURNEYS; what is "
              "published: orchestrator journeys list --published)", file=sys.stderr)
        return 0
    journeys, problems = load_journey_dir(folder, channels=policies.channels)
    for j in sorted(journeys, key=lambda j: j.id):
        print(f"{j.id}\tv{j.version}\tentry={j.entry_on}\tpriority={j.priority}\tgroup={j.group or '-'}"
              f"\t{'enabled' if j.enabled else 'disabled'}\t{j.source}")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


def local_definitions(paths: list[str], channels: tuple[str, ...]) -> tuple[list[tuple[Path, str, object]], list[str]]:
    """(path, text, Journey) for every journey file under ``paths``, and every problem found."""
    from orchestrator.core.journeyfiles import journey_files, parse_journey
    found: list[Path] = []
    out, problems = [], []
    for item in paths or [journeys_dir()]:
        p = Path(item)
        if p.is_dir():
            found.extend(journey_files(p))
        elif p.exists():
            found.append(p)
        else:
            problems.append(f"{p}: no such file or folder")
    for path in found:
        try:
            text = path.read_text(encoding="utf-8")
            out.append((path, text, parse_journey(text, str(path), channels=channels)))
        except OSError as exc:
            problems.append(f"{path}:1: cannot read file: {exc}")
        except DefinitionError as exc:
            problems.extend(exc.problems)
    return out, problems


def publish_journeys(args: argparse.Namespace) -> int:
    from orchestrator.kafkaio.topics import ensure_topics
    from orchestrator.runtime.registry import journeys_topic, read_published, survey
    settings = Settings.from_env()
    policies = load_policies(args.policies or settings.policies)
    local, problems = local_definitions(args.paths, policies.channels)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print("nothing published: fix the definitions above first", file=sys.stderr)
        return 1
    if not local:
        given = args.paths or [journeys_dir()]
        print(f"no journey files found in {', '.join(map(str, given))} (*.yaml, *.yml): nothing published",
              file=sys.stderr)
        return 2
    # The journeys topic as the worker would create it (compacted), never the broker's defaults.
    asyncio.run(ensure_topics(settings, policies.channels, only=[journeys_topic(settings)]))
    published, _ = asyncio.run(read_published(settings))
    views = survey(settings, published, policies.channels)
    to_send: list[tuple[str, str]] = []
    for path, text, j in local:
        view = views.get(j.id)
        known = view.texts if view is not None else {}       # versions loaded, not refused records
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
        print(f"published {len(to_send)} journey(s) to {settings.topics.journeys}; workers load them without a restart")
    return 0


def diff(args: argparse.Namespace) -> int:
    """Exit codes: with ``--exit-code`` those of diff(1) and ``git diff --exit-code``: 0 nothing differs,
    1 something does, 2 trouble (a definition that does not load; the command line sets errors to 2);
    without it 0, or 1 when a definition does not load."""
    from orchestrator.runtime.registry import read_published, survey
    settings = Settings.from_env()
    if args.shadow and args.exit_code:
        raise ConfigError("--exit-code compares definitions with the published ones, not a shadow's decisions "
                          "(--shadow); leave one of them out")
    if args.json and not args.shadow:
        usage_error("--json prints a shadow's comparison (--shadow JOURNEY); a diff of definitions is text")
    if args.shadow:
        from orchestrator.admin.stats import beside_shadow, read_decisions
        from orchestrator.reports.shadow import compare, render_comparison
        decisions = asyncio.run(read_decisions(settings))
        paired, shadow_version, live_version = beside_shadow(decisions, args.shadow)
        if shadow_version is None:
            seen = any(d.get("journey") == args.shadow for d in decisions)
            print(f"error: journey {args.shadow} has {'no shadow decisions' if seen else 'no decisions'} on "
                  f"{settings.topics.decisions}; publish a version with shadow: true and let it see traffic"
                  f"{'' if seen else ' (is the journey id right?)'}", file=sys.stderr)
            return 1
        report = compare(paired, args.shadow)
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() if args.json else render_comparison(report))
        return 0
    policies = load_policies(args.policies or settings.policies)
    local, problems = local_definitions(args.paths, policies.channels)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems and not local:        # nothing to compare: say so without reaching for Kafka
        return 2 if args.exit_code else 1
    published, _ = asyncio.run(read_published(settings))
    views = survey(settings, published, policies.channels)
    changed = 0
    for path, text, j in local:
        view = views.get(j.id)
        texts = view.texts if view is not None else {}
        live = view.live if view is not None else None
        if j.version in texts:
            # The same version as published: it may not change (workers refuse new content for it).
            base, label = texts[j.version], f"{j.id} v{j.version} (published)"
            if base == text:
                print(f"{j.id}: unchanged (version {j.version})")
                continue
            print(f"{j.id}: version {j.version} is published with other content; bump version: to publish a change")
        elif live is not None:
            base, label = texts[live.version], f"{j.id} v{live.version} (published, live)"
            print(f"{j.id}: version {j.version} is not published yet; against the live version {live.version}:")
        else:
            print(f"{j.id}: new (version {j.version}, {path}), not published yet")
            changed += 1
            continue
        changed += 1
        diff = difflib.unified_diff(base.splitlines(keepends=True), text.splitlines(keepends=True),
                                    fromfile=label, tofile=str(path))
        sys.stdout.writelines(diff)
    if problems:
        return 2 if args.exit_code else 1
    return 1 if changed and args.exit_code else 0


async def publish(settings: Settings, items: list[tuple[str, str]]) -> None:
    """Send (journey id, YAML text) records, waiting for every acknowledgement."""
    producer = AIOKafkaProducer(**settings.aiokafka_kwargs(), acks="all", enable_idempotence=True)
    await start_client(producer, settings)
    try:
        for jid, text in items:
            await producer.send_and_wait(settings.topics.journeys, value=text.encode(), key=jid.encode())
    finally:
        await producer.stop()
