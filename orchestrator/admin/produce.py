"""``orchestrator produce [FILE]``: JSON-lines events to a topic, each keyed by its customer_id.

Each line is sent as soon as it is read, so ``tail -f events.jsonl | orchestrator produce``
streams (as kcat does). A line that cannot be sent is reported on standard error as
``line N: reason`` and the others are still sent:

- a line that is not JSON, not a JSON object, or has no non-empty ``customer_id`` string (the
  worker would only dead-letter it, and produce would have no key to place it by);
- a line over the topic's message size limit (its ``max.message.bytes``; Kafka's default of
  1048588 bytes when the broker will not say), which Kafka would refuse;
- a line Kafka did not acknowledge.

SIGINT (Ctrl-C) and SIGTERM stop the reading; every line read is still sent, and the summary on
standard error says how many lines were sent and refused. What was read after the last newline
when a signal came is a line cut by the stop (or still being typed): it is not sent, and the
summary says how many bytes that was. At the end of the input, a last line without its newline is
a line and is sent.
A second signal stops at once. Exit codes: 0 every line read was sent (also after a requested
stop); 1 a line was refused, or an error stopped the command (one sentence).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.util import size_of_varint

from orchestrator.admin import stop_on_signals
from orchestrator.config import Settings
from orchestrator.errors import ConfigError
from orchestrator.kafkaio.clients import placement, start_client
from orchestrator.kafkaio.topics import all_topics, connect_admin, ensure_topics, require_topics, topic_configs

KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588     # Kafka's message.max.bytes default
BATCH_HEADER_BYTES = 61                         # a v2 record batch's header, before its records
READ_CHUNK = 1 << 16


def check_line(line: bytes) -> tuple[bytes | None, str | None]:
    """(key, None) for a line produce sends: its customer_id as the key; else (None, why not)."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return None, f"not JSON ({exc.msg} at byte {exc.pos + 1})"
    if not isinstance(data, dict):
        return None, f"not a JSON object (a JSON {type(data).__name__})"
    cid = data.get("customer_id")
    if not isinstance(cid, str) or not cid:
        return None, "no customer_id (a non-empty string) to key it by"
    return cid.encode(), None


def key_of(line: bytes) -> bytes | None:
    """The customer_id of a JSON event line, as the message key (None if unreadable)."""
    return check_line(line)[0]


def batch_bytes(key: bytes | None, value: bytes) -> int:
    """The size of a record batch holding this record alone, as Kafka compares it with the topic's
    ``max.message.bytes`` (batch header, then the record: attributes, offset and timestamp deltas
    of 0, key, value, no headers)."""
    body = 3 + DefaultRecordBatchBuilder.size_of(key, value, [])
    return BATCH_HEADER_BYTES + size_of_varint(body) + body


async def message_limit(settings: Settings, topic: str) -> int:
    """The topic's ``max.message.bytes`` (Kafka's default when the broker will not say)."""
    admin = await connect_admin(settings)
    try:
        value = (await topic_configs(admin, [topic], "max.message.bytes")).get(topic, "")
    finally:
        await admin.close()
    return int(value) if value.isdigit() else KAFKA_DEFAULT_MAX_MESSAGE_BYTES


