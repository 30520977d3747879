"""Load and validate a config: YAML -> global -> each section -> model.

The core checks the file as a whole (a mapping at the top, no unknown keys, the ``global``
mapping) and hands each section its own keys; every stage adds to one list of issues so
the operator sees all problems at once. Sections are validated in order and each item on
its own, so one broken instance does not hide the VRID clash between two others.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from . import files
from .errors import ConfigError, Issue, format_path, sort_issues
from .model import Config, GlobalConfig
from .schema import global_schema
from .section import ConfigSection, SchemaRunner, SectionInput
from .validators import did_you_mean, show
from .yamlload import load_yaml

__all__ = [
    "EMPTY_CONFIG_MESSAGE",
    "EXTENSION_PREFIX",
    "MAX_CONFIG_BYTES",
    "build_globals",
    "load_config",
    "runs_nothing",
    "validate_data",
]

EXTENSION_PREFIX = "x-"

#: Largest config file read (bytes). A VRRP pair's is a few KB; a director with 1000
#: virtual servers of 10 HTTP-checked real servers each is 2.6 MB. A 50 MB file took 45 s
#: and 657 MB to check before this limit existed.
MAX_CONFIG_BYTES = 8 << 20

EMPTY_CONFIG_MESSAGE = (
    "the config runs nothing ({what}); an empty or truncated file would stop everything "
    "on reload. If this node is meant to run nothing, set global.allow_empty_config: true"
)


def runs_nothing(config: Config, sections: Sequence[ConfigSection]) -> bool:
    """No section that runs something (a subsystem's) configures anything."""
    work = [s for s in sections if getattr(s, "configures_work", True)]
    return all(
        s.summary(config.sections[s.name])[0] == 0 for s in work if s.name in config.sections
    )


def _top_level(data: dict[Any, Any], allowed: Sequence[str], issues: list[Issue]) -> None:
    for key in data:
        if isinstance(key, str) and key.startswith(EXTENSION_PREFIX):
            continue  # a place for YAML anchors, ignored like docker compose's x- keys
        if key not in allowed:
            hint = did_you_mean(str(key), allowed) or (
                "; allowed keys: " + ", ".join(allowed) + " (and x-* for YAML anchors)"
            )
            issues.append(Issue(format_path([key]), f"unknown key{hint}"))


def build_globals(glob: dict[str, Any], sections: Sequence[ConfigSection]) -> GlobalConfig:
    """The GlobalConfig of a validated ``global`` mapping (router_id defaults to the host)."""
    import socket

    extra = {
        str(key): glob[str(key)]
        for section in sections
        for key in section.global_fields
        if str(key) in glob
    }
    return GlobalConfig(
        router_id=glob.get("router_id") or socket.gethostname(),
        log_level=glob["log_level"],
        socket=glob["socket"],
        state_dir=glob["state_dir"],
        script_user=glob["script_user"],
        script_security=glob["script_security"],
        notify_timeout=glob["notify_timeout"],
        allow_empty_config=glob["allow_empty_config"],
        realtime_priority=glob["realtime_priority"],
        extra=extra,
    )


def validate_data(
    data: Any,
    *,
    sections: Sequence[ConfigSection],
    source: str | None = None,
    lines: Mapping[str, int] | None = None,
    check_files: bool = True,
) -> Config:
    """Validate an already-parsed config mapping against ``sections`` and build the model.

    ``source`` names the file in issues and on the model; ``lines`` maps dotted paths to
    file lines (from the YAML loader); ``check_files=False`` skips the checks that need
    this host (programs exist and are secure, users exist), as on an Ansible controller.
    Raises ConfigError with every issue found.
    """
    issues: list[Issue] = []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        issues.append(Issue("", f"the config must be a mapping at the top level, got {show(data)}"))
        raise ConfigError([i.located(lines, source) for i in issues])
    owners: dict[str, str] = {}
    for section in sections:
        for key in section.keys:
            owners[key] = section.name
    _top_level(data, ["global", *owners], issues)
    runner = SchemaRunner()
    schema = global_schema(sections)
    glob = runner.one(schema, data.get("global"), ["global"], salvage=True)
    if glob is None:  # reported; check the rest against the defaults
        glob = schema({})
    inp = SectionInput(data=data, glob=glob, check_files=check_files, schema=runner)
    if check_files:
        problem = files.user_problem(glob.get("script_user", "nobody"))
        if problem:
            inp.error(["global", "script_user"], problem)
    validated: dict[str, Any] = {}
    for section in sections:
        validated[section.name] = section.validate(inp)
        inp.validated[section.name] = validated[section.name]
    issues.extend(runner.issues)
    if issues:
        raise ConfigError(sort_issues(i.located(lines, source) for i in issues))
    inp.globals_model = build_globals(glob, sections)
    built: dict[str, Any] = {}
    for section in sections:
        built[section.name] = section.build(inp, validated[section.name])
        inp.built[section.name] = built[section.name]
    return Config(
        globals=inp.globals_model,
        sections=built,
        source=source,
        owners=owners,
        _handlers={section.name: section for section in sections},
    )


def load_config(
    path: str, *, sections: Sequence[ConfigSection], check_files: bool = True
) -> Config:
    """Read, validate and model the YAML config at ``path``; ConfigError lists all issues.

    A file is also refused when it runs nothing (see EMPTY_CONFIG_MESSAGE) unless it says
    ``global.allow_empty_config: true``: a truncated file must not pass for an empty one.
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            [Issue("", f"cannot read the config: {exc.strerror}", file=path)]
        ) from None
    try:
        # (as a text-mode read would: universal newlines)
        text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [Issue("", f"the config is not UTF-8 text: {exc.reason}", file=path)]
        ) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            [
                Issue(
                    "",
                    f"the config is larger than {MAX_CONFIG_BYTES >> 20} MiB; even 10,000 "
                    "checked real servers take less than 3 MiB (is this the right file?)",
                    file=path,
                )
            ]
        )
    loaded = load_yaml(text)
    if loaded.issues and loaded.data is None:
        raise ConfigError([i.located(None, path) for i in loaded.issues])
    try:
        config = validate_data(
            loaded.data,
            sections=sections,
            source=path,
            lines=loaded.lines,
            check_files=check_files,
        )
    except ConfigError as exc:
        yaml_issues = [i.located(None, path) for i in loaded.issues]
        raise ConfigError(sort_issues([*yaml_issues, *exc.issues])) from None
    if loaded.issues:
        raise ConfigError(sort_issues(i.located(None, path) for i in loaded.issues))
    # what the start plan is keyed by (vigil.faststart): the file's bytes as read
    config = dataclasses.replace(config, digest=hashlib.sha256(raw).hexdigest())
    if not config.globals.allow_empty_config and runs_nothing(config, sections):
        work = [s for s in sections if getattr(s, "configures_work", True)]
        what = ", ".join(f"no {s.summary(config.sections[s.name])[1]}" for s in work) or "-"
        key = work[0].keys[0] if work and work[0].keys else ""
        raise ConfigError(
            [Issue(key, EMPTY_CONFIG_MESSAGE.format(what=what)).located(loaded.lines, path)]
        )
    return config
