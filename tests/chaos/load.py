"""The deterministic load of a scenario: per-customer funnels, duplicates, out-of-order and stale
timestamps, wrongly keyed customers and every kind of bad input (docs/chaos.md, "The load").

Same seed, same lines every run (only the timestamps follow the clock); :func:`generate` checks
each line against the worker's own validator before anything is sent.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import orjson

from orchestrator.core import parse_event
from orchestrator.core.events import Rejection
from orchestrator.core.timeutil import format_ts

MAX_EVENT_BYTES = 65536
SEED = 20261123
DEFAULT_EVENTS = 5000


@dataclass
class Line:
    """One message of the load, in produce order."""

    value: bytes
    key: bytes | None
    kind: str                          # event | dup | stale | timer | bad
    customer: str | None = None
    reason: str | None = None          # expected dead-letter reason of a bad line
    simulate: bool = True              # False: left out of the simulation (see expected())


@dataclass
class LoadSpec:
    events: int = DEFAULT_EVENTS       # good events (duplicates and bad lines come on top)
    bad_rate: float = 0.02             # bad lines per good event
    dup_rate: float = 0.03             # exact (or re-serialised) re-sends of an event, same event_id
    ooo_rate: float = 0.05             # events whose ts is earlier than the customer's previous ones
    wrong_key_rate: float = 0.05       # customers whose events are keyed by an account id
    stale_rate: float = 0.005          # events two days old: update state, enrol nobody
    timer_rate: float = 0.0            # extra customers whose only event starts the 5 s cx-timer wait
    replay_tail: float = 0.0           # re-produce this fraction of the lines at the end (all again)


CATEGORIES = ("shoes", "bags", "hats", "watches", "coats")
PROFILE_UPDATES: tuple[dict[str, Any], ...] = (
    {"consent": {"sms": True}},
    {"consent": {"sms": True, "email": True}},
    {"consent": {"email": False}},
    {"ltv_tier": "gold"},
    {"ltv_tier": "gold", "consent": {"sms": True}},
    {"ltv_tier": None},
    {"first_name": "Ann", "timezone": "Europe/Paris"},
)
# (type, weight); properties are drawn in _props
EVENT_TYPES = (
    ("signup.completed", 10), ("profile.updated", 10), ("product.viewed", 18), ("category.viewed", 8),
    ("cart.updated", 15), ("checkout.started", 9), ("order.completed", 6), ("message.opened", 5),
    ("message.clicked", 2), ("message.unsubscribed", 2), ("message.delivered", 2), ("account.closed", 1),
    ("page.viewed", 8),
)


def _props(rng: random.Random, etype: str) -> dict[str, Any] | None:
    if etype == "signup.completed":
        return {"plan": rng.choice(("free", "free", "pro", "pro", "blocked"))}
    if etype == "profile.updated":
        return dict(rng.choice(PROFILE_UPDATES))
    if etype == "product.viewed":
        return {"price": rng.choice((20, 60, 99, 100, 150, 250, 300)), "category": rng.choice(CATEGORIES)}
    if etype == "category.viewed":
        return {"category": rng.choice(CATEGORIES)}
    if etype == "cart.updated":
        return {"value": rng.choice((10, 30, 49.99, 50, 80.5, 149, 150, 200))}
    if etype == "order.completed":
        return {"value": rng.randint(20, 300)}
    if etype.startswith("message."):
        return {"action_id": f"a-{rng.getrandbits(40):010x}", "channel": rng.choice(("email", "push", "sms"))}
    if etype == "page.viewed":
        return {"path": rng.choice(("/", "/pricing", "/blog"))} if rng.random() < 0.8 else None
    return {} if rng.random() < 0.5 else None


def _bad_lines(now_ms: int, n: int) -> list[tuple[bytes, str]]:
    """Every kind of bad input of SPEC §2/§3, with the dead-letter reason each must get."""
    good = {"event_id": f"bad-{n}", "customer_id": f"bad-c{n}", "type": "cart.updated", "ts": now_ms - 60_000,
            "properties": {"value": 80}}

    def ev(**changes: Any) -> bytes:
        e = {**good, **changes}
        return orjson.dumps({k: v for k, v in e.items() if v is not _DROP})

    return [
        (b'{"event_id": "bad-%d", "customer_id": "c-1", "type": "cart.upd' % n, "invalid_json"),   # cut off
        (b"this is not JSON", "invalid_json"),
        (b"\xff\xfe\x00\x01 binary", "invalid_json"),
        (b"", "invalid_json"),                                                                  # empty value
        (ev(event_id=12345), "invalid_schema"),                                                 # wrong types
        (ev(ts=True), "invalid_schema"),
        (ev(properties=[1, 2, 3]), "invalid_schema"),
        (ev(customer_id=42), "invalid_schema"),
        (ev(customer_id=_DROP), "invalid_schema"),                                              # missing customer_id
        (ev(type=_DROP), "invalid_schema"),
        (ev(type="Cart Updated!"), "invalid_schema"),
        (ev(customer_id="c" * 200), "invalid_schema"),                                          # too long
        (ev(ts="yesterday"), "invalid_schema"),
        (ev(type="message.read", properties={"action_id": "a-1", "channel": "email"}), "invalid_schema"),
        (ev(type="profile.updated", properties=_DROP), "invalid_schema"),
        (b"[1, 2, 3]", "invalid_schema"),
        (ev(properties={"blob": "x" * 70_000}), "too_large"),                                  # > 64 KiB
        (ev(ts=now_ms + 2 * 3_600_000), "future_timestamp"),
        (ev(ts=format_ts(now_ms + 86_400_000)), "future_timestamp"),
        (ev(type="message.opened", properties={"channel": "email"}), "invalid_feedback"),      # no action_id
        (ev(type="message.clicked", properties={"action_id": "a-9", "channel": "fax"}), "invalid_feedback"),
        (ev(type="message.delivered", properties={"action_id": "a-9"}), "invalid_feedback"),
        (ev(type="message.unsubscribed", properties={"action_id": 42, "channel": "email"}), "invalid_feedback"),
    ]


_DROP = object()
BAD_KINDS = len(_bad_lines(0, 0))


def generate(spec: LoadSpec, *, seed: int, tag: str, now_ms: int,
             channels: tuple[str, ...]) -> list[Line]:
    """The load: a fixed-seed interleaving of per-customer funnels plus duplicates, out-of-order
    timestamps, stale events, wrongly keyed customers and every kind of bad input.

    Timestamps lie in the ten minutes before ``now_ms`` (so nothing is 'future' for the worker
    and every window of the policies sees all of them, on either clock).
    """
    rng = random.Random(seed)
    types, weights = zip(*EVENT_TYPES)
    scripts: list[list[tuple[str, dict[str, Any] | None]]] = []
    total = 0
    while total < spec.events:
        n = min(rng.randint(3, 14), spec.events - total)
        script = [(t, _props(rng, t)) for t in rng.choices(types, weights, k=n)]
        if rng.random() < 0.5:                       # most funnels start at sign-up
            script[0] = ("signup.completed", _props(rng, "signup.completed"))
        scripts.append(script)
        total += n
    customers = [f"{tag}-c{i:05d}" for i in range(len(scripts))]
    keys = {c: (f"acct-{i % 7}".encode() if rng.random() < spec.wrong_key_rate else c.encode())
            for i, c in enumerate(customers)}
    order = [i for i, s in enumerate(scripts) for _ in s]
    rng.shuffle(order)

    base = now_ms - 10 * 60_000
    step = max(1, (10 * 60_000 - 5_000) // max(1, len(order)))
    cursor = [0] * len(scripts)
    last_ts: dict[str, int] = {}
    pending_dups: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
    lines: list[Line] = []
    bad_counter = 0
    for pos, ci in enumerate(order):
        cid = customers[ci]
        etype, props = scripts[ci][cursor[ci]]
        cursor[ci] += 1
        ts = base + pos * step
        kind = "event"
        # (the first line stays a normal, recent event: simulate's clock starts at its ts)
        if pos and rng.random() < spec.ooo_rate and cid in last_ts:
            ts = last_ts[cid] - rng.randint(1_000, 180_000)         # earlier than this customer's last event
        elif pos and rng.random() < spec.stale_rate:
            ts, kind = now_ms - 2 * 86_400_000, "stale"
        last_ts[cid] = max(last_ts.get(cid, 0), ts)
        event: dict[str, Any] = {"event_id": f"{cid}-e{cursor[ci]}", "customer_id": cid, "type": etype,
                                 "ts": ts if rng.random() < 0.7 else format_ts(ts)}
        if props is not None:
            event["properties"] = props
        if rng.random() < 0.1:
            event["account_id"] = keys[cid].decode() if keys[cid] != cid.encode() else "acme"
        value = orjson.dumps(event)
        lines.append(Line(value, keys[cid], kind, cid))
        # Duplicates of earlier events of this customer come out after later ones of it.
        for due_pos, dup in [d for d in pending_dups[cid] if d[0] <= pos]:
            lines.append(Line(dup, keys[cid], "dup", cid))
            pending_dups[cid].remove((due_pos, dup))
        if rng.random() < spec.dup_rate:
            dup = value
            if rng.random() < 0.3:   # same event_id, re-serialised by a retrying producer
                alt = dict(event)
                alt["ts"] = format_ts(ts) if isinstance(event["ts"], int) else ts
                dup = orjson.dumps(dict(reversed(list(alt.items()))))
            pending_dups[cid].append((pos + rng.randint(0, 40), dup))
        if rng.random() < spec.bad_rate:                # kinds in turn, so each comes up
            raw, reason = _bad_lines(now_ms, bad_counter)[bad_counter % BAD_KINDS]
            key = rng.choice((None, b"garbage-key", cid.encode()))
            lines.append(Line(raw, key, "bad", None, reason))
            bad_counter += 1
    for cid, dups in pending_dups.items():                   # the rest at the end, in order
        for _, dup in dups:
            lines.append(Line(dup, keys[cid], "dup", cid))
    if spec.bad_rate > 0:                                      # every kind at least once
        while bad_counter < BAD_KINDS:
            raw, reason = _bad_lines(now_ms, bad_counter)[bad_counter]
            lines.insert(rng.randint(1, len(lines)), Line(raw, None, "bad", None, reason))
            bad_counter += 1
    if spec.timer_rate > 0:
        n_timer = int(spec.events * spec.timer_rate)
        for i in range(n_timer):
            cid = f"{tag}-t{i:05d}"
            value = orjson.dumps({"event_id": f"{cid}-e1", "customer_id": cid, "type": "timer.test",
                                  "ts": base + (i * 10 * 60_000) // max(1, n_timer), "properties": {"n": i}})
            lines.insert(rng.randint(1, len(lines)), Line(value, cid.encode(), "timer", cid))
    if spec.replay_tail > 0:                                   # a producer re-sending what it sent before
        lines.extend(Line(ln.value, ln.key, "dup" if ln.kind != "bad" else "bad", ln.customer, ln.reason)
                     for ln in lines[: int(len(lines) * spec.replay_tail)])
    # Self-check: each bad line is refused with the intended reason (the worker's own validator,
    # at the wall-clock time the worker will see), each other line is accepted.
    for ln in lines:
        parsed = parse_event(ln.value, max_bytes=MAX_EVENT_BYTES, now_ms=now_ms, channels=channels)
        got = parsed.reason if isinstance(parsed, Rejection) else None
        if got != ln.reason:
            raise AssertionError(f"load generator: {ln.value[:120]!r} gives {got}, meant {ln.reason}")
        # simulate's clock is virtual, so it cannot tell a 'future' timestamp: the worker
        # dead-letters those lines, simulate would decide on them. Leave them out of it.
        ln.simulate = ln.reason != "future_timestamp"
    return lines
