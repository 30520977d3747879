"""Load and validate a config: YAML -> schema -> semantic checks -> model.

Every stage adds to one list of issues so the operator sees all problems at once. Each
section item is validated on its own, so one broken instance does not hide the VRID clash
between two others.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import voluptuous as vol

from .build import build_config
from .errors import ConfigError, Issue, format_path, sort_issues
from .model import Config
from .schema import GLOBAL, INSTANCE, SCRIPT, SYNC_GROUP, TOP_LEVEL_KEYS, TRACK_FILE, TRACK_PROCESS
from .semantic import IndexMaps, Sections, SemanticChecker
from .validators import did_you_mean, name, show
from .yamlload import load_yaml

#: Largest config file read (bytes). A real one is a few KB to a few hundred; a 50 MB file
#: took 45 s and 657 MB to check before this limit existed.
MAX_CONFIG_BYTES = 1 << 20

EMPTY_CONFIG_MESSAGE = (
    "the config runs nothing (no VRRP instances); an empty or truncated file would stop "
    "every instance on reload. If this node is meant to run none, set "
    "global.allow_empty_config: true"
)


def _issues_from(exc: vol.Invalid, prefix: list[Any]) -> list[Issue]:
    errors = exc.errors if isinstance(exc, vol.MultipleInvalid) else [exc]
    return [Issue(format_path([*prefix, *err.path]), err.msg) for err in errors]


class _Validator:
    """Runs the per-section schema, keeping the good items and every error."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []
        # (section, item) -> list-index maps of a salvaged item, see _salvage
        self.index_maps: dict[tuple[Any, ...], IndexMaps] = {}

    def one(
        self, schema: Callable[[Any], Any], value: Any, path: list[Any], *, salvage: bool = False
    ) -> Any:
        """Validate one part; with ``salvage``, return what validates once the bad bits are cut.

        The salvaged result lets the semantic checks still look at the rest of a broken
        instance (its VRID, its name, its references), so fixing one error does not just
        reveal the next.
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
        if value is None:
            return []
        if not isinstance(value, list):
            self.issues.append(Issue(key, f"expected a list of {what}, got {show(value)}"))
            return []
        return [self.one(schema, item, [key, i], salvage=True) for i, item in enumerate(value)]

    def named(
        self, schema: Callable[[Any], Any], value: Any, key: str, what: str
    ) -> dict[str, Any]:
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


_SALVAGE_ROUNDS = 3
EXTENSION_PREFIX = "x-"


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


def _sections(data: Any, issues: list[Issue]) -> Sections | None:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        issues.append(Issue("", f"the config must be a mapping at the top level, got {show(data)}"))
        return None
    for key in data:
        if isinstance(key, str) and key.startswith(EXTENSION_PREFIX):
            continue  # a place for YAML anchors, ignored like docker compose's x- keys
        if key not in TOP_LEVEL_KEYS:
            hint = did_you_mean(str(key), TOP_LEVEL_KEYS) or (
                "; allowed keys: " + ", ".join(TOP_LEVEL_KEYS) + " (and x-* for YAML anchors)"
            )
            issues.append(Issue(format_path([key]), f"unknown key{hint}"))
    check = _Validator()
    glob = check.one(GLOBAL, data.get("global"), ["global"], salvage=True)
    if glob is None:  # reported; check the rest against the defaults
        glob = GLOBAL({})
    raw_instances = data.get("vrrp_instances")
    sections = Sections(
        glob=glob,
        scripts=check.named(SCRIPT, data.get("vrrp_scripts"), "vrrp_scripts", "vrrp_script"),
        track_files=check.named(TRACK_FILE, data.get("track_files"), "track_files", "track_file"),
        track_processes=check.named(
            TRACK_PROCESS, data.get("track_processes"), "track_processes", "track_process"
        ),
        instances=check.items(INSTANCE, raw_instances, "vrrp_instances", "VRRP instances"),
        sync_groups=check.items(
            SYNC_GROUP, data.get("vrrp_sync_groups"), "vrrp_sync_groups", "sync groups"
        ),
        index_maps=check.index_maps,
        raw_instance_names=[
            item.get("name") if isinstance(item, dict) else None
            for item in (raw_instances if isinstance(raw_instances, list) else [])
        ],
    )
    issues.extend(check.issues)
    return sections


def validate_data(
    data: Any,
    *,
    source: str | None = None,
    lines: Mapping[str, int] | None = None,
    check_files: bool = True,
) -> Config:
    """Validate an already-parsed config mapping and build the model.

    ``source`` names the file in issues and on the model; ``lines`` maps dotted paths to
    file lines (from the YAML loader); ``check_files=False`` skips the checks that need
    this host (programs exist and are secure, users exist), as on an Ansible controller.
    Raises ConfigError with every issue found.
    """
    issues: list[Issue] = []
    sections = _sections(data, issues)
    if sections is not None:
        issues.extend(SemanticChecker(sections, check_files=check_files).run())
    if issues or sections is None:
        raise ConfigError(sort_issues(i.located(lines, source) for i in issues))
    return build_config(sections, source)


def load_config(path: str, *, check_files: bool = True) -> Config:
    """Read, validate and model the YAML config at ``path``; ConfigError lists all issues.

    A file is also refused when it runs nothing (see EMPTY_CONFIG_MESSAGE) unless it says
    ``global.allow_empty_config: true``: a truncated file must not pass for an empty one.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            [Issue("", f"cannot read the config: {exc.strerror}", file=path)]
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [Issue("", f"the config is not UTF-8 text: {exc.reason}", file=path)]
        ) from None
    if len(text) > MAX_CONFIG_BYTES or len(text.encode()) > MAX_CONFIG_BYTES:
        raise ConfigError(
            [
                Issue(
                    "",
                    f"the config is larger than {MAX_CONFIG_BYTES // 1024} KiB; a vigil config "
                    "is a few KiB (is this the right file?)",
                    file=path,
                )
            ]
        )
    loaded = load_yaml(text)
    if loaded.issues and loaded.data is None:
        raise ConfigError([i.located(None, path) for i in loaded.issues])
    try:
        config = validate_data(
            loaded.data, source=path, lines=loaded.lines, check_files=check_files
        )
    except ConfigError as exc:
        yaml_issues = [i.located(None, path) for i in loaded.issues]
        raise ConfigError(sort_issues([*yaml_issues, *exc.issues])) from None
    if loaded.issues:
        raise ConfigError(sort_issues(i.located(None, path) for i in loaded.issues))
    if not config.vrrp_instances and not config.globals.allow_empty_config:
        raise ConfigError(
            [Issue("vrrp_instances", EMPTY_CONFIG_MESSAGE).located(loaded.lines, path)]
        )
    return config
