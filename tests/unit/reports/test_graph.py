"""Journey pictures (orchestrator/reports/graph.py and `orchestrator journeys graph`), without Kafka.

Counts are checked on decisions made by the real engine through the simulator (the same core as
the worker), so the arrows' numbers are what a customer's path through the definition really was.
The README's and docs/journeys-graph.md's Mermaid blocks are compared with what the command prints.
"""

from __future__ import annotations

import heapq
import os
import random
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.cli import main
from orchestrator.core import Engine, JourneySet, parse_journey, parse_policies
from orchestrator.core.journeyfiles import NODE_NAME, load_journey_file
from orchestrator.core.timeutil import format_ts, parse_ts_ms
from orchestrator.reports.graph import (END, ENTRY, EXIT_RULES, GOAL, HANDLED_NODE_TYPES, _mermaid_id, count_decisions,
                                        iter_node_types, picture, to_dot, to_mermaid)
from orchestrator.simulate import Simulation

ROOT = Path(__file__).resolve().parents[3]
CHANNELS = ("email", "sms", "push", "inapp", "web", "ads")
EXAMPLES = sorted((ROOT / "journeys").glob("*.yaml"))
MERMAID_BLOCK = re.compile(r"```mermaid\n(.*?)```", re.S)
T0 = parse_ts_ms("2026-11-23T09:00:00Z")
assert T0 is not None

POLICIES = parse_policies("""
channels: [email, sms, push, inapp, web, ads]
consent: {sms: opt_in}
global_holdout: 0%
""", "test-policies.yaml")

# Every kind of node and every arrow label: branch conditions (with characters Mermaid and DOT
# must escape), an else, a split with weights that are not percentages, wait, wait_for, a send
# without next (the end box), an exit node, and a node nothing leads to.
PATHS_YAML = """
journey: paths
version: 2
entry: {on: cart.updated, if: event.properties.value >= 50, reentry: 7d}
holdout: 0%
goal: {on: order.completed, suppress: [sms]}
exit: {on: [account.closed, account.frozen], max_touches: 3, max_duration: 14d}
start: pause
nodes:
  pause: {wait: 1h, next: choose}
  choose:
    branch:
      - {if: 'profile.tier == "gold" and event.properties.note != "<a|b>#"', next: sms_offer}
      - {next: email}
  email: {send: email, template: cart-1, next: opened}
  opened: {wait_for: message.opened, timeout: 24h, on_event: done, on_timeout: push}
  push: {send: best, channels: [push, sms], template: cart-2, next: done}
  sms_offer: {send: sms, template: gold-offer}
  done: {exit: completed}
  ab: {split: [{weight: 1, next: email}, {weight: 3, next: push}]}
"""


def paths_journey() -> Any:
    return parse_journey(PATHS_YAML, "paths.yaml", channels=CHANNELS)


def ev(cid: str, etype: str, at_ms: int, n: int, **props: Any) -> bytes:
    return orjson.dumps({"event_id": f"e-{cid}-{n}", "customer_id": cid, "type": etype, "ts": at_ms,
                         "properties": props})


def simulate(journey: Any, events: list[tuple[int, bytes]], *, react: Any = None,
             until_ms: int | None = None) -> list[dict[str, Any]]:
    """Decisions of a simulated run. ``react(record, push)`` may schedule more events (feedback)."""
    sim = Simulation(Engine(JourneySet([journey]), POLICIES))
    queue = [(at, i, raw) for i, (at, raw) in enumerate(events)]
    heapq.heapify(queue)
    seq = len(queue)
    decisions: list[dict[str, Any]] = []

    def push(at: int, raw: bytes) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(queue, (at, seq, raw))

    def collect(records: Any) -> None:
        for record in records:
            if record["topic"] == "decisions":
                decisions.append(record["value"])
            if react is not None:
                react(record, push)

    while True:     # events and timers in time order, so feedback pushed by `react` is fed in turn
        next_event = queue[0][0] if queue else None
        next_timer = sim.next_due_ms()
        if next_timer is not None and (next_event is None or next_timer < next_event) and (
                until_ms is None or next_timer <= until_ms):
            collect(sim.advance(next_timer))
        elif next_event is not None:
            _, n, raw = heapq.heappop(queue)
            collect(sim.feed(raw, n))
        else:
            return decisions


