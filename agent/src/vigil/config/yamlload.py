"""YAML reading that remembers where every key and list item came from.

PyYAML's safe loader throws line numbers away once it has built Python objects. We keep
the composed node tree, build the data with the safe constructor, and then walk both
together to record the line of every mapping key and sequence item under its dotted path
(``vrrp_instances[1].vrid``). Duplicate keys, which YAML would silently let the last one
win, are reported as issues instead.

Hostile or broken input gets a clear issue, never a traceback: nesting deeper than
MAX_DEPTH levels is refused while the document is composed (PyYAML composes recursively,
and 600 levels would hit Python's recursion limit), and so is a document whose aliases
add more than MAX_ALIAS_NODES values (a "billion laughs" would make every later stage walk
the expansion), or that has more than MAX_NODES values in all.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import Issue

#: Deepest nesting of mappings and lists a config may have (a real one needs about 6).
MAX_DEPTH = 50
#: Most values a config may have once aliases are expanded. A director with 1000 virtual
#: servers of 10 HTTP-checked real servers each has about 250,000; the file size limit
#: (8 MiB) keeps a plainly written one well below this.
MAX_NODES = 2_000_000
#: Most values YAML aliases may add to a config ("billion laughs": a few lines expanding
#: to millions of values that every later stage would walk). Anchoring one check block
#: for each of 10,000 real servers adds about 120,000.
MAX_ALIAS_NODES = 500_000


class _TooComplex(Exception):
    """The document is nested too deeply or expands to too many nodes."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class _Duplicates:
    """Notes duplicate keys per mapping node instead of letting the last one win, and
    builds strings that do not pin the node tree's memory (see construct_scalar)."""

    duplicates: dict[int, list[tuple[Any, int, int]]]

    def construct_scalar(self, node: yaml.ScalarNode | yaml.MappingNode) -> str:
        """The scalar's text as a fresh, interned string. The composer's own string was
        allocated among the nodes, marks and tokens of the whole document; kept alive in
        the data it would keep their memory from going back to the system once the tree
        is freed (for a 1000-real-server config, 5 MB of resident memory for good).
        Interning also makes the many repeated keys one object each."""
        value: str = super().construct_scalar(node)  # type: ignore[misc]
        fresh = value.encode("utf-8", "surrogatepass").decode("utf-8", "surrogatepass")
        return sys.intern(fresh)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if (
                not isinstance(key_node, yaml.ScalarNode)
                or key_node.tag == "tag:yaml.org,2002:merge"
            ):
                continue
            key = self.construct_object(key_node)  # type: ignore[attr-defined]
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    self.duplicates.setdefault(id(node), []).append((key, line, seen[key]))
                else:
                    seen[key] = line
            except TypeError:  # unhashable key: the schema reports it
                continue
        return super().construct_mapping(node, deep=deep)  # type: ignore[misc]


