"""The reference docs and the code agree: docs/journeys.md, docs/policies.md and docs/events.md
document exactly what the parsers accept and what the worker writes.

Each side is read from its source: the keys from the parsers' own tables (``journeyfiles.MAPPINGS``,
``policies.MAPPINGS``, which the parsers check every mapping against), the expression names and
functions from the expression compiler, the dead-letter reasons, decision outcomes and suppression
reasons from the tuples the worker and the adapter label their metrics with; the docs' side from
the tables of the section each of them names. Nothing is listed here by hand, so a key added to a
parser without its line in the docs (or a line left behind after a key is gone) fails.
"""

from __future__ import annotations

import re
from pathlib import Path

from orchestrator.adapters import metrics as adapter_metrics
from orchestrator.core import events, expressions, journeyfiles, journeys, policies
from orchestrator.observability import metrics
from tests.repo.test_docs import github_anchor, prose

ROOT = Path(__file__).resolve().parents[2]
HEADING = re.compile(r"^(#+) (.+)$", re.M)
CODE = re.compile(r"`([^`]+)`")
SEE = re.compile(r"\(see (docs/[\w-]+\.md)#([\w-]+)\)")


def sections(path: Path) -> dict[str, str]:
    """Each heading's anchor (as GitHub makes it) -> its own text, up to the next heading of any
    level, code blocks left out."""
    text = prose(path.read_text(encoding="utf-8"))
    marks = list(HEADING.finditer(text))
    return {github_anchor(m.group(2)): text[m.end():marks[i + 1].start() if i + 1 < len(marks) else len(text)]
            for i, m in enumerate(marks)}


def first_column(section: str, header: str) -> set[str]:
    """The code spans of the first column of the section's tables whose first header cell is ``header``."""
    found: set[str] = set()
    rows: list[str] = []
    for line in [*section.splitlines(), ""]:
        if line.startswith("|"):
            rows.append(line)
            continue
        if rows and rows[0].split("|")[1].strip() == header:
            for row in rows[2:]:
                found.update(CODE.findall(row.split("|")[1]))
        rows = []
    return found


def documented(path: Path, header: str) -> dict[str, set[str]]:
    """Section anchor -> the names its ``header`` tables list (sections without such a table left out)."""
    out = {anchor: first_column(text, header) for anchor, text in sections(path).items()}
    return {anchor: names for anchor, names in out.items() if names}


def accepted(mappings: dict[str, tuple[frozenset[str], str]]) -> dict[str, set[str]]:
    """A parser's table as section anchor -> every key of the mappings documented there."""
    out: dict[str, set[str]] = {}
    for keys, anchor in mappings.values():
        out.setdefault(anchor, set()).update(keys)
    return out


def unresolved_sees(problems: list[str]) -> list[str]:
    """The problems that do not end with ``(see docs/<file>.md#<anchor>)`` naming a real heading."""
    bad = []
    for problem in problems:
        m = SEE.search(problem)
        if m is None or not problem.endswith(m.group(0)) or m.group(2) not in sections(ROOT / m.group(1)):
            bad.append(problem)
    return bad


# ---------------------------------------------------------------------------- journeys and policies
def test_every_journey_key_is_documented_in_its_section_and_nothing_else_is() -> None:
    parser = accepted(journeyfiles.MAPPINGS)
    assert {"send", "exit-node", "top-level-keys"} <= set(parser) and "exempt" in parser["send"]
    assert documented(ROOT / "docs" / "journeys.md", "key") == parser


def test_every_node_kind_has_its_section() -> None:
    kinds = {name.split(" ", 1)[1]: anchor for name, (_, anchor) in journeyfiles.MAPPINGS.items()
             if name.startswith("node ")}
    assert set(kinds) == set(journeyfiles.NODE_KINDS)
    nodes = sections(ROOT / "docs" / "journeys.md")["nodes"]
    for kind in journeyfiles.NODE_KINDS:
        assert f"`{kind}`" in nodes, kind


