"""The webhook adapter's wire formats: what it accepts as an action or a suppression, and the
feedback events and dead letters it writes (pure functions: no Kafka, no HTTP)."""

from __future__ import annotations

from types import SimpleNamespace

import orjson
import pytest

from orchestrator.adapters.wire import (DELIVERY_FAILED, MAX_ID_CHARS, dead_letter_record, feedback_event,
                                        parse_action, parse_suppression)
from orchestrator.core.events import Rejection

ACTION = {"action_id": "a-1", "customer_id": "c-42", "channel": "email", "template": "t", "params": {}}


def test_an_action_comes_back_as_it_was_sent():
    assert parse_action(orjson.dumps(ACTION)) == ACTION


@pytest.mark.parametrize(("raw", "reason", "where"), [
    (None, "invalid_json", "null value"),
    (b"{not json", "invalid_json", "not JSON"),
    (b"[1, 2]", "invalid_schema", "at `$`"),
    (orjson.dumps({"customer_id": "c-42"}), "invalid_schema", "at `$.action_id`"),
    (orjson.dumps({"action_id": 7, "customer_id": "c-42"}), "invalid_schema", "at `$.action_id`"),
    (orjson.dumps({"action_id": "a-1", "customer_id": ""}), "invalid_schema", "at `$.customer_id`"),
    (orjson.dumps({"action_id": "a\n1", "customer_id": "c"}), "invalid_schema", "Idempotency-Key"),
    (orjson.dumps({"action_id": "é", "customer_id": "c"}), "invalid_schema", "printable ASCII"),
    (orjson.dumps({"action_id": "a" * (MAX_ID_CHARS + 1), "customer_id": "c"}), "invalid_schema",
     f"at most {MAX_ID_CHARS}"),
])
def test_an_action_the_adapter_cannot_rely_on_is_refused_with_the_json_path(raw, reason, where):
    got = parse_action(raw)
    assert isinstance(got, Rejection)
    assert got.reason == reason
    assert where in got.detail


def test_an_id_of_the_longest_allowed_length_is_an_action():
    action = {"action_id": "a" * MAX_ID_CHARS, "customer_id": "c"}
    assert parse_action(orjson.dumps(action)) == action


def test_a_suppression_needs_an_id_and_lists_of_strings():
    ok = {"suppression_id": "s-1", "customer_id": "c", "channels": ["sms"], "cancels": ["a-1", "a-2"]}
    assert parse_suppression(orjson.dumps(ok)) == ok
    assert parse_suppression(orjson.dumps({"suppression_id": "s-1"})) == {"suppression_id": "s-1"}
    for bad, where in (({"channels": ["sms"]}, "$.suppression_id"),
                       ({"suppression_id": "s-1", "cancels": "a-1"}, "$.cancels"),
                       ({"suppression_id": "s-1", "channels": ["sms", 3]}, "$.channels")):
        got = parse_suppression(orjson.dumps(bad))
        assert isinstance(got, Rejection) and got.reason == "invalid_schema"
        assert f"at `{where}`" in got.detail


def test_a_feedback_event_id_depends_only_on_the_action_and_the_type():
    delivered = feedback_event(ACTION, "email", "message.delivered", 1_795_000_000_000)
    assert delivered == {"event_id": delivered["event_id"], "customer_id": "c-42", "type": "message.delivered",
                         "ts": "2026-11-18T11:06:40.000Z", "properties": {"action_id": "a-1", "channel": "email"}}
    assert delivered["event_id"].startswith("fb-")
    # Sent again later (after a restart): the same id, so the worker counts it once.
    assert feedback_event(ACTION, "email", "message.delivered", 1_795_000_999_000)["event_id"] == delivered["event_id"]
    failed = feedback_event(ACTION, "email", "message.failed", 1_795_000_000_000, 400)
    assert failed["event_id"] != delivered["event_id"]
    assert failed["properties"] == {"action_id": "a-1", "channel": "email", "status": 400}
    assert feedback_event(ACTION, "email", "message.failed", 0, None)["properties"]["status"] is None
    other = feedback_event({**ACTION, "action_id": "a-2"}, "email", "message.delivered", 1_795_000_000_000)
    assert other["event_id"] != delivered["event_id"]


def test_a_dead_letter_is_keyed_as_the_record_and_names_where_it_came_from():
    msg = SimpleNamespace(topic="orch.actions.email", partition=3, offset=1812, key=b"c-42",
                          value=orjson.dumps(ACTION))
    topic, key, value = dead_letter_record("orch.dlq", msg, Rejection(DELIVERY_FAILED, "HTTP 400 Bad Request"),
                                           1_795_000_000_000)
    assert (topic, key) == ("orch.dlq", b"c-42")
    assert orjson.loads(value) == {"reason": "delivery_failed", "detail": "HTTP 400 Bad Request",
                                   "topic": "orch.actions.email", "partition": 3, "offset": 1812,
                                   "raw": orjson.dumps(ACTION).decode(), "ts": "2026-11-18T11:06:40.000Z"}
    unkeyed = SimpleNamespace(topic="orch.actions.email", partition=0, offset=0, key=None, value=None)
    topic, key, value = dead_letter_record("orch.dlq", unkeyed, Rejection("invalid_json", "empty message"), 0)
    assert key is None and orjson.loads(value)["raw"] == ""