class Lines:
    """Chunks of input -> numbered lines. A line longer than ``cap`` bytes is measured, not kept."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.number = 0
        self._kept = bytearray()
        self._size = 0

    def feed(self, chunk: bytes) -> list[tuple[int, bytes | None, int]]:
        """The lines ``chunk`` completes: (number, line without its end, or None if too long, size)."""
        out = []
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            self._take(chunk[start:] if end < 0 else chunk[start:end])
            if end < 0:
                return out
            out.append(self._line())
            start = end + 1

    def rest(self) -> tuple[int, bytes | None, int] | None:
        """The last line, when the input ended without its newline."""
        return self._line() if self._size else None

    def _take(self, piece: bytes) -> None:
        if self._size + len(piece) <= self.cap:
            self._kept += piece
        self._size += len(piece)

    def _line(self) -> tuple[int, bytes | None, int]:
        self.number += 1
        line = bytes(self._kept).rstrip(b"\r") if self._size <= self.cap else None
        item = (self.number, line, self._size)
        self._kept.clear()
        self._size = 0
        return item


class Reader(threading.Thread):
    """Chunks of ``fd`` for the event loop (:meth:`take`), ending with b"" at end of input, the
    OSError that stopped it, or None after :meth:`stop`. A chunk once read is always delivered, so a
    stop loses nothing that was read; a stop while it waits for input ends the wait. At most
    ``AHEAD`` chunks wait to be taken. Plain ``os.read``, so a thread left blocked when the command
    ends holds no lock of the interpreter's file objects; it never waits for the event loop."""

    AHEAD = 16

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name="produce-input", daemon=True)
        self.fd, self.loop = fd, loop
        self._queue: asyncio.Queue = asyncio.Queue()
        self._room = threading.Semaphore(self.AHEAD)
        self._wake_r, self._wake_w = os.pipe()
        self.ended = False          # its last item was taken: the thread has nothing left to do

    async def take(self) -> bytes | OSError | None:
        item = await self._queue.get()
        self._room.release()
        self.ended = not isinstance(item, bytes) or not item
        return item

    def stop(self) -> None:
        if self._wake_w >= 0:
            os.write(self._wake_w, b"x")

    def close(self) -> None:
        """Close the wake-up pipe, unless the thread may still be waiting on it."""
        if self.ended:
            self.join()
        if not self.is_alive():
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1

    def run(self) -> None:
        try:
            while True:
                self._room.acquire()
                ready, _, _ = select.select([self.fd, self._wake_r], [], [])
                if self._wake_r in ready:
                    self._put(None)
                    return
                chunk = os.read(self.fd, READ_CHUNK)
                if not self._put(chunk) or not chunk:
                    return
        except OSError as exc:
            self._put(exc)

    def _put(self, item: bytes | OSError | None) -> bool:
        try:
            self.loop.call_soon_threadsafe(self._queue.put_nowait, item)
            return True
        except RuntimeError:        # the command has ended and its loop with it
            return False


@dataclass
class Outcome:
    topic: str
    sent: int = 0
    refused: int = 0
    read: int = 0                       # lines read
    stopped_by: str | None = None       # the signal that stopped the reading
    unfinished: int = 0                 # bytes after the last newline when a signal stopped the reading

    def summary(self) -> str:
        stop = f"stopped by {self.stopped_by}: " if self.stopped_by else ""
        refused = f", refused {self.refused} line{'s' if self.refused != 1 else ''} (reported above)" \
            if self.refused else ""
        cut = (f" (the {self.unfinished} byte{'s' if self.unfinished != 1 else ''} read after the last newline "
               "were not a whole line and were not sent)") if self.unfinished else ""
        return f"{stop}sent {self.sent} event{'s' if self.sent != 1 else ''} to {self.topic}{refused}{cut}"

    @property
    def exit_code(self) -> int:
        return 1 if self.refused else 0


