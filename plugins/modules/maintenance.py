#!/usr/bin/python
# Copyright (c) vigil developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Ansible modules keep DOCUMENTATION, EXAMPLES and RETURN above the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: maintenance
short_description: Put a vigil node or one VRRP instance into maintenance, or take it out
version_added: 0.1.0
description:
  - Turns VRRP maintenance on (O(state=enabled)) or off (O(state=disabled)) for one instance
    or, when O(instance) is unset, for every instance of the node.
  - In maintenance an instance advertises priority 1, does not preempt, and a master first
    hands over to its peer without losing a packet; the agent answers once the instance is
    C(BACKUP) with its virtual addresses gone from the kernel. Maintenance survives agent
    restarts and reboots. A node in maintenance still takes over from a dead master as a
    last resort.
  - Ending maintenance lets the node take mastership back at once (make-before-break) when
    it outranks the master and preempts.
  - Idempotent. Only instances whose maintenance flag differs are changed, and the task
    reports C(changed) only then. Check mode reports what would change.
  - After the change the module reads the flags again and fails unless every selected
    instance shows the wanted one.
author:
  - vigil developers (@vigil)
options:
  instance:
    description:
      - The VRRP instance to put into or take out of maintenance.
      - When unset, the whole node (every instance the agent runs).
      - An instance the agent does not run is an error that lists the ones it has.
    type: str
  state:
    description:
      - V(enabled) puts the instance(s) into maintenance, V(disabled) takes them out.
    type: str
    required: true
    choices: [enabled, disabled]
extends_documentation_fragment:
  - vigil.ha.vigil
  - vigil.ha.vigil.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The diff shows the maintenance flag of each changed instance.
seealso:
  - module: vigil.ha.vrrp_info
  - module: vigil.ha.vrrp_failover
"""

EXAMPLES = r"""
- name: Put node1 into maintenance before patching it
  vigil.ha.maintenance:
    state: enabled
  become: true
  when: inventory_hostname == 'node1'

- name: Take VI_2 out of maintenance, allowing 10 seconds for a take-back
  vigil.ha.maintenance:
    instance: VI_2
    state: disabled
    timeout: 10
  become: true
"""

RETURN = r"""
instances:
  description:
    - One entry per selected instance, in the agent's order.
  returned: success
  type: list
  elements: dict
  sample:
    - instance: VI_1
      changed: true
      maintenance: true
      state_before: MASTER
      state_after: BACKUP
      message: "maintenance on: BACKUP, VIPs absent, advertising priority 1 if ever master"
  contains:
    instance:
      description: The instance name.
      type: str
      returned: success
      sample: VI_1
    changed:
      description: Whether this instance's maintenance flag changed (or would, in check mode).
      type: bool
      returned: success
      sample: true
    maintenance:
      description: The instance's maintenance flag after the task (predicted in check mode).
      type: bool
      returned: success
      sample: true
    state_before:
      description: The instance's VRRP state before the task.
      type: str
      returned: success
      sample: MASTER
    state_after:
      description: The instance's VRRP state after the task (in check mode, as before).
      type: str
      returned: success
      sample: BACKUP
    message:
      description: The agent's description of what it did.
      type: str
      returned: when the instance changed and not in check mode
      sample: "maintenance on: BACKUP, VIPs absent, advertising priority 1 if ever master"
status:
  description:
    - On failure, the HTTP status the agent answered with. V(409) when the move was not
      possible in the observed state or was rolled back, V(504) when its effect did not
      show up in time.
  returned: failure
  type: int
  sample: 409
instance_results:
  description:
    - On failure of a node-wide change, the agent's result for each instance, failed or
      not (C(ok), C(message), and for a failed one C(observed)).
  returned: failure
  type: list
  elements: dict
  sample:
    - instance: VI_1
      ok: false
      message: "VI_1: maintenance rolled back: no peer took over"
observed:
  description:
    - On failure, the instance's state as the agent observed it when it gave up.
  returned: failure
  type: dict
  sample:
    state: MASTER
    effective_priority: 1
    master_address: 10.99.0.11
    master_priority: 1
    vips_present: [10.99.0.100/24]
    maintenance: true
    preempt_hold: true
"""

import typing as t

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vigil.ha.plugins.module_utils._agent import (
    AgentConnection,
    VigilError,
    vigil_argument_spec,
)
from ansible_collections.vigil.ha.plugins.module_utils._vrrp import (
    maintenance_plan,
    select_instances,
    vrrp_status,
)


def run(module: AnsibleModule) -> dict[str, t.Any]:
    """Compare the flags with the wanted one, change only those that differ, re-check."""
    params = module.params
    enabled = params["state"] == "enabled"
    conn = AgentConnection(params["socket"], params["timeout"], action=True)
    _agent, instances = vrrp_status(conn)
    selected = select_instances(instances, params["instance"])
    todo = maintenance_plan(selected, enabled)
    messages: dict[str, str] = {}
    if todo and not module.check_mode:
        messages = apply(conn, selected, todo, enabled, params["instance"] is None)
        _agent, instances = vrrp_status(conn)
    now = {str(i.get("name")): i for i in instances}
    results = []
    for inst in selected:
        name = str(inst.get("name"))
        after = now.get(name, inst)
        entry: dict[str, t.Any] = {
            "instance": name,
            "changed": name in todo,
            "maintenance": enabled if name in todo else bool(inst.get("maintenance")),
            "state_before": inst.get("state"),
            "state_after": after.get("state"),
        }
        if name in messages:
            entry["message"] = messages[name]
        if not module.check_mode and bool(after.get("maintenance")) != entry["maintenance"]:
            raise VigilError(
                f"{name}: the agent accepted maintenance {params['state']} but reports "
                f"maintenance={bool(after.get('maintenance'))} afterwards; check its log",
                instance=name,
                observed=after,
            )
        results.append(entry)
    out: dict[str, t.Any] = {"changed": bool(todo), "instances": results}
    if module._diff:
        out["diff"] = {
            "before": {name: not enabled for name in todo},
            "after": {name: enabled for name in todo},
        }
    return out


def apply(
    conn: AgentConnection,
    selected: list[dict[str, t.Any]],
    todo: list[str],
    enabled: bool,
    whole_node: bool,
) -> dict[str, str]:
    """One call for the whole node when every instance changes, else one per instance.

    The node-wide call lets the agent move every master at once; the per-instance calls
    leave instances that already have the wanted flag untouched (maintenance off, for one,
    would also release a preemption hold).
    """
    if whole_node and len(todo) == len(selected):
        calls: list[dict[str, t.Any]] = [{"enabled": enabled}]
    else:
        calls = [{"enabled": enabled, "instance": name} for name in todo]
    messages: dict[str, str] = {}
    for body in calls:
        answer = conn.act("/v1/vrrp/maintenance", body)
        for res in answer.get("results") or []:
            if isinstance(res, dict) and res.get("instance"):
                messages[str(res["instance"])] = str(res.get("message", ""))
    return messages


def main() -> None:
    argument_spec = vigil_argument_spec()
    argument_spec.update(
        instance={"type": "str"},
        state={"type": "str", "required": True, "choices": ["enabled", "disabled"]},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        result = run(module)
    except VigilError as exc:
        module.fail_json(msg=exc.msg, **exc.data)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
