"""A vigil pair on two lab hosts, as the end-to-end tests and bench/ansible.py use it.

The inventory follows docs/examples/inventory.yml: group ``vigil`` (the playbooks' default
hosts) with child group ``pair`` holding ``h1`` (priority 150, the preferred master) and
``h2`` (140), one VRRPv3 instance ``VI_1`` (VRID 51, 1 s adverts) with VIP 10.77.0.100/24
on ``host0``. The helpers look at the hosts directly (over SSH), never through the
collection under test, so a broken module cannot hide a broken pair.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .hostlab import AnsibleResult, HostLab

__all__ = [
    "CONFIG_PATH",
    "GROUP",
    "HOSTS",
    "VIP",
    "ad_hoc_results",
    "agent_pid",
    "base_cluster",
    "file_digest",
    "pair_inventory",
    "vip_holders",
]

HOSTS = ("h1", "h2")
GROUP = "pair"
VIP = "10.77.0.100"
CONFIG_PATH = "/etc/vigil/vigil.yml"
SERVICE = "vigild"
AD_HOC_RE = re.compile(r"^(?P<host>\S+) \| (?P<status>[A-Z]+)(?: \| rc=\d+)? => (?P<json>\{.*\})$")


def base_cluster() -> dict[str, Any]:
    """The shared agent config of the pair (``vigil_cluster``)."""
    return {
        "global": {"log_level": "info"},
        "vrrp_instances": [
            {
                "name": "VI_1",
                "interface": "host0",
                "vrid": 51,
                "version": 3,
                "advert_interval": 1,
                "virtual_ipaddresses": [f"{VIP}/24"],
            }
        ],
    }


def pair_inventory(
    hl: HostLab,
    *,
    cluster: Mapping[str, Any] | None = None,
    nodes: Mapping[str, Mapping[str, Any]] | None = None,
    name: str = "inventory.yml",
) -> Path:
    """Write the pair's inventory; ``nodes`` adds per-host ``vigil_node`` keys."""
    hosts: dict[str, Any] = {}
    for h in HOSTS:
        node: dict[str, Any] = {"router_id": h}
        node.update(copy.deepcopy(dict((nodes or {}).get(h, {}))))
        hosts[h] = {"ansible_host": hl.host(h).address, "vigil_node": node}
    data = {
        "all": {
            "vars": hl.connection_vars(),
            "children": {
                "vigil": {
                    "children": {
                        GROUP: {
                            "hosts": hosts,
                            "vars": {
                                "vigil_group": GROUP,
                                "vigil_cluster": copy.deepcopy(
                                    dict(cluster) if cluster is not None else base_cluster()
                                ),
                            },
                        }
                    }
                }
            },
        }
    }
    path = hl.lab.workdir / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def vip_holders(hl: HostLab, vip: str = VIP) -> list[str]:
    """The hosts that have ``vip`` on an interface now (read with ``ip`` over SSH)."""
    holders = []
    for h in HOSTS:
        res = hl.ssh(h, f"ip -o addr show to {shlex.quote(vip)}", check=False, timeout=15)
        if res.returncode == 0 and vip in res.stdout:
            holders.append(h)
    return holders


def file_digest(hl: HostLab, host: str, path: str = CONFIG_PATH) -> str:
    """sha256 and mtime of a file on a host ("missing" when it is not there)."""
    q = shlex.quote(path)
    res = hl.ssh(
        host, f"if [ -e {q} ]; then sha256sum {q}; stat -c %Y.%N {q}; else echo missing; fi"
    )
    return res.stdout.strip()


def agent_pid(hl: HostLab, host: str) -> tuple[int, str]:
    """The agent service's MainPID and ActiveState as systemd reports them."""
    res = hl.ssh(host, f"systemctl show -p MainPID -p ActiveState {SERVICE}")
    props = dict(line.split("=", 1) for line in res.stdout.split() if "=" in line)
    return int(props.get("MainPID", "0")), props.get("ActiveState", "")


def ad_hoc_results(result: AnsibleResult) -> dict[str, tuple[str, dict[str, Any]]]:
    """``ansible -o`` output as ``{host: (status, result dict)}``."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for line in result.stdout.splitlines():
        m = AD_HOC_RE.match(line.strip())
        if m:
            try:
                found[m.group("host")] = (m.group("status"), json.loads(m.group("json")))
            except ValueError:
                found[m.group("host")] = (m.group("status"), {"unparsed": m.group("json")})
    return found
