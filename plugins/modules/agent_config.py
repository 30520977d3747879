#!/usr/bin/python
# Copyright (c) vigil developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: agent_config
short_description: Render, validate and apply the vigil agent config of every node of an HA group
version_added: 0.1.0
description:
  - Renders the vigil agent configuration (C(/etc/vigil/vigil.yml)) of B(every) host of a
    group from one shared cluster description (O(cluster)) and each host's variables and
    facts, on the controller.
  - "Priorities come from host order in the group: the first host gets O(priority_base), each
    next one O(priority_step) less (150, 140, ...), unless a host variable sets them. With
    unicast on, each node's peers are the other members' addresses. Interfaces and source
    addresses come from the host variables or else from the facts (C(ansible_facts))."
  - Validates every node's config with the agent's own schema (the Python package
    C(vigil.config) from the collection's C(agent/) sources) and with checks across the
    nodes. The same VRID carries the same VIPs, version, advertisement interval and
    authentication on every node; priorities per VRID are distinct, so exactly one node is
    the highest; VRIDs are unique per segment; VIPs lie inside the interface's subnet where
    the facts show it; plus everything C(vigil.config.check_cluster) checks (router IDs,
    unicast peers, sync groups, the same virtual servers and sync daemon on every director,
    BFD sessions between two members configured on both ends).
  - "Any problem fails the task on every host B(before anything is written), naming the host
    and the field, for example
    C(host lb2: vrrp_instances[0].priority: VI_1 priority 150 here and on lb1; ...)."
  - Then, on each target, the module validates the file with C(vigild --check) (O(vigild_path)),
    writes it atomically (a temporary file in the same directory, renamed over O(dest)),
    asks the running agent to reload (C(POST /v1/reload); a reload never restarts the agent
    nor disturbs unchanged instances) and waits until the agent runs exactly this config
    (C(GET /v1/config)).
  - It reports which VRRP instances are added, changed and removed, and whether a VIP will
    move (this host's current state against the priorities of the new config).
  - This is an action plugin plus a module. The rendering and the checks need the Python
    packages C(voluptuous) and C(PyYAML) on the controller; the target needs only Python's
    standard library and, to validate, the installed agent.
author:
  - vigil developers (@vigil)
options:
  cluster:
    description:
      - The shared description of the group, in the vigil config format
        (see C(docs/configuration.md)) with the per-node fields left out.
      - "Keys: C(global), C(vrrp_scripts), C(track_files), C(track_processes),
        C(vrrp_instances), C(vrrp_sync_groups), C(virtual_servers), C(virtual_server_groups),
        C(ipvs_sync_daemon), C(bfd) and C(x-*)."
      - In an instance, C(priority) may be left out (host order decides), C(interface) too
        (the host's C(interface) variable or its default IPv4 interface from the facts), and
        C(unicast) may be V(true) (or a mapping without C(peers)/C(source)) to have the
        source and peers filled in from the hosts' addresses.
      - C(global.router_id) is set to each host's C(router_id) variable or its inventory name.
      - "In a virtual server, C(real_servers_from: {group: GROUP, ...}) adds one real server
        per host of the inventory group GROUP (after the C(real_servers) written out, in
        inventory order); its other keys (C(port), C(weight), C(checks), C(forwarding), ...)
        are every such real server's settings. Each backend's C(address) (C(address6) for an
        IPv6 service), C(weight), C(port) and thresholds come from its variable named by
        O(real_server_var); the address comes from its facts where it is absent (the default
        route's interface, or the variable's C(interface)), so gather facts on the backends
        or set it."
      - C(ipvs_sync_daemon.interface) may be left out; each director's own interface is used.
      - "C(bfd.pair: true) (or a mapping of session options: C(name) (default V(peer)),
        C(family) 4 or 6, C(interface), C(profile), C(min_tx), ...) adds a BFD session from
        each member to each other member, from its own address (C(address)/C(address6) of
        O(node_var), else the facts) to the other's. In a pair both sessions are called
        C(name), so a VRRP instance can track C(bfd:peer) or use C(fast_takeover_bfd: peer);
        in a larger group they are called C(NAME_HOST)."
      - "C(bfd.gateways) is a list of upstream gateways, each C({name, address}) or
        C({name, host}) (an inventory host: its C(address) in O(node_var), its facts, or its
        C(ansible_host)) plus session options; every member gets a session to each, from
        its own address."
      - Every host of the group should see the same value; each host's own per-node
        settings go in the variable named by O(node_var).
    type: dict
    required: true
  group:
    description:
      - The inventory group whose hosts form the HA group (usually a pair). Their order in
        the inventory gives the default priorities (the first host is the preferred master).
      - When unset, the hosts of the play (C(ansible_play_hosts_all)) form the group; set it
        when the play covers more than one pair or runs with C(--limit).
      - This host must be a member.
    type: str
  node_var:
    description:
      - Name of the host variable with each host's own settings, read from every member's
        C(hostvars).
      - "Its keys: C(router_id); C(priority) (every instance of this host); C(interface)
        (instances without one); C(address) and C(address6) (this host's IPv4 / IPv6 unicast
        source and the address its peers send to; default from the facts of the instance's
        interface); C(global) (global keys to override on this host); C(instances), a mapping
        of instance name to instance keys to override on this host, for example
        C({VI_2: {priority: 200}}) to make this host the master of VI_2."
    type: str
    default: vigil_node
  real_server_var:
    description:
      - Name of the host variable of a backend host (a member of a group named by a virtual
        server's C(real_servers_from)) with its real-server settings.
      - "Its keys: C(address), C(address6), C(interface) (where the facts give the address),
        C(weight), C(port), C(upper_threshold), C(lower_threshold). Any other key is an
        error that names the host."
    type: str
    default: vigil_real_server
  priority_base:
    description:
      - Priority of the first host of the group where no variable sets one.
    type: int
    default: 150
  priority_step:
    description:
      - How much lower each next host's priority is.
    type: int
    default: 10
  dest:
    description:
      - The agent's configuration file on the managed host.
    type: path
    default: /etc/vigil/vigil.yml
  mode:
    description:
      - File mode of O(dest). The file may hold VRRP passwords, so it is private by default.
    type: raw
    default: '0600'
  backup:
    description:
      - Keep a timestamped copy of the previous O(dest) when it changes.
    type: bool
    default: false
  validate:
    description:
      - Validate the new file on the managed host with C(vigild --check --format json) before
        it replaces O(dest). This also checks what only the host can (scripts exist and are
        safe, users exist).
      - In check mode a changed file is validated too, from a copy in the temporary
        directory, so a preview shows what the host would refuse.
    type: bool
    default: true
  vigild_path:
    description:
      - Path of the C(vigild) program on the managed host, used when O(validate=true).
    type: path
    default: /opt/vigil/bin/vigild
  state_dir:
    description:
      - The agent's state directory on the managed host (its C(--state-dir)). When set, the
        validation (not in check mode) passes it to C(vigild --check), which then leaves the
        new config's IPVS start plan there; the agent's first start of that config then
        programs its IPVS table before it has read the config, as a restart does.
      - Unset, the validation writes nothing on the host.
    type: path
  reload:
    description:
      - When the agent is running and its config differs from the new file, ask it to
        reload (C(POST /v1/reload)) and wait until it runs the new config.
      - The agent must have been started with O(dest) as its config file; if it runs
        another file the module warns and does not reload.
      - When the agent is not running nothing is reloaded; it reads the file when it starts.
    type: bool
    default: true
  wait_timeout:
    description:
      - How long, in seconds, to wait after the reload until C(GET /v1/config) shows the
        new config.
    type: float
    default: 30
  content:
    description:
      - Internal; set by the action plugin. The rendered YAML for this host.
    type: str
  expected:
    description:
      - Internal; set by the action plugin. This host's config as the agent will show it at
        C(GET /v1/config) (normalized, secrets redacted).
    type: dict
  plan:
    description:
      - Internal; set by the action plugin. Per instance, the new priorities of every node
        and the node expected to be master, for the VIP move prediction.
    type: dict
extends_documentation_fragment:
  - vigil.ha.vigil
  - vigil.ha.vigil.attributes
attributes:
  check_mode:
    support: full
    details: Reports what would change (file, instances, VIP moves) and changes nothing.
  diff_mode:
    support: full
    details: The diff is the text of the YAML file before and after.
  action:
    support: full
    description: Indicates this has a corresponding action plugin so some parts run on the
      controller.
notes:
  - The task fails on every host of the group when any host's config is wrong, so a broken
    inventory never ships to some hosts and not to others.
  - Priorities must differ per instance across the nodes (ties are refused, although VRRP
    would break them on the higher primary address) so which node is master is never left
    to addresses.
  - "The file is written with sorted keys, so the same inventory always gives the same
    bytes: a second run reports C(changed=false)."
  - C(changed) is true when the file changed, or when the running agent did not run the file's
    config and was reloaded.
seealso:
  - module: vigil.ha.vrrp_info
  - module: vigil.ha.vrrp_failover
  - name: vigil configuration reference
    description: Every key of the agent config file and the checks done across nodes.
    link: https://example.invalid/vigil/docs/configuration.md
"""

EXAMPLES = r"""
- name: Render, validate and apply the config of the lb pair
  vigil.ha.agent_config:
    group: lb
    cluster:
      global:
        vrrp_version: 3
      vrrp_instances:
        - name: VI_1
          vrid: 51
          advert_interval: 0.1
          virtual_ipaddresses:
            - 10.0.0.100/24
  become: true
  register: vigil_config

- name: Unicast between the nodes; lb2 is the preferred master of VI_2
  vigil.ha.agent_config:
    group: lb
    cluster:
      vrrp_scripts:
        chk_haproxy:
          script: /usr/bin/pgrep -x haproxy
          weight: -30
      vrrp_instances:
        - name: VI_1
          vrid: 51
          unicast: true
          virtual_ipaddresses: [10.0.0.100/24]
          track:
            scripts: [chk_haproxy]
        - name: VI_2
          vrid: 52
          unicast: true
          virtual_ipaddresses: [10.0.0.101/24]
  become: true
  # host_vars/lb2.yml:
  #   vigil_node:
  #     instances:
  #       VI_2: {priority: 200}

- name: A director pair whose real servers are the hosts of the group web_backends
  vigil.ha.agent_config:
    group: directors
    cluster:
      vrrp_instances:
        - name: VI_1
          vrid: 61
          virtual_ipaddresses: [10.0.0.200/24]
          fast_takeover_bfd: peer
      virtual_servers:
        - name: web
          address: 10.0.0.200
          port: 80
          real_servers_from:
            group: web_backends
            port: 8080
            checks: [{type: http, path: /healthz}]
      ipvs_sync_daemon:
        instance: VI_1
      bfd:
        pair: {min_tx: 0.05, min_rx: 0.05}
        gateways:
          - {name: upstream, address: 10.0.0.1}
  become: true
  # host_vars/web1.yml (without an address, web1's facts give it):
  #   vigil_real_server: {address: 10.0.1.21, weight: 3}

- name: Preview a change without touching the hosts
  vigil.ha.agent_config:
    group: lb
    cluster: "{{ vigil_cluster }}"
  check_mode: true
  diff: true
  become: true
  register: preview

- name: Show whether a VIP would move
  ansible.builtin.debug:
    var: preview.vip_moves
"""

RETURN = r"""
dest:
  description: The configuration file on the managed host.
  returned: success
  type: str
  sample: /etc/vigil/vigil.yml
backup_file:
  description: The copy of the previous file, when O(backup=true) and the file changed.
  returned: changed and O(backup=true)
  type: str
  sample: /etc/vigil/vigil.yml.12345.2026-11-21@15:30:00~
validated:
  description: Whether C(vigild --check) accepted the new file on the managed host.
  returned: success
  type: bool
  sample: true
reloaded:
  description: Whether the agent was asked to reload and now runs the new config.
  returned: success
  type: bool
  sample: true
agent:
  description: The agent on the managed host as the module found it.
  returned: success
  type: dict
  sample:
    running: true
    socket: /run/vigil/vigil.sock
    config_source: /etc/vigil/vigil.yml
  contains:
    running:
      description: Whether the agent answered on O(socket).
      type: bool
      returned: success
      sample: true
    socket:
      description: The socket asked.
      type: str
      returned: success
      sample: /run/vigil/vigil.sock
    config_source:
      description: The file the running agent reads (null when it is not running).
      type: str
      returned: success
      sample: /etc/vigil/vigil.yml
virtual_servers:
  description:
    - IPVS virtual server names by what the new config does to them on this host
      (C(added), C(changed), C(removed), C(unchanged)), from the running config and the new
      one. When the agent is not running every virtual server counts as added.
  returned: success
  type: dict
  sample:
    added: [web]
    changed: []
    removed: []
    unchanged: []
bfd_sessions:
  description:
    - BFD session names by what the new config does to them on this host, as for
      RV(virtual_servers).
  returned: success
  type: dict
  sample:
    added: [peer, upstream]
    changed: []
    removed: []
    unchanged: []
instances:
  description:
    - VRRP instance names by what the new config does to them on this host.
    - After a reload these are the agent's own reload diff; otherwise (and in check mode)
      they compare the running config with the new one. When the agent is not running every
      instance counts as added.
  returned: success
  type: dict
  sample:
    added: []
    changed: [VI_1]
    removed: []
    unchanged: [VI_2]
  contains:
    added:
      description: Instances the agent will start.
      type: list
      elements: str
      returned: success
      sample: [VI_3]
    changed:
      description: Instances updated in place.
      type: list
      elements: str
      returned: success
      sample: [VI_1]
    removed:
      description: Instances the agent will stop.
      type: list
      elements: str
      returned: success
      sample: []
    unchanged:
      description: Instances not touched.
      type: list
      elements: str
      returned: success
      sample: [VI_2]
priorities:
  description: This host's configured priority per instance in the new config.
  returned: success
  type: dict
  sample:
    VI_1: 150
reload_skipped:
  description: Why the running agent was not reloaded although it does not run O(dest).
  returned: when the agent runs another file than O(dest)
  type: str
  sample: the agent at /run/vigil/vigil.sock runs /etc/vigil/other.yml, not /etc/vigil/vigil.yml;
    it was not reloaded
vip_will_move:
  description: Whether any VIP is expected to move to or away from this host.
  returned: success
  type: bool
  sample: false
vip_moves:
  description:
    - The expected VIP moves. With preemption the VIPs of an instance settle on the node
      with the highest configured priority once every node runs the new config; this
      compares that with this host's current state. Trackers, maintenance and runtime
      priority overrides can keep them elsewhere.
  returned: success
  type: list
  elements: dict
  sample:
    - instance: VI_1
      from: lb1
      to: lb2
      reason: lb2 gets the highest priority (150) and preempts
errors:
  description: Every problem found on the controller (host, path, message), when it failed.
  returned: failure
  type: list
  elements: dict
  sample:
    - host: lb2
      path: vrrp_instances[0].virtual_ipaddresses
      message: "VI_1: virtual_ipaddresses is [10.0.0.101/24] here but [10.0.0.100/24] on lb1;
        the nodes must advertise the same VIPs"
"""

import json
import os
import subprocess
import tempfile
import time
import typing as t

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vigil.ha.plugins.module_utils._agent import (
    QUERY_TIMEOUT,
    AgentConnection,
    VigilError,
)
from ansible_collections.vigil.ha.plugins.module_utils._api import (
    DEFAULT_SOCKET,
    ApiUnreachable,
    error_message,
)

CHECK_TIMEOUT = 60.0
POLL_INTERVAL = 0.1


def matches(expected: t.Any, running: t.Any) -> bool:
    """Whether the running config is the expected one.

    Mappings are compared on the keys both have, so an agent one version apart (a new key
    with its default) does not look different forever; lists must match item by item.
    """
    if isinstance(expected, dict) and isinstance(running, dict):
        return all(matches(expected[k], running[k]) for k in expected if k in running)
    if isinstance(expected, list) and isinstance(running, list):
        return len(expected) == len(running) and all(
            matches(expected[i], running[i]) for i in range(len(expected))
        )
    if isinstance(expected, bool) or isinstance(running, bool):
        return expected is running
    return bool(expected == running)


def named_items(config: t.Any, path: tuple[str, ...]) -> dict[t.Any, t.Any]:
    """The named items of a config list (``("bfd", "sessions")``), by name."""
    node = config or {}
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    items = node if isinstance(node, list) else []
    return {i.get("name"): i for i in items if isinstance(i, dict)}


def instance_diff(
    expected: t.Any, running: t.Any, path: tuple[str, ...] = ("vrrp_instances",)
) -> dict[str, list[str]]:
    """Names added / changed / removed / unchanged from ``running`` to ``expected``.

    ``path`` says which list: VRRP instances, ``("virtual_servers",)``, ``("bfd", "sessions")``.
    """
    new = named_items(expected, path)
    old = named_items(running, path)
    return {
        "added": [n for n in new if n not in old],
        "changed": [n for n in new if n in old and not matches(new[n], old[n])],
        "removed": [n for n in old if n not in new],
        "unchanged": [n for n in new if n in old and matches(new[n], old[n])],
    }


def vip_moves(
    plan: t.Any, instances: list[dict[str, t.Any]], removed: list[str]
) -> list[dict[str, t.Any]]:
    """Predict VIP moves from this host's current states and the new priorities."""
    me = (plan or {}).get("host")
    wanted = (plan or {}).get("instances") or {}
    current = {i.get("name"): i for i in instances}
    moves: list[dict[str, t.Any]] = []
    for name, want in wanted.items():
        now = current.get(name)
        master = want.get("master")
        top = (want.get("priorities") or {}).get(master)
        preempt = bool((want.get("preempts") or {}).get(master, want.get("preempt", True)))
        if now is None or not preempt:
            continue
        state = now.get("state")
        if state == "MASTER" and master != me:
            moves.append(
                {
                    "instance": name,
                    "from": me,
                    "to": master,
                    "reason": f"{master} gets the highest priority ({top}) and preempts",
                }
            )
        elif state != "MASTER" and master == me:
            moves.append(
                {
                    "instance": name,
                    "from": now.get("master_address") or "the current master",
                    "to": me,
                    "reason": f"this host gets the highest priority ({top}) and preempts",
                }
            )
    for name in removed:
        now = current.get(name)
        if now is not None and now.get("state") == "MASTER":
            moves.append(
                {
                    "instance": name,
                    "from": me,
                    "to": None,
                    "reason": "the instance is removed here; its VIPs are removed",
                }
            )
    return moves


class Agent:
    """The running agent on its socket, or the fact that none answers."""

    def __init__(self, socket_path: str, timeout: float | None) -> None:
        self.socket_path = socket_path
        # The shared connection's client: this module tells "no agent yet" (it then reads
        # the file) from a failure, so it catches ApiUnreachable itself.
        self.client = AgentConnection(socket_path, timeout or QUERY_TIMEOUT).client
        self.status: dict[str, t.Any] | None = None
        self.running_config: dict[str, t.Any] | None = None

    def probe(self) -> bool:
        """Read status and config; False when no agent answers on the socket."""
        try:
            code, body = self.client.get("/v1/status")
        except ApiUnreachable as exc:
            if isinstance(exc.__cause__, PermissionError):
                raise VigilError(
                    f"{exc.message}; the module must run as root (become: true) to reload the agent"
                ) from None
            return False  # no agent (or a stale socket of a dead one): it reads the file later
        if code != 200 or not isinstance(body, dict):
            raise VigilError(
                f"the agent at {self.socket_path} answered GET /v1/status with "
                f"{error_message(code, body)}"
            )
        self.status = body
        self.running_config = self.config()
        return True

    @property
    def config_source(self) -> str | None:
        return ((self.status or {}).get("agent") or {}).get("config_source")

    @property
    def instances(self) -> list[dict[str, t.Any]]:
        return list(((self.status or {}).get("vrrp") or {}).get("instances") or [])

    def config(self) -> dict[str, t.Any]:
        try:
            code, body = self.client.get("/v1/config")
        except ApiUnreachable as exc:
            raise VigilError(exc.message) from None
        if code != 200 or not isinstance(body, dict):
            raise VigilError(f"GET /v1/config: {error_message(code, body)}")
        return t.cast(dict, body.get("config") or {})

    def reload(self, dest: str) -> dict[str, t.Any]:
        try:
            code, body = self.client.post("/v1/reload")
        except ApiUnreachable as exc:
            raise VigilError(f"{exc.message}; {dest} was written but not reloaded") from None
        if code != 200 or not isinstance(body, dict):
            raise VigilError(
                f"the agent refused to reload {dest}: {error_message(code, body)}; it keeps "
                "running its previous config",
                response=body,
            )
        return body

    def wait_for(self, expected: t.Any, timeout: float) -> None:
        """Poll GET /v1/config until it shows ``expected``; fail with what it shows."""
        deadline = time.monotonic() + timeout
        running: t.Any = None
        while True:
            running = self.config()
            if matches(expected, running):
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL_INTERVAL)
        diff = instance_diff(expected, running)
        raise VigilError(
            f"the agent did not run the new config within {timeout:g} s (wait_timeout); "
            f"instances still different: {', '.join(diff['changed'] + diff['added']) or 'none'}"
            "; see the agent's log (journalctl -u vigil)",
            running=running,
        )


class ConfigFile:
    """The destination file: read it, validate a candidate, replace it atomically."""

    def __init__(self, module: AnsibleModule, dest: str) -> None:
        self.module = module
        self.dest = dest

    def read(self) -> str | None:
        try:
            with open(self.dest, encoding="utf-8") as handle:
                return handle.read()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise VigilError(f"cannot read {self.dest}: {exc}") from None

    def stage(self, content: str, directory: str | None = None) -> str:
        """Write ``content`` to a temporary file next to ``dest``; return its path.

        Next to ``dest`` so the rename is atomic; check mode validates a copy in ``directory``
        (the system's temporary directory) so nothing appears beside the real file.
        """
        directory = directory or os.path.dirname(self.dest) or "."
        try:
            os.makedirs(directory, mode=0o755, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".vigil.", suffix=".yml.tmp")
        except OSError as exc:
            raise VigilError(f"cannot write in {directory}: {exc}") from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            os.unlink(tmp)
            raise VigilError(f"cannot write {tmp}: {exc}") from None
        return tmp

    def validate(self, tmp: str, vigild: str, state_dir: str | None = None) -> None:
        """``vigild --check --format json`` on the staged file; every issue on failure.
        With ``state_dir`` the check also leaves the file's IPVS start plan there."""
        if not os.access(vigild, os.X_OK):
            raise VigilError(
                f"vigild_path: {vigild} is not an executable on this host; install the agent "
                "first (role vigil.ha.ha_pair), point vigild_path at it, or set validate: false"
            )
        try:
            proc = subprocess.run(
                [vigild, "--check", "--config", tmp, "--format", "json"]
                + (["--state-dir", state_dir] if state_dir else []),
                capture_output=True,
                text=True,
                timeout=CHECK_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise VigilError(f"running {vigild} --check failed: {exc}") from None
        try:
            verdict = json.loads(proc.stdout)
        except ValueError:
            raise VigilError(
                f"{vigild} --check gave no JSON verdict (exit {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
            ) from None
        if verdict.get("valid") is True and proc.returncode == 0:
            return
        errors = []
        for issue in verdict.get("errors") or []:
            issue = dict(issue, file=self.dest)
            errors.append(issue)
        lines = []
        for issue in errors:
            where = f"{self.dest}:{issue['line']}" if issue.get("line") else self.dest
            lines.append(f"{where}: {issue.get('path')}: {issue.get('message')}")
        raise VigilError(
            f"vigild --check on this host rejected the new config; {self.dest} is unchanged:\n"
            + "\n".join(lines),
            validation_errors=errors,
        )

    def replace(self, tmp: str, mode: t.Any, backup: bool) -> str | None:
        """Rename ``tmp`` over ``dest`` (keeping a backup if asked); return the backup path."""
        backup_file = None
        if backup and os.path.exists(self.dest):
            backup_file = self.module.backup_local(self.dest)
        self.module.atomic_move(tmp, self.dest)
        self.module.set_mode_if_different(self.dest, mode, False)
        return backup_file


def run(module: AnsibleModule) -> dict[str, t.Any]:
    params = module.params
    content = params["content"]
    if content is None:
        raise VigilError(
            "vigil.ha.agent_config renders the config on the controller: run it as a task "
            "(its action plugin sets content), not with the module alone"
        )
    dest = params["dest"]
    expected = params["expected"] or {}
    plan = params["plan"] or {}
    mode = params["mode"]
    file = ConfigFile(module, dest)
    before = file.read()
    content_changed = before != content
    mode_changed = False
    if not content_changed and os.path.exists(dest):
        mode_changed = module.set_mode_if_different(dest, mode, False, diff=None) and True
    agent = Agent(params["socket"], params["timeout"])
    running = agent.probe()
    source = agent.config_source if running else None
    reload_wanted = params["reload"] and running
    skipped = None
    if reload_wanted and source is not None and source != dest:
        skipped = f"the agent at {params['socket']} runs {source}, not {dest}; it was not reloaded"
        module.warn(skipped)
        reload_wanted = False
    stale = running and not matches(expected, agent.running_config or {})
    diff = instance_diff(expected, agent.running_config if running else {})
    result: dict[str, t.Any] = {
        "dest": dest,
        "validated": False,
        "reloaded": False,
        "agent": {"running": running, "socket": params["socket"], "config_source": source},
        "instances": diff,
        "virtual_servers": instance_diff(
            expected, agent.running_config if running else {}, ("virtual_servers",)
        ),
        "bfd_sessions": instance_diff(
            expected, agent.running_config if running else {}, ("bfd", "sessions")
        ),
        "priorities": {
            name: inst.get("priority") for name, inst in (plan.get("instances") or {}).items()
        },
    }
    if skipped is not None:
        result["reload_skipped"] = skipped
    moves = vip_moves(plan, agent.instances if running else [], diff["removed"])
    result["vip_moves"] = moves
    result["vip_will_move"] = bool(moves)
    changed = content_changed or mode_changed or bool(reload_wanted and stale)
    result["changed"] = changed
    if module._diff and content_changed:
        result["diff"] = {
            "before": before or "",
            "after": content,
            "before_header": dest,
            "after_header": dest,
        }
    if module.check_mode:
        if content_changed and params["validate"]:
            tmp = file.stage(content, tempfile.gettempdir())
            try:
                file.validate(tmp, params["vigild_path"])
            finally:
                os.unlink(tmp)
            result["validated"] = True
        return result
    if content_changed:
        tmp = file.stage(content)
        try:
            if params["validate"]:
                file.validate(tmp, params["vigild_path"], params["state_dir"])
                result["validated"] = True
            backup_file = file.replace(tmp, mode, params["backup"])
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        if backup_file:
            result["backup_file"] = backup_file
    if reload_wanted and (content_changed or stale):
        answer = agent.reload(dest)
        agent.wait_for(expected, params["wait_timeout"])
        result["reloaded"] = True
        reload_diff = (answer.get("diff") or {}).get("vrrp") or {}
        result["instances"] = {
            key: list(reload_diff.get(key) or [])
            for key in ("added", "changed", "removed", "unchanged")
        }
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "cluster": {"type": "dict", "required": True},
            "group": {"type": "str"},
            "node_var": {"type": "str", "default": "vigil_node"},
            "real_server_var": {"type": "str", "default": "vigil_real_server"},
            "priority_base": {"type": "int", "default": 150},
            "priority_step": {"type": "int", "default": 10},
            "dest": {"type": "path", "default": "/etc/vigil/vigil.yml"},
            "mode": {"type": "raw", "default": "0600"},
            "backup": {"type": "bool", "default": False},
            "validate": {"type": "bool", "default": True},
            "vigild_path": {"type": "path", "default": "/opt/vigil/bin/vigild"},
            "state_dir": {"type": "path"},
            "reload": {"type": "bool", "default": True},
            "socket": {"type": "path", "default": DEFAULT_SOCKET},
            "timeout": {"type": "float"},
            "wait_timeout": {"type": "float", "default": 30.0},
            "content": {"type": "str"},
            "expected": {"type": "dict"},
            "plan": {"type": "dict"},
        },
        supports_check_mode=True,
    )
    try:
        result = run(module)
    except VigilError as exc:
        module.fail_json(msg=exc.msg, **exc.data)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
