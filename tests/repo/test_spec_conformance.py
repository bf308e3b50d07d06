"""SPEC.md's public contract, checked as an outside reviewer would: definitions, policies and
events written from SPEC alone, run through the ``orchestrator`` command line (``simulate``,
``journeys validate``), outputs compared field by field with what SPEC writes.

The worker-side half (keys, partitions, dead letters on the broker) is
tests/integration/test_spec_conformance.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.unit.core.helpers import (ACTION_KEYS, DEAD_LETTER_KEYS, DECISION_KEYS, SPEC_JOURNEY, SPEC_POLICIES,
                                    SUPPRESSION_KEYS, SUPPRESSION_REASONS)

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
FILE_LINE = re.compile(r"^[^\s:]+:\d+: \S")


def simulate(tmp_path: Path, capsys, journeys: dict[str, str], events: list[dict | str],
             policies: str = SPEC_POLICIES) -> tuple[list[dict], str]:
    folder = tmp_path / "journeys"
    folder.mkdir(exist_ok=True)
    for name, text in journeys.items():
        (folder / name).write_text(text)
    (tmp_path / "policies.yaml").write_text(policies)
    lines = tmp_path / "events.jsonl"
    lines.write_text("".join((e if isinstance(e, str) else json.dumps(e)) + "\n" for e in events))
    capsys.readouterr()
    assert main(["simulate", "--journeys", str(folder), "--policies", str(tmp_path / "policies.yaml"),
                 str(lines)]) == 0
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    for r in records:
        assert set(r) == {"topic", "at", "value"} and TS.match(r["at"])
    return records, captured.err


def ev(eid: str, cid: str, etype: str, ts: str | int, **props) -> dict:
    body = {"event_id": eid, "customer_id": cid, "type": etype, "ts": ts}
    if props:
        body["properties"] = props
    return body


# ---------------------------------------------------------------------------- §3 Action
def test_spec_3s_action_is_what_spec_4s_journey_sends_after_its_wait(tmp_path, capsys) -> None:
    """SPEC §3's example action (node `email_reminder`, `params: {cart_value: 80.5}`,
    `trigger_event_id: e-9f1c`) is the one §4's journey sends for §2's example event: the email
    after `wait_1h` names the event that enrolled the customer, not the timer."""
    events = [
        # an opened email earlier, so `engagement.email.opened_30d > 0` picks the email branch
        ev("e-0", "c-42", "message.opened", "2026-11-23T09:00:00Z", action_id="a-earlier", channel="email"),
        {"event_id": "e-9f1c", "customer_id": "c-42", "type": "cart.updated",
         "ts": "2026-11-23T10:00:00.123Z", "properties": {"value": 80.5, "category": "shoes"},
         "account_id": "acme"},
        ev("e-1", "c-42", "page.viewed", "2026-11-23T12:00:00Z"),
    ]
    records, _ = simulate(tmp_path, capsys, {"cart-recovery.yaml": SPEC_JOURNEY}, events)
    [action] = [r for r in records if r["topic"] == "actions.email"]
    a = action["value"]
    assert set(a) == ACTION_KEYS
    assert a["action_id"].startswith("a-")
    assert {k: a[k] for k in ACTION_KEYS - {"action_id"}} == {
        "customer_id": "c-42", "channel": "email", "template": "cart-reminder-1", "params": {"cart_value": 80.5},
        "journey": "cart-recovery", "journey_version": 3, "node": "email_reminder", "trigger_event_id": "e-9f1c",
        "event_ts": "2026-11-23T10:00:00.123Z", "decided_at": "2026-11-23T11:00:00.123Z"}
    assert action["at"] == "2026-11-23T11:00:00.123Z"
    sent = [r["value"] for r in records if r["topic"] == "decisions" and r["value"]["outcome"] == "sent"]
    assert sent == [{"customer_id": "c-42", "journey": "cart-recovery", "journey_version": 3,
                     "node": "email_reminder", "channel": "email", "outcome": "sent", "detail": "cart-reminder-1",
                     "action_id": a["action_id"], "ts": "2026-11-23T11:00:00.123Z"}]


# ---------------------------------------------------------------------------- §3 Suppression, Decision
LIFECYCLE = {
    "promo-low.yaml": """\
journey: promo-low
priority: 10
group: promotions
entry: {on: low.go, reentry: 1h}
goal: {on: [order.completed, subscription.started]}
exit: {on: account.closed, max_duration: 2h}
start: web
nodes:
  web: {send: web, template: banner, next: pause}
  pause: {wait: 30m, next: ads}
  ads: {send: ads, template: audience, next: long}
  long: {wait: 1w, next: mail}
  mail: {send: email, template: last}
