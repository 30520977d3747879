"""The one registration point: which subsystems vigild runs, and in what order.

Adding a subsystem is adding its package (see docs/internals.md, "Adding a subsystem")
and one line to :data:`BUILTIN`. Everything else finds it through here: the daemon
(building, starting, stopping, clean-up), the config loader (its section), ``vigilctl``
(its command group and status table) and the Ansible collection (validation).

Besides the built-in ones, ``VIGIL_SUBSYSTEMS`` may name more, comma-separated, as
``package.module:SPEC`` (a :class:`~vigil.subsystem.SubsystemSpec`): for plug-ins, and for
the test that proves a subsystem needs no edit anywhere else.

This module also offers the config functions with every section filled in
(:func:`load_config`, :func:`validate_data`, ...): use these, not ``vigil.config``'s.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from vigil import config as _config
from vigil.config import ClusterContext, ConfigError, Issue
from vigil.subsystem import SubsystemSpec, resolve

__all__ = [
    "BUILTIN",
    "CORE_SECTIONS",
    "PLUGINS_ENV",
    "ClusterContext",
    "ConfigError",
    "Issue",
    "RegistryError",
    "check_cluster",
    "check_command",
    "diff_configs",
    "load_config",
    "prepare",
    "sections",
    "specs",
    "subsystem_sections",
    "validate_data",
]

#: the built-in subsystems, by reference to their spec
BUILTIN: tuple[str, ...] = ("vigil.bfd:SPEC", "vigil.vrrp:SPEC", "vigil.ipvs:SPEC")

#: config sections of the core's own services (the trackers), validated first
CORE_SECTIONS: tuple[str, ...] = ("vigil.track.config:SECTION",)

PLUGINS_ENV = "VIGIL_SUBSYSTEMS"

RESERVED_NAMES = frozenset({"agent", "global", "track", "v1"})


class RegistryError(RuntimeError):
    """The list of subsystems is wrong (a bad plug-in reference, a name clash, a cycle)."""


def _refs() -> list[str]:
    refs = list(BUILTIN)
    extra = os.environ.get(PLUGINS_ENV, "")
    refs.extend(ref.strip() for ref in extra.split(",") if ref.strip())
    return refs


def specs() -> list[SubsystemSpec]:
    """Every subsystem, in start order (each after those named in its ``after``)."""
    found: dict[str, SubsystemSpec] = {}
    for ref in _refs():
        try:
            spec = resolve(ref)
        except (ImportError, ValueError) as exc:
            raise RegistryError(f"subsystem {ref!r} cannot be loaded: {exc}") from exc
        if not isinstance(spec, SubsystemSpec):
            raise RegistryError(f"subsystem {ref!r} is not a SubsystemSpec")
        if spec.name in RESERVED_NAMES:
            raise RegistryError(f"subsystem {ref!r}: the name {spec.name!r} is reserved")
        if spec.name in found:
            if found[spec.name] == spec:
                continue
            raise RegistryError(f"two subsystems are called {spec.name!r}")
        found[spec.name] = spec
    return _ordered(found)


def _ordered(found: Mapping[str, SubsystemSpec]) -> list[SubsystemSpec]:
    ordered: list[SubsystemSpec] = []
    state: dict[str, str] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise RegistryError(f"subsystems start in a cycle: {' -> '.join((*chain, name))}")
        state[name] = "visiting"
        for before in found[name].after:
            if before in found:  # an optional dependency that is not installed is fine
                visit(before, (*chain, name))
        state[name] = "done"
        ordered.append(found[name])

    for name in found:
        visit(name, ())
    return ordered


def subsystem_sections() -> list[Any]:
    """Each subsystem's config section, in start order."""
    return [spec.load_section() for spec in specs()]


def sections() -> list[Any]:
    """Every config section: the core's, then the subsystems'."""
    return [*(resolve(ref) for ref in CORE_SECTIONS), *subsystem_sections()]


# --------------------------------------------------------------------------- config


def load_config(path: str, *, check_files: bool = True) -> _config.Config:
    """Read and validate vigil.yml with every section; ConfigError lists all issues."""
    return _config.load_config(path, sections=sections(), check_files=check_files)


def validate_data(
    data: Any,
    *,
    source: str | None = None,
    lines: Mapping[str, int] | None = None,
    check_files: bool = True,
) -> _config.Config:
    """Validate an already-parsed config mapping with every section."""
    return _config.validate_data(
        data, sections=sections(), source=source, lines=lines, check_files=check_files
    )


def diff_configs(old: _config.Config, new: _config.Config) -> _config.ConfigDiff:
    return _config.diff_configs(old, new, sections())


def check_cluster(
    configs: Mapping[str, _config.Config], context: _config.ClusterContext | None = None
) -> list[_config.Issue]:
    return _config.check_cluster(configs, sections(), context)


def check_command(
    path: str,
    fmt: str = "text",
    out: TextIO | None = None,
    *,
    check_files: bool = True,
    state_dir: str | None = None,
    notes: TextIO | None = None,
) -> int:
    """``vigild --check``. Given the agent's ``state_dir`` (``--state-dir``) and ``notes`` (a
    stream for what is not the verdict), a valid config is also prepared for its start
    there: each subsystem's ``prepare`` hook (see :func:`prepare`)."""

    def accepted(config: _config.Config) -> None:
        if notes is not None and state_dir is not None:
            prepare(config, Path(state_dir), notes)

    return _config.check_command(
        path,
        fmt,
        out,
        sections=sections(),
        counted=subsystem_sections(),
        check_files=check_files,
        accepted=accepted,
    )


def prepare(config: _config.Config, state_dir: Path, notes: TextIO) -> None:
    """Run the subsystems' ``prepare`` hooks for ``config`` in ``state_dir``, made as the
    agent makes it if it is not there yet (a new node: the check comes before the first
    start). A hook's failure is one line on ``notes``, never a change of the verdict; a
    check that may not write there (an unprivileged user) says nothing."""
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
    except PermissionError:
        return
    except OSError as exc:
        notes.write(f"vigild --check: cannot make the state dir {state_dir}: {exc}\n")
        return
    for spec in specs():
        try:
            hook = spec.load_prepare()
            if hook is None or spec.name not in config.sections:
                continue
            note = hook(config.sections[spec.name], config.digest, state_dir)
        except Exception as exc:  # a bug in a hook: the config is still valid
            note = f"preparing the start failed: {exc!r}"
        if note:
            notes.write(f"vigild --check: {spec.name}: {note}\n")


def summary(config: _config.Config) -> str:
    """``2 VRRP instances`` for log lines and events."""
    return _config.summary_text(config, subsystem_sections())


def spec_names(subsystems: Sequence[SubsystemSpec] | None = None) -> list[str]:
    return [spec.name for spec in (subsystems if subsystems is not None else specs())]
