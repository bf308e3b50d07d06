"""What a run prints (one row per scenario) and the JSON report written next to the worker logs."""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson

from tests.chaos.verify import Outcome


def fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def table(outcomes: list[Outcome]) -> str:
    head = ("scenario", "starts", "lines", "actions", "lost", "dup", "dup other", "wrong", "dlq±", "supp±",
            "dec±", "recovery s", "time s", "result")
    rows = [head]
    for o in outcomes:
        result = "PASS" if o.passed else "ERROR" if o.error and not (o.lost or o.wrong) else "FAIL"
        rows.append((o.name, o.workers, str(o.lines), str(o.expected_actions), str(o.lost), str(o.dup),
                     str(o.dup_other), str(o.wrong), str(o.dlq_diff), str(o.supp_diff), str(o.dec_diff), fmt_s(o.recovery_s),
                     f"{o.seconds:.0f}", result))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    lines = [fmt(rows[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows[1:]]
    return "\n".join(lines)


def write_report(root: Path, outcomes: list[Outcome], args: argparse.Namespace) -> Path:
    path = root / "report.json"
    doc = {"events": args.events, "rate": args.rate, "scenarios": [
        {"name": o.name, "guarantee": o.guarantee, "passed": o.passed, "error": o.error, "lines": o.lines,
         "worker_starts": o.workers, "expected_actions": o.expected_actions, "action_records": o.action_records,
         "lost": o.lost, "wrong": o.wrong, "duplicates": o.dup, "other_copies": o.dup_other, "dead_letters_off": o.dlq_diff,
         "suppressions_off": o.supp_diff, "decisions_off": o.dec_diff, "recovery_s": o.recovery_s,
         "seconds": round(o.seconds, 1), "notes": o.notes,
         "faults": [{"label": f.label, "lines_acked_before": f.acked,
                    "lines_acked_before_step_end": f.acked_end, "recovery_s": f.recovery_s} for f in o.faults],
         **o.details} for o in outcomes]}
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2, default=str))
    return path
