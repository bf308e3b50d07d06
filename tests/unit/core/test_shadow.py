"""The decision engine: a shadow version decides beside the live one and sends nothing. Driven with explicit
clock values: no Kafka, no sleeps."""

from __future__ import annotations


# ---------------------------------------------------------------------------- shadow versions
SHADOW_LIVE = ("journey: promo\nversion: {v}\n{extra}entry: {{on: go, reentry: always}}\ngroup: g\n"
               "start: m\nnodes:\n  m: {{send: {ch}, template: t{v}, next: done}}\n  done: {{exit: completed}}\n")


def _j(v: int, ch: str = "email", extra: str = ""):
    from orchestrator.core import Policies, parse_journey
    return parse_journey(SHADOW_LIVE.format(v=v, ch=ch, extra=extra), f"promo-{v}.yaml", channels=Policies().channels)


def test_shadow_version_records_decisions_and_sends_nothing():
    from orchestrator.core import Engine, JourneySet, Policies
    from orchestrator.core.events import Event
    from orchestrator.core.policies import FrequencyRule
    policies = Policies(frequency=(FrequencyRule(1, 86_400_000),))
    engine = Engine(JourneySet([_j(1), _j(2, ch="sms", extra="shadow: true\n")]), policies)
    t0 = 1_795_000_000_000
    r = engine.on_event(None, Event("e1", "c1", "go", t0), t0)
    live = [o.value for o in r.outputs if o.topic == "decisions" and not o.value.get("shadow")]
    shadow = [o.value for o in r.outputs if o.topic == "decisions" and o.value.get("shadow")]
    assert [d["outcome"] for d in live] == ["entered", "sent", "exited"]
    # The shadow would have sent an sms; its send does not count, so the live send passes the 1/day cap.
    assert [d["outcome"] for d in shadow] == ["entered", "sent", "exited"]
    assert [d["channel"] for d in shadow if d["outcome"] == "sent"] == ["sms"]
    assert {d["journey_version"] for d in shadow} == {2}
    assert [o.topic for o in r.outputs if o.topic.startswith("actions.")] == ["actions.email"]
    assert len(r.state.sends) == 1                        # only the live send counts against caps
    assert [lc.version for lc in r.lifecycle] == [1, 1]   # statistics ignore the shadow


def test_a_shadow_cannot_share_the_live_version_number_and_promotion_replaces_it():
    from orchestrator.core import JourneySet
    js = JourneySet([_j(1)])
    assert js.add(_j(1, extra="shadow: true\n")).startswith("ignored")
    assert js.add(_j(2, extra="shadow: true\n")) == "added"
    assert js.shadow["promo"].version == 2
    assert js.add(_j(2)) == "replaced"                    # v2 promoted to live
    assert "promo" not in js.shadow and js.current["promo"].version == 2
