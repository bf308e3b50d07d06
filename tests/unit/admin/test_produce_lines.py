"""How `orchestrator produce` cuts its input into numbered lines and judges each (no Kafka)."""

from __future__ import annotations

from orchestrator.admin.produce import Lines, check_line


def test_lines_are_numbered_across_chunks_and_a_long_one_is_measured_not_kept():
    lines = Lines(cap=10)
    got = lines.feed(b'{"a":1}\r\n{"b"') + lines.feed(b':2}\n\n0123456789ABC') + lines.feed(b"DEF\nlast")
    assert got == [(1, b'{"a":1}', 8), (2, b'{"b":2}', 7), (3, b"", 0), (4, None, 16)]
    assert lines.rest() == (5, b"last", 4)                  # the input ended without a newline
    assert lines.rest() is None


def test_a_line_is_judged_as_the_worker_would_key_it():
    assert check_line(b'{"customer_id": "c-1", "type": "x"}') == (b"c-1", None)
    assert check_line(b"{nope")[1].startswith("not JSON (")
    assert check_line(b"[1]")[1] == "not a JSON object (a JSON list)"
    for line in (b'{"type": "x"}', b'{"customer_id": 42}', b'{"customer_id": ""}'):
        assert check_line(line) == (None, "no customer_id (a non-empty string) to key it by"), line
