"""``orchestrator backtest`` without Kafka: the replay of a span on a virtual clock, how decisions are
counted per journey and node, and the table (orchestrator/admin/backtest.py).
tests/integration/test_backtest.py runs the command against a real worker's topics."""

from __future__ import annotations

import io
from collections import Counter

import orjson

from orchestrator.admin.backtest import ENTRY, compare, count, render, replay, sides
from orchestrator.core import Policies, parse_journey
from orchestrator.core.timeutil import format_ts, parse_ts_ms
from orchestrator.observability.progress import ProgressLine
from tests.unit.core.helpers import CHANNELS
from tests.unit.reports.test_graph import usage_error

T0 = parse_ts_ms("2026-03-10T10:00:00Z")
assert T0 is not None
HOUR = 3_600_000

LATER = """
journey: later
entry: {on: cart.updated}
goal: {on: order.completed}
start: mail
nodes:
  mail: {send: email, template: m, next: w}
  w: {wait: 1h, next: push}
  push: {send: push, template: p}
"""


def line(cid: str, etype: str, at: int) -> bytes:
    return orjson.dumps({"event_id": f"e-{cid}-{etype}-{at}", "customer_id": cid, "type": etype, "ts": at})


def d(journey: str, node: str | None, outcome: str, detail: str = "", channel: str | None = None,
      ts: int = T0, **extra) -> dict:
    return {"customer_id": "c", "journey": journey, "journey_version": 1, "node": node, "channel": channel,
            "outcome": outcome, "detail": detail, "ts": format_ts(ts), **extra}


def test_decisions_are_counted_per_journey_node_and_outcome() -> None:
    decisions = [d("j", "start", "entered", "treatment"), d("j", None, "entry_refused", "max_entries"),
                 d("j", "mail", "sent", "t", "email"), d("j", "mail", "sent", "t", "email"),
                 d("j", "push", "sent", "t", "push"), d("j", "push", "window_deferred", "deferred to x", "push"),
                 d("j", "w", "exited", "condition"), d("j", "w", "goal", "goal"),
                 d("j", "mail", "sent", "t", "email", shadow=True),                   # a shadow version's: out
                 d("k", "s", "frequency_cap", "1 send", "sms")]
    assert count(decisions) == Counter({
        ("j", ENTRY, "entered"): 1, ("j", ENTRY, "entry_refused max_entries"): 1, ("j", "mail", "sent email"): 2,
        ("j", "push", "sent push"): 1, ("j", "push", "window_deferred"): 1, ("j", "w", "exited condition"): 1,
        ("j", "w", "goal"): 1, ("k", "s", "frequency_cap"): 1})
    spanned = [d("j", "mail", "sent", "t", "email", ts=T0 - 1), d("j", "mail", "sent", "t", "email", ts=T0),
               d("j", "mail", "sent", "t", "email", ts=T0 + HOUR)]
    assert count(spanned, T0, T0 + HOUR) == Counter({("j", "mail", "sent email"): 1})       # [from, to)


def test_the_replay_runs_the_clock_on_to_the_end_of_the_span() -> None:
    j = parse_journey(LATER, "later.yaml", channels=CHANNELS)
    events = [line("a", "cart.updated", T0), line("b", "cart.updated", T0 + 30 * 60_000),
              line("b", "order.completed", T0 + 40 * 60_000)]
    decisions, sim = replay([j], Policies(), events, T0 + HOUR + 1)      # a's push is due at T0 + 1h: inside
    counted = count(decisions)
    assert counted[("later", "push", "sent push")] == 1 and counted[("later", "w", "goal")] == 1
    assert sim.clock_ms == T0 + HOUR
    decisions, _ = replay([j], Policies(), events, T0 + HOUR)            # due exactly at the end: outside
    assert count(decisions)[("later", "push", "sent push")] == 0


