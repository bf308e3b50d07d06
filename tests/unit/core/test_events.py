"""SPEC §2 events and §3 dead letters: parse_event and dead_letter()."""

from __future__ import annotations

import json

import pytest

from orchestrator.core import Event, Rejection, dead_letter, parse_event
from orchestrator.core.events import DEAD_LETTER_REASONS
from orchestrator.core.timeutil import format_ts, parse_ts_ms
from tests.unit.core.helpers import CHANNELS, DEAD_LETTER_KEYS, MIN, T0

MAX = 65536


def parse(body: object, now: int = T0, max_bytes: int = MAX, channels=CHANNELS) -> Event | Rejection:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_event(raw, max_bytes=max_bytes, now_ms=now, channels=channels)


def good(**over: object) -> dict:
    body = {"event_id": "e-9f1c", "customer_id": "c-42", "type": "cart.updated",
            "ts": "2026-03-10T11:59:00.123Z", "properties": {"value": 80.5, "category": "shoes"},
            "account_id": "acme"}
    body.update(over)
    return {k: v for k, v in body.items() if v is not ...}


def reason(result: Event | Rejection) -> str:
    assert isinstance(result, Rejection), f"expected a rejection, got {result!r}"
    assert result.reason in DEAD_LETTER_REASONS
    assert result.detail
    return result.reason


# ---------------------------------------------------------------------------- valid events
def test_valid_event_with_rfc3339_ts() -> None:
    e = parse(good())
    assert isinstance(e, Event)
    assert (e.event_id, e.customer_id, e.type, e.account_id) == ("e-9f1c", "c-42", "cart.updated", "acme")
    assert e.ts_ms == T0 - MIN + 123
    assert e.properties == {"value": 80.5, "category": "shoes"}


def test_valid_event_with_epoch_ms_ts_equals_rfc3339() -> None:
    ms = T0 - 1234
    e = parse(good(ts=ms))
    assert isinstance(e, Event) and e.ts_ms == ms
    e2 = parse(good(ts=format_ts(ms)))
    assert isinstance(e2, Event) and e2.ts_ms == ms


def test_rfc3339_with_offset_is_normalised_to_utc() -> None:
    e = parse(good(ts="2026-03-10T13:00:00+02:00"))
    assert isinstance(e, Event)
    assert e.ts_ms == parse_ts_ms("2026-03-10T11:00:00Z")


def test_optional_fields_may_be_absent() -> None:
    e = parse(good(properties=..., account_id=...))
    assert isinstance(e, Event)
    assert e.properties == {} and e.account_id is None


def test_unknown_top_level_fields_are_tolerated() -> None:
    assert isinstance(parse(good(source="web")), Event)


def test_limits_are_inclusive() -> None:
    e = parse(good(event_id="e" * 128, customer_id="c" * 128, type="a" * 64))
    assert isinstance(e, Event)


def test_valid_feedback_event() -> None:
    e = parse(good(type="message.opened", properties={"action_id": "a-1", "channel": "email"}))
    assert isinstance(e, Event) and e.type == "message.opened"


# ---------------------------------------------------------------------------- dead-letter reasons
@pytest.mark.parametrize("raw", [b"not json", b"{", b'{"event_id": "e-1",}', b"\xff\xfe", b""])
def test_invalid_json(raw: bytes) -> None:
    assert reason(parse(raw)) == "invalid_json"


def test_null_value_is_invalid_json() -> None:
    assert reason(parse_event(None, max_bytes=MAX, now_ms=T0)) == "invalid_json"  # type: ignore[arg-type]


@pytest.mark.parametrize("body", [
    pytest.param(good(customer_id=...), id="missing customer_id"),
    pytest.param(good(event_id=...), id="missing event_id"),
    pytest.param(good(type=...), id="missing type"),
    pytest.param(good(ts=...), id="missing ts"),
    pytest.param(good(customer_id=42), id="customer_id not a string"),
    pytest.param(good(event_id=None), id="event_id null"),
    pytest.param(good(properties=[1, 2]), id="properties not an object"),
    pytest.param(good(properties="x"), id="properties a string"),
    pytest.param(good(ts=True), id="ts a boolean"),
    pytest.param(good(ts=1.5), id="ts a float"),
    pytest.param(good(ts="yesterday"), id="ts not a date"),
    pytest.param(good(ts="2026-13-45T00:00:00Z"), id="ts impossible date"),
    pytest.param(good(type="Cart.Updated"), id="type upper case"),
    pytest.param(good(type="cart updated"), id="type with space"),
    pytest.param(good(type="cart/updated"), id="type with slash"),
    pytest.param(good(type=""), id="type empty"),
    pytest.param(good(customer_id=""), id="customer_id empty"),
    pytest.param(good(event_id="e" * 129), id="event_id 129 chars"),
    pytest.param(good(customer_id="c" * 129), id="customer_id 129 chars"),
    pytest.param(good(type="a" * 65), id="type 65 chars"),
    pytest.param([1, 2, 3], id="array instead of object"),
    pytest.param("just a string", id="string instead of object"),
])
def test_invalid_schema(body: object) -> None:
    assert reason(parse(body)) == "invalid_schema"


