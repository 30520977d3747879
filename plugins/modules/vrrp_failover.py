#!/usr/bin/python
# Copyright (c) vigil developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Ansible modules keep DOCUMENTATION, EXAMPLES and RETURN above the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: vrrp_failover
short_description: Make this node VRRP master or backup with the agent's verified failover
version_added: 0.1.0
description:
  - Makes the managed host master (O(state=master)) or backup (O(state=backup)) of one VRRP
    instance, or of all instances the agent runs.
  - On a backup that should be master it asks the agent for a I(takeover); on a master
    that should be backup for a I(handover) to the best peer. Both are make-before-break
    (clients lose no packet) and verified by the agent before it answers.
  - Idempotent. An instance already in the wanted state is left alone, and the task reports
    C(changed) only when an instance moved.
  - In check mode it predicts the change from the live state, and fails as a real run would
    for an instance that cannot move (in C(FAULT), or in maintenance for O(state=master)).
  - On failure (no peer took over, the move was not observed in time) the task fails with the
    agent's message and what it observed.
author:
  - vigil developers (@vigil)
options:
  instance:
    description:
      - The VRRP instance to move.
      - When unset, every instance the agent runs is moved.
      - An instance the agent does not run is an error that lists the ones it has.
    type: str
  state:
    description:
      - What this node should be for the instance(s).
      - V(master) takes over on a backup (raising a runtime priority override above the
        master's when needed, until it is cleared with C(vigilctl priority INSTANCE --clear)).
      - V(backup) hands over on the master. The node then does not take mastership back by
        preemption until a takeover, the end of maintenance, the end of O(hold), or an agent
        restart; it still takes over from a master that dies.
    type: str
    required: true
    choices: [master, backup]
  hold:
    description:
      - With O(state=backup), how many seconds after a handover the node holds off preempting
        the new master. When unset it holds until told otherwise (see O(state)).
    type: float
extends_documentation_fragment:
  - vigil.ha.vigil
  - vigil.ha.vigil.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The diff shows each moved instance's state before and after.
seealso:
  - module: vigil.ha.vrrp_info
  - module: vigil.ha.maintenance
"""

EXAMPLES = r"""
- name: Hand VI_1 over from node1 to its peer
  vigil.ha.vrrp_failover:
    instance: VI_1
    state: backup
  become: true
  when: inventory_hostname == 'node1'

- name: Make node2 master of every instance, waiting up to 10 seconds for each move
  vigil.ha.vrrp_failover:
    state: master
    timeout: 10
  become: true
  when: inventory_hostname == 'node2'

- name: Predict whether a failover of VI_1 to this node would move anything
  vigil.ha.vrrp_failover:
    instance: VI_1
    state: master
  become: true
  check_mode: true
  register: prediction
"""

RETURN = r"""
instances:
  description:
    - One entry per selected instance, in the agent's order, moved or not.
  returned: success
  type: list
  elements: dict
  sample:
    - instance: VI_1
      action: handover
      state_before: MASTER
      state_after: BACKUP
      message: handed over to 10.99.0.12 (priority 100); VIPs removed after its advert
      new_master: 10.99.0.12
      elapsed_s: 1.21
  contains:
    instance:
      description: The instance name.
      type: str
      returned: success
      sample: VI_1
    action:
      description:
        - V(takeover) or V(handover) when the instance moved (or would move, in check mode);
          V(none) when it already was in the wanted state.
      type: str
      returned: success
      sample: handover
    state_before:
      description: The instance's state before the task.
      type: str
      returned: success
      sample: MASTER
    state_after:
      description:
        - The instance's state after the task as the agent verified it; in check mode, the
          predicted state.
      type: str
      returned: success
      sample: BACKUP
    message:
      description: The agent's description of what it did.
      type: str
      returned: when the instance moved and not in check mode
      sample: MASTER with VIPs, taking over from 10.99.0.11
    new_master:
      description: The master after a handover, as this node saw its advertisement.
      type: str
      returned: after a handover
      sample: 10.99.0.12
    override:
      description:
        - The runtime priority override a takeover set to outrank the old master, or
          V(null) when the node already outranked it.
      type: int
      returned: after a takeover
      sample: 151
    elapsed_s:
      description: How long the agent took to do and verify the move, in seconds.
      type: float
      returned: when the instance moved and not in check mode
      sample: 1.21
status:
  description:
    - On failure, the HTTP status the agent answered with. V(409) when the move was not
      possible in the observed state or was rolled back, V(504) when its effect did not
      show up in time.
  returned: failure
  type: int
  sample: 409
observed:
  description:
    - On failure, the instance's state as the agent observed it when it gave up (state,
      effective priority, master, VIPs present, maintenance, preemption hold).
  returned: failure
  type: dict
  sample:
    state: MASTER
    effective_priority: 150
    master_address: 10.99.0.11
    master_priority: 150
    vips_present: [10.99.0.100/24]
    maintenance: false
    preempt_hold: false
