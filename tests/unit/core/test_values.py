"""What a state keeps and an output carries (docs/events.md#values): integers within 64 bits, objects and
lists at most 32 deep. Events that would put anything else into a profile are dead-lettered; expression
results beyond the bounds are null. Before, such a value stopped the worker (its state could not be
encoded, outside any record's error handling) and ``simulate`` (its output could not be written)."""

from __future__ import annotations

import json

import orjson
import pytest

from orchestrator.core import Event, Rejection, parse_event
from orchestrator.core.events import MAX_TS_MS, MAX_VALUE_DEPTH
from orchestrator.core.state import PROFILE_MAX_BYTES, CustomerState, decode_state, encode_any, encode_state
from orchestrator.errors import DefinitionError
from orchestrator.runtime.transaction import encode_value
from orchestrator.simulate import Simulation
from tests.unit.core.helpers import T0, Customer, actions, engine, ev, journey, one, raw_event

BIG = 10**30
ANY_CLOCK = 2**62             # simulate's: accepts every timestamp


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def depth_of(value: object) -> int:
    return 1 + depth_of(value[0]) if isinstance(value, list) and value else 0


def parse(raw: bytes, now: int = T0) -> Event | Rejection:
    return parse_event(raw, max_bytes=1 << 20, now_ms=now)


# ---------------------------------------------------------------------------- events
@pytest.mark.parametrize("value, problem", [
    (BIG, "an integer outside -2^63 .. 2^64-1"),
    (-(2**63) - 1, "an integer outside -2^63 .. 2^64-1"),
    ({"points": [1, 2, {"x": 2**64}]}, "an integer outside -2^63 .. 2^64-1"),
    (nested(MAX_VALUE_DEPTH + 1), f"objects and lists nested more than {MAX_VALUE_DEPTH} deep"),
])
def test_a_profile_update_a_profile_cannot_keep_is_dead_lettered(value: object, problem: str) -> None:
    parsed = parse(raw_event("profile.updated", first_name="Ada", bad=value))
    assert isinstance(parsed, Rejection)
    assert parsed.reason == "invalid_schema"
    assert parsed.detail == f"{problem}: a profile cannot keep it - at `$.properties.bad`"


@pytest.mark.parametrize("value", [2**64 - 1, -(2**63), nested(MAX_VALUE_DEPTH), {"a": {"b": [1.5, None, "x"]}}])
def test_a_profile_update_within_the_bounds_is_merged_and_the_state_encodes(value: object) -> None:
    c = Customer(engine())
    c.event("profile.updated", T0, kept=value)
    assert c.state is not None and c.state.profile["kept"] == value
    assert decode_state(encode_state(c.state)).profile["kept"] == value


def test_other_events_may_carry_any_integer_and_depth() -> None:
    parsed = parse(raw_event("cart.updated", value=BIG, deep=nested(100)))
    assert isinstance(parsed, Event) and parsed.properties["value"] == BIG


def test_bytes_that_are_not_utf8_in_a_string_are_invalid_json() -> None:
    raw = b'{"event_id": "e-1", "customer_id": "c-\xff", "type": "cart.updated", "ts": 1795428000123}'
    parsed = parse(raw)
    assert isinstance(parsed, Rejection)
    assert (parsed.reason, parsed.detail) == ("invalid_json", "not UTF-8: a string holds bytes that are not valid UTF-8")


def test_json_nested_too_deeply_to_decode_is_invalid_json() -> None:
    raw = (b'{"event_id": "e-1", "customer_id": "c-1", "type": "cart.updated", "ts": 1795428000123, '
           b'"properties": {"x": ' + b"[" * 5000 + b"]" * 5000 + b"}}")
    parsed = parse(raw)
    assert isinstance(parsed, Rejection)
    assert (parsed.reason, parsed.detail) == ("invalid_json", "objects and lists nested too deeply to decode")


def test_a_ts_after_9999_is_invalid_schema_whatever_the_clock() -> None:
    for now in (T0, ANY_CLOCK):
        raw = json.dumps({"event_id": "e-1", "customer_id": "c-1", "type": "cart.updated", "ts": MAX_TS_MS + 1})
        parsed = parse(raw.encode(), now)
        assert isinstance(parsed, Rejection) and parsed.reason == "invalid_schema", parsed
        assert "is after 9999-12-31T23:59:59.999Z" in parsed.detail


# ---------------------------------------------------------------------------- expression results
CAPTURING = """
journey: values
entry: {on: cart.updated, reentry: always}
capture: {scaled: event.properties.value * 100000000, events: "[event]", deep: event.properties.deep}
start: s
nodes:
  s:
    send: email
    template: t
    params: {scaled: event.properties.value * 100000000, fits: event.properties.value * 10, events: "[event]",
             deep: event.properties.deep, kept: journey.vars.scaled, big: event.properties.big}
    next: w
  w: {wait: 1h, next: done}
  done: {exit: completed}
"""


