"""The load benchmark's drains in alternation (``--rounds``): the ratios against the Quix apps are
the median over the rounds, each round's values are kept, and the report shows them."""

from __future__ import annotations

from benchmarks.load.cli import main
from benchmarks.load.report import derive, markdown, round_ratios


def _system(events_per_s: float, cpu: float) -> dict:
    return {"label": "x", "throughput": {"events_per_s": events_per_s, "cpu_s_per_1k": cpu}}


def _result(rounds: list[dict] | None) -> dict:
    r = {"benchmark": "load", "machine": {}, "params": {}, "errors": [],
         "systems": {"engine": _system(50_000, 0.018), "quix_naive": _system(60_000, 0.015),
                     "quix_journey": _system(100_000, 0.009)}}
    if rounds is not None:
        r["rounds"] = rounds
    return r


ROUNDS = [
    {"engine": {"events_per_s": 50_000, "cpu_s_per_1k": 0.018}, "quix_naive": {"events_per_s": 60_000, "cpu_s_per_1k": 0.015},
     "quix_journey": {"events_per_s": 100_000, "cpu_s_per_1k": 0.009}},
    {"engine": {"events_per_s": 55_000, "cpu_s_per_1k": 0.014}, "quix_naive": {"events_per_s": 50_000, "cpu_s_per_1k": 0.016},
     "quix_journey": {"events_per_s": 110_000, "cpu_s_per_1k": 0.008}},
    {"engine": {"events_per_s": 52_000, "cpu_s_per_1k": 0.016}, "quix_naive": {"events_per_s": 58_000, "cpu_s_per_1k": 0.016},
     "quix_journey": {"error": "RuntimeError: boom"}},
]


def test_the_ratios_against_quix_are_the_median_of_the_rounds():
    r = _result(ROUNDS)
    derive(r)
    by_round = r["ratios_by_round"]
    assert by_round["engine_cpu_per_1k/quix_naive_cpu_per_1k"] == [1.2, 0.875, 1.0]
    assert r["ratios"]["engine_cpu_per_1k/quix_naive_cpu_per_1k"] == 1.0          # not round 1's 1.2
    assert r["ratios"]["engine/quix_naive"] == round(52_000 / 58_000, 4)
    # A round where a system failed is left out of its ratios (two rounds left: their median).
    assert by_round["engine/quix_journey"] == [0.5, 0.5]
    assert r["ratios"]["engine/quix_journey"] == 0.5


def test_without_rounds_the_ratios_are_the_single_drains():
    r = _result(None)
    derive(r)
    assert "ratios_by_round" not in r
    assert r["ratios"]["engine_cpu_per_1k/quix_naive_cpu_per_1k"] == 1.2
    assert round_ratios(ROUNDS[:1]) == {}                    # one round: nothing to take a median of


def test_the_report_shows_the_median_and_every_round():
    r = _result(ROUNDS)
    derive(r)
    md = markdown(r)
    assert "median of 3 rounds" in md
    assert "| engine / naive Quix CPU s per 1k events | 1.00 | ≤ 1 | met | - | 1.20 / 0.88 / 1.00 |" in md
    assert "| 3 | " in md and "failed" in md                   # the rounds table, the failed drain named


def test_rounds_must_be_at_least_one(capsys):
    assert main(["run", "--rounds", "0"]) == 2
    assert "--rounds must be 1 or more" in capsys.readouterr().err


def _paced(result: dict, name: str, cpu: float, *, all_consumed: bool = True) -> None:
    result["systems"][name]["latency"] = {"cpu_s_per_1k": cpu, "all_consumed": all_consumed}


def test_paced_cpu_is_judged_against_the_systems_own_drains():
    r = _result(ROUNDS)
    _paced(r, "engine", 0.040)
    _paced(r, "quix_naive", 0.030)
    _paced(r, "quix_journey", 0.020, all_consumed=False)      # fell behind: its figure is not comparable
    derive(r)
    # The engine's drains in alternation: 0.018, 0.014, 0.016 -> median 0.016.
    assert r["ratios"]["engine_paced_cpu/engine_cpu"] == 2.5
    assert r["ratios"]["engine_paced_cpu/quix_naive_paced_cpu"] == round(0.040 / 0.030, 4)
    assert "engine_paced_cpu/quix_journey_paced_cpu" not in r["ratios"]
    md = markdown(r)
    assert "| x | 0.040 | 0.016 | 2.50 |" in md                 # the engine's row (labels are "x" here)
    assert "Engine paced / its drain: 2.50 (target ≤ 1.5: missed); the engine's paced CPU per event against " \
           "the Quix apps' paced: naive Quix 1.33." in md


def test_without_a_latency_phase_there_is_no_paced_section():
    r = _result(ROUNDS)
    derive(r)
    assert not any("paced" in k for k in r["ratios"])
    assert "paced load" not in markdown(r)
