"""`make run` on a terminal with ORCH_PARTITIONS=4 against the shared broker: the demo runs, and
Ctrl-C is a clean stop (exit 0)."""

from __future__ import annotations

import asyncio

from tests.integration.harness import BOOTSTRAP, scrape
from tests.integration.test_make_run import MakeRun, run_env
from tests.integration.test_topics import describe


def decided_traffic(text: str) -> bool:
    """The progress line counts actions of the demo's traffic."""
    return "actions out" in text and "none yet" not in text.rsplit("events in", 1)[-1]


def test_make_run_with_4_partitions_runs_and_ctrl_c_exits_0(tmp_path):
    env = run_env(tmp_path, ORCH_BOOTSTRAP=BOOTSTRAP)
    make = MakeRun(env, "DEMO_ARGS=--rate 50")
    make.until(decided_traffic)
    make.ctrl_c()
    make.assert_clean_stop()
    assert "stopping the worker" in make.text
    assert scrape(int(env["ORCH_WEB_PORT"])) is None                  # the worker is gone too
    topics = asyncio.run(describe(env["ORCH_TOPIC_PREFIX"]))
    assert topics and all(partitions == 4 for partitions, _ in topics.values()), topics