def test_too_large() -> None:
    body = good(properties={"blob": "x" * 70_000})
    assert reason(parse(body)) == "too_large"
    # and the limit is configurable (ORCH_MAX_EVENT_BYTES)
    small = json.dumps(good()).encode()
    assert reason(parse(small, max_bytes=len(small) - 1)) == "too_large"
    assert isinstance(parse(small, max_bytes=len(small)), Event)


def test_too_large_is_checked_before_parsing() -> None:
    assert reason(parse(b"x" * (MAX + 1))) == "too_large"


def test_future_timestamp_more_than_5_minutes_ahead() -> None:
    assert reason(parse(good(ts=T0 + 5 * MIN + 1))) == "future_timestamp"
    assert reason(parse(good(ts=format_ts(T0 + 6 * MIN)))) == "future_timestamp"


def test_timestamp_4_minutes_ahead_is_accepted() -> None:
    e = parse(good(ts=T0 + 4 * MIN))
    assert isinstance(e, Event) and e.ts_ms == T0 + 4 * MIN
    assert isinstance(parse(good(ts=T0 + 5 * MIN)), Event)


@pytest.mark.parametrize("ts", [253_402_300_800_000, 10**15, 99999999999999999999999])
def test_absurd_future_ts_is_dead_lettered_never_raised(ts: int) -> None:
    # After 9999 (docs/events.md#dead-letters: invalid_schema), whatever the clock: the worker's, or the
    # simulator's far-future one, where it must still be refused here, not crash the engine later.
    assert reason(parse(good(ts=ts))) == "invalid_schema"
    assert reason(parse(good(ts=ts), now=2**62)) == "invalid_schema"


@pytest.mark.parametrize("ts", [1_773_144_000, 0, 99_999_999_999])
def test_an_integer_ts_below_10_to_the_11_looks_like_seconds_and_is_refused(ts: int) -> None:
    result = parse(good(ts=ts))
    assert reason(result) == "invalid_schema"
    assert "seconds" in result.detail and str(ts) in result.detail and "$.ts" in result.detail


def test_an_integer_ts_of_10_to_the_11_is_milliseconds() -> None:
    e = parse(good(ts=10**11), now=T0)          # 1973-03-03: valid, just old
    assert isinstance(e, Event) and e.ts_ms == 10**11


def test_negative_epoch_ms_is_invalid_schema() -> None:
    assert reason(parse(good(ts=-1))) == "invalid_schema"


@pytest.mark.parametrize("etype", ["message.delivered", "message.opened", "message.clicked",
                                   "message.bounced", "message.unsubscribed", "message.failed"])
@pytest.mark.parametrize("props", [
    pytest.param(..., id="no properties"),
    pytest.param({}, id="empty properties"),
    pytest.param({"channel": "email"}, id="no action_id"),
    pytest.param({"action_id": "a-1"}, id="no channel"),
    pytest.param({"action_id": 7, "channel": "email"}, id="action_id not a string"),
    pytest.param({"action_id": "a-1", "channel": None}, id="channel null"),
])
def test_invalid_feedback(etype: str, props: object) -> None:
    assert reason(parse(good(type=etype, properties=props))) == "invalid_feedback"


def test_feedback_for_unknown_channel_is_invalid_feedback() -> None:
    body = good(type="message.clicked", properties={"action_id": "a-1", "channel": "pigeon"})
    assert reason(parse(body)) == "invalid_feedback"


def test_parse_event_never_raises_on_garbage() -> None:
    for raw in [b"null", b"true", b"1", b"[]", b'{"a": {"b": [', b"\x00" * 10, "é".encode("latin-1"),
                b'{"event_id": "e", "customer_id": "c", "type": "t", "ts": 99999999999999999999999}']:
        result = parse(raw)
        assert isinstance(result, (Event, Rejection))
        if isinstance(result, Rejection):
            assert result.reason in DEAD_LETTER_REASONS


# ---------------------------------------------------------------------------- dead_letter()
def test_dead_letter_has_exactly_the_spec_keys() -> None:
    raw = b"not json"
    rej = parse(raw)
    assert isinstance(rej, Rejection)
    dl = dead_letter(rej, topic="orch.events", partition=3, offset=17, raw=raw, now_ms=T0)
    assert set(dl) == DEAD_LETTER_KEYS
    assert dl["reason"] == "invalid_json"
    assert dl["detail"] == rej.detail
    assert (dl["topic"], dl["partition"], dl["offset"]) == ("orch.events", 3, 17)
    assert dl["raw"] == "not json"
    assert dl["ts"] == format_ts(T0) and parse_ts_ms(dl["ts"]) == T0
    json.dumps(dl)  # JSON-serialisable


