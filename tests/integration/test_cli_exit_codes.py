"""Exit codes scripts rely on, on the real broker: `kafka status` says whether the broker is up,
`journeys diff --exit-code` uses diff(1)'s codes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import orjson

from tests.integration.harness import HERE, cli_env, free_port


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_kafka_status_exits_0_when_the_cluster_of_orch_bootstrap_answers_and_1_when_not(tmp_path: Path):
    up = cli(cli_env("unused", ORCH_HOME=str(tmp_path)), "kafka", "status")
    assert up.returncode == 0, up.stderr
    assert orjson.loads(up.stdout)["orch_bootstrap_answers"] is True
    down = cli(cli_env("unused", ORCH_HOME=str(tmp_path), ORCH_BOOTSTRAP=f"127.0.0.1:{free_port()}"), "kafka", "status")
    assert down.returncode == 1 and orjson.loads(down.stdout)["orch_bootstrap_answers"] is False, down


def test_journeys_diff_exit_code_is_0_same_1_different_2_trouble(tmp_path: Path):
    env = cli_env(f"it-{uuid.uuid4().hex[:10]}")
    assert cli(env, "journeys", "publish", str(HERE / "journeys")).returncode == 0
    same = cli(env, "journeys", "diff", "--exit-code", str(HERE / "journeys"))
    assert same.returncode == 0, same.stdout + same.stderr

    changed = tmp_path / "changed"
    shutil.copytree(HERE / "journeys", changed)
    welcome = changed / "it-welcome.yaml"
    welcome.write_text(welcome.read_text().replace("version: 1", "version: 2", 1))
    differs = cli(env, "journeys", "diff", "--exit-code", str(changed))
    assert differs.returncode == 1, differs.stdout + differs.stderr       # as git diff --exit-code
    assert "+version: 2" in differs.stdout
    assert cli(env, "journeys", "diff", str(changed)).returncode == 0    # without --exit-code: no difference in codes

    (changed / "broken.yaml").write_text("journey: broken\nversion: 1\nnodes: {\n")
    trouble = cli(env, "journeys", "diff", "--exit-code", str(changed))
    assert trouble.returncode == 2 and "broken.yaml" in trouble.stderr, trouble.stderr
    unreachable = cli(cli_env("x", ORCH_BOOTSTRAP=f"127.0.0.1:{free_port()}"), "journeys", "diff", "--exit-code",
                      str(HERE / "journeys"))
    assert unreachable.returncode == 2 and "cannot reach Kafka" in unreachable.stderr, unreachable.stderr
    shadow = cli(env, "journeys", "diff", "--shadow", "it-welcome", "--exit-code")
    assert shadow.returncode == 2 and "--exit-code" in shadow.stderr and shadow.stderr.count("\n") == 1, shadow