def paths_run() -> list[dict[str, Any]]:
    """Six customers, each down a different way of the `paths` journey."""
    H = 3_600_000
    events = [
        (T0, ev("gold", "profile.updated", T0, 0, tier="gold", consent={"sms": True})),
        (T0 + 1, ev("gold", "cart.updated", T0 + 1, 1, value=80)),           # pause, choose, sms_offer, end
        (T0, ev("nosms", "profile.updated", T0, 0, tier="gold")),
        (T0 + 1, ev("nosms", "cart.updated", T0 + 1, 1, value=80)),          # sms_offer: no_consent, end
        (T0 + 2, ev("opens", "cart.updated", T0 + 2, 1, value=60)),          # email, opened, done
        (T0 + 3, ev("silent", "cart.updated", T0 + 3, 1, value=60)),         # email, timeout, push, done
        (T0 + 4, ev("buyer", "cart.updated", T0 + 4, 1, value=60)),          # goal while in pause
        (T0 + H // 2, ev("buyer", "order.completed", T0 + H // 2, 2)),
        (T0 + 5, ev("small", "cart.updated", T0 + 5, 1, value=10)),          # not entered (entry.if)
        (T0 + 10 * H, ev("waiting", "cart.updated", T0 + 10 * H, 1, value=70)),  # in `opened` at the end
    ]

    def react(record: dict[str, Any], push: Any) -> None:
        value = record["value"]
        if record["topic"] == "actions.email" and value["customer_id"] == "opens":
            at = parse_ts_ms(value["decided_at"]) + H
            push(at, ev("opens", "message.opened", at, 3, action_id=value["action_id"], channel="email"))

    return simulate(paths_journey(), events, react=react, until_ms=T0 + 26 * H)


# ---------------------------------------------------------------------------- the picture
def test_every_node_kind_of_the_language_is_drawn_explicitly():
    assert set(iter_node_types()) == set(HANDLED_NODE_TYPES), (
        "a node kind was added to orchestrator/core/journeys.py: draw it in orchestrator/reports/graph.py")


def test_picture_shows_nodes_edges_conditions_weights_waits_and_annotations():
    text = to_dot(picture(paths_journey()))
    for needle in ("paths v2\\nentry on cart.updated\\nif event.properties.value >= 50\\nreentry after 7d",
                   '"pause" [shape=box, style="rounded", label="pause\\nwait 1h"]',
                   '"opened" [shape=hexagon, label="opened\\nwait for message.opened\\ntimeout 1d"]',
                   'label="push\\nsend best of push, sms\\ntemplate cart-2"',
                   'label="sms_offer\\nsend sms\\ntemplate gold-offer"',
                   'label="done\\nexit: completed"',
                   'label="ab\\nsplit\\n(unreachable)"',
                   'label="goal on order.completed\\nsuppress sms"',
                   'label="exit on account.closed or account.frozen\\nat most 3 touches\\nat most 14d in the journey"',
                   '"<entry>" -> "pause";',
                   '"choose" -> "sms_offer" [label="if profile.tier == \\"gold\\" and '
                   'event.properties.note != \\"<a|b>#\\""];',
                   '"choose" -> "email" [label="else"];',
                   '"opened" -> "done" [label="message.opened"];',
                   '"opened" -> "push" [label="timeout 1d"];',
                   '"ab" -> "email" [label="25%"];', '"ab" -> "push" [label="75%"];',
                   '"sms_offer" -> "<end>";', 'label="end: completed"'):
        assert needle in text, needle


V2_YAML = """
journey: v2
entry: {on: [cart.updated, checkout.started], max_entries: 3}
exit: {if: profile.plan == "enterprise"}
start: morning
nodes:
  morning: {wait_until: "09:00", days: [mon, tue, wed, thu, fri], next: offer}
  offer:
    send: email
    template: offer-1
    window: {days: [mon, tue, wed, thu, fri], from: "09:00", to: "18:00"}
    exempt: [frequency, quiet_hours]
    next: night
  night: {wait_until: "22:30", next: receipt}
  receipt: {send: sms, template: r, window: {days: [sat, sun]}}
"""


def test_picture_shows_the_journey_language_v2():
    j = parse_journey(V2_YAML, "v2.yaml", channels=CHANNELS)
    text = to_dot(picture(j))
    for needle in ('label="v2 v1\\nentry on cart.updated or checkout.started\\nat most 3 entries"',
                   '"morning" [shape=box, style="rounded", label="morning\\nwait until 09:00 mon-fri"]',
                   'label="offer\\nsend email\\ntemplate offer-1\\nwindow mon-fri 09:00-18:00\\n'
                   'exempt from frequency, quiet_hours"',
                   'label="night\\nwait until 22:30"',
                   'label="receipt\\nsend sms\\ntemplate r\\nwindow sat, sun"',
                   'label="exit if profile.plan == \\"enterprise\\""',
                   '"morning" -> "offer";', '"offer" -> "night";', '"night" -> "receipt";'):
        assert needle in text, needle


def test_counts_through_wait_until_and_a_window_deferral():
    j = parse_journey(V2_YAML, "v2.yaml", channels=CHANNELS)
    saturday = parse_ts_ms("2026-03-14T12:00:00Z")
    events = [(saturday, ev("w", "profile.updated", saturday, 0, consent={"sms": True})),
              (saturday + 1, ev("w", "cart.updated", saturday + 1, 1))]
    decisions = simulate(j, events, until_ms=saturday + 8 * 86_400_000)
    assert [(d["node"], d["outcome"]) for d in decisions] == [
        ("morning", "entered"), ("offer", "sent"), ("receipt", "window_deferred"), ("receipt", "sent"),
        ("receipt", "exited")]
    counts = count_decisions(j, decisions)
    assert counts.unexplained == 0 and counts.unknown_nodes == 0
    assert counts.edges == {(ENTRY, 0): 1, ("morning", 0): 1, ("offer", 0): 1, ("night", 0): 1, ("receipt", 0): 1}
    assert counts.nodes["receipt"] == {"window_deferred": 1, "sent": 1, "exited completed": 1}


def test_mermaid_escapes_what_would_break_a_label():
    text = to_mermaid(picture(paths_journey()))
    assert ('n_choose -->|"if profile.tier == #quot;gold#quot; and event.properties.note != '
            '#quot;#lt;a#124;b#gt;#35;#quot;"| n_sms_offer') in text
    for line in text.splitlines():
        assert "<" not in line.replace("<br/>", ""), line       # only the line breaks are HTML
    assert text.splitlines()[0] == "%% journey paths v2: orchestrator journeys graph paths --format mermaid"
    assert "flowchart TD" in text and "n_sms_offer --> end_" in text


MERMAID_NODE = re.compile(r"    ([A-Za-z0-9_]+)[\[({>]")
MERMAID_ARROW = re.compile(r"    ([A-Za-z0-9_]+) -->(?:\|[^|]*\|)? ([A-Za-z0-9_]+)$")


def test_mermaid_gives_every_node_its_own_id_even_names_that_spell_an_escape():
    """``a-b`` was written ``n_a_2d_b``, the id of a node named ``a_2d_b``: one box lost and a
    false loop drawn. Every box must keep an id of its own, and every arrow its two ends."""
    j = parse_journey("""
journey: ids
entry: {on: cart.updated}
start: a-b
nodes:
  a-b: {send: email, template: t, next: a_2d_b}
  a_2d_b: {wait: 1h, next: a__b}
  a__b: {wait: 1h, next: a_b}
  a_b: {exit: completed}
""", "ids.yaml", channels=CHANNELS)
    p = picture(j)
    text = to_mermaid(p)
    ids = [m.group(1) for line in text.splitlines() if (m := MERMAID_NODE.match(line))]
    assert len(ids) == len(set(ids)) == len(p.boxes), text
    name_of = dict(zip(ids, (b.name for b in p.boxes)))
    arrows = [(name_of[m.group(1)], name_of[m.group(2)]) for line in text.splitlines()
              if (m := MERMAID_ARROW.match(line))]
    assert arrows == [(a.src, a.dst) for a in p.arrows]
    assert ("a-b", "a_2d_b") in arrows and all(src != dst for src, dst in arrows)
    dot = to_dot(p)
    assert '"a-b" -> "a_2d_b";' in dot                      # as DOT draws it


@given(st.lists(st.from_regex(NODE_NAME, fullmatch=True), unique=True, min_size=2, max_size=8))
@settings(max_examples=300, deadline=None)
def test_distinct_node_names_get_distinct_mermaid_ids(names):
    ids = [_mermaid_id(n) for n in [*names, ENTRY, END, GOAL, EXIT_RULES]]
    assert len(set(ids)) == len(ids), list(zip([*names, ENTRY, END, GOAL, EXIT_RULES], ids))
    assert all(re.fullmatch(r"[A-Za-z0-9_]+", i) for i in ids)


def dot_binary() -> str:
    path = shutil.which("dot")
    if path is None:
        pytest.fail("Graphviz's dot is not on PATH: `make test` installs it (Debian package graphviz); or "
                    "`apt-get install --no-install-recommends graphviz` yourself", pytrace=False)
    return path


def svg_graph(dot_text: str) -> tuple[set[str], set[tuple[str, str]], str]:
    """(node titles, edges, all text) of the SVG that Graphviz draws from ``dot_text``."""
    proc = subprocess.run([dot_binary(), "-Tsvg"], input=dot_text.encode(), capture_output=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr.decode()
    root = ET.fromstring(proc.stdout)
    ns = "{http://www.w3.org/2000/svg}"
    nodes, edges = set(), set()
    for g in root.iter(f"{ns}g"):
        title = g.find(f"{ns}title")
        if g.get("class") == "node":
            nodes.add(title.text)
        elif g.get("class") == "edge":
            src, dst = title.text.split("->")
            edges.add((src, dst))
    texts = " ".join(t.text or "" for t in root.iter(f"{ns}text"))
    return nodes, edges, texts


@pytest.mark.parametrize("path", [*EXAMPLES, "paths"], ids=lambda p: getattr(p, "stem", p))
def test_graphviz_draws_every_node_and_arrow(path):
    j = paths_journey() if path == "paths" else load_journey_file(path, channels=CHANNELS)
    p = picture(j)
    nodes, edges, _ = svg_graph(to_dot(p))
    assert nodes == {b.name for b in p.boxes}
    assert edges == {(a.src, a.dst) for a in p.arrows}
    assert set(j.nodes) | {ENTRY} <= nodes


# ---------------------------------------------------------------------------- counts
def test_counts_follow_each_customer_through_the_definition():
    decisions = paths_run()
    counts = count_decisions(paths_journey(), decisions)
    assert counts.entered == {"treatment": 6}
    assert counts.nodes == {
        "sms_offer": {"sent": 1, "no_consent": 1, "exited completed": 2},
        "email": {"sent": 3},
        "push": {"sent": 1},
        "done": {"exited completed": 2},
        "pause": {"goal": 1},
    }
    assert counts.channels == {"sms_offer": {"sms": 1}, "email": {"email": 3}, "push": {"push": 1}}
    assert counts.goals == {"treatment": 1}
    assert counts.edges == {
        (ENTRY, 0): 6,
        ("pause", 0): 5,                 # all but the buyer, who converted while waiting
        ("choose", 0): 2, ("choose", 1): 3,
        ("sms_offer", 0): 2,             # a send without next: to the end box
        ("email", 0): 3,                 # into `opened`, including the customer still waiting there
        ("opened", 0): 1, ("opened", 1): 1,
        ("push", 0): 1,
    }
    assert counts.uncertain == set() and counts.unknown_nodes == 0 and counts.unexplained == 0
    assert counts.decisions == len(decisions)

    text = to_mermaid(picture(paths_journey()), counts)
    assert 'n_choose -->|"else: 3"| n_email' in text
    assert 'n_opened -->|"timeout 1d: 1"| n_push' in text
    assert 'n_sms_offer["sms_offer<br/>send sms<br/>template gold-offer<br/>sent 1, no_consent 1, exited completed 2"]' \
        in text
    assert "entered 6" in text and "goals 1" in text and 'n_ab -->|"25%: 0"| n_email' in text
    assert text.splitlines()[1] == f"%% counts of paths v2: {len(decisions)} decisions, all retained decisions"
    nodes, _, texts = svg_graph(to_dot(picture(paths_journey()), counts))
    assert "sent 1, no_consent 1, exited completed 2" in texts and "penwidth" in to_dot(picture(paths_journey()), counts)


def test_counts_of_a_time_span_keep_the_paths_of_earlier_entries():
    decisions = paths_run()
    # From 1 h 30 min on: the first entries and their first wait are before; the latecomer's entry,
    # and the timeout of an email sent before the span, are inside.
    since = T0 + 90 * 60_000
    counts = count_decisions(paths_journey(), decisions, since_ms=since)
    assert counts.entered == {"treatment": 1} and counts.edges[(ENTRY, 0)] == 1
    assert counts.edges[("opened", 1)] == 1 and counts.nodes["push"] == {"sent": 1}
    assert counts.decisions == sum(1 for d in decisions if parse_ts_ms(d["ts"]) >= since)
    # Until 31 min: only the first five entries and the buyer's goal.
    early = count_decisions(paths_journey(), decisions, until_ms=T0 + 31 * 60_000)
    assert early.entered == {"treatment": 5} and early.nodes == {"pause": {"goal": 1}}
    assert set(early.edges) == {(ENTRY, 0)}
    assert f"from {format_ts(since)} to now" in to_dot(picture(paths_journey()), counts)


def test_arrows_no_decision_can_tell_apart_are_lower_bounds():
    j = parse_journey("""
journey: twins
entry: {on: go}
start: pick
nodes:
  pick: {split: [{weight: 1, next: w1}, {weight: 1, next: w2}]}
  w1: {wait: 1m, next: mail}
  w2: {wait: 2m, next: mail}
  mail: {send: email, template: t, next: done}
  done: {exit: completed}
""", "twins.yaml", channels=CHANNELS)
    events = [(T0 + i, ev(f"c{i}", "go", T0 + i, 0)) for i in range(20)]
    counts = count_decisions(j, simulate(j, events, until_ms=T0 + 3_600_000))
    assert counts.nodes["mail"] == {"sent": 20}
    assert {("pick", 0), ("pick", 1), ("w1", 0), ("w2", 0)} <= counts.uncertain
    assert counts.edges[("mail", 0)] == 20 and ("mail", 0) not in counts.uncertain
    assert '"pick" -> "w1" [label="50%: ≥ 0"' in to_dot(picture(j), counts)


def test_decisions_of_other_versions_shadows_and_unknown_nodes():
    decisions = paths_run()
    other = [{**d, "journey_version": 1} for d in decisions]
    shadow = [{**d, "shadow": True} for d in decisions]
    renamed = [{**decisions[1], "node": "gone"}]
    counts = count_decisions(paths_journey(), other + shadow + renamed)
    assert counts.decisions == 1 and counts.unknown_nodes == 1 and counts.edges == {}
    assert "1 name nodes not in this definition" in to_mermaid(picture(paths_journey()), counts)


# ---------------------------------------------------------------------------- the command
def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_finds_a_journey_by_id_or_file(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("ORCH_JOURNEYS", raising=False)
    code, by_id, _ = run_cli(capsys, "journeys", "graph", "cart-recovery")
    assert code == 0
    code, by_file, _ = run_cli(capsys, "journeys", "graph", "journeys/cart-recovery.yaml", "--format", "mermaid")
    assert code == 0 and by_file == by_id == to_mermaid(picture(
        load_journey_file(ROOT / "journeys" / "cart-recovery.yaml", channels=CHANNELS)))
    code, dot_text, _ = run_cli(capsys, "journeys", "graph", "welcome", "--format", "dot")
    assert code == 0 and dot_text.startswith("// journey welcome v2")


def test_cli_takes_the_highest_version_and_reports_broken_files(capsys, tmp_path):
    for version in (1, 3, 2):
        (tmp_path / f"paths-{version}.yaml").write_text(PATHS_YAML.replace("version: 2", f"version: {version}"))
    (tmp_path / "broken.yaml").write_text("journey: paths\nversion: 4\nentry: {on: x}\nstart: nope\nnodes: {}\n")
    code, out, err = run_cli(capsys, "journeys", "graph", "paths", "--journeys", str(tmp_path))
    assert code == 0 and out.startswith("%% journey paths v3")
    assert f"{tmp_path / 'broken.yaml'}:" in err
    code, _, err = run_cli(capsys, "journeys", "graph", "nosuch", "--journeys", str(tmp_path))
    assert code == 1 and "no journey 'nosuch'" in err and "(journeys there: paths)" in err


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The command refuses its options as argparse refuses a bad one (exit code 2), with one sentence
    on standard error and nothing on standard output; that sentence."""
    with pytest.raises(SystemExit) as refused:
        main(list(argv))
    out, err = capsys.readouterr()
    assert refused.value.code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_cli_refuses_a_span_without_stats_and_a_bad_time(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert usage_error(capsys, "journeys", "graph", "welcome", "--from", "24h") == \
        "error: --from and --to choose the span of the counts: add --stats"
    assert "'yesterday' is not a time" in usage_error(capsys, "journeys", "graph", "welcome", "--stats",
                                                        "--from", "yesterday")


def test_cli_refuses_a_span_that_starts_in_the_future_or_after_its_end(capsys, monkeypatch):
    """Without --to the span ends now, so a --from in the future counts nothing: refused before
    Kafka is asked anything (no broker listens at ORCH_BOOTSTRAP here)."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("ORCH_BOOTSTRAP", "127.0.0.1:1")
    line = usage_error(capsys, "journeys", "graph", "welcome", "--stats", "--from", "2099-01-01")
    assert line.startswith("error: --from 2099-01-01 (2099-01-01T00:00:00.000Z) is not before now (")
    line = usage_error(capsys, "journeys", "graph", "welcome", "--stats", "--from", "2026-03-02", "--to", "2026-03-01")
    assert line == ("error: --from 2026-03-02 (2026-03-02T00:00:00.000Z) is not before --to 2026-03-01 "
                    "(2026-03-01T00:00:00.000Z); give the earlier time with --from")
    assert "is later than now" in usage_error(capsys, "journeys", "graph", "welcome", "--stats", "--from", "7d",
                                              "--to", "2099-01-01")


def test_cli_writes_svg_and_png_through_graphviz(tmp_path, monkeypatch, capsys):
    dot_binary()
    monkeypatch.chdir(ROOT)
    svg, png = tmp_path / "cart.svg", tmp_path / "cart.png"
    assert run_cli(capsys, "journeys", "graph", "cart-recovery", "--format", "svg", "-o", str(svg))[0] == 0
    assert run_cli(capsys, "journeys", "graph", "cart-recovery", "--format", "png", "-o", str(png))[0] == 0
    titles = {g.find("{http://www.w3.org/2000/svg}title").text for g in ET.parse(svg).getroot().iter(
        "{http://www.w3.org/2000/svg}g") if g.get("class") == "node"}
    assert {"wait_1h", "choose", "email_reminder", "wait_open", "push_reminder", "sms_offer", "done"} <= titles
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_dot_svg_is_one_sentence_saying_to_install_graphviz(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}           # an empty folder: no dot to be found
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "journeys", "graph", "welcome",
                           "--format", "svg"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "install the graphviz package" in lines[0], proc.stderr


# ---------------------------------------------------------------------------- pictures in the docs
def mermaid_blocks(path: Path) -> dict[str, str]:
    """Journey id -> the Mermaid block of a Markdown file (found by its first comment line)."""
    out = {}
    for block in MERMAID_BLOCK.findall(path.read_text(encoding="utf-8")):
        if "%% counts of" in block:
            continue                # a picture with counts: test_the_counted_picture_in_the_doc...
        m = re.match(r"%% journey ([a-z0-9-]+) v\d+", block)
        assert m, f"{path.name}: a mermaid block without its `%% journey` line:\n{block}"
        assert m.group(1) not in out, f"{path.name}: two pictures of {m.group(1)}"
        out[m.group(1)] = block
    return out


def example_pictures(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    out = {}
    for path in EXAMPLES:
        code, text, _ = run_cli(capsys, "journeys", "graph", str(path), "--format", "mermaid")
        assert code == 0
        out[load_journey_file(path, channels=CHANNELS).id] = text
    return out


@pytest.mark.parametrize("doc", ["README.md", "docs/journeys-graph.md"])
def test_the_docs_show_every_example_journey_as_the_command_draws_it(doc, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    blocks = mermaid_blocks(ROOT / doc)
    expected = example_pictures(capsys)
    assert set(blocks) == set(expected), f"{doc} shows {sorted(blocks)}; journeys/ has {sorted(expected)}"
    for jid, text in expected.items():
        assert blocks[jid] == text, (f"{doc}: the picture of {jid} is stale; replace its block with the output "
                                     f"of `orchestrator journeys graph {jid}`:\n{text}")


def cart_recovery_week() -> tuple[Any, list[dict[str, Any]]]:
    """cart-recovery over 200 simulated shoppers (seeded): the run behind the doc's counted picture."""
    j = load_journey_file(ROOT / "journeys" / "cart-recovery.yaml", channels=CHANNELS)
    policies_text = (ROOT / "policies.yaml").read_text()
    rng = random.Random(16)
    events: list[tuple[int, bytes]] = []
    for i in range(200):
        cid, at = f"shopper-{i}", T0 + i * 420_000          # over a day: some sends meet quiet hours
        events.append((at, ev(cid, "profile.updated", at, 0, timezone="Europe/Paris",
                              ltv_tier="gold" if rng.random() < 0.2 else "basic",
                              consent={"sms": rng.random() < 0.6})))
        if rng.random() < 0.5:                                  # opened an earlier newsletter
            events.append((at + 500, ev(cid, "message.opened", at + 500, 4, action_id=f"a-news-{i}",
                                        channel="email")))
        events.append((at + 1000, ev(cid, "cart.updated", at + 1000, 1, value=rng.choice([20, 40, 60, 90, 150]))))
        if rng.random() < 0.25:
            buy = at + rng.randint(10, 180) * 60_000
            events.append((buy, ev(cid, "order.completed", buy, 2, total=99)))
    opener = random.Random(7)

    def react(record: dict[str, Any], push: Any) -> None:
        value = record["value"]
        if record["topic"] == "actions.email" and opener.random() < 0.4:
            at = parse_ts_ms(value["decided_at"]) + 3 * 3_600_000
            push(at, ev(value["customer_id"], "message.opened", at, 3, action_id=value["action_id"],
                        channel="email"))

    global POLICIES
    saved, POLICIES = POLICIES, parse_policies(policies_text, "policies.yaml")
    try:
        return j, simulate(j, events, react=react, until_ms=T0 + 3 * 86_400_000)
    finally:
        POLICIES = saved


def test_the_counted_picture_in_the_doc_is_what_the_engine_decided():
    j, decisions = cart_recovery_week()
    counts = count_decisions(j, decisions)
    assert counts.unexplained == 0 and counts.unknown_nodes == 0
    text = to_mermaid(picture(j), counts)
    blocks = [b for b in MERMAID_BLOCK.findall((ROOT / "docs" / "journeys-graph.md").read_text()) if "%% counts of" in b]
    assert blocks == [text], ("docs/journeys-graph.md: the counted picture is stale; replace it with:\n" + text)
