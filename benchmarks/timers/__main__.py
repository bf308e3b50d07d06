"""``python -m benchmarks.timers [--pending N] [--burst M] [--partitions P] [--json] [--keep]``."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from benchmarks.common import RESULTS, BenchError, bootstrap, broker_reachable, delete_prefix, loadavg, machine_facts, \
    note
from benchmarks.timers import __doc__ as DOC
from benchmarks.timers.phases import BURST_WAIT_MS, LIBRARIES, Worker, run
from benchmarks.timers.report import markdown


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.timers", description=DOC.split("\n\n")[0])
    ap.add_argument("--pending", type=int, default=1_000_000, help="pending (2-day) timers to hold (default 1000000)")
    ap.add_argument("--burst", type=int, default=50_000, help="timers falling due together (default 50000)")
    ap.add_argument("--partitions", type=int, default=8, help="ORCH_PARTITIONS of the worker (default 8)")
    ap.add_argument("--gauge-timeout", type=float, default=150.0,
                    help="seconds to wait for orch_timers_pending to reach N (default 150)")
    ap.add_argument("--json", action="store_true", help="print the JSON result instead of the Markdown")
    ap.add_argument("--keep", action="store_true", help="keep the worker's topics, consumer group and data dir")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    args = ap.parse_args(argv)
    if args.pending < 1 or args.burst < 1:
        ap.error("--pending and --burst must be at least 1")
    if not broker_reachable():
        print(f"no Kafka broker at {bootstrap()}: start one (`make kafka-up`) or set ORCH_BOOTSTRAP", file=sys.stderr)
        return 2

    result: dict[str, Any] = {"benchmark": "timers", "machine": machine_facts(LIBRARIES, settle_s=0),
                              "params": {"pending": args.pending, "burst": args.burst, "partitions": args.partitions,
                                         "burst_wait_s": BURST_WAIT_MS / 1000}}
    workdir = Path(tempfile.mkdtemp(prefix="bench-timers-"))
    worker = Worker(workdir, partitions=args.partitions)
    rc = 0
    try:
        note(f"starting a worker (prefix {worker.prefix}, log {worker.log_path})")
        worker.start()
        asyncio.run(run(args, worker, result))
    except (BenchError, OSError, asyncio.TimeoutError) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        rc = 1
    except KeyboardInterrupt:
        result["error"] = "interrupted"
        rc = 130
    finally:
        t = time.monotonic()
        code = worker.stop()
        result["stop"] = {"signal": "SIGTERM", "returncode": code, "seconds": round(time.monotonic() - t, 2)}
        if args.keep:
            note(f"kept topics {worker.prefix}.*, data dir {worker.data_dir}, log {worker.log_path}")
        else:
            try:
                deleted = asyncio.run(delete_prefix(worker.prefix))
                note(f"deleted the benchmark's {len(deleted)} topics ({worker.prefix}.*)")
            except Exception as exc:  # cleanup is best effort; the numbers are what matter
                note(f"could not delete topics of {worker.prefix}: {exc}")
            if rc == 0:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                worker.remove_data()
                note(f"worker log kept: {worker.log_path}")

    result["machine"]["loadavg_at_end"] = loadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    md = markdown(result)
    (args.out / "timers.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    (args.out / "timers.md").write_text(md)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() if args.json else md)
    return rc


if __name__ == "__main__":
    sys.exit(main())
