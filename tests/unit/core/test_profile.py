"""The decision engine: ``profile.updated`` merges, consent per channel, and the known profile fields.
Driven with explicit clock values: no Kafka, no sleeps."""

from __future__ import annotations

from orchestrator.core import Policies
from orchestrator.core.policies import QuietHours
from tests.unit.core.helpers import HOUR, T0, Customer, actions, decisions, engine, ev, one, ts
from tests.unit.core.journeys_fixtures import CART, INSTANT, PUSH_NOW


# ---------------------------------------------------------------------------- profile
def test_profile_updated_merges_and_null_deletes() -> None:
    c = Customer(engine(CART))
    c.event("profile.updated", T0, first_name="Ann", tier="gold", city="Oslo")
    assert c.state.profile == {"first_name": "Ann", "tier": "gold", "city": "Oslo"}
    c.event("profile.updated", T0 + 1, tier=None, city="Bergen", consent={"email": True})
    assert c.state.profile == {"first_name": "Ann", "city": "Bergen", "consent": {"email": True}}
    c.event("profile.updated", T0 + 2, missing_field=None)
    assert c.state.profile == {"first_name": "Ann", "city": "Bergen", "consent": {"email": True}}
    # the merged profile is what expressions see
    action = one(actions(c.event("cart.updated", T0 + 3, value=60)))
    assert action["params"]["tier"] is None


def test_profile_merge_is_shallow_except_consent() -> None:
    c = Customer(engine())
    c.event("profile.updated", T0, address={"city": "Oslo", "zip": "0150"}, consent={"email": True, "sms": True})
    c.event("profile.updated", T0 + 1, address={"city": "Bergen"}, consent={"sms": False})
    assert c.state.profile["address"] == {"city": "Bergen"}          # replaced as a whole
    assert c.state.profile["consent"] == {"email": True, "sms": False}


def test_consent_is_merged_per_channel_and_null_deletes_a_channel() -> None:
    sms = INSTANT.replace("send: email", "send: sms").replace("cart.updated", "go")
    c = Customer(engine(sms, policies=Policies(consent={"sms": "opt_in"})))
    c.event("profile.updated", T0, consent={"sms": True})
    c.event("profile.updated", T0 + 1, consent={"email": True})        # SPEC §2: keeps the earlier sms: true
    assert c.state.profile["consent"] == {"sms": True, "email": True}
    assert one(actions(c.event("go", T0 + 2)))["channel"] == "sms"
    c.event("profile.updated", T0 + 3, consent={"sms": None})          # null deletes that channel's entry
    assert c.state.profile["consent"] == {"email": True}


def test_a_consent_of_null_is_not_applied_so_an_unsubscribe_stays() -> None:
    """``{"consent": null}`` (a profile sync with an empty field) once deleted every channel's consent,
    an unsubscribe's ``false`` with it, and the next email went out."""
    c = Customer(engine(INSTANT.replace("cart.updated", "go")))
    c.event("profile.updated", T0, consent={"email": False})
    r = c.engine.on_event(c.state, ev("profile.updated", "c-1", T0 + 1, consent=None, first_name="A"), T0 + 1)
    assert r.invalid_fields == ("consent",)
    assert r.state.profile == {"consent": {"email": False}, "first_name": "A"}
    c.state = r.state
    outputs = c.event("go", T0 + 2)
    assert one(decisions(outputs, "no_consent"))["channel"] == "email" and actions(outputs) == []


def test_a_channel_consent_that_is_not_true_false_or_null_is_not_applied_and_is_reported() -> None:
    c = Customer(engine())
    c.event("profile.updated", T0, consent={"email": False, "sms": True})
    for value in ("false", 0, 1, "true", [], {}):
        r = c.engine.on_event(c.state, ev("profile.updated", "c-1", T0 + 1, consent={"email": value, "push": True}),
                              T0 + 1)
        assert r.invalid_fields == ("consent",), value
        assert r.state.profile["consent"] == {"email": False, "sms": True, "push": True}, value


def test_a_consent_that_is_not_an_object_is_not_applied_and_is_reported() -> None:
    c = Customer(engine())
    c.event("profile.updated", T0, consent={"sms": True})
    r = c.engine.on_event(c.state, ev("profile.updated", "c-1", T0 + 1, consent="yes"), T0 + 1)
    assert r.invalid_fields == ("consent",)
    assert r.state.profile["consent"] == {"sms": True}


# ---------------------------------------------------------------------------- known profile fields
def test_an_invalid_timezone_is_kept_reported_and_read_as_utc() -> None:
    pol = Policies(quiet_hours=QuietHours(("push",), 21 * 60, 8 * 60))
    c = Customer(engine(PUSH_NOW, policies=pol))
    night_utc = ts("2026-01-15T22:00:00Z")
    r = c.engine.on_event(None, ev("profile.updated", "c-1", night_utc - HOUR, timezone="Mars/Olympus_Mons"),
                          night_utc - HOUR)
    assert r.invalid_fields == ("timezone",)
    assert r.state.profile["timezone"] == "Mars/Olympus_Mons"
    c.state = r.state
    d = one(decisions(c.event("cart.updated", night_utc), "quiet_hours_deferred"))
    assert d["detail"] == "deferred to 2026-01-16T08:00:00.000Z"                  # UTC's 08:00
    ok = c.engine.on_event(c.state, ev("profile.updated", "c-1", T0, timezone="Europe/Oslo"), T0 + 1)
    assert ok.invalid_fields == ()