def test_expression_results_a_state_or_an_output_cannot_hold_are_null_there() -> None:
    c = Customer(engine(CAPTURING))
    out = c.event("cart.updated", T0, value=10**12, big=BIG, deep=nested(40))
    params = one(actions(out))["params"]
    assert params["scaled"] is None and params["kept"] is None and params["big"] is None
    assert params["fits"] == 10**13
    assert params["events"][0]["event_id"] and params["events"][0]["properties"]["value"] == 10**12
    assert params["events"][0]["properties"]["big"] is None
    assert depth_of(params["deep"]) == MAX_VALUE_DEPTH and orjson.dumps(params)   # cut at 32, then null
    assert json.loads(orjson.dumps(params))["deep"] == params["deep"]
    state = c.state
    assert state is not None
    assert state.instances["values"].vars["scaled"] is None
    assert decode_state(encode_state(state)).instances["values"].vars["events"][0]["type"] == "cart.updated"


# ---------------------------------------------------------------------------- numbers in definitions
# A version or a timer beyond what a state holds once passed validation; the state of the first customer
# to enter could then not be encoded, which stopped the worker on every restart.
@pytest.mark.parametrize("line, problem", [
    ("version: 2147483648", "version must be a whole number from 1 to 2147483647"),
    ("version: 99999999999999999999", "version must be a whole number from 1 to 2147483647"),
])
def test_a_version_a_state_cannot_hold_is_refused(line: str, problem: str) -> None:
    with pytest.raises(DefinitionError) as refused:
        journey(LONG_WAIT.replace("version: 1", line))
    assert [p.split(": ", 1)[1].split(" (see")[0] for p in refused.value.problems] == [problem]


@pytest.mark.parametrize("wait", ["36501d", "5215w", "99999999999999d"])
def test_a_duration_beyond_100_years_is_refused(wait: str) -> None:
    with pytest.raises(DefinitionError) as refused:
        journey(LONG_WAIT.replace("36500d", wait))
    assert f"nodes.w.wait: a duration is at most 36500d (100 years), got '{wait}'" in refused.value.problems[0]


def test_the_longest_wait_and_the_highest_version_fit_a_state() -> None:
    c = Customer(engine(LONG_WAIT.replace("version: 1", "version: 2147483647")))
    c.event("cart.updated", T0)
    assert c.state is not None and c.state.next_due_ms() == T0 + 36_500 * 86_400_000
    assert encode_value(c.state)


LONG_WAIT = """
journey: long
version: 1
entry: {on: cart.updated}
start: w
nodes:
  w: {wait: 36500d, next: s}
  s: {send: email, template: t}
"""


# ---------------------------------------------------------------------------- the state's size
# A state is one changelog record. Profile updates that grew it past Kafka's message size once stopped
# the worker (MessageSizeTooLargeError), and again after every restart: the partition never moved on.
def test_a_profile_update_that_would_make_the_profile_too_large_is_refused_without_effect() -> None:
    c = Customer(engine(CAPTURING))
    field = "x" * 60_000
    for i in range(8):                                                     # 8 x 60 KB: under 512 KiB
        c.event("profile.updated", T0 + i, **{f"f{i}": field})
    state = c.state
    assert state is not None and len(encode_any(state.profile)) < PROFILE_MAX_BYTES
    before = encode_state(state)
    result = c.engine.on_event(state, ev("profile.updated", "c-1", T0 + 9, f9=field), T0 + 9)
    assert result.refused is not None and result.outputs == []
    assert result.refused.startswith("the customer's profile would be ") and f"at most {PROFILE_MAX_BYTES} bytes" in \
        result.refused
    assert encode_state(result.state) == before                           # nothing changed, time and activity neither
    smaller = c.engine.on_event(state, ev("profile.updated", "c-1", T0 + 10, f0=None, f9=field), T0 + 10)
    assert smaller.refused is None and "f9" in smaller.state.profile     # a field deleted makes room


def test_a_profile_update_that_shrinks_a_profile_over_the_limit_is_taken() -> None:
    # (a profile written larger than the limit before the limit was there)
    eng = engine()
    state = CustomerState(profile={"big": "x" * 600_000})
    assert len(encode_any(state.profile)) > PROFILE_MAX_BYTES
    assert eng.on_event(state, ev("profile.updated", "c-1", T0 + 1, other="y" * 10), T0 + 1).refused
    shrink = eng.on_event(state, ev("profile.updated", "c-1", T0 + 2, big="small"), T0 + 2)
    assert shrink.refused is None and shrink.state.profile["big"] == "small"


def test_simulate_dead_letters_a_profile_update_the_state_cannot_hold() -> None:
    field = "x" * 60_000
    lines = [raw_event("profile.updated", "c-1", T0 + i, f"p{i}", **{f"f{i}": field}) for i in range(10)]
    records = list(Simulation(engine(CAPTURING)).run(lines))
    dlq = [r["value"] for r in records if r["topic"] == "dlq"]
    assert [(d["reason"], d["offset"]) for d in dlq] == [("too_large", 9), ("too_large", 10)]
    assert '"event_id": "p8"' in dlq[0]["raw"]                             # (cut to its first 4 KiB)
