"""Logging setup: text or one JSON object per line (``ORCH_LOG_FORMAT=json``).

Log messages never carry customer ids or event contents; they name event types,
partitions and counts.
"""

from __future__ import annotations

import logging
import sys
import time

import orjson


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
                "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(data).decode()


class CoordinatorWait(logging.Filter):
    """aiokafka's group coordinator lines about normal group life, one line per episode.

    - **Waiting for the coordinator.** On a broker's first start (or a new consumer group's first
      join) the coordinator answers GroupCoordinatorNotAvailableError until Kafka has created its
      offsets topic: aiokafka logs about a dozen ERROR and WARNING lines for what is a normal wait.
      Until the worker has joined its group (:meth:`joined`), the first such line becomes one INFO
      line and the rest are dropped; after that, a coordinator going away is a real problem and is
      logged as aiokafka says.
    - **Dropped by the group.** A member that sends no heartbeat for the session timeout is removed
      from the group (aiokafka sends none while the worker restores its partitions on its first
      assignment, so a long restore after a restart does it; so does a stalled process). aiokafka
      then logs an ERROR per partition for the refused offset commit (UnknownMemberIdError) and
      more for the heartbeat, and rejoins; a rebalance that overtakes a commit
      (RebalanceInProgressError, IllegalGenerationError) does the same. The worker gets its
      partitions back and replays what it had not committed, deciding nothing twice (see
      docs/operations.md). The first line becomes one WARNING (dropped) or INFO (rebalance) that
      says so; the others are dropped until the worker is assigned partitions again.
    """

    MARKERS = ("GroupCoordinatorNotAvailableError", "CoordinatorNotAvailableError", "Marking the coordinator dead")
    DROPPED = ("UnknownMemberIdError", "local member_id was not recognized", "Heartbeat session expired")
    REBALANCED = ("RebalanceInProgressError", "IllegalGenerationError", "generation id is not")

    def __init__(self) -> None:
        super().__init__()
        self.settled = False
        self.told = False
        self.rejoining = False

    def joined(self) -> None:
        self.settled = True
        self.rejoining = False

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.settled:
            return self._after_join(record, message)
        if not any(m in message for m in self.MARKERS):
            return True
        if self.told:
            return False
        self.told = True
        self._rewrite(record, logging.INFO, "waiting for Kafka's group coordinator (GroupCoordinatorNotAvailableError, "
                                            "normal while a broker starts or a group first joins)")
        return True

    def _after_join(self, record: logging.LogRecord, message: str) -> bool:
        dropped = any(m in message for m in self.DROPPED)
        rebalanced = not dropped and any(m in message for m in self.REBALANCED)
        if not (dropped or rebalanced or (self.rejoining and any(m in message for m in self.MARKERS))):
            return True
        if self.rejoining:
            return False
        self.rejoining = True
        if dropped:
            self._rewrite(record, logging.WARNING,
                          "the consumer group dropped this worker (UnknownMemberIdError: no heartbeat within the "
                          "session timeout, as during a restore that long after a restart, or a stalled process); "
                          "it rejoins and replays what it had not committed, deciding nothing twice")
        else:
            self._rewrite(record, logging.INFO,
                          "the consumer group rebalanced before this worker's offset commit; it rejoins and "
                          "replays what it had not committed, deciding nothing twice")
        return True

    @staticmethod
    def _rewrite(record: logging.LogRecord, level: int, text: str) -> None:
        record.levelno, record.levelname = level, logging.getLevelName(level)
        record.msg, record.args = text, ()


COORDINATOR_WAIT = CoordinatorWait()


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka",):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    if COORDINATOR_WAIT not in coordinator.filters:
        coordinator.addFilter(COORDINATOR_WAIT)