""",
    "promo-high.yaml": """\
journey: promo-high
priority: 20
group: promotions
entry: {on: high.go}
start: push
nodes:
  push: {send: push, template: p}
""",
}


def test_every_suppression_reason_with_the_spec_fields(tmp_path, capsys) -> None:
    """§3: one suppression per reason (`goal`, `exit`, `erased`, `unsubscribed`, `preempted`,
    `expired`), each with exactly SPEC's fields, keyed to the customer, cancelling the instance's
    actions; the lifecycle decisions beside them with exactly SPEC's decision fields."""
    events = [
        ev("g1", "goal", "low.go", "2026-11-23T10:00:00Z"),
        ev("g2", "goal", "subscription.started", "2026-11-23T10:40:00Z"),   # the second goal type
        ev("x1", "exit", "low.go", "2026-11-23T10:41:00Z"),
        ev("x2", "exit", "account.closed", "2026-11-23T10:42:00Z"),
        ev("r1", "erase", "low.go", "2026-11-23T10:43:00Z"),
        ev("r2", "erase", "profile.erased", "2026-11-23T10:44:00Z"),
        ev("u1", "unsub", "low.go", "2026-11-23T10:45:00Z"),
        ev("u2", "unsub", "message.unsubscribed", "2026-11-23T10:46:00Z", action_id="a-any", channel="web"),
        ev("p1", "preempt", "low.go", "2026-11-23T10:47:00Z"),
        ev("p2", "preempt", "high.go", "2026-11-23T10:48:00Z"),
        ev("t1", "expire", "low.go", "2026-11-23T10:49:00Z"),
        ev("z", "clock", "page.viewed", "2026-11-23T13:00:00Z"),          # moves the clock past max_duration
    ]
    records, _ = simulate(tmp_path, capsys, LIFECYCLE, events, policies="{}\n")
    sups: dict[str, dict] = {}         # each customer's first suppression
    for r in records:
        if r["topic"] == "suppressions":
            sups.setdefault(r["value"]["customer_id"], r["value"])
    assert {c: s["reason"] for c, s in sups.items()} == {
        "goal": "goal", "exit": "exit", "erase": "erased", "unsub": "unsubscribed", "preempt": "preempted",
        "expire": "expired"}
    assert set(s["reason"] for s in sups.values()) == SUPPRESSION_REASONS
    sent = {}
    for r in records:
        v = r["value"]
        if r["topic"].startswith("actions."):
            sent.setdefault(v["customer_id"], []).append(v["action_id"])
        elif r["topic"] == "decisions":
            assert set(v) == DECISION_KEYS | ({"action_id"} if v["outcome"] == "sent" else set()), v
            assert TS.match(v["ts"]) and v["ts"] == r["at"]
    for customer, s in sups.items():
        assert set(s) == SUPPRESSION_KEYS
        assert s["suppression_id"].startswith("s-") and TS.match(s["ts"])
        assert s["customer_id"] == customer
    assert (sups["goal"]["channels"], sups["goal"]["cancels"]) == (["web", "ads"], sent["goal"])
    assert (sups["exit"]["channels"], sups["exit"]["cancels"]) == (["web"], sent["exit"])
    assert sups["erase"]["channels"] == ["email", "sms", "push", "inapp", "web", "ads"]   # every channel
    assert sups["erase"]["cancels"] == sent["erase"]
    assert (sups["unsub"]["channels"], sups["unsub"]["journey"]) == (["web"], None)
    assert (sups["preempt"]["journey"], sups["preempt"]["cancels"]) == ("promo-low", sent["preempt"][:1])
    assert (sups["expire"]["channels"], sups["expire"]["cancels"]) == (["web", "ads"], sent["expire"])
    ends = {(r["value"]["customer_id"], r["value"]["outcome"], r["value"]["detail"]) for r in records
            if r["topic"] == "decisions" and r["value"]["journey"] == "promo-low"
            and r["value"]["outcome"] in ("goal", "exited", "preempted")}
    assert {(c, o) for c, o, _ in ends} == {("goal", "goal"), ("exit", "exited"), ("erase", "exited"),
                                            ("preempt", "preempted"), ("expire", "exited"),
                                            ("unsub", "exited")}       # an unsubscribe does not end it
    assert ("expire", "exited", "max_duration") in ends and ("exit", "exited", "exit") in ends