class _LineLoader(_Duplicates, yaml.SafeLoader):
    """Safe loader that notes duplicate keys per mapping node instead of overwriting,
    and refuses nesting deeper than MAX_DEPTH before Python's recursion limit is near."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        # id(mapping node) -> [(key, line of the repeat, line of the first)]
        self.duplicates = {}
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _TooComplex(
                    f"the config is nested more than {MAX_DEPTH} levels deep; "
                    "a vigil config needs fewer than 10",
                    mark.line + 1,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_CSafeLoader: Any = getattr(yaml, "CSafeLoader", None)

if _CSafeLoader is not None:

    class _CLineLoader(_Duplicates, _CSafeLoader):
        """The same with libyaml composing the nodes (several times faster, and about a
        third less memory for a large config); the nesting is checked afterwards."""

        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self.duplicates = {}


@dataclass
class _Shape:
    too_deep: bool
    nodes: int  # distinct nodes
    aliased: bool  # some node is reached twice (an alias)


def _shape(root: yaml.Node) -> _Shape:
    """Depth, size and aliases of the composed tree, in one iterative pass."""
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    seen: set[int] = set()
    aliased = False
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return _Shape(True, len(seen), aliased)
        if id(node) in seen:
            aliased = True
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack += [(key, depth + 1), (value, depth + 1)]
        elif isinstance(node, yaml.SequenceNode):
            stack += [(item, depth + 1) for item in node.value]
    return _Shape(False, len(seen), aliased)


def _too_big(root: yaml.Node, shape: _Shape) -> str | None:
    """Why the document is too big once its aliases are expanded, or None."""
    expanded = _expanded_size(root) if shape.aliased else shape.nodes
    if expanded - shape.nodes > MAX_ALIAS_NODES:
        return (
            f"the config's YAML aliases add more than {MAX_ALIAS_NODES} values "
            "(aliases repeating aliases?); write it out plainly"
        )
    if expanded > MAX_NODES:
        return f"the config has more than {MAX_NODES} values; split it or write less"
    return None


@dataclass
class LoadedYaml:
    """The parsed document, the line of each dotted path, and problems found while reading."""

    data: Any
    lines: dict[str, int] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)


def _scalar_key(loader: Any, key_node: yaml.Node) -> Any:
    """The key as the constructor built it, so paths match the data (``1`` stays an int)."""
    if not isinstance(key_node, yaml.ScalarNode):
        return "<complex key>"
    if key_node.tag == "tag:yaml.org,2002:str":
        return key_node.value  # what the constructor made of it, without building it again
    value = loader.construct_object(key_node)
    return value if isinstance(value, str | int) and not isinstance(value, bool) else str(value)


def _walk(
    loader: Any,
    node: yaml.Node,
    path: str,
    out: LoadedYaml,
    seen: set[int],
) -> None:
    """Record the line of every key and item under its dotted path (``path`` is the
    node's own, as :func:`format_path` writes it; built one step at a time here)."""
    if id(node) in seen:  # aliases point back at nodes already walked
        return
    seen.add(id(node))
    lines = out.lines
    if isinstance(node, yaml.MappingNode):
        for key, line, first in loader.duplicates.get(id(node), []):
            out.issues.append(
                Issue(
                    _child(path, key),
                    f"duplicate key (first given on line {first}); keep only one",
                    line,
                )
            )
        for key_node, value_node in node.value:
            child = _child(path, _scalar_key(loader, key_node))
            # After a merge (<<) the explicit keys come last and win, so the last line wins.
            lines[child] = key_node.start_mark.line + 1
            if isinstance(value_node, yaml.CollectionNode):
                _walk(loader, value_node, child, out, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = f"{path}[{index}]"
            lines.setdefault(child, item.start_mark.line + 1)
            if isinstance(item, yaml.CollectionNode):
                _walk(loader, item, child, out, seen)


def _child(path: str, key: Any) -> str:
    """``format_path`` of the path plus one key."""
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _expanded_size(root: yaml.Node) -> int:
    """Nodes in the document with every alias expanded; stops counting past MAX_NODES."""
    sizes: dict[int, int] = {}
    # Iterative post-order walk: the depth is capped already, but aliases form a DAG that
    # a naive count would walk once per path.
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    for _ in range(4 * MAX_NODES):
        if not stack:
            break
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                children += [key, value]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        if done or not children:
            sizes[id(node)] = min(MAX_NODES + 1, 1 + sum(sizes.get(id(c), 1) for c in children))
            continue
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    else:
        return MAX_NODES + 1
    return sizes.get(id(root), MAX_NODES + 1)


def load_yaml(text: str) -> LoadedYaml:
    """Parse one YAML document; syntax errors come back as an issue with their line.

    libyaml (PyYAML's C loader) reads it when it is there; anything unusual (a syntax
    error, too deep a nesting) is read again by the pure-Python loader, so the issues
    and their wording are the same either way.
    """
    if _CSafeLoader is not None:
        fast = _load_fast(text)
        if fast is not None:
            return fast
    return _load(_LineLoader(text))


def _load_fast(text: str) -> LoadedYaml | None:
    """The C loader's result, or None to let the pure-Python loader say what is wrong."""
    loader = _CLineLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return LoadedYaml(data=None)
        shape = _shape(node)
        if shape.too_deep:
            return None  # the pure-Python composer names the line
        too_big = _too_big(node, shape)
        if too_big is not None:
            # The same issue the pure-Python loader gives, without its minutes of parsing.
            return LoadedYaml(data=None, issues=[Issue("", too_big, None)])
        data = loader.construct_document(node)
        out = LoadedYaml(data=data)
        _walk(loader, node, "", out, set())
        return out
    except (yaml.YAMLError, RecursionError):
        return None
    finally:
        loader.dispose()


def _load(loader: _LineLoader) -> LoadedYaml:
    try:
        node = loader.get_single_node()
        if node is None:
            return LoadedYaml(data=None)
        too_big = _too_big(node, _shape(node))
        if too_big is not None:
            raise _TooComplex(too_big, None)
        data = loader.construct_document(node)
        out = LoadedYaml(data=data)
        _walk(loader, node, "", out, set())
        return out
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or "invalid YAML"
        context = f" {exc.context}" if exc.context else ""
        started = exc.context_mark
        if started is not None and mark is not None and started.line != mark.line:
            context += f" started on line {started.line + 1}"
        if problem.startswith("found character '\\t'"):
            problem += " (indent YAML with spaces, not tabs)"
        message = f"YAML syntax error: {problem}{context}"
        return LoadedYaml(data=None, issues=[Issue("", message, line)])
    except yaml.YAMLError as exc:
        return LoadedYaml(data=None, issues=[Issue("", f"YAML error: {exc}")])
    except _TooComplex as exc:
        return LoadedYaml(data=None, issues=[Issue("", exc.message, exc.line)])
    except RecursionError:  # a backstop: MAX_DEPTH keeps the composer far from the limit
        return LoadedYaml(data=None, issues=[Issue("", "the config is nested too deeply to read")])
    finally:
        loader.dispose()
