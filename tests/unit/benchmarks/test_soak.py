"""The soak mode of the load benchmark (``python -m benchmarks.load soak``), its pure parts: the
intervals a run is cut into, one interval's accounting from two marks, and the growth verdict.
The run itself needs a broker and minutes: docs/benchmarks.md, "Soak", says how it is measured.
"""

from __future__ import annotations

import pytest

from benchmarks.common import MIB
from benchmarks.load.cli import main
from benchmarks.load.soak import Mark, Plan, growth, interval_row, markdown, plan, verdict


def test_a_run_is_cut_into_whole_intervals_with_the_warm_up_first():
    assert plan(rate=3000, minutes=30, interval_s=60, warmup_minutes=5) == Plan(intervals=30, warmup=5)
    assert plan(rate=1000, minutes=3, interval_s=20, warmup_minutes=1) == Plan(intervals=9, warmup=3)
    assert plan(rate=1000, minutes=2, interval_s=20, warmup_minutes=0) == Plan(intervals=6, warmup=0)


@pytest.mark.parametrize("options,says", [
    ({"rate": 0}, "--rate must be above 0"),
    ({"interval_s": 0}, "--interval-s must be above 0"),
    ({"minutes": 2.5}, "--minutes 2.5 is not a whole number of 60-second intervals"),
    ({"warmup_minutes": 0.5}, "--warmup-minutes 0.5 is not a whole number"),
    ({"warmup_minutes": -1}, "--warmup-minutes must be 0 or more"),
    ({"minutes": 10, "warmup_minutes": 5}, "leaves 5 intervals of 60 s after the warm-up"),
])
def test_options_a_run_cannot_honour_are_refused_in_one_sentence(options, says):
    with pytest.raises(ValueError, match=says) as err:
        plan(**{"rate": 3000, "minutes": 30, "interval_s": 60, "warmup_minutes": 5, **options})
    assert "\n" not in str(err.value)


