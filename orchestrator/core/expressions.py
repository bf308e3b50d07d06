"""Safe expressions for ``if:``, ``params:`` and ``capture:``.

A definition can never run code. Source text is parsed with :mod:`ast` and every
node is checked against a small allow-list, then compiled into a tree of closures.
Field access (``event.properties.value``) is a dictionary lookup, never
``getattr``, so there is no way to reach ``__class__`` or any other Python object.

Semantics a journey author can rely on:

- A missing field is ``None``, never an exception.
- Arithmetic involving ``None`` or mismatched types gives ``None``, and so does a division
  (``/ // %``) by zero: ``x / 0 >= 0 or true`` is true, like a missing field under ``or true``.
- A comparison that cannot be made (``None >= 50``, ``"a" < 1``) is false.
- Allowed: literals (numbers, strings, ``True/False/None`` and ``true/false/null``),
  lists, ``and or not``, ``== != < <= > >= in not in``, ``+ - * / // %``, unary
  ``-``/``+``, dotted access and ``x["key"]``, and the calls ``days_since(ts)``,
  ``hours_since(ts)``, ``len(x)``, ``lower(s)``.
- Names: ``event``, ``profile``, ``journey``, ``engagement``, ``activity``,
  ``session``, ``now``.
"""

from __future__ import annotations

import ast
import io
import operator
import tokenize
from collections.abc import Callable, Mapping
from typing import Any

from orchestrator.core.timeutil import parse_ts_ms
from orchestrator.errors import ExpressionError

NAMESPACES = frozenset({"event", "profile", "journey", "engagement", "activity", "session", "now"})
_LITERAL_NAMES = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
MAX_SOURCE_CHARS = 2_000
MAX_NODES = 200

Namespaces = Mapping[str, Any]
Fn = Callable[[Namespaces, int], Any]


def _days_since(value: Any, now_ms: int) -> float | None:
    ts = parse_ts_ms(value)
    return None if ts is None else (now_ms - ts) / 86_400_000


def _hours_since(value: Any, now_ms: int) -> float | None:
    ts = parse_ts_ms(value)
    return None if ts is None else (now_ms - ts) / 3_600_000


def _len(value: Any, now_ms: int) -> int | None:
    return len(value) if isinstance(value, (str, list)) or is_mapping(value) else None


def _lower(value: Any, now_ms: int) -> str | None:
    return value.lower() if isinstance(value, str) else None


FUNCTIONS: dict[str, Callable[[Any, int], Any]] = {
    "days_since": _days_since,
    "hours_since": _hours_since,
    "len": _len,
    "lower": _lower,
}

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_CMPOPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_NUMBER = (int, float)


# Whether values of a type are mappings, by type: ``isinstance(x, Mapping)`` runs the ABC's
# ``__instancecheck__`` (a Python-level call) for every value that is not a dict; expressions meet a
# handful of types (JSON values, the namespace views).
_MAPPING_TYPES: dict[type, bool] = {dict: True, str: False, int: False, float: False, bool: False, list: False,
                                    type(None): False}


def is_mapping(value: Any) -> bool:
    """``isinstance(value, Mapping)``, remembered per type."""
    t = type(value)
    known = _MAPPING_TYPES.get(t)
    if known is None:
        known = _MAPPING_TYPES[t] = isinstance(value, Mapping)
    return known


def lookup(container: Any, key: Any) -> Any:
    """``container[key]`` for mappings and lists; ``None`` for anything else."""
    if is_mapping(container):
        try:
            return container.get(key)
        except TypeError:
            return None
    if isinstance(container, list) and isinstance(key, int) and not isinstance(key, bool):
        return container[key] if -len(container) <= key < len(container) else None
    return None


class Expression:
    """A compiled expression. Call it with the namespaces and the clock's now (epoch ms).

    ``fields`` holds every constant path the expression reads from a namespace, as
    ``(namespace, key, ...)`` (``engagement.email.sent_7d`` is ``("engagement", "email",
    "sent_7d")``): a journey's validation checks them against what the namespaces really hold
    (:func:`orchestrator.core.namespaces.field_problem`), once, so evaluation never does.
    """

    __slots__ = ("source", "names", "fields", "_fn")

    def __init__(self, source: str, fn: Fn, names: frozenset[str],
                 fields: tuple[tuple[str | int, ...], ...] = ()) -> None:
        self.source = source
        self.names = names
        self.fields = fields
        self._fn = fn

    def __call__(self, namespaces: Namespaces, now_ms: int) -> Any:
        try:
            return self._fn(namespaces, now_ms)
        except (TypeError, ValueError, ZeroDivisionError, OverflowError, RecursionError):
            return None

    def truthy(self, namespaces: Namespaces, now_ms: int) -> bool:
        return bool(self(namespaces, now_ms))

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


