"""aiokafka's group-coordinator lines about normal group life become one line per episode
(orchestrator/observability/logs.py), fed here with aiokafka 0.14's own format strings."""

from __future__ import annotations

import logging

import pytest

from orchestrator.observability.logs import CoordinatorWait

GROUP = "orch-orchestrator"
# aiokafka/consumer/group_coordinator.py, as it logs them (format, args)
COMMIT_REFUSED = ("OffsetCommit failed for group %s due to group error (%s), will rejoin",
                  (GROUP, f"[Error 25] UnknownMemberIdError: {GROUP}"))
COMMIT_REBALANCING = ("OffsetCommit failed for group %s due to group error (%s), will rejoin",
                      (GROUP, f"[Error 27] RebalanceInProgressError: {GROUP}"))
HEARTBEAT_UNKNOWN = ("Heartbeat failed: local member_id was not recognized; resetting and re-joining group", ())
SESSION_EXPIRED = ("Heartbeat session expired - marking coordinator dead", ())
COORDINATOR_DEAD = ("Marking the coordinator dead (node %s)for group %s.", (1, GROUP))
COORDINATOR_WAIT = ("Group Coordinator Request failed: %s", ("[Error 15] GroupCoordinatorNotAvailableError",))


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def log():
    logger = logging.Logger("aiokafka.consumer.group_coordinator")
    wait = CoordinatorWait()
    logger.addFilter(wait)
    captured = Captured()
    logger.addHandler(captured)

    def emit(level: int, line: tuple[str, tuple]) -> None:
        logger.log(level, line[0], *line[1])

    emit.filter, emit.records = wait, captured.records
    return emit


def shown(records: list[logging.LogRecord]) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in records]


def test_a_refused_commit_per_partition_and_the_heartbeat_are_one_warning(log):
    log.filter.joined()
    for _ in range(8):                                   # one per partition
        log(logging.ERROR, COMMIT_REFUSED)
    log(logging.WARNING, HEARTBEAT_UNKNOWN)
    log(logging.ERROR, SESSION_EXPIRED)
    log(logging.WARNING, COORDINATOR_DEAD)
    [(level, text)] = shown(log.records)
    assert level == "WARNING"
    assert text.startswith("the consumer group dropped this worker (UnknownMemberIdError")
    assert "replays what it had not committed" in text


def test_a_stall_seen_first_by_the_heartbeat_is_the_same_one_warning(log):
    log.filter.joined()
    log(logging.WARNING, HEARTBEAT_UNKNOWN)
    log(logging.ERROR, SESSION_EXPIRED)
    log(logging.WARNING, COORDINATOR_DEAD)
    log(logging.ERROR, COMMIT_REFUSED)
    assert [level for level, _ in shown(log.records)] == ["WARNING"]


def test_a_rebalance_overtaking_a_commit_is_one_info_line(log):
    log.filter.joined()
    for _ in range(4):
        log(logging.ERROR, COMMIT_REBALANCING)
    [(level, text)] = shown(log.records)
    assert level == "INFO" and text.startswith("the consumer group rebalanced before this worker's offset commit")


def test_each_episode_is_told_once_the_worker_has_its_partitions_again(log):
    log.filter.joined()
    log(logging.ERROR, COMMIT_REFUSED)
    log(logging.ERROR, COMMIT_REFUSED)
    log.filter.joined()                                  # partitions assigned again
    log(logging.ERROR, COMMIT_REFUSED)
    assert [level for level, _ in shown(log.records)] == ["WARNING", "WARNING"]


def test_other_lines_pass_as_aiokafka_logs_them(log):
    log.filter.joined()
    log(logging.WARNING, COORDINATOR_DEAD)                    # the coordinator went away: a real problem
    log(logging.ERROR, ("OffsetCommit failed for group %s - %s", (GROUP, "GroupAuthorizationFailedError")))
    assert shown(log.records) == [("WARNING", f"Marking the coordinator dead (node 1)for group {GROUP}."),
                                  ("ERROR", f"OffsetCommit failed for group {GROUP} - GroupAuthorizationFailedError")]


def test_before_the_first_join_the_coordinator_wait_is_one_info_line(log):
    log(logging.ERROR, COORDINATOR_WAIT)
    log(logging.WARNING, COORDINATOR_DEAD)
    log(logging.ERROR, COORDINATOR_WAIT)
    [(level, text)] = shown(log.records)
    assert level == "INFO" and text.startswith("waiting for Kafka's group coordinator")
