"""``orchestrator journeys winner`` without Kafka: the statistics per split arm, the test, and the next
version's text (orchestrator/admin/winner.py). Decisions come from the real engine (simulate);
tests/integration/test_winner.py runs the command on a real worker's decisions."""

from __future__ import annotations

import difflib
import math
from typing import Any

import orjson
import pytest

from orchestrator.admin.winner import find_split, next_version, render_report, winner
from orchestrator.core import Engine, JourneySet, Policies, parse_journey
from orchestrator.reports import stats
from orchestrator.core.ids import bucket
from orchestrator.core.timeutil import parse_ts_ms
from orchestrator.errors import ConfigError
from orchestrator.simulate import Simulation
from tests.unit.core.helpers import CHANNELS

T0 = parse_ts_ms("2026-03-10T10:00:00Z")
assert T0 is not None

AB = """\
# Which reminder works better?
journey: ab
version: 4              # bump on every change
entry: {on: cart.updated}
goal: {on: order.completed}
start: ab
nodes:
  ab:                   # the experiment
    split:
      - {weight: 50, next: mail}
      - {weight: 50, next: push}
  mail: {send: email, template: ab-mail, next: wait}
  push: {send: push, template: ab-push, next: wait}
  wait: {wait: 2d, next: done}
  done: {exit: completed}
"""


def parse(text: str, filename: str = "ab.yaml") -> Any:
    return parse_journey(text, filename, channels=CHANNELS)


def run(text: str, customers: int, convert: dict[str, float], *, seed: int = 0,
        policies: Policies | None = None) -> list[dict[str, Any]]:
    """Decisions of a simulated run: each customer enters; a customer converts with the chance of
    the template they were sent (decided by a hash of the customer, not by a random generator)."""
    sim = Simulation(Engine(JourneySet([parse(text)]), policies or Policies()))
    decisions: list[dict[str, Any]] = []
    line = 0
    for i in range(customers):
        cid = f"c{seed}-{i}"
        line += 1
        for r in sim.feed(orjson.dumps({"event_id": f"e-{cid}", "customer_id": cid, "type": "cart.updated",
                                        "ts": T0 + i * 1000}), line):
            if r["topic"] == "decisions":
                decisions.append(r["value"])
            elif r["topic"].startswith("actions."):
                template = r["value"]["template"]
                if bucket("converts", cid) < convert.get(template, 0.0):
                    line += 1
                    for g in sim.feed(orjson.dumps({"event_id": f"g-{cid}", "customer_id": cid,
                                                    "type": "order.completed", "ts": T0 + i * 1000 + 1}), line):
                        if g["topic"] == "decisions":
                            decisions.append(g["value"])
    return decisions


