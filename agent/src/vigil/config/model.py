"""The validated config: agent-wide settings plus one model per section.

Everything downstream reads these frozen objects, never the raw YAML. ``Config.sections``
holds each section's model by section name (``config.section("vrrp")``); each top-level
key of the file is also an attribute (``config.vrrp_instances``), answered by the section
that owns it, so code reads like the file it came from. ``to_dict()`` turns the whole back
into the file format (JSON-able), so the result validates again and the API can show it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["REDACTED", "Config", "GlobalConfig"]

REDACTED = "<redacted>"


@dataclass(frozen=True)
class GlobalConfig:
    """Agent-wide settings; ``extra`` holds the keys sections add under ``global``."""

    router_id: str
    log_level: str = "info"
    socket: str = "/run/vigil/vigil.sock"
    state_dir: str = "/var/lib/vigil"
    script_user: str = "nobody"
    script_security: bool = True
    notify_timeout: float = 10.0
    #: a config that runs nothing (no subsystem configures anything) is an error unless set
    allow_empty_config: bool = False
    #: 1-99: vigild's event loop runs with SCHED_RR at this priority; 0: the normal policy
    realtime_priority: int = 0
    #: section-owned global keys, validated (JSON-able), in schema order
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "router_id": self.router_id,
            "log_level": self.log_level,
            "socket": self.socket,
            "state_dir": self.state_dir,
            "script_user": self.script_user,
            "script_security": self.script_security,
            "notify_timeout": self.notify_timeout,
            "allow_empty_config": self.allow_empty_config,
            "realtime_priority": self.realtime_priority,
            **{key: _plain(value) for key, value in self.extra.items()},
        }


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class Config:
    """A whole validated config file."""

    globals: GlobalConfig
    #: section name -> that section's model, in validation order
    sections: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False)
    #: sha256 (hex) of the file's bytes, when the config was read from a file
    digest: str | None = field(default=None, compare=False)
    #: top-level key -> the name of the section that owns it
    owners: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    #: section name -> the section object (for to_dict); not part of equality
    _handlers: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def section(self, name: str) -> Any:
        """The model of section ``name``; KeyError names the sections this config has."""
        try:
            return self.sections[name]
        except KeyError:
            known = ", ".join(self.sections) or "none"
            raise KeyError(f"no config section {name!r}; this config has: {known}") from None

    def __getattr__(self, key: str) -> Any:
        # Only called for attributes the dataclass does not have: a file key
        # (config.vrrp_instances) is read from the section that owns it.
        if key.startswith("_"):
            raise AttributeError(key)
        owners = self.__dict__.get("owners") or {}
        owner = owners.get(key)
        if owner is None:
            raise AttributeError(f"{type(self).__name__} has no attribute or config key {key!r}")
        return getattr(self.__dict__["sections"][owner], key)

    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        """The normalized config in file format (validates again when ``redact=False``)."""
        out: dict[str, Any] = {"global": self.globals.to_dict()}
        for name, model in self.sections.items():
            handler = self._handlers.get(name)
            if handler is not None:
                out.update(handler.to_dict(model, redact=redact))
        return out
