"""SPEC §4 journey definitions: the example parses, invalid ones are refused with file:line."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from orchestrator.core import load_journey_dir, load_journey_file, parse_journey
from orchestrator.core.events import Event
from orchestrator.core.expressions import compile_expression
from orchestrator.core.journeys import (REENTRY_ALWAYS, REENTRY_NEVER, BranchNode, ExitNode, SendNode, SplitNode,
                                        WaitForNode, WaitNode, WaitUntilNode)
from orchestrator.core.localtime import Window
from orchestrator.core.namespaces import (ACTIVITY_FIELDS, ENGAGEMENT_FIELDS, EVENT_FIELDS, JOURNEY_FIELDS,
                                          SESSION_FIELDS, Namespaces, field_problem)
from orchestrator.core.state import Activity, CustomerState, Engagement, Instance, Session
from orchestrator.core.yamlsrc import load as load_yaml
from orchestrator.errors import DefinitionError
from tests.repo.test_reference_docs import unresolved_sees
from tests.unit.core.helpers import CHANNELS, DAY, HOUR, MIN, T0, line_of
from tests.unit.core.helpers import SPEC_JOURNEY as SPEC_EXAMPLE

REPO = Path(__file__).resolve().parents[3]


MINIMAL = """\
journey: mini
entry:
  on: signup.completed
start: hello
nodes:
  hello:
    send: email
    template: welcome-1
    next: pause
  pause:
    wait: 1h
    next: done
  done:
    exit: completed