# ---------------------------------------------------------------------------- arms
def test_an_arm_that_converts_better_wins_and_the_next_version_replaces_the_split() -> None:
    j = parse(AB)
    decisions = run(AB, 400, {"ab-mail": 0.10, "ab-push": 0.40})
    report, text = winner(j, AB, decisions, channels=CHANNELS)
    mail, push = report["arms"]
    assert (mail["next"], push["next"]) == ("mail", "push")
    assert mail["entries"] + push["entries"] == 400 and min(mail["entries"], push["entries"]) > 150
    # the goals per arm are what the engine's own split gave each customer
    sent = {d["customer_id"]: d["node"] for d in decisions if d["outcome"] == "sent"}
    goals = {d["customer_id"] for d in decisions if d["outcome"] == "goal"}
    assert push["goals"] == sum(1 for c in goals if sent[c] == "push")
    assert mail["goals"] == sum(1 for c in goals if sent[c] == "mail")
    assert push["rate"] > 0.3 > 0.15 > mail["rate"]
    assert report["winner"] == 1 and report["leader"] == 1
    assert report["comparisons"][0]["significant"] and report["comparisons"][0]["p_value"] < 0.001
    assert report["next_version"] == {"version": 5, "replaces": "ab", "by": "push", "comments_kept": True}
    # the diff is the decision: the version, the start, the split's lines; comments kept
    diff = [line for line in difflib.unified_diff(AB.splitlines(), text.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert diff == ["-version: 4              # bump on every change", "+version: 5              # bump on every change",
                    "-start: ab", "+start: push",
                    "-  ab:                   # the experiment", "-    split:",
                    "-      - {weight: 50, next: mail}", "-      - {weight: 50, next: push}"]
    nj = parse(text)
    assert (nj.version, nj.start, sorted(nj.nodes)) == (5, "push", ["done", "mail", "push", "wait"])
    assert nj.warnings and "'mail' is never reached" in nj.warnings[0]
    assert "winner: arm 1 (push) beats every other arm at 95% confidence" in render_report(report)


def test_without_a_significant_difference_it_says_who_leads_and_how_many_more_entries() -> None:
    j = parse(AB)
    report, text = winner(j, AB, run(AB, 200, {"ab-mail": 0.10, "ab-push": 0.15}), channels=CHANNELS)
    assert text is None and report["winner"] is None and report["leader"] == 1
    assert report["comparisons"][0]["approximation_holds"] and report["comparisons"][0]["test"] == "z"
    more = report["more_entries"]
    mail, push = report["arms"]
    need = stats.entries_per_arm(push["rate"], mail["rate"], 0.05)
    assert more["per_arm"] == need and more["by_arm"] == {"1": need - push["entries"], "0": need - mail["entries"]}
    assert more["journey_total"] == round(max(more["by_arm"].values()) / 0.5)
    out = render_report(report)
    assert "no winner: arm 1 (push) leads, not yet significantly at 95%" in out
    assert f"about {max(more['by_arm'].values()):,} more entries per arm" in out
    assert "not significant by the z-test" in out


def test_equal_arms_and_arms_without_entries() -> None:
    j = parse(AB)
    report, _ = winner(j, AB, run(AB, 40, {}), channels=CHANNELS)
    assert report["winner"] is None and report["more_entries"] is None
    assert report["verdict"].startswith("no arm leads: all convert at 0.00%")
    report, _ = winner(j, AB, [], channels=CHANNELS)
    assert report["leader"] is None and "not every arm has entries yet (0, 0)" in report["verdict"]


def test_a_higher_confidence_asks_for_more() -> None:
    j = parse(AB)
    decisions = run(AB, 200, {"ab-mail": 0.10, "ab-push": 0.25})
    at95, _ = winner(j, AB, decisions, confidence=0.95, channels=CHANNELS)
    at9999, _ = winner(j, AB, decisions, confidence=0.9999, channels=CHANNELS)
    p = at95["comparisons"][0]["p_value"]
    assert 0.0001 < p < 0.05, p                    # this run: significant at 95%, not at 99.99%
    assert at95["winner"] == 1 and at9999["winner"] is None


def test_three_arms_share_the_confidence_and_the_leader_must_beat_both() -> None:
    three = AB.replace("      - {weight: 50, next: push}",
                       "      - {weight: 50, next: push}\n      - {weight: 50, next: inapp}") \
        .replace("  wait: {wait", "  inapp: {send: inapp, template: ab-inapp, next: wait}\n  wait: {wait")
    j = parse(three)
    report, text = winner(j, three, run(three, 600, {"ab-mail": 0.10, "ab-push": 0.40, "ab-inapp": 0.35}),
                          channels=CHANNELS)
    assert report["alpha"] == pytest.approx(0.025)
    assert report["leader"] == 1 and report["winner"] is None      # push does not beat inapp
    assert [c["significant"] for c in report["comparisons"]] == [True, False]
    report, text = winner(j, three, run(three, 600, {"ab-mail": 0.10, "ab-push": 0.40, "ab-inapp": 0.05}),
                          channels=CHANNELS)
    assert report["winner"] == 1 and "start: push" in text


def test_held_out_customers_are_the_baseline_not_an_arm() -> None:
    held = AB.replace("start: ab", "holdout: 50%\nstart: ab")
    j = parse(held)
    report, _ = winner(j, held, run(held, 200, {"ab-mail": 0.5, "ab-push": 0.5}), channels=CHANNELS)
    h = report["holdout"]
    assert h["entries"] > 50 and h["goals"] == 0                   # never contacted, never converted here
    assert sum(a["entries"] for a in report["arms"]) + h["entries"] == 200
    assert "holdout  (not contacted)" in render_report(report)


def test_which_split() -> None:
    j = parse(AB)
    assert find_split(j, None).name == "ab"
    with pytest.raises(ConfigError, match="no split node 'nope'"):
        find_split(j, "nope")
    two = AB.replace("  mail: {send: email, template: ab-mail, next: wait}",
                     "  mail: {send: email, template: ab-mail, next: again}\n"
                     "  again: {split: [{weight: 1, next: wait}, {weight: 1, next: done}]}")
    with pytest.raises(ConfigError, match="has 2 splits .*--split NODE"):
        find_split(parse(two), None)
    assert find_split(parse(two), "again").name == "again"
    with pytest.raises(ConfigError, match="no split that customers reach"):
        find_split(parse(AB.replace("start: ab", "start: mail")), None)


# ---------------------------------------------------------------------------- the next version's text
def test_every_reference_to_the_split_is_pointed_at_the_winner() -> None:
    text = """\
journey: refs
entry: {on: cart.updated}
start: first
nodes:
  first: {wait: 1h, next: check}
  check:
    branch:
      - {if: profile.vip, next: pick}
      - {next: done}
  listen: {wait_for: message.opened, timeout: 1d, on_event: pick, on_timeout: 'pick'}
  pick: {split: [{weight: 1, next: a}, {weight: 1, next: b}]}   # the experiment
  a: {send: email, template: a, next: listen}
  b: {send: push, template: b, next: later}
  later: {wait: 1d, next: pick}
  done: {exit: completed}
"""
    j = parse(text, "refs.yaml")
    new, kept = next_version(text, "refs.yaml", j, "pick", "b", channels=CHANNELS)
    assert kept
    nj = parse(new, "refs.yaml")
    assert nj.version == 2 and "pick" not in nj.nodes
    assert nj.nodes["check"].cases[0][1] == "b" and nj.nodes["later"].next == "b"
    assert (nj.nodes["listen"].on_event, nj.nodes["listen"].on_timeout) == ("b", "b")
    assert new.splitlines()[:2] == ["journey: refs", "version: 2"]          # inserted after the id
    assert "# the experiment" not in new and new.count("\n") == text.count("\n")


def test_a_layout_the_text_edit_cannot_handle_is_written_out_anew() -> None:
    text = """\
journey: flow   # a comment
version: 1
entry: {on: cart.updated}
start: pick
nodes: {pick: {split: [{weight: 1, next: a}, {weight: 1, next: b}]}, a: {send: email, template: a},
        b: {send: push, template: b}}
"""
    j = parse(text, "flow.yaml")
    new, kept = next_version(text, "flow.yaml", j, "pick", "a", channels=CHANNELS)
    assert not kept
    nj = parse(new, "flow.yaml")
    assert (nj.version, nj.start, sorted(nj.nodes)) == (2, "a", ["a", "b"])
    assert nj.entry_on == j.entry_on


def test_the_report_is_json() -> None:
    report, text = winner(parse(AB), AB, run(AB, 400, {"ab-mail": 0.10, "ab-push": 0.40}), channels=CHANNELS)
    data = orjson.loads(orjson.dumps(report))
    assert data["winner"] == 1 and data["arms"][1]["ci"][0] < data["arms"][1]["rate"] < data["arms"][1]["ci"][1]
    assert not any(isinstance(v, float) and math.isnan(v) for a in data["arms"] for v in a.values())


# ---------------------------------------------------------------------------- too few conversions
def arm_decisions(j: Any, counts: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """Decisions giving each arm of the split exactly (entries, goals), for customers whose arm (the
    engine's own hash) is that one."""
    split = find_split(j, None)
    left = [list(c) for c in counts]
    out: list[dict[str, Any]] = []
    i = 0
    while any(n for n, _ in left):
        cid = f"few-{i}"
        i += 1
        arm = split.arm_of(j.id, cid)
        if not left[arm][0]:
            continue
        base = {"customer_id": cid, "journey": j.id, "journey_version": j.version, "ts": "2026-03-10T10:00:00.000Z"}
        out.append({**base, "outcome": "entered", "node": j.start, "detail": "treatment"})
        if left[arm][1]:
            out.append({**base, "outcome": "goal", "node": "wait", "detail": "goal"})
            left[arm][1] -= 1
        left[arm][0] -= 1
    return out


def test_too_few_expected_conversions_use_fishers_exact_test_and_say_so() -> None:
    """17 entries with 1 goal against 13 with 8: the pooled rate is 9/30, so the smaller arm expects
    13 × 0.30 = 3.9 conversions, too few for the z-test. The report used to say "not significant
    although the arms have the entries 80% power asks for"; Fisher's exact test (p = 0.0016) decides."""
    j = parse(AB)
    report, text = winner(j, AB, arm_decisions(j, [(17, 1), (13, 8)]), channels=CHANNELS)
    assert [(a["entries"], a["goals"]) for a in report["arms"]] == [(17, 1), (13, 8)]
    (c,) = report["comparisons"]
    assert c["test"] == "fisher_exact" and not c["approximation_holds"]
    assert c["p_value"] == pytest.approx(stats.fisher_exact(8, 13, 1, 17)) and c["p_value"] < 0.05
    assert c["fewest_expected"] == {"arm": 1, "entries": 13, "of": "conversions", "rate": pytest.approx(0.3),
                                    "expected": pytest.approx(3.9)}
    assert report["winner"] == 1 and text is not None and "start: push" in text
    out = render_report(report)
    assert "although" not in out
    why = ("too few conversions are expected for the z-test (arm 1: 13 entries × 30.00% pooled rate = 3.9, "
           "fewer than 5)")
    assert f"p = 0.0016, alpha 0.05: significant by Fisher's exact test, as {why}" in out
    assert f"winner: arm 1 (push) beats every other arm at 95% confidence (by Fisher's exact test where {why})" in out


def test_when_the_exact_test_finds_nothing_either_the_report_says_why_and_what_it_takes() -> None:
    """3 of 3 against 0 of 3: the z-test would call it significant (p = 0.014) and the power formula
    asks for only 2 entries per arm; with 1.5 expected conversions per arm neither holds. Fisher's
    exact test says p = 0.1, and the entries the z-test needs are 5 / 0.5 = 10 per arm."""
    j = parse(AB)
    report, text = winner(j, AB, arm_decisions(j, [(3, 0), (3, 3)]), channels=CHANNELS)
    assert report["winner"] is None and text is None
    (c,) = report["comparisons"]
    assert c["test"] == "fisher_exact" and c["p_value"] == pytest.approx(0.1) and not c["significant"]
    assert report["more_entries"] == {"per_arm": 10, "by_arm": {"1": 7, "0": 7}, "journey_total": 14}
    assert report["verdict"] == (
        "arm 1 (push) leads, not significantly at 95% by Fisher's exact test (p = 0.1000 against arm 0 (mail)): "
        "too few conversions are expected for the z-test (each arm: 3 entries × 50.00% pooled rate = 1.5, "
        "fewer than 5); "
        "about 7 more entries per arm (about 14 more treatment entries into the journey) for the z-test to apply "
        "and tell it from arm 0 (mail) with 80% power, if the rates stay as they are")
    report, _ = winner(j, AB, arm_decisions(j, [(20, 19), (20, 20)]), channels=CHANNELS)
    assert "too few non-conversions are expected for the z-test (each arm: 20 entries × 2.50% pooled " \
           "non-conversion rate = 0.5, fewer than 5)" in report["verdict"]
    assert report["more_entries"]["per_arm"] == 200                     # 5 / 0.025


def test_every_report_warns_that_peeking_inflates_false_wins() -> None:
    j = parse(AB)
    for decisions in ([], arm_decisions(j, [(3, 0), (3, 3)]), arm_decisions(j, [(17, 1), (13, 8)])):
        report, _ = winner(j, AB, decisions, channels=CHANNELS)
        assert "(peeking) makes a false win likelier than the confidence says" in report["peeking"]
        assert render_report(report).splitlines()[-1] == f"note: {report['peeking']}"