def test_the_command_refuses_them_before_touching_a_broker(capsys):
    assert main(["soak", "--minutes", "3", "--interval-s", "20", "--warmup-minutes", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("benchmarks.load soak: ") and "at least 6 are needed" in err
    assert main(["soak", "--partitions", "0"]) == 2


def mark(t: float, offered: int, consumed: float, cpu_s: float, *, rss: int = 200 * MIB, problems: float = 0,
         lag: int = 0) -> Mark:
    return Mark(t=t, offered=offered, consumed=consumed, cpu_s=cpu_s, rss_bytes=rss, problems=problems, lag=lag,
                loadavg="1.50 1.20 0.90")


def test_an_interval_counts_what_happened_between_its_two_marks():
    a = mark(60.0, 180_000, 179_000, 30.0, problems=2)
    b = mark(120.0, 360_300, 358_000, 53.27, rss=300 * MIB, problems=5, lag=1_234)
    changelog = {"customers": 4_000, "records": 150_000, "bytes": 71_600_000, "state_bytes_p50": 857,
                 "state_bytes_p99": 21_000, "state_bytes_max": 54_000, "journal_bytes_per_event": 120.0}
    others = {"internal.dedup-changelog": {"records": 179_000, "bytes": 7_160_000},
              "internal.events-by-customer": {"records": 0, "bytes": 0}}
    row = interval_row(2, a, b, warmup=False, changelog=changelog, others=others, latency_ms=[30, 10, 20, 40])
    assert row["events"] == 179_000                        # the worker's count, not what was offered
    assert row["offered"] == 180_300 and row["offered_per_s"] == 3005.0
    assert row["events_per_s"] == pytest.approx(2983.3, abs=0.1)
    assert row["cpu_s_per_1k"] == pytest.approx(0.13, abs=1e-4)     # 23.27 CPU s over 179,000 events
    assert row["rss_mib"] == 300.0                         # at the interval's end
    assert (row["state_bytes_p50"], row["state_bytes_p99"], row["state_bytes_max"]) == (857, 21_000, 54_000)
    assert row["changelog_bytes_per_event"] == 400.0       # everything appended / the interval's events
    assert row["other_bytes_per_event"] == {"internal.dedup-changelog": 40.0, "internal.events-by-customer": 0.0}
    assert row["problems"] == 3 and row["lag_at_end"] == 1_234 and row["loadavg_at_end"] == "1.50 1.20 0.90"
    assert (row["event_to_action_p50_ms"], row["event_to_action_p99_ms"]) == (20, 40)
    assert (row["start_s"], row["end_s"], row["warmup"]) == (60.0, 120.0, False)


def test_an_interval_in_which_the_worker_decided_nothing_has_no_cost_per_event():
    a = mark(0.0, 0, 0, 1.0)
    row = interval_row(1, a, mark(20.0, 20_000, 0, 1.5), warmup=True, changelog={"records": 0, "bytes": 0},
                       others={"internal.dedup-changelog": {"records": 0, "bytes": 0}})
    assert row["events"] == 0 and row["offered_per_s"] == 1000.0
    assert row["cpu_s_per_1k"] is None and row["changelog_bytes_per_event"] is None
    assert row["other_bytes_per_event"] == {"internal.dedup-changelog": None}


def test_growth_is_the_last_mean_over_the_first_mean_and_ten_percent_passes():
    assert growth([0.13, 0.13, 0.13], [0.26, 0.26, 0.26]) == {"first": 0.13, "last": 0.26, "growth": 1.0,
                                                              "passed": False}
    assert growth([1.0, 1.0, 1.0], [1.1, 1.1, 1.1])["passed"] is True        # exactly 10 %
    assert growth([1.0, 1.0, 1.0], [1.1, 1.1, 1.101])["passed"] is False
    assert growth([100, 110, 90], [95, 90, 100]) == {"first": 100.0, "last": 95.0, "growth": -0.05, "passed": True}


def test_growth_leaves_missing_values_out_and_judges_a_rise_from_zero():
    assert growth([None, 2.0, 4.0], [3.3, None, None])["growth"] == 0.1
    assert growth([None, None], [1.0])["passed"] is None
    assert growth([0, 0, 0], [0, 0, 0]) == {"first": 0.0, "last": 0.0, "growth": 0.0, "passed": True}
    assert growth([0, 0, 0], [0, 5, 0]) == {"first": 0.0, "last": 1.6667, "growth": None, "passed": False}


def rows(n: int, warmup: int, *, cpu=lambda i: 0.13, p99=lambda i: 21_000, dedup=lambda i: 40.0):
    return [{"interval": i, "warmup": i <= warmup, "offered_per_s": 3000.0, "lag_at_end": 500, "problems": 0,
             "cpu_s_per_1k": cpu(i), "rss_mib": 250.0, "state_bytes_p50": 857, "state_bytes_p99": p99(i),
             "state_bytes_max": 54_000, "changelog_bytes_per_event": 400.0,
             "other_bytes_per_event": {"internal.dedup-changelog": dedup(i)}} for i in range(1, n + 1)]


def test_the_verdict_compares_the_first_third_of_the_intervals_after_the_warm_up_with_the_last_third():
    # CPU doubles over the run, the state p99 only grows during the warm-up, the dedup topic is flat.
    run = rows(30, 5, cpu=lambda i: 0.13 + 0.13 * (i - 6) / 24, p99=lambda i: 21_000 if i > 5 else 1_000 * i)
    v = verdict(run)
    assert v["window"] == 8                       # 25 intervals after the warm-up
    assert v["first_intervals"] == list(range(6, 14)) and v["last_intervals"] == list(range(23, 31))
    by = {m["measure"]: m for m in v["measures"]}
    assert list(by) == ["cpu_s_per_1k", "rss_mib", "state_bytes_p50", "state_bytes_p99", "state_bytes_max",
                        "changelog_bytes_per_event", "other:internal.dedup-changelog"]
    assert by["cpu_s_per_1k"]["first"] == pytest.approx(0.1490, abs=1e-4)
    assert by["cpu_s_per_1k"]["last"] == pytest.approx(0.2410, abs=1e-4)
    assert by["cpu_s_per_1k"]["passed"] is False
    assert by["state_bytes_p99"] == {"measure": "state_bytes_p99", "label": "state bytes p99", "first": 21_000.0,
                                     "last": 21_000.0, "growth": 0.0, "passed": True}
    assert by["other:internal.dedup-changelog"]["passed"] is True
    assert v["passed"] is False
    assert verdict(rows(30, 5))["passed"] is True


def test_two_slow_minutes_right_after_the_warm_up_are_not_taken_for_growth():
    # Flat at 0.165, but the first two intervals after the warm-up ran at 0.140: three at each end
    # would make that +11.2 %; a third at each end makes it +3.9 %.
    run = rows(30, 5, cpu=lambda i: 0.140 if i in (6, 7) else 0.165)
    cpu = {m["measure"]: m for m in verdict(run)["measures"]}["cpu_s_per_1k"]
    assert cpu["growth"] == pytest.approx(0.0394, abs=1e-4) and cpu["passed"] is True
    assert verdict(run, window=3)["passed"] is False


def test_a_short_run_averages_three_intervals_at_each_end():
    v = verdict(rows(9, 3))
    assert v["window"] == 3 and v["first_intervals"] == [4, 5, 6] and v["last_intervals"] == [7, 8, 9]


def test_a_run_cut_short_gets_no_verdict():
    v = verdict(rows(10, 5))
    assert v["passed"] is None and v["measures"] == []
    assert v["reason"] == "only 5 intervals after the warm-up; 6 are needed"


def test_the_report_shows_every_interval_and_names_what_grew():
    run = rows(9, 3, cpu=lambda i: 0.13 if i < 7 else 0.26)
    result = {"machine": {"nproc": 2}, "params": {"rate": 3000.0, "minutes": 3, "interval_s": 20,
                                                  "warmup_minutes": 1, "customers": 200_000, "seed": 42,
                                                  "partitions": 8},
              "rows": run, "verdict": verdict(run), "errors": []}
    text = markdown(result)
    table = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(table) == 9 and table[0].split("|")[3].strip() == "warm-up" and "warm-up" not in table[3]
    assert "internal.dedup-changelog bytes per event" in text
    assert "| CPU s per 1k events | 0.130 | 0.260 | +100.0 % | **grows** |" in text
    assert "**Verdict: grows.** More than 10 % growth: CPU s per 1k events." in text
    assert "Offered 3,000 to 3,000 events/s per interval (asked 3,000)." in text
