"""The command line on bad or surprising input: one sentence, every problem, nothing silently ignored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.unit.core.helpers import DAY, MIN, T0, line_of, raw_event
from tests.repo.test_reference_docs import unresolved_sees

REPO = Path(__file__).resolve().parents[3]

JOURNEY = """\
journey: hi
entry: {on: signup.completed}
start: e
nodes:
  e: {send: email, template: hi}
"""


@pytest.fixture
def journeys(tmp_path: Path) -> Path:
    d = tmp_path / "journeys"
    d.mkdir()
    (d / "hi.yaml").write_text(JOURNEY)
    return d


@pytest.fixture
def events(tmp_path: Path) -> Path:
    f = tmp_path / "events.jsonl"
    f.write_bytes(raw_event("signup.completed", "c-1", T0) + b"\n")
    return f


def one_sentence_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and "Traceback" not in stderr
    return lines[0]


# ---------------------------------------------------------------------------- --policies and ORCH_POLICIES
def test_simulate_with_a_missing_policies_file_fails_with_one_sentence(journeys, events, tmp_path, capsys) -> None:
    missing = tmp_path / "polices.yaml"                     # a typo
    assert main(["simulate", "--journeys", str(journeys), "--policies", str(missing), str(events)]) == 1
    out = capsys.readouterr()
    assert out.out == "" and str(missing) in one_sentence_error(out.err)


def test_validate_with_a_missing_policies_file_fails_with_one_sentence(journeys, tmp_path, capsys) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["journeys", "validate", "--policies", str(missing), str(journeys)]) == 1
    assert str(missing) in one_sentence_error(capsys.readouterr().err)


def test_an_explicit_orch_policies_that_is_missing_fails(journeys, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("ORCH_POLICIES", str(tmp_path / "gone.yaml"))
    assert main(["journeys", "validate", str(journeys)]) == 1
    assert "gone.yaml" in one_sentence_error(capsys.readouterr().err)


def test_the_default_policies_path_may_be_absent(journeys, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)                             # no policies.yaml here
    monkeypatch.delenv("ORCH_POLICIES", raising=False)
    assert main(["journeys", "validate", str(journeys)]) == 0
    assert "ok" in capsys.readouterr().out


def _worker(env_extra: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """A worker pointed at a port where no broker listens: anything it says before Kafka is reached."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env.update({"ORCH_BOOTSTRAP": "127.0.0.1:1", "ORCH_DATA_DIR": str(cwd / "data"), **env_extra})
    return subprocess.run([sys.executable, "-m", "orchestrator", "worker"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_worker_with_a_missing_orch_policies_stops_with_one_sentence(tmp_path) -> None:
    proc = _worker({"ORCH_POLICIES": str(tmp_path / "gone.yaml")}, tmp_path)   # the policies come first
    assert proc.returncode == 1
    assert "gone.yaml" in one_sentence_error(proc.stderr)


# ---------------------------------------------------------------------------- journeys validate
def test_validate_reports_every_problem_of_a_file_in_one_pass(tmp_path, capsys) -> None:
    text = JOURNEY + "colour: red\n" + "goal: {on: Bad Type}\n"
    text = text.replace("send: email", "send: fax").replace("start: e", "start: e\nholdout: lots")
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    assert main(["journeys", "validate", "--policies", str(REPO / "policies.yaml"), str(f)]) == 1
    lines = {int(p.split(":")[1]) for p in capsys.readouterr().err.splitlines()}
    assert lines == {line_of(text, "colour"), line_of(text, "Bad Type"), line_of(text, "send: fax"),
                     line_of(text, "holdout: lots")}


def test_validate_prints_the_problems_of_a_file_in_line_order(tmp_path, capsys) -> None:
    # An unknown key at the end of the file is found first, printed last.
    text = JOURNEY.replace("start: e", "start: e\nholdout: lots").replace("send: email", "send: fax") \
        + 'colour: red\ncapture: {n: "journey.nope"}\n'
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    assert main(["journeys", "validate", "--policies", str(REPO / "policies.yaml"), str(f)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert [int(p.split(":")[1]) for p in err] == [line_of(text, "holdout"), line_of(text, "send: fax"),
                                                   line_of(text, "colour"), line_of(text, "journey.nope")], err
    assert "unknown key 'colour'" in err[2] and "journey has no field 'nope'" in err[3]
    assert not unresolved_sees(err), "every problem ends with where to read more"


def test_validate_warns_about_unreachable_nodes_and_still_accepts(tmp_path, capsys) -> None:
    text = JOURNEY.replace("template: hi}", "template: hi}\n  lost: {exit: never}")
    f = tmp_path / "j.yaml"
    f.write_text(text)
    assert main(["journeys", "validate", "--policies", str(REPO / "policies.yaml"), str(f)]) == 0
    out = capsys.readouterr()
    assert out.err == (f"{f}:{line_of(text, 'lost:')}: warning: node 'lost' is never reached from start 'e' "
                       "(see docs/journeys.md#nodes)\n")
    assert out.out == f"{f}: ok (hi version 1, 2 nodes, 1 warning(s))\n"


def test_validate_reports_a_loop_also_when_start_names_no_node(tmp_path, capsys) -> None:
    text = ("journey: lp\nentry: {on: a}\nstart: nowhere\nnodes:\n  s: {send: email, template: t, next: l1}\n"
            "  l1: {branch: [{next: l2}]}\n  l2: {branch: [{next: l1}]}\n")
    f = tmp_path / "loop.yaml"
    f.write_text(text)
    assert main(["journeys", "validate", "--policies", str(REPO / "policies.yaml"), str(f)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert [p.split(": ", 1)[0] for p in err] == [f"{f}:{line_of(text, 'start:')}", f"{f}:{line_of(text, 'l1:')}"]
    assert "start: no node named 'nowhere'" in err[0] and "loop without a wait: l1 -> l2 -> l1" in err[1]


def test_validate_reports_every_missing_path_and_still_checks_the_others(journeys, tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(JOURNEY.replace("send: email", "send: fax"))
    missing = [tmp_path / "nope.yaml", tmp_path / "gone"]
    assert main(["journeys", "validate", "--policies", str(REPO / "policies.yaml"), str(journeys), str(bad),
                 *map(str, missing)]) == 2
    out = capsys.readouterr()
    assert out.out == f"{journeys / 'hi.yaml'}: ok (hi version 1, 1 nodes)\n"
    err = out.err.splitlines()
    assert [line for line in err if "no such file or folder" in line] == [f"{m}: no such file or folder" for m in missing]
    assert any(line.startswith(f"{bad}:") and "fax" in line for line in err)


def test_validate_of_an_empty_folder_names_it(tmp_path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["journeys", "validate", str(empty)]) == 2
    assert capsys.readouterr().err == f"no journey files found in {empty} (*.yaml, *.yml)\n"


def test_journeys_list_without_the_default_folder_says_there_is_nothing_to_list(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ORCH_JOURNEYS", raising=False)
    assert main(["journeys", "list"]) == 0
    out = capsys.readouterr()
    assert out.out == "" and "no journeys folder 'journeys' here: nothing to list" in out.err


def test_journeys_diff_of_a_missing_path_says_so_without_reaching_for_kafka(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ORCH_BOOTSTRAP", "127.0.0.1:1")        # nothing listens there: reaching it would fail
    missing = tmp_path / "nodir"
    assert main(["journeys", "diff", "--exit-code", str(missing)]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err == f"{missing}: no such file or folder\n"


def test_journeys_publish_of_an_empty_folder_says_nothing_was_published(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ORCH_BOOTSTRAP", "127.0.0.1:1")        # nothing listens there: reaching it would fail
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["journeys", "publish", str(empty)]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err == f"no journey files found in {empty} (*.yaml, *.yml): nothing published\n"


def test_journeys_diff_json_without_shadow_is_a_usage_error(journeys, capsys, monkeypatch) -> None:
    monkeypatch.setenv("ORCH_BOOTSTRAP", "127.0.0.1:1")
    from tests.unit.reports.test_graph import usage_error
    assert "--json prints a shadow's comparison" in usage_error(capsys, "journeys", "diff", "--json", str(journeys))


# ---------------------------------------------------------------------------- simulate
def test_simulate_reports_ignored_lines_on_stderr_and_dead_letters_a_far_future_line(journeys, tmp_path,
                                                                                       capsys) -> None:
    lines = [raw_event("signup.completed", "c-1", T0, eid="e-1"),
             raw_event("signup.completed", "c-9", T0 + 365 * DAY),          # line 2: a year ahead
             raw_event("signup.completed", "c-1", T0 + MIN, eid="e-1"),     # line 3: duplicate
             raw_event("signup.completed", "c-2", T0 - 2 * DAY),            # line 4: too old to enrol
             raw_event("signup.completed", "c-3", T0 - 2 * DAY),            # line 5: too old to enrol
             raw_event("signup.completed", "c-4", T0 + 2 * MIN)]
    f = tmp_path / "events.jsonl"
    f.write_bytes(b"\n".join(lines) + b"\n")
    assert main(["simulate", "--journeys", str(journeys), str(f)]) == 0
    out = capsys.readouterr()
    records = [json.loads(line) for line in out.out.splitlines()]
    assert [r["value"]["customer_id"] for r in records if r["topic"] == "actions.email"] == ["c-1", "c-4"]
    assert [r["value"]["offset"] for r in records if r["topic"] == "dlq"] == [2]
    assert out.err.splitlines() == [
        "simulate: 1 line ignored as duplicates (event_id already seen): 3",
        "simulate: 2 lines too old to enrol anyone (more than 1d before the clock; state updated only): 4-5",
        "simulate: 1 line dead-lettered future_timestamp: 2",
    ]


def test_simulate_prints_nothing_on_stderr_when_nothing_was_ignored(journeys, events, capsys) -> None:
    assert main(["simulate", "--journeys", str(journeys), str(events)]) == 0
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------------------- a closed pipe (`| head`)
def run_into_a_closed_pipe(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run ``orchestrator ARGS`` with stdout a pipe whose reader is already gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "orchestrator", *args], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, cwd=cwd, timeout=120)
    finally:
        os.close(write_end)


def test_simulate_into_a_closed_pipe_exits_quietly(journeys, tmp_path) -> None:
    f = tmp_path / "many.jsonl"
    f.write_bytes(b"\n".join(raw_event("signup.completed", f"c-{i}", T0 + i) for i in range(2000)) + b"\n")
    proc = run_into_a_closed_pipe(["simulate", "--journeys", str(journeys), str(f)], tmp_path)
    assert (proc.returncode, proc.stderr) == (141, "")


def test_kafka_status_into_a_closed_pipe_exits_quietly(tmp_path) -> None:
    proc = run_into_a_closed_pipe(["kafka", "status"], REPO)
    assert (proc.returncode, proc.stderr) == (141, "")


# ---------------------------------------------------------------------------- ORCH_JOURNEYS and journeys folders
def test_a_worker_refuses_a_journeys_folder_that_does_not_exist(tmp_path) -> None:
    # A typo in ORCH_JOURNEYS used to start a worker with no file journeys and not a word.
    missing = tmp_path / "jouneys"
    r = _worker({"ORCH_JOURNEYS": str(missing)}, tmp_path)
    assert r.returncode == 1
    line = one_sentence_error(r.stderr)
    assert str(missing) in line and "does not exist" in line
    assert "Kafka" not in r.stderr              # refused before any broker is contacted (nothing created)


def test_a_worker_refuses_a_journeys_path_that_is_a_file(journeys, tmp_path) -> None:
    r = _worker({"ORCH_JOURNEYS": str(journeys / "hi.yaml")}, tmp_path)
    assert r.returncode == 1
    assert "is a file, not a folder" in one_sentence_error(r.stderr)


def test_a_worker_without_the_default_journeys_folder_says_it_runs_published_journeys_only(tmp_path) -> None:
    r = _worker({}, tmp_path)                   # no ./journeys here, ORCH_JOURNEYS unset: allowed
    assert "no journeys folder 'journeys' (ORCH_JOURNEYS): only journeys published to orch.journeys run" in r.stderr
    assert "cannot reach Kafka" in r.stderr     # it went on to the broker


def test_journeys_list_of_a_missing_folder_fails_with_one_sentence(tmp_path, capsys) -> None:
    missing = tmp_path / "nope"
    assert main(["journeys", "list", str(missing)]) == 1
    out = capsys.readouterr()
    assert out.out == "" and str(missing) in one_sentence_error(out.err)


@pytest.mark.parametrize("name", ["nope", "journeys"])
def test_simulate_of_a_missing_journeys_folder_says_it_does_not_exist(name, events, tmp_path, monkeypatch,
                                                                     capsys) -> None:
    # It used to say "no journeys found", as if the folder were there and empty. `journeys` too: simulate
    # runs only the folder's journeys, so the default name is no exception.
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "--journeys", name, str(events)]) == 1
    out = capsys.readouterr()
    line = one_sentence_error(out.err)
    assert out.out == "" and f"journeys folder '{name}' does not exist" in line and "--journeys DIR" in line


def test_backtest_of_a_missing_journeys_folder_says_it_does_not_exist(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("ORCH_POLICIES", raising=False)
    monkeypatch.chdir(tmp_path)                 # no policies.yaml: the defaults; nothing reaches Kafka
    missing = tmp_path / "nope"
    assert main(["backtest", "--journeys", str(missing), "--from", "1d", "--to", "now"]) == 1
    line = one_sentence_error(capsys.readouterr().err)
    assert f"journeys folder '{missing}' does not exist" in line


def test_a_file_that_cannot_be_written_is_one_sentence(journeys, tmp_path, capsys) -> None:
    target = tmp_path / "no" / "such" / "dir" / "x.dot"
    assert main(["journeys", "graph", str(journeys / "hi.yaml"), "--format", "dot", "-o", str(target)]) == 1
    out = capsys.readouterr()
    assert str(target) in one_sentence_error(out.err)


# ---------------------------------------------------------------------------- explain --limit
@pytest.mark.parametrize("limit", ["-1", "0", "two"])
def test_explain_refuses_a_limit_below_1(limit, capsys) -> None:
    # --limit -1 used to show every decision but the oldest, and --limit 0 every decision.
    with pytest.raises(SystemExit) as usage:
        main(["explain", "c-1", "--limit", limit])
    assert usage.value.code == 2
    assert "--limit" in capsys.readouterr().err


def test_explain_takes_a_limit_of_1() -> None:
    from orchestrator.cli import build_parser
    assert build_parser().parse_args(["explain", "c-1", "--limit", "1"]).limit == 1