# ---------------------------------------------------------------------------- §3 DeadLetter in simulate
def test_a_line_refused_before_the_first_event_is_dead_lettered_when_the_clock_starts(tmp_path, capsys) -> None:
    """A DeadLetter's `ts` is the virtual clock; before the first event it is where the clock
    starts (the next event's ts), never the epoch."""
    events = ["{not json", ev("e-1", "c-1", "page.viewed", "2026-11-23T10:00:00Z"), "[]"]
    records, err = simulate(tmp_path, capsys, {"cart-recovery.yaml": SPEC_JOURNEY}, events)
    dlq = [r for r in records if r["topic"] == "dlq"]
    assert [(d["value"]["reason"], d["value"]["offset"]) for d in dlq] == [("invalid_json", 1), ("invalid_schema", 3)]
    for d in dlq:
        assert set(d["value"]) == DEAD_LETTER_KEYS
        assert d["at"] == d["value"]["ts"] == "2026-11-23T10:00:00.000Z"
    assert "dead-lettered invalid_json: 1" in err and "dead-lettered invalid_schema: 3" in err


# ---------------------------------------------------------------------------- §4 / §5 definitions
def test_spec_4s_journey_and_spec_5s_policies_are_accepted_as_written(tmp_path, capsys) -> None:
    (tmp_path / "cart-recovery.yaml").write_text(SPEC_JOURNEY)
    (tmp_path / "policies.yaml").write_text(SPEC_POLICIES)
    capsys.readouterr()
    assert main(["journeys", "validate", "--policies", str(tmp_path / "policies.yaml"),
                 str(tmp_path / "cart-recovery.yaml")]) == 0
    out = capsys.readouterr()
    assert "cart-recovery version 3" in out.out
    # the `ab` split is never reached from `start`: a warning, not a refusal
    assert re.search(r"cart-recovery\.yaml:\d+: warning: node 'ab'", out.err)


