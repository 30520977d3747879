"""VRRP checks that span several parts of a config (and, optionally, the host).

The schema validates each part alone; here we check what only makes sense together:
unique names, VRIDs per (interface, family), families of VIPs and peers, references to
trackers and sync-group members, and the programs the agent would run. Each message names
the fix. Items that failed the schema are checked in their salvaged form (the broken bits
cut out, see vigil.config.section), and issues name the list indices the user wrote.
Trackers that failed still count as defined, so a typo there does not cause a second error.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from vigil.config.section import SectionInput
from vigil.config.validators import did_you_mean
from vigil.track.config import program_problem

from . import resolve

FAMILY = {4: "IPv4", 6: "IPv6"}


@dataclass
class Validated:
    """Schema-validated VRRP items; a None item failed the schema (already reported)."""

    instances: list[dict[str, Any] | None] = field(default_factory=list)
    sync_groups: list[dict[str, Any] | None] = field(default_factory=list)
    raw_instance_names: list[Any] = field(default_factory=list)
    #: the trackers' section as validated (names defined there, their weights)
    scripts: dict[str, Any] = field(default_factory=dict)
    track_files: dict[str, Any] = field(default_factory=dict)
    track_processes: dict[str, Any] = field(default_factory=dict)
    #: the bfd section as validated: session names (also of broken sessions) -> the
    #: resolved session, or None for one that failed its own checks (already reported)
    bfd_sessions: dict[str, Any] = field(default_factory=dict)


class SemanticChecker:
    """Collects cross-part issues for one config."""

    def __init__(self, inp: SectionInput, validated: Validated) -> None:
        self.inp = inp
        self.s = validated
        self.glob = inp.glob
        self.check_files = inp.check_files

    def where(self, path: list[Any]) -> str:
        return self.inp.where(path)

    def error(self, path: list[Any], message: str) -> None:
        self.inp.error(path, message)

    def run(self) -> None:
        for index, inst in enumerate(self.s.instances):
            if inst is not None:
                self._instance(index, inst)
        self._unique_names()
        self._vrids()
        self._vmacs()
        self._sync_groups()
        if self.check_files:
            self._host_checks()

    # -- one instance -------------------------------------------------------------------

    def _instance(self, i: int, inst: dict[str, Any]) -> None:
        base: list[Any] = ["vrrp_instances", i]
        family = resolve.vip_family(inst)
        fam = FAMILY[family]
        version = resolve.version(inst, self.glob)

        for j, vip in enumerate(inst["virtual_ipaddresses"]):
            if vip["address"].version != family:
                self.error(
                    [*base, "virtual_ipaddresses", j],
                    f"{vip['address']} is {FAMILY[vip['address'].version]} but the first VIP is "
                    f"{fam}; an instance advertises one family: move it to "
                    "virtual_ipaddresses_excluded or to its own instance",
                )
        self._vip_details(base, inst)

        if family == 6 and inst.get("version") == 2:
            self.error(
                [*base, "version"],
                "IPv6 instances use VRRPv3; set version: 3 or leave version out",
            )

        priority = resolve.priority(inst)
        if priority == 255 and not inst["address_owner"]:
            self.error(
                [*base, "priority"],
                "priority 255 is reserved for the address owner; use 1..254, or set "
                "address_owner: true if this node really owns the VIPs",
            )
        if inst["address_owner"] and priority != 255:
            self.error(
                [*base, "address_owner"],
                f"an address owner always has priority 255 (priority is {priority}); remove "
                "priority or set address_owner: false",
            )

        interval = inst["advert_interval"]
        if version == 2 and (not float(interval).is_integer() or interval < 1):
            self.error(
                [*base, "advert_interval"],
                f"VRRPv2 advertises whole seconds (1..255), got {interval:g}; use a whole "
                "number or set version: 3 for sub-second intervals",
            )
        elif version == 3:
            centis = interval * 100
            if interval > 40.95:
                self.error(
                    [*base, "advert_interval"],
                    f"VRRPv3 intervals are at most 40.95 s, got {interval:g}",
                )
            elif abs(centis - round(centis)) > 1e-6:
                self.error(
                    [*base, "advert_interval"],
                    f"VRRPv3 intervals are whole centiseconds (0.01 steps), got {interval:g}; "
                    f"use {round(centis) / 100:g}",
                )

        if inst.get("authentication") is not None and version != 2:
            self.error(
                [*base, "authentication"],
                "authentication exists only in VRRPv2 (RFC 5798 removed it); remove it or "
                "set version: 2 (IPv4 only)",
            )

        unicast = inst.get("unicast")
        if unicast is not None:
            peers = unicast["peers"]
            if not peers:
                self.error(
                    [*base, "unicast", "peers"],
                    "must not be empty: list the other nodes' addresses, or remove unicast "
                    "to use multicast",
                )
            seen: dict[Any, int] = {}
            for k, peer in enumerate(peers):
                if peer.version != family:
                    self.error(
                        [*base, "unicast", "peers", k],
                        f"{peer} is {FAMILY[peer.version]} but this instance's VIPs are {fam}; "
                        "peers must be of the VIP family",
                    )
                if peer in seen:
                    self.error(
                        [*base, "unicast", "peers", k],
                        f"{peer} is listed twice (first as "
                        f"{self.where([*base, 'unicast', 'peers', seen[peer]])}); remove one",
                    )
                seen.setdefault(peer, k)
            source = unicast.get("source")
            if source is not None and source.version != family:
                self.error(
                    [*base, "unicast", "source"],
                    f"{source} is {FAMILY[source.version]} but this instance's VIPs are "
                    f"{fam}; use an address of this node in {fam}",
                )
            if source is not None and source in seen:
                self.error(
                    [*base, "unicast", "source"],
                    f"{source} is both the source and a peer; peers are the other nodes",
                )

        self._routes(base, inst, family)
        self._track_refs(base, inst)

    def _vip_details(self, base: list[Any], inst: dict[str, Any]) -> None:
        seen: dict[Any, str] = {}
        for key in ("virtual_ipaddresses", "virtual_ipaddresses_excluded"):
            for j, vip in enumerate(inst[key]):
                where = self.where([*base, key, j])
                ip = vip["address"].ip
                if ip in seen:
                    self.error(
                        [*base, key, j],
                        f"{ip} is already configured as {seen[ip]}; list each address once",
                    )
                seen.setdefault(ip, where)
                label = vip.get("label")
                if label is None:
                    continue
                dev = vip.get("dev") or inst["interface"]
                if vip["address"].version == 6:
                    self.error(
                        [*base, key, j, "label"],
                        "labels exist only for IPv4 addresses; remove the label",
                    )
                elif label != dev and not label.startswith(dev + ":"):
                    self.error(
                        [*base, key, j, "label"],
                        f"label {label!r} must be the device name or start with '{dev}:' "
                        f"(e.g. '{dev}:vip')",
                    )

    def _routes(self, base: list[Any], inst: dict[str, Any], family: int) -> None:
        for j, route in enumerate(inst["virtual_routes"]):
            to = route["to"]
            explicit = [a for a in (route.get("via"), route.get("src")) if a is not None]
            route_family = (
                to.version if to != "default" else (explicit[0].version if explicit else family)
            )
            for key in ("via", "src"):
                addr = route.get(key)
                if addr is not None and addr.version != route_family:
                    self.error(
                        [*base, "virtual_routes", j, key],
                        f"{addr} is {FAMILY[addr.version]} but the route is "
                        f"{FAMILY[route_family]}; use an address of the route's family",
                    )

    def _track_refs(self, base: list[Any], inst: dict[str, Any]) -> None:
        track = inst["track"]
        kinds = (
            ("scripts", "vrrp_scripts", self.s.scripts),
            ("files", "track_files", self.s.track_files),
            ("processes", "track_processes", self.s.track_processes),
        )
        for kind, section, defined in kinds:
            names: dict[str, int] = {}
            for k, ref in enumerate(track[kind]):
                ref_name = ref["name"]
                if ref_name not in defined:
                    hint = did_you_mean(ref_name, defined) or f"; define it under {section}"
                    self.error(
                        [*base, "track", kind, k, "name"],
                        f"no {section} entry named {ref_name!r}{hint}",
                    )
                if ref_name in names:
                    self.error(
                        [*base, "track", kind, k],
                        f"{ref_name!r} is tracked twice (first as "
                        f"{self.where([*base, 'track', kind, names[ref_name]])}); remove one",
                    )
                names.setdefault(ref_name, k)
        seen_if: dict[str, int] = {}
        for k, item in enumerate(track["interfaces"]):
            if item["name"] in seen_if:
                self.error(
                    [*base, "track", "interfaces", k],
                    f"{item['name']!r} is tracked twice (first as "
                    f"{self.where([*base, 'track', 'interfaces', seen_if[item['name']]])}); "
                    "remove one",
                )
            seen_if.setdefault(item["name"], k)
        self._bfd_refs(base, inst)
        if inst["address_owner"]:
            for kind in ("interfaces", "scripts", "files", "processes", "bfd"):
                for k, ref in enumerate(track[kind]):
                    weight = ref.get("weight")
                    if weight is None:
                        weight = self._tracker_weight(kind, ref["name"])
                    if weight:
                        self.error(
                            [*base, "track", kind, k, "weight"],
                            "an address owner's priority is fixed at 255, so tracking weights "
                            "cannot move it; use weight 0 (failure means FAULT)",
                        )

    def _bfd_refs(self, base: list[Any], inst: dict[str, Any]) -> None:
        """``track.bfd`` and ``fast_takeover_bfd`` name sessions of the bfd section."""
        sessions = self.s.bfd_sessions

        def unknown(path: list[Any], session: str) -> bool:
            if session in sessions:
                return False
            hint = did_you_mean(session, sessions) or (
                f"; sessions here: {', '.join(sessions)}"
                if sessions
                else "; define it under bfd.sessions"
            )
            self.error(path, f"no BFD session named {session!r}{hint}")
            return True

        names: dict[str, int] = {}
        for k, ref in enumerate(inst["track"]["bfd"]):
            unknown([*base, "track", "bfd", k, "name"], ref["name"])
            if ref["name"] in names:
                self.error(
                    [*base, "track", "bfd", k],
                    f"{ref['name']!r} is tracked twice (first as "
                    f"{self.where([*base, 'track', 'bfd', names[ref['name']]])}); remove one",
                )
            names.setdefault(ref["name"], k)
        fast = inst.get("fast_takeover_bfd")
        if fast is None:
            return
        path = [*base, "fast_takeover_bfd"]
        if unknown(path, fast):
            return
        if inst["address_owner"]:
            self.error(
                path,
                "the address owner is master whenever it runs; fast takeover is for backups: "
                "remove it",
            )
        session = sessions[fast]
        if session is None:
            return  # the session has problems of its own, reported under bfd.sessions
        peer = session["peer"]
        family = resolve.vip_family(inst)
        if peer.version != family:
            self.error(
                path,
                f"session {fast!r} runs to {peer} (IPv{peer.version}) but the instance "
                f"advertises IPv{family}: the session must run to the address the master "
                "advertises from",
            )
        unicast = inst.get("unicast")
        if unicast is not None and peer not in unicast["peers"]:
            self.error(
                path,
                f"session {fast!r} runs to {peer}, which is not one of the unicast peers "
                f"({', '.join(str(p) for p in unicast['peers'])}): it must run to the master",
            )

    def _tracker_weight(self, kind: str, tracker: str) -> int:
        table = {
            "scripts": self.s.scripts,
            "files": self.s.track_files,
            "processes": self.s.track_processes,
        }.get(kind, {})
        entry = table.get(tracker)
        return int(entry["weight"]) if entry else 0

    # -- across instances ---------------------------------------------------------------

    def _valid_instances(self) -> Iterable[tuple[int, dict[str, Any]]]:
        for index, inst in enumerate(self.s.instances):
            if inst is not None:
                yield index, inst

    def _unique_names(self) -> None:
        first: dict[str, int] = {}
        for index, raw in enumerate(self.s.raw_instance_names):
            if not isinstance(raw, str):
                continue
            if raw in first:
                self.error(
                    ["vrrp_instances", index, "name"],
                    f"instance name {raw!r} is already used by vrrp_instances[{first[raw]}]; "
                    "names must be unique",
                )
            else:
                first[raw] = index

    def _vrids(self) -> None:
        used: dict[tuple[str, int, int], tuple[int, str]] = {}
        for index, inst in self._valid_instances():
            family = resolve.vip_family(inst)
            key = (inst["interface"], family, inst["vrid"])
            if key in used:
                other, other_name = used[key]
                self.error(
                    ["vrrp_instances", index, "vrid"],
                    f"VRID {inst['vrid']} is already used on {inst['interface']} for "
                    f"{FAMILY[family]} by vrrp_instances[{other}] ({other_name}); pick another "
                    "VRID",
                )
            else:
                used[key] = (index, inst["name"])

    def _vmacs(self) -> None:
        used: dict[str, tuple[int, str]] = {}
        for index, inst in self._valid_instances():
            vmac = resolve.vmac_name(inst)
            if vmac is None:
                continue
            if vmac == inst["interface"]:
                self.error(
                    ["vrrp_instances", index, "use_vmac"],
                    f"the macvlan cannot have the name of its parent {vmac!r}; pick another name",
                )
            if vmac in used:
                other, other_name = used[vmac]
                self.error(
                    ["vrrp_instances", index, "use_vmac"],
                    f"macvlan {vmac!r} is already used by vrrp_instances[{other}] ({other_name}); "
                    "give each instance its own use_vmac name",
                )
            else:
                used[vmac] = (index, inst["name"])

    def _sync_groups(self) -> None:
        instance_names = [n for n in self.s.raw_instance_names if isinstance(n, str)]
        group_names: dict[str, int] = {}
        member_of: dict[str, tuple[int, str]] = {}
        for g, group in enumerate(self.s.sync_groups):
            if group is None:
                continue
            if group["name"] in group_names:
                self.error(
                    ["vrrp_sync_groups", g, "name"],
                    f"sync group name {group['name']!r} is already used by "
                    f"vrrp_sync_groups[{group_names[group['name']]}]; names must be unique",
                )
            group_names.setdefault(group["name"], g)
            for m, member in enumerate(group["members"]):
                path = ["vrrp_sync_groups", g, "members", m]
                if member not in instance_names:
                    hint = did_you_mean(member, instance_names) or "; define it in vrrp_instances"
                    self.error(path, f"no VRRP instance named {member!r}{hint}")
                    continue
                if member in member_of:
                    other, other_name = member_of[member]
                    where = "this group" if other == g else f"sync group {other_name!r}"
                    self.error(
                        path,
                        f"{member!r} is already a member of {where} (vrrp_sync_groups[{other}]); "
                        "an instance may be in one group only",
                    )
                else:
                    member_of[member] = (g, group["name"])

    # -- the host -----------------------------------------------------------------------

    def _host_checks(self) -> None:
        secure = bool(self.glob.get("script_security", True))
        for index, inst in self._valid_instances():
            for kind, command in _commands(inst["notify"]):
                self._program(["vrrp_instances", index, "notify", kind], command, secure)
        for g, group in enumerate(self.s.sync_groups):
            if group is None:
                continue
            for kind, command in _commands(group["notify"]):
                self._program(["vrrp_sync_groups", g, "notify", kind], command, secure)

    def _program(self, path: list[Any], command: str, secure: bool) -> None:
        problem = program_problem(command, secure)
        if problem:
            self.error(path, problem)


def _commands(notify: dict[str, Any]) -> Iterable[tuple[str, str]]:
    for kind in ("master", "backup", "fault", "stop", "generic"):
        if notify.get(kind):
            yield kind, notify[kind]