def _strings_side_by_side(text: str) -> bool:
    """Whether two string literals follow each other (``'a' 'b'``), which Python's parser joins."""
    previous = None
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.ENDMARKER):
                continue
            if token.type == tokenize.STRING and previous == tokenize.STRING:
                return True
            previous = token.type
    except (tokenize.TokenError, SyntaxError):
        return False
    return False


def compile_expression(source: object) -> Expression:
    """Parse and check ``source``; raise :class:`ExpressionError` if it is not allowed."""
    if isinstance(source, bool) or source is None or isinstance(source, (int, float)):
        value = source
        return Expression(repr(source), lambda ns, now: value, frozenset())
    if not isinstance(source, str):
        raise ExpressionError(f"expected an expression string, got {type(source).__name__}")
    text = source.strip()
    if not text:
        raise ExpressionError("empty expression", source=source)
    if len(text) > MAX_SOURCE_CHARS:
        raise ExpressionError(f"expression longer than {MAX_SOURCE_CHARS} characters", source=source)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"syntax error: {exc.msg}", source=source) from None
    if _strings_side_by_side(text):
        raise ExpressionError("two strings side by side (Python would join them): join them with + or write "
                              "one string", source=source)
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise ExpressionError(f"expression has more than {MAX_NODES} parts", source=source)
    compiler = _Compiler(source, set())
    fn = compiler.compile(tree.body)
    return Expression(source, fn, frozenset(compiler.names), tuple(compiler.fields))