def _report(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def produce_lines(settings: Settings, fd: int, *, topic: str, outcome: Outcome,
                        stop: asyncio.Event, report: Callable[[str], None] = _report) -> None:
    """Send each non-blank line of ``fd`` as one message keyed by its customer_id, in the partition
    ``ORCH_PRODUCER_PARTITIONER`` places that key (as the worker expects), as soon as it is read,
    until end of input or ``stop``; then wait for every acknowledgement. Counts into ``outcome``."""
    limit = await message_limit(settings, topic)
    # A record over the limit is refused here, and batches of several records stay within it. aiokafka's
    # own size check is an upper bound of the exact size (up to 21 bytes more): room for it.
    producer = AIOKafkaProducer(**settings.aiokafka_kwargs(), linger_ms=5, acks="all", enable_idempotence=True,
                                max_batch_size=min(16384, limit), max_request_size=limit + 64)
    await start_client(producer, settings)
    place = placement(settings.producer_partitioner)
    pending: set[asyncio.Future] = set()

    def refuse(number: int, why: str) -> None:
        outcome.refused += 1
        report(f"line {number}: {why}")

    def acknowledged(number: int, future: asyncio.Future) -> None:
        pending.discard(future)
        error = None if future.cancelled() else future.exception()
        if future.cancelled() or error is not None:
            refuse(number, f"Kafka did not take it ({error or 'cancelled'})")
        else:
            outcome.sent += 1

    async def send(number: int, line: bytes | None, size: int) -> None:
        if line is None or size > limit:
            refuse(number, f"{size} bytes, over the message size limit of {topic} ({limit} bytes, max.message.bytes)")
            return
        if not line.strip():
            return
        key, why = check_line(line)
        if key is None:
            refuse(number, why + ("; the worker would dead-letter it" if topic == settings.topics.events else ""))
            return
        if batch_bytes(key, line) > limit:
            refuse(number, f"{batch_bytes(key, line)} bytes as a Kafka record, over the message size limit of "
                   f"{topic} ({limit} bytes, max.message.bytes)")
            return
        try:
            future = await producer.send(topic, value=line, key=key, partition=place(key, partitions))
        except KafkaError as exc:
            refuse(number, f"Kafka did not take it ({exc})")
            return
        pending.add(future)
        future.add_done_callback(lambda f, n=number: acknowledged(n, f))

    reader = Reader(fd, asyncio.get_running_loop())
    try:
        partitions = len(await producer.partitions_for(topic))
        lines = Lines(limit)
        if not stop.is_set():
            reader.start()
            stopping = asyncio.ensure_future(stop.wait())
            stopping.add_done_callback(lambda f: None if f.cancelled() else reader.stop())
            try:
                while (chunk := await reader.take()):
                    if isinstance(chunk, OSError):
                        raise ConfigError(f"cannot read the input ({chunk.strerror or chunk}) after line "
                                          f"{lines.number}") from None
                    for item in lines.feed(chunk):
                        outcome.read = item[0]
                        await send(*item)
            finally:
                stopping.cancel()
            last = lines.rest()
            if last is not None and chunk is None:
                # Stopped: what follows the last newline is a line cut by the stop (or one being typed),
                # not a line; it is not sent, and the summary says so.
                outcome.unfinished = last[2]
            elif last is not None:                # the end of the input: its last line, without a newline
                outcome.read = last[0]
                await send(*last)
        if pending:
            await asyncio.gather(*list(pending), return_exceptions=True)
    finally:
        reader.stop()
        reader.close()
        await producer.stop()


async def produce(settings: Settings, fd: int, outcome: Outcome, channels: tuple[str, ...]) -> None:
    """Create ``outcome.topic`` first if it is one of the worker's (as the worker would), else it must
    exist; then stream ``fd`` to it. SIGINT and SIGTERM stop the reading (see the module docstring)."""
    topic = outcome.topic
    stop = asyncio.Event()

    def requested(name: str) -> None:
        outcome.stopped_by = name
        stop.set()

    with stop_on_signals(requested):
        if topic in all_topics(settings, channels):
            await ensure_topics(settings, channels, only=[topic])
        else:
            await require_topics(settings, [topic], hint="it is not one of the worker's topics, so produce does "
                                 "not create it; check --topic")
        await produce_lines(settings, fd, topic=topic, outcome=outcome, stop=stop)


def run(args: argparse.Namespace) -> int:
    from orchestrator.core import load_policies
    settings = Settings.from_env()
    topic = settings.topics.name(args.topic)
    channels = load_policies(settings.policies).channels
    try:
        stream = open(args.file, "rb") if args.file and args.file != "-" else None
    except OSError as exc:
        raise ConfigError(f"cannot read {args.file!r} ({exc.strerror or exc}); give a JSON-lines file of events, "
                          "or - (or nothing) for standard input") from None
    outcome = Outcome(topic)
    try:
        asyncio.run(produce(settings, (stream or sys.stdin).fileno(), outcome, channels))
    except BaseException:
        if outcome.read:            # what was done before the error (which the command line prints next)
            print(outcome.summary(), file=sys.stderr)
        raise
    finally:
        if stream is not None:
            stream.close()
    print(outcome.summary(), file=sys.stderr)
    return outcome.exit_code
