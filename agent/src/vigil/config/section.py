"""What a part of vigil.yml is: the contract between the config core and its sections.

The core owns the file as a whole (YAML, the ``global`` mapping, unknown top-level keys,
line numbers, one sorted list of issues) and knows no protocol. Everything else belongs to
a :class:`ConfigSection`: the trackers' section (``vrrp_scripts``, ``track_files``,
``track_processes``) and one per subsystem (``vrrp_instances`` and ``vrrp_sync_groups`` for
VRRP; later ``virtual_servers`` for IPVS and ``bfd`` for BFD). A section declares the
top-level keys it owns and any keys it adds under ``global``, and it validates, builds,
diffs and cross-checks its part:

- ``validate(inp)``: schema and semantic checks of its keys; every problem goes to
  ``inp.error`` (or ``inp.schema``, which keeps the salvaged rest of a broken item, so one
  error does not hide the next); returns the validated data ``build`` needs.
- ``build(inp, validated)``: the frozen model of the section, only called when the whole
  file passed (so it may assume every reference resolves).
- ``to_dict(model, redact=...)``: the section's keys in file format (validates again).
- ``diff(old, new)``: what a reload changes, as a :class:`SectionDiff`; a subsystem's
  ``apply`` receives it with the new model.
- ``summary(model)``: how much it configures (``2 VRRP instances``) for ``vigild --check``.
- ``check_cluster(models, context)``: issues between the nodes of one HA group
  (``{node: model}``); ``context`` is a :class:`vigil.config.cluster.ClusterContext`
  (what the caller knows besides the configs: the nodes' interface addresses).

Sections are validated in order, and a later one sees what earlier ones validated and built
(``inp.validated`` / ``inp.built``): VRRP instances resolve the trackers they name.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import voluptuous as vol

from .errors import Issue, format_path
from .validators import name, show

__all__ = [
    "ConfigSection",
    "IndexMaps",
    "SchemaRunner",
    "SectionDiff",
    "SectionInput",
    "original_path",
]

# list path inside an item (in salvaged coordinates) -> original index of each element
IndexMaps = dict[tuple[Any, ...], list[int]]

_SALVAGE_ROUNDS = 3


def original_path(path: list[Any], maps: IndexMaps) -> list[Any]:
    """Translate a path into a salvaged item back to the indices the user wrote."""
    current: list[Any] = []
    out: list[Any] = []
    for part in path:
        table = maps.get(tuple(current))
        if isinstance(part, int) and table is not None and 0 <= part < len(table):
            out.append(table[part])
        else:
            out.append(part)
        current.append(part)
    return out


def _issues_from(exc: vol.Invalid, prefix: list[Any]) -> list[Issue]:
    errors = exc.errors if isinstance(exc, vol.MultipleInvalid) else [exc]
    return [Issue(format_path([*prefix, *err.path]), err.msg) for err in errors]


def _prune(data: Any, paths: list[list[Any]], maps: IndexMaps) -> bool:
    """Delete the element at each path from ``data``, once each, higher list indices first.

    For every list shortened, ``maps`` keeps the original index of each remaining element,
    so issues about the salvaged data can name the element the user wrote.
    """
    unique = {tuple(path): list(path) for path in paths}.values()
    for path in sorted(
        unique, key=lambda p: [str(type(x)) + str(x).zfill(12) for x in p], reverse=True
    ):
        if not path:
            return False
        parent = data
        try:
            for part in path[:-1]:
                parent = parent[part]
            if isinstance(parent, list):
                original = maps.setdefault(tuple(path[:-1]), list(range(len(parent))))
                original.pop(path[-1])
            del parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            return False
    return True


def _salvage(
    schema: Callable[[Any], Any], value: Any, errors: list[vol.Invalid]
) -> tuple[Any, IndexMaps]:
    """Cut the parts named by ``errors`` out of a copy of ``value`` until it validates."""
    current = copy.deepcopy(value)
    maps: IndexMaps = {}
    for _ in range(_SALVAGE_ROUNDS):
        paths = []
        for err in errors:
            path = list(err.path)
            if isinstance(err, vol.RequiredFieldInvalid):
                if len(path) < 2:  # the item itself lacks a required key: nothing to check
                    return None, {}
                path = path[:-1]  # drop the incomplete optional block instead
            paths.append(path)
        if not _prune(current, paths, maps):
            return None, {}
        try:
            return schema(current), maps
        except vol.Invalid as exc:
            errors = exc.errors if isinstance(exc, vol.MultipleInvalid) else [exc]
    return None, {}


class SchemaRunner:
    """Runs voluptuous schemas over parts of the file, keeping good items and every error."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []
        # (section key, item) -> list-index maps of a salvaged item, see _salvage
        self.index_maps: dict[tuple[Any, ...], IndexMaps] = {}

    def one(
        self, schema: Callable[[Any], Any], value: Any, path: list[Any], *, salvage: bool = False
    ) -> Any:
        """Validate one part; with ``salvage``, return what validates once the bad bits are cut.

        The salvaged result lets the semantic checks still look at the rest of a broken
        item (its name, its references), so fixing one error does not just reveal the next.
        """
        try:
            return schema(value)
        except vol.Invalid as exc:
            self.issues.extend(_issues_from(exc, path))
            if not salvage:
                return None
            errors = exc.errors if isinstance(exc, vol.MultipleInvalid) else [exc]
        result, maps = _salvage(schema, value, errors)
        if result is not None and maps:
            self.index_maps[tuple(path)] = maps
        return result

    def items(self, schema: Callable[[Any], Any], value: Any, key: str, what: str) -> list[Any]:
        """A list section (``vrrp_instances``): each item alone; None for a failed item."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.issues.append(Issue(key, f"expected a list of {what}, got {show(value)}"))
            return []
        return [self.one(schema, item, [key, i], salvage=True) for i, item in enumerate(value)]

    def named(
        self, schema: Callable[[Any], Any], value: Any, key: str, what: str
    ) -> dict[str, Any]:
        """A mapping section (``vrrp_scripts``): name -> item; None for a failed item."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.issues.append(
                Issue(key, f"expected a mapping of name -> {what}, got {show(value)}")
            )
            return {}
        out: dict[str, Any] = {}
        for item_name, item in value.items():
            if self.one(name, item_name, [key, str(item_name)]) is None:
                continue
            out[item_name] = self.one(schema, item, [key, item_name], salvage=True)
        return out

    def remap(self, path: list[Any]) -> list[Any]:
        """The path with the list indices of the user's file (see ``original_path``)."""
        maps = self.index_maps.get(tuple(path[:2]))
        return [*path[:2], *original_path(path[2:], maps)] if maps else path


