#!/usr/bin/python
# Copyright (c) vigil developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Ansible modules keep DOCUMENTATION, EXAMPLES and RETURN above the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: ipvs_info
short_description: Live IPVS virtual servers and real servers from the vigil agent
version_added: 0.1.0
description:
  - Reads the IPVS state of the vigil agent on the managed host from its local API
    (C(GET /v1/ipvs/virtual_servers)), the same data the API gives, that is every virtual
    server with its quorum, sorry server and real servers (health, checks, drain, weights,
    the kernel's connections and counters), whether IPVS is usable in the kernel, and the
    connection sync daemon.
  - The kernel's counters are read when the request comes in.
  - Changes nothing. Useful in playbooks (is a backend drained, how many connections are
    left) and ad hoc, for example C(ansible -i inventory.yml directors -b -m vigil.ha.ipvs_info).
author:
  - vigil developers (@vigil)
options:
  virtual_server:
    description:
      - Report only this virtual server (its C(name) in the agent's configuration).
      - A virtual server the agent does not run is an error that lists the ones it has.
      - When unset, all virtual servers are reported.
    type: str
extends_documentation_fragment:
  - vigil.ha.vigil
  - vigil.ha.vigil.attributes
  - vigil.ha.vigil.info_module
seealso:
  - module: vigil.ha.real_server
  - module: vigil.ha.bfd_info
  - name: vigild IPVS API
    description: The fields of each virtual server and real server.
    link: https://example.invalid/vigil/docs/api.md
"""

EXAMPLES = r"""
- name: Read the IPVS state of every director
  vigil.ha.ipvs_info:
  become: true
  register: ipvs

- name: Show the real servers of the virtual server web and their health
  ansible.builtin.debug:
    msg: "{{ item.name }} is {{ item.state }}{{ ' (drained)' if item.drained else '' }}"
  loop: "{{ (ipvs.virtual_servers | selectattr('name', '==', 'web') | first).real_servers }}"
  loop_control:
    label: "{{ item.name }}"

- name: Read one virtual server from an agent listening on another socket
  vigil.ha.ipvs_info:
    virtual_server: web
    socket: /run/vigil-test/vigil.sock
    timeout: 5
  become: true
  register: web

- name: Fail unless every real server of web is up and IPVS is in use
  ansible.builtin.assert:
    that:
      - web.kernel.available
      - web.virtual_servers[0].real_servers | rejectattr('state', '==', 'UP') | list | length == 0
"""

RETURN = r"""
virtual_servers:
  description:
    - The virtual servers (only O(virtual_server) when it is set), as the API lists them.
    - Each carries more keys than listed here (scheduler, persistence, counters, rates,
      C(ha_suspend)); see the agent's API documentation.
  returned: success
  type: list
  elements: dict
  sample:
    - name: web
      services: [tcp 10.62.0.100:80]
      scheduler: wlc
      in_ipvs: true
      quorum: {state: UP, quorum: 1, hysteresis: 0, live_weight: 3}
      sorry_server: null
      real_servers:
        - name: 10.62.1.11:80
          address: 10.62.1.11
          port: 80
          state: UP
          drained: false
          configured_weight: 1
          ipvs_weight: 1
          in_ipvs: true
          connections: {active: 12, inactive: 40, persistent: 0}
  contains:
    name:
      description: The virtual server's name.
      type: str
      returned: success
      sample: web
    services:
      description: The IPVS services it programs (C(tcp 10.0.0.1:80), C(fwmark 7 (IPv4))).
      type: list
      elements: str
      returned: success
      sample: [tcp 10.62.0.100:80]
    in_ipvs:
      description: Whether every service of it is in the kernel now.
      type: bool
      returned: success
      sample: true
    quorum:
      description: V(UP) or V(DOWN) (V(INIT) before the first checks), with the live weight.
      type: dict
      returned: success
      sample: {state: UP, quorum: 1, hysteresis: 0, live_weight: 3}
    real_servers:
      description:
        - The real servers with their health (C(state) V(UP), V(DOWN) or V(INIT)), drain,
          weights (C(configured_weight), C(effective_weight), C(ipvs_weight); V(null) when
          not in IPVS), checks and the kernel's connections (V(null) when not in IPVS).
        - C(name) (C(ADDRESS:PORT)) is the name M(vigil.ha.real_server) takes.
      type: list
      elements: dict
      returned: success
      sample:
        - name: 10.62.1.11:80
          state: UP
          drained: false
          ipvs_weight: 1
          connections: {active: 12, inactive: 40, persistent: 0}
kernel:
  description:
    - Whether IPVS is usable (C(available)), whether it is needed (C(used)), and why not
      (C(error), for example that the kernel has no IPVS), with the agent's netlink counters.
  returned: success
  type: dict
  sample:
    available: false
    used: true
    error: "cannot open IPVS generic netlink: this kernel has no IPVS (CONFIG_IP_VS) or ip_vs
      is not loaded (modprobe ip_vs)"
sync_daemon:
  description:
    - The connection sync daemon (C(interface), C(instance) it follows, that instance's
      C(vrrp_state), C(syncid), C(running)), or V(null) when none is configured.
  returned: success
  type: dict
  sample:
    interface: eth0
    instance: VI_1
    vrrp_state: MASTER
    syncid: 51
    running: [master]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vigil.ha.plugins.module_utils._agent import (
    AgentConnection,
    VigilError,
    vigil_argument_spec,
)
from ansible_collections.vigil.ha.plugins.module_utils._ipvs import (
    ipvs_view,
    select_virtual_servers,
)


def main() -> None:
    argument_spec = vigil_argument_spec()
    argument_spec.update(virtual_server={"type": "str"})
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        conn = AgentConnection(module.params["socket"], module.params["timeout"])
        view = ipvs_view(conn)
        selected = select_virtual_servers(
            list(view.get("virtual_servers") or []), module.params["virtual_server"]
        )
    except VigilError as exc:
        module.fail_json(msg=exc.msg, **exc.data)
    module.exit_json(
        changed=False,
        virtual_servers=selected,
        kernel=view.get("kernel") or {},
        sync_daemon=view.get("sync_daemon"),
    )


if __name__ == "__main__":
    main()
