"""The judgement of a scenario: expected (the simulator) against observed (the output topics),
and the recovery time of each fault (docs/chaos.md, "How a scenario is judged").
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.chaos.expected import Expected
from tests.chaos.load import Line
from tests.chaos.observer import Observer
from tests.chaos.scenarios import Fault


@dataclass
class Outcome:
    name: str
    workers: str = ""
    lines: int = 0
    expected_actions: int = 0
    action_records: int = 0
    lost: int = 0
    wrong: int = 0
    dup: int = 0
    dup_other: int = 0                # records seen more often than simulate made them: suppressions, decisions, dlq
    guarantee: str = "at-least-once"
    dlq_expected: int = 0
    dlq_diff: int = 0
    supp_diff: int = 0
    dec_diff: int = 0
    recovery_s: float | None = None
    seconds: float = 0.0
    error: str | None = None
    faults: list[Fault] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Nothing lost or wrong; in exactly-once, also no output seen twice (a committed reader's view)."""
        once = self.guarantee != "exactly-once" or (self.dup == 0 and self.dup_other == 0)
        return (self.error is None and self.lost == 0 and self.wrong == 0 and self.dlq_diff == 0
                and self.supp_diff == 0 and self.dec_diff == 0 and once)


def incomplete(exp: Expected, obs: Observer) -> bool:
    return (any(a not in obs.actions for a in exp.actions)
            or any(s not in obs.suppressions for s in exp.suppressions)
            or not exp.decisions <= obs.decisions)


def verify(out: Outcome, exp: Expected, obs: Observer, lines: list[Line], coords: list[tuple[int, int]]) -> None:
    """Expected (simulate) vs observed (the topics)."""
    seen = set(obs.actions)
    lost = sorted(set(exp.actions) - seen)
    unexpected = sorted(seen - set(exp.actions))
    changed = sorted(a for a in set(exp.actions) & seen if obs.actions[a] != {exp.actions[a]})
    out.lost, out.wrong = len(lost), len(unexpected) + len(changed)
    out.action_records = obs.action_records
    out.dup = obs.action_records - len(seen)
    d = out.details
    dup_by_node: Counter = Counter()
    for aid, n in obs.action_counts.items():
        if n > 1:
            fp = next(iter(obs.actions[aid]))
            dup_by_node[f"{fp[4]}/{fp[6]}"] += n - 1
    d["duplicates_by_journey_node"] = dict(dup_by_node.most_common())
    # A copy with the same decided_at is a re-send of the record (the journal, or a producer retry);
    # another decided_at means the input was decided again (its state write was lost too).
    dups = [a for a, n in obs.action_counts.items() if n > 1]
    d["duplicates_resent"] = sum(1 for a in dups if len(obs.decided_at[a]) == 1)
    d["duplicates_redecided"] = sum(1 for a in dups if len(obs.decided_at[a]) > 1)
    d["lost_actions"] = [{"action_id": a, "line": exp.action_line[a], "action": exp.actions[a],
                          "line_value": lines[exp.action_line[a]].value.decode(errors="replace")[:300]
                          if exp.action_line[a] < len(lines) else "(timer after the last line)"} for a in lost[:50]]
    d["unexpected_actions"] = [{"action_id": a, "seen": sorted(obs.actions[a])} for a in unexpected[:50]]
    d["changed_actions"] = [{"action_id": a, "expected": exp.actions[a], "seen": sorted(obs.actions[a])}
                            for a in changed[:50]]
    # dead letters, by the coordinates the bad lines were acknowledged at
    want = {coords[i]: r for i, r in exp.dlq.items() if i < len(coords)}
    got = {k: v for k, v in obs.dlq.items()}
    dlq_lost = [k for k in want if want[k] not in got.get(k, set())]
    dlq_wrong = [k for k in got if k not in want or got[k] != {want[k]}]
    out.dlq_diff = len(dlq_lost) + len(dlq_wrong) + len(obs.dlq_foreign) + obs.unparsable
    d["dead_letters_expected_by_reason"] = dict(Counter(want.values()))
    d["dead_letters_seen_by_reason"] = dict(Counter(r for rs in got.values() for r in rs))
    d["dead_letter_records"] = obs.dlq_records
    d["dead_letters_lost"] = [{"coord": k, "reason": want[k]} for k in dlq_lost[:20]]
    d["dead_letters_wrong"] = [{"coord": k, "seen": sorted(got[k]), "expected": want.get(k)} for k in dlq_wrong[:20]]
    d["dead_letters_from_other_topics"] = obs.dlq_foreign[:10]
    # suppressions and decisions
    s_lost = [s for s in exp.suppressions if s not in obs.suppressions]
    s_wrong = [s for s in obs.suppressions if s not in exp.suppressions or obs.suppressions[s] != {exp.suppressions[s]}]
    out.supp_diff = len(s_lost) + len(s_wrong)
    d["suppressions"] = {"expected": len(exp.suppressions), "seen": len(obs.suppressions),
                         "records": obs.supp_records, "lost": s_lost[:20],
                         "wrong": [{"id": s, "seen": sorted(obs.suppressions[s]), "expected": exp.suppressions.get(s)}
                                   for s in s_wrong[:20]]}
    # Copies: records seen more often than the simulator made them (at-least-once re-sends).
    supp_copies = sum(n - 1 for n in obs.supp_counts.values() if n > 1)
    dec_copies = sum(max(0, n - exp.decision_counts.get(t, 0)) for t, n in obs.decision_counts.items()
                     if t in exp.decision_counts)
    dlq_copies = obs.dlq_records - len(obs.dlq) - len(obs.dlq_foreign)
    out.dup_other = supp_copies + dec_copies + dlq_copies
    d["copies"] = {"actions": out.dup, "suppressions": supp_copies, "decisions": dec_copies, "dead_letters": dlq_copies}
    dec_lost = exp.decisions - obs.decisions
    dec_wrong = obs.decisions - exp.decisions
    out.dec_diff = len(dec_lost) + len(dec_wrong)
    d["decisions"] = {"expected": len(exp.decisions), "seen": len(obs.decisions), "records": obs.decision_records,
                      "lost": sorted(map(list, dec_lost), key=str)[:20],
                      "wrong": sorted(map(list, dec_wrong), key=str)[:20]}


def recovery(f: Fault, exp: Expected, obs: Observer) -> float | None:
    """Seconds from the fault until every expected action of the lines acknowledged before the
    fault's step was over (the restarted worker ready, the new workers up, ...) had been seen;
    actions sent when a wait ended are left out (they are late on purpose). None if some of
    those actions never were seen."""
    upto = f.acked if f.acked_end is None else f.acked_end
    last = f.at
    for aid, line in exp.action_line.items():
        if line < upto and aid not in exp.timer_actions:
            seen = obs.first_seen.get(aid)
            if seen is None:
                return None
            last = max(last, seen)
    return last - f.at
