"""The naive Quix Streams baseline: per event, one state get + set of a per-customer count, one output.

    BENCH_IN=t.events BENCH_OUT=t.out BENCH_GROUP=t-quixnaive BENCH_STATE_DIR=/tmp/d python -m benchmarks.quix_naive

What a first Quix Streams app looks like, written as its documentation shows: an ``Application``
(at-least-once, RocksDB state with its changelog topic, ``commit_interval=1.0`` like the worker's
and Faust's commit every second, ``auto_offset_reset="earliest"`` so a waiting backlog is read),
one ``StreamingDataFrame`` over the JSON events, ``sdf.apply(count, stateful=True)`` keeping the
customer's count in the state of the record's key (the customer id), and ``to_topic`` with one
small JSON record per event (customer, count, the event's ``ts``). Runs until SIGTERM (Quix stops
cleanly: it commits the checkpoint and closes its stores).

Environment: ``BENCH_BOOTSTRAP`` (``localhost:9092``), ``BENCH_IN``, ``BENCH_OUT``, ``BENCH_GROUP``,
``BENCH_STATE_DIR``.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any


def count(event: dict[str, Any], state: Any) -> dict[str, Any]:
    """One get and one set of the customer's count; the output carries the event's ``ts``."""
    n = state.get("count", 0) + 1
    state.set("count", n)
    return {"customer_id": event.get("customer_id"), "n": n, "event_ts": event.get("ts")}


def main() -> int:
    warnings.filterwarnings("ignore", message=".*httpx module is deprecated.*")   # printed on import
    from quixstreams import Application

    app = Application(
        broker_address=os.environ.get("BENCH_BOOTSTRAP", "localhost:9092"),
        consumer_group=os.environ["BENCH_GROUP"],
        auto_offset_reset="earliest",
        commit_interval=1.0,
        processing_guarantee="at-least-once",
        state_dir=os.environ["BENCH_STATE_DIR"],
        loglevel="WARNING",
    )
    events = app.topic(os.environ["BENCH_IN"], value_deserializer="json")
    out = app.topic(os.environ["BENCH_OUT"], value_serializer="json")
    sdf = app.dataframe(events)
    sdf = sdf.apply(count, stateful=True)
    sdf.to_topic(out)
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
