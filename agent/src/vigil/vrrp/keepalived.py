"""VRRP's part of ``vigilctl import-keepalived``: vrrp_instance, vrrp_sync_group, VRRP globals.

The frame (:mod:`vigil.keepalived.convert`) walks keepalived.conf, keeps the bookkeeping
(where each vigil key came from, what was not carried over and why) and converts
``global_defs`` and the trackers; it hands the blocks below to this part, which fills
``vrrp_instances`` and ``vrrp_sync_groups`` and the VRRP keys of ``global``.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from vigil.keepalived.convert import (
    BadValue,
    Converter,
    ImporterPart,
    boolean,
    family_of,
    integer,
    is_prefix,
    looks_like_mac,
    ordered,
    seconds,
)
from vigil.keepalived.keywords import (
    GARP_KEYS,
    GROUP_REASONS,
    INSTANCE_ORDER,
    INSTANCE_REASONS,
    NOTIFY_KEYS,
    ROUTE_TYPES,
    ROUTE_VALUE_OPTIONS,
    UNKNOWN,
    VIP_FLAGS,
    VIP_VALUE_OPTIONS,
)
from vigil.keepalived.parser import Statement, Token

__all__ = ["VrrpImporter"]

#: VRRP's keys under ``global``, in the order the import writes them
GLOBAL_ORDER = ("vrrp_version", "v3_checksum_pseudo_header", "garp")


class VrrpImporter(ImporterPart):
    """Converts VRRP's blocks of keepalived.conf into VRRP's section of vigil.yml."""

    blocks = ("vrrp_instance",)
    late_blocks = ("vrrp_sync_group",)
    global_order = GLOBAL_ORDER

    def __init__(self, conv: Converter) -> None:
        super().__init__(conv)
        self.instances: list[dict[str, Any]] = []
        self.instance_stmts: list[Statement] = []
        self.groups: list[dict[str, Any]] = []
        self.group_members: dict[str, Statement] = {}
        self.group_weighted: set[str] = set()

    def block(self, stmt: Statement) -> None:
        if stmt.name == "vrrp_instance":
            self.vrrp_instance(stmt)
        else:
            self.sync_group(stmt)

    def global_keyword(self, stmt: Statement, path: list[Any], g: dict[str, Any]) -> bool:
        """The VRRP keywords of ``global_defs``; False for one that is not VRRP's."""
        name = stmt.name
        conv = self.conv
        if name == "vrrp_version":
            conv.convert(stmt, path, g, "vrrp_version", lambda x: integer(conv._one_arg(x)))
        elif name == "v3_checksum_as_v2":
            conv.convert(stmt, path, g, "v3_checksum_pseudo_header", lambda x: not boolean(x.words))
        elif name == "vrrp_min_garp":
            self._min_garp(stmt, path, g)
        elif name.startswith("vrrp_") and name[5:] in GARP_KEYS:
            self._garp(stmt, name[5:], path, g)
        else:
            return False
        return True

    def after_blocks(self) -> None:
        self._apply_group_semantics(self.instance_stmts)
        self._drop_v3_auth(self.instance_stmts)

    def finish(self, config: dict[str, Any]) -> None:
        self._garp_defaults()
        config["vrrp_instances"] = [ordered(i, INSTANCE_ORDER) for i in self.instances]
        if self.groups:
            config["vrrp_sync_groups"] = self.groups

    def _garp(self, stmt: Statement, kw: str, path: list[Any], target: dict[str, Any]) -> None:
        key, kind = GARP_KEYS[kw]
        garp = target.setdefault("garp", {})
        try:
            text = self.conv._one_arg(stmt)
            value: int | float = integer(text) if kind is int else seconds(text)
        except BadValue as exc:
            self.conv.error(stmt, stmt.name, str(exc))
            return
        if key == "interval" and "interval" in garp and garp["interval"] != value:
            self.conv.unsupported(
                stmt,
                stmt.name,
                f"vigil has one interval for GARP and NA; keeping {garp['interval']}",
            )
            return
        garp[key] = value
        self.conv.origin([*path, "garp", key], stmt, last=True)

    def _min_garp(self, stmt: Statement, path: list[Any], target: dict[str, Any]) -> None:
        try:
            on = boolean(stmt.words)
        except BadValue as exc:
            self.conv.error(stmt, stmt.name, str(exc))
            return
        if on:
            garp = target.setdefault("garp", {})
            garp.setdefault("master_repeat", 1)
            garp.setdefault("master_delay", 0)
            self.conv.origin([*path, "garp"], stmt)

    # --- vrrp_instance --------------------------------------------------------------

    def vrrp_instance(self, stmt: Statement) -> None:
        self.instance_stmts.append(stmt)
        name = self.conv._named(stmt)
        if name is None:
            return
        index = len(self.instances)
        path: list[Any] = ["vrrp_instances", index]
        self.conv.origin(path, stmt)
        inst: dict[str, Any] = {"name": name}
        self.conv.origin([*path, "name"], stmt)
        state: Statement | None = None
        for s in self.conv._block(stmt):
            kw = s.name
            if kw == "interface":
                self.conv.convert(s, path, inst, "interface", self.conv._one_arg)
            elif kw == "virtual_router_id":
                self.conv.convert(s, path, inst, "vrid", lambda x: integer(self.conv._one_arg(x)))
            elif kw == "priority":
                self.conv.convert(
                    s, path, inst, "priority", lambda x: integer(self.conv._one_arg(x))
                )
            elif kw == "advert_int":
                self.conv.convert(
                    s, path, inst, "advert_interval", lambda x: seconds(self.conv._one_arg(x))
                )
            elif kw == "version":
                self.conv.convert(
                    s, path, inst, "version", lambda x: integer(self.conv._one_arg(x))
                )
            elif kw in ("nopreempt", "no_preempt"):
                inst["preempt"] = False
                self.conv.origin([*path, "preempt"], s)
            elif kw == "preempt":
                inst.setdefault("preempt", True)
                self.conv.origin([*path, "preempt"], s)
            elif kw == "preempt_delay":
                self.conv.convert(
                    s, path, inst, "preempt_delay", lambda x: seconds(self.conv._one_arg(x))
                )
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
                self.conv.convert(s, [*path, "unicast"], uni, "source", self.conv._one_arg)
            elif kw == "unicast_peer":
                self._peers(s, [*path, "unicast"], inst.setdefault("unicast", {}))
            elif kw in (
                "track_interface",
                "track_script",
                "track_file",
                "track_process",
                "track_bfd",
            ):
                self._track(s, kw, [*path, "track"], inst.setdefault("track", {}))
            elif kw in NOTIFY_KEYS:
                self.conv.uses_scripts = True
                notify = inst.setdefault("notify", {})
                self.conv.convert(
                    s, [*path, "notify"], notify, NOTIFY_KEYS[kw], self.conv._notify_command
                )
            elif kw == "use_vmac":
                self._vmac(s, path, inst)
            elif kw in GARP_KEYS and kw != "gna_interval":
                self._garp(s, kw, path, inst)
            elif kw == "v3_checksum_as_v2":
                self.conv.convert(
                    s, path, inst, "v3_checksum_pseudo_header", lambda x: not boolean(x.words)
                )
            elif kw == "native_ipv6":
                self.conv.note(s, f"{name}: native_ipv6 is implied by IPv6 VIPs in vigil")
                inst["_native_ipv6"] = s
            elif kw == "accept":
                self.conv.note(s, f"{name}: accept is how vigil always behaves")
            elif kw in INSTANCE_REASONS:
                self.conv.unsupported(s, kw, INSTANCE_REASONS[kw])
            elif kw == "auth_type" or kw == "auth_pass":
                self.conv.unsupported(s, kw, "belongs inside authentication { }")
            else:
                self.conv.unsupported(s, kw, f"{UNKNOWN} (in vrrp_instance {name})")
        self._instance_semantics(inst, path, stmt, state)
        self.instances.append(inst)

    def _instance_semantics(
        self, inst: dict[str, Any], path: list[Any], stmt: Statement, state: Statement | None
    ) -> None:
        name = inst["name"]
        if state is not None:
            wanted = state.words[0].upper() if state.words else "?"
            self.conv.note(
                state,
                f"{name}: 'state {wanted}' is only a start-up hint in keepalived; vigil, like "
                "keepalived, starts every instance in BACKUP unless its priority is 255",
            )
        if inst.get("priority") == 255:
            inst["address_owner"] = True
            self.conv.origin([*path, "address_owner"], stmt)
            self.conv.note(stmt, f"{name}: priority 255 imported as address_owner: true")
        vips = inst.get("virtual_ipaddresses", [])
        six = any(family_of(v) == 6 for v in vips)
        native = inst.pop("_native_ipv6", None)
        if six or native is not None:
            if inst.get("version") == 2:
                self.conv.note(
                    stmt,
                    f"{name}: IPv6 instances always run VRRPv3 (keepalived ignores version 2)",
                )
            inst["version"] = 3
            self.conv.origin([*path, "version"], stmt)
        uni = inst.get("unicast")
        if uni is not None and "peers" not in uni:
            uni["peers"] = []

    def _auth(self, stmt: Statement, path: list[Any], inst: dict[str, Any]) -> None:
        kind: str | None = None
        password: Statement | None = None
        for s in self.conv._block(stmt):
            if s.name == "auth_type":
                kind = (s.words or ["?"])[0].upper()
                if kind == "AH":
                    self.conv.unsupported(
                        s, "auth_type AH", "IPsec AH authentication is not supported"
                    )
                elif kind != "PASS":
                    self.conv.error(s, "auth_type", f"{kind!r} is not PASS or AH")
            elif s.name == "auth_pass":
                password = s
            else:
                self.conv.unsupported(s, s.name, "unknown in authentication")
        if kind != "PASS":
            if password is not None and kind is None:
                self.conv.error(password, "auth_pass", "authentication has no auth_type PASS")
            return
        if password is None or not password.args:
            self.conv.error(stmt, "authentication", "auth_type PASS needs auth_pass")
            return
        text = password.args[0].text
        if len(text) > 8:
            self.conv.note(
                password,
                f"{inst['name']}: keepalived uses only the first 8 characters of auth_pass; "
                "imported those",
            )
            text = text[:8]
        inst["authentication"] = {"type": "pass", "password": text}
        self.conv.origin([*path, "authentication"], stmt)
        self.conv.origin([*path, "authentication", "password"], password)

    def _vips(self, stmt: Statement, path: list[Any], out: list[Any]) -> None:
        for s in self.conv._block(stmt):
            words = [s.name, *s.words]
            vip: dict[str, Any] = {"address": words[0]}
            try:
                net = ipaddress.ip_interface(words[0])
            except ValueError:
                self.conv.error(s, words[0], "is not an IP address (ADDR or ADDR/PREFIX)")
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
                        self.conv.unsupported(tokens[i], f"{opt} (VIP option)", "not supported")
                    i += 2
                    continue
                if opt in VIP_FLAGS:
                    self.conv.unsupported(tokens[i], f"{opt} (VIP option)", "not supported")
                else:
                    self.conv.unsupported(tokens[i], f"{opt} (VIP option)", UNKNOWN)
                i += 1
            if s.block is not None:
                self.conv.unsupported(s, f"{words[0]} {{...}}", "unexpected block")
            self.conv.origin([*path, len(out)], s)
            out.append(vip["address"] if len(vip) == 1 else vip)
        self.conv.origin(path, stmt)

    def _brd(self, tok: Token, net: Any, value: str) -> None:
        if net.version == 6:
            self.conv.unsupported(tok, "brd", "IPv6 has no broadcast address")
            return
        default = net.network.broadcast_address if net.network.prefixlen < 31 else None
        if value == "+" or (default is not None and value == str(default)):
            self.conv.note(tok, f"brd {value} is the standard broadcast of {net}, which vigil sets")
            return
        self.conv.unsupported(tok, "brd", f"vigil sets the standard broadcast address ({default})")

    def _routes(self, stmt: Statement, path: list[Any], out: list[Any]) -> None:
        for s in self.conv._block(stmt):
            tokens = [s.keyword, *s.args]
            words = [t.text for t in tokens]
            route: dict[str, Any] = {}
            i = 0
            while i < len(words):
                word = words[i]
                if word in ROUTE_TYPES:
                    if word != "unicast":
                        route["_type"] = word
                        self.conv.unsupported(
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
                            route[word] = integer(value)
                        except BadValue:
                            if word == "table" and value in ("main",):
                                pass
                            else:
                                self.conv.unsupported(
                                    tokens[i + 1], f"{word} {value}", "only numbers are supported"
                                )
                    else:
                        self.conv.unsupported(tokens[i], f"{word} (route option)", "not supported")
                    i += 2
                    continue
                if word in ("no_track", "onlink"):
                    self.conv.unsupported(tokens[i], f"{word} (route option)", "not supported")
                elif "to" not in route and (word == "default" or is_prefix(word)):
                    route["to"] = word
                else:
                    self.conv.unsupported(tokens[i], f"{word} (route option)", UNKNOWN)
                i += 1
            if "_type" in route:
                continue
            if "to" not in route:
                self.conv.error(s, "virtual_routes", "route has no destination (to PREFIX)")
                continue
            self.conv.origin([*path, len(out)], s)
            out.append(ordered(route, ("to", "via", "dev", "src", "metric", "table", "scope")))
        self.conv.origin(path, stmt)

    def _peers(self, stmt: Statement, path: list[Any], uni: dict[str, Any]) -> None:
        peers = uni.setdefault("peers", [])
        for s in self.conv._block(stmt):
            peers.append(s.name)
            self.conv.origin([*path, "peers", len(peers) - 1], s)
            for i, tok in enumerate(s.args):
                if tok.text in ("min_ttl", "max_ttl"):
                    self.conv.unsupported(tok, tok.text, "vigil requires TTL 255 on every advert")
                elif i == 0 or s.args[i - 1].text not in ("min_ttl", "max_ttl"):
                    self.conv.unsupported(tok, tok.text, f"{UNKNOWN} (unicast_peer option)")
        self.conv.origin([*path, "peers"], stmt)
        self.conv.origin(path, stmt)

    def _track(self, stmt: Statement, kw: str, path: list[Any], track: dict[str, Any]) -> None:
        key = {
            "track_interface": "interfaces",
            "track_script": "scripts",
            "track_file": "files",
            "track_process": "processes",
            "track_bfd": "bfd",
        }[kw]
        items = track.setdefault(key, [])
        for s in self.conv._block(stmt):
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
                        self.conv.error(tokens[i], "weight", "needs a number")
                        i += 1
                        continue
                    try:
                        item["weight"] = integer(words[i + 1])
                    except BadValue as exc:
                        self.conv.error(tokens[i + 1], "weight", str(exc))
                    i += 2
                    if i < len(words) and words[i] in ("reverse", "noreverse", "no_reverse"):
                        item["weight_reverse"] = words[i] == "reverse"
                        i += 1
                self.conv.origin([*path, key, len(items)], at)
                items.append(item["name"] if len(item) == 1 else item)
        self.conv.origin([*path, key], stmt)

    def _vmac(self, stmt: Statement, path: list[Any], inst: dict[str, Any]) -> None:
        words = stmt.words
        name: str | bool = True
        for i, word in enumerate(words):
            if i == 0 and not looks_like_mac(word):
                name = word
            else:
                self.conv.unsupported(
                    stmt.args[i], "use_vmac MAC", "vigil uses the RFC virtual MAC"
                )
        inst["use_vmac"] = name
        self.conv.origin([*path, "use_vmac"], stmt)

    # --- vrrp_sync_group ------------------------------------------------------------

    def sync_group(self, stmt: Statement) -> None:
        name = self.conv._named(stmt)
        if name is None:
            return
        index = len(self.groups)
        path: list[Any] = ["vrrp_sync_groups", index]
        self.conv.origin(path, stmt)
        group: dict[str, Any] = {"name": name, "members": []}
        weighted = False
        for s in self.conv._block(stmt):
            kw = s.name
            if kw == "group":
                for tok in (t for child in self.conv._block(s) for t in child.all_tokens()):
                    self.conv.origin([*path, "members", len(group["members"])], tok)
                    group["members"].append(tok.text)
                    self.group_members.setdefault(tok.text, s)
                self.conv.origin([*path, "members"], s)
            elif kw in NOTIFY_KEYS:
                self.conv.uses_scripts = True
                notify = group.setdefault("notify", {})
                self.conv.convert(
                    s, [*path, "notify"], notify, NOTIFY_KEYS[kw], self.conv._notify_command
                )
            elif kw == "sync_group_tracking_weight":
                weighted = True
            elif kw in GROUP_REASONS:
                self.conv.unsupported(s, kw, GROUP_REASONS[kw])
            else:
                self.conv.unsupported(s, kw, f"{UNKNOWN} (in vrrp_sync_group {name})")
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
                        weight = self.conv._tracker_weight(key, entry["name"])
                    if weight:
                        entry["weight"] = 0
                        entry.pop("weight_reverse", None)
                        items[i] = entry
                        changed.append(entry["name"])
            if changed:
                self.conv.note(
                    stmt,
                    f"{name} is in a sync group, where keepalived ignores tracking weights "
                    f"(a failure means FAULT); imported weight 0 for: {', '.join(changed)}",
                )

    def _drop_v3_auth(self, instance_stmts: list[Statement]) -> None:
        """VRRPv3 has no authentication: keepalived ignores it there, and so does the import."""
        default = self.conv.globals.get("vrrp_version", 2)
        for index, (inst, stmt) in enumerate(zip(self.instances, instance_stmts, strict=False)):
            if "authentication" in inst and inst.get("version", default) == 3:
                del inst["authentication"]
                where = self.conv.result.origins.get(f"vrrp_instances[{index}].authentication")
                at = Token("authentication", *where) if where else stmt.keyword
                self.conv.unsupported(
                    at,
                    "authentication",
                    f"{inst['name']} runs VRRPv3, which has no authentication; "
                    "keepalived ignores it too",
                )

    def _garp_defaults(self) -> None:
        """keepalived's lower-priority GARP burst defaults to the master burst (5 after 5 s);
        vigil's is a fixed 5 and 5 s, so carry keepalived's effective values over (they
        follow a changed master burst there)."""
        if not self.instances:
            return
        garp = self.conv.globals.setdefault("garp", {})
        garp.setdefault("lower_prio_repeat", garp.get("master_repeat", 5))
        if "master_delay" in garp:
            garp.setdefault("lower_prio_delay", garp["master_delay"])
