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
"""

from __future__ import annotations

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

ARGUMENT_SPEC: dict[str, Any] = {
    "cluster": {"type": "dict", "required": True},
    "group": {"type": "str"},
    "node_var": {"type": "str", "default": DEFAULT_NODE_VAR},
    "priority_base": {"type": "int", "default": 150},
    "priority_step": {"type": "int", "default": 10},
    "dest": {"type": "path", "default": "/etc/vigil/vigil.yml"},
    "mode": {"type": "raw", "default": "0600"},
    "backup": {"type": "bool", "default": False},
    "validate": {"type": "bool", "default": True},
    "vigild_path": {"type": "path", "default": "/opt/vigil/bin/vigild"},
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
    "priority_base",
    "priority_step",
    "dest",
    "mode",
    "backup",
    "validate",
    "vigild_path",
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
    ) -> None:
        self.cluster = plain(cluster)
        self.hosts = list(hosts)
        self.node_var = node_var
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
        return {
            host.name: self._render_host(index, host, merged[host.name], sources)
            for index, host in enumerate(self.hosts)
        }

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
        )
        rendered = renderer.render()
        problems = list(renderer.problems)
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
