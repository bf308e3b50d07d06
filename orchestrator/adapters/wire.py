"""The webhook adapter's wire formats: the records it reads and the records it writes.

- reads: an action (docs/events.md#actions) from ``<prefix>.actions.<channel>`` and a suppression
  (docs/events.md#suppressions) from ``<prefix>.suppressions``, checked only for the fields the
  adapter relies on;
- writes: a feedback event (docs/events.md#reserved-types) to ``<prefix>.events`` and a dead letter
  (docs/events.md#dead-letters) to ``<prefix>.dlq``.

Pure functions of their arguments (no Kafka, HTTP or store): a record that is not what it should
be comes back as a :class:`~orchestrator.core.events.Rejection` whose detail names the JSON path,
and is dead-lettered with that reason.
"""

from __future__ import annotations

from typing import Any

import orjson

from orchestrator.core.engine import stable_hash
from orchestrator.core.events import Rejection, dead_letter
from orchestrator.core.timeutil import format_ts

DELIVERY_FAILED = "delivery_failed"   # the adapter's own dead-letter reason (docs/adapters.md)
MAX_ID_CHARS = 255

Record = tuple[str, bytes | None, bytes]   # (topic, key, value): one record to write to Kafka


def _check_id(data: dict[str, Any], name: str, what: str) -> Rejection | None:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        return Rejection("invalid_schema", f"{what} needs {name} (a non-empty string) - at `$.{name}`")
    if len(value) > MAX_ID_CHARS or not value.isascii() or not value.isprintable():
        return Rejection("invalid_schema", f"{name} must be at most {MAX_ID_CHARS} printable ASCII characters "
                         f"(it is sent as the Idempotency-Key header) - at `$.{name}`")
    return None


def parse_action(raw: bytes | None) -> dict[str, Any] | Rejection:
    """An action JSON (docs/events.md#actions) with the fields the adapter relies on, or why not."""
    data = _json_object(raw, "an action")
    if isinstance(data, Rejection):
        return data
    for name in ("action_id", "customer_id"):
        problem = _check_id(data, name, "an action")
        if problem is not None:
            return problem
    return data


def parse_suppression(raw: bytes | None) -> dict[str, Any] | Rejection:
    """A suppression JSON (docs/events.md#suppressions): its id, channels and cancels, or why not."""
    data = _json_object(raw, "a suppression")
    if isinstance(data, Rejection):
        return data
    problem = _check_id(data, "suppression_id", "a suppression")
    if problem is not None:
        return problem
    for name in ("channels", "cancels"):
        value = data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return Rejection("invalid_schema", f"{name} must be a list of strings - at `$.{name}`")
    return data


def _json_object(raw: bytes | None, what: str) -> dict[str, Any] | Rejection:
    if raw is None:
        return Rejection("invalid_json", "empty message (null value)")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejection("invalid_json", f"not JSON: {exc}")
    if not isinstance(data, dict):
        return Rejection("invalid_schema", f"{what} must be a JSON object - at `$`")
    return data


def feedback_event(action: dict[str, Any], channel: str, kind: str, ts_ms: int,
                   status: int | None = None) -> dict[str, Any]:
    """The feedback event (docs/events.md#reserved-types) for an action's outcome; its ``event_id`` depends only on the
    action id and the type, so a re-sent one is a duplicate the worker ignores."""
    aid = action["action_id"]
    props: dict[str, Any] = {"action_id": aid, "channel": channel}
    if kind == "message.failed":
        props["status"] = status
    return {"event_id": "fb-" + stable_hash(aid, kind), "customer_id": action["customer_id"], "type": kind,
            "ts": format_ts(ts_ms), "properties": props}


def dead_letter_record(topic: str, msg: Any, why: Rejection, at_ms: int) -> Record:
    """The dead letter (docs/events.md#dead-letters) of a consumed record ``msg``, for ``topic``, keyed as ``msg`` was.
    ``at_ms`` is its ``ts``: for a failed delivery, when the outcome was recorded, so that a
    dead letter sent again after a restart has the same content."""
    record = dead_letter(why, topic=msg.topic, partition=msg.partition, offset=msg.offset, raw=msg.value,
                         now_ms=at_ms)
    return topic, msg.key, orjson.dumps(record)
