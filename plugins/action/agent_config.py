# Copyright: vigil developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of vigil.ha.agent_config: render every node's config, validate, hand over.

A VRRP pair is only right as a whole: each node's file can be valid and the pair still
broken (a VRID that differs, two nodes with one priority, a VIP outside the subnet). So the
plugin renders the config of *every* host of the group from the shared ``cluster``
description and each host's variables and facts, validates all of them with the agent's own
schema (``vigil.config``, imported from the collection's ``agent/`` sources, never copied)
plus the cross-node checks, and fails on every host before anything is written if any node
is wrong. Only then does the target module get this host's YAML.

A director pair is rendered the same way: ``virtual_servers[].real_servers_from`` names an
inventory group whose hosts become the real servers (address and weight from their
``vigil_real_server`` variable, the address from facts where it is absent), and
``bfd.pair`` / ``bfd.gateways`` become BFD sessions between the members of the group and
to named upstream gateways, with each host's own address as ``local``. The agent's own
cross-node checks then see both ends of every session and both directors' services.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import ipaddress
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

MODULE = "vigil.ha.agent_config"
DEFAULT_NODE_VAR = "vigil_node"
HEADER = (
    "# Rendered by vigil.ha.agent_config from the Ansible inventory; local edits are overwritten.\n"
)
NODE_KEYS = ("router_id", "priority", "interface", "address", "address6", "instances", "global")
DEFAULT_REAL_SERVER_VAR = "vigil_real_server"
#: what a backend host's real-server variable may set
REAL_SERVER_KEYS = (
    "address",
    "address6",
    "interface",
    "weight",
    "port",
    "upper_threshold",
    "lower_threshold",
)
#: the collection's own keys in the cluster description, expanded and removed by the renderer
RS_FROM = "real_servers_from"
BFD_OPTIONS = ("min_tx", "min_rx", "multiplier", "passive", "min_ttl", "auth")
BFD_PAIR_KEYS = ("name", "family", "interface", "multihop", "profile", "admin_down", *BFD_OPTIONS)
GATEWAY_KEYS = ("name", "address", "host", "family", *BFD_PAIR_KEYS[2:])

ARGUMENT_SPEC: dict[str, Any] = {
    "cluster": {"type": "dict", "required": True},
    "group": {"type": "str"},
    "node_var": {"type": "str", "default": DEFAULT_NODE_VAR},
    "real_server_var": {"type": "str", "default": DEFAULT_REAL_SERVER_VAR},
    "priority_base": {"type": "int", "default": 150},
    "priority_step": {"type": "int", "default": 10},
    "dest": {"type": "path", "default": "/etc/vigil/vigil.yml"},
    "mode": {"type": "raw", "default": "0600"},
    "backup": {"type": "bool", "default": False},
    "validate": {"type": "bool", "default": True},
    "vigild_path": {"type": "path", "default": "/opt/vigil/bin/vigild"},
    "state_dir": {"type": "path"},
    "reload": {"type": "bool", "default": True},
    "socket": {"type": "path", "default": "/run/vigil/vigil.sock"},
    "timeout": {"type": "float"},
    "wait_timeout": {"type": "float", "default": 30.0},
}
#: options handed through to the module unchanged
PASSED_THROUGH = (
    "cluster",
    "group",
    "node_var",
    "real_server_var",
    "priority_base",
    "priority_step",
    "dest",
    "mode",
    "backup",
    "validate",
    "vigild_path",
    "state_dir",
    "reload",
    "socket",
    "timeout",
    "wait_timeout",
)


# ----------------------------------------------------------------------------- schema


def import_vigil_config() -> ModuleType:
    """``vigil.subsystems`` (the agent's config, every section filled in) from the
    collection's own ``agent/src``, else an installed ``vigil``.

    The collection ships the agent's sources next to the plugins; using them keeps the
    controller's schema the one the collection's agent was built with.
    """
    agent_src = Path(__file__).resolve().parents[2] / "agent" / "src"
    if (agent_src / "vigil" / "config").is_dir() and str(agent_src) not in sys.path:
        sys.path.insert(0, str(agent_src))
    try:
        return importlib.import_module("vigil.subsystems")
    except ImportError as exc:
        raise AnsibleActionFail(
            f"{MODULE} validates with the agent's schema (Python package vigil) on the "
            f"controller and could not import it: {exc}. It is in the collection's agent/src "
            "directory; it needs the packages voluptuous and PyYAML in the Python that runs "
            "Ansible (pip install voluptuous PyYAML)."
        ) from exc


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Problem:
    """One reason not to write anything: the host to fix, where, and what to do."""

    host: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"host {self.host}: {where}{self.message}"

    def to_dict(self) -> dict[str, str]:
        return {"host": self.host, "path": self.path, "message": self.message}


@dataclass
class HostInput:
    """What the controller knows about one group member: its variables and its facts."""

    name: str
    node: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    #: the host's real-server variable (a backend of a virtual server), if any
    real_server: Any = None
    #: ansible_host, when it is set
    ansible_host: str | None = None


@dataclass
class Inventory:
    """The inventory groups and any host's inputs, for real servers and gateways.

    ``groups`` maps a group to its host names; ``host(name)`` gives that host's inputs
    (None for a name not in the inventory).
    """

    groups: Mapping[str, Sequence[str]] = field(default_factory=dict)
    hosts: Mapping[str, HostInput] = field(default_factory=dict)

    def host(self, name: str) -> HostInput | None:
        return self.hosts.get(name)


def plain(value: Any) -> Any:
    """Turn templated values (tagged str/int subclasses, tuples) into plain YAML types."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if value is None:
        return None
    return str(value)


def dump_yaml(data: Mapping[str, Any]) -> str:
    """Deterministic YAML: sorted keys, block style, a header; same input, same bytes."""
    body = yaml.safe_dump(
        plain(data), sort_keys=True, default_flow_style=False, allow_unicode=True, width=100
    )
    return HEADER + body


# ----------------------------------------------------------------------------- facts


class FactsView:
    """The bits of a host's facts the renderer uses: interfaces, their addresses and subnets.

    ``vips`` are left out: facts gathered on a master also list the VIPs it holds (a /32 VIP
    would otherwise look like a subnet of its own, and only on the master).
    """

    def __init__(self, facts: Mapping[str, Any], vips: frozenset[Any] = frozenset()) -> None:
        self.facts = facts or {}
        self.vips = vips

    @property
    def present(self) -> bool:
        return bool(self.facts.get("interfaces") or self.facts.get("default_ipv4"))

    def default_interface(self) -> str | None:
        for key in ("default_ipv4", "default_ipv6"):
            iface = (self.facts.get(key) or {}).get("interface")
            if iface:
                return str(iface)
        return None

    def interface(self, name: str) -> Mapping[str, Any] | None:
        for key in (name, name.replace("-", "_"), name.replace("-", "_").replace(".", "_")):
            value = self.facts.get(key)
            if isinstance(value, Mapping) and value.get("device", name) == name:
                return value
        return None

    def networks(self, name: str, family: int) -> list[ipaddress.IPv4Interface] | list[Any]:
        """The interface's addresses as ip_interface objects (primary first)."""
        info = self.interface(name)
        if info is None:
            return []
        out: list[Any] = []
        if family == 4:
            entries = [info.get("ipv4"), *(info.get("ipv4_secondaries") or [])]
            for entry in entries:
                if isinstance(entry, Mapping) and entry.get("address") and entry.get("netmask"):
                    try:
                        out.append(ipaddress.ip_interface(f"{entry['address']}/{entry['netmask']}"))
                    except ValueError:
                        continue
        else:
            for entry in info.get("ipv6") or []:
                if not isinstance(entry, Mapping) or entry.get("scope") == "link":
                    continue
                try:
                    out.append(ipaddress.ip_interface(f"{entry['address']}/{entry['prefix']}"))
                except (KeyError, ValueError):
                    continue
        return [net for net in out if net.ip not in self.vips]

    def all_addresses(self) -> set[Any]:
        """Every address of every interface the facts list (without the VIPs)."""
        out: set[Any] = set()
        for name in self.facts.get("interfaces") or []:
            for family in (4, 6):
                out.update(net.ip for net in self.networks(str(name), family))
        for key in ("default_ipv4", "default_ipv6"):
            addr = (self.facts.get(key) or {}).get("address")
            try:
                ip = ipaddress.ip_address(str(addr)) if addr else None
            except ValueError:
                ip = None
            if ip is not None and ip not in self.vips:
                out.add(ip)
        return out

    def default_address(self, family: int) -> str | None:
        """The address of the default route's interface for the family, from the facts."""
        default = self.facts.get("default_ipv4" if family == 4 else "default_ipv6") or {}
        addr = default.get("address")
        return str(addr) if addr else None

    def address(self, name: str, family: int) -> str | None:
        nets = self.networks(name, family)
        if nets:
            return str(nets[0].ip)
        default = self.facts.get("default_ipv4" if family == 4 else "default_ipv6") or {}
        if default.get("interface") == name and default.get("address"):
            return str(default["address"])
        return None


# ----------------------------------------------------------------------------- render


def vip_address(vip: Any) -> str | None:
    if isinstance(vip, Mapping):
        vip = vip.get("address")
    return vip if isinstance(vip, str) else None


def vip_ips(instances: Any) -> frozenset[Any]:
    """Every VIP address (advertised or excluded) of raw instance mappings, as IP objects."""
    out = set()
    for inst in instances if isinstance(instances, list) else []:
        if not isinstance(inst, Mapping):
            continue
        for key in ("virtual_ipaddresses", "virtual_ipaddresses_excluded"):
            vips = inst.get(key)
            for vip in vips if isinstance(vips, list) else []:
                text = vip_address(vip)
                try:
                    out.add(ipaddress.ip_interface(text).ip if text else None)
                except ValueError:
                    continue
    out.discard(None)
    return frozenset(out)


def instance_family(inst: Mapping[str, Any]) -> int:
    """4 or 6, from the first VIP that parses (the schema reports the ones that do not)."""
    for vip in inst.get("virtual_ipaddresses") or []:
        text = vip_address(vip)
        if text is None:
            continue
        try:
            return ipaddress.ip_interface(text).version
        except ValueError:
            continue
    return 4


class ClusterRenderer:
    """Renders one config per host from the shared description and the hosts' inputs.

    Priorities come from host order (first host ``priority_base``, then ``priority_step``
    lower each) unless a host variable sets them; unicast peers are the other members'
    sources; interfaces and sources come from variables or else from facts.
    """

    def __init__(
        self,
        cluster: Mapping[str, Any],
        hosts: Sequence[HostInput],
        *,
        node_var: str = DEFAULT_NODE_VAR,
        priority_base: int = 150,
        priority_step: int = 10,
        inventory: Inventory | None = None,
        real_server_var: str = DEFAULT_REAL_SERVER_VAR,
    ) -> None:
        self.cluster = plain(cluster)
        self.hosts = list(hosts)
        self.node_var = node_var
        self.inventory = inventory or Inventory(hosts={h.name: h for h in hosts})
        self.real_server_var = real_server_var
        self.priority_base = priority_base
        self.priority_step = priority_step
        self.problems: list[Problem] = []

    def problem(self, host: str, path: str, message: str) -> None:
        self.problems.append(Problem(host, path, message))

    def render(self) -> dict[str, dict[str, Any]]:
        """{host: config mapping}; problems found on the way are in ``self.problems``."""
        instances = self.cluster.get("vrrp_instances") or []
        if not isinstance(instances, list):
            for host in self.hosts:
                self.problem(host.name, "cluster.vrrp_instances", "must be a list of instances")
            instances = []
        names = [i.get("name") for i in instances if isinstance(i, Mapping)]
        for host in self.hosts:
            self._check_node(host, names)
        merged = {host.name: self._merged_instances(host, instances) for host in self.hosts}
        sources = {host.name: self._sources(host, merged[host.name]) for host in self.hosts}
        rendered = {
            host.name: self._render_host(index, host, merged[host.name], sources)
            for index, host in enumerate(self.hosts)
        }
        LoadBalancerRenderer(self, merged).render(rendered)
        return rendered

    def _check_node(self, host: HostInput, names: list[Any]) -> None:
        for key in host.node:
            if key not in NODE_KEYS:
                self.problem(
                    host.name,
                    f"{self.node_var}.{key}",
                    f"unknown key; use one of {', '.join(NODE_KEYS)}",
                )
        overrides = host.node.get("instances") or {}
        if not isinstance(overrides, Mapping):
            self.problem(
                host.name,
                f"{self.node_var}.instances",
                "must be a mapping of instance name -> instance keys to override",
            )
            return
        for name, value in overrides.items():
            if name not in names:
                known = ", ".join(str(n) for n in names) or "none"
                self.problem(
                    host.name,
                    f"{self.node_var}.instances.{name}",
                    f"no instance {name!r} in the cluster; it has: {known}",
                )
            elif not isinstance(value, Mapping):
                self.problem(
                    host.name,
                    f"{self.node_var}.instances.{name}",
                    "must be a mapping of instance keys (priority, interface, ...)",
                )

    def _merged_instances(self, host: HostInput, instances: list[Any]) -> list[dict[str, Any]]:
        overrides = host.node.get("instances") or {}
        out: list[dict[str, Any]] = []
        for inst in instances:
            if not isinstance(inst, Mapping):
                out.append(inst)  # the schema names the problem
                continue
            merged = copy.deepcopy(dict(inst))
            extra = overrides.get(inst.get("name")) if isinstance(overrides, Mapping) else None
            if isinstance(extra, Mapping):
                merged.update(copy.deepcopy(dict(extra)))
            if "interface" not in merged:
                iface = host.node.get("interface") or FactsView(host.facts).default_interface()
                if iface:
                    merged["interface"] = iface
            out.append(merged)
        return out

    def _sources(self, host: HostInput, instances: list[Any]) -> dict[str, str | None]:
        """{instance name: this host's unicast source} for instances with unicast on."""
        out: dict[str, str | None] = {}
        facts = FactsView(host.facts, vip_ips(instances))
        for index, inst in enumerate(instances):
            if not isinstance(inst, Mapping) or not _unicast_on(inst.get("unicast")):
                continue
            unicast = inst.get("unicast")
            family = instance_family(inst)
            source = unicast.get("source") if isinstance(unicast, Mapping) else None
            if source is None:
                source = host.node.get("address" if family == 4 else "address6")
            if source is None and isinstance(inst.get("interface"), str):
                source = facts.address(inst["interface"], family)
            if source is None:
                var = "address" if family == 4 else "address6"
                self.problem(
                    host.name,
                    f"vrrp_instances[{index}].unicast.source",
                    f"{inst.get('name')}: unicast needs this host's IPv{family} address and "
                    f"the facts do not show one on {inst.get('interface')!r}; set "
                    f"{self.node_var}.{var} or gather facts",
                )
            out[str(inst.get("name"))] = source
        return out

    def _priority(self, index: int, host: HostInput, inst: Mapping[str, Any]) -> int | None:
        overrides = host.node.get("instances")
        override = overrides.get(inst.get("name")) if isinstance(overrides, Mapping) else None
        if isinstance(override, Mapping) and "priority" in override:
            return override["priority"]  # type: ignore[no-any-return]
        if "priority" in host.node:
            return host.node["priority"]  # type: ignore[no-any-return]
        if "priority" in inst:
            return inst["priority"]  # type: ignore[no-any-return]
        if inst.get("address_owner") is True:
            return None  # the schema gives an owner 255
        return self.priority_base - index * self.priority_step

    def _render_host(
        self,
        index: int,
        host: HostInput,
        instances: list[Any],
        sources: Mapping[str, Mapping[str, str | None]],
    ) -> dict[str, Any]:
        config = {k: copy.deepcopy(v) for k, v in self.cluster.items() if k != "vrrp_instances"}
        given = config.get("global")
        if given is not None and not isinstance(given, Mapping):
            self.problem(host.name, "cluster.global", "must be a mapping of global settings")
        glob = dict(given) if isinstance(given, Mapping) else {}
        node_global = host.node.get("global")
        if isinstance(node_global, Mapping):
            glob.update(copy.deepcopy(dict(node_global)))
        glob["router_id"] = host.node.get("router_id") or glob.get("router_id") or host.name
        config["global"] = glob
        rendered: list[Any] = []
        for inst in instances:
            if not isinstance(inst, Mapping):
                rendered.append(inst)
                continue
            out = dict(inst)
            priority = self._priority(index, host, inst)
            if priority is not None:
                out["priority"] = priority
            if _unicast_on(inst.get("unicast")):
                out["unicast"] = self._unicast(host.name, inst, sources)
            else:
                out.pop("unicast", None)
            rendered.append(out)
        config["vrrp_instances"] = rendered
        return plain(config)  # type: ignore[no-any-return]

    def _unicast(
        self,
        host: str,
        inst: Mapping[str, Any],
        sources: Mapping[str, Mapping[str, str | None]],
    ) -> dict[str, Any]:
        name = str(inst.get("name"))
        given = inst.get("unicast")
        unicast = dict(given) if isinstance(given, Mapping) else {}
        source = sources[host].get(name)
        if source is not None:
            unicast["source"] = source
        if "peers" not in unicast:
            unicast["peers"] = [
                sources[other.name][name]
                for other in self.hosts
                if other.name != host and sources[other.name].get(name) is not None
            ]
        return unicast


class LoadBalancerRenderer:
    """The IPVS and BFD parts of every host's config: the collection's own keys expanded.

    - ``virtual_servers[].real_servers_from: {group: G, KEY: VALUE...}``: one real server
      per host of inventory group G, in inventory order, after the ``real_servers`` written
      out; the other keys are every such server's settings (port, weight, checks...); the
      host's real-server variable sets its ``address`` (``address6``), ``weight``, ``port``
      and thresholds, and the address comes from its facts where it is absent (the default
      route's interface, or the variable's ``interface``).
    - ``ipvs_sync_daemon.interface``: the host's interface when left out.
    - ``bfd.pair``: a session from each member to each other member (``local``: its own
      address, ``peer``: the other's), named ``name`` (``peer``) in a pair and
      ``NAME_HOST`` in a larger group.
    - ``bfd.gateways``: one session from every member to each named gateway, by ``address``
      or by inventory ``host``.

    Problems name the host to fix and the field, and go to the renderer's list.
    """

    def __init__(self, base: ClusterRenderer, instances: Mapping[str, list[Any]]) -> None:
        self.base = base
        self.instances = instances
        self.cluster = base.cluster
        self.node_var = base.node_var
        self.rs_var = base.real_server_var

    def problem(self, host: str, path: str, message: str) -> None:
        self.base.problem(host, path, message)

    def everywhere(self, path: str, message: str) -> None:
        """A problem of the shared description: reported on every member."""
        for host in self.base.hosts:
            self.problem(host.name, path, message)

    def render(self, rendered: dict[str, dict[str, Any]]) -> None:
        servers = self.cluster.get("virtual_servers")
        if isinstance(servers, list):
            expanded = self._virtual_servers(servers)
            for config in rendered.values():
                config["virtual_servers"] = copy.deepcopy(expanded)
        if isinstance(self.cluster.get("ipvs_sync_daemon"), Mapping):
            for host in self.base.hosts:
                daemon = rendered[host.name]["ipvs_sync_daemon"]
                if "interface" not in daemon:
                    iface = self._interface(host)
                    if iface:
                        daemon["interface"] = iface
        bfd = self.cluster.get("bfd")
        if isinstance(bfd, Mapping) and ("pair" in bfd or "gateways" in bfd):
            for host in self.base.hosts:
                rendered[host.name]["bfd"] = self._bfd(host, bfd)

    # ------------------------------------------------------------------ addresses

    def _interface(self, host: HostInput) -> str | None:
        """The host's interface: its variable, its instances' interface, the default route's."""
        iface = host.node.get("interface")
        if isinstance(iface, str):
            return iface
        for inst in self.instances.get(host.name) or []:
            if isinstance(inst, Mapping) and isinstance(inst.get("interface"), str):
                return str(inst["interface"])
        return FactsView(host.facts).default_interface()

    def _node_address(self, host: HostInput, family: int, interface: str | None) -> str | None:
        """A group member's own address of the family: its variable, else its facts."""
        given = host.node.get("address" if family == 4 else "address6")
        if given:
            return str(given)
        facts = FactsView(host.facts, vip_ips(self.instances.get(host.name)))
        iface = interface or self._interface(host)
        found = facts.address(iface, family) if iface else None
        return found or facts.default_address(family)

    # ------------------------------------------------------------------ IPVS

    def _virtual_servers(self, servers: list[Any]) -> list[Any]:
        out: list[Any] = []
        for index, vs in enumerate(servers):
            if not isinstance(vs, Mapping) or RS_FROM not in vs:
                out.append(vs)  # the schema names any problem in it
                continue
            vs = dict(vs)
            spec = vs.pop(RS_FROM)
            path = f"cluster.virtual_servers[{index}].{RS_FROM}"
            written = vs.get("real_servers")
            if written is None:
                written = []
            if not isinstance(written, list):
                out.append(vs)  # the schema names it
                continue
            vs["real_servers"] = [*written, *self._from_group(vs, spec, path)]
            out.append(vs)
        return out

    def _family(self, vs: Mapping[str, Any]) -> int:
        text = vs.get("address")
        if isinstance(text, str):
            with contextlib.suppress(ValueError):
                return ipaddress.ip_address(text).version
        if vs.get("fwmark") is not None:
            return 6 if vs.get("family") == 6 else 4
        group = vs.get("group")
        for entry in self.cluster.get("virtual_server_groups") or []:
            if isinstance(entry, Mapping) and entry.get("name") == group:
                for member in entry.get("members") or []:
                    addr = member.get("address") if isinstance(member, Mapping) else None
                    if isinstance(addr, str):
                        return 6 if ":" in addr else 4
                    if isinstance(member, Mapping) and member.get("family") == 6:
                        return 6
        return 4

    def _from_group(self, vs: Mapping[str, Any], spec: Any, path: str) -> list[dict[str, Any]]:
        name = vs.get("name") or vs.get("address") or "virtual server"
        if not isinstance(spec, Mapping) or not isinstance(spec.get("group"), str):
            self.everywhere(
                path,
                "must be a mapping with group: INVENTORY_GROUP (and the real servers' "
                "settings: port, weight, checks...)",
            )
            return []
        template = {k: copy.deepcopy(v) for k, v in spec.items() if k != "group"}
        if "address" in template:
            self.everywhere(
                f"{path}.address",
                "the addresses come from the group's hosts; set "
                f"{self.rs_var}.address on a host instead",
            )
            template.pop("address")
        group = str(spec["group"])
        inventory = self.base.inventory
        if group not in inventory.groups:
            known = ", ".join(sorted(g for g in inventory.groups if g not in ("all", "ungrouped")))
            self.everywhere(
                f"{path}.group",
                f"{name}: group {group!r} is not in the inventory; it has: {known or 'none'}",
            )
            return []
        members = list(inventory.groups[group])
        if not members:
            self.everywhere(
                f"{path}.group", f"{name}: group {group!r} has no hosts; add the backends to it"
            )
            return []
        family = self._family(vs)
        out: list[dict[str, Any]] = []
        for member in members:
            host = inventory.host(member)
            server = self._real_server(name, group, family, member, host, template)
            if server is not None:
                out.append(server)
        return out

    def _real_server(
        self,
        vs_name: str,
        group: str,
        family: int,
        member: str,
        host: HostInput | None,
        template: Mapping[str, Any],
    ) -> dict[str, Any] | None:
        var = self.rs_var
        given = host.real_server if host is not None else None
        if given is None:
            given = {}
        if not isinstance(given, Mapping):
            self.problem(
                member,
                var,
                f"must be a mapping of real-server settings ({', '.join(REAL_SERVER_KEYS)}), "
                f"got {type(given).__name__}",
            )
            return None
        unknown = [k for k in given if k not in REAL_SERVER_KEYS]
        for key in unknown:
            self.problem(
                member, f"{var}.{key}", f"unknown key; use one of {', '.join(REAL_SERVER_KEYS)}"
            )
        if unknown:
            return None
        server = copy.deepcopy(dict(template))
        for key in ("weight", "port", "upper_threshold", "lower_threshold"):
            if key in given:
                server[key] = given[key]
        key = "address" if family == 4 else "address6"
        address = given.get(key)
        if address is None and host is not None:
            facts = FactsView(host.facts)
            iface = given.get("interface")
            if isinstance(iface, str):
                address = facts.address(iface, family)
            else:
                address = facts.default_address(family)
        if address is None:
            where = f"on {given['interface']!r} " if isinstance(given.get("interface"), str) else ""
            self.problem(
                member,
                f"{var}.{key}",
                f"{vs_name}: real server {member} (group {group}) needs an IPv{family} address "
                f"and its facts show none {where}(facts are gathered for it only in a play on "
                f"its hosts); set {var}.{key} or gather facts on {group} first",
            )
            return None
        server["address"] = str(address)
        return server

    # ------------------------------------------------------------------ BFD

    def _bfd(self, host: HostInput, bfd: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in bfd.items() if k not in ("pair", "gateways")}
        written = out.get("sessions")
        sessions: list[Any] = list(written) if isinstance(written, list) else []
        if written is not None and not isinstance(written, list):
            return dict(bfd)  # the schema names it
        if "pair" in bfd:
            sessions.extend(self._pair_sessions(host, bfd["pair"]))
        if "gateways" in bfd:
            sessions.extend(self._gateway_sessions(host, bfd["gateways"]))
        out["sessions"] = sessions
        return out

    def _pair_sessions(self, host: HostInput, spec: Any) -> list[dict[str, Any]]:
        if spec is False or spec is None:
            return []
        if spec is True:
            spec = {}
        path = "cluster.bfd.pair"
        if not isinstance(spec, Mapping):
            self.problem(host.name, path, "must be true or a mapping of session options")
            return []
        bad = [k for k in spec if k not in BFD_PAIR_KEYS]
        for key in bad:
            self.problem(
                host.name, f"{path}.{key}", f"unknown key; use one of {', '.join(BFD_PAIR_KEYS)}"
            )
        if bad:
            return []
        others = [h for h in self.base.hosts if h.name != host.name]
        family = 6 if spec.get("family") == 6 else 4
        iface = spec.get("interface") if isinstance(spec.get("interface"), str) else None
        mine = self._node_address(host, family, iface)
        var = "address" if family == 4 else "address6"
        if mine is None:
            self.problem(
                host.name,
                f"{self.node_var}.{var}",
                f"bfd.pair needs this host's IPv{family} address and the facts show none; "
                f"set {self.node_var}.{var} or gather facts",
            )
            return []
        base = str(spec.get("name") or "peer")
        options = {k: copy.deepcopy(v) for k, v in spec.items() if k not in ("name", "family")}
        out: list[dict[str, Any]] = []
        for other in others:
            theirs = self._node_address(other, family, iface)
            if theirs is None:
                continue  # reported on that host
            name = base if len(others) == 1 else f"{base}_{other.name}"
            out.append({"name": name, "peer": theirs, "local": mine, **options})
        return out

    def _gateway_sessions(self, host: HostInput, spec: Any) -> list[dict[str, Any]]:
        path = "cluster.bfd.gateways"
        if not isinstance(spec, list):
            self.problem(host.name, path, "must be a list of {name, address or host, options}")
            return []
        out: list[dict[str, Any]] = []
        for index, gw in enumerate(spec):
            where = f"{path}[{index}]"
            if not isinstance(gw, Mapping) or not isinstance(gw.get("name"), str):
                self.problem(host.name, where, "must be a mapping with a name, an address or host")
                continue
            bad = [k for k in gw if k not in GATEWAY_KEYS]
            for key in bad:
                known = ", ".join(GATEWAY_KEYS)
                self.problem(host.name, f"{where}.{key}", f"unknown key; use one of {known}")
            if bad:
                continue
            if ("address" in gw) == ("host" in gw):
                self.problem(host.name, where, f"{gw['name']}: give exactly one of address or host")
                continue
            address = gw.get("address")
            family = 6 if gw.get("family") == 6 else 4
            if "host" in gw:
                address = self._gateway_address(host, where, str(gw["host"]), family)
                if address is None:
                    continue
            else:
                with contextlib.suppress(ValueError):
                    family = ipaddress.ip_address(str(address)).version
            options = {
                k: copy.deepcopy(v) for k, v in gw.items() if k not in ("address", "host", "family")
            }
            session = {**options, "peer": address}
            iface = gw.get("interface") if isinstance(gw.get("interface"), str) else None
            mine = self._node_address(host, family, iface)
            if mine is not None:
                session["local"] = mine
            out.append(session)
        return out

    def _gateway_address(self, host: HostInput, where: str, name: str, family: int) -> str | None:
        gateway = self.base.inventory.host(name)
        if gateway is None:
            self.problem(
                host.name,
                f"{where}.host",
                f"{name} is not in the inventory; give its address instead, or add it",
            )
            return None
        given = gateway.node.get("address" if family == 4 else "address6")
        if given:
            return str(given)
        found = FactsView(gateway.facts).default_address(family)
        if found:
            return found
        if gateway.ansible_host:
            with contextlib.suppress(ValueError):
                if ipaddress.ip_address(gateway.ansible_host).version == family:
                    return gateway.ansible_host
        self.problem(
            name,
            f"{self.node_var}.{'address' if family == 4 else 'address6'}",
            f"the BFD gateway {name} needs an IPv{family} address: set "
            f"{self.node_var}.{'address' if family == 4 else 'address6'} or ansible_host on it, "
            "or gather its facts",
        )
        return None


def _unicast_on(value: Any) -> bool:
    return value is True or isinstance(value, Mapping)


# ----------------------------------------------------------------------------- checks


class GroupChecker:
    """Validates every rendered node config: the agent's schema, then across the nodes."""

    def __init__(
        self,
        vconf: ModuleType,
        rendered: Mapping[str, Mapping[str, Any]],
        hosts: Sequence[HostInput],
        *,
        node_var: str = DEFAULT_NODE_VAR,
    ) -> None:
        self.vconf = vconf
        self.rendered = rendered
        self.hosts = {h.name: h for h in hosts}
        self.node_var = node_var
        self.problems: list[Problem] = []
        self.configs: dict[str, Any] = {}

    def run(self) -> list[Problem]:
        for host, data in self.rendered.items():
            try:
                self.configs[host] = self.vconf.validate_data(
                    copy.deepcopy(dict(data)), check_files=False
                )
            except self.vconf.ConfigError as exc:
                for issue in exc.issues:
                    self.problems.append(Problem(host, issue.path, issue.message))
        if self.problems:
            return self.problems  # cross-node checks need every node's model
        # The agent's cross-node checks, one checker for the agent and the collection; what
        # only the controller knows (each host's interfaces, from facts) goes in the context.
        context = self.vconf.ClusterContext(
            networks=self._networks,
            addresses=self._addresses,
            distinct_priorities=True,
            fixes={
                "priority": f"set {self.node_var}.priority or instances.NAME.priority, or "
                "leave it out to use host order"
            },
        )
        for issue in self.vconf.check_cluster(self.configs, context):
            self.problems.append(Problem(issue.file or "?", issue.path, issue.message))
        return self.problems

    def _facts(self, host: str) -> FactsView:
        config = self.configs[host]
        vips = {
            vip.address.ip
            for inst in config.vrrp_instances
            for vip in (*inst.vips, *inst.excluded_vips)
        }
        return FactsView(self.hosts[host].facts if host in self.hosts else {}, frozenset(vips))

    def _addresses(self, host: str) -> set[Any]:
        """Every address of a host: its variables and its facts (without its VIPs)."""
        out = self._facts(host).all_addresses()
        node = self.hosts[host].node if host in self.hosts else {}
        for key in ("address", "address6"):
            with contextlib.suppress(ValueError, TypeError):
                if node.get(key):
                    out.add(ipaddress.ip_address(str(node[key])))
        return out

    def _networks(self, host: str, interface: str, family: int) -> list[Any]:
        """A host's addresses on an interface, from facts (without the VIPs it may hold)."""
        return list(self._facts(host).networks(interface, family))


# ----------------------------------------------------------------------------- plan


def plan_for(host: str, configs: Mapping[str, Any]) -> dict[str, Any]:
    """What the module needs to predict VIP moves: per instance, its priorities and master.

    The configured-highest node with preempt on is where each VIP settles once every node
    runs the new config.
    """
    instances: dict[str, Any] = {}
    vrrp = {node: cfg.section("vrrp") for node, cfg in configs.items()}
    for inst in vrrp[host].vrrp_instances:
        prios = {
            node: sec.instance(inst.name).priority
            for node, sec in vrrp.items()
            if inst.name in sec.instance_names
        }
        top = max(prios.items(), key=lambda item: item[1])[0]
        instances[inst.name] = {
            "priority": inst.priority,
            "preempt": inst.preempt,
            "priorities": prios,
            "preempts": {
                node: sec.instance(inst.name).preempt
                for node, sec in vrrp.items()
                if inst.name in sec.instance_names
            },
            "master": top,
        }
    return {"host": host, "instances": instances}


# ----------------------------------------------------------------------------- plugin


class ActionModule(ActionBase):
    """Render + validate on the controller, then run the module on the target."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        me = task_vars.get("inventory_hostname")
        hosts = self._group_hosts(args, task_vars)
        if me not in [h.name for h in hosts]:
            raise AnsibleActionFail(
                f"{me} is not in the group {args.get('group')!r} it renders the config for "
                f"({', '.join(h.name for h in hosts) or 'empty'}); set group to this host's group"
            )
        if args["priority_base"] - args["priority_step"] * (len(hosts) - 1) < 1:
            raise AnsibleActionFail(
                f"priority_base {args['priority_base']} with priority_step "
                f"{args['priority_step']} gives priorities below 1 for {len(hosts)} hosts; "
                "lower priority_step or raise priority_base (at most 254)"
            )
        vconf = import_vigil_config()
        renderer = ClusterRenderer(
            args["cluster"],
            hosts,
            node_var=args["node_var"],
            priority_base=args["priority_base"],
            priority_step=args["priority_step"],
            inventory=self._inventory(args, task_vars, hosts),
            real_server_var=args["real_server_var"],
        )
        rendered = renderer.render()
        problems = list(dict.fromkeys(renderer.problems))
        checker = GroupChecker(vconf, rendered, hosts, node_var=args["node_var"])
        if not problems:
            problems = checker.run()
        if problems:
            result.update(
                failed=True,
                changed=False,
                errors=[p.to_dict() for p in problems],
                msg=(
                    f"the vigil config of the group ({', '.join(h.name for h in hosts)}) has "
                    f"{len(problems)} problem(s); nothing was written:\n"
                    + "\n".join(str(p) for p in problems)
                ),
            )
            return result
        config = checker.configs[me]
        module_args = {key: args[key] for key in PASSED_THROUGH}
        module_args.update(
            content=dump_yaml(rendered[me]),
            expected=plain(config.to_dict(redact=True)),
            plan=plan_for(me, checker.configs),
        )
        module_result = self._execute_module(
            module_name=MODULE, module_args=module_args, task_vars=task_vars
        )
        result.update(module_result)
        return result

    def _inventory(
        self, args: Mapping[str, Any], task_vars: Mapping[str, Any], members: list[HostInput]
    ) -> Inventory:
        """The groups and the hosts the cluster names (backends, gateways), read lazily."""
        groups = {str(g): [str(h) for h in hs] for g, hs in (task_vars.get("groups") or {}).items()}
        wanted: set[str] = set()
        cluster = args["cluster"] if isinstance(args["cluster"], Mapping) else {}
        for vs in cluster.get("virtual_servers") or []:
            spec = vs.get(RS_FROM) if isinstance(vs, Mapping) else None
            if isinstance(spec, Mapping) and str(spec.get("group")) in groups:
                wanted.update(groups[str(spec.get("group"))])
        bfd = cluster.get("bfd")
        gateways = bfd.get("gateways") if isinstance(bfd, Mapping) else None
        for gw in gateways if isinstance(gateways, list) else []:
            if isinstance(gw, Mapping) and gw.get("host") is not None:
                wanted.add(str(gw["host"]))
        hosts = {h.name: h for h in members}
        hostvars = task_vars.get("hostvars") or {}
        known = set(groups.get("all") or []) | {h for hs in groups.values() for h in hs}
        for name in sorted(wanted - set(hosts)):
            if name not in known:
                continue
            hv = hostvars.get(name) if hasattr(hostvars, "get") else None
            node = _host_var(hv, args["node_var"], name)
            facts = _host_var(hv, "ansible_facts", name) or {}
            hosts[name] = HostInput(
                name,
                plain(node) if isinstance(node, Mapping) else {},
                plain(facts) if isinstance(facts, Mapping) else {},
            )
        for name, host in hosts.items():
            hv = hostvars.get(name) if hasattr(hostvars, "get") else None
            if name in wanted:
                host.real_server = plain(_host_var(hv, args["real_server_var"], name))
            ansible_host = _host_var(hv, "ansible_host", name)
            host.ansible_host = str(ansible_host) if ansible_host else None
        return Inventory(groups, hosts)

    def _group_hosts(
        self, args: Mapping[str, Any], task_vars: Mapping[str, Any]
    ) -> list[HostInput]:
        group = args.get("group")
        if group:
            groups = task_vars.get("groups") or {}
            if group not in groups:
                known = ", ".join(sorted(g for g in groups if g not in ("all", "ungrouped")))
                raise AnsibleActionFail(
                    f"group {group!r} is not in the inventory; it has: {known or 'no groups'}"
                )
            names = list(groups[group])
        else:
            names = list(task_vars.get("ansible_play_hosts_all") or [])
        if not names:
            raise AnsibleActionFail(f"group {group!r} has no hosts; add the pair's hosts to it")
        hostvars = task_vars.get("hostvars") or {}
        node_var = args["node_var"]
        out = []
        for name in names:
            hv = hostvars.get(name) if hasattr(hostvars, "get") else None
            node = _host_var(hv, node_var, name)
            if node is None:
                node = {}
            if not isinstance(node, Mapping):
                raise AnsibleActionFail(
                    f"host {name}: {node_var}: must be a mapping of per-host settings "
                    f"({', '.join(NODE_KEYS)}), got {type(node).__name__}"
                )
            facts = _host_var(hv, "ansible_facts", name) or {}
            out.append(HostInput(str(name), plain(node), plain(facts)))
        return out


def _host_var(hv: Any, key: str, host: str) -> Any:
    """One host variable, templated; a template error names the host and the variable."""
    if hv is None:
        return None
    try:
        return hv.get(key)
    except Exception as exc:  # templating errors surface here, naming nothing useful
        raise AnsibleActionFail(f"host {host}: {key}: cannot be evaluated: {exc}") from exc
