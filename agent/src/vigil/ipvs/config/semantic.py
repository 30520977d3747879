"""IPVS checks that span several parts of a config (and, optionally, the host).

The schema validated each part alone; here: names and services unique across virtual
servers (groups expanded), what real servers inherit and whether it makes sense with
their forwarding method and family, quorum against the weights that can ever be there,
references to VRRP instances, groups and track files, every checker's settings (built
here with what they inherit, so the engine gets exactly what was checked), and the
programs notify and MISC checks would run. Every message names the fix.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from vigil.config import files
from vigil.config.section import SectionInput
from vigil.config.validators import did_you_mean
from vigil.ipvs.checkers.settings import (
    CheckSettings,
    FileCheck,
    MiscCheck,
    NetCheck,
    SettingsError,
)
from vigil.track.config import program_problem

from .checks import build_check, defaults_for, settings_message
from .model import SCHEDULER_FLAGS, Endpoint

FAMILY = {4: "IPv4", 6: "IPv6"}
#: one group member may stand for at most this many addresses
MAX_RANGE = 1024


@dataclass
class Validated:
    """Schema-validated IPVS items (None: failed the schema) and what the checks derived."""

    virtual_servers: list[dict[str, Any] | None] = field(default_factory=list)
    groups: list[dict[str, Any] | None] = field(default_factory=list)
    sync_daemon: dict[str, Any] | None = None
    #: per virtual server index: its name, its services, its family
    names: dict[int, str] = field(default_factory=dict)
    endpoints: dict[int, list[Endpoint]] = field(default_factory=dict)
    families: dict[int, int] = field(default_factory=dict)
    #: (vs, rs, check) -> the engine settings
    settings: dict[tuple[int, int, int], CheckSettings] = field(default_factory=dict)
    #: the names VRRP defines, and its instances' VRIDs
    vrrp_instances: dict[str, int | None] = field(default_factory=dict)
    track_files: dict[str, Any] = field(default_factory=dict)
    #: the session names the bfd section defines
    bfd_sessions: list[str] = field(default_factory=list)


def expand_member(text: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """``10.0.0.1``, ``10.0.0.1-10``, ``10.0.0.250-10.0.1.10`` or ``10.0.0.8/29``.

    ValueError says what is wrong; a range stands for at most MAX_RANGE addresses.
    """
    text = text.strip()
    if "/" in text:
        net = ipaddress.ip_network(text, strict=False)
        if net.num_addresses > MAX_RANGE:
            raise ValueError(
                f"{text!r} stands for {net.num_addresses} addresses (at most {MAX_RANGE})"
            )
        if net.num_addresses == 1:
            return [net.network_address]
        return list(net)
    first_text, dash, last_text = text.partition("-")
    first = ipaddress.ip_address(first_text)
    if not dash:
        return [first]
    if "." in last_text or ":" in last_text:
        last = ipaddress.ip_address(last_text)
    else:
        # the last part of the first address replaced: 10.0.0.1-10, fd00::1-a
        if first.version == 4:
            last = ipaddress.ip_address(first_text.rsplit(".", 1)[0] + "." + last_text)
        else:
            last = ipaddress.ip_address(first_text.rsplit(":", 1)[0] + ":" + last_text)
    if last.version != first.version or int(last) < int(first):
        raise ValueError(f"{text!r}: the range must run from low to high within one family")
    count = int(last) - int(first) + 1
    if count > MAX_RANGE:
        raise ValueError(f"{text!r} stands for {count} addresses (at most {MAX_RANGE})")
    return [ipaddress.ip_address(int(first) + i) for i in range(count)]


def default_name(vs: dict[str, Any]) -> str:
    """A virtual server's name when it has none: ``tcp_10.0.0.1_80``, ``fwmark_5``."""
    if vs.get("group") is not None:
        return f"{vs['group']}_{vs['protocol']}"
    if vs.get("fwmark") is not None:
        return f"fwmark_{vs['fwmark']}" + ("_v6" if vs.get("family") == 6 else "")
    return f"{vs['protocol']}_{vs.get('address')}_{vs.get('port') or 0}"


