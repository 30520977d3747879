"""The agent-wide part of the schema: the ``global`` mapping (docs/configuration.md).

Sections add their own keys under ``global`` (VRRP: ``vrrp_version``, ``garp``, ...)
through ``ConfigSection.global_fields``; :func:`global_schema` merges them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import voluptuous as vol

from .section import ConfigSection
from .validators import Struct, boolean, choice, integer, seconds, string

__all__ = ["CORE_GLOBAL_FIELDS", "LOG_LEVELS", "global_schema"]

LOG_LEVELS = ("debug", "info", "warning", "error")

CORE_GLOBAL_FIELDS: dict[Any, Any] = {
    vol.Optional("router_id"): string(64),
    vol.Optional("log_level", default="info"): choice(*LOG_LEVELS),
    vol.Optional("socket", default="/run/vigil/vigil.sock"): string(),
    vol.Optional("state_dir", default="/var/lib/vigil"): string(),
    vol.Optional("script_user", default="nobody"): string(),
    vol.Optional("script_security", default=True): boolean,
    vol.Optional("notify_timeout", default=10): seconds(0.01, 3600),
    vol.Optional("allow_empty_config", default=False): boolean,
    vol.Optional("realtime_priority", default=0): integer(0, 99),
}

CORE_GLOBAL_KEYS = tuple(str(key) for key in CORE_GLOBAL_FIELDS)


def global_schema(sections: Iterable[ConfigSection]) -> Struct:
    """The ``global`` schema: the core keys, then each section's, in section order."""
    fields = dict(CORE_GLOBAL_FIELDS)
    for section in sections:
        fields.update(section.global_fields)
    return Struct(fields, what="a mapping of global settings")


def section_global_keys(section: ConfigSection) -> tuple[str, ...]:
    return tuple(str(key) for key in section.global_fields)