class _Compiler:
    def __init__(self, source: str, names: set[str]) -> None:
        self.source = source
        self.names = names
        self.fields: list[tuple[str | int, ...]] = []     # constant paths read from a namespace

    def fail(self, message: str) -> ExpressionError:
        return ExpressionError(message, source=self.source)

    def compile(self, node: ast.AST) -> Fn:  # noqa: C901 - one dispatch, kept flat on purpose
        if isinstance(node, ast.Constant):
            value = node.value
            if value is not None and not isinstance(value, (bool, int, float, str)):
                raise self.fail(f"literal of type {type(value).__name__} is not allowed")
            return lambda ns, now: value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [self.compile(e) for e in node.elts]
            return lambda ns, now: [f(ns, now) for f in items]
        if isinstance(node, ast.Name):
            return self._name(node.id)
        if isinstance(node, ast.Attribute):
            return self._access(node.value, node.attr, node.attr)
        if isinstance(node, ast.Subscript):
            key = node.slice
            if not (isinstance(key, ast.Constant) and isinstance(key.value, (str, int))
                    and not isinstance(key.value, bool)):
                raise self.fail("only a constant string or integer may be used inside [...]")
            return self._access(node.value, key.value, str(key.value))
        if isinstance(node, ast.BoolOp):
            parts = [self.compile(v) for v in node.values]
            if isinstance(node.op, ast.And):
                def _and(ns: Namespaces, now: int) -> Any:
                    result: Any = True
                    for part in parts:
                        result = part(ns, now)
                        if not result:
                            return result
                    return result
                return _and

            def _or(ns: Namespaces, now: int) -> Any:
                result: Any = False
                for part in parts:
                    result = part(ns, now)
                    if result:
                        return result
                return result
            return _or
        if isinstance(node, ast.UnaryOp):
            operand = self.compile(node.operand)
            if isinstance(node.op, ast.Not):
                return lambda ns, now: not operand(ns, now)
            if isinstance(node.op, (ast.USub, ast.UAdd)):
                sign = -1 if isinstance(node.op, ast.USub) else 1

                def _sign(ns: Namespaces, now: int) -> Any:
                    v = operand(ns, now)
                    return sign * v if isinstance(v, _NUMBER) and not isinstance(v, bool) else None
                return _sign
            raise self.fail(f"operator {type(node.op).__name__} is not allowed")
        if isinstance(node, ast.BinOp):
            found = _BINOPS.get(type(node.op))
            if found is None:
                raise self.fail(f"operator {type(node.op).__name__} is not allowed")
            op = found
            left, right = self.compile(node.left), self.compile(node.right)
            numeric_only = isinstance(node.op, (ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Sub))

            def _binop(ns: Namespaces, now: int) -> Any:
                a, b = left(ns, now), right(ns, now)
                if a is None or b is None or isinstance(a, bool) or isinstance(b, bool):
                    return None  # no true + 1: a boolean is not a number here
                if numeric_only and not (isinstance(a, _NUMBER) and isinstance(b, _NUMBER)):
                    return None  # no "x" * 10**9, no str % formatting
                try:
                    return op(a, b)
                except (ZeroDivisionError, OverflowError, TypeError):
                    return None  # this operation only, not the whole expression
            return _binop
        if isinstance(node, ast.Compare):
            first = self.compile(node.left)
            ops = []
            for op_node, comparator in zip(node.ops, node.comparators):
                cmp = _CMPOPS.get(type(op_node))
                if cmp is None:
                    raise self.fail(f"comparison {type(op_node).__name__} is not allowed (use == or !=)")
                ops.append((cmp, self.compile(comparator)))

            def _compare(ns: Namespaces, now: int) -> bool:
                a = first(ns, now)
                for cmp, comparator in ops:
                    b = comparator(ns, now)
                    try:
                        if not cmp(a, b):
                            return False
                    except TypeError:
                        return False
                    a = b
                return True
            return _compare
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                allowed = ", ".join(sorted(FUNCTIONS))
                raise self.fail(f"only these functions may be called: {allowed}")
            if node.keywords or len(node.args) != 1 or isinstance(node.args[0], ast.Starred):
                raise self.fail(f"{node.func.id}() takes exactly one argument")
            func = FUNCTIONS[node.func.id]
            arg = self.compile(node.args[0])
            return lambda ns, now: func(arg(ns, now), now)
        raise self.fail(f"{type(node).__name__} is not allowed")

    def _name(self, name: str) -> Fn:
        if name in _LITERAL_NAMES:
            value = _LITERAL_NAMES[name]
            return lambda ns, now: value
        if name not in NAMESPACES:
            allowed = ", ".join(sorted(NAMESPACES))
            raise self.fail(f"unknown name {name!r} (names available: {allowed})")
        self.names.add(name)
        return lambda ns, now: ns.get(name)

    def _access(self, base: ast.AST, key: str | int, label: str) -> Fn:
        if label.startswith("_"):
            raise self.fail(f"field names may not start with an underscore: {label!r}")
        if not isinstance(base, (ast.Name, ast.Attribute, ast.Subscript, ast.Call)):
            raise self.fail("fields can only be read from event, profile, journey, engagement, "
                            "activity, session or a function result")
        if isinstance(base, ast.Name) and base.id in _LITERAL_NAMES:
            raise self.fail(f"{base.id} has no fields")
        # A chain of constant fields (``event.properties.value``) is walked in one function:
        # one call per expression instead of one per level.
        path: list[Any] = []
        node: ast.AST = base
        while True:
            if isinstance(node, ast.Attribute) and not node.attr.startswith("_"):
                path.append(node.attr)
            elif (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
                  and isinstance(node.slice.value, (str, int)) and not isinstance(node.slice.value, bool)):
                path.append(node.slice.value)
            else:
                break
            node = node.value
        if isinstance(node, ast.Name) and node.id in NAMESPACES:
            self._name(node.id)                     # checks and records the name
            keys = (*reversed(path), key)
            for k in keys[:-1]:
                if isinstance(k, str) and k.startswith("_"):
                    raise self.fail(f"field names may not start with an underscore: {k!r}")
            name = node.id
            self.fields.append((name, *keys))

            def _walk(ns: Namespaces, now: int) -> Any:
                v = ns.get(name)
                for k in keys:
                    if type(v) is dict:
                        v = v.get(k)
                    else:
                        v = lookup(v, k)
                    if v is None:
                        return None
                return v
            return _walk
        parent = self.compile(base)
        return lambda ns, now: lookup(parent(ns, now), key)
