"""Config problems as data: every issue carries its dotted path, a message and a line.

Operators fix configs from the error output alone, so each problem says where it is
(file, line, dotted path) and what to do about it, and all of them are reported at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PathPart = str | int


def format_path(parts: Sequence[Any]) -> str:
    """Render ``["vrrp_instances", 1, "vrid"]`` as ``vrrp_instances[1].vrid``."""
    out = ""
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parent_paths(path: str) -> Iterable[str]:
    """Yield ``path`` and then each enclosing path, innermost first.

    Used to find the nearest line for an issue whose own key is missing
    (``required key missing`` points at the enclosing item).
    """
    current = path
    while current:
        yield current
        cut = max(current.rfind("."), current.rfind("["))
        if cut <= 0:
            break
        current = current[:cut]


@dataclass(frozen=True)
class Issue:
    """One problem in a config: where (file, line, dotted path) and what to do."""

    path: str
    message: str
    line: int | None = None
    file: str | None = None

    def __str__(self) -> str:
        where = self.file or ""
        if self.line is not None:
            where = f"{where}:{self.line}" if where else f"line {self.line}"
        parts = [p for p in (where, self.path, self.message) if p]
        return ": ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "message": self.message, "line": self.line, "file": self.file}

    def located(self, lines: Mapping[str, int] | None, file: str | None) -> Issue:
        """Return a copy with the line of the nearest known path and the file filled in."""
        line = self.line
        if line is None and lines:
            for candidate in parent_paths(self.path):
                if candidate in lines:
                    line = lines[candidate]
                    break
        return Issue(self.path, self.message, line, self.file or file)


def sort_issues(issues: Iterable[Issue]) -> list[Issue]:
    """Order issues as a reader meets them in the file; unlocated ones keep their order last."""
    indexed = list(enumerate(issues))
    indexed.sort(key=lambda pair: (pair[1].line is None, pair[1].line or 0, pair[0]))
    unique: list[Issue] = []
    seen: set[Issue] = set()
    for _, issue in indexed:
        if issue not in seen:
            seen.add(issue)
            unique.append(issue)
    return unique


class ConfigError(Exception):
    """A config was rejected; ``issues`` holds every problem found, not just the first."""

    def __init__(self, issues: Sequence[Issue]) -> None:
        self.issues: list[Issue] = list(issues)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)

    def to_dict(self) -> dict[str, Any]:
        return {"valid": False, "errors": [issue.to_dict() for issue in self.issues]}