"""

import typing as t

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vigil.ha.plugins.module_utils._agent import (
    AgentConnection,
    VigilError,
    vigil_argument_spec,
)
from ansible_collections.vigil.ha.plugins.module_utils._vrrp import (
    failover_plan,
    instance_path,
    instance_view,
    select_instances,
    vrrp_status,
)

TARGET_STATE = {"master": "MASTER", "backup": "BACKUP"}


def run(module: AnsibleModule) -> dict[str, t.Any]:
    """Plan from the live state, then (outside check mode) move what needs moving."""
    params = module.params
    want = params["state"]
    if params["hold"] is not None and (want != "backup" or params["hold"] <= 0):
        raise VigilError(
            "hold: only with state=backup, as seconds more than 0; "
            f"got {params['hold']:g} with state={want}"
        )
    conn = AgentConnection(params["socket"], params["timeout"], action=True)
    _agent, instances = vrrp_status(conn)
    steps = failover_plan(select_instances(instances, params["instance"]), want)
    changed = any(step["action"] for step in steps)
    results: list[dict[str, t.Any]] = []
    before: dict[str, str] = {}
    after: dict[str, str] = {}
    for step in steps:
        name = step["instance"]
        entry = {
            "instance": name,
            "action": step["action"] or "none",
            "state_before": step["state"],
            "state_after": step["state"],
        }
        if step["action"]:
            before[name] = step["state"]
            after[name] = TARGET_STATE[want]
            if module.check_mode:
                entry["state_after"] = TARGET_STATE[want]
            else:
                entry.update(move(conn, name, step["action"], want, params["hold"], results))
        results.append(entry)
    out: dict[str, t.Any] = {"changed": changed, "instances": results}
    if module._diff:
        out["diff"] = {"before": before, "after": after}
    return out


def move(
    conn: AgentConnection,
    name: str,
    action: str,
    want: str,
    hold: float | None,
    done: list[dict[str, t.Any]],
) -> dict[str, t.Any]:
    """One verified takeover or handover; a failure carries what moved before it."""
    # An earlier move (a sync group) may have moved this instance already.
    current = str(instance_view(conn, name).get("state"))
    if current == TARGET_STATE[want]:
        return {"action": "none", "state_after": current, "message": "moved with its group"}
    body: dict[str, t.Any] = {}
    if action == "handover" and hold is not None:
        body["hold"] = hold
    try:
        answer = conn.act(instance_path(name, action), body)
    except VigilError as exc:
        exc.data.setdefault("instance", name)
        exc.data["instances"] = done
        raise
    result: dict[str, t.Any] = {
        "state_after": (answer.get("after") or {}).get("state"),
        "message": answer.get("message"),
        "elapsed_s": answer.get("elapsed_s"),
    }
    if action == "handover":
        result["new_master"] = answer.get("new_master")
    else:
        result["override"] = answer.get("override")
    return result


def main() -> None:
    argument_spec = vigil_argument_spec()
    argument_spec.update(
        instance={"type": "str"},
        state={"type": "str", "required": True, "choices": ["master", "backup"]},
        hold={"type": "float"},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        result = run(module)
    except VigilError as exc:
        module.fail_json(msg=exc.msg, **exc.data)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
