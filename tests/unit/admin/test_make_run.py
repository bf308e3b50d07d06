"""The pieces of `make run` that need no broker: the launcher that runs before .venv exists
(orchestrator/admin/makerun.py), the seconds shown while a step waits, and the demo's progress line
and traffic (orchestrator/admin/demo.py). tests/integration/test_make_run.py runs the whole."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from orchestrator.admin import makerun
from orchestrator.admin.demo import DemoTraffic, Rates
from orchestrator.observability.progress import ticking

ROOT = Path(__file__).resolve().parents[3]


def test_the_launcher_needs_only_the_standard_library():
    # -S: no site-packages at all, as with a system Python before `make run` has installed anything
    done = subprocess.run([sys.executable, "-S", "-m", "orchestrator.admin.makerun", "--help"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "install" in done.stdout and "run" in done.stdout


def test_an_install_is_trusted_only_with_a_stamp_newer_than_pyproject(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[project]\n")
    venv = tmp_path / "venv"
    assert not makerun.up_to_date(venv, pyproject, [])                 # never completed
    venv.mkdir()
    makerun.stamp_of(venv).touch()
    assert makerun.up_to_date(venv, pyproject, [])
    later = time.time() + 10
    os.utime(pyproject, (later, later))                                # pyproject.toml changed since
    assert not makerun.up_to_date(venv, pyproject, [])


def test_an_install_is_made_again_when_setup_py_or_a_compiled_source_changes(tmp_path):
    from orchestrator import compiled
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[project]\n")
    inputs = makerun.install_inputs(ROOT)
    assert inputs[0] == ROOT / "setup.py"
    assert {p.relative_to(ROOT).as_posix() for p in inputs[1:]} == {
        m.replace(".", "/") + ".py" for m in compiled.MODULES}
    assert all(p.exists() for p in inputs)
    venv = tmp_path / "venv"
    venv.mkdir()
    engine = tmp_path / "engine.py"
    engine.write_text("")
    makerun.stamp_of(venv).touch()
    assert makerun.up_to_date(venv, pyproject, [engine])
    later = time.time() + 10
    os.utime(engine, (later, later))                                   # a compiled source edited since
    assert not makerun.up_to_date(venv, pyproject, [engine])


def test_a_venv_without_pip_is_made_again(tmp_path):
    # What an interrupted `python -m venv` may leave: a Python, no pip.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "half")], check=True)
    assert (tmp_path / "half" / "bin" / "python").exists()
    assert not makerun.has_pip(tmp_path / "half")
    assert not makerun.has_pip(tmp_path / "none")
    assert makerun.has_pip(Path(sys.prefix))                           # the venv running these tests


def test_an_old_python_is_one_sentence(monkeypatch):
    assert makerun._too_old() is None
    monkeypatch.setattr(sys, "version_info", (3, 9, 18))
    assert makerun._too_old() == (f"{sys.executable} is Python 3.9; orchestrator needs 3.11 or newer: run make "
                                  "with PYTHON=python3.11 (or newer)")


def test_a_step_shows_its_seconds_and_how_it_ended():
    out = io.StringIO()
    with ticking("starting the broker...", out):
        pass
    assert out.getvalue().splitlines() == ["starting the broker...", "starting the broker... done in 0 s"]
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt), ticking("starting the broker...", out):
        raise KeyboardInterrupt
    assert out.getvalue().splitlines()[-1] == "starting the broker... stopped after 0 s"


def test_the_progress_line_says_which_dead_letters_are_the_demos_own():
    rates = Rates(("email",), "orch.dlq")
    assert rates.dead_letters({}) == "0"
    assert rates.dead_letters({"orch_dead_letters_total{reason=invalid_json}": 12.0}) == \
        "12 (the demo's deliberate bad events)"
    assert rates.dead_letters({"orch_dead_letters_total{reason=invalid_json}": 12.0,
                               "orch_dead_letters_total{reason=too_large}": 2.0}) == \
        "14 (12 the demo's deliberate bad events, 2 others: see orch.dlq)"
    line = rates.render({"orch_events_in_total{result=valid}": 5.0,
                         "orch_dead_letters_total{reason=invalid_json}": 3.0}, 0, 10)
    assert "| dead letters 3 (the demo's deliberate bad events) |" in line


def test_the_demo_traffic_has_one_percent_bad_events_and_checkouts():
    traffic = DemoTraffic(seed=7)
    kinds: dict[str, int] = {}
    for _ in range(20_000):
        value = traffic.next()
        try:
            kind = orjson.loads(value)["type"]
        except orjson.JSONDecodeError:
            kind = "not JSON"
        kinds[kind] = kinds.get(kind, 0) + 1
    assert 150 <= kinds["not JSON"] <= 250                            # about 1 %
    assert kinds["checkout.started"] > 1000                           # what journeys/checkout-reminder.yaml enrols
