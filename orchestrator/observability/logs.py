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
    """aiokafka's lines while Kafka's group coordinator is not available yet, made one INFO line.

    On a broker's first start (or a new consumer group's first join) the coordinator answers
    GroupCoordinatorNotAvailableError until Kafka has created its offsets topic: aiokafka logs about
    a dozen ERROR and WARNING lines for what is a normal wait. Until the worker has joined its group
    (:meth:`joined`), the first such line becomes one INFO line and the rest are dropped; after
    that, a coordinator going away is a real problem and is logged as aiokafka says.
    """

    MARKERS = ("GroupCoordinatorNotAvailableError", "CoordinatorNotAvailableError", "Marking the coordinator dead")

    def __init__(self) -> None:
        super().__init__()
        self.settled = False
        self.told = False

    def joined(self) -> None:
        self.settled = True

    def filter(self, record: logging.LogRecord) -> bool:
        if self.settled or not any(m in record.getMessage() for m in self.MARKERS):
            return True
        if self.told:
            return False
        self.told = True
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.msg, record.args = ("waiting for Kafka's group coordinator (GroupCoordinatorNotAvailableError, "
                                   "normal while a broker starts or a group first joins)", ())
        return True


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
