"""Import a keepalived.conf as a vigil config (`vigilctl import-keepalived FILE`).

Operators move to vigil from a working keepalived pair, so the importer's promise is:
everything keepalived would have done is either carried over into the vigil format
(docs/configuration.md) or listed as `Unsupported(file, line, keyword, reason)`.
Nothing is dropped silently. Where keepalived's behaviour differs from what its text
seems to say (the `state` hint, weights ignored inside sync groups, scripts run as
root), the result says so in `notes`.

Parsing lives in `keepalived_parser`; this module maps keywords to vigil keys, records
for every produced key the keepalived file and line it came from (so validation issues
point back into keepalived.conf), renders YAML and runs the CLI command.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

import yaml

from vigil.config.errors import format_path, parent_paths
from vigil.config.keepalived_keywords import (
    BOOL_WORDS,
    GARP_KEYS,
    GLOBAL_PREFIX_REASONS,
    GLOBAL_REASONS,
    GROUP_REASONS,
    INSTANCE_ORDER,
    INSTANCE_REASONS,
    LATER_BLOCKS,
    NOTIFY_KEYS,
    ROUTE_TYPES,
    ROUTE_VALUE_OPTIONS,
    TOP_ORDER,
    TOP_UNSUPPORTED,
    UNKNOWN,
    VIP_FLAGS,
    VIP_VALUE_OPTIONS,
)
from vigil.config.keepalived_parser import (
    KeepalivedParseError,
    Statement,
    Token,
    parse_file,
)

__all__ = [
    "ImportResult",
    "KeepalivedParseError",
    "Unsupported",
    "import_keepalived",
    "import_main",
    "render_yaml",
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


class _BadValue(Exception):
    """A keyword's value cannot be converted; the message names the fix."""


