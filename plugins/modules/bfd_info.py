#!/usr/bin/python
# Copyright (c) vigil developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Ansible modules keep DOCUMENTATION, EXAMPLES and RETURN above the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: bfd_info
short_description: Live BFD sessions from the vigil agent
version_added: 0.1.0
description:
  - Reads the BFD sessions of the vigil agent on the managed host from its local API
    (C(GET /v1/bfd/sessions)), the same data the API gives, that is every configured
    session in config order with its state and the peer's, diagnostics, negotiated timers,
    detection time, uptime, counters and whether an operator shut it down.
  - Changes nothing. Useful in playbooks (wait until the pair's session is Up) and ad hoc,
    for example C(ansible -i inventory.yml vigil -b -m vigil.ha.bfd_info).
author:
  - vigil developers (@vigil)
options:
  session:
    description:
      - Report only this BFD session (its C(name) in the agent's configuration).
      - A session the agent does not have is an error that lists the ones it has.
      - When unset, all sessions are reported.
    type: str
extends_documentation_fragment:
  - vigil.ha.vigil
  - vigil.ha.vigil.attributes
  - vigil.ha.vigil.info_module
seealso:
  - module: vigil.ha.bfd_session
  - module: vigil.ha.ipvs_info
  - name: vigild BFD API
    description: The fields of each session.
    link: https://example.invalid/vigil/docs/api.md
"""

EXAMPLES = r"""
- name: Read the BFD sessions of every node
  vigil.ha.bfd_info:
  become: true
  register: bfd

- name: Show the sessions that are not Up
  ansible.builtin.debug:
    msg: "{{ item.name }} to {{ item.peer }} is {{ item.state }} ({{ item.local_diag_text }})"
  loop: "{{ bfd.sessions | rejectattr('state', '==', 'Up') | list }}"
  loop_control:
    label: "{{ item.name }}"

- name: Wait until the session to the pair's other node is Up
  vigil.ha.bfd_info:
    session: peer
  become: true
  register: peer
  until: peer.sessions[0].state == 'Up'
  retries: 20
  delay: 1
"""

RETURN = r"""
sessions:
  description:
    - The BFD sessions (only O(session) when it is set), as the API lists them.
    - Each carries more keys than listed here (discriminators, counters, rejects, the last
      transition, its configuration with secrets redacted); see the agent's API
      documentation.
  returned: success
  type: list
  elements: dict
  sample:
    - name: peer
      peer: 10.77.0.12
      local: 10.77.0.11
      interface: null
      multihop: false
      state: Up
      remote_state: Up
      local_diag: 0
      local_diag_text: No Diagnostic
      tx_interval: 0.3
      rx_interval: 0.3
      detection_time: 0.9
      uptime: 312.4
      shutdown_by_operator: false
      error: null
  contains:
    name:
      description: The session's name (its tracker is C(bfd:NAME)).
      type: str
      returned: success
      sample: peer
    peer:
      description: The peer's address.
      type: str
      returned: success
      sample: 10.77.0.12
    state:
      description: V(AdminDown), V(Down), V(Init) or V(Up).
      type: str
      returned: success
      sample: Up
    remote_state:
      description: The peer's state as its last packet said.
      type: str
      returned: success
      sample: Up
    local_diag_text:
      description: Why this end last went down (RFC 5880 diagnostic).
      type: str
      returned: success
      sample: Control Detection Time Expired
    detection_time:
      description: Seconds without a packet before this end declares the session Down.
      type: float
      returned: success
      sample: 0.9
    shutdown_by_operator:
      description: Whether it was shut down with M(vigil.ha.bfd_session) or the API.
      type: bool
      returned: success
      sample: false
    error:
      description: Why a configured session is not running (its port is taken), else V(null).
      type: str
      returned: success
      sample: null
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vigil.ha.plugins.module_utils._agent import (
    AgentConnection,
    VigilError,
    vigil_argument_spec,
)
from ansible_collections.vigil.ha.plugins.module_utils._bfd import (
    bfd_sessions,
    select_sessions,
)


def main() -> None:
    argument_spec = vigil_argument_spec()
    argument_spec.update(session={"type": "str"})
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        conn = AgentConnection(module.params["socket"], module.params["timeout"])
        sessions = select_sessions(bfd_sessions(conn), module.params["session"])
    except VigilError as exc:
        module.fail_json(msg=exc.msg, **exc.data)
    module.exit_json(changed=False, sessions=sessions)


if __name__ == "__main__":
    main()
