"""What ``make run`` and ``make venv`` run with the system Python, before ``.venv`` exists (so the
standard library only)::

    python3 -m orchestrator.admin.makerun install --venv .venv          # make venv
    python3 -m orchestrator.admin.makerun run --venv .venv -- ARGS...   # make run: install if needed, then
                                                                        # `orchestrator demo ARGS...`

**Ctrl-C under make.** A Ctrl-C reaches the terminal's foreground process group, and make is in it:
make then dies of SIGINT and reports an interrupt, whatever its child does. So ``run`` first moves
itself into a process group of its own and makes it the terminal's foreground (:func:`take_terminal`):
from then on Ctrl-C reaches only ``run`` and what it started (pip, the demo), each stops cleanly, and
``run`` exits 0, a requested stop, so make says nothing. The demo does the same for itself and its
worker and broker (:mod:`orchestrator.admin.demo`).

**The install** (one line per step): ``.venv`` is created when it has no working pip (also after a
creation that was interrupted), the package is installed with its test dependencies, and only then is
``.venv/.installed`` touched. A stamp older than ``pyproject.toml`` (or ``setup.py``, or a source the
install compiles: orchestrator/compiled.py), or none, means "install again",
as the Makefile's rule says; an interrupted install leaves the stamp as it was, so the next
``make run`` installs again instead of trusting a half-installed ``.venv``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from orchestrator.observability.progress import ticking

MIN_PYTHON = (3, 11)


def _set_foreground(fd: int, pgrp: int) -> None:
    """``tcsetpgrp`` from a process group that may be in the background (which SIGTTOU would stop)."""
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(fd, pgrp)
    finally:
        signal.signal(signal.SIGTTOU, previous)


def take_terminal() -> Callable[[], None]:
    """Make Ctrl-C reach this process (and its children) only; returns the function that gives the
    terminal back.

    Under make, this process shares make's process group, so Ctrl-C interrupts make too and make
    reports "*** [run] Interrupt" for what was a requested stop. In a group of its own, in the
    terminal's foreground, this process alone gets Ctrl-C. Nothing changes without a terminal, or
    when the process already leads its own group (started from a shell).
    """
    def nothing() -> None:
        return None

    try:
        fd = sys.stdin.fileno()
        if not os.isatty(fd) or os.getpgrp() == os.getpid() or os.tcgetpgrp(fd) != os.getpgrp():
            return nothing
        previous = os.getpgrp()
        os.setpgid(0, 0)
        _set_foreground(fd, os.getpgrp())
    except (OSError, ValueError):
        return nothing

    def give_back() -> None:
        with contextlib.suppress(OSError):
            _set_foreground(fd, previous)
    return give_back


def stamp_of(venv: Path) -> Path:
    return venv / ".installed"


def install_inputs(root: Path = Path(".")) -> list[Path]:
    """What the install is made from besides ``pyproject.toml``: ``setup.py`` and the sources it
    compiles (orchestrator/compiled.py), as the Makefile's rule lists them."""
    from orchestrator import compiled
    return [root / "setup.py", *(compiled.source_of(m, root / "orchestrator") for m in compiled.MODULES)]


def up_to_date(venv: Path, pyproject: Path = Path("pyproject.toml"), others: list[Path] | None = None) -> bool:
    """The Makefile's rule: the stamp exists and is not older than ``pyproject.toml``, ``setup.py`` or a
    source the install compiles."""
    try:
        stamp = stamp_of(venv).stat().st_mtime
        return all(stamp >= p.stat().st_mtime for p in [pyproject, *(install_inputs() if others is None else others)])
    except OSError:
        return False


def has_pip(venv: Path) -> bool:
    """Whether ``venv``'s Python runs and has pip (an interrupted ``python -m venv`` may leave a
    Python without pip)."""
    try:
        return subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "--version"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, check=False).returncode == 0
    except OSError:
        return False


class StepFailed(Exception):
    """A step of the install exited non-zero; ``str()`` says which, and its output was printed."""


def _step(text: str, argv: list[str]) -> None:
    """Run ``argv`` as one step, shown with its seconds; its output is printed only if it fails (a
    Ctrl-C reaches it too, and what it prints then is noise)."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            with ticking(text):
                code = proc.wait()
        except KeyboardInterrupt:
            proc.wait()                      # it had the Ctrl-C too: let it finish stopping
            raise
        if code != 0:
            out.seek(0)
            sys.stdout.write(out.read().decode(errors="replace"))
            raise StepFailed(f"{' '.join(argv[:4])}... exited with {code}")


def install(venv: Path, python: str) -> None:
    """Create ``venv`` if it has no working pip, install the package with its test dependencies,
    then touch the stamp (only then)."""
    if not has_pip(venv):
        _step(f"creating the virtual environment {venv}...", [python, "-m", "venv", str(venv)])
    _step(f"installing orchestrator and its dependencies into {venv} with pip...",
          [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "-e", ".[test]"])
    stamp_of(venv).touch()


def _too_old() -> str | None:
    if sys.version_info >= MIN_PYTHON:
        return None
    return (f"{sys.executable} is Python {sys.version_info[0]}.{sys.version_info[1]}; orchestrator needs "
            f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer: run make with PYTHON=python3.11 (or newer)")


def cmd_install(args: argparse.Namespace) -> int:
    """``make venv`` (and every target that needs it)."""
    try:
        install(args.venv, args.python)
    except StepFailed as exc:
        print(f"the install failed ({exc}); fix what it printed above and run it again", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130                           # make stops too; the stamp was not touched
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """``make run``: the terminal, the install if needed, then the demo; 0 after a Ctrl-C."""
    give_back = take_terminal()
    try:
        if not up_to_date(args.venv):
            print(f"setting up {args.venv} (the first time, and again when pyproject.toml, setup.py or a "
                  "compiled source changes)")
            install(args.venv, args.python)
        # The demo stops what it started on Ctrl-C and says so; this process only waits for it.
        interrupted: list[int] = []
        signal.signal(signal.SIGINT, lambda *_: interrupted.append(1))
        demo = subprocess.run([str(args.venv / "bin" / "orchestrator"), "demo", *args.demo_args], check=False)
        if interrupted and demo.returncode in (0, 130, -signal.SIGINT):
            return 0                         # a Ctrl-C before the demo took the terminal for itself
        return demo.returncode
    except KeyboardInterrupt:
        print("\nstopped before the demo started; nothing is left running, and the next `make run` installs "
              "whatever is missing")
        return 0
    except StepFailed as exc:
        print(f"the install failed ({exc}); fix what it printed above and run `make run` again", file=sys.stderr)
        return 1
    finally:
        give_back()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m orchestrator.admin.makerun",
                                description="make venv and make run, before .venv exists")
    sub = p.add_subparsers(dest="command", required=True)
    for name, fn in (("install", cmd_install), ("run", cmd_run)):
        s = sub.add_parser(name)
        s.add_argument("--venv", type=Path, default=Path(".venv"))
        s.add_argument("--python", default=sys.executable, help="the Python that creates the venv")
        if name == "run":
            s.add_argument("demo_args", nargs="*", metavar="DEMO_ARG", help="passed to `orchestrator demo`")
        s.set_defaults(fn=fn)
    args = p.parse_args(argv)
    problem = _too_old()
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
