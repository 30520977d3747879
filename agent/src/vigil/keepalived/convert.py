"""Import a keepalived.conf as a vigil config: the frame every subsystem's part plugs into.

Operators move to vigil from a working keepalived pair, so the importer's promise is:
everything keepalived would have done is either carried over into the vigil format
(docs/configuration.md) or listed as `Unsupported(file, line, keyword, reason)`.
Nothing is dropped silently. Where keepalived's behaviour differs from what its text
seems to say (the `state` hint, weights ignored inside sync groups, scripts run as
root), the result says so in `notes`.

Parsing lives in `vigil.keepalived.parser`. This module walks the statements, converts
``global_defs`` and the trackers (``vrrp_script``, ``track_file``, ``vrrp_track_process``)
itself and hands each other top-level block to the :class:`ImporterPart` of the subsystem
that owns it (``SubsystemSpec.keepalived``: VRRP's is ``vigil.vrrp.keepalived``). For
every produced key it records the keepalived file and line it came from, so validation
issues point back into keepalived.conf. Rendering and the CLI are in ``vigil.keepalived.cli``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from vigil.config.errors import format_path, parent_paths
from vigil.keepalived.keywords import (
    BOOL_WORDS,
    GLOBAL_PREFIX_REASONS,
    GLOBAL_REASONS,
    LATER_BLOCKS,
    TOP_ORDER,
    TOP_UNSUPPORTED,
    UNKNOWN,
)
from vigil.keepalived.parser import (
    KeepalivedParseError,
    Statement,
    Token,
    parse_file,
)

__all__ = [
    "BadValue",
    "Converter",
    "ImportResult",
    "ImporterPart",
    "KeepalivedParseError",
    "Unsupported",
    "import_keepalived",
]


@dataclass(frozen=True)
class Unsupported:
    """A keepalived keyword the import could not carry over, with where and why."""

    file: str
    line: int
    keyword: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.keyword}: not carried over ({self.reason})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "keyword": self.keyword,
            "reason": self.reason,
        }


@dataclass
class ImportResult:
    """What the import produced: the vigil config, what was left out, and what to know.

    `errors` holds values that could not be converted at all (`priority high`): a
    config with errors is invalid. `origins` maps dotted config paths
    (`vrrp_instances[0].vrid`) to the keepalived (file, line) they came from.
    """

    source: str
    config: dict[str, Any]
    unsupported: list[Unsupported] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    origins: dict[str, tuple[str, int]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def origin_of(self, path: str) -> tuple[str, int] | None:
        """The keepalived location of `path` or of the nearest enclosing path."""
        for candidate in parent_paths(path):
            if candidate in self.origins:
                return self.origins[candidate]
        return None


class BadValue(Exception):
    """A keyword's value cannot be converted; the message names the fix."""


#: keepalived's per-process real-time priorities; vigild takes the highest
RT_PRIORITIES = ("vrrp_rt_priority", "bfd_rt_priority", "checker_rt_priority")


