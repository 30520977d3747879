"""What a reload changes: whether ``global`` changed, and each section's own diff.

The daemon hands every subsystem its section's diff with the new model, so a subsystem
touches only what changed and never flaps an unchanged instance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .model import Config
from .section import ConfigSection, SectionDiff

__all__ = ["ConfigDiff", "diff_configs"]


@dataclass(frozen=True)
class ConfigDiff:
    """``global`` changed or not, and each section's diff by section name."""

    globals_changed: bool = False
    sections: Mapping[str, SectionDiff] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """True when applying the new config would change nothing."""
        return not self.globals_changed and all(d.empty for d in self.sections.values())

    def section(self, name: str) -> SectionDiff | None:
        return self.sections.get(name)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"globals_changed": self.globals_changed}
        for name, diff in self.sections.items():
            out[name] = diff.to_dict()
        return out

    def summary(self) -> str:
        """One line for the log and the ``config_reloaded`` event."""
        parts = [f"{name}: {d.summary()}" for name, d in self.sections.items() if not d.empty]
        if self.globals_changed:
            parts.append("globals changed")
        return "; ".join(parts) or "settings changed"


def diff_configs(old: Config, new: Config, sections: Sequence[ConfigSection]) -> ConfigDiff:
    """Compare two configs validated against the same ``sections``."""
    diffs: dict[str, SectionDiff] = {}
    for section in sections:
        if section.name in old.sections and section.name in new.sections:
            diffs[section.name] = section.diff(
                old.sections[section.name], new.sections[section.name]
            )
    return ConfigDiff(globals_changed=old.globals != new.globals, sections=diffs)
