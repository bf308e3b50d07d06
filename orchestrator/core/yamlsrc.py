"""YAML documents that remember where each value came from (``file:line``).

Plain YAML 1.1 (PyYAML's default) reads ``on:`` as the boolean ``True`` and
``21:00`` as the number 1260. Journey files use both, so this loader only
accepts ``true``/``false`` as booleans and never reads base-60 numbers.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from orchestrator.errors import DefinitionError

Path = tuple[Any, ...]


class _Loader(yaml.SafeLoader):
    pass


# Drop YAML 1.1's yes/no/on/off booleans and sexagesimal ints; keep the rest.
_Loader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int")]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"))


class Located:
    """A loaded document plus the line of every value in it."""

    def __init__(self, data: Any, lines: dict[Path, int], filename: str) -> None:
        self.data = data
        self.lines = lines
        self.filename = filename

    def line(self, path: Path) -> int:
        """Line of ``path``, or of its nearest ancestor that has one."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), 1)

    def where(self, path: Path) -> str:
        return f"{self.filename}:{self.line(path)}"


def load(text: str, filename: str, *, see: str = "") -> Located:
    """Parse one YAML document; raise :class:`DefinitionError` with ``file:line`` on bad YAML,
    each problem followed by ``see`` (where to read about the file's form)."""
    try:
        return _load(text, filename)
    except DefinitionError as exc:
        raise DefinitionError([p + see for p in exc.problems]) from None


def _load(text: str, filename: str) -> Located:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise DefinitionError([f"{filename}:{line}: invalid YAML: {exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise DefinitionError([f"{filename}:1: invalid YAML: {exc}"]) from None
    finally:
        loader.dispose()
    lines: dict[Path, int] = {}
    if node is None:
        return Located(None, lines, filename)
    try:
        data = _convert(loader, node, (), lines, filename)
    except yaml.YAMLError as exc:
        raise DefinitionError([f"{filename}:1: invalid YAML: {exc}"]) from None
    return Located(data, lines, filename)


def compose(text: str, filename: str) -> yaml.Node | None:
    """The node tree of one document, with the position of every value in the text (for edits
    that keep the rest of a file as it is, like ``journeys winner``)."""
    loader = _Loader(text)
    try:
        return loader.get_single_node()
    except yaml.YAMLError as exc:
        raise DefinitionError([f"{filename}:1: invalid YAML: {exc}"]) from None
    finally:
        loader.dispose()


MAX_VALUES = 50_000   # far above any real definition; stops alias bombs (&a [*b, *b, ...]) expanding exponentially


def _convert(loader: _Loader, node: yaml.Node, path: Path, lines: dict[Path, int], filename: str) -> Any:
    lines[path] = node.start_mark.line + 1
    if len(lines) > MAX_VALUES:
        raise DefinitionError([f"{filename}:{node.start_mark.line + 1}: document has more than {MAX_VALUES} values "
                               "(YAML aliases are expanded)"])
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise DefinitionError([f"{filename}:{key_node.start_mark.line + 1}: YAML merge keys (<<) are not supported"])
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise DefinitionError([f"{filename}:{key_node.start_mark.line + 1}: mapping keys must be plain text"])
            if key in out:
                raise DefinitionError([f"{filename}:{key_node.start_mark.line + 1}: duplicate key {key!r}"])
            out[key] = _convert(loader, value_node, path + (key,), lines, filename)
            lines[path + (key,)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(loader, item, path + (i,), lines, filename) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