def test_a_bad_policies_file_is_refused_with_each_problem_as_file_line_message(tmp_path, capsys) -> None:
    """Every problem of a policies file on its own stderr line, `file:line: message`, nothing
    before the file name (a CI or editor parses each line), for simulate as for a worker."""
    (tmp_path / "j").mkdir()
    (tmp_path / "j" / "cart-recovery.yaml").write_text(SPEC_JOURNEY)
    (tmp_path / "policies.yaml").write_text(
        'consent: {sms: maybe}\nmax_event_age: forever\nquiet_hours: {channels: [sms], from: "25:00", to: "08:00"}\n'
        "surprise: 1\n")
    (tmp_path / "events.jsonl").write_text("")
    capsys.readouterr()
    assert main(["simulate", "--journeys", str(tmp_path / "j"), "--policies", str(tmp_path / "policies.yaml"),
                 str(tmp_path / "events.jsonl")]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4, lines
    assert all(FILE_LINE.match(line) and line.startswith(str(tmp_path / "policies.yaml")) for line in lines), lines
    assert sorted(int(line.split(":")[1]) for line in lines) == [1, 2, 3, 4]


@pytest.mark.parametrize("given, share", [("10%", "10"), ("10", "10"), ("0.1", "0.1")])
def test_a_holdout_is_a_percentage_with_or_without_the_sign(tmp_path, capsys, given, share) -> None:
    """README: `holdout: 10%` and `holdout: 10` are the same 10 %; over 2,000 customers the
    held-out share is close to it (a deterministic function of journey and customer)."""
    text = f"journey: h\nentry: {{on: go}}\nholdout: {given}\nstart: s\nnodes:\n  s: {{send: email, template: t}}\n"
    events = [ev(f"e{i}", f"c{i}", "go", "2026-11-23T10:00:00Z") for i in range(2000)]
    records, _ = simulate(tmp_path, capsys, {"h.yaml": text}, events, policies="{}\n")
    held = sum(1 for r in records if r["topic"] == "decisions" and r["value"]["outcome"] == "entered"
               and r["value"]["detail"] == "holdout")
    expected = 2000 * float(share) / 100
    assert abs(held - expected) <= max(4 * (expected ** 0.5), 3), (held, expected)


# ---------------------------------------------------------------------------- §6 command line
def test_simulate_of_a_missing_events_file_is_one_sentence_not_a_traceback(tmp_path, capsys) -> None:
    (tmp_path / "j").mkdir()
    (tmp_path / "j" / "cart-recovery.yaml").write_text(SPEC_JOURNEY)
    (tmp_path / "policies.yaml").write_text(SPEC_POLICIES)
    capsys.readouterr()
    assert main(["simulate", "--journeys", str(tmp_path / "j"), "--policies", str(tmp_path / "policies.yaml"),
                 str(tmp_path / "missing.jsonl")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "missing.jsonl" in err[0], err


def test_validate_refuses_one_id_and_version_in_two_files_as_a_worker_does(tmp_path, capsys) -> None:
    """`journeys validate` on a folder says what a worker (and simulate) loading it refuses: the
    same journey id and version in two files."""
    folder = tmp_path / "journeys"
    folder.mkdir()
    (folder / "a.yaml").write_text(SPEC_JOURNEY)
    (folder / "b.yaml").write_text(SPEC_JOURNEY.replace("cart-reminder-1", "cart-reminder-9"))
    (tmp_path / "policies.yaml").write_text(SPEC_POLICIES)
    capsys.readouterr()
    assert main(["journeys", "validate", "--policies", str(tmp_path / "policies.yaml"), str(folder)]) == 1
    err = capsys.readouterr().err
    assert f"{folder / 'b.yaml'}:1: journey 'cart-recovery' version 3 is also defined in {folder / 'a.yaml'}" in err
    (tmp_path / "events.jsonl").write_text("")
    assert main(["simulate", "--journeys", str(folder), "--policies", str(tmp_path / "policies.yaml"),
                 str(tmp_path / "events.jsonl")]) == 1          # the loader refuses the same
    assert "is also defined in" in capsys.readouterr().err


def test_produce_of_a_missing_file_is_one_sentence_not_a_traceback(tmp_path, capsys) -> None:
    """Checked before any connection is made: no broker is needed to be told the file is missing."""
    capsys.readouterr()
    assert main(["produce", str(tmp_path / "missing.jsonl")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "missing.jsonl" in err[0], err


@pytest.mark.parametrize("limit, reasons", [(None, ["too_large"]), ("200000", [])])
def test_simulate_honours_orch_max_event_bytes_as_a_worker_does(tmp_path, capsys, monkeypatch, limit, reasons) -> None:
    """§2: the size limit is ORCH_MAX_EVENT_BYTES (default 65536), in simulate as in a worker."""
    if limit is None:
        monkeypatch.delenv("ORCH_MAX_EVENT_BYTES", raising=False)
    else:
        monkeypatch.setenv("ORCH_MAX_EVENT_BYTES", limit)
    big = ev("e-big", "c-1", "page.viewed", "2026-11-23T10:00:00Z", blob="x" * 100_000)
    records, _ = simulate(tmp_path, capsys, {"cart-recovery.yaml": SPEC_JOURNEY}, [big])
    assert [r["value"]["reason"] for r in records if r["topic"] == "dlq"] == reasons


def test_simulate_reads_orch_policies_when_no_policies_flag_is_given(tmp_path, capsys, monkeypatch) -> None:
    """§5: policies come from ORCH_POLICIES (default policies.yaml), for simulate as for a worker:
    with `sms: opt_in` there, an sms to a customer without consent is `no_consent`."""
    folder = tmp_path / "journeys"
    folder.mkdir()
    (folder / "s.yaml").write_text("journey: s\nentry: {on: go}\nstart: m\nnodes:\n  m: {send: sms, template: t}\n")
    (tmp_path / "events.jsonl").write_text(json.dumps(ev("e-1", "c-1", "go", "2026-11-23T12:00:00Z")) + "\n")
    (tmp_path / "mine.yaml").write_text("consent: {sms: opt_in}\n")
    (tmp_path / "policies.yaml").write_text("consent: {sms: opt_out}\n")

    def gate_outcome() -> str:
        capsys.readouterr()
        assert main(["simulate", "--journeys", str(folder), str(tmp_path / "events.jsonl")]) == 0
        records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        [outcome] = [r["value"]["outcome"] for r in records if r["topic"] == "decisions"
                     and r["value"]["channel"] == "sms"]
        return outcome

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORCH_POLICIES", str(tmp_path / "mine.yaml"))
    assert gate_outcome() == "no_consent"
    monkeypatch.delenv("ORCH_POLICIES")                    # then policies.yaml in the working directory
    assert gate_outcome() == "sent"
    (tmp_path / "policies.yaml").write_text("consent: {sms: opt_in}\n")
    assert gate_outcome() == "no_consent"
