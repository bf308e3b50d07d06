"""The benchmarks' workload: synthetic shoppers, the simulated channel adapter's feedback, and the
backlog with that feedback predicted by the pure engine.

The shoppers have Zipf-like popularity (Zipf-Mandelbrot weights ``1/(rank+q)^s`` over
``customers``) and interleaved sessions (sign-up and profile for new customers, app opens, product
views, cart, purchase: view -> cart -> purchase funnels), profile updates, and feedback from a
simulated channel adapter (delivered / opened / clicked, per channel probabilities, delays of a few
seconds). Every random choice comes from the seed, so every system gets byte-identical events (up
to the ``ts`` stamped at send time). In the backlog the adapter's feedback is predicted by running
the pure engine over the stream (action ids are deterministic), so the backlog already holds the
feedback the live adapter would have sent.

No Kafka here: the load benchmark, the pure-core benchmark and the identical-outputs check all
build their events with this module.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from benchmarks.common import ROOT, now_ms

JOURNEYS = ROOT / "journeys"                 # the example journeys and policies every system runs
POLICIES = ROOT / "policies.yaml"

CATEGORIES = ("shoes", "bags", "jackets", "watches", "hats", "shirts", "toys", "books", "garden", "beauty")
TIMEZONES = ("Europe/Paris", "Europe/London", "America/New_York", "America/Los_Angeles", "Asia/Tokyo", "UTC")
FIRST_NAMES = ("Ada", "Ben", "Chloe", "Dev", "Emma", "Farid", "Gita", "Hugo", "Ines", "Jon", "Kai", "Lena")
PLATFORMS = ("ios", "android", "web")

# channel -> (p delivered, p opened | delivered, p clicked | opened (or | delivered if never opened))
FEEDBACK_MODEL: dict[str, tuple[float, float, float]] = {
    "email": (0.97, 0.25, 0.20),
    "push": (0.92, 0.10, 0.30),
    "sms": (0.98, 0.00, 0.05),
    "inapp": (0.95, 0.30, 0.20),
    "web": (0.95, 0.00, 0.04),
    "ads": (0.90, 0.00, 0.01),
}
# Real adapters report over minutes to days; compressed to seconds so the loop closes within a run.
DELIVERED_DELAY_S = (0.2, 1.5)
OPENED_DELAY_S = (1.0, 8.0)
CLICKED_DELAY_S = (0.5, 4.0)
VIRTUAL_RATE = 2000.0            # events/s of the virtual clock used to place predicted feedback


class Shoppers:
    """Deterministic synthetic shoppers; :meth:`next` returns one event (a dict without ``ts``).

    ``sessions`` shopping sessions run at once, interleaved at random; a finished session is
    replaced by a new one of a customer drawn with Zipf-Mandelbrot popularity. A customer's first
    session may start with a sign-up and a profile; any session may start with a profile update
    (time zone, consent, tier) or an app open; then 1..12 product views (prices log-normal around
    60, a third of them 100 or more), then maybe a cart update, then maybe an order.
    """

    def __init__(self, *, seed: int = 42, customers: int = 200_000, zipf_s: float = 1.0, zipf_q: float = 20.0,
                 sessions: int = 1000, tag: str = "b") -> None:
        self.rng = random.Random(seed)
        self.customers = customers
        self.cum = list(itertools.accumulate((r + zipf_q) ** -zipf_s for r in range(1, customers + 1)))
        self.sessions = sessions
        self.tag = tag
        self.known: set[int] = set()
        self.active: dict[int, deque[tuple[str, dict[str, Any]]]] = {}
        self.order: list[int] = []
        self.n = 0
        self.types: Counter[str] = Counter()
        self.per_customer: Counter[int] = Counter()

    def _draw(self) -> int:
        x = self.rng.random() * self.cum[-1]
        return bisect.bisect_left(self.cum, x) + 1

    def _profile(self, rank: int) -> dict[str, Any]:
        r = random.Random(rank * 7919 + 1)
        return {"first_name": r.choice(FIRST_NAMES), "timezone": r.choice(TIMEZONES),
                "ltv_tier": r.choices(("bronze", "silver", "gold"), (70, 25, 5))[0],
                "consent": {"email": r.random() < 0.95, "sms": r.random() < 0.35, "push": r.random() < 0.8}}

    def _session(self, rank: int) -> deque[tuple[str, dict[str, Any]]]:
        rng = self.rng
        out: deque[tuple[str, dict[str, Any]]] = deque()
        if rank not in self.known:
            self.known.add(rank)
            if rng.random() < 0.6:
                out.append(("signup.completed", {"plan": rng.choice(("free", "free", "pro")),
                                                 "source": rng.choice(("ads", "organic", "referral"))}))
                out.append(("profile.updated", self._profile(rank)))
        elif rng.random() < 0.05:
            change = rng.choice(("ltv_tier", "consent", "timezone"))
            props = self._profile(rank)
            if change == "ltv_tier":
                props = {"ltv_tier": rng.choice(("bronze", "silver", "gold"))}
            elif change == "consent":
                props = {"consent": {**props["consent"], "sms": rng.random() < 0.5}}
            else:
                props = {"timezone": rng.choice(TIMEZONES)}
            out.append(("profile.updated", props))
        if rng.random() < 0.5:
            out.append(("app.opened", {"platform": rng.choice(PLATFORMS)}))
        views = 1
        while views < 12 and rng.random() < 0.65:
            views += 1
        prices = []
        for _ in range(views):
            price = round(math.exp(rng.gauss(4.1, 0.8)), 2)
            prices.append(price)
            out.append(("product.viewed", {"product_id": f"p-{rng.randrange(20_000)}",
                                           "category": rng.choice(CATEGORIES), "price": price}))
        if rng.random() < 0.3:
            items = rng.randint(1, min(3, len(prices)))
            value = round(sum(rng.sample(prices, items)), 2)
            out.append(("cart.updated", {"value": value, "items": items, "currency": "EUR"}))
            if rng.random() < 0.4:
                out.append(("order.completed", {"order_id": f"o-{self.tag}-{self.n}-{rank}", "total": value,
                                                "currency": "EUR"}))
        return out

    def next(self) -> dict[str, Any]:
        while len(self.order) < self.sessions:
            for _ in range(5):
                rank = self._draw()
                if rank not in self.active:
                    break
            else:
                continue
            self.active[rank] = self._session(rank)
            self.order.append(rank)
        i = self.rng.randrange(len(self.order))
        rank = self.order[i]
        queue = self.active[rank]
        etype, props = queue.popleft()
        if not queue:
            del self.active[rank]
            self.order[i] = self.order[-1]
            self.order.pop()
        self.n += 1
        self.types[etype] += 1
        self.per_customer[rank] += 1
        return {"event_id": f"e-{self.tag}-{self.n}", "customer_id": f"c-{rank}", "type": etype, "properties": props}


def feedback_for(action: dict[str, Any]) -> list[tuple[float, dict[str, Any]]]:
    """What the simulated channel adapter reports for one action: ``[(delay s, event without ts)]``.

    Deterministic per ``action_id`` (so a re-delivered action yields the same feedback event ids,
    which the engine de-duplicates)."""
    aid, channel, cid = action.get("action_id"), action.get("channel"), action.get("customer_id")
    if not isinstance(aid, str) or not isinstance(channel, str) or not isinstance(cid, str):
        return []
    p_delivered, p_opened, p_clicked = FEEDBACK_MODEL.get(channel, (0.9, 0.0, 0.0))
    r = random.Random(aid)
    out: list[tuple[float, dict[str, Any]]] = []

    def make(kind: str, delay: float) -> None:
        out.append((delay, {"event_id": f"fb-{aid}-{kind}", "customer_id": cid, "type": f"message.{kind}",
                            "properties": {"action_id": aid, "channel": channel}}))

    if r.random() >= p_delivered:
        return out
    t = r.uniform(*DELIVERED_DELAY_S)
    make("delivered", t)
    if p_opened and r.random() < p_opened:
        t += r.uniform(*OPENED_DELAY_S)
        make("opened", t)
        if r.random() < p_clicked:
            make("clicked", t + r.uniform(*CLICKED_DELAY_S))
    elif not p_opened and r.random() < p_clicked:
        make("clicked", t + r.uniform(*CLICKED_DELAY_S))
    return out


def load_engine(journeys: str | Path = JOURNEYS, policies: str | Path = POLICIES):  # -> Engine
    from orchestrator.core import Engine, JourneySet, load_journey_dir, load_policies
    pol = load_policies(str(policies))
    loaded, problems = load_journey_dir(str(journeys), channels=pol.channels)
    if problems:
        raise RuntimeError("journeys refused: " + "; ".join(str(p) for p in problems))
    return Engine(JourneySet(loaded), pol)


def build_backlog(shoppers: Shoppers, n: int, engine: Any, *, start_ms: int | None = None,
                  virtual_rate: float = VIRTUAL_RATE) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``n`` events: the shoppers' stream with the adapter's feedback already woven in.

    The pure engine runs over the stream on a virtual clock (``virtual_rate`` events/s); each action
    it emits gets the adapter's feedback inserted where its delay puts it. Returns the events (dicts
    without ``ts``) and statistics of the stream.
    """
    from orchestrator.core.events import Event
    start = start_ms if start_ms is not None else now_ms()
    heap: list[tuple[float, int, dict[str, Any]]] = []
    states: dict[str, Any] = {}
    events: list[dict[str, Any]] = []
    seq = 0
    outputs: Counter[str] = Counter()
    entered = 0
    while len(events) < n:
        t = virtual_time(start, len(events), virtual_rate)
        if heap and heap[0][0] <= t:
            ev = heapq.heappop(heap)[2]
        else:
            ev = shoppers.next()
        ts = int(t)
        cid = ev["customer_id"]
        result = engine.on_event(states.get(cid), Event(ev["event_id"], cid, ev["type"], ts, ev["properties"]), ts)
        if result.state is None:
            states.pop(cid, None)
        else:
            states[cid] = result.state
        entered += sum(1 for lc in result.lifecycle if lc.kind == "entered")
        for o in result.outputs:
            outputs[o.topic] += 1
            if o.topic.startswith("actions."):
                for delay, fb in feedback_for(o.value):
                    seq += 1
                    heapq.heappush(heap, (t + delay * 1000.0, seq, fb))
        events.append(ev)
    types = Counter(e["type"] for e in events)
    per_customer = Counter(e["customer_id"] for e in events)
    counts = sorted(per_customer.values(), reverse=True)
    top1 = max(1, len(counts) // 100)
    stats = {
        "events": len(events),
        "types": dict(types.most_common()),
        "feedback_share": round(sum(v for k, v in types.items() if k.startswith("message.")) / max(1, len(events)), 4),
        "distinct_customers": len(per_customer),
        "customer_population": shoppers.customers,
        "heaviest_customer_share": round(counts[0] / len(events), 4) if counts else 0,
        "top_1pct_customers_share": round(sum(counts[:top1]) / len(events), 4) if counts else 0,
        "predicted_outputs": dict(outputs.most_common()),
        "predicted_actions": sum(v for k, v in outputs.items() if k.startswith("actions.")),
        "predicted_journey_entries": entered,
        "mean_event_bytes": round(sum(len(orjson.dumps({**e, "ts": start})) for e in events[:5000])
                                  / max(1, min(5000, len(events))), 1),
    }
    return events, stats


def virtual_time(start_ms: int, i: int, rate: float = VIRTUAL_RATE) -> float:
    """When the ``i``-th event of a stream starting at ``start_ms`` happens on the virtual clock
    (``rate`` events/s); its ``ts`` is this, truncated to the millisecond."""
    return start_ms + i * 1000.0 / rate


class LazyEvents:
    """The continuation of a :class:`Shoppers` stream, made on demand and kept, so that every
    system that reads it from the start gets the same events."""

    def __init__(self, shoppers: Shoppers) -> None:
        self.shoppers = shoppers
        self.events: list[dict[str, Any]] = []

    def reader(self) -> Callable[[], dict[str, Any]]:
        i = 0

        def next_event() -> dict[str, Any]:
            nonlocal i
            if i >= len(self.events):
                self.events.append(self.shoppers.next())
            ev = self.events[i]
            i += 1
            return ev
        return next_event


def encode(event: dict[str, Any], ts: int) -> tuple[bytes, bytes]:
    event["ts"] = ts
    return event["customer_id"].encode(), orjson.dumps(event)

