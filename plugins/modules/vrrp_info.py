#!/usr/bin/python
# Copyright (c) vigil developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Ansible modules keep DOCUMENTATION, EXAMPLES and RETURN above the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: vrrp_info
short_description: Live VRRP state from the vigil agent
version_added: 0.1.0
description:
  - Reads the live state of the vigil agent on the managed host from its local API
    (C(GET /v1/status)), that is the agent itself and every VRRP instance with its state,
    priorities, current master and which virtual addresses are present in the kernel.
  - Changes nothing. Useful in playbooks (to find the master of a pair) and ad hoc, for
    example C(ansible -i inventory.yml all -b -m vigil.ha.vrrp_info).
author:
  - vigil developers (@vigil)
options:
  instance:
    description:
      - Report only this VRRP instance.
      - An instance the agent does not run is an error that lists the ones it has.
      - When unset, all instances are reported.
    type: str
extends_documentation_fragment:
  - vigil.ha.vigil
  - vigil.ha.vigil.attributes
  - vigil.ha.vigil.info_module
seealso:
  - module: vigil.ha.vrrp_failover
  - module: vigil.ha.maintenance
"""

EXAMPLES = r"""
- name: Read the VRRP state of every node
  vigil.ha.vrrp_info:
  become: true
  register: vrrp

- name: Show which node is master of VI_1
  ansible.builtin.debug:
    msg: "{{ inventory_hostname }} is {{ vi1_state }}"
  vars:
    vi1_state: "{{ (vrrp.instances | selectattr('name', '==', 'VI_1') | first).state }}"

- name: Read one instance from an agent listening on another socket
  vigil.ha.vrrp_info:
    instance: VI_1
    socket: /run/vigil-test/vigil.sock
    timeout: 5
  become: true
  register: vi1

- name: Fail unless this node holds every VIP of VI_1
  ansible.builtin.assert:
    that:
      - vi1.instances[0].state == 'MASTER'
      - vi1.instances[0].vips | rejectattr('present') | list | length == 0
"""

RETURN = r"""
agent:
  description:
    - The agent's own status as C(GET /v1/status) reports it.
  returned: success
  type: dict
  sample:
    router_id: node1
    version: 0.1.0
    pid: 4121
    phase: running
    ready: true
    uptime_s: 30.1
    config_source: /etc/vigil/vigil.yml
    socket: /run/vigil/vigil.sock
  contains:
    router_id:
      description: The agent's router ID (C(global.router_id), by default the host name).
      type: str
      returned: success
      sample: node1
    version:
      description: The agent's version.
      type: str
      returned: success
      sample: 0.1.0
    phase:
      description: One of V(starting), V(running), V(stopping), V(stopped).
      type: str
      returned: success
      sample: running
    ready:
      description: Whether every subsystem of the agent has started.
      type: bool
      returned: success
      sample: true
instances:
  description:
    - The VRRP instances (only O(instance) when it is set), as the API lists them.
    - Each carries more keys than listed here (timers, counters, trackers, the last
      transition, runtime control); see the agent's API documentation.
  returned: success
  type: list
  elements: dict
  sample:
    - name: VI_1
      state: MASTER
      interface: eth0
      vrid: 51
      version: 3
      family: 4
      priority: 150
      effective_priority: 150
      master_address: 10.99.0.11
      master_priority: 150
      maintenance: false
      vips:
        - address: 10.99.0.100/24
          dev: eth0
          present: true
  contains:
    name:
      description: The instance name.
      type: str
      returned: success
      sample: VI_1
    state:
      description: V(INIT), V(BACKUP), V(MASTER) or V(FAULT).
      type: str
      returned: success
      sample: MASTER
    priority:
      description: The configured priority.
      type: int
      returned: success
      sample: 150
    effective_priority:
      description: The priority advertised now (trackers, overrides and maintenance applied).
      type: int
      returned: success
      sample: 150
    master_address:
      description: Address of the current master as this node sees it (its own when master).
      type: str
      returned: success
      sample: 10.99.0.11
    maintenance:
      description: Whether the instance is in maintenance.
      type: bool
      returned: success
      sample: false
    vips:
      description: The virtual addresses and whether each is in the kernel now.
      type: list
      elements: dict
      returned: success
      sample:
        - address: 10.99.0.100/24
          dev: eth0
          present: true
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vigil.ha.plugins.module_utils._agent import (
    AgentConnection,
    VigilError,
    vigil_argument_spec,
)
from ansible_collections.vigil.ha.plugins.module_utils._vrrp import (
    select_instances,
    vrrp_status,
)


def main() -> None:
    argument_spec = vigil_argument_spec()
    argument_spec.update(instance={"type": "str"})
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        agent_conn = AgentConnection(module.params["socket"], module.params["timeout"])
        agent, instances = vrrp_status(agent_conn)
        selected = select_instances(instances, module.params["instance"])
    except VigilError as exc:
        module.fail_json(msg=exc.msg, **exc.data)
    module.exit_json(changed=False, agent=agent, instances=selected)


if __name__ == "__main__":
    main()
