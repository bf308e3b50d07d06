"""Fuzzing the expression compiler: whatever the text, it is refused or it evaluates safely.

"Safely" means: compiling never raises anything but ExpressionError, evaluation never raises,
and no Python attribute of any object is ever read (namespaces are dictionaries whose lookups
are recorded; a trap object fails the test if anything touches its attributes).
"""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.core.expressions import compile_expression
from orchestrator.errors import ExpressionError


class Trap:
    """Any attribute access on this object (other than by the interpreter itself) is a failure."""

    touched: list[str] = []

    def __getattribute__(self, name: str):  # noqa: ANN204
        if name not in ("__class__", "__eq__", "__ne__", "__hash__", "__bool__", "__len__", "__repr__"):
            Trap.touched.append(name)
        return object.__getattribute__(self, name)


TOKENS = [
    "event", "profile", "journey", "engagement", "activity", "session", "now", "__class__", "__mro__",
    "__subclasses__", "__globals__", "__builtins__", "__import__", "os", "system", "eval", "exec", "open",
    "getattr", "lambda", "x", "len", "lower", "days_since", "hours_since", "True", "None", "null",
    ".", ",", "(", ")", "[", "]", "{", "}", ":", "+", "-", "*", "**", "/", "//", "%", "==", "!=", "<", ">=",
    " and ", " or ", " not ", " in ", " if ", " else ", " for ", " is ", "=", ":=", "@", "'", '"', "f'",
    "0", "1", "10", "1e9", "-1", "'a'", '"b"', "properties", "value", "vars", "email", "opened_30d",
]


def _namespaces():
    trap = Trap()
    return {
        "event": {"properties": {"value": 80, "obj": trap}, "type": "cart.updated", "ts": "2026-11-23T10:00:00Z"},
        "profile": {"ltv_tier": "gold", "tags": ["a", "b"], "obj": trap},
        "journey": {"vars": {"cart_value": 80}, "touches": 1},
        "engagement": {"email": {"opened_30d": 2}},
        "activity": {},
        "session": {"event_count": 3, "categories": ["shoes"]},
        "now": "2026-11-23T10:00:00.000Z",
    }


def check(source: str) -> None:
    try:
        expr = compile_expression(source)
    except ExpressionError:
        return
    Trap.touched.clear()
    expr(_namespaces(), 1_795_000_000_000)         # must not raise
    assert Trap.touched == [], f"{source!r} reached attributes {Trap.touched}"


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=12).map("".join))
def test_token_soup_is_refused_or_safe(source: str) -> None:
    check(source)


@settings(max_examples=800, deadline=None)
@given(st.text(alphabet=string.printable, max_size=60))
def test_arbitrary_text_is_refused_or_safe(source: str) -> None:
    check(source)


ESCAPES = [
    "().__class__", "().__class__.__bases__[0].__subclasses__()", "event.__class__", "event['__class__']",
    "event.properties.obj.__class__", "profile.obj.__dict__", "[].__class__.__mro__",
    "__import__('os').system('true')", "getattr(event, 'x')", "(lambda: 1)()", "[x for x in event]",
    "{}.keys()", "event.keys()", "event.get('x')", "lower.__globals__", "len.__self__", "f'{event}'",
    "event if True else profile", "(y := 1)", "event.properties.value ** 99999999",
    "'a' * 100000000", "[1] * 100000000", "profile.tags * 100000000",
]


def test_known_escapes_are_refused_or_harmless() -> None:
    for source in ESCAPES:
        check(source)
    for source in ESCAPES[:17]:
        try:
            compile_expression(source)
        except ExpressionError:
            continue
        raise AssertionError(f"{source!r} compiled")