class SemanticChecker:
    """Collects cross-part issues of IPVS's section."""

    def __init__(self, inp: SectionInput, v: Validated) -> None:
        self.inp = inp
        self.v = v
        self.glob = inp.glob

    def error(self, path: list[Any], message: str) -> None:
        self.inp.error(path, message)

    def run(self) -> None:
        groups = self._groups()
        seen_names: dict[str, int] = {}
        seen_services: dict[str, tuple[int, str]] = {}
        for i, vs in enumerate(self.v.virtual_servers):
            if vs is None:
                continue
            base: list[Any] = ["virtual_servers", i]
            vs_name = vs.get("name") or default_name(vs)
            self.v.names[i] = vs_name
            if vs_name in seen_names and vs.get("name"):
                self.error(
                    [*base, "name"],
                    f"virtual server name {vs_name!r} is already used by "
                    f"virtual_servers[{seen_names[vs_name]}]; give each a unique name",
                )
            seen_names.setdefault(vs_name, i)
            endpoints = self._endpoints(base, vs, groups)
            if endpoints is None:
                continue
            self.v.endpoints[i] = endpoints
            for ep in endpoints:
                if ep.key in seen_services:
                    other, other_name = seen_services[ep.key]
                    self.error(
                        base,
                        f"{ep} is already served by virtual_servers[{other}] ({other_name}); "
                        "an IPVS service belongs to one virtual server",
                    )
                    break
                seen_services[ep.key] = (i, vs_name)
            self._virtual_server(base, vs)
        self._sync_daemon()
        if self.inp.check_files:
            self._host()

    # -- groups -------------------------------------------------------------------------

    def _groups(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for g, group in enumerate(self.v.groups):
            if group is None:
                continue
            if group["name"] in out:
                self.error(
                    ["virtual_server_groups", g, "name"],
                    f"group name {group['name']!r} is already used; names must be unique",
                )
                continue
            members: list[dict[str, Any]] = []
            families: set[int] = set()
            for m, member in enumerate(group["members"]):
                path = ["virtual_server_groups", g, "members", m]
                has_addr = member.get("address") is not None
                has_mark = member.get("fwmark") is not None
                if has_addr == has_mark:
                    self.error(path, "give either address (with port) or fwmark")
                    continue
                if has_mark:
                    if member.get("port") is not None:
                        self.error([*path, "port"], "a fwmark member has no port")
                    members.append({"fwmark": member["fwmark"], "family": member["family"]})
                    families.add(member["family"])
                    continue
                try:
                    addrs = expand_member(member["address"])
                except ValueError as exc:
                    text = str(exc).replace("does not appear to be", "is not")
                    self.error([*path, "address"], text)
                    continue
                families.add(addrs[0].version)
                members.append({"addresses": addrs, "port": member.get("port")})
            if len(families) > 1:
                self.error(
                    ["virtual_server_groups", g, "members"],
                    "mixes IPv4 and IPv6; a group serves one address family: split it in two",
                )
            out[group["name"]] = members
        return out

    def _endpoints(
        self, base: list[Any], vs: dict[str, Any], groups: dict[str, list[dict[str, Any]]]
    ) -> list[Endpoint] | None:
        given = [k for k in ("address", "fwmark", "group") if vs.get(k) is not None]
        if len(given) != 1:
            what = "none" if not given else " and ".join(given)
            self.error(
                base,
                f"a virtual server is an address (with port), a fwmark or a group; got {what}",
            )
            return None
        persistent = vs.get("persistence") is not None
        if vs.get("address") is not None:
            addr = vs["address"]
            self.v.families[self._index(base)] = addr.version
            if vs.get("family") is not None and vs["family"] != addr.version:
                self.error(
                    [*base, "family"],
                    f"{addr} is {FAMILY[addr.version]}; remove family (it follows the address)",
                )
            if vs.get("port") is None:
                self.error(
                    [*base, "port"],
                    "required key missing; a virtual server needs a port (0, every port, only "
                    "with persistence)",
                )
                return None
            if vs["port"] == 0 and not persistent:
                self.error(
                    [*base, "port"],
                    "port 0 (every port) needs persistence; set a port or add persistence",
                )
            return [Endpoint(vs["protocol"], addr, vs["port"], family=addr.version)]
        if vs.get("port") is not None:
            self.error([*base, "port"], f"a {given[0]} virtual server has no port of its own")
        if vs.get("fwmark") is not None:
            family = vs.get("family") or 4
            self.v.families[self._index(base)] = family
            return [Endpoint(fwmark=vs["fwmark"], family=family)]
        group = vs["group"]
        if group not in groups:
            hint = did_you_mean(group, groups) or "; define it under virtual_server_groups"
            self.error([*base, "group"], f"no virtual server group named {group!r}{hint}")
            return None
        out: list[Endpoint] = []
        family = 4
        for member in groups[group]:
            if "fwmark" in member:
                family = member["family"]
                out.append(Endpoint(fwmark=member["fwmark"], family=family))
                continue
            port = member["port"]
            if port is None or port == 0:
                if not persistent:
                    self.error(
                        [*base, "group"],
                        f"group {group!r} has a member without a port, which needs "
                        "persistence; give the member a port or add persistence",
                    )
                    return None
                port = 0
            for addr in member["addresses"]:
                family = addr.version
                out.append(Endpoint(vs["protocol"], addr, port, family=addr.version))
        self.v.families[self._index(base)] = family
        return out

    @staticmethod
    def _index(base: list[Any]) -> int:
        return int(base[1])

    # -- one virtual server -------------------------------------------------------------

    def _virtual_server(self, base: list[Any], vs: dict[str, Any]) -> None:
        i = self._index(base)
        family = self.v.families.get(i, 4)
        sched = vs["scheduler"]
        for f, flag in enumerate(vs["scheduler_flags"]):
            owner = next((s for s, names in SCHEDULER_FLAGS.items() if flag in names), None)
            if owner is not None and owner != sched:
                self.error(
                    [*base, "scheduler_flags", f],
                    f"{flag} belongs to the {owner} scheduler, not {sched}; remove it or use "
                    f"scheduler: {owner}",
                )
        if vs["one_packet"] and vs.get("address") is not None and vs["protocol"] != "udp":
            self.error(
                [*base, "one_packet"],
                "one-packet scheduling is for UDP services; remove it or use protocol: udp",
            )
        persistence = vs.get("persistence")
        if persistence is not None and persistence.get("granularity") is not None:
            prefix = persistence["granularity"]
            top = 32 if family == 4 else 128
            low = 0 if family == 4 else 1
            if not low <= prefix <= top:
                self.error(
                    [*base, "persistence", "granularity"],
                    f"must be a {FAMILY[family]} prefix length {low}..{top}, got {prefix}",
                )
        self._forwarding(base, vs, None)
        vs_port = vs.get("port") if vs.get("address") is not None else None
        seen: dict[tuple[Any, int], int] = {}
        passthrough: dict[Any, int] = {}
        total = 0
        dynamic = False
        for j, rs in enumerate(vs["real_servers"]):
            path = [*base, "real_servers", j]
            method = self._forwarding(path, rs, vs)
            port = rs.get("port")
            if port is None:
                port = vs_port or 0
            rs_family = rs["address"].version
            if rs_family != family and method != "tun":
                self.error(
                    [*path, "address"],
                    f"{rs['address']} is {FAMILY[rs_family]} but the virtual server is "
                    f"{FAMILY[family]}; only tunnelled real servers may differ "
                    "(forwarding: tun)",
                )
            if method in ("dr", "tun") and vs_port and rs.get("port") not in (None, 0, vs_port):
                self.error(
                    [*path, "port"],
                    f"{'direct routing' if method == 'dr' else 'tunnelling'} cannot change the "
                    f"port: the real server gets the packet as sent to port {vs_port}; use "
                    f"port {vs_port} or leave port out",
                )
            key = (rs["address"], port)
            if key in seen:
                self.error(
                    path,
                    f"real server {rs['address']}:{port} is listed twice (first as "
                    f"real_servers[{seen[key]}]); list each once",
                )
            seen.setdefault(key, j)
            if method in ("dr", "tun") and not vs_port:
                # the kernel holds such a destination on the service's port (0 for a
                # firewall mark), so one address can be there once
                first = passthrough.setdefault(rs["address"], j)
                if first != j:
                    self.error(
                        [*path, "address"],
                        f"{rs['address']} is already real_servers[{first}]; with forwarding "
                        f"{method} the kernel holds one destination per address on the "
                        "service's own port, whatever port is configured: list the address "
                        "once (a check can still probe another port with connect_port)",
                    )
            upper, lower = rs["upper_threshold"], rs["lower_threshold"]
            if upper and lower > upper:
                self.error(
                    [*path, "lower_threshold"],
                    f"must not exceed upper_threshold ({upper}); IPVS resumes a server below "
                    "the lower threshold after it reached the upper one",
                )
            if lower and not upper:
                self.error(
                    [*path, "lower_threshold"],
                    "has no effect without upper_threshold; set both or neither",
                )
            total += rs["weight"]
            dynamic |= self._checks(path, i, j, vs, rs, port)
        self._quorum(base, vs, total, dynamic)
        self._sorry(base, vs, family, vs_port, seen)
        if vs.get("ha_suspend") is not None:
            self._vrrp_ref([*base, "ha_suspend"], vs["ha_suspend"])

    def _forwarding(
        self, path: list[Any], item: dict[str, Any], parent: dict[str, Any] | None
    ) -> str:
        """The item's forwarding method (its own, else its virtual server's); checks its tunnel."""
        method = item.get("forwarding")
        if method is None:
            method = parent.get("forwarding") if parent is not None else None
        method = method or "nat"
        tunnel = item.get("tunnel")
        if tunnel is None and parent is not None and method == "tun":
            tunnel = parent.get("tunnel")
            if tunnel is not None:
                return method  # checked where it was written
        if tunnel is None:
            return method
        if method != "tun":
            self.error(
                [*path, "tunnel"],
                f"only for forwarding: tun (this is {method}); remove tunnel or set "
                "forwarding: tun",
            )
            return method
        ttype = tunnel["type"]
        if ttype == "gue" and tunnel.get("port") is None:
            self.error([*path, "tunnel", "port"], "required for a gue tunnel: the UDP port")
        if ttype != "gue" and tunnel.get("port") is not None:
            self.error(
                [*path, "tunnel", "port"], f"only gue tunnels have a port ({ttype} has none)"
            )
        checksum = tunnel.get("checksum")
        if checksum is not None and ttype == "ipip":
            self.error([*path, "tunnel", "checksum"], "ipip tunnels have no checksum option")
        if checksum == "remcsum" and ttype == "gre":
            self.error(
                [*path, "tunnel", "checksum"], "gre tunnels take nocsum or csum, not remcsum"
            )
        return method

    def _checks(
        self, path: list[Any], i: int, j: int, vs: dict[str, Any], rs: dict[str, Any], port: int
    ) -> bool:
        """Build each checker's settings (reporting their problems); True if any is dynamic."""
        defaults = defaults_for(vs, rs, self.glob)
        dynamic = False
        for k, check in enumerate(rs["checks"]):
            try:
                settings = build_check(check, defaults, self.v.track_files, self.v.bfd_sessions)
            except SettingsError as exc:
                self.error([*path, "checks", k], settings_message(exc))
                continue
            self.v.settings[(i, j, k)] = settings
            if isinstance(settings, MiscCheck) and settings.misc_dynamic:
                dynamic = True
            if isinstance(settings, FileCheck) and settings.weight != 0:
                dynamic = True
            if (
                isinstance(settings, NetCheck)
                and settings.NEEDS_PORT
                and not port
                and settings.connect_port is None
            ):
                self.error(
                    [*path, "checks", k],
                    f"a {check['type']} check needs a port and this real server has none "
                    "(port 0: every port); set connect_port",
                )
        return dynamic

    def _quorum(self, base: list[Any], vs: dict[str, Any], total: int, dynamic: bool) -> None:
        quorum, hysteresis = vs["quorum"], vs["hysteresis"]
        if quorum and hysteresis >= quorum:
            self.error(
                [*base, "hysteresis"],
                f"must be smaller than quorum ({quorum}): quorum is lost below "
                "quorum - hysteresis and regained at quorum + hysteresis",
            )
        if quorum > total and not dynamic and vs["real_servers"]:
            self.error(
                [*base, "quorum"],
                f"{quorum} can never be reached: the real servers' weights add up to {total}; "
                "lower quorum or raise the weights",
            )

    def _sorry(
        self,
        base: list[Any],
        vs: dict[str, Any],
        family: int,
        vs_port: int | None,
        seen: dict[tuple[Any, int], int],
    ) -> None:
        sorry = vs.get("sorry_server")
        if sorry is None:
            return
        path = [*base, "sorry_server"]
        method = self._forwarding(path, sorry, vs)
        if sorry["address"].version != family and method != "tun":
            self.error(
                [*path, "address"],
                f"{sorry['address']} is {FAMILY[sorry['address'].version]} but the virtual "
                f"server is {FAMILY[family]}; only a tunnelled sorry server may differ",
            )
        port = sorry.get("port")
        if port is None:
            port = vs_port or 0
        if method in ("dr", "tun") and vs_port and sorry.get("port") not in (None, 0, vs_port):
            self.error(
                [*path, "port"],
                f"direct routing and tunnelling cannot change the port; use {vs_port} or "
                "leave port out",
            )
        if (sorry["address"], port) in seen:
            self.error(
                path,
                f"{sorry['address']}:{port} is also a real server of this virtual server; "
                "a sorry server must be another server",
            )

    def _vrrp_ref(self, path: list[Any], instance: str) -> None:
        known = self.v.vrrp_instances
        if instance not in known:
            hint = did_you_mean(instance, known) or "; define it in vrrp_instances"
            self.error(path, f"no VRRP instance named {instance!r}{hint}")

    def _sync_daemon(self) -> None:
        sync = self.v.sync_daemon
        if sync is not None and sync.get("instance") is not None:
            self._vrrp_ref(["ipvs_sync_daemon", "instance"], sync["instance"])

    # -- the host -----------------------------------------------------------------------

    def _host(self) -> None:
        secure = bool(self.glob.get("script_security", True))
        for i, vs in enumerate(self.v.virtual_servers):
            if vs is None:
                continue
            base: list[Any] = ["virtual_servers", i]
            for key in ("quorum_up", "quorum_down"):
                if vs.get(key):
                    self._program([*base, key], vs[key], secure)
            for j, rs in enumerate(vs["real_servers"]):
                path = [*base, "real_servers", j]
                for key in ("notify_up", "notify_down"):
                    if rs.get(key):
                        self._program([*path, key], rs[key], secure)
                for k, check in enumerate(rs["checks"]):
                    cpath = [*path, "checks", k]
                    if check["type"] == "misc":
                        self._program([*cpath, "command"], check["command"], secure)
                        if check.get("user"):
                            problem = files.user_problem(check["user"])
                            if problem:
                                self.error([*cpath, "user"], problem)
                    if check.get("ca_file") and not _readable(check["ca_file"]):
                        self.error(
                            [*cpath, "ca_file"], f"{check['ca_file']!r} is not a readable file"
                        )

    def _program(self, path: list[Any], command: str, secure: bool) -> None:
        problem = program_problem(command, secure)
        if problem:
            self.error(path, problem)


def _readable(path: str) -> bool:
    import os

    return os.path.isfile(path) and os.access(path, os.R_OK)


def valid_items(items: Iterable[dict[str, Any] | None]) -> list[tuple[int, dict[str, Any]]]:
    return [(i, item) for i, item in enumerate(items) if item is not None]
