"""The image is whole: what deploy/Dockerfile copies is enough for the documented commands.

There is no Docker daemon here, so the image is rebuilt by hand from the Dockerfile's own text:
a folder stands for the image's root; the build stage's COPY lines copy exactly their sources
(less what deploy/Dockerfile.dockerignore leaves out of the context) to their destinations under
it; its install RUN line (a venv at /opt/orchestrator, `pip install .` from /src) is run as written
with those paths, from the regular package index (pip's cache makes it ~10 s, the compiled hot path
~40 s more; the RUN line that installs the C compiler is skipped: this machine has one); the runtime stage's
COPY lines copy the examples; its ENV becomes the environment (absolute paths moved under the
folder) and its WORKDIR the working directory. Nothing of the repository is on the path: the
commands run from the installed package, as in the image.

Checked from it: `--help` of every command in the README's command table, the baked-in examples
validated, listed, drawn and simulated, that nothing but the package is installed, and (against
the test broker) a worker that turns an event into the welcome email of the baked-in journeys.
The webhook adapter's command line is checked in tests/repo/test_deploy.py from the compose file.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

import orjson
import pytest

from orchestrator.testing.childproc import ChildProcess
from orchestrator.config import default_bootstrap
from orchestrator.testing.net import broker_reachable, free_port
from orchestrator.observability.scrape import scrape_port
from tests.repo.test_deploy import (README, ROOT, dockerfile_instructions, dockerignore_excludes,
                               runtime_stage)

PIP_TIMEOUT_S = 600


def stages() -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for ins, args in dockerfile_instructions():
        if ins == "FROM":
            out.append([])
        if out:
            out[-1].append((ins, args))
    return out


class Image:
    """A folder laid out as the image's filesystem (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, container_path: str, workdir: str = "/") -> Path:
        p = PurePosixPath(workdir) / container_path
        return self.root / str(p).lstrip("/")

    def copy(self, args: str, workdir: str) -> None:
        *sources, dest = shlex.split(args)
        target = self.path(dest, workdir)
        for source in sources:
            src = ROOT / source
            assert not dockerignore_excludes(source.rstrip("/")), f"COPY {source}: not in the build context"
            if src.is_dir():
                shutil.copytree(src, target, dirs_exist_ok=True, ignore=lambda folder, names: [
                    n for n in names if dockerignore_excludes(
                        str((Path(folder) / n).relative_to(ROOT)))])
            else:
                dst = target / src.name if dest.endswith("/") else target
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)

    def env(self) -> dict[str, str]:
        """The runtime stage's ENV, absolute paths moved under the root, ``$PATH`` from the host."""
        env = {"HOME": str(self.root / "app"), "LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"}
        for ins, args in runtime_stage():
            if ins != "ENV":
                continue
            for token in shlex.split(args):
                key, _, value = token.partition("=")
                value = value.replace("$PATH", env["PATH"])
                parts = [str(self.path(v)) if v.startswith(("/opt/", "/app", "/var/", "/etc/")) else v
                         for v in value.split(":")]
                env[key] = ":".join(parts)
        return env

    def workdir(self) -> Path:
        (wd,) = [a for ins, a in runtime_stage() if ins == "WORKDIR"][-1:]
        return self.path(wd)

    def run(self, *argv: str, timeout: float = 120, stdin: bytes | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*argv], cwd=self.workdir(), env={**self.env(), **(env or {})}, input=stdin,
                              capture_output=True, timeout=timeout)

    def orchestrator(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[bytes]:
        (entrypoint,) = [json.loads(a) for ins, a in runtime_stage() if ins == "ENTRYPOINT"][-1:]
        program = shutil.which(entrypoint[0], path=self.env()["PATH"])
        assert program and program.startswith(str(self.root)), f"{entrypoint[0]} is not the image's: {program}"
        return self.run(program, *entrypoint[1:], *args, **kw)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    img = Image(tmp_path_factory.mktemp("image"))
    build, runtime = stages()[0], stages()[-1]
    workdir = "/"
    for ins, args in build:
        if ins == "WORKDIR":
            workdir = args
            img.path(workdir).mkdir(parents=True, exist_ok=True)
        elif ins == "COPY":
            img.copy(args, workdir)
        elif ins == "RUN" and args.startswith("apt-get "):
            continue                            # the build's C compiler: this machine has its own
        elif ins == "RUN":
            # The build's install: a venv, `pip install .` and `orchestrator --help`, as written.
            steps = [[t for t in shlex.split(step) if not t.startswith(">")] for step in args.split("&&")]
            assert steps[0] == ["python", "-m", "venv", "/opt/orchestrator"], args
            for step in steps:
                if step[0] == "python":         # the base image's python: this test's interpreter
                    argv = [sys.executable, *step[1:-1], str(img.path(step[-1]))]
                else:                           # a program of the venv just made
                    argv = [str(img.path(step[0])), *step[1:]]
                proc = subprocess.run(argv, cwd=img.path(workdir), capture_output=True, timeout=PIP_TIMEOUT_S,
                                      env={**{k: v for k, v in os.environ.items() if k != "ORCH_PURE_PYTHON"},
                                           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONPATH": ""})
                assert proc.returncode == 0, f"{step}: {proc.stderr.decode()[-3000:]}"
    for ins, args in runtime:
        if ins == "COPY" and args.startswith("--from=build "):
            src, dest = shlex.split(args)[1:]
            assert img.path(src) == img.path(dest), "the venv is copied to where it was built"
        elif ins == "COPY":
            img.copy(args, "/")
        elif ins == "RUN":
            for folder in re.findall(r"mkdir -p ([^&]+)", args)[0].split():
                img.path(folder).mkdir(parents=True, exist_ok=True)
    shutil.rmtree(img.path("/src"))           # the build stage's sources are not in the image
    return img


def readme_commands() -> list[list[str]]:
    """The sub-commands of the README's command table (`orchestrator journeys validate [PATH…]` ->
    ``["journeys", "validate"]``)."""
    out = []
    for line in README.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\| `orchestrator ([^`]*)`", line)
        if not m:
            continue
        words = []
        for token in m.group(1).split():
            if token.startswith(("[", "-")) or token.isupper() or "|" in token or "\\" in token:
                break
            words.append(token)
        out.append(words)
    return out


def test_readme_table_is_read():
    commands = readme_commands()
    assert ["worker"] in commands and ["journeys", "graph"] in commands and ["kafka"] in commands
    assert len(commands) >= 10


def test_every_documented_command_answers_help_from_the_image(image):
    proc = image.orchestrator("--help")
    assert proc.returncode == 0, proc.stderr.decode()
    for words in readme_commands():
        proc = image.orchestrator(*words, "--help")
        assert proc.returncode == 0 and b"usage: orchestrator" in proc.stdout, (words, proc.stderr.decode())


def test_the_image_validates_draws_and_simulates_its_examples(image):
    proc = image.orchestrator("journeys", "validate")       # ORCH_JOURNEYS / ORCH_POLICIES of the image
    assert proc.returncode == 0, proc.stderr.decode()
    examples = sorted(p.stem for p in (ROOT / "journeys").glob("*.yaml"))
    assert proc.stdout.decode().count(": ok (") == len(examples) > 0
    listed = image.orchestrator("journeys", "list").stdout.decode()
    assert sorted(line.split("\t")[0] for line in listed.splitlines()) == examples
    drawn = image.orchestrator("journeys", "graph", "cart-recovery")
    here = subprocess.run([sys.executable, "-m", "orchestrator", "journeys", "graph", "cart-recovery"], cwd=ROOT,
                          capture_output=True, timeout=60)
    assert drawn.returncode == 0 and drawn.stdout == here.stdout
    event = {"event_id": "e-1", "customer_id": "c-1", "type": "signup.completed",
             "ts": "2026-11-23T10:00:00Z", "properties": {"plan": "pro"}}
    env = image.env()
    sim = image.orchestrator("simulate", "--journeys", env["ORCH_JOURNEYS"], "--policies", env["ORCH_POLICIES"],
                             "-", stdin=orjson.dumps(event) + b"\n")
    assert sim.returncode == 0, sim.stderr.decode()
    records = [orjson.loads(line) for line in sim.stdout.splitlines()]
    assert any(r["topic"] == "actions.email" and r["value"]["template"] == "welcome-1" for r in records), records


def test_only_the_package_is_installed(image):
    env = image.env()
    python = shutil.which("python", path=env["PATH"])
    assert python and python.startswith(str(image.root))
    probe = ("import importlib.metadata as m, json; "
             "print(json.dumps(sorted(str(f) for f in m.files('orchestrator'))))")
    proc = image.run(python, "-c", probe)
    assert proc.returncode == 0, proc.stderr.decode()
    files = orjson.loads(proc.stdout)
    scripts = [f for f in files if f.startswith("..")]                 # bin/ of the venv
    assert [PurePosixPath(f).name for f in scripts] == ["orchestrator"], scripts
    tops = {f.split("/")[0] for f in files if not f.startswith("..")}
    assert len(tops) == 2 and "orchestrator" in tops, tops        # the compiled modules' library is inside the package
    assert re.fullmatch(r"orchestrator-[\w.]+\.dist-info", (tops - {"orchestrator"}).pop()), tops
    proc = image.orchestrator("--version")
    assert proc.returncode == 0 and b"hot path compiled (mypyc)" in proc.stdout, proc.stdout + proc.stderr
    for absent in ("benchmarks", "tests", "deploy"):
        proc = image.run(python, "-c", f"import importlib.util as u; print(u.find_spec({absent!r}) is None)")
        assert proc.stdout.strip() == b"True", f"{absent} is importable in the image"


@pytest.mark.integration
async def test_the_image_worker_turns_an_event_into_an_action(image, tmp_path):
    from tests.integration.harness import dumps, event, produce, read_all
    if not broker_reachable():
        pytest.fail(f"no Kafka broker at {default_bootstrap()}: run `make test` (it starts one) or `make kafka-up` "
                    "first", pytrace=False)
    env = image.env()
    (entrypoint,) = [json.loads(a) for ins, a in runtime_stage() if ins == "ENTRYPOINT"][-1:]
    (cmd,) = [json.loads(a) for ins, a in runtime_stage() if ins == "CMD"][-1:]     # the worker
    program = shutil.which(entrypoint[0], path=env["PATH"])
    prefix, port = f"img-{uuid.uuid4().hex[:8]}", free_port()
    worker = ChildProcess([program, *entrypoint[1:], *cmd], {
        **env, "ORCH_BOOTSTRAP": default_bootstrap(), "ORCH_TOPIC_PREFIX": prefix, "ORCH_PARTITIONS": "2",
        "ORCH_WEB_HOST": "127.0.0.1", "ORCH_WEB_PORT": str(port)}, tmp_path / "image-worker.log")
    worker.env["ORCH_DATA_DIR"] = str(tmp_path / "data")    # the image's folder is per container
    worker.start()
    try:
        deadline = time.monotonic() + 120
        while scrape_port(port) is None:
            assert worker.exit_code() is None, worker.log_tail()
            assert time.monotonic() < deadline, f"image worker not ready:\n{worker.log_tail()}"
            await asyncio.sleep(0.2)
        await produce(f"{prefix}.events", [(b"c-img", dumps(event("c-img", "signup.completed",
                                                                    props={"plan": "pro"})))])
        records = await read_all([f"{prefix}.actions.email"], until=lambda rs: len(rs) >= 1, timeout_s=90)
        assert records[0]["value"]["template"] == "welcome-1" and records[0]["value"]["journey"] == "welcome"
    finally:
        assert worker.stop(signal.SIGTERM, 60) == 0, worker.log_tail()