def test_dead_letter_of_a_1mb_event_truncates_raw() -> None:
    raw = json.dumps(good(properties={"blob": "y" * (1 << 20)})).encode()
    assert len(raw) > 1 << 20
    rej = parse(raw)
    assert reason(rej) == "too_large"
    dl = dead_letter(rej, topic="orch.events", partition=0, offset=1, raw=raw, now_ms=T0)  # type: ignore[arg-type]
    assert set(dl) == DEAD_LETTER_KEYS
    assert dl["reason"] == "too_large"
    assert 0 < len(dl["raw"].encode()) <= 16_384
    assert raw.decode().startswith(dl["raw"])
    assert len(json.dumps(dl)) < 20_000


def test_dead_letter_with_binary_raw_and_no_coordinates() -> None:
    raw = b"\xff\xfe\x00garbage"
    rej = parse(raw)
    dl = dead_letter(rej, topic="orch.events", partition=None, offset=None, raw=raw, now_ms=T0)  # type: ignore[arg-type]
    assert set(dl) == DEAD_LETTER_KEYS
    assert isinstance(dl["raw"], str)
    json.dumps(dl)


@pytest.mark.parametrize("raw", [
    b'{"event_id":"e","customer_id":"c","type":"Cart.Updated","ts":1767225600000}',         # type off the pattern
    b'{"event_id":"e","customer_id":"c","type":"BAD","ts":"x"}',                             # and a bad ts
    b'{"event_id":"e","type":"BAD","ts":1767225600000}',                                     # and a missing field
    b'{"event_id":"e","customer_id":"c","type":"BAD","ts":1767225600000,"properties":[1',   # and broken JSON
    b'{"event_id":"","customer_id":"c","type":"cart.updated","ts":1767225600000}',          # empty id
    b'{"event_id":"e","customer_id":"c","type":"' + b"a" * 65 + b'","ts":1767225600000}',   # type too long
    b'{"event_id":"e","customer_id":"c","type":"cart.updated","ts":1767225600000',          # broken JSON
])
def test_a_refused_event_gets_the_error_of_the_full_schema_check(raw: bytes) -> None:
    """Event types are checked against their pattern once each (not by msgspec on every event); an
    event refused for any reason gets the message the full schema check gives, whatever it contains."""
    import msgspec

    from orchestrator.core.events import _Wire
    with pytest.raises(msgspec.DecodeError) as full:
        msgspec.json.Decoder(_Wire).decode(raw)
    for _ in range(2):                                   # the second time with the type cache warm
        got = parse_event(raw, max_bytes=1 << 20, now_ms=T0, channels=CHANNELS)
        assert isinstance(got, Rejection)
        assert got.detail == str(full.value)
        assert got.reason == ("invalid_schema" if isinstance(full.value, msgspec.ValidationError) else "invalid_json")


def test_a_type_accepted_once_is_accepted_again_and_a_refused_one_never_is() -> None:
    ok = b'{"event_id":"e","customer_id":"c","type":"cart.updated","ts":%d}' % T0
    bad = b'{"event_id":"e","customer_id":"c","type":"cart updated","ts":%d}' % T0
    for _ in range(3):
        assert isinstance(parse_event(ok, max_bytes=1 << 20, now_ms=T0), Event)
        assert isinstance(parse_event(bad, max_bytes=1 << 20, now_ms=T0), Rejection)


def test_format_ts_writes_rfc3339_utc_with_milliseconds_for_any_epoch_ms():
    from datetime import datetime, timezone

    from hypothesis import given
    from hypothesis import strategies as st

    @given(st.integers(min_value=-31_536_000_000, max_value=253_402_300_799_999))   # years 1969 to 9999
    def check(ms: int) -> None:
        seconds, millis = divmod(ms, 1000)
        expected = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"
        assert format_ts(ms) == expected
        assert format_ts(ms) == expected                 # again, from the cache
        assert parse_ts_ms(expected) == ms
    check()
    assert format_ts(-1) == "1969-12-31T23:59:59.999Z" and format_ts(1_000) == "1970-01-01T00:00:01.000Z"


def test_format_ts_is_right_across_more_minutes_than_it_keeps():
    from datetime import datetime, timezone

    from orchestrator.core.timeutil import MINUTES_KEPT
    base = 1_796_000_000_000
    for i in range(MINUTES_KEPT + 500):              # the minutes' texts are cleared once on the way
        for ms in (base + i * 60_000 + 59_999, base + i * 60_000 + 7 * 1_013):
            seconds, millis = divmod(ms, 1000)
            assert format_ts(ms) == datetime.fromtimestamp(seconds, tz=timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"
