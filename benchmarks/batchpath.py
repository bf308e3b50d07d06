"""The worker's batch path in one process, without a broker: what a worker spends per event besides
the Kafka client and the event loop's network I/O.

    python -m benchmarks.batchpath [--events N] [--batch B] [--partitions P]
    python -m benchmarks.batchpath --against REV [--rounds R]      # two trees, alternating
    python -m benchmarks.batchpath --against FOLDER                # a tree as it is (compiled or not)
    python -m benchmarks.batchpath --instructions [--against REV]  # instructions per event (valgrind)

The load benchmark's backlog (:mod:`benchmarks.workload`, deterministic: seeded, fixed event ids,
timestamps on a virtual clock ending just before now, so ``max_event_age`` enrols as in a live run)
is cut into consumer records as aiokafka's ``getmany`` returns them in a drain (see
:func:`getmany_batches`: each partition's fetched chunks, partition after partition, up to
``--batch`` records a batch, by default the worker's ``BATCH_MAX``), each event in the partition of
its customer (murmur2, as the load benchmark produces), so none takes the re-keying hop. They run
through the worker's own objects: :class:`Decider` (steps 1-2: validation, duplicate window, the
engine, outputs, changelog and journal records) and :class:`Checkpoint` (steps 3-5: the states,
journals and duplicate-window keys into RocksDB), with real RocksDB stores in a temporary folder and
a producer that takes the records into aiokafka's own batches (``create_batch``/``append``) and
acknowledges them at once, so nothing leaves the process.

Reported: CPU seconds of the process (``time.process_time``) per 1,000 events, events/s of one
core, and what was produced. With ``--against REV``, fresh subprocesses of ``REV`` (a temporary
``git worktree``, which runs plain Python: nothing compiled it; or a folder holding a tree, used as it
is) and this tree take turns ``--rounds`` times on the same backlog, so a drift of
the machine's speed hits both alike; the medians, their ratio and the load average are printed.
Before the timed rounds, one untimed run of each tree digests what it sent to the output topics
(:func:`outputs_digest`); the command exits 1 if the two differ (``--digest`` alone prints this
tree's). A revision must have this tree's Decider and Checkpoint signatures.

``--instructions`` counts instructions instead of timing, for changes too small for CPU time on a
machine whose speed drifts (repeatable to about 1 %): each tree runs the first third of the backlog
and the whole of it under valgrind's cachegrind (``--events``, default 12,000; valgrind must be on
``PATH``), and the difference of the two counts divided by the difference of the events is its
instructions per event: startup and loading cancel out; what the process does per event remains,
this benchmark's own cutting of records into batches included (the same for both trees). It does not
compare the trees' outputs; the timed mode does.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FETCH_BYTES = 1024 * 1024          # the worker consumer's max_partition_fetch_bytes
RECORD_OVERHEAD = 20               # bytes of a record's framing in a fetched record batch, about


# ------------------------------------------------------------------------------------- any tree
class _Producer:
    """What the batch path calls on an aiokafka producer, acknowledged at once: records go into
    aiokafka's own batch builder (its cost is the client's part of the path) and are counted; with
    ``keep`` (untimed runs only) the records of each batch are also read back from the bytes it
    built, as the broker would receive them, for :func:`outputs_digest`."""

    def __init__(self, keep: bool = False) -> None:
        from aiokafka.producer.message_accumulator import BatchBuilder

        from orchestrator.runtime.worker import PRODUCER

        self._builder = lambda: BatchBuilder(PRODUCER["max_batch_size"], 0)
        self.keep = keep
        self.ends: dict[tuple[str, int], int] = {}
        self.records = 0
        self.bytes = 0
        self.by_topic: dict[str, int] = {}
        self.kept: list[tuple[str, int, list[tuple[bytes | None, bytes | None]]]] = []

    def create_batch(self) -> Any:
        return self._builder()

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future:
        from aiokafka import TopicPartition
        from aiokafka.record.default_records import DefaultRecordBatch
        from aiokafka.structs import RecordMetadata
        count = batch.record_count()
        built = batch._build()                 # as the sender does when it takes the batch
        self.bytes += len(built)
        first = self.ends.get((topic, partition), 0)
        self.ends[(topic, partition)] = first + count
        self.records += count
        self.by_topic[topic] = self.by_topic.get(topic, 0) + count
        if self.keep:
            self.kept.append((topic, partition, [(r.key, r.value) for r in DefaultRecordBatch(bytes(built))]))
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        fut.set_result(RecordMetadata(topic, partition, TopicPartition(topic, partition), first, -1, 0, 0))
        return fut


def outputs_digest(kept: list[tuple[str, int, list[tuple[bytes | None, bytes | None]]]]) -> str:
    """SHA-256 of every record the batch path sent to an output topic (actions, suppressions,
    decisions, dead letters; not the internal topics), in each topic partition's order, each value as
    canonical JSON without what the wall clock stamps (an action's ``decided_at``, a dead letter's
    ``ts``)."""
    import hashlib
    h = hashlib.sha256()
    for topic, partition, records in sorted(kept, key=lambda t: (t[0], t[1])):     # stable: send order kept
        if ".internal." in topic:
            continue
        for key, value in records:
            doc = orjson.loads(value or b"null")
            if isinstance(doc, dict):
                doc.pop("decided_at", None)
                if topic.endswith(".dlq"):
                    doc.pop("ts", None)
            h.update(b"%s|%d|%s|%s\n" % (topic.encode(), partition, key or b"",
                                          orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)))
    return "sha256:" + h.hexdigest()


def getmany_batches(lines: list[bytes], topic: str, partitions: int, batch: int) -> list[dict[Any, list[Any]]]:
    """The consumer records of ``lines`` (JSON events keyed by their customer, each in its customer's
    murmur2 partition), cut into batches as aiokafka's ``getmany(max_records=batch)`` returns them in
    a drain: each partition's records come in fetched chunks of up to the worker consumer's
    ``max_partition_fetch_bytes``; a batch takes chunks partition after partition, until it holds
    ``batch`` records (the rest of a chunk waits for the next batch)."""
    from aiokafka import TopicPartition
    from aiokafka.structs import ConsumerRecord

    from orchestrator.kafkaio.clients import partition_for

    chunks: list[list[list[tuple[bytes, bytes]]]] = [[] for _ in range(partitions)]
    size = [FETCH_BYTES] * partitions
    for line in lines:
        key = orjson.loads(line)["customer_id"].encode()
        p = partition_for(key, partitions)
        n = len(key) + len(line) + RECORD_OVERHEAD
        if size[p] + n > FETCH_BYTES:
            chunks[p].append([])
            size[p] = 0
        size[p] += n
        chunks[p][-1].append((key, line))
    offsets = [0] * partitions
    batches: list[dict[Any, list[Any]]] = []
    by_tp: dict[Any, list[Any]] = {}
    room = batch
    for i in range(max(map(len, chunks), default=0)):      # one fetch round: a chunk of every partition
        for p in range(partitions):
            chunk = chunks[p][i] if i < len(chunks[p]) else []
            while chunk:
                take, chunk = chunk[:room], chunk[room:]
                by_tp.setdefault(TopicPartition(topic, p), []).extend(
                    ConsumerRecord(topic, p, offsets[p] + j, 0, 0, key, line, None, len(key), len(line), ())
                    for j, (key, line) in enumerate(take))
                offsets[p] += len(take)
                room -= len(take)
                if room == 0:
                    batches.append(by_tp)
                    by_tp, room = {}, batch
    if by_tp:
        batches.append(by_tp)
    return batches


async def _drive(lines: list[bytes], journeys: Path, policies: Path, *, partitions: int, batch: int,
                 data_dir: str, digest: bool = False) -> dict[str, Any]:
    import gc

    from orchestrator.config import Settings
    from orchestrator.core import Engine, JourneySet, load_journey_dir, load_policies
    from orchestrator.observability.metrics import Metrics
    from orchestrator.runtime.batch import Decider
    from orchestrator.runtime.checkpoint import Checkpoint
    from orchestrator.runtime.counters import Counters
    from orchestrator.runtime.dedup import DedupStores
    try:
        from orchestrator.runtime.window import Window
    except ImportError:              # a revision whose window lived with the stores
        from orchestrator.runtime.dedup import Window  # type: ignore[attr-defined,no-redef]
    from orchestrator.runtime.eventtime import Clocks
    from orchestrator.runtime.ingest import IngestRules
    from orchestrator.runtime.store import Stores
    try:
        from orchestrator.runtime.worker import collect_garbage
    except ImportError:              # a revision whose worker left the collector its automatic runs
        collect_garbage = None

    settings = Settings(topic_prefix="bp", partitions=partitions, data_dir=data_dir, producer_partitioner="murmur2")
    pol = load_policies(str(policies))
    loaded, problems = load_journey_dir(str(journeys), channels=pol.channels)
    if problems:
        raise SystemExit("journeys refused: " + "; ".join(problems))
    engine = Engine(JourneySet(loaded), pol)
    stores = Stores(settings.data_dir)
    window = Window(DedupStores(settings.data_dir, stores.memory))
    producer = _Producer(keep=digest)
    ready = set(range(partitions))

    async def commit(offsets: dict) -> None:
        return None

    def fail(exc: BaseException) -> Any:
        raise exc

    async def send_seen(seen: dict[int, bytes]) -> dict[int, int]:
        out = {}
        for p, blob in seen.items():
            out[p] = producer.ends.get((settings.topics.dedup_changelog, p), 0)
            producer.ends[(settings.topics.dedup_changelog, p)] = out[p] + 1
            producer.records += 1
            producer.bytes += len(blob)
        return out

    checkpoint = Checkpoint(stores, commit, ready, fail, on_ticks_done=lambda keys: None,
                            on_timer_indexed=lambda p, key: None, window=window, send_seen=send_seen)
    names = {settings.topics.suffix(name): name for name in settings.topics.outputs(pol.channels)}
    counts = {name: partitions for name in [*names.values(), settings.topics.internal_events,
                                            settings.topics.changelog, settings.topics.dedup_changelog]}
    decider = Decider(settings.topics, IngestRules.of(settings), engine, stores,
                      Counters(Metrics(pol.channels), pol.channels), checkpoint, producer, names, counts, fail,
                      Clocks(settings.topics.events), window)
    for p in ready:
        decider.adopt(p, stores.get(p), {})

    batches = getmany_batches(lines, settings.topics.events, partitions, batch)

    runner = asyncio.ensure_future(checkpoint.run())
    gc.collect()
    gc.freeze()                      # as the worker does once it has started
    if collect_garbage is None:
        from orchestrator.runtime.worker import GC_YOUNG
        gc.set_threshold(GC_YOUNG, 50, 100)
    else:
        gc.disable()
    cpu, wall = time.process_time(), time.perf_counter()
    for records in batches:
        await checkpoint.hand_over(await decider.run(records, ready))
        if collect_garbage is not None:
            collect_garbage()
    await checkpoint.drain()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    gc.unfreeze()
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    if checkpoint.failed is not None:
        raise SystemExit(f"the checkpoint failed: {checkpoint.failed!r}")
    stores.close()
    window.stores.close()
    n = len(lines)
    if digest:
        return {"events": n, "batch": batch, "outputs_digest": outputs_digest(producer.kept), "by_topic": producer.by_topic}
    return {"events": n, "batch": batch, "batches": len(batches), "cpu_s": round(cpu, 4), "wall_s": round(wall, 4),
            "cpu_s_per_1k": round(cpu / n * 1000, 5), "events_per_s": round(n / cpu, 1),
            "records_out": producer.records, "bytes_out": producer.bytes,
            "changelog_records_per_event": round(producer.by_topic.get(settings.topics.changelog, 0) / n, 4),
            "by_topic": producer.by_topic}


def time_batch_path(lines: list[bytes], journeys: Path, policies: Path, *, partitions: int = 8,
                    batch: int | None = None, digest: bool = False) -> dict[str, Any]:
    """Run the backlog ``lines`` through the batch path once, with fresh stores, in batches of up to
    ``batch`` records (default: the worker's own ``BATCH_MAX``); with ``digest``, untimed, for the
    :func:`outputs_digest` of what it sent."""
    if batch is None:
        from orchestrator.runtime.worker import BATCH_MAX
        batch = BATCH_MAX
    with tempfile.TemporaryDirectory(prefix="batchpath-") as data_dir:
        return asyncio.run(_drive(lines, journeys, policies, partitions=partitions, batch=batch, data_dir=data_dir,
                                  digest=digest))


def _time_main(args: argparse.Namespace) -> int:
    import orchestrator
    if args.expect_tree and not Path(orchestrator.__file__).resolve().is_relative_to(Path(args.expect_tree).resolve()):
        print(f"imported orchestrator from {orchestrator.__file__}, not from {args.expect_tree}", file=sys.stderr)
        return 2
    lines = Path(args.time).read_bytes().splitlines()
    print(orjson.dumps(time_batch_path(lines, Path(args.journeys), Path(args.policies), partitions=args.partitions,
                                       batch=args.batch, digest=args.digest)).decode())
    return 0


def _time_argv(path: Path, journeys: Path, policies: Path, args: argparse.Namespace) -> list[str]:
    """The arguments of one ``--time`` run of a tree over the backlog at ``path``."""
    return ["--time", str(path), "--journeys", str(journeys), "--policies", str(policies),
            "--partitions", str(args.partitions), *(["--batch", str(args.batch)] if args.batch else [])]


def instruction_count(valgrind_stderr: str) -> int:
    """The ``I refs`` total of a cachegrind run's summary (``==123== I   refs:      3,450,462,737``)."""
    for line in valgrind_stderr.splitlines():
        _, sep, rest = line.partition("I   refs:")
        if sep:
            return int(rest.strip().replace(",", ""))
    raise ValueError("no 'I refs' line in valgrind's output (was it run with --tool=cachegrind?)")


def per_event(small: tuple[int, int], big: tuple[int, int]) -> float:
    """Instructions per event from two runs, ``(events, instructions)`` each: the difference of the counts
    over the difference of the events, so what every run pays once (startup, loading) cancels out."""
    (n1, i1), (n2, i2) = small, big
    if n2 <= n1:
        raise ValueError("the bigger run needs more events than the smaller one")
    return (i2 - i1) / (n2 - n1)


def _instructions(tree: Path, paths: list[tuple[int, Path]], journeys: Path, policies: Path,
                  args: argparse.Namespace) -> float:
    """Instructions per event of ``tree``'s batch path, from a cachegrind run per backlog in ``paths``."""
    import os
    import shutil
    import subprocess
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--instructions needs valgrind on PATH (Debian/Ubuntu: apt-get install valgrind)")
    counts = []
    for n, path in paths:
        done = subprocess.run(
            [valgrind, "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null", sys.executable,
             str(Path(__file__).resolve()), *_time_argv(path, journeys, policies, args), "--expect-tree", str(tree)],
            cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the batch path under valgrind in {tree} failed:\n{done.stderr.strip()[-2000:]}")
        counts.append((n, instruction_count(done.stderr)))
    return per_event(counts[0], counts[1])


def _instructions_main(lines: list[bytes], tmp: Path, journeys: Path, policies: Path,
                       args: argparse.Namespace) -> int:
    from benchmarks.common import checkout, loadavg
    big = len(lines)
    paths = []
    for n in (big // 3, big):
        path = tmp / f"backlog-{n}.jsonl"
        path.write_bytes(b"".join(line + b"\n" for line in lines[:n]))
        paths.append((n, path))
    result: dict[str, Any] = {"events": [n for n, _ in paths], "batch": args.batch or "BATCH_MAX",
                              "instructions_per_event": {"this": round(_instructions(ROOT, paths, journeys, policies,
                                                                                      args))}}
    if args.against:
        with checkout(args.against, tmp / "tree") as other:
            result["instructions_per_event"]["against"] = round(_instructions(other, paths, journeys, policies, args))
        result["ratio_this_to_against"] = round(result["instructions_per_event"]["this"]
                                                / result["instructions_per_event"]["against"], 4)
    result["load_average"] = loadavg()
    if args.json:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    else:
        ipe = result["instructions_per_event"]
        print(f"batch path, instructions per event ({paths[0][0]:,} and {big:,} events, batches of up to "
              f"{result['batch']}): this {ipe['this']:,}"
              + (f" / {args.against} {ipe['against']:,} = {result['ratio_this_to_against']:.4f}x" if args.against else ""))
    return 0


# ------------------------------------------------------------------------------------- this tree only
def backlog(events: int, journeys: Path, policies: Path) -> list[bytes]:
    """The benchmark's backlog with fixed ids, its virtual clock moved to end one second before now
    (event age decides enrolments, measured against the wall clock)."""
    from benchmarks.identical import backlog_lines
    lines = backlog_lines(events, journeys=journeys, policies=policies)
    parsed = [orjson.loads(line) for line in lines]
    last = max(e["ts"] for e in parsed)
    shift = int(time.time() * 1000) - 1000 - last
    return [orjson.dumps({**e, "ts": e["ts"] + shift}) for e in parsed]


def _run(tree: Path, path: Path, journeys: Path, policies: Path, args: argparse.Namespace, *,
         digest: bool = False) -> dict[str, Any]:
    from benchmarks.common import run_in_tree
    return run_in_tree(Path(__file__).resolve(), tree, [*_time_argv(path, journeys, policies, args),
                                                        *(["--digest"] if digest else [])], "the batch path")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.batchpath", description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, help="events in the backlog (default 100,000; 12,000 with --instructions)")
    ap.add_argument("--batch", type=int, help="records per batch at most (default: each tree's worker's BATCH_MAX)")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--against", metavar="REV", help="compare with this revision, alternating")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each tree with --against (default 3)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--digest", action="store_true", help="one untimed run: the digest of the outputs")
    ap.add_argument("--instructions", action="store_true",
                    help="instructions per event under valgrind's cachegrind instead of CPU time")
    ap.add_argument("--time", help=argparse.SUPPRESS)
    ap.add_argument("--journeys", help=argparse.SUPPRESS)
    ap.add_argument("--policies", help=argparse.SUPPRESS)
    ap.add_argument("--expect-tree", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.time:
        return _time_main(args)
    from benchmarks.common import checkout, loadavg
    journeys, policies = ROOT / "journeys", ROOT / "policies.yaml"
    if args.events is None:
        args.events = 12_000 if args.instructions else 100_000
    if args.instructions:
        if args.events < 3:
            ap.error("--instructions needs at least 3 events")
        with tempfile.TemporaryDirectory(prefix="batchpath-") as tmp:
            return _instructions_main(backlog(args.events, journeys, policies), Path(tmp), journeys, policies, args)
    with tempfile.TemporaryDirectory(prefix="batchpath-") as tmp:
        path = Path(tmp) / "backlog.jsonl"
        path.write_bytes(b"".join(line + b"\n" for line in backlog(args.events, journeys, policies)))
        load_before = loadavg()
        if not args.against:
            result: dict[str, Any] = _run(ROOT, path, journeys, policies, args, digest=args.digest)
            result["load_average"] = {"before": load_before, "after": loadavg()}
            print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
            return 0
        rounds: dict[str, list[dict[str, Any]]] = {"this": [], "against": []}
        with checkout(args.against, Path(tmp) / "tree") as other:
            digests = {"this": _run(ROOT, path, journeys, policies, args, digest=True)["outputs_digest"],
                       "against": _run(other, path, journeys, policies, args, digest=True)["outputs_digest"]}
            for _ in range(args.rounds):
                rounds["against"].append(_run(other, path, journeys, policies, args))
                rounds["this"].append(_run(ROOT, path, journeys, policies, args))
        load_after = loadavg()
    med = {k: statistics.median(r["cpu_s_per_1k"] for r in v) for k, v in rounds.items()}
    report = {"against": args.against, "events": args.events, "cpu_s_per_1k": med,
              "ratio_this_to_against": round(med["this"] / med["against"], 4),
              "records_out": {k: [r["records_out"] for r in v] for k, v in rounds.items()},
              "outputs_digest": digests, "outputs_identical": digests["this"] == digests["against"],
              "rounds": rounds, "load_average": {"before": load_before, "after": load_after}}
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        print(f"batch path, {args.events:,} events, batches of up to {args.batch or 'BATCH_MAX'}: CPU s per 1k events "
              f"this {med['this']:.4f} / {args.against} {med['against']:.4f} = {med['this'] / med['against']:.3f}x; "
              f"records out {report['records_out']}; load average {load_before} -> {load_after}")
        print(f"outputs {'identical' if report['outputs_identical'] else 'DIFFERENT'}: this {digests['this']}, "
              f"{args.against} {digests['against']}")
    return 0 if report["outputs_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
