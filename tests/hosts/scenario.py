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
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .hostlab import AnsibleResult, HostLab

__all__ = [
    "CONFIG_PATH",
    "FLEET_MAX_PAIRS",
    "GROUP",
    "HOSTS",
    "VIP",
    "ad_hoc_results",
    "agent_get",
    "agent_pid",
    "base_cluster",
    "bfd_states",
    "file_digest",
    "fleet_cluster",
    "fleet_holders",
    "fleet_hosts",
    "fleet_inventory",
    "fleet_vip",
    "pair_inventory",
    "upgraded_agent_source",
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


# ------------------------------------------------------------------------- the fleet

FLEET_MAX_PAIRS = 6


def fleet_hosts(pairs: int) -> list[str]:
    """``h1``..``h{2*pairs}``: pair N is ``h{2N-1}`` (preferred master) and ``h{2N}``."""
    return [f"h{i}" for i in range(1, 2 * pairs + 1)]


def fleet_vip(n: int) -> str:
    """The VIP of pair ``n`` (1-based)."""
    return f"10.77.0.{100 + n}"


def fleet_cluster(n: int) -> dict[str, Any]:
    """Pair ``n``'s shared config: one VRRPv3 instance (VRID 60+n, its own VIP) and a BFD
    session between the two nodes (``bfd.pair``, rendered by vigil.ha.agent_config)."""
    return {
        "global": {"log_level": "info"},
        "vrrp_instances": [
            {
                "name": "VI_1",
                "interface": "host0",
                "vrid": 60 + n,
                "version": 3,
                "advert_interval": 1,
                "virtual_ipaddresses": [f"{fleet_vip(n)}/24"],
            }
        ],
        "bfd": {"pair": True},
    }


def fleet_inventory(hl: HostLab, pairs: int, *, name: str = "fleet.yml") -> Path:
    """``pairs`` pairs under group ``vigil``, each its own group ``pairN`` with its own
    ``vigil_group``/``vigil_cluster``; every host's ``vigil_node.address`` is its lab
    address (the hosts have no default route, so facts cannot give it)."""
    if not 1 <= pairs <= FLEET_MAX_PAIRS:
        raise ValueError(f"pairs: {pairs} is not in 1..{FLEET_MAX_PAIRS}")
    children: dict[str, Any] = {}
    for n in range(1, pairs + 1):
        hosts: dict[str, Any] = {}
        for h in (f"h{2 * n - 1}", f"h{2 * n}"):
            addr = hl.host(h).address
            hosts[h] = {"ansible_host": addr, "vigil_node": {"router_id": h, "address": addr}}
        children[f"pair{n}"] = {
            "hosts": hosts,
            "vars": {"vigil_group": f"pair{n}", "vigil_cluster": fleet_cluster(n)},
        }
    data = {"all": {"vars": hl.connection_vars(), "children": {"vigil": {"children": children}}}}
    path = hl.lab.workdir / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def fleet_holders(hl: HostLab, pairs: int) -> dict[int, list[str]]:
    """For each pair, the hosts that have its VIP now (``ip`` over SSH, in parallel)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(n: int) -> tuple[int, list[str]]:
        found = []
        for h in (f"h{2 * n - 1}", f"h{2 * n}"):
            vip = fleet_vip(n)
            res = hl.ssh(h, f"ip -o addr show to {shlex.quote(vip)}", check=False, timeout=15)
            if res.returncode == 0 and vip in res.stdout:
                found.append(h)
        return n, found

    with ThreadPoolExecutor(max_workers=pairs) as pool:
        return dict(pool.map(one, range(1, pairs + 1)))


def agent_get(hl: HostLab, host: str, path: str) -> Any:
    """GET ``path`` from the agent's API on ``host`` (the host's python3 over SSH; the
    modules under test are not used)."""
    script = (
        "import http.client, socket, sys\n"
        "class C(http.client.HTTPConnection):\n"
        "    def connect(self):\n"
        "        self.sock = socket.socket(socket.AF_UNIX)\n"
        "        self.sock.connect('/run/vigil/vigil.sock')\n"
        "c = C('localhost', timeout=10)\n"
        "c.request('GET', sys.argv[1])\n"
        "sys.stdout.write(c.getresponse().read().decode())\n"
    )
    # 60 s, as the other SSH steps: in a single-vCPU emulated (TCG) VM host an SSH login
    # and a python3 start took over 20 s once, right after vigil.ha.site (VM-host run 8)
    res = hl.ssh(host, f"python3 -c {shlex.quote(script)} {shlex.quote(path)}", timeout=60)
    return json.loads(res.stdout)


def bfd_states(hl: HostLab, host: str) -> dict[str, str]:
    """``{session: state}`` of the agent on ``host``."""
    body = agent_get(hl, host, "/v1/bfd/sessions")
    return {s["name"]: s["state"] for s in body["sessions"]}


def upgraded_agent_source(hl: HostLab, tag: str) -> tuple[Path, str]:
    """A copy of the snapshot's agent/ whose version is ``<version>+<tag>``: a new wheel for
    the role to roll out (``-e vigil_agent_source=PATH``). Returns the path and version."""
    src = hl.collections_dir() / "ansible_collections" / "vigil" / "ha" / "agent"
    dest = hl.lab.workdir / f"agent-{tag}"
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    init = dest / "src" / "vigil" / "__init__.py"
    text = init.read_text()
    m = re.search(r'^__version__ = "([^"]+)"$', text, re.M)
    if m is None:
        raise RuntimeError(f"{init}: no __version__ line")
    version = f"{m.group(1)}+{tag}"
    init.write_text(text.replace(m.group(0), f'__version__ = "{version}"'))
    pyproject = dest / "pyproject.toml"
    ptext = pyproject.read_text()
    ptext, count = re.subn(
        r'^version = "[^"]+"$', f'version = "{version}"', ptext, count=1, flags=re.M
    )
    if count != 1:
        raise RuntimeError(f"{pyproject}: no version line")
    pyproject.write_text(ptext)
    return dest, version