def _number(text: str) -> int | float:
    try:
        value = float(text)
    except ValueError:
        raise _BadValue(f"{text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise _BadValue(f"{text!r} is not a number")
    return int(value) if value.is_integer() and "." not in text else value


def _integer(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise _BadValue(f"{text!r} is not a whole number") from None


def _seconds(text: str) -> int | float:
    value = _number(text)
    return int(value) if float(value).is_integer() else value


def _boolean(words: list[str]) -> bool:
    if not words:
        return True
    word = words[0].lower()
    if word not in BOOL_WORDS:
        raise _BadValue(f"{words[0]!r} is not one of on|off|true|false|yes|no")
    return BOOL_WORDS[word]


def _ordered(data: dict[str, Any], order: Iterable[str]) -> dict[str, Any]:
    out = {key: data[key] for key in order if key in data}
    out.update((key, value) for key, value in data.items() if key not in out)
    return out


class _Converter:
    """Walks the statement tree once, filling the vigil config and the side lists."""

    def __init__(self, source: str) -> None:
        self.result = ImportResult(source=source, config={})
        self.globals: dict[str, Any] = {}
        self.scripts: dict[str, Any] = {}
        self.files: dict[str, Any] = {}
        self.processes: dict[str, Any] = {}
        self.instances: list[dict[str, Any]] = []
        self.groups: list[dict[str, Any]] = []
        self.group_members: dict[str, Statement] = {}
        self.group_weighted: set[str] = set()
        self.uses_scripts = False

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
        except _BadValue as exc:
            self.error(stmt, stmt.name, str(exc))
            return False
        self.origin([*path, key], stmt, last=True)
        return True

    def _one_arg(self, stmt: Statement) -> str:
        if not stmt.args:
            raise _BadValue("needs a value")
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
            "vrrp_instance": self.vrrp_instance,
            "vrrp_sync_group": self.sync_group,
        }
        instance_stmts: list[Statement] = []
        statements = self._without_templating(statements)
        for stmt in statements:
            name = stmt.name
            if name in LATER_BLOCKS:
                self.unsupported(stmt, name, LATER_BLOCKS[name])
            elif name in TOP_UNSUPPORTED:
                self.unsupported(stmt, name, TOP_UNSUPPORTED[name])
            elif name == "vrrp_sync_group":
                # groups first need the instance list; convert them after instances
                continue
            elif name in handlers:
                if name == "vrrp_instance":
                    instance_stmts.append(stmt)
                handlers[name](stmt)
            else:
                self.unsupported(stmt, name, UNKNOWN)
        for stmt in statements:
            if stmt.name == "vrrp_sync_group":
                self.sync_group(stmt)
        self._apply_group_semantics(instance_stmts)
        self._drop_v3_auth(instance_stmts)
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
            elif name == "vrrp_version":
                self.convert(s, path, g, "vrrp_version", lambda x: _integer(self._one_arg(x)))
            elif name == "v3_checksum_as_v2":
                self.convert(
                    s, path, g, "v3_checksum_pseudo_header", lambda x: not _boolean(x.words)
                )
            elif name == "vrrp_min_garp":
                self._min_garp(s, path, g)
            elif name.startswith("vrrp_") and name[5:] in GARP_KEYS:
                self._garp(s, name[5:], path, g)
            elif name in GLOBAL_REASONS:
                self.unsupported(s, name, GLOBAL_REASONS[name])
            else:
                reason = next((r for p, r in GLOBAL_PREFIX_REASONS if name.startswith(p)), None)
                self.unsupported(s, name, reason or UNKNOWN)

    def _user(self, stmt: Statement) -> str:
        if not stmt.args:
            raise _BadValue("needs a user name")
        words = stmt.words
        if len(words) > 2:
            self.unsupported(stmt.args[2], stmt.name, "extra words after user and group ignored")
        return ":".join(words[:2])

    def _garp(self, stmt: Statement, kw: str, path: list[Any], target: dict[str, Any]) -> None:
        key, kind = GARP_KEYS[kw]
        garp = target.setdefault("garp", {})
        try:
            text = self._one_arg(stmt)
            value: int | float = _integer(text) if kind is int else _seconds(text)
        except _BadValue as exc:
            self.error(stmt, stmt.name, str(exc))
            return
        if key == "interval" and "interval" in garp and garp["interval"] != value:
            self.unsupported(
                stmt,
                stmt.name,
                f"vigil has one interval for GARP and NA; keeping {garp['interval']}",
            )
            return
        garp[key] = value
        self.origin([*path, "garp", key], stmt, last=True)

    def _min_garp(self, stmt: Statement, path: list[Any], target: dict[str, Any]) -> None:
        try:
            on = _boolean(stmt.words)
        except _BadValue as exc:
            self.error(stmt, stmt.name, str(exc))
            return
        if on:
            garp = target.setdefault("garp", {})
            garp.setdefault("master_repeat", 1)
            garp.setdefault("master_delay", 0)
            self.origin([*path, "garp"], stmt)

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
                self.convert(s, path, out, kw, lambda x: _seconds(self._one_arg(x)))
            elif kw in ("rise", "fall"):
                self.convert(s, path, out, kw, lambda x: _integer(self._one_arg(x)))
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
            raise _BadValue("needs a command")
        first = stmt.args[0]
        if first.quoted or len(stmt.args) == 1:
            if len(stmt.args) > 1:
                self.unsupported(stmt.args[1], stmt.name, "words after the quoted command ignored")
            return first.text
        return " ".join(_shell_word(t.text) for t in stmt.args)

    def _notify_command(self, stmt: Statement) -> str:
        """`notify_* CMD [username [groupname]]`: CMD is one word or one quoted string."""
        if not stmt.args:
            raise _BadValue("needs a command")
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
                raise _BadValue("needs a number")
            out["weight"] = _integer(words[0])
        except _BadValue as exc:
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
                        value = _integer(words[0])
                    except _BadValue as exc:
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
                    out["parameters"] = " ".join(_shell_word(t.text) for t in s.args[1:])
                    self.origin([*path, "parameters"], s)
            elif kw == "param_match":
                self.convert(s, path, out, "param_match", self._one_arg)
            elif kw == "weight":
                self._weight(s, path, out)
            elif kw in ("quorum", "quorum_max"):
                self.convert(s, path, out, kw, lambda x: _integer(self._one_arg(x)))
            elif kw in ("fork_delay", "delay", "terminate_delay"):
                keys = {"fork_delay": ["delay"], "delay": ["delay", "terminate_delay"]}
                for key in keys.get(kw, [kw]):
                    self.convert(s, path, out, key, lambda x: _seconds(self._one_arg(x)))
            elif kw == "full_command":
                out["full_command"] = True
                self.origin([*path, "full_command"], s)
            else:
                self.unsupported(s, kw, f"unknown in vrrp_track_process {name}")
        self._put(self.processes, name, out, stmt, "vrrp_track_process")

    # --- vrrp_instance --------------------------------------------------------------

    def vrrp_instance(self, stmt: Statement) -> None:
        name = self._named(stmt)
        if name is None:
            return
        index = len(self.instances)
        path: list[Any] = ["vrrp_instances", index]
        self.origin(path, stmt)
        inst: dict[str, Any] = {"name": name}
        self.origin([*path, "name"], stmt)
        state: Statement | None = None
        for s in self._block(stmt):
            kw = s.name
            if kw == "interface":
                self.convert(s, path, inst, "interface", self._one_arg)
            elif kw == "virtual_router_id":
                self.convert(s, path, inst, "vrid", lambda x: _integer(self._one_arg(x)))
            elif kw == "priority":
                self.convert(s, path, inst, "priority", lambda x: _integer(self._one_arg(x)))
            elif kw == "advert_int":
                self.convert(s, path, inst, "advert_interval", lambda x: _seconds(self._one_arg(x)))
            elif kw == "version":
                self.convert(s, path, inst, "version", lambda x: _integer(self._one_arg(x)))
            elif kw in ("nopreempt", "no_preempt"):
                inst["preempt"] = False
                self.origin([*path, "preempt"], s)
            elif kw == "preempt":
                inst.setdefault("preempt", True)
                self.origin([*path, "preempt"], s)
            elif kw == "preempt_delay":
                self.convert(s, path, inst, "preempt_delay", lambda x: _seconds(self._one_arg(x)))
            elif kw == "state":
                state = s
            elif kw == "authentication":
                self._auth(s, path, inst)
            elif kw in ("virtual_ipaddress", "virtual_ipaddress_excluded"):
                key = "virtual_ipaddresses" + kw[len("virtual_ipaddress") :]
                self._vips(s, [*path, key], inst.setdefault(key, []))
            elif kw == "virtual_routes":
                self._routes(s, [*path, "virtual_routes"], inst.setdefault("virtual_routes", []))
            elif kw == "unicast_src_ip":
                uni = inst.setdefault("unicast", {})
                self.convert(s, [*path, "unicast"], uni, "source", self._one_arg)
            elif kw == "unicast_peer":
                self._peers(s, [*path, "unicast"], inst.setdefault("unicast", {}))
            elif kw in ("track_interface", "track_script", "track_file", "track_process"):
                self._track(s, kw, [*path, "track"], inst.setdefault("track", {}))
            elif kw in NOTIFY_KEYS:
                self.uses_scripts = True
                notify = inst.setdefault("notify", {})
                self.convert(s, [*path, "notify"], notify, NOTIFY_KEYS[kw], self._notify_command)
            elif kw == "use_vmac":
                self._vmac(s, path, inst)
            elif kw in GARP_KEYS and kw != "gna_interval":
                self._garp(s, kw, path, inst)
            elif kw == "v3_checksum_as_v2":
                self.convert(
                    s, path, inst, "v3_checksum_pseudo_header", lambda x: not _boolean(x.words)
                )
            elif kw == "native_ipv6":
                self.note(s, f"{name}: native_ipv6 is implied by IPv6 VIPs in vigil")
                inst["_native_ipv6"] = s
            elif kw == "accept":
                self.note(s, f"{name}: accept is how vigil always behaves")
            elif kw in INSTANCE_REASONS:
                self.unsupported(s, kw, INSTANCE_REASONS[kw])
            elif kw == "auth_type" or kw == "auth_pass":
                self.unsupported(s, kw, "belongs inside authentication { }")
            else:
                self.unsupported(s, kw, f"{UNKNOWN} (in vrrp_instance {name})")
        self._instance_semantics(inst, path, stmt, state)
        self.instances.append(inst)

    def _instance_semantics(
        self, inst: dict[str, Any], path: list[Any], stmt: Statement, state: Statement | None
    ) -> None:
        name = inst["name"]
        if state is not None:
            wanted = state.words[0].upper() if state.words else "?"
            self.note(
                state,
                f"{name}: 'state {wanted}' is only a start-up hint in keepalived; vigil, like "
                "keepalived, starts every instance in BACKUP unless its priority is 255",
            )
        if inst.get("priority") == 255:
            inst["address_owner"] = True
            self.origin([*path, "address_owner"], stmt)
            self.note(stmt, f"{name}: priority 255 imported as address_owner: true")
        vips = inst.get("virtual_ipaddresses", [])
        six = any(_family(v) == 6 for v in vips)
        native = inst.pop("_native_ipv6", None)
        if six or native is not None:
            if inst.get("version") == 2:
                self.note(
                    stmt,
                    f"{name}: IPv6 instances always run VRRPv3 (keepalived ignores version 2)",
                )
            inst["version"] = 3
            self.origin([*path, "version"], stmt)
        uni = inst.get("unicast")
        if uni is not None and "peers" not in uni:
            uni["peers"] = []

    def _auth(self, stmt: Statement, path: list[Any], inst: dict[str, Any]) -> None:
        kind: str | None = None
        password: Statement | None = None
        for s in self._block(stmt):
            if s.name == "auth_type":
                kind = (s.words or ["?"])[0].upper()
                if kind == "AH":
                    self.unsupported(s, "auth_type AH", "IPsec AH authentication is not supported")
                elif kind != "PASS":
                    self.error(s, "auth_type", f"{kind!r} is not PASS or AH")
            elif s.name == "auth_pass":
                password = s
            else:
                self.unsupported(s, s.name, "unknown in authentication")
        if kind != "PASS":
            if password is not None and kind is None:
                self.error(password, "auth_pass", "authentication has no auth_type PASS")
            return
        if password is None or not password.args:
            self.error(stmt, "authentication", "auth_type PASS needs auth_pass")
            return
        text = password.args[0].text
        if len(text) > 8:
            self.note(
                password,
                f"{inst['name']}: keepalived uses only the first 8 characters of auth_pass; "
                "imported those",
            )
            text = text[:8]
        inst["authentication"] = {"type": "pass", "password": text}
        self.origin([*path, "authentication"], stmt)
        self.origin([*path, "authentication", "password"], password)

    def _vips(self, stmt: Statement, path: list[Any], out: list[Any]) -> None:
        for s in self._block(stmt):
            words = [s.name, *s.words]
            vip: dict[str, Any] = {"address": words[0]}
            try:
                net = ipaddress.ip_interface(words[0])
            except ValueError:
                self.error(s, words[0], "is not an IP address (ADDR or ADDR/PREFIX)")
                continue
            tokens = [s.keyword, *s.args]
            i = 1
            while i < len(words):
                opt = words[i]
                if opt in VIP_VALUE_OPTIONS and i + 1 < len(words):
                    value = words[i + 1]
                    if opt in ("dev", "label", "scope"):
                        vip[opt] = value
                    elif opt in ("brd", "broadcast"):
                        self._brd(tokens[i], net, value)
                    else:
                        self.unsupported(tokens[i], f"{opt} (VIP option)", "not supported")
                    i += 2
                    continue
                if opt in VIP_FLAGS:
                    self.unsupported(tokens[i], f"{opt} (VIP option)", "not supported")
                else:
                    self.unsupported(tokens[i], f"{opt} (VIP option)", UNKNOWN)
                i += 1
            if s.block is not None:
                self.unsupported(s, f"{words[0]} {{...}}", "unexpected block")
            self.origin([*path, len(out)], s)
            out.append(vip["address"] if len(vip) == 1 else vip)
        self.origin(path, stmt)

    def _brd(self, tok: Token, net: Any, value: str) -> None:
        if net.version == 6:
            self.unsupported(tok, "brd", "IPv6 has no broadcast address")
            return
        default = net.network.broadcast_address if net.network.prefixlen < 31 else None
        if value == "+" or (default is not None and value == str(default)):
            self.note(tok, f"brd {value} is the standard broadcast of {net}, which vigil sets")
            return
        self.unsupported(tok, "brd", f"vigil sets the standard broadcast address ({default})")

    def _routes(self, stmt: Statement, path: list[Any], out: list[Any]) -> None:
        for s in self._block(stmt):
            tokens = [s.keyword, *s.args]
            words = [t.text for t in tokens]
            route: dict[str, Any] = {}
            i = 0
            while i < len(words):
                word = words[i]
                if word in ROUTE_TYPES:
                    if word != "unicast":
                        route["_type"] = word
                        self.unsupported(
                            tokens[i], f"{word} (route type)", "only unicast routes; route skipped"
                        )
                    i += 1
                    continue
                if word in ROUTE_VALUE_OPTIONS and i + 1 < len(words):
                    value = words[i + 1]
                    if word == "to":
                        route["to"] = value
                    elif word in ("via", "gw"):
                        route["via"] = value
                    elif word in ("src", "dev", "scope"):
                        route[word] = value
                    elif word in ("table", "metric"):
                        try:
                            route[word] = _integer(value)
                        except _BadValue:
                            if word == "table" and value in ("main",):
                                pass
                            else:
                                self.unsupported(
                                    tokens[i + 1], f"{word} {value}", "only numbers are supported"
                                )
                    else:
                        self.unsupported(tokens[i], f"{word} (route option)", "not supported")
                    i += 2
                    continue
                if word in ("no_track", "onlink"):
                    self.unsupported(tokens[i], f"{word} (route option)", "not supported")
                elif "to" not in route and (word == "default" or _is_prefix(word)):
                    route["to"] = word
                else:
                    self.unsupported(tokens[i], f"{word} (route option)", UNKNOWN)
                i += 1
            if "_type" in route:
                continue
            if "to" not in route:
                self.error(s, "virtual_routes", "route has no destination (to PREFIX)")
                continue
            self.origin([*path, len(out)], s)
            out.append(_ordered(route, ("to", "via", "dev", "src", "metric", "table", "scope")))
        self.origin(path, stmt)

    def _peers(self, stmt: Statement, path: list[Any], uni: dict[str, Any]) -> None:
        peers = uni.setdefault("peers", [])
        for s in self._block(stmt):
            peers.append(s.name)
            self.origin([*path, "peers", len(peers) - 1], s)
            for i, tok in enumerate(s.args):
                if tok.text in ("min_ttl", "max_ttl"):
                    self.unsupported(tok, tok.text, "vigil requires TTL 255 on every advert")
                elif i == 0 or s.args[i - 1].text not in ("min_ttl", "max_ttl"):
                    self.unsupported(tok, tok.text, f"{UNKNOWN} (unicast_peer option)")
        self.origin([*path, "peers"], stmt)
        self.origin(path, stmt)

    def _track(self, stmt: Statement, kw: str, path: list[Any], track: dict[str, Any]) -> None:
        key = {
            "track_interface": "interfaces",
            "track_script": "scripts",
            "track_file": "files",
            "track_process": "processes",
        }[kw]
        items = track.setdefault(key, [])
        for s in self._block(stmt):
            # one-line blocks ("track_script { a b }") put several names on one statement
            words = [s.name, *s.words]
            tokens = [s.keyword, *s.args]
            i = 0
            while i < len(words):
                item: dict[str, Any] = {"name": words[i]}
                at = tokens[i]
                i += 1
                if i < len(words) and words[i] == "weight":
                    if i + 1 >= len(words):
                        self.error(tokens[i], "weight", "needs a number")
                        i += 1
                        continue
                    try:
                        item["weight"] = _integer(words[i + 1])
                    except _BadValue as exc:
                        self.error(tokens[i + 1], "weight", str(exc))
                    i += 2
                    if i < len(words) and words[i] in ("reverse", "noreverse", "no_reverse"):
                        item["weight_reverse"] = words[i] == "reverse"
                        i += 1
                self.origin([*path, key, len(items)], at)
                items.append(item["name"] if len(item) == 1 else item)
        self.origin([*path, key], stmt)

    def _vmac(self, stmt: Statement, path: list[Any], inst: dict[str, Any]) -> None:
        words = stmt.words
        name: str | bool = True
        for i, word in enumerate(words):
            if i == 0 and not _looks_like_mac(word):
                name = word
            else:
                self.unsupported(stmt.args[i], "use_vmac MAC", "vigil uses the RFC virtual MAC")
        inst["use_vmac"] = name
        self.origin([*path, "use_vmac"], stmt)

    # --- vrrp_sync_group ------------------------------------------------------------

    def sync_group(self, stmt: Statement) -> None:
        name = self._named(stmt)
        if name is None:
            return
        index = len(self.groups)
        path: list[Any] = ["vrrp_sync_groups", index]
        self.origin(path, stmt)
        group: dict[str, Any] = {"name": name, "members": []}
        weighted = False
        for s in self._block(stmt):
            kw = s.name
            if kw == "group":
                for tok in (t for child in self._block(s) for t in child.all_tokens()):
                    self.origin([*path, "members", len(group["members"])], tok)
                    group["members"].append(tok.text)
                    self.group_members.setdefault(tok.text, s)
                self.origin([*path, "members"], s)
            elif kw in NOTIFY_KEYS:
                self.uses_scripts = True
                notify = group.setdefault("notify", {})
                self.convert(s, [*path, "notify"], notify, NOTIFY_KEYS[kw], self._notify_command)
            elif kw == "sync_group_tracking_weight":
                weighted = True
            elif kw in GROUP_REASONS:
                self.unsupported(s, kw, GROUP_REASONS[kw])
            else:
                self.unsupported(s, kw, f"{UNKNOWN} (in vrrp_sync_group {name})")
        if weighted:
            self.group_weighted.update(group["members"])
        self.groups.append(group)

    def _apply_group_semantics(self, instance_stmts: list[Statement]) -> None:
        """keepalived zeroes the tracking weights of sync-group members; import that."""
        for inst, stmt in zip(self.instances, instance_stmts, strict=False):
            name = inst["name"]
            if name not in self.group_members or name in self.group_weighted:
                continue
            track = inst.get("track", {})
            changed = []
            for key in ("scripts", "files", "processes", "interfaces"):
                items = track.get(key, [])
                for i, item in enumerate(items):
                    entry = {"name": item} if isinstance(item, str) else dict(item)
                    weight = entry.get("weight")
                    if weight is None and key != "interfaces":
                        weight = self._tracker_weight(key, entry["name"])
                    if weight:
                        entry["weight"] = 0
                        entry.pop("weight_reverse", None)
                        items[i] = entry
                        changed.append(entry["name"])
            if changed:
                self.note(
                    stmt,
                    f"{name} is in a sync group, where keepalived ignores tracking weights "
                    f"(a failure means FAULT); imported weight 0 for: {', '.join(changed)}",
                )

    def _drop_v3_auth(self, instance_stmts: list[Statement]) -> None:
        """VRRPv3 has no authentication: keepalived ignores it there, and so does the import."""
        default = self.globals.get("vrrp_version", 2)
        for index, (inst, stmt) in enumerate(zip(self.instances, instance_stmts, strict=False)):
            if "authentication" in inst and inst.get("version", default) == 3:
                del inst["authentication"]
                where = self.result.origins.get(f"vrrp_instances[{index}].authentication")
                at = Token("authentication", *where) if where else stmt.keyword
                self.unsupported(
                    at,
                    "authentication",
                    f"{inst['name']} runs VRRPv3, which has no authentication; "
                    "keepalived ignores it too",
                )

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

    def _garp_defaults(self) -> None:
        """keepalived's lower-priority GARP burst defaults to the master burst (5 after 5 s);
        vigil's is a fixed 5 and 5 s, so carry keepalived's effective values over (they
        follow a changed master burst there)."""
        if not self.instances:
            return
        garp = self.globals.setdefault("garp", {})
        garp.setdefault("lower_prio_repeat", garp.get("master_repeat", 5))
        if "master_delay" in garp:
            garp.setdefault("lower_prio_delay", garp["master_delay"])

    def _finish(self) -> ImportResult:
        self._garp_defaults()
        config: dict[str, Any] = {}
        if self.globals:
            config["global"] = _ordered(
                self.globals,
                (
                    "router_id",
                    "script_user",
                    "script_security",
                    "vrrp_version",
                    "v3_checksum_pseudo_header",
                    "garp",
                ),
            )
        if self.scripts:
            config["vrrp_scripts"] = self.scripts
        if self.files:
            config["track_files"] = self.files
        if self.processes:
            config["track_processes"] = self.processes
        config["vrrp_instances"] = [_ordered(i, INSTANCE_ORDER) for i in self.instances]
        if self.groups:
            config["vrrp_sync_groups"] = self.groups
        self.result.config = _ordered(config, TOP_ORDER)
        return self.result


def _family(vip: Any) -> int:
    text = vip if isinstance(vip, str) else vip.get("address", "")
    try:
        return ipaddress.ip_interface(text).version
    except ValueError:
        return 4


def _is_prefix(word: str) -> bool:
    try:
        ipaddress.ip_network(word, strict=False)
    except ValueError:
        return False
    return True


def _looks_like_mac(word: str) -> bool:
    parts = word.split(":")
    return len(parts) in (5, 6) and all(len(p) == 2 for p in parts)


def _shell_word(word: str) -> str:
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
    result = _Converter(path).run(parsed.statements)
    result.files = parsed.files
    result.notes[:0] = parsed.notes
    return result


class _Dumper(yaml.SafeDumper):
    """Block-style YAML with indented lists, no aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _comment(text: str) -> str:
    return "\n".join(f"# {line}".rstrip() for line in text.splitlines() or [""])


def render_yaml(result: ImportResult) -> str:
    """The imported config as YAML, headed by comments naming the source and what was lost.

    Deterministic: same keepalived input, same bytes out.
    """
    head = [f"# vigil config imported from {result.source} by vigilctl import-keepalived."]
    if len(result.files) > 1:
        head.append("# Files read: " + ", ".join(result.files))
    if result.unsupported:
        head.append("# Not carried over:")
        head.extend(_comment(f"  {u}") for u in result.unsupported)
    if result.notes:
        head.append("# Notes:")
        head.extend(_comment(f"  {n}") for n in result.notes)
    if result.errors:
        head.append("# Could not convert:")
        head.extend(_comment(f"  {e}") for e in result.errors)
    body = yaml.dump(
        result.config,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )
    return "\n".join(head) + "\n" + body


def validation_errors(result: ImportResult) -> list[str]:
    """Validate the imported config with vigil's own schema; one located line per issue."""
    from vigil.config import ConfigError, validate_data

    try:
        validate_data(result.config, source=result.source, check_files=False)
    except ConfigError as exc:
        out = []
        for issue in exc.issues:
            where = result.origin_of(issue.path)
            prefix = f"{where[0]}:{where[1]}: " if where else ""
            out.append(
                f"{prefix}{issue.path}: {issue.message}"
                if issue.path
                else f"{prefix}{issue.message}"
            )
        return out
    return []


def import_main(
    path: str, out: TextIO | None = None, err: TextIO | None = None, fmt: str = "yaml"
) -> int:
    """`vigilctl import-keepalived FILE`: 0 valid, 1 invalid result, 2 unreadable input."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        result = import_keepalived(path)
    except KeepalivedParseError as exc:
        if fmt == "json":
            failed: dict[str, Any] = {
                "config": None,
                "unsupported": [],
                "notes": [],
                "errors": [str(exc)],
            }
            out.write(json.dumps(failed, indent=2) + "\n")
        err.write(f"{exc}\n")
        return 2
    errors = result.errors + validation_errors(result)
    if fmt == "json":
        doc: dict[str, Any] = {
            "config": result.config,
            "unsupported": [u.to_dict() for u in result.unsupported],
            "notes": list(result.notes),
            "errors": errors,
        }
        out.write(json.dumps(doc, indent=2) + "\n")
    else:
        out.write(render_yaml(result))
    for item in result.unsupported:
        err.write(f"{item}\n")
    for problem in errors:
        err.write(f"{problem}\n")
    return 1 if errors else 0
