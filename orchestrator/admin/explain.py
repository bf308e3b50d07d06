"""``orchestrator explain CUSTOMER_ID``: a customer's state and recent decisions.

Reads Kafka only, so it works from any machine that can reach the cluster:
the state is the latest record for the customer in the worker's state changelog
(``<prefix>.internal.state-changelog``, in the customer's partition), the decisions
come from ``<prefix>.decisions`` (keyed by customer id). So only one partition of
each is read. It creates nothing: without those topics it says so in one sentence. In the
text, decisions of a shadow journey version are marked ``[shadow]`` (nothing was sent for them).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from orchestrator.config import Settings
from orchestrator.core.policies import zone
from orchestrator.core.state import CustomerState, decode_state
from orchestrator.core.timeutil import format_ts
from orchestrator.kafkaio.clients import placement, read_to_end, start_client
from orchestrator.runtime.store import DUE_LEN, STATE

DECISIONS_SCAN = 200_000     # read at most this many of the newest decisions of the partition
NO_WORKER_YET = "no worker has run with this prefix yet (the worker creates its topics at start)"


async def _scan(consumer: AIOKafkaConsumer, tp: TopicPartition, key: bytes, *, newest: int | None,
                deadline_s: float) -> list[tuple[int, bytes | None]]:
    """(offset, value) of every record with ``key`` in ``tp`` (the newest ``newest`` offsets only)."""
    end = (await consumer.end_offsets([tp]))[tp]
    start = None if newest is None else end - newest
    found: list[tuple[int, bytes | None]] = []
    async for _, msgs in read_to_end(consumer, {tp: start}, ends={tp: end}, deadline_s=deadline_s, max_records=5000):
        found.extend((msg.offset, msg.value) for msg in msgs if msg.key == key)
    return found


async def explain(settings: Settings, customer_id: str, *, limit: int = 20) -> dict[str, Any]:
    from orchestrator.kafkaio.topics import require_topics
    key = customer_id.encode()
    changelog, decisions = settings.topics.changelog, settings.topics.decisions
    partitions = await require_topics(settings, [changelog, decisions], hint=NO_WORKER_YET)
    consumer = AIOKafkaConsumer(**settings.aiokafka_kwargs(), enable_auto_commit=False, isolation_level="read_committed",
                                max_partition_fetch_bytes=4 * 1024 * 1024)
    await start_client(consumer, settings)
    try:
        result: dict[str, Any] = {"customer_id": customer_id, "state": None, "decisions": []}
        parts = partitions.get(changelog)
        if parts:
            tp = TopicPartition(changelog, placement(settings.producer_partitioner)(key, len(parts)))
            records = await _scan(consumer, tp, STATE + key, newest=None, deadline_s=60)
            if records and records[-1][1] is not None:
                result["state"] = describe_state(decode_state(records[-1][1][DUE_LEN:]))   # after the due ms
        parts = partitions.get(decisions)
        if parts:
            tp = TopicPartition(decisions, placement(settings.producer_partitioner)(key, len(parts)))
            records = await _scan(consumer, tp, key, newest=DECISIONS_SCAN, deadline_s=60)
            result["decisions"] = [orjson.loads(v) for _, v in records[-limit:] if v is not None]
        return result
    finally:
        await consumer.stop()


def describe_state(state: CustomerState) -> dict[str, Any]:
    """The state, made readable: timestamps as RFC 3339, no internal bookkeeping."""
    return {
        "profile": state.profile,
        "journeys": {
            jid: {"version": i.version, "node": i.node, "entered_at": format_ts(i.entered_ms),
                  "touches": i.touches, "vars": i.vars, "holdout": i.holdout,
                  "waiting_for": i.waiting_for,
                  "next_timer_at": format_ts(i.due_ms) if i.due_ms is not None else None,
                  "deferred_send": i.deferred_action if i.deferred else None,
                  "max_duration_until": format_ts(i.deadline_ms) if i.deadline_ms is not None else None,
                  "action_ids": i.action_ids}
            for jid, i in sorted(state.instances.items())
        },
        "last_exits": {jid: format_ts(ms) for jid, ms in sorted(state.exits.items())},
        "entries": dict(sorted(state.entries.items())),
        "recent_sends": [{"at": format_ts(ms), "channel": ch} for ms, ch in state.sends],
        "engagement": {ch: {"sent": len(e.sent), "opened": len(e.opened), "clicked": len(e.clicked),
                            "last_opened_at": format_ts(e.last_opened_ms) if e.last_opened_ms else None}
                       for ch, e in sorted(state.engagement.items())},
        "activity": {t: {"count_by_day": len(a.days), "last_at": format_ts(a.last_ms)}
                     for t, a in sorted(state.activity.items())},
        "notes": _notes(state),
    }


def _notes(state: CustomerState) -> list[str]:
    """What the state means beyond its fields: an erasure tombstone (as erasures left them before the
    duplicate window moved out of the state), a profile value read differently."""
    notes = []
    if state.erased_ms is not None:
        notes.append(f"erased at {format_ts(state.erased_ms)}: nothing of the customer is kept; this record is "
                     "deleted when the customer's partition next decides anything for it")
    tz = state.profile.get("timezone")
    if tz is not None and zone(tz) is None:
        notes.append(f"profile timezone {tz!r} is not a known IANA time zone name; UTC is used "
                     "(counted in orch_invalid_profile_fields_total)")
    return notes


def render_text(report: dict[str, Any]) -> str:
    lines = [f"customer {report['customer_id']}"]
    state = report["state"]
    if state is None:
        lines.append("  no state (never seen, or erased)")
    else:
        lines.append(f"  profile: {orjson.dumps(state['profile']).decode()}")
        if state["journeys"]:
            lines.append("  active journeys:")
            for jid, j in state["journeys"].items():
                waiting = (f", waiting for {j['waiting_for']}" if j["waiting_for"] else "")
                timer = f", next timer {j['next_timer_at']}" if j["next_timer_at"] else ""
                lines.append(f"    {jid} v{j['version']} at node {j['node']} (entered {j['entered_at']}, "
                             f"{j['touches']} touches{waiting}{timer}{', holdout' if j['holdout'] else ''})")
        else:
            lines.append("  active journeys: none")
        if state["last_exits"]:
            lines.append("  last exits: " + ", ".join(f"{k} at {v}" for k, v in state["last_exits"].items()))
        if state.get("entries"):
            lines.append("  entries so far (for entry.max_entries): "
                         + ", ".join(f"{k} {n}" for k, n in state["entries"].items()))
        if state["recent_sends"]:
            lines.append("  sends counted by frequency caps: "
                         + ", ".join(f"{s['channel']} at {s['at']}" for s in state["recent_sends"]))
        for note in state.get("notes", []):
            lines.append(f"  note: {note}")
    if report["decisions"]:
        lines.append("  recent decisions (oldest first):")
        for d in report["decisions"]:
            where = f"{d.get('journey')} v{d.get('journey_version')} {d.get('node') or ''}".strip()
            chan = f" [{d['channel']}]" if d.get("channel") else ""
            # A shadow version's decisions were recorded, never acted on: a shadow "sent" sent nothing.
            shadow = " [shadow]" if d.get("shadow") else ""
            lines.append(f"    {d.get('ts')}  {d.get('outcome'):<22} {where}{chan}{shadow}: {d.get('detail')}")
    else:
        lines.append("  no decisions found")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    report = asyncio.run(explain(settings, args.customer_id, limit=args.limit))
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        print(render_text(report))
    return 0