def test_both_sides_count_the_decisions_of_the_span_only() -> None:
    # An event dated 20 minutes before --from but written after it (a late mobile client, a backdated
    # import) is read by its record timestamp and replayed; what it decided is before the span on both
    # sides alike, so nothing differs where nothing changed.
    j = parse_journey(LATER, "later.yaml", channels=CHANNELS)
    early = [line("a", "cart.updated", T0 - 20 * 60_000), line("b", "cart.updated", T0 + 60_000)]
    replayed, sim = replay([j], Policies(), early, T0 + 30 * 60_000)
    live = [dict(r, journey_version=1) for r in replayed]                     # the live worker decided the same
    report = sides(live, replayed, since_ms=T0, until_ms=T0 + 30 * 60_000, events=len(early), sim=sim)
    assert report == compare(count(live, T0, T0 + 30 * 60_000), count(live, T0, T0 + 30 * 60_000), since_ms=T0,
                             until_ms=T0 + 30 * 60_000, events=2, sim=sim)
    rows = {(r["journey"], r["node"], r["outcome"]): (r["live"], r["backtest"]) for r in report["rows"]}
    assert rows[("later", ENTRY, "entered")] == (1, 1) and rows[("later", "mail", "sent email")] == (1, 1)


def test_the_table_puts_live_and_backtest_side_by_side() -> None:
    live = Counter({("j", ENTRY, "entered"): 3, ("j", "push", "sent push"): 2})
    back = Counter({("j", ENTRY, "entered"): 3, ("j", "push", "no_consent"): 2})
    report = compare(live, back, since_ms=T0, until_ms=T0 + HOUR, events=7)
    assert [(r["node"], r["outcome"], r["live"], r["backtest"], r["difference"]) for r in report["rows"]] == [
        (ENTRY, "entered", 3, 3, 0), ("push", "no_consent", 0, 2, 2), ("push", "sent push", 2, 0, -2)]
    assert report["totals"] == {"live": 5, "backtest": 5}
    text = render(report)
    assert text.splitlines()[0] == ("backtest from 2026-03-10T10:00:00.000Z to 2026-03-10T11:00:00.000Z: "
                                    "7 events replayed")
    assert text.splitlines()[1].split() == ["journey", "node", "outcome", "live", "backtest", "difference"]
    assert text.splitlines()[-1].split() == ["j", "push", "sent", "push", "2", "0", "-2"]
    assert "no decisions on either side" in render(compare(Counter(), Counter(), since_ms=T0, until_ms=T0 + 1,
                                                           events=0))


class Terminal(io.StringIO):
    """Standard error as a terminal: where the progress line shows."""

    def isatty(self) -> bool:
        return True


LOOP = """
journey: loop
entry: {on: cart.updated}
start: mail
nodes:
  mail: {send: email, template: m, next: w}
  w: {wait: 1h, next: mail}
"""


def test_the_replay_shows_its_progress_on_a_terminal() -> None:
    """A span of many events, then an hourly loop whose timers fire long after the last event: the
    progress line names both steps as they run."""
    j = parse_journey(LOOP, "loop.yaml", channels=CHANNELS)
    events = [line(f"c{i}", "page.viewed", T0 + i) for i in range(2_499)] + [line("a", "cart.updated", T0 + 2_499)]
    screen = Terminal()
    decisions, _ = replay([j], Policies(), events, T0 + 60 * 24 * HOUR, progress=ProgressLine(screen))
    shown = [s.rstrip() for s in screen.getvalue().split("\r") if s]
    assert shown[:2] == ["backtest: replaying: 1,000 of 2,500 events, 0 decisions",
                         "backtest: replaying: 2,000 of 2,500 events, 0 decisions"]
    timers = [s for s in shown[2:] if s.startswith("backtest: timers after the last event: clock at 2026-")]
    assert len(timers) == len(shown) - 2 >= 2, shown
    assert len(count(decisions)) == 2 and count(decisions)[("loop", "mail", "sent email")] == 60 * 24


def test_a_span_that_ends_after_now_is_refused_before_anything_is_read(capsys, monkeypatch, tmp_path) -> None:
    """Timers not yet due would fill the span (a daily loop to 2028: tens of thousands of sends the
    live side cannot have). Refused before Kafka is asked anything: no broker listens here."""
    monkeypatch.setenv("ORCH_BOOTSTRAP", "127.0.0.1:1")
    (tmp_path / "later.yaml").write_text(LATER)
    args = ["backtest", "--journeys", str(tmp_path)]
    line = usage_error(capsys, *args, "--from", "7d", "--to", "2028-01-01")
    assert line.startswith("error: --to 2028-01-01 (2028-01-01T00:00:00.000Z) is later than now (")
    assert line.endswith("): nothing after now has happened yet; give a time up to now")
    assert "is not before --to" in usage_error(capsys, *args, "--from", "2026-03-02", "--to", "2026-03-01")
    assert "'last week' is not a time" in usage_error(capsys, *args, "--from", "last week", "--to", "now")