def _number(text: str) -> int | float:
    try:
        value = float(text)
    except ValueError:
        raise BadValue(f"{text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise BadValue(f"{text!r} is not a number")
    return int(value) if value.is_integer() and "." not in text else value


def integer(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise BadValue(f"{text!r} is not a whole number") from None


def seconds(text: str) -> int | float:
    value = _number(text)
    return int(value) if float(value).is_integer() else value


def boolean(words: list[str]) -> bool:
    if not words:
        return True
    word = words[0].lower()
    if word not in BOOL_WORDS:
        raise BadValue(f"{words[0]!r} is not one of on|off|true|false|yes|no")
    return BOOL_WORDS[word]


def ordered(data: dict[str, Any], order: Iterable[str]) -> dict[str, Any]:
    out = {key: data[key] for key in order if key in data}
    out.update((key, value) for key, value in data.items() if key not in out)
    return out


class ImporterPart:
    """A subsystem's part of the import: the top-level blocks it converts.

    ``blocks`` are converted in file order, ``late_blocks`` after every other block (a
    sync group needs the instances first). ``global_keyword`` takes the subsystem's own
    keywords of ``global_defs``; ``after_blocks`` runs when every block is converted and
    ``finish`` adds the subsystem's keys to the config. Bookkeeping (``unsupported``,
    ``error``, ``note``, ``origin``, ``convert``) is the frame's: ``self.conv``.
    """

    blocks: tuple[str, ...] = ()
    late_blocks: tuple[str, ...] = ()
    #: the part's keys of ``global``, in the order they are written
    global_order: tuple[str, ...] = ()

    def __init__(self, conv: Converter) -> None:
        self.conv = conv

    def block(self, stmt: Statement) -> None:
        """Convert one of ``blocks`` or ``late_blocks``."""

    def global_keyword(self, stmt: Statement, path: list[Any], g: dict[str, Any]) -> bool:
        return False

    def after_blocks(self) -> None:
        """Every block is converted (apply cross-block semantics here)."""

    def finish(self, config: dict[str, Any]) -> None:
        """Add the part's keys to ``config``."""


def _parts() -> list[type[ImporterPart]]:
    from vigil import subsystems

    parts = []
    for spec in subsystems.specs():
        part = spec.load_keepalived()
        if part is not None:
            parts.append(part)
    return parts


class Converter:
    """Walks the statement tree once, filling the vigil config and the side lists."""

    def __init__(self, source: str, parts: list[type[ImporterPart]] | None = None) -> None:
        self.result = ImportResult(source=source, config={})
        self.globals: dict[str, Any] = {}
        self.scripts: dict[str, Any] = {}
        self.files: dict[str, Any] = {}
        self.processes: dict[str, Any] = {}
        self.uses_scripts = False
        self.parts = [cls(self) for cls in (_parts() if parts is None else parts)]

    # --- bookkeeping -------------------------------------------------------------

    def unsupported(self, at: Statement | Token, keyword: str, reason: str) -> None:
        tok = at.keyword if isinstance(at, Statement) else at
        self.result.unsupported.append(Unsupported(tok.file, tok.line, keyword, reason))

    def error(self, at: Statement | Token, keyword: str, message: str) -> None:
        tok = at.keyword if isinstance(at, Statement) else at
        self.result.errors.append(f"{tok.file}:{tok.line}: {keyword}: {message}")

    def note(self, at: Statement | Token | None, message: str) -> None:
        if at is None:
            self.result.notes.append(message)
            return
        tok = at.keyword if isinstance(at, Statement) else at
        self.result.notes.append(f"{tok.file}:{tok.line}: {message}")

    def origin(self, path: list[Any], at: Statement | Token, *, last: bool = False) -> None:
        """Remember where `path` came from: its first mention, or with `last` its latest
        (a repeated scalar keyword: keepalived keeps the last value, so point there)."""
        tok = at.keyword if isinstance(at, Statement) else at
        key = format_path(path)
        if last or key not in self.result.origins:
            self.result.origins[key] = (tok.file, tok.line)

    def convert(
        self, stmt: Statement, path: list[Any], target: dict[str, Any], key: str, fn: Callable
    ) -> bool:
        """Set target[key] = fn(stmt) recording the origin; on a bad value log an error."""
        try:
            target[key] = fn(stmt)
        except BadValue as exc:
            self.error(stmt, stmt.name, str(exc))
            return False
        self.origin([*path, key], stmt, last=True)
        return True

    def _one_arg(self, stmt: Statement) -> str:
        if not stmt.args:
            raise BadValue("needs a value")
        if len(stmt.args) > 1:
            extra = " ".join(stmt.words[1:])
            self.unsupported(stmt.args[1], stmt.name, f"extra words {extra!r} ignored")
        return stmt.args[0].text

    # --- top level ---------------------------------------------------------------

    def run(self, statements: list[Statement]) -> ImportResult:
        handlers: dict[str, Callable[[Statement], None]] = {
            "global_defs": self.global_defs,
            "vrrp_script": self.vrrp_script,
            "vrrp_track_file": self.track_file,
            "track_file": self.track_file,
            "vrrp_track_process": self.track_process,
        }
        late: dict[str, Callable[[Statement], None]] = {}
        for part in self.parts:
            handlers.update((name, part.block) for name in part.blocks)
            late.update((name, part.block) for name in part.late_blocks)
        statements = self._without_templating(statements)
        for stmt in statements:
            name = stmt.name
            if name in late:
                continue  # converted once every other block is
            if name in handlers:
                handlers[name](stmt)
            elif name in LATER_BLOCKS:
                self.unsupported(stmt, name, LATER_BLOCKS[name])
            elif name in TOP_UNSUPPORTED:
                self.unsupported(stmt, name, TOP_UNSUPPORTED[name])
            else:
                self.unsupported(stmt, name, UNKNOWN)
        for stmt in statements:
            if stmt.name in late:
                late[stmt.name](stmt)
        for part in self.parts:
            part.after_blocks()
        self._script_defaults()
        return self._finish()

    def _without_templating(self, statements: list[Statement]) -> list[Statement]:
        """Report and remove conditional (`@id`) and parameter (`$X=`, `~SEQ`) lines, at any
        depth: they depend on keepalived's command line, so the import cannot guess them."""
        kept: list[Statement] = []
        for stmt in statements:
            if stmt.name[:1] in ("@", "$", "~"):
                self.unsupported(
                    stmt,
                    stmt.name,
                    "conditional configuration and parameter substitution are not expanded; "
                    "expand them for this node (keepalived -i ID -t shows the result) first",
                )
                continue
            if stmt.block is not None:
                stmt.block = self._without_templating(stmt.block)
            kept.append(stmt)
        return kept

    def _block(self, stmt: Statement) -> list[Statement]:
        if stmt.block is None:
            self.error(stmt, stmt.name, "needs a { ... } block")
            return []
        return stmt.block

    def _named(self, stmt: Statement) -> str | None:
        if not stmt.args:
            self.error(stmt, stmt.name, "needs a name: " + stmt.name + " NAME { ... }")
            return None
        if len(stmt.args) > 1:
            self.unsupported(stmt.args[1], stmt.name, "extra words after the name ignored")
        return stmt.args[0].text

    # --- global_defs ----------------------------------------------------------------

    def global_defs(self, stmt: Statement) -> None:
        path: list[Any] = ["global"]
        g = self.globals
        for s in self._block(stmt):
            name = s.name
            if name == "router_id":
                self.convert(s, path, g, "router_id", self._one_arg)
            elif name == "script_user":
                self.convert(s, path, g, "script_user", self._user)
            elif name == "enable_script_security":
                g["script_security"] = True
                self.origin([*path, "script_security"], s)
            elif name in RT_PRIORITIES:
                self._rt_priority(s, path, g)
            elif any(part.global_keyword(s, path, g) for part in self.parts):
                pass
            elif name in GLOBAL_REASONS:
                self.unsupported(s, name, GLOBAL_REASONS[name])
            else:
                reason = next((r for p, r in GLOBAL_PREFIX_REASONS if name.startswith(p)), None)
                self.unsupported(s, name, reason or UNKNOWN)

    def _rt_priority(self, stmt: Statement, path: list[Any], g: dict[str, Any]) -> None:
        """keepalived's per-process ``vrrp_/bfd_/checker_rt_priority``: vigild is one
        process with one loop, so it takes the highest of them."""
        try:
            value = integer(self._one_arg(stmt))
        except BadValue as exc:
            self.error(stmt, stmt.name, str(exc))
            return
        if not 1 <= value <= 99:
            self.error(stmt, stmt.name, f"must be 1..99, got {value}")
            return
        if value > int(g.get("realtime_priority", 0)):
            g["realtime_priority"] = value
            self.origin([*path, "realtime_priority"], stmt)
        self.note(
            stmt,
            f"{stmt.name} {value}: vigild runs VRRP, IPVS checks and BFD in one loop, which "
            "takes the highest *_rt_priority as global.realtime_priority",
        )

    def _user(self, stmt: Statement) -> str:
        if not stmt.args:
            raise BadValue("needs a user name")
        words = stmt.words
        if len(words) > 2:
            self.unsupported(stmt.args[2], stmt.name, "extra words after user and group ignored")
        return ":".join(words[:2])

    # --- trackers ---------------------------------------------------------------

    def vrrp_script(self, stmt: Statement) -> None:
        name = self._named(stmt)
        if name is None:
            return
        self.uses_scripts = True
        path: list[Any] = ["vrrp_scripts", name]
        self.origin(path, stmt)
        out: dict[str, Any] = {}
        for s in self._block(stmt):
            kw = s.name
            if kw == "script":
                self.convert(s, path, out, "script", self._command)
            elif kw in ("interval", "timeout"):
                self.convert(s, path, out, kw, lambda x: seconds(self._one_arg(x)))
            elif kw in ("rise", "fall"):
                self.convert(s, path, out, kw, lambda x: integer(self._one_arg(x)))
            elif kw == "weight":
                self._weight(s, path, out)
            elif kw == "user":
                self.convert(s, path, out, "user", self._user)
            elif kw == "init_fail":
                out["init_fail"] = True
                self.origin([*path, "init_fail"], s)
            else:
                self.unsupported(s, kw, f"unknown in vrrp_script {name}")
        self._put(self.scripts, name, out, stmt, "vrrp_script")

    def _put(
        self, table: dict[str, Any], name: str, out: dict[str, Any], stmt: Statement, kind: str
    ) -> None:
        if name in table:
            self.note(stmt, f"{kind} {name} is defined again; keepalived uses the last one")
        table[name] = out

    def _command(self, stmt: Statement) -> str:
        """A check script (`script`): one quoted string, or the words of an unquoted line."""
        if not stmt.args:
            raise BadValue("needs a command")
        first = stmt.args[0]
        if first.quoted or len(stmt.args) == 1:
            if len(stmt.args) > 1:
                self.unsupported(stmt.args[1], stmt.name, "words after the quoted command ignored")
            return first.text
        return " ".join(shell_word(t.text) for t in stmt.args)

    def _notify_command(self, stmt: Statement) -> str:
        """`notify_* CMD [username [groupname]]`: CMD is one word or one quoted string."""
        if not stmt.args:
            raise BadValue("needs a command")
        if len(stmt.args) > 1:
            self.unsupported(
                stmt.args[1],
                f"{stmt.name} {' '.join(stmt.words[1:])}",
                "a per-script user is not supported; vigil runs notify scripts as "
                "global.script_user",
            )
        return stmt.args[0].text

    def _weight(self, stmt: Statement, path: list[Any], out: dict[str, Any]) -> None:
        words = stmt.words
        try:
            if not words:
                raise BadValue("needs a number")
            out["weight"] = integer(words[0])
        except BadValue as exc:
            self.error(stmt, "weight", str(exc))
            return
        self.origin([*path, "weight"], stmt)
        if len(words) > 1:
            if words[1] == "reverse":
                out["weight_reverse"] = True
                self.origin([*path, "weight_reverse"], stmt)
            elif words[1] not in ("noreverse", "no_reverse"):
                self.unsupported(stmt.args[1], f"weight {words[1]}", "unknown weight option")

    def track_file(self, stmt: Statement) -> None:
        name = self._named(stmt)
        if name is None:
            return
        path: list[Any] = ["track_files", name]
        self.origin(path, stmt)
        out: dict[str, Any] = {}
        for s in self._block(stmt):
            kw = s.name
            if kw == "file":
                self.convert(s, path, out, "file", self._one_arg)
            elif kw == "weight":
                self._weight(s, path, out)
            elif kw == "init_file":
                words = s.words
                value = 0
                rest = words
                if words and words[0] != "overwrite":
                    try:
                        value = integer(words[0])
                    except BadValue as exc:
                        self.error(s, kw, str(exc))
                        continue
                    rest = words[1:]
                out["init_file"] = value
                self.origin([*path, "init_file"], s)
                if "overwrite" in rest:
                    self.unsupported(
                        s,
                        "init_file overwrite",
                        "vigil writes the initial value only if the file does not exist",
                    )
            else:
                self.unsupported(s, kw, f"unknown in track_file {name}")
        self._put(self.files, name, out, stmt, stmt.name)

    def track_process(self, stmt: Statement) -> None:
        name = self._named(stmt)
        if name is None:
            return
        path: list[Any] = ["track_processes", name]
        self.origin(path, stmt)
        out: dict[str, Any] = {}
        for s in self._block(stmt):
            kw = s.name
            if kw == "process":
                if not s.args:
                    self.error(s, kw, "needs a process name")
                    continue
                out["process"] = s.args[0].text
                self.origin([*path, "process"], s)
                if len(s.args) > 1:
                    out["parameters"] = " ".join(shell_word(t.text) for t in s.args[1:])
                    self.origin([*path, "parameters"], s)
            elif kw == "param_match":
                self.convert(s, path, out, "param_match", self._one_arg)
            elif kw == "weight":
                self._weight(s, path, out)
            elif kw in ("quorum", "quorum_max"):
                self.convert(s, path, out, kw, lambda x: integer(self._one_arg(x)))
            elif kw in ("fork_delay", "delay", "terminate_delay"):
                keys = {"fork_delay": ["delay"], "delay": ["delay", "terminate_delay"]}
                for key in keys.get(kw, [kw]):
                    self.convert(s, path, out, key, lambda x: seconds(self._one_arg(x)))
            elif kw == "full_command":
                out["full_command"] = True
                self.origin([*path, "full_command"], s)
            else:
                self.unsupported(s, kw, f"unknown in vrrp_track_process {name}")
        self._put(self.processes, name, out, stmt, "vrrp_track_process")

    def _tracker_weight(self, key: str, name: str) -> int:
        table = {"scripts": self.scripts, "files": self.files, "processes": self.processes}[key]
        default = 1 if key == "files" else 0
        entry = table.get(name, {})
        return int(entry.get("weight", default)) if isinstance(entry, dict) else 0

    def _script_defaults(self) -> None:
        """keepalived runs scripts as root without a security check unless told otherwise."""
        if not self.uses_scripts:
            return
        if "script_user" not in self.globals:
            self.globals["script_user"] = "root"
            self.note(
                None,
                "global.script_user: keepalived runs scripts as keepalived_script if that "
                "user exists, else root; imported as root (set script_user to narrow it)",
            )
        if "script_security" not in self.globals:
            self.globals["script_security"] = False
            self.note(
                None,
                "global.script_security: keepalived had enable_script_security off; imported "
                "as false (turn it on once your scripts are writable only by root)",
            )

    def _finish(self) -> ImportResult:
        config: dict[str, Any] = {}
        part_config: dict[str, Any] = {}
        for part in self.parts:
            part.finish(part_config)
        if self.globals:
            order = ["router_id", "script_user", "script_security"]
            for part in self.parts:
                order.extend(part.global_order)
            config["global"] = ordered(self.globals, order)
        if self.scripts:
            config["vrrp_scripts"] = self.scripts
        if self.files:
            config["track_files"] = self.files
        if self.processes:
            config["track_processes"] = self.processes
        config.update(part_config)
        self.result.config = ordered(config, TOP_ORDER)
        return self.result


def family_of(vip: Any) -> int:
    text = vip if isinstance(vip, str) else vip.get("address", "")
    try:
        return ipaddress.ip_interface(text).version
    except ValueError:
        return 4


def is_prefix(word: str) -> bool:
    try:
        ipaddress.ip_network(word, strict=False)
    except ValueError:
        return False
    return True


def looks_like_mac(word: str) -> bool:
    parts = word.split(":")
    return len(parts) in (5, 6) and all(len(p) == 2 for p in parts)


def shell_word(word: str) -> str:
    """Quote a word that contains spaces so vigil's shell-style split keeps it whole."""
    if word and not any(c.isspace() or c in "'\"\\" for c in word):
        return word
    return "'" + word.replace("'", "'\"'\"'") + "'"


def import_keepalived(path: str) -> ImportResult:
    """Parse keepalived.conf at `path` (with its includes) and convert it.

    Raises KeepalivedParseError (file:line in its message) when the file cannot be
    read or its braces do not balance.
    """
    parsed = parse_file(path)
    result = Converter(path).run(parsed.statements)
    result.files = parsed.files
    result.notes[:0] = parsed.notes
    return result
