"""A Quix Streams app with one simplified cart-recovery journey kept in its state.

    BENCH_IN=t.events BENCH_OUT=t.actions BENCH_GROUP=t-quixjourney BENCH_STATE_DIR=/tmp/d \
        python -m benchmarks.quix_journey

What a Python team would write instead of the engine for one journey, idiomatically: an
``Application`` (at-least-once, RocksDB state with its changelog topic, ``commit_interval=1.0``,
``auto_offset_reset="earliest"``), ``sdf.apply(step, stateful=True)`` on the JSON events keyed by
customer, ``filter`` to keep the actions, ``to_topic``. Per customer, the state keeps the profile
(tier and consent from ``profile.updated``) and the active journey, if any:

* ``cart.updated`` with ``properties.value >= 50`` enters the journey unless it is active;
* the channel is chosen like ``journeys/cart-recovery.yaml``'s ``choose`` node, simplified: gold
  tier -> sms, else email, else push; consent as ``policies.yaml`` says (sms opt-in, email and push
  opt-out): the first consented channel of the choice and the ones after it;
* one action at entry (a deterministic ``action_id``: journey, customer, entering event), none if
  no channel is consented;
* ``order.completed`` ends the journey.

No waits, no holdout, no frequency caps, quiet hours, decisions or suppressions: far less than the
engine does per event, on purpose (the cheapest honest version of the same product idea).

Environment: ``BENCH_BOOTSTRAP`` (``localhost:9092``), ``BENCH_IN``, ``BENCH_OUT``, ``BENCH_GROUP``,
``BENCH_STATE_DIR``.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

JOURNEY = "cart-recovery"
ENTRY_VALUE = 50
OPT_IN = {"sms"}                          # policies.yaml: consent {sms: opt_in, email: opt_out, push: opt_out}


def consented(channel: str, consent: dict[str, Any]) -> bool:
    given = consent.get(channel)
    return given is True if channel in OPT_IN else given is not False


def choose(profile: dict[str, Any]) -> str | None:
    """The first consented channel in the order the journey prefers for this customer."""
    order = ("sms", "email", "push") if profile.get("ltv_tier") == "gold" else ("email", "push")
    consent = profile.get("consent") or {}
    return next((c for c in order if consented(c, consent)), None)


def step(event: dict[str, Any], state: Any) -> dict[str, Any] | None:
    """One event of one customer: update the profile, enter or leave the journey; the action, if any."""
    etype = event.get("type")
    props = event.get("properties") or {}
    if etype == "profile.updated":
        profile = state.get("profile", {})
        if "ltv_tier" in props:
            profile["ltv_tier"] = props["ltv_tier"]
        if isinstance(props.get("consent"), dict):
            profile["consent"] = {**profile.get("consent", {}), **props["consent"]}
        state.set("profile", profile)
        return None
    if etype == "order.completed":
        if state.exists("journey"):
            state.delete("journey")
        return None
    if etype != "cart.updated" or not isinstance(props.get("value"), (int, float)) or props["value"] < ENTRY_VALUE:
        return None
    if state.exists("journey"):
        return None
    channel = choose(state.get("profile", {}))
    state.set("journey", {"entered_at": event.get("ts"), "cart_value": props["value"], "channel": channel})
    if channel is None:
        return None
    customer = event.get("customer_id")
    return {"action_id": f"{JOURNEY}:{customer}:{event.get('event_id')}", "journey": JOURNEY,
            "customer_id": customer, "channel": channel, "template": "cart-reminder-1",
            "params": {"cart_value": props["value"]}, "event_ts": event.get("ts")}


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
    actions = app.topic(os.environ["BENCH_OUT"], value_serializer="json")
    sdf = app.dataframe(events)
    sdf = sdf.apply(step, stateful=True).filter(lambda action: action is not None)
    sdf.to_topic(actions)
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
