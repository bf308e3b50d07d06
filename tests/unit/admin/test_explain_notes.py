"""``orchestrator explain`` notes what the state's fields do not say by themselves."""

from __future__ import annotations

from orchestrator.admin.explain import describe_state, render_text
from tests.unit.core.helpers import HOUR, T0, Customer, engine


def report(state) -> tuple[dict, str]:
    described = describe_state(state)
    return described, render_text({"customer_id": "c-1", "state": described, "decisions": []})


def test_explain_says_an_invalid_timezone_is_read_as_utc() -> None:
    c = Customer(engine())
    c.event("profile.updated", T0, timezone="Mars/Olympus_Mons")
    described, text = report(c.state)
    assert described["notes"] == ["profile timezone 'Mars/Olympus_Mons' is not a known IANA time zone name; "
                                  "UTC is used (counted in orch_invalid_profile_fields_total)"]
    assert "note: profile timezone 'Mars/Olympus_Mons' is not a known IANA time zone name; UTC is used" in text
    c.event("profile.updated", T0 + 1, timezone="Europe/Oslo")
    assert report(c.state)[0]["notes"] == []


def test_explain_says_a_tombstone_is_an_erasure() -> None:
    # As an erasure left a customer before the duplicate window moved out of the state: the worker
    # deletes such a record when it next decides anything for the customer.
    from orchestrator.core.state import CustomerState
    described, text = report(CustomerState(erased_ms=T0 + HOUR, seen_ids=b"12345678", seen_at=b"\x00\x00\x00\x01"))
    assert described["profile"] == {}
    assert described["notes"] == ["erased at 2026-03-10T13:00:00.000Z: nothing of the customer is kept; this "
                                  "record is deleted when the customer's partition next decides anything for it"]
    assert "note: erased at" in text


def test_an_erasure_leaves_no_state_to_explain() -> None:
    c = Customer(engine())
    c.event("profile.updated", T0, first_name="Ann")
    c.event("profile.erased", T0 + HOUR)
    assert c.state is None


def test_explain_shows_how_many_times_the_customer_entered_each_journey() -> None:
    from orchestrator.core.state import CustomerState
    report = {"customer_id": "c-1", "state": describe_state(CustomerState(entries={"welcome": 2})), "decisions": []}
    assert report["state"]["entries"] == {"welcome": 2}
    assert "entries so far (for entry.max_entries): welcome 2" in render_text(report)
