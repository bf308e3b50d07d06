"""What README.md and docs/*.md name exists, so a user who copies it meets no stale name.

- every ``orchestrator ...`` line of a shell code block parses with the real argument parser (its
  command, subcommand and options exist, required ones included); inline ``orchestrator X Y`` names
  real commands;
- every ``ORCH_`` variable named is read by the code, every ``orch_`` metric named is exported by
  the worker or the adapter, every ``make X`` is a Makefile target;
- every relative link resolves, anchors included;
- the README's Layout names every room and module of the package;
- the README's "Send an event, see the action" looks at the customer it sent: its aiokafka example
  prints that customer's action (filtered by key), and it shows ``explain`` and ``tail --customer`` for it.

No Kafka, nothing is run: the parser, the metric registries and the files are read. The metric
catalogue's own completeness is tests/unit/observability/test_observability.py's; the Mermaid
pictures are tests/unit/reports/test_graph.py's.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from orchestrator.adapters.metrics import AdapterMetrics
from orchestrator.cli import build_parser
from orchestrator.core.policies import DEFAULT_CHANNELS
from orchestrator.observability.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", re.S | re.M)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
# `orchestrator` in command position: at the start of a line or after a pipe or `;`/`&&`, after any
# VAR=value words (not `kubectl -n orchestrator`, not the image `orchestrator:dev`).
COMMAND = re.compile(r"(?:^|[|;&]\s*)(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(?:\.venv/bin/)?orchestrator\s+(.*)$")
SHELL_STOP = {"|", "||", "&&", ";", ">", ">>", "<", "2>", "2>&1", "&"}
ENV_VAR = re.compile(r"\bORCH_[A-Z0-9_]+")
METRIC = re.compile(r"\borch_[a-z0-9_]+")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def prose(doc: str) -> str:
    """The text outside fenced code blocks."""
    return FENCE.sub("", doc)


def shell_blocks(doc: str) -> list[str]:
    return [body for lang, body in FENCE.findall(doc) if lang in ("sh", "bash", "shell", "console")]


def command_lines(block: str) -> list[str]:
    """The ``orchestrator`` invocations of a shell block: continuation lines joined, from the word
    after ``orchestrator`` to the end of the line."""
    joined = re.sub(r"\\\n", " ", block)
    return [m.group(1) for line in joined.splitlines() if (m := COMMAND.search(line))]


def argv_of(rest: str) -> list[str]:
    """Shell words up to a pipe, a redirection or a comment."""
    words = shlex.split(rest, comments=True)
    for i, word in enumerate(words):
        if word in SHELL_STOP or word.startswith((">", "<", "2>")):
            return words[:i]
    return words


def documented_command_lines() -> list[tuple[str, str]]:
    return [(path.name, rest) for path in DOCS for block in shell_blocks(text(path))
            for rest in command_lines(block)]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


# ---------------------------------------------------------------------------- commands
def test_the_docs_show_command_lines():
    lines = documented_command_lines()
    assert len(lines) >= 20, lines
    assert ("README.md", "produce          # JSON lines on stdin or a FILE; keyed by customer_id") in lines


@pytest.mark.parametrize("where,rest", documented_command_lines())
def test_every_command_line_of_a_shell_block_parses(where, rest, capsys):
    argv = argv_of(rest)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: `orchestrator {' '.join(argv)}` does not parse: "
                    f"{capsys.readouterr().err.strip().splitlines()[-1]}", pytrace=False)
    assert callable(args.fn)


def test_an_unknown_option_in_a_command_line_would_be_noticed(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv_of("journeys graph cart-recovery --colour red | cat"))
    assert argv_of("produce < events.jsonl  # stdin") == ["produce"]


def inline_commands() -> list[tuple[str, list[str]]]:
    """``orchestrator journeys validate [PATH…]`` in running text -> ``["journeys", "validate"]``:
    the leading lower-case words, which must be commands and subcommands."""
    out = []
    for path in DOCS:
        for span in CODE_SPAN.findall(prose(text(path))):
            m = re.match(r"(?:\.venv/bin/)?orchestrator ([a-z][a-z ]*)", span)
            if m:
                out.append((path.name, m.group(1).split()))
    return out


def test_every_command_named_in_running_text_exists():
    found = inline_commands()
    assert any(words[:2] == ["adapter", "webhook"] for _, words in found)
    missing = []
    for where, words in found:
        parser = build_parser()
        for word in words:
            choices = subcommands(parser)
            if not choices:
                break                    # a positional argument (a journey id, up|down|status ...)
            if word not in choices:
                missing.append(f"{where}: orchestrator {' '.join(words)}")
                break
            parser = choices[word]
    assert not missing, missing


# ---------------------------------------------------------------------------- names
def code_text() -> str:
    return "\n".join(text(p) for p in sorted((ROOT / "orchestrator").rglob("*.py")))


def test_every_orch_variable_in_the_docs_is_read_by_the_code():
    read = set(ENV_VAR.findall(code_text()))
    prefixes = tuple(name for name in read if name.endswith("_"))
    assert "ORCH_ADAPTER_HEADER_" in prefixes
    named = {(path.name, name) for path in DOCS for name in ENV_VAR.findall(text(path))}
    assert len({name for _, name in named}) >= 20
    def is_read(name: str) -> bool:
        if name.endswith("_"):           # `ORCH_ADAPTER_*`: a family of variables
            return any(r.startswith(name) for r in read)
        return name in read or (name.startswith(prefixes) and name not in prefixes)

    unread = sorted(f"{where}: {name}" for where, name in named if not is_read(name))
    assert not unread, f"named in the docs but read nowhere in orchestrator/: {unread}"


def exported_names() -> set[str]:
    """Every family and sample name the worker and the adapter export (``orch_events_in`` and
    ``orch_events_in_total``; a histogram's ``_bucket``, ``_sum``, ``_count``)."""
    names: set[str] = set()
    for exposition in (Metrics(channels=DEFAULT_CHANNELS).render(),
                       AdapterMetrics(DEFAULT_CHANNELS, forwarding=True).render()):
        for line in exposition.decode().splitlines():
            if line.startswith("# TYPE "):
                name, kind = line.split(" ")[2:4]
                names.add(name)
                if kind == "histogram":
                    names.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
            elif line and not line.startswith("#"):
                names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_every_metric_in_the_docs_is_exported():
    exported = exported_names()
    assert {"orch_events_in_total", "orch_adapter_actions_total", "orch_build_info"} <= exported
    named = {(path.name, name) for path in DOCS for name in METRIC.findall(text(path))
             if not name.endswith("_")}             # `orch_adapter_*` names a family of names
    stale = sorted(f"{where}: {name}" for where, name in named if name not in exported)
    assert not stale, f"named in the docs but not exported: {stale}"


def test_every_make_target_in_the_docs_exists():
    targets = set(re.findall(r"^([a-z][a-z-]*):", text(ROOT / "Makefile"), re.M))
    assert {"run", "test", "help"} <= targets
    named = set()
    for path in DOCS:
        doc = text(path)
        code = CODE_SPAN.findall(prose(doc)) + shell_blocks(doc)
        named |= {(path.name, t) for piece in code for t in re.findall(r"\bmake ([a-z][a-z-]*)", piece)}
    assert ("README.md", "run") in named
    unknown = sorted(f"{where}: make {t}" for where, t in named if t not in targets)
    assert not unknown, unknown


# ---------------------------------------------------------------------------- links and layout
def github_anchor(heading: str) -> str:
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def anchors(doc: str) -> set[str]:
    return {github_anchor(m) for m in re.findall(r"^#+ (.+)$", prose(doc), re.M)}


def test_every_relative_link_resolves():
    broken = []
    for path in DOCS:
        for target in LINK.findall(prose(text(path))):
            if re.match(r"[a-z]+:", target):
                continue                 # http(s), mailto
            file, _, anchor = target.partition("#")
            dest = (path.parent / file) if file else path
            if not dest.exists():
                broken.append(f"{path.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(text(dest)):
                broken.append(f"{path.name}: {target} (no such heading)")
    assert not broken, broken


def layout_block() -> str:
    section = text(README).split("## Layout", 1)[1].split("\n## ", 1)[0]
    (block,) = [body for _, body in FENCE.findall(section)]
    return block


# Modules the Layout names by what they hold rather than by file name.
LAYOUT_WORDS = {"yamlsrc": "YAML", "ratelimit": "token bucket", "adapters/dedup": "dedup store", "retry": "retry policy"}


def test_the_readme_layout_names_every_room_and_module():
    block = layout_block()
    rooms: dict[str, str] = {}
    current = None
    for line in block.splitlines():
        m = re.match(r"  ([a-z]+)/\s+(.*)", line)
        if m:
            current = m.group(1)
            rooms[current] = m.group(2)
        elif current and line.startswith("   ") and not re.match(r"  \S", line):
            rooms[current] += " " + line.strip()
        elif re.match(r"\S", line):
            current = None
    package = ROOT / "orchestrator"
    folders = sorted(p.name for p in package.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert set(rooms) == set(folders), f"Layout rooms {sorted(rooms)} against the package's {folders}"
    unnamed = []
    for room, description in rooms.items():
        for module in sorted((package / room).glob("*.py")):
            word = LAYOUT_WORDS.get(f"{room}/{module.stem}", LAYOUT_WORDS.get(module.stem, module.stem))
            if module.stem != "__init__" and word not in description:
                unnamed.append(f"{room}/{module.name}")
    for module in sorted(package.glob("*.py")):
        if module.stem not in ("__init__", "__main__") and module.name not in block:
            unnamed.append(module.name)
    for top in ("benchmarks", "tests", "deploy", "journeys"):
        if not re.search(rf"^{top}/", block, re.M):
            unnamed.append(f"{top}/")
    assert not unnamed, f"not in the README's Layout: {unnamed}"


# ---------------------------------------------------------------------------- the simulate example
NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8}


def test_the_readme_simulate_example_prints_what_the_readme_says(tmp_path, monkeypatch, capsys):
    from orchestrator.cli import main
    (block,) = [b for b in shell_blocks(text(README)) if "orchestrator simulate" in b]
    events = re.search(r"<<'EOF'\n(.*?)^EOF$", block, re.S | re.M).group(1)
    (tmp_path / "events.jsonl").write_text(events)
    for name in ("journeys", "policies.yaml"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)                  # the README runs it from the repository root
    (rest,) = command_lines(block)
    assert main(argv_of(rest)) == 0
    out = capsys.readouterr().out.splitlines()
    shown = re.search(r"^# (\{.*?)…", block, re.M).group(1)   # the comment's first record, up to "…"
    assert out[0].startswith(shown), (out[0], shown)
    said = re.search(r"Here (\w+) records", text(README)).group(1)
    assert len(out) == NUMBERS[said], out


# ---------------------------------------------------------------------------- the reference docs and citations
# What users read cites the repository's own docs, never the team's contract (SPEC), which is not in
# the repository.
def user_facing_files() -> list[Path]:
    """README, docs, the example journeys and policies, the deploy files and every module."""
    files = [*DOCS, ROOT / "policies.yaml", *sorted((ROOT / "journeys").glob("*.yaml")),
             *sorted(p for p in (ROOT / "orchestrator").rglob("*.py"))]
    files += sorted(p for p in (ROOT / "deploy").rglob("*")
                    if p.is_file() and p.suffix in (".py", ".yaml", ".yml", ".md"))
    return files


def test_nothing_users_read_cites_the_spec():
    citing = sorted(str(p.relative_to(ROOT)) for p in user_facing_files()
                    if re.search(r"SPEC(?: §|\.md|'s|:)", text(p)))
    assert not citing, f"cite docs/ instead of SPEC in: {citing}"


CITATION = re.compile(r"(?<![\w/.-])((?:docs/[\w-]+|README)\.md)#([\w-]+)")


def test_every_cited_section_exists():
    """``docs/journeys.md#wait_for`` in a message, a docstring, an example file or the docs' text
    (paths from the repository root) names a heading of that file."""
    cited = [(p, f, a) for p in user_facing_files() for f, a in CITATION.findall(text(p))]
    assert {("orchestrator/core/journeys.py", "docs/journeys.md")} <= {
        (str(p.relative_to(ROOT)), f) for p, f, _ in cited}
    missing = sorted({f"{p.relative_to(ROOT)}: {f}#{a}" for p, f, a in cited
                      if not (ROOT / f).exists() or a not in anchors(text(ROOT / f))})
    assert not missing, missing


def test_every_json_block_of_the_docs_parses():
    import json
    blocks = [(path.name, body) for path in DOCS for lang, body in FENCE.findall(text(path)) if lang == "json"]
    assert len(blocks) >= 8
    for where, body in blocks:
        try:
            json.loads(body)
        except ValueError as exc:
            pytest.fail(f"{where}: a JSON block does not parse ({exc}):\n{body}", pytrace=False)


def test_the_reference_examples_are_valid():
    """Every YAML block of docs/journeys.md and docs/policies.md is YAML the loader reads; the
    complete journey and the complete policies file validate."""
    from orchestrator.core import parse_journey, parse_policies
    from orchestrator.core.yamlsrc import load
    complete = 0
    for name in ("journeys.md", "policies.md"):
        for lang, body in FENCE.findall(text(ROOT / "docs" / name)):
            if lang != "yaml":
                continue
            data = load(body, name).data
            if isinstance(data, dict) and "journey" in data and "nodes" in data:
                parse_journey(body, name, channels=DEFAULT_CHANNELS)
                complete += 1
            elif isinstance(data, dict) and {"channels", "frequency", "consent"} <= set(data):
                parse_policies(body, name)
                complete += 1
    assert complete == 2


# ---------------------------------------------------------------------------- "Send an event, see the action"
def send_an_event_section() -> str:
    return text(README).split("## Send an event, see the action", 1)[1].split("\n## ", 1)[0]


def test_the_readme_aiokafka_example_prints_the_action_of_the_customer_it_sent():
    # The actions topic holds every customer's actions (the demo's too): printing the first record
    # it reads showed someone else's action.
    (block,) = [body for lang, body in FENCE.findall(send_an_event_section()) if lang == "python"]
    key = re.search(r'send_and_wait\("orch\.events", .*key=(b"[^"]+")\)', block).group(1)
    loop = block.split("async for msg in consumer:", 1)[1]
    condition, printing = loop.index(f"if msg.key == {key}:"), loop.index("print(")
    assert condition < printing, loop


def test_the_readme_shows_how_to_see_what_happened_to_the_customer_it_sent():
    section = send_an_event_section()
    customer = re.search(r'"customer_id": "([^"]+)"', section).group(1)
    shown = [argv_of(rest) for block in shell_blocks(section) for rest in command_lines(block)]
    assert ["explain", customer] in shown
    assert any(argv[0] == "tail" and argv[argv.index("--customer") + 1] == customer
               for argv in shown if "--customer" in argv), shown