@dataclass
class SectionInput:
    """What a section sees while it validates and builds.

    ``data`` is the whole parsed file (its top level is a mapping); ``glob`` the validated
    ``global`` mapping, defaults filled in, including every section's global keys;
    ``validated`` and ``built`` what earlier sections produced, by section name.
    """

    data: Mapping[str, Any]
    glob: dict[str, Any]
    check_files: bool
    schema: SchemaRunner
    validated: dict[str, Any] = field(default_factory=dict)
    built: dict[str, Any] = field(default_factory=dict)
    globals_model: Any = None

    @property
    def issues(self) -> list[Issue]:
        return self.schema.issues

    def error(self, path: list[Any], message: str) -> None:
        """Report a problem at ``path`` (in the salvaged item's coordinates)."""
        self.schema.issues.append(Issue(format_path(self.schema.remap(path)), message))

    def where(self, path: list[Any]) -> str:
        """A remapped path relative to its item, for messages (``peers[1]``)."""
        return format_path(self.schema.remap(path)[2:])


@runtime_checkable
class SectionDiff(Protocol):
    """What one reload changes in one section."""

    @property
    def empty(self) -> bool: ...

    def to_dict(self) -> dict[str, Any]: ...

    def summary(self) -> str: ...


@runtime_checkable
class ConfigSection(Protocol):
    """One part of vigil.yml, owned by a subsystem (or by the trackers)."""

    #: the subsystem (or service) name; the key of its model in ``Config.sections``
    name: str
    #: the top-level keys of vigil.yml it owns, in file order
    keys: tuple[str, ...]
    #: voluptuous fields it adds under ``global`` (``{vol.Optional(k, default=...): v}``)
    global_fields: Mapping[Any, Any]

    def validate(self, inp: SectionInput) -> Any: ...

    def build(self, inp: SectionInput, validated: Any) -> Any: ...

    def to_dict(self, model: Any, *, redact: bool = True) -> dict[str, Any]: ...

    def diff(self, old: Any, new: Any) -> SectionDiff: ...

    def summary(self, model: Any) -> tuple[int, str]: ...

    def check_cluster(self, models: Mapping[str, Any], context: Any = None) -> list[Issue]: ...
