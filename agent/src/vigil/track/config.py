"""The trackers' section of vigil.yml: ``vrrp_scripts``, ``track_files``, ``track_processes``.

These define named things that can fail (a check script, a file holding a weight, a set of
processes). Defining one runs nothing: it runs while something tracks it (a VRRP
instance's ``track``; later other subsystems through the tracker registry). The keys keep
keepalived's names, which is why scripts are ``vrrp_scripts``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import voluptuous as vol

from vigil.config import files
from vigil.config.errors import Issue
from vigil.config.section import SectionInput
from vigil.config.validators import (
    Struct,
    boolean,
    choice,
    integer,
    nullable,
    required,
    seconds,
    string,
)

__all__ = [
    "SECTION",
    "TrackFileConfig",
    "TrackProcessConfig",
    "TrackersConfig",
    "TrackersDiff",
    "TrackersSection",
    "VrrpScriptConfig",
    "program_problem",
]


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if value is not None}


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class VrrpScriptConfig:
    """A periodic check script (keepalived ``vrrp_script``)."""

    name: str
    script: str
    argv: tuple[str, ...]
    interval: float = 1.0
    timeout: float = 1.0
    rise: int = 1
    fall: int = 1
    weight: int = 0
    weight_reverse: bool = False
    init_fail: bool = False
    user: str = "nobody"

    def to_dict(self) -> dict[str, Any]:
        return {
            "script": self.script,
            "interval": self.interval,
            "timeout": self.timeout,
            "rise": self.rise,
            "fall": self.fall,
            "weight": self.weight,
            "weight_reverse": self.weight_reverse,
            "init_fail": self.init_fail,
            "user": self.user,
        }


@dataclass(frozen=True)
class TrackFileConfig:
    """A file holding an integer that moves the priority (keepalived ``track_file``)."""

    name: str
    file: str
    weight: int = 1
    weight_reverse: bool = False
    init_file: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "weight": self.weight,
            "weight_reverse": self.weight_reverse,
            "init_file": False if self.init_file is None else self.init_file,
        }


@dataclass(frozen=True)
class TrackProcessConfig:
    """A process whose presence is tracked (keepalived ``vrrp_track_process``)."""

    name: str
    process: str
    param_match: str = "exact"
    parameters: str | None = None
    quorum: int = 1
    quorum_max: int | None = None
    weight: int = 0
    weight_reverse: bool = False
    delay: float = 0.0
    terminate_delay: float = 0.0
    full_command: bool = False

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(
            {
                "process": self.process,
                "param_match": self.param_match,
                "parameters": self.parameters,
                "quorum": self.quorum,
                "quorum_max": self.quorum_max,
                "weight": self.weight,
                "weight_reverse": self.weight_reverse,
                "delay": self.delay,
                "terminate_delay": self.terminate_delay,
                "full_command": self.full_command,
            }
        )


@dataclass(frozen=True)
class TrackersConfig:
    """The section's model; attribute names are the file's keys."""

    vrrp_scripts: Mapping[str, VrrpScriptConfig]
    track_files: Mapping[str, TrackFileConfig]
    track_processes: Mapping[str, TrackProcessConfig]
    #: global.script_security, which the script trackers obey
    script_security: bool = True

    def spec(self, kind: str, name: str) -> Any:
        """The definition of tracker ``kind:name`` (kind script, file or process), or None."""
        table: Mapping[str, Any] = {
            "script": self.vrrp_scripts,
            "file": self.track_files,
            "process": self.track_processes,
        }.get(kind, {})
        return table.get(name)


@dataclass(frozen=True)
class TrackersDiff:
    """Tracker definitions whose config changed (``vrrp_scripts.chk``), in name order."""

    changed: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.changed

    def to_dict(self) -> dict[str, Any]:
        return {"changed": list(self.changed)}

    def summary(self) -> str:
        return f"trackers changed: {', '.join(self.changed)}" if self.changed else ""


# --------------------------------------------------------------------------- schema

SCRIPT = Struct(
    {
        required("script"): string(what="a command"),
        vol.Optional("interval", default=1): seconds(0.01, 86400),
        vol.Optional("timeout"): seconds(0.01, 86400),
        vol.Optional("rise", default=1): integer(1, 1000),
        vol.Optional("fall", default=1): integer(1, 1000),
        vol.Optional("weight", default=0): integer(-253, 253),
        vol.Optional("weight_reverse", default=False): boolean,
        vol.Optional("init_fail", default=False): boolean,
        vol.Optional("user"): string(what="user or user:group"),
    },
    what="a vrrp_script mapping with at least 'script'",
)


def _init_file(value: Any) -> int | None:
    if value is False or value is None:
        return None
    if value is True:
        return 0
    return integer(-(2**31), 2**31 - 1)(value)


TRACK_FILE = Struct(
    {
        required("file"): string(what="a file path"),
        vol.Optional("weight", default=1): integer(-254, 254),
        vol.Optional("weight_reverse", default=False): boolean,
        vol.Optional("init_file", default=False): _init_file,
    },
    what="a track_files mapping with at least 'file'",
)

TRACK_PROCESS = Struct(
    {
        required("process"): string(what="a process name"),
        vol.Optional("param_match", default="exact"): choice("initial", "partial", "exact"),
        vol.Optional("parameters", default=None): nullable(string(what="parameters")),
        vol.Optional("quorum", default=1): integer(1, 65535),
        vol.Optional("quorum_max", default=None): nullable(integer(1, 65535)),
        vol.Optional("weight", default=0): integer(-254, 254),
        vol.Optional("weight_reverse", default=False): boolean,
        vol.Optional("delay", default=0): seconds(0, 3600),
        vol.Optional("terminate_delay", default=0): seconds(0, 3600),
        vol.Optional("full_command", default=False): boolean,
    },
    what="a track_processes mapping with at least 'process'",
)


def program_problem(command: str, secure: bool) -> str | None:
    """Why ``command`` cannot be run by the agent on this host, or None.

    Shared by every part that runs programs (check scripts, notify commands, MISC checks):
    the program must exist and, with ``secure``, it and its directories must be
    root-controlled, and so must an interpreter's script (``/bin/sh /opt/check.sh``).
    """
    try:
        words = files.split_command(command)
    except ValueError as exc:
        return f"cannot split the command: {exc}; check its quotes"
    if not words:
        return None
    program, reason = files.resolve_program(words[0])
    if program is None:
        return reason or "program not found"
    if not secure:
        return None
    checked = [program, *(w for w in words[1:] if w.startswith("/") and os.path.isfile(w))]
    for target in checked:
        why = files.insecure_reason(target)
        if why:
            return (
                f"refusing {target!r}: {why}; make it and its directories root-owned and "
                "not group/world-writable (or set global.script_security: false)"
            )
    return None


# --------------------------------------------------------------------------- section


@dataclass
class _Validated:
    scripts: dict[str, dict[str, Any] | None]
    track_files: dict[str, dict[str, Any] | None]
    track_processes: dict[str, dict[str, Any] | None]


class TrackersSection:
    """The trackers' part of vigil.yml (see the module docstring)."""

    name = "track"
    keys = ("vrrp_scripts", "track_files", "track_processes")
    #: trackers alone run nothing: a config of only trackers still "runs nothing"
    configures_work = False
    global_fields: Mapping[Any, Any] = {}

    def validate(self, inp: SectionInput) -> _Validated:
        schema = inp.schema
        out = _Validated(
            scripts=schema.named(
                SCRIPT, inp.data.get("vrrp_scripts"), "vrrp_scripts", "vrrp_script"
            ),
            track_files=schema.named(
                TRACK_FILE, inp.data.get("track_files"), "track_files", "track_file"
            ),
            track_processes=schema.named(
                TRACK_PROCESS, inp.data.get("track_processes"), "track_processes", "track_process"
            ),
        )
        self._semantic(inp, out)
        if inp.check_files:
            self._host(inp, out)
        return out

    @staticmethod
    def _semantic(inp: SectionInput, v: _Validated) -> None:
        for proc_name, proc in v.track_processes.items():
            if proc is None:
                continue
            base = ["track_processes", proc_name]
            if proc["quorum_max"] is not None and proc["quorum_max"] < proc["quorum"]:
                inp.error([*base, "quorum_max"], f"must be at least quorum ({proc['quorum']})")
            if not proc["full_command"] and len(proc["process"].encode()) > 15:
                inp.error(
                    [*base, "process"],
                    f"{proc['process']!r} is longer than the 15 characters the kernel keeps "
                    "as a process name; use full_command: true or the first 15 characters",
                )
            if proc["parameters"] is not None and proc["full_command"]:
                inp.error(
                    [*base, "parameters"],
                    "parameters cannot be combined with full_command: true; put the whole "
                    "command line in process",
                )
        for file_name, tfile in v.track_files.items():
            if tfile is not None and not tfile["file"].startswith("/"):
                inp.error(
                    ["track_files", file_name, "file"],
                    f"{tfile['file']!r} must be an absolute path (e.g. /run/vigil/{file_name})",
                )
        for script_name, script in v.scripts.items():
            if script is None:
                continue
            try:
                words = files.split_command(script["script"])
            except ValueError as exc:
                inp.error(
                    ["vrrp_scripts", script_name, "script"],
                    f"cannot split the command: {exc}; check its quotes",
                )
                continue
            if not words:
                inp.error(["vrrp_scripts", script_name, "script"], "the command is empty")

    @staticmethod
    def _host(inp: SectionInput, v: _Validated) -> None:
        secure = bool(inp.glob.get("script_security", True))
        for script_name, script in v.scripts.items():
            if script is None:
                continue
            try:
                files.split_command(script["script"])
            except ValueError:
                continue  # reported by the semantic check
            problem = program_problem(script["script"], secure)
            if problem:
                inp.error(["vrrp_scripts", script_name, "script"], problem)
            if script.get("user"):
                problem = files.user_problem(script["user"])
                if problem:
                    inp.error(["vrrp_scripts", script_name, "user"], problem)

    def build(self, inp: SectionInput, validated: _Validated) -> TrackersConfig:
        glob = inp.glob
        scripts = {}
        for script_name, s in validated.scripts.items():
            assert s is not None
            scripts[script_name] = VrrpScriptConfig(
                name=script_name,
                script=s["script"],
                argv=tuple(files.split_command(s["script"])),
                interval=s["interval"],
                timeout=s["interval"] if s.get("timeout") is None else s["timeout"],
                rise=s["rise"],
                fall=s["fall"],
                weight=s["weight"],
                weight_reverse=s["weight_reverse"],
                init_fail=s["init_fail"],
                user=s.get("user") or glob["script_user"],
            )
        track_files = {}
        for file_name, f in validated.track_files.items():
            assert f is not None
            track_files[file_name] = TrackFileConfig(
                name=file_name,
                file=f["file"],
                weight=f["weight"],
                weight_reverse=f["weight_reverse"],
                init_file=f["init_file"],
            )
        processes = {}
        for proc_name, p in validated.track_processes.items():
            assert p is not None
            processes[proc_name] = TrackProcessConfig(name=proc_name, **p)
        return TrackersConfig(
            vrrp_scripts=scripts,
            track_files=track_files,
            track_processes=processes,
            script_security=bool(glob["script_security"]),
        )

    def to_dict(self, model: TrackersConfig, *, redact: bool = True) -> dict[str, Any]:
        return {
            "vrrp_scripts": {name: s.to_dict() for name, s in model.vrrp_scripts.items()},
            "track_files": {name: f.to_dict() for name, f in model.track_files.items()},
            "track_processes": {name: p.to_dict() for name, p in model.track_processes.items()},
        }

    def diff(self, old: TrackersConfig, new: TrackersConfig) -> TrackersDiff:
        changed: list[str] = []
        for key in self.keys:
            before, after = getattr(old, key), getattr(new, key)
            for item in sorted(set(before) | set(after)):
                if before.get(item) != after.get(item):
                    changed.append(f"{key}.{item}")
        return TrackersDiff(tuple(changed))

    def summary(self, model: TrackersConfig) -> tuple[int, str]:
        count = len(model.vrrp_scripts) + len(model.track_files) + len(model.track_processes)
        return count, "tracker" if count == 1 else "trackers"

    def check_cluster(
        self, models: Mapping[str, TrackersConfig], context: Any = None
    ) -> list[Issue]:
        return []


SECTION = TrackersSection()
