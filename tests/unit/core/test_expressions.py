"""SPEC §4 expressions: the safe subset, None semantics, and refusal of everything else."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from orchestrator.core.expressions import Expression, compile_expression
from orchestrator.core.timeutil import format_ts
from orchestrator.errors import ExpressionError
from tests.unit.core.helpers import DAY, HOUR, T0

NS: dict[str, Any] = {
    "event": {"type": "cart.updated", "ts": format_ts(T0 - 2 * DAY),
              "properties": {"value": 80.5, "category": "Shoes", "items": ["a", "b", "c"], "n": 7,
                             "nested": {"deep": {"er": 1}}, "zero": 0}},
    "profile": {"ltv_tier": "gold", "tags": ["vip", "beta"], "signup_at": format_ts(T0 - 36 * HOUR),
                "name": "ANN"},
    "journey": {"vars": {"cart_value": 80.5}, "touches": 1, "entered_at": format_ts(T0 - HOUR)},
    "engagement": {"email": {"opened_30d": 2, "sent_7d": 1, "last_opened_at": None}},
    "activity": {"cart": {"updated": {"count_30d": 4}}, "cart.updated": {"count_30d": 4}},
    "session": {"started_at": format_ts(T0 - 10 * 60_000), "event_count": 3, "categories": ["shoes"]},
    "now": format_ts(T0),
}


def ev(source: object, ns: Mapping[str, Any] = NS, now: int = T0) -> Any:
    return compile_expression(source)(ns, now)


# ---------------------------------------------------------------------------- the allowed subset
@pytest.mark.parametrize("source, expected", [
    ("1", 1), ("2.5", 2.5), ("'x'", "x"), ('"x"', "x"),
    ("true", True), ("false", False), ("null", None), ("True", True), ("False", False), ("None", None),
    ("[1, 'a', true]", [1, "a", True]), ("[]", []), ("[event.properties.n, 2]", [7, 2]),
])
def test_literals_and_lists(source: str, expected: Any) -> None:
    assert ev(source) == expected


@pytest.mark.parametrize("value", [True, False, None, 3, 2.5])
def test_yaml_scalars_are_constant_expressions(value: object) -> None:
    assert ev(value) == value


@pytest.mark.parametrize("source, expected", [
    ("true and true", True), ("true and false", False), ("false or true", True), ("false or false", False),
    ("not false", True), ("not true", False), ("not null", True), ("not (1 > 2)", True),
    ("event.properties.value > 50 and profile.ltv_tier == 'gold'", True),
    ("event.properties.value > 100 or profile.ltv_tier == 'gold'", True),
    ("event.properties.value > 100 or profile.ltv_tier == 'silver'", False),
    ("not profile.missing", True),
])
def test_boolean_operators(source: str, expected: bool) -> None:
    assert ev(source) == expected


@pytest.mark.parametrize("source, expected", [
    ("event.properties.value >= 50", True), ("event.properties.value >= 80.5", True),
    ("event.properties.value > 80.5", False), ("event.properties.value < 100", True),
    ("event.properties.value <= 80", False), ("profile.ltv_tier == 'gold'", True),
    ("profile.ltv_tier != 'gold'", False), ("1 < event.properties.n < 10", True), ("1 < 7 < 5", False),
    ("'vip' in profile.tags", True), ("'gold' in profile.tags", False), ("'gold' not in profile.tags", True),
    ("event.properties.category in ['Shoes', 'Hats']", True), ("'ho' in 'shoes'", True),
])
def test_comparisons_and_in(source: str, expected: bool) -> None:
    assert ev(source) is expected


@pytest.mark.parametrize("source, expected", [
    ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("10 - 4", 6), ("10 / 4", 2.5), ("7 // 2", 3), ("7 % 3", 1),
    ("-event.properties.n", -7), ("+event.properties.n", 7), ("event.properties.value * 2", 161.0),
    ("journey.vars.cart_value + 0.5", 81.0), ("'a' + 'b'", "ab"), ("[1] + [2]", [1, 2]),
])
def test_arithmetic(source: str, expected: Any) -> None:
    assert ev(source) == expected


@pytest.mark.parametrize("source, expected", [
    ("event.properties.value", 80.5), ("event.properties.nested.deep.er", 1),
    ("journey.vars.cart_value", 80.5), ("engagement.email.opened_30d", 2),
    ("activity.cart.updated.count_30d", 4), ("activity['cart.updated'].count_30d", 4),
    ("session.categories", ["shoes"]), ("session.event_count", 3), ("event.properties.items[1]", "b"),
    ("event['properties']['value']", 80.5), ("now", format_ts(T0)),
])
def test_dotted_and_constant_subscript_access(source: str, expected: Any) -> None:
    assert ev(source) == expected


def test_calls_to_the_four_functions() -> None:
    assert ev("days_since(event.ts)") == pytest.approx(2.0)
    assert ev("hours_since(profile.signup_at)") == pytest.approx(36.0)
    assert ev("days_since(profile.signup_at) > 1") is True
    assert ev("hours_since(now)") == 0
    assert ev("len(event.properties.items)") == 3
    assert ev("len(profile.name)") == 3
    assert ev("len(event.properties.nested)") == 1
    assert ev("lower(profile.name)") == "ann"
    assert ev("lower(event.properties.category) == 'shoes'") is True
    assert ev("days_since(1773144000000)") == pytest.approx((T0 - 1773144000000) / DAY)


def test_functions_on_missing_or_wrong_types_give_none() -> None:
    for source in ["days_since(profile.missing)", "hours_since('yesterday')", "len(event.properties.n)",
                   "len(profile.missing)", "lower(event.properties.n)", "lower(null)"]:
        assert ev(source) is None, source


def test_expression_reports_the_namespaces_it_reads() -> None:
    assert compile_expression("event.properties.value > 1 and profile.x").names == {"event", "profile"}


# ---------------------------------------------------------------------------- None semantics
@pytest.mark.parametrize("source", [
    "profile.missing", "profile.missing.deeper.still", "event.properties.nope",
    "event.properties.items[10]", "event.properties.items['x']", "event.properties.value.x",
    "journey.vars.nothing", "engagement.sms.opened_30d", "activity.order.completed.last_at",
    "profile.tags.first", "event.properties['no such key']",
])
def test_missing_field_is_none(source: str) -> None:
    assert ev(source) is None


def test_missing_namespace_is_none() -> None:
    assert ev("event.properties.value", {}) is None
    assert ev("session.event_count > 1", {"event": None}) is False


@pytest.mark.parametrize("source", [
    "profile.missing >= 50", "profile.missing > 50", "profile.missing < 50", "profile.missing <= 50",
    "50 < profile.missing", "profile.missing == 50", "profile.missing > profile.other",
    "'x' in profile.missing", "'x' not in profile.missing", "profile.name < 1", "1 < profile.missing < 3",
])
def test_comparisons_with_none_or_mismatched_types_are_false(source: str) -> None:
    assert ev(source) is False


@pytest.mark.parametrize("source", [
    "profile.missing + 1", "1 - profile.missing", "profile.missing * 2", "-profile.missing",
    "event.properties.value / 0", "event.properties.n // 0", "event.properties.n % 0",
    "'a' - 'b'", "'a' * 3", "3 * 'a'", "'%s' % 1", "profile.tags * 2", "'a' + 1", "-profile.name",
    "true + 1", "1 - false", "true * 3", "true + true", "10 / true", "-true",      # a boolean is not a number
])
def test_arithmetic_with_none_bad_types_or_zero_division_is_none(source: str) -> None:
    assert ev(source) is None


@pytest.mark.parametrize("source", [
    "event.properties.value / 0 >= 0 or true", "event.properties.n // 0 == 1 or true",
    "event.properties.n % 0 < 1 or true", "event.properties.value / 0 == null",
    "profile.missing >= 0 or true", "'a' + 1 == 2 or true",
])
def test_a_failed_operation_is_none_like_a_missing_field_not_the_whole_expression(source: str) -> None:
    assert ev(source) is True


def test_division_by_zero_is_none_inside_a_larger_expression() -> None:
    assert ev("[event.properties.n / 0, event.properties.n / 7]") == [None, 1.0]
    assert ev("not (event.properties.value / 0 > 1)") is True


def test_a_compiled_expression_never_raises_at_evaluation() -> None:
    weird: dict[str, Any] = {"event": [1, 2], "profile": "text", "journey": 5, "session": object(),
                             "engagement": {"email": None}, "activity": {1: 2}, "now": None}
    for source in ["event.properties.value > 5", "profile.x.y", "journey.vars.a + 1", "session.started_at",
                   "days_since(now)", "len(session)", "engagement.email.opened_30d > 0", "event[0]",
                   "profile[0]", "activity.x"]:
        compile_expression(source)(weird, T0)


# ---------------------------------------------------------------------------- refused at compile time
HOSTILE = [
    "().__class__",
    "().__class__.__bases__[0].__subclasses__()",
    "event.__class__",
    "event.__class__.__mro__",
    "event.properties.__dict__",
    "event['__class__']",
    "event._private",
    "__import__('os')",
    "__import__('os').system('true')",
    "open('x')",
    "open('/etc/passwd').read()",
    "eval('1')",
    "exec('x = 1')",
    "compile('1', 'x', 'eval')",
    "globals()",
    "locals()",
    "vars()",
    "dir()",
    "type(event)",
    "getattr(event, 'x')",
    "setattr(event, 'x', 1)",
    "lambda: 1",
    "(lambda: 1)()",
    "[x for x in event.properties.items]",
    "{x for x in [1]}",
    "{x: 1 for x in [1]}",
    "(x for x in [1])",
    "'a' * 10**9",
    "10 ** 10 ** 10",
    "2 ** 8",
    "1 << 100000",
    "1 | 2",
    "1 & 2",
    "1 ^ 2",
    "~1",
    "f'{event}'",
    "f'{event.__class__}'",
    "(x := 1)",
    "(profile := 1)",
    "event.properties[event.type]",
    "event.properties[0 + 1]",
    "event.properties[True]",
    "event.properties[1:2]",
    "event.properties[None]",
    "os",
    "sys.modules",
    "x",
    "builtins",
    "__builtins__",
    "print('x')",
    "event.properties.get('x')",
    "event.keys()",
    "lower.__call__",
    "len(event, 2)",
    "len()",
    "len(*event.properties.items)",
    "len(x=1)",
    "'abc'.upper",
    "'abc'.upper()",
    "(1).real",
    "[1, 2].pop",
    "true.x",
    "null.x",
    "{'a': 1}",
    "{1, 2}",
    "1 if true else 2",
    "event is None",
    "event is not None",
    "(yield 1)",
    "await event",
    "b'bytes'",
    "1j",
    "...",
    "",
    "   ",
    "1 +",
    "import os",
    "x = 1",
    "event.properties.value >= 50; import os",
]


@pytest.mark.parametrize("source", HOSTILE)
def test_hostile_or_unsupported_input_is_refused_at_compile_time(source: str) -> None:
    with pytest.raises(ExpressionError):
        compile_expression(source)


@pytest.mark.parametrize("source", ["'a' 'b'", "profile.tier == 'go' 'ld'", "\"x\"  'y' == event.type"])
def test_two_strings_side_by_side_are_refused_not_joined(source: str) -> None:
    with pytest.raises(ExpressionError, match="two strings side by side"):
        compile_expression(source)
    assert ev("'a' + 'b'") == "ab"


def test_over_long_and_over_complex_expressions_are_refused() -> None:
    with pytest.raises(ExpressionError):
        compile_expression("1 + " * 1000 + "1")
    with pytest.raises(ExpressionError):
        compile_expression(" + ".join(["event.properties.value"] * 80))


@pytest.mark.parametrize("source", [["a"], {"a": 1}, object()])
def test_non_string_non_scalar_sources_are_refused(source: object) -> None:
    with pytest.raises(ExpressionError):
        compile_expression(source)


def test_refusal_message_names_the_problem() -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression("open('x')")
    assert "days_since" in str(info.value)  # lists what may be called
    with pytest.raises(ExpressionError) as info:
        compile_expression("secrets.x")
    assert "secrets" in str(info.value)


# ---------------------------------------------------------------------------- nothing is ever touched through getattr
class _Trap(dict):
    """A namespace dict that records every attribute lookup that falls through to __getattr__."""

    touched: list[str]

    def __getattr__(self, name: str) -> Any:
        type(self).touched.append(name)
        raise AttributeError(name)


class _Obj:
    secret = "attribute value"

    def method(self) -> str:  # pragma: no cover - must never be called
        raise AssertionError("called")


class _LoudMapping(Mapping[str, Any]):
    def __init__(self) -> None:
        self.getattr_calls: list[str] = []

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __getattr__(self, name: str) -> Any:
        self.getattr_calls.append(name)
        raise AttributeError(name)


def test_field_access_never_uses_getattr_on_namespace_objects() -> None:
    _Trap.touched = []
    trap = _Trap(properties=_Trap(value=5))
    ns = {"event": trap, "profile": _Obj(), "session": _LoudMapping()}
    # existing keys are read as keys
    assert ev("event.properties.value", ns) == 5
    # names of dict methods and attributes are keys too, never the bound methods
    for source in ["event.keys", "event.get", "event.items", "event.copy", "event.properties.pop",
                   "event.secret", "event.x.y.z", "event.properties.value.real", "event.properties.nope"]:
        assert ev(source, ns) is None, source
    # attributes of a non-mapping object are invisible
    assert ev("profile.secret", ns) is None
    assert ev("profile.method", ns) is None
    assert ev("session.anything", ns) is None
    assert ev("len(event.keys)", ns) is None
    assert _Trap.touched == []
    assert ns["session"].getattr_calls == []


def test_hostile_source_is_refused_before_anything_is_evaluated() -> None:
    calls: list[str] = []

    class Spy(dict):
        def get(self, key: Any, default: Any = None) -> Any:  # noqa: D401
            calls.append(key)
            return super().get(key, default)

    for source in ["event.__class__", "getattr(event, 'x')", "event.properties[event.type]"]:
        with pytest.raises(ExpressionError):
            compile_expression(source)(Spy(event={}), T0)
    assert calls == []


def test_compiled_expression_is_reusable_and_pure() -> None:
    e = compile_expression("event.properties.value >= 50")
    assert isinstance(e, Expression)
    assert e({"event": {"properties": {"value": 60}}}, T0) is True
    assert e({"event": {"properties": {"value": 40}}}, T0) is False
    assert e.truthy({"event": {"properties": {"value": 60}}}, T0) is True
    assert e.truthy({}, T0) is False