"""


SEE_NODES = " (see docs/journeys.md#nodes)"


def parse(text: str, filename: str = "j.yaml"):
    return parse_journey(text, filename, channels=CHANNELS)


def refused(text: str, filename: str = "bad.yaml") -> list[str]:
    with pytest.raises(DefinitionError) as info:
        parse(text, filename)
    problems = info.value.problems
    assert problems, "a refusal must say why"
    assert str(info.value) == "\n".join(problems)
    assert not unresolved_sees(problems), "each problem ends with (see docs/journeys.md#<a heading>)"
    return problems


def assert_problem_at(text: str, needle: str, *words: str, nth: int = 1) -> str:
    """The definition is refused with a ``bad.yaml:<line of needle>: ...`` problem mentioning ``words``."""
    problems = refused(text)
    line = line_of(text, needle, nth)
    prefix = f"bad.yaml:{line}: "
    matching = [p for p in problems if p.startswith(prefix)]
    assert matching, f"no problem at line {line}: {problems}"
    for w in words:
        assert any(w in p for p in matching), f"{w!r} not in {matching}"
    return matching[0]


# ---------------------------------------------------------------------------- the SPEC example
def test_spec_example_parses() -> None:
    j = parse(SPEC_EXAMPLE, "cart-recovery.yaml")
    assert (j.id, j.version, j.priority, j.group) == ("cart-recovery", 3, 50, "promotions")
    assert j.entry_on == ("cart.updated",) and str(j.entry_on) == "cart.updated"
    assert j.entry_if is not None and j.entry_if.source == "event.properties.value >= 50"
    assert j.reentry_ms == 7 * DAY
    assert set(j.capture) == {"cart_value"}
    assert j.holdout == pytest.approx(0.10)
    assert j.goal_on == ("order.completed",) and j.goal_suppress == ("ads", "web", "sms")
    assert j.exit_on == ("account.closed",)
    assert j.max_touches == 3 and j.max_duration_ms == 14 * DAY
    assert j.start == "wait_1h"
    n = j.nodes
    assert n["wait_1h"] == WaitNode("wait_1h", HOUR, "choose")
    assert isinstance(n["choose"], BranchNode)
    assert [nxt for _, nxt in n["choose"].cases] == ["sms_offer", "email_reminder", "push_reminder"]
    assert n["choose"].cases[-1][0] is None  # the else
    assert isinstance(n["email_reminder"], SendNode)
    assert (n["email_reminder"].channel, n["email_reminder"].template, n["email_reminder"].next) == \
        ("email", "cart-reminder-1", "wait_open")
    assert set(n["email_reminder"].params) == {"cart_value"}
    assert n["wait_open"] == WaitForNode("wait_open", ("message.opened",), 24 * HOUR, "done", "push_reminder")
    assert isinstance(n["push_reminder"], SendNode)
    assert n["push_reminder"].channel == "best" and n["push_reminder"].channels == ("push", "sms")
    assert isinstance(n["sms_offer"], SendNode) and n["sms_offer"].channels == ("sms",)
    assert n["ab"] == SplitNode("ab", ((50.0, "email_reminder"), (50.0, "push_reminder")))
    assert n["done"] == ExitNode("done", "completed")
    assert j.source == "cart-recovery.yaml"


def test_spec_example_matches_the_shipped_file() -> None:
    shipped = load_journey_file(REPO / "journeys" / "cart-recovery.yaml", channels=CHANNELS)
    spec = parse(SPEC_EXAMPLE)
    assert repr(shipped.nodes) == repr(spec.nodes)  # Expression reprs carry their source
    assert (shipped.id, shipped.version, shipped.entry_on, shipped.goal_suppress, shipped.reentry_ms) == \
        (spec.id, spec.version, spec.entry_on, spec.goal_suppress, spec.reentry_ms)


def test_shipped_example_journeys_all_load() -> None:
    journeys, problems = load_journey_dir(REPO / "journeys", channels=CHANNELS)
    assert problems == []
    assert {j.id for j in journeys} >= {"cart-recovery", "welcome", "browse-abandon"}


def test_defaults() -> None:
    j = parse(MINIMAL)
    assert j.version == 1 and j.priority == 0 and j.group is None and j.holdout == 0.0
    assert j.reentry_ms == REENTRY_NEVER and j.entry_if is None and j.capture == {}
    assert j.goal_on == () and j.exit_on == () and j.max_touches is None and j.max_duration_ms is None
    assert j.enabled is True


@pytest.mark.parametrize("value, expected", [("never", REENTRY_NEVER), ("always", REENTRY_ALWAYS),
                                             ("30s", 30_000), ("10m", 600_000), ("2d", 2 * DAY),
                                             ("1w", 7 * DAY)])
def test_reentry_values(value: str, expected: int) -> None:
    text = MINIMAL.replace("  on: signup.completed", f"  on: signup.completed\n  reentry: {value}")
    assert parse(text).reentry_ms == expected


# ---------------------------------------------------------------------------- YAML 1.1 traps
def test_on_key_is_the_string_on_not_true() -> None:
    doc = load_yaml("entry:\n  on: cart.updated\ngoal: {on: x}\n", "x.yaml")
    assert doc.data == {"entry": {"on": "cart.updated"}, "goal": {"on": "x"}}
    assert True not in doc.data["entry"]


def test_clock_times_stay_strings() -> None:
    doc = load_yaml('quoted: "21:00"\nplain: 21:00\nsingle: \'08:00\'\n', "x.yaml")
    assert doc.data == {"quoted": "21:00", "plain": "21:00", "single": "08:00"}


def test_yes_no_off_are_not_booleans_but_true_false_are() -> None:
    doc = load_yaml("a: yes\nb: no\nc: off\nd: true\ne: false\nf: 12\ng: 1.5\n", "x.yaml")
    assert doc.data == {"a": "yes", "b": "no", "c": "off", "d": True, "e": False, "f": 12, "g": 1.5}


# ---------------------------------------------------------------------------- refusals with file:line
def test_unknown_node_in_next() -> None:
    text = MINIMAL.replace("    next: done", "    next: nowhere")
    assert_problem_at(text, "next: nowhere", "nowhere")


def test_unknown_node_in_branch_and_wait_for() -> None:
    text = textwrap.dedent("""\
        journey: mini
        entry:
          on: signup.completed
        start: pick
        nodes:
          pick:
            branch:
              - {if: profile.x == 1, next: ghost}
              - {next: wf}
          wf:
            wait_for: order.completed
            timeout: 1d
            on_event: done
            on_timeout: phantom
          done: {exit: completed}
        """)
    problems = refused(text)
    assert any(p.startswith(f"bad.yaml:{line_of(text, 'ghost')}: ") and "ghost" in p for p in problems)
    assert any(p.startswith(f"bad.yaml:{line_of(text, 'on_timeout: phantom')}: ") and "phantom" in p
               for p in problems)


def test_unknown_start_node() -> None:
    assert_problem_at(MINIMAL.replace("start: hello", "start: nope"), "start: nope", "nope")


def test_unknown_channel() -> None:
    assert_problem_at(MINIMAL.replace("send: email", "send: fax"), "send: fax", "unknown channel", "fax")


def test_unknown_channel_in_best_and_goal_suppress() -> None:
    text = MINIMAL.replace("    send: email\n", "    send: best\n    channels: [push, pigeon]\n") + \
        "goal:\n  on: order.completed\n  suppress:\n    - ads\n    - carrier\n"
    problems = refused(text)
    assert any(p.startswith(f"bad.yaml:{line_of(text, 'channels: [push, pigeon]')}:") and "pigeon" in p
               for p in problems)
    assert any(p.startswith(f"bad.yaml:{line_of(text, '- carrier')}:") and "carrier" in p for p in problems)


@pytest.mark.parametrize("bad", ["1 hour", "1y", "-1h", "0s", "60", "h", "1.5h"])
def test_bad_duration(bad: str) -> None:
    assert_problem_at(MINIMAL.replace("wait: 1h", f"wait: {bad}"), "wait: ", "wait")


def test_bad_duration_in_wait_for_timeout_and_reentry() -> None:
    text = MINIMAL.replace("  on: signup.completed", "  on: signup.completed\n  reentry: sometimes")
    assert_problem_at(text, "reentry: sometimes", "reentry")
    text = MINIMAL.replace("    wait: 1h\n    next: done",
                           "    wait_for: order.completed\n    timeout: soon\n    on_event: done\n    on_timeout: done")
    assert_problem_at(text, "timeout: soon", "timeout")


@pytest.mark.parametrize("expr", ["open('x')", "event.__class__", "1 +", "x > 1", "[x for x in y]"])
def test_bad_expression_in_entry_if(expr: str) -> None:
    text = MINIMAL.replace("  on: signup.completed", f'  on: signup.completed\n  if: "{expr}"')
    assert_problem_at(text, "  if: ", "entry.if")


def test_bad_expression_in_params_and_capture() -> None:
    text = MINIMAL.replace("    template: welcome-1", "    template: welcome-1\n    params:\n      v: __import__('os')")
    text += "capture:\n  plan: event.properties.plan\n  evil: \"lambda: 1\"\n"
    problems = refused(text)
    assert any(p.startswith(f"bad.yaml:{line_of(text, '__import__')}:") for p in problems)
    assert any(p.startswith(f"bad.yaml:{line_of(text, 'evil:')}:") for p in problems)


def test_unknown_top_level_key() -> None:
    assert_problem_at(MINIMAL + "colour: red\n", "colour", "unknown key", "colour")


def test_unknown_node_key() -> None:
    text = MINIMAL.replace("    template: welcome-1", "    template: welcome-1\n    tempalte: oops")
    assert_problem_at(text, "tempalte", "tempalte")


def test_missing_entry_on() -> None:
    text = MINIMAL.replace("  on: signup.completed", "  reentry: always")
    assert_problem_at(text, "entry:", "entry.on")


def test_missing_entry() -> None:
    text = MINIMAL.replace("entry:\n  on: signup.completed\n", "")
    assert any("entry" in p for p in refused(text))


def test_loop_without_a_wait() -> None:
    text = MINIMAL.replace("    next: pause", "    next: again").replace("nodes:\n", textwrap.dedent("""\
        nodes:
          again:
            send: push
            template: t2
            next: hello
        """))
    problem = assert_problem_at(text, "again:", "loop")
    assert "again" in problem and "hello" in problem


def test_self_loop_through_a_branch_without_a_wait() -> None:
    text = MINIMAL.replace("    next: pause", "    next: check").replace("nodes:\n", textwrap.dedent("""\
        nodes:
          check:
            branch:
              - {if: profile.vip, next: hello}
              - {next: done}
        """))
    assert any("loop" in p for p in refused(text))


def test_loop_through_a_wait_is_allowed() -> None:
    text = MINIMAL.replace("    next: done", "    next: hello")
    assert parse(text).nodes["pause"].next == "hello"


def chain(sends: int, *, wait_every: int = 0) -> str:
    """A journey of ``sends`` nodes in a row, sends (a wait every ``wait_every``-th), then an exit."""
    lines = ["journey: chain", "entry: {on: go}", "start: n0", "nodes:"]
    for i in range(sends):
        nxt = f"n{i + 1}" if i < sends - 1 else "end"
        kind = "wait: 1m" if wait_every and i % wait_every == wait_every - 1 else "send: email, template: t"
        lines.append(f"  n{i}: {{{kind}, next: {nxt}}}")
    return "\n".join(lines) + "\n  end: {exit: done}\n"


def test_a_path_longer_than_one_walk_is_refused() -> None:
    """One walk passes at most 64 nodes (then the instance exits step_limit): a 70-send chain sent 63
    of its emails and stopped, with the definition accepted."""
    assert len(parse(chain(63)).nodes) == 64                  # 63 sends, then the exit: 64 steps
    problem = assert_problem_at(chain(64), "n0:", "passes 65 nodes without waiting", "step_limit")
    assert "n0 -> n1 -> n2 -> n3 -> ..." in problem
    assert_problem_at(chain(70), "n0:", "passes 71 nodes")
    assert len(parse(chain(200, wait_every=50)).nodes) == 201  # waits between: each walk is short


def test_a_journey_of_thousands_of_nodes_is_checked_without_overflowing_the_stack() -> None:
    assert len(parse(chain(3000, wait_every=10)).nodes) == 3001
    assert_problem_at(chain(3000), "n0:", "passes 3001 nodes")
    looped = chain(3000).replace("n2999: {send: email, template: t, next: end}",
                                 "n2999: {send: email, template: t, next: n0}")
    assert any("loop without a wait" in p for p in refused(looped))


@pytest.mark.parametrize("old, new, needle", [
    ("  on: signup.completed", "  on: [signup.completed, profile.erased]", "on: [signup"),
    ("  on: signup.completed", "  on: message.sent", "on: message.sent"),
    ("    wait: 1h\n    next: done", "    wait_for: message.foo\n    timeout: 1d\n    on_event: done\n"
     "    on_timeout: done", "wait_for: message.foo"),
    ("    wait: 1h\n    next: done", "    wait_for: profile.erased\n    timeout: 1d\n    on_event: done\n"
     "    on_timeout: done", "wait_for: profile.erased"),
])
def test_event_types_that_never_reach_a_journey_are_refused(old: str, new: str, needle: str) -> None:
    assert_problem_at(MINIMAL.replace(old, new), needle, "never reaches a journey")
    goal = MINIMAL + "goal: {on: [order.completed, message.bogus]}\n"
    assert_problem_at(goal, "goal:", "message.bogus never reaches a journey", "dead-lettered invalid_schema")


def test_an_exit_on_erasure_is_accepted_an_erasure_ends_the_instance_anyway() -> None:
    assert parse(MINIMAL + "exit: {on: [account.closed, profile.erased]}\n").exit_on == ("account.closed",
                                                                                          "profile.erased")
    assert parse(MINIMAL.replace("  on: signup.completed", "  on: message.opened")).entry_on == ("message.opened",)


def test_yaml_syntax_error() -> None:
    text = MINIMAL.replace("    template: welcome-1", "    template: welcome-1: again")
    assert_problem_at(text, "welcome-1: again", "invalid YAML")


def test_yaml_tab_indentation_is_a_syntax_error() -> None:
    text = MINIMAL.replace("  pause:\n", "\tpause:\n")
    assert_problem_at(text, "\tpause", "invalid YAML")


def test_duplicate_key_reports_the_second_occurrence() -> None:
    text = MINIMAL.replace("    template: welcome-1", "    template: welcome-1\n    next: done")
    assert_problem_at(text, "next: pause", "duplicate")  # the second `next:` of node hello
    text = MINIMAL + "journey: other\n"
    assert_problem_at(text, "journey: other", "duplicate")


@pytest.mark.parametrize("mutation, needle", [
    (("journey: mini", "journey: Mini_Journey"), "journey: Mini"),
    (("journey: mini", "journey: mini\nversion: 0"), "version: 0"),
    (("journey: mini", "journey: mini\npriority: high"), "priority: high"),
    (("journey: mini", "journey: mini\nholdout: lots"), "holdout: lots"),
    (("journey: mini", "journey: mini\nholdout: 150%"), "holdout: 150%"),
    (("  on: signup.completed", "  on: Signup Completed"), "Signup"),
    (("    template: welcome-1\n", ""), "hello:"),
    (("    exit: completed", "    exit: Completed!"), "Completed!"),
])
def test_other_invalid_values_are_refused_at_their_line(mutation: tuple[str, str], needle: str) -> None:
    assert_problem_at(MINIMAL.replace(*mutation), needle)


@pytest.mark.parametrize("template, words", [
    # A template with characters a name cannot have used to be reported as "template is required".
    ("""'tpl "q" <b>'""", ("""template 'tpl "q" <b>' has characters a template name cannot have""",
                            """' ' '"' '<' '>'""", "letters, digits and _ . : / -")),
    ("''", ("template is empty",)),
    ("42", ("template must be a template name", "got 42")),
    ("[a, b]", ("template must be a template name", "got ['a', 'b']")),
    ("x" * 129, ("template is 129 characters long; at most 128",)),
])
def test_a_bad_template_says_what_is_wrong_with_it(template: str, words: tuple[str, ...]) -> None:
    text = MINIMAL.replace("    template: welcome-1", f"    template: {template}")
    problem = assert_problem_at(text, "    template:", *words)
    assert "is required" not in problem and problem.endswith(" (see docs/journeys.md#send)"), problem


def test_a_missing_template_is_required() -> None:
    text = MINIMAL.replace("    template: welcome-1\n", "")
    assert_problem_at(text, "hello:", "node 'hello': template is required")


def test_every_problem_is_reported_at_once() -> None:
    text = MINIMAL.replace("send: email", "send: fax").replace("wait: 1h", "wait: forever") \
        .replace("next: done", "next: nowhere")
    problems = refused(text)
    lines = {int(p.split(":")[1]) for p in problems}
    assert {line_of(text, "send: fax"), line_of(text, "wait: forever"), line_of(text, "next: nowhere")} <= lines
    assert all(p.startswith("bad.yaml:") for p in problems)


def test_yaml_aliases_work_for_reuse() -> None:
    text = MINIMAL.replace("    template: welcome-1\n", "    template: welcome-1\n    params: &p {plan: event.properties.plan}\n") \
        .replace("  done:\n    exit: completed", "  more:\n    send: push\n    template: t2\n    params: *p\n"
                 "  done:\n    exit: completed")
    j = parse(text)
    assert set(j.nodes["hello"].params) == set(j.nodes["more"].params) == {"plan"}


def test_yaml_alias_bomb_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):   # 9**10 values if expanded naively
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    text = MINIMAL + "description:\n  " + "\n  ".join(lines) + "\n"
    started = time.monotonic()
    problems = refused(text)
    assert time.monotonic() - started < 2.0
    assert all(p.startswith("bad.yaml:") for p in problems)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- a\n- b\n", "just a string\n"])
def test_empty_or_non_mapping_documents_are_refused(text: str) -> None:
    assert all(p.startswith("bad.yaml:") for p in refused(text))


# ---------------------------------------------------------------------------- files and directories
def test_load_journey_file_uses_the_path_in_messages(tmp_path: Path) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text(MINIMAL.replace("send: email", "send: fax"))
    with pytest.raises(DefinitionError) as info:
        load_journey_file(f, channels=CHANNELS)
    assert info.value.problems[0].startswith(f"{f}:{line_of(MINIMAL, 'send: email')}: ")


def test_load_journey_dir_skips_bad_files_and_reports_them(tmp_path: Path) -> None:
    (tmp_path / "a-good.yaml").write_text(MINIMAL)
    (tmp_path / "b-bad.yaml").write_text(MINIMAL.replace("journey: mini", "journey: bad").replace("wait: 1h", "wait: ?"))
    (tmp_path / "c-good.yml").write_text(MINIMAL.replace("journey: mini", "journey: other"))
    (tmp_path / "d-syntax.yaml").write_text("journey: [unclosed\n")
    (tmp_path / "notes.txt").write_text("not a journey")
    journeys, problems = load_journey_dir(tmp_path, channels=CHANNELS)
    assert sorted(j.id for j in journeys) == ["mini", "other"]
    bad_line = line_of(MINIMAL, "wait: 1h")
    assert any(p.startswith(f"{tmp_path / 'b-bad.yaml'}:{bad_line}: ") for p in problems)
    assert any(p.startswith(f"{tmp_path / 'd-syntax.yaml'}:") and "invalid YAML" in p for p in problems)
    assert not any("notes.txt" in p for p in problems)


def test_load_journey_dir_reports_a_duplicate_id_and_version(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(MINIMAL)
    (tmp_path / "b.yaml").write_text(MINIMAL)
    journeys, problems = load_journey_dir(tmp_path, channels=CHANNELS)
    assert [j.id for j in journeys] == ["mini"]
    assert len(problems) == 1 and problems[0].startswith(f"{tmp_path / 'b.yaml'}:")


def test_load_journey_dir_of_a_missing_directory_is_empty(tmp_path: Path) -> None:
    assert load_journey_dir(tmp_path / "nope", channels=CHANNELS) == ([], [])


# ---------------------------------------------------------------------------- lists of event types (SPEC §4)
def test_every_place_an_event_type_is_accepted_takes_a_list() -> None:
    text = MINIMAL.replace("  on: signup.completed", "  on: [signup.completed, trial.started, signup.completed]") \
        .replace("    wait: 1h\n    next: done",
                 "    wait_for: [message.opened, message.clicked]\n    timeout: 1d\n    on_event: done\n"
                 "    on_timeout: done") \
        + "goal: {on: [order.completed, subscription.started]}\nexit: {on: [account.closed]}\n"
    j = parse(text)
    assert j.entry_on == ("signup.completed", "trial.started")           # a repeat is harmless
    assert str(j.entry_on) == "signup.completed,trial.started"           # as `journeys list` shows it
    assert j.goal_on == ("order.completed", "subscription.started")
    assert j.exit_on == ("account.closed",)
    assert j.nodes["pause"].event_types == ("message.opened", "message.clicked")


@pytest.mark.parametrize("old, new, needle", [
    ("  on: signup.completed", "  on: []", "on: []"),
    ("  on: signup.completed", "  on: [signup.completed, Bad Type]", "on: [signup"),
    ("    wait: 1h\n    next: done", "    wait_for: []\n    timeout: 1d\n    on_event: done\n    on_timeout: done",
     "wait_for: []"),
])
def test_empty_or_bad_event_type_lists_are_refused(old: str, new: str, needle: str) -> None:
    assert_problem_at(MINIMAL.replace(old, new), needle)


# ---------------------------------------------------------------------------- unknown keys in every mapping
@pytest.mark.parametrize("old, new, needle", [
    ("  on: signup.completed", "  on: signup.completed\n  when: always", "when: always"),           # entry
    ("    template: welcome-1", "    template: welcome-1\n    priority: 2", "priority: 2"),          # send node
    ("    wait: 1h", "    wait: 1h\n    until: later", "until: later"),                             # wait node
    ("    exit: completed", "    exit: completed\n    why: done", "why: done"),                    # exit node
    ("  pause:\n    wait: 1h\n    next: done",
     "  pause:\n    branch:\n      - {if: profile.x, next: done, weight: 2}\n      - {next: done}", "weight: 2"),
    ("  pause:\n    wait: 1h\n    next: done",
     "  pause:\n    split:\n      - {weight: 1, next: done, if: x}", "if: x"),
    ("  pause:\n    wait: 1h\n    next: done",
     "  pause:\n    wait_for: a.b\n    timeout: 1d\n    on_event: done\n    on_timeout: done\n    next: done",
     "    next: done"),
])
def test_unknown_keys_are_refused_in_every_journey_mapping(old: str, new: str, needle: str) -> None:
    text = MINIMAL.replace(old, new)
    assert text != MINIMAL
    assert_problem_at(text, needle, "unknown key")


@pytest.mark.parametrize("extra, needle", [
    ("goal: {on: order.completed, supress: [sms]}\n", "supress"),
    ("exit: {on: [x.y], max_touch: 3}\n", "max_touch"),
])
def test_unknown_keys_are_refused_in_goal_and_exit(extra: str, needle: str) -> None:
    assert_problem_at(MINIMAL + extra, needle, "unknown key")


# ---------------------------------------------------------------------------- one pass
def test_an_unknown_top_level_key_does_not_hide_the_other_problems() -> None:
    text = (MINIMAL + "colour: red\n").replace("send: email", "send: fax").replace("wait: 1h", "wait: forever") \
        .replace("    next: done", "    next: nowhere").replace("  on: signup.completed", "  on: Bad Type")
    problems = refused(text)
    lines = {int(p.split(":")[1]) for p in problems}
    assert {line_of(text, "colour"), line_of(text, "send: fax"), line_of(text, "wait: forever"),
            line_of(text, "next: nowhere"), line_of(text, "on: Bad Type")} <= lines


def test_problems_are_reported_in_line_order() -> None:
    # The unknown keys (checked first) are at the end of the file: they are reported last.
    text = (MINIMAL + "colour: red\n").replace("send: email", "send: fax").replace("wait: 1h", "wait: forever") \
        .replace("  on: signup.completed", "  on: Bad Type").replace("    next: done", "    next: done\n    tempo: 3")
    problems = refused(text)
    lines = [int(p.split(":")[1]) for p in problems]
    assert lines == sorted(lines), problems
    assert lines[0] == line_of(text, "Bad Type") and lines[-1] == line_of(text, "colour")
    assert "unknown key 'colour'" in problems[-1]


def test_problems_on_one_line_keep_the_order_they_were_found_in() -> None:
    text = MINIMAL.replace("    wait: 1h\n    next: done", "    branch:\n      - {if: nope, nex: done}")
    problems = refused(text)
    assert len(problems) == 3 and len({p.split(":")[1] for p in problems}) == 1, problems
    # the mapping's unknown key, its expression, then its missing next
    assert "unknown key 'nex'" in problems[0] and "unknown name 'nope'" in problems[1] and "next" in problems[2]


# ---------------------------------------------------------------------------- start and reachability
def test_an_invalid_start_node_is_reported_at_the_node_only() -> None:
    text = MINIMAL.replace("start: hello", "start: pause").replace("wait: 1h", "wait: forever")
    problems = refused(text)                                # start: pause exists, but is invalid
    assert not any("no node named" in p for p in problems), problems
    assert [p for p in problems if p.startswith(f"bad.yaml:{line_of(text, 'wait: forever')}:")]


def test_unreachable_nodes_are_warned_about_with_file_and_line() -> None:
    text = MINIMAL + "  orphan:\n    send: push\n    template: t\n    next: island\n  island:\n    exit: never\n"
    j = parse(text, "j.yaml")
    assert j.warnings == (
        f"j.yaml:{line_of(text, 'orphan:')}: warning: node 'orphan' is never reached from start 'hello'{SEE_NODES}",
        f"j.yaml:{line_of(text, 'island:')}: warning: node 'island' is never reached from start 'hello'{SEE_NODES}")
    assert parse(MINIMAL).warnings == ()


def test_the_spec_example_warns_about_its_unused_split() -> None:
    j = parse(SPEC_EXAMPLE, "cart-recovery.yaml")
    assert j.warnings == (f"cart-recovery.yaml:{line_of(SPEC_EXAMPLE, '  ab:')}: warning: node 'ab' is never "
                          f"reached from start 'wait_1h'{SEE_NODES}",)


# ---------------------------------------------------------------------------- journey language v2 (SPEC §4.1)
V2 = """\
journey: v2
entry:
  on: [cart.updated, checkout.started]
  max_entries: 3