def test_every_policies_key_is_documented_in_its_section_and_nothing_else_is() -> None:
    parser = accepted(policies.MAPPINGS)
    assert parser["keys"] == {"channels", "frequency", "quiet_hours", "consent", "global_holdout", "max_event_age"}
    doc = documented(ROOT / "docs" / "policies.md", "key")
    assert doc == parser
    own = sections(ROOT / "docs" / "policies.md")
    assert parser["keys"] <= set(own), "every top-level policies key has a section of its own"


def test_exemptions_are_documented() -> None:
    exempt = sections(ROOT / "docs" / "journeys.md")["exempt"]
    assert set(journeys.EXEMPTIBLE) <= set(CODE.findall(exempt))


def test_the_sections_the_parsers_point_at_exist() -> None:
    for path, mappings, extra in [(ROOT / "docs" / "journeys.md", journeyfiles.MAPPINGS, journeyfiles._KEY_SECTIONS.values()),
                                  (ROOT / "docs" / "policies.md", policies.MAPPINGS, ())]:
        have = set(sections(path))
        wanted = {anchor for _, anchor in mappings.values()} | set(extra)
        assert wanted <= have, (path.name, wanted - have)


# ---------------------------------------------------------------------------- expressions
def test_every_namespace_is_documented_and_nothing_else_is() -> None:
    doc = first_column(sections(ROOT / "docs" / "journeys.md")["namespaces"], "namespace")
    assert doc == set(expressions.NAMESPACES)


def test_every_function_is_documented_and_nothing_else_is() -> None:
    doc = first_column(sections(ROOT / "docs" / "journeys.md")["functions"], "function")
    assert {f.split("(", 1)[0] for f in doc} == set(expressions.FUNCTIONS)


# ---------------------------------------------------------------------------- outputs
def reasons_by_writer() -> dict[str, str]:
    """Dead-letter reason -> the docs' "written by" cell."""
    rows = [line.split("|") for line in sections(ROOT / "docs" / "events.md")["dead-letters"].splitlines()
            if line.startswith("| `")]
    return {CODE.findall(row[1])[0]: row[2].strip() for row in rows}


def test_every_dead_letter_reason_is_documented_and_nothing_else_is() -> None:
    worker, adapter = set(events.DEAD_LETTER_REASONS), set(adapter_metrics.DEAD_LETTER_REASONS)
    assert {"engine_error", "delivery_failed"} <= worker | adapter
    writers = reasons_by_writer()
    assert set(writers) == worker | adapter
    for reason, cell in writers.items():
        assert ("worker" in cell) == (reason in worker), (reason, cell)
        assert ("adapter" in cell) == (reason in adapter), (reason, cell)


def test_every_decision_outcome_is_documented_and_nothing_else_is() -> None:
    doc = first_column(sections(ROOT / "docs" / "events.md")["decisions"], "outcome")
    assert doc == set(metrics.DECISION_OUTCOMES)


def test_every_suppression_reason_is_documented_and_nothing_else_is() -> None:
    doc = first_column(sections(ROOT / "docs" / "events.md")["suppressions"], "reason")
    assert doc == set(metrics.SUPPRESSION_REASONS)


def test_every_reserved_type_is_documented() -> None:
    doc = first_column(sections(ROOT / "docs" / "events.md")["reserved-types"], "type")
    assert {events.PROFILE_UPDATED, events.PROFILE_ERASED, *events.FEEDBACK_TYPES} <= doc


# ---------------------------------------------------------------------------- the readers of this test
def test_a_table_read_is_the_table_written() -> None:
    text = "| key | value |\n|---|---|\n| `a` | x |\n| `b`, `c` | y |\n\n| other | v |\n|---|---|\n| `z` | w |\n"
    assert first_column(text, "key") == {"a", "b", "c"} and first_column(text, "other") == {"z"}
    assert unresolved_sees(["f:1: m (see docs/journeys.md#wait_for)"]) == []
    assert unresolved_sees(["f:1: m (see docs/journeys.md#nope)", "f:1: m", "f:1: (see docs/events.md#topics) m"]) \
        == ["f:1: m (see docs/journeys.md#nope)", "f:1: m", "f:1: (see docs/events.md#topics) m"]