exit:
  if: profile.plan == "enterprise"
start: morning
nodes:
  morning: {wait_until: "09:00", days: [mon, tue, wed, thu, fri], next: offer}
  offer:
    send: email
    template: offer-1
    window: {days: [mon, tue, wed, thu, fri], from: "09:00", to: "18:00"}
    exempt: [frequency, quiet_hours]
    next: done
  done: {exit: completed}
"""


def test_the_spec_4_1_additions_parse() -> None:
    j = parse(V2)
    assert j.entry_on == ("cart.updated", "checkout.started") and j.max_entries == 3
    assert j.exit_if is not None and j.exit_if.source == 'profile.plan == "enterprise"'
    assert j.nodes["morning"] == WaitUntilNode("morning", 9 * 60, (0, 1, 2, 3, 4), "offer")
    offer = j.nodes["offer"]
    assert isinstance(offer, SendNode)
    assert offer.window == Window((0, 1, 2, 3, 4), 9 * 60, 18 * 60)
    assert offer.exempt == ("frequency", "quiet_hours")
    assert j.warnings == ()


def test_defaults_of_the_additions() -> None:
    j = parse(MINIMAL)
    assert j.max_entries is None and j.exit_if is None
    hello = j.nodes["hello"]
    assert isinstance(hello, SendNode) and hello.window is None and hello.exempt == ()
    text = V2.replace(', days: [mon, tue, wed, thu, fri], next: offer}', ', next: offer}')
    assert parse(text).nodes["morning"].days == (0, 1, 2, 3, 4, 5, 6)      # every day


@pytest.mark.parametrize("window, expected", [
    ('{from: "22:00", to: "06:00"}', Window((0, 1, 2, 3, 4, 5, 6), 22 * 60, 6 * 60)),   # across midnight
    ("{days: [sat, sun]}", Window((5, 6))),                                             # whole days
    ('{days: [fri, mon, mon], from: "09:30", to: "17:00"}', Window((0, 4), 9 * 60 + 30, 17 * 60)),
])
def test_window_forms(window: str, expected: Window) -> None:
    text = V2.replace('{days: [mon, tue, wed, thu, fri], from: "09:00", to: "18:00"}', window)
    assert parse(text).nodes["offer"].window == expected


@pytest.mark.parametrize("old, new, needle, words", [
    ("  max_entries: 3", "  max_entries: 0", "max_entries", ("max_entries", ">= 1")),
    ("  max_entries: 3", "  max_entries: three", "max_entries", ("max_entries",)),
    ("  max_entries: 3", "  max_entries: true", "max_entries", ("max_entries",)),
    ("  max_entries: 3", "  max_entries: 3\n  max_entry: 4", "max_entry:", ("unknown key",)),
    ('  if: profile.plan == "enterprise"', "  if: profile.__class__", "  if: profile", ("exit.if",)),
    ('  if: profile.plan == "enterprise"', '  if: profile.plan == "enterprise"\n  when: now', "when: now",
     ("unknown key",)),
    ('wait_until: "09:00"', 'wait_until: "9am"', "morning:", ("wait_until", "HH:MM")),
    ('wait_until: "09:00"', 'wait_until: "24:00"', "morning:", ("wait_until",)),
    ('wait_until: "09:00"', "wait_until: 540", "morning:", ("wait_until",)),
    ("days: [mon, tue, wed, thu, fri], next: offer", "days: [monday, tue], next: offer", "morning:",
     ("'monday' is not a day", "mon, tue, wed, thu, fri, sat, sun")),
    ("days: [mon, tue, wed, thu, fri], next: offer", "days: [Mon], next: offer", "morning:", ("'Mon' is not a day",)),
    ("days: [mon, tue, wed, thu, fri], next: offer", "days: [], next: offer", "morning:", ("non-empty list",)),
    ("days: [mon, tue, wed, thu, fri], next: offer", "days: mon, next: offer", "morning:", ("non-empty list",)),
    ("days: [mon, tue, wed, thu, fri], next: offer}", "days: [mon]}", "morning:", ("next must name a node",)),
    ("next: offer}", "next: offer, at: noon}", "morning:", ("unknown key 'at'",)),
    ("next: offer}", "next: nowhere}", "morning:", ("no node named 'nowhere'",)),
    ('from: "09:00", to: "18:00"}', 'from: "09:00"}', "window:", ("from: and to: go together",)),
    ('from: "09:00", to: "18:00"}', 'from: "09:00", to: "09:00"}', "window:", ("must differ",)),
    ('from: "09:00", to: "18:00"}', 'from: "09:00", to: "6pm"}', "window:", ("window.to", "HH:MM")),
    ('{days: [mon, tue, wed, thu, fri], from: "09:00", to: "18:00"}', "{}", "window:", ("window needs days",)),
    ('{days: [mon, tue, wed, thu, fri], from: "09:00", to: "18:00"}', "weekdays", "window:", ("mapping",)),
    ("window: {days: [mon, tue,", "window: {days: [mon, tues,", "window:", ("'tues' is not a day",)),
    ('to: "18:00"}', 'to: "18:00", tz: UTC}', "window:", ("unknown key 'tz'",)),
    ("exempt: [frequency, quiet_hours]", "exempt: [consent]", "exempt:", ("consent is never exempt",)),
    ("exempt: [frequency, quiet_hours]", "exempt: [frequency, holdout]", "exempt:", ("holdout is never exempt",)),
    ("exempt: [frequency, quiet_hours]", "exempt: [caps]", "exempt:", ("'caps' is not a check",
                                                                         "frequency, quiet_hours")),
])
def test_the_additions_are_refused_at_their_line(old: str, new: str, needle: str, words: tuple[str, ...]) -> None:
    text = V2.replace(old, new)
    assert text != V2
    assert_problem_at(text, needle, *words)


def test_exempt_is_a_list_even_of_one_check() -> None:
    # `exempt: frequency` used to be read as [frequency]; the docs say a list, and a list it must be.
    assert parse(V2.replace("exempt: [frequency, quiet_hours]", "exempt: [quiet_hours]")).nodes["offer"].exempt == \
        ("quiet_hours",)
    text = V2.replace("exempt: [frequency, quiet_hours]", "exempt: frequency")
    problem = assert_problem_at(text, "exempt:", "exempt must be a list", "e.g. [frequency]", "got 'frequency'")
    assert problem.endswith(" (see docs/journeys.md#exempt)"), problem


@pytest.mark.parametrize("where, old, new, needle, value", [
    ("wait_until", 'wait_until: "09:00"', 'wait_until: "9:00"', "morning:", "9:00"),
    ("window.from", 'from: "09:00", to: "18:00"}', 'from: "9:00", to: "18:00"}', "window:", "9:00"),
    ("window.to", 'from: "09:00", to: "18:00"}', 'from: "09:00", to: "6:00"}', "window:", "6:00"),
])
def test_a_time_of_day_needs_two_digits_for_the_hour(where: str, old: str, new: str, needle: str, value: str) -> None:
    # "9:00" used to be accepted as 09:00 though the docs say HH:MM: it is refused, saying what to write.
    text = V2.replace(old, new)
    problem = assert_problem_at(text, needle, where, f"'{value}' needs two digits for the hour",
                                f'write "0{value}" (HH:MM)')
    assert problem.endswith(" (see docs/journeys.md#times-of-day)"), problem


def test_a_loop_through_wait_until_is_a_loop_that_waits() -> None:
    text = V2.replace("    next: done\n  done:", "    next: morning\n  done:")
    j = parse(text)
    assert j.nodes["offer"].next == "morning"
    assert j.warnings == (f"j.yaml:{line_of(text, '  done:')}: warning: node 'done' is never reached from start "
                          f"'morning'{SEE_NODES}",)


# ---------------------------------------------------------------------------- fields of the fixed namespaces
# SPEC §4 Expressions: `journey`, `engagement`, `activity`, `session`, `event` and `now` hold a fixed
# set of fields; `profile`, `event.properties` and `journey.vars` are open. A constant path into a
# fixed namespace that can never have a value is refused, not read as None forever.
UNKNOWN_FIELDS = [
    ("journey.nope == 1", "journey has no field 'nope'", "entered_at, id, touches, version, vars.<name>"),
    ("journey.touches.count > 1", "journey.touches has no fields", ""),
    ("session.nope > 1", "session has no field 'nope'", "categories, event_count, started_at"),
    ("session.categories.first == 'shoes'", "session.categories is a list", "session.categories[0]"),
    ("engagement.fax.sent_7d > 0", "engagement has no channel 'fax'", "email, sms, push, inapp, web, ads"),
    ("engagement.email.sent_99d > 0", "engagement.<channel> has no field 'sent_99d'",
     "clicked_30d, clicked_7d, last_opened_at, opened_30d, opened_7d, sent_30d, sent_7d"),
    ("engagement.email.opened_30d.x", "engagement.email.opened_30d has no fields", ""),
    ("activity.cart.updated.count_7d > 0", "activity.cart.updated.count_7d has no value",
     "activity.<event type>.count_30d or .last_at"),
    ("activity['cart.updated'] != null", "activity['cart.updated'] has no value", ".last_at"),
    ("activity.count_30d > 0", "activity.count_30d has no value", "activity.<event type>.count_30d"),
    ("activity.Cart.count_30d > 0", "'Cart' is not part of an event type", ""),
    ("activity.cart['updated.x'].count_30d > 0", "read only right after activity", ""),
    ("event.nope == 1", "event has no field 'nope'",
     "account_id, customer_id, event_id, ts, type, properties.<name>"),
    ("event.type.name == 'x'", "event.type has no fields", ""),
    ("now.day == 1", "now is a time and has no field", ""),
]


@pytest.mark.parametrize("source, message, allowed", UNKNOWN_FIELDS)
def test_a_field_a_fixed_namespace_never_has_is_refused_at_its_line(source: str, message: str, allowed: str) -> None:
    text = MINIMAL.replace("  on: signup.completed", f'  on: signup.completed\n  if: "{source}"')
    problem = assert_problem_at(text, "  if: ", "entry.if", message, allowed)
    assert f"in expression {source!r}" in problem


@pytest.mark.parametrize("where", ["branch", "params", "capture", "exit"])
def test_unknown_fields_are_refused_in_every_kind_of_expression(where: str) -> None:
    if where == "branch":
        text = MINIMAL.replace("    wait: 1h\n    next: done", "    branch:\n      - {if: session.nope, next: done}")
    elif where == "params":
        text = MINIMAL.replace("    template: welcome-1", "    template: welcome-1\n    params: {n: session.nope}")
    elif where == "capture":
        text = MINIMAL + "capture: {n: session.nope}\n"
    else:
        text = MINIMAL + "exit: {if: session.nope}\n"
    assert_problem_at(text, "session.nope", "session has no field 'nope'")


def test_every_unknown_field_of_an_expression_is_reported() -> None:
    text = MINIMAL.replace("  on: signup.completed",
                           '  on: signup.completed\n  if: "journey.nope or engagement.fax.sent_7d > 0"')
    problems = refused(text)
    assert len(problems) == 2
    assert "journey has no field 'nope'" in problems[0] and "no channel 'fax'" in problems[1]


KNOWN_FIELDS = [
    "journey.id", "journey.version", "journey.vars.anything.deeper", "journey.entered_at", "journey.touches",
    "session.started_at", "session.event_count", "session.categories", "session.categories[0]",
    "engagement.email", "engagement.sms.sent_7d", "engagement.push.opened_30d", "engagement.email.clicked_7d",
    "engagement['email'].last_opened_at", "activity.cart.updated.count_30d", "activity.cart.updated.last_at",
    "activity['cart.updated'].count_30d", "activity.signup.last_at", "activity['sign-up'].count_30d",
    "event.properties.anything.deeper", "event.type", "event.ts", "event.event_id", "event.customer_id",
    "event.account_id", "profile.anything[0].deeper", "now", "len(session.categories)", "engagement", "activity",
]


@pytest.mark.parametrize("source", KNOWN_FIELDS)
def test_every_field_the_namespaces_have_is_accepted(source: str) -> None:
    text = MINIMAL.replace("    template: welcome-1", f'    template: welcome-1\n    params: {{v: "{source}"}}')
    assert set(parse(text).nodes["hello"].params) == {"v"}


def test_engagement_channels_are_the_configured_ones() -> None:
    text = MINIMAL.replace("  on: signup.completed", '  on: signup.completed\n  if: "engagement.pager.sent_7d > 0"')
    assert parse_journey(text, "j.yaml", channels=("email", "pager")).entry_if is not None
    with pytest.raises(DefinitionError) as info:
        parse_journey(text.replace("pager.sent", "sms.sent"), "j.yaml", channels=("email", "pager"))
    assert "engagement has no channel 'sms'" in str(info.value) and "(channels: email, pager)" in str(info.value)


def test_the_field_lists_are_what_the_namespaces_really_hold() -> None:
    """A path refused by validation reads None from a customer who has everything; an accepted one
    reads a value: the lists in namespaces.py and what ``Namespaces`` builds agree."""
    state = CustomerState(
        profile={"anything": [{"deeper": 1}]},
        engagement={ch: Engagement(sent=[T0 - HOUR], opened=[T0 - HOUR], clicked=[T0 - HOUR],
                                   last_opened_ms=T0 - HOUR) for ch in CHANNELS},
        activity={t: Activity(days={T0 // DAY: 1}, last_ms=T0 - HOUR)
                  for t in ("cart.updated", "signup", "sign-up", "updated.x", "cart", "count_30d")},
        session=Session(started_ms=T0 - HOUR, last_ms=T0 - MIN, event_count=2, categories=["shoes"]))
    inst = Instance(journey="mini", version=1, instance_id="e-0", node="pause", entered_ms=T0 - HOUR,
                    trigger_event_id="e-0", trigger_ts_ms=T0 - HOUR, vars={"anything": {"deeper": 1}}, touches=1)
    event = Event(event_id="e-1", customer_id="c-1", type="cart.updated", ts_ms=T0, account_id="acme",
                  properties={"anything": {"deeper": 1}, "first": "x"})
    ns = Namespaces(CHANNELS, state, event, inst, T0)
    assert set(ns["journey"]) == JOURNEY_FIELDS and set(ns["event"]) == EVENT_FIELDS
    assert set(ns["session"]) == SESSION_FIELDS and set(ns["engagement"]) == set(CHANNELS)
    assert all(set(row) == ENGAGEMENT_FIELDS for row in ns["engagement"].values())
    assert set(ns["activity"]["cart.updated"]) == ACTIVITY_FIELDS
    for source in KNOWN_FIELDS:
        assert compile_expression(source)(ns, T0) is not None, source
    for source in ["journey.nope", "journey.touches.count", "session.nope", "session.categories.first",
                   "session.categories[0].x", "engagement.fax.sent_7d", "engagement.email.sent_99d",
                   "engagement.email.opened_30d.x", "activity.cart.updated.count_7d", "activity.count_30d.x",
                   "activity.Cart.count_30d", "activity.cart['updated.x'].count_30d", "event.nope",
                   "event.type.name", "now.day"]:
        e = compile_expression(source)
        assert [field_problem(f, CHANNELS) for f in e.fields] != [None], source
        assert e(ns, T0) is None, source
