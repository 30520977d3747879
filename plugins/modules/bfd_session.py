#!/usr/bin/python
# Copyright (c) vigil developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Ansible modules keep DOCUMENTATION, EXAMPLES and RETURN above the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: bfd_session
short_description: Shut a BFD session of the vigil agent down administratively, or enable it
version_added: 0.1.0
description:
  - O(state=disabled) puts a BFD session into C(AdminDown) (diagnostic 7). The peer is told
    and takes the session down without treating it as a failure (RFC 5882 section 3.2); on
    this node, whatever tracks the session (a VRRP instance with C(track.bfd)) sees it
    failed. The agent answers once the session is C(AdminDown) and, if it was Up, the peer
    answered Down (C(peer_acknowledged)). The shutdown is kept across agent restarts until
    the session is enabled.
  - O(state=enabled) takes it out of C(AdminDown) and, with O(wait_up), answers once the
    session is Up again (or fails with what was seen after O(timeout)).
  - Idempotent. Only a session whose administrative state differs is changed (a session
    is administratively down when its state is C(AdminDown), from this module, the API
    or C(admin_down) in the configuration). Check mode reports what would change.
author:
  - vigil developers (@vigil)
options:
  name:
    description:
      - The BFD session (its C(name) in the agent's configuration).
      - A session the agent does not have is an error that lists the ones it has.
    type: str
    required: true
  state:
    description:
      - V(disabled) shuts the session down (AdminDown), V(enabled) brings it back.
    type: str
    required: true
    choices: [enabled, disabled]
  wait_up:
    description:
      - With O(state=enabled), wait until the session is Up (the peer must be configured
        and reachable); the agent waits O(timeout), 10 seconds when unset.
      - When false the task returns once the session left AdminDown.
      - A session that already is enabled is not waited for.
    type: bool
    default: true
extends_documentation_fragment:
  - vigil.ha.vigil
  - vigil.ha.vigil.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The diff shows the session's administrative state.
seealso:
  - module: vigil.ha.bfd_info
"""

EXAMPLES = r"""
- name: Take the session to the upstream router down before its maintenance
  vigil.ha.bfd_session:
    name: upstream
    state: disabled
  become: true

- name: Bring it back and wait up to 30 seconds for it to come Up
  vigil.ha.bfd_session:
    name: upstream
    state: enabled
    timeout: 30
  become: true
"""

RETURN = r"""
session:
  description: The session's name.
  returned: always
  type: str
  sample: upstream
action:
  description:
    - V(shutdown), V(enable), or V(null) when the session already had the wanted
      administrative state.
  returned: success
  type: str
  sample: shutdown
before:
  description: The session before the task (C(state), C(remote_state), both diagnostics).
  returned: success
  type: dict
  sample:
    state: Up
    remote_state: Up
    local_diag_text: No Diagnostic
    remote_diag_text: No Diagnostic
after:
  description:
    - The session after the task as the agent verified it (in check mode, as before).
  returned: success
  type: dict
  sample:
    state: AdminDown
    remote_state: Down
    local_diag_text: Administratively Down
    remote_diag_text: Neighbor Signaled Session Down
message:
  description: The agent's description of what it did.
  returned: when the session changed and not in check mode
  type: str
  sample: shut down; the peer answered Down
peer_acknowledged:
  description: After a shutdown of an Up session, whether the peer answered Down in time.
  returned: when the session was shut down and not in check mode
  type: bool
  sample: true
status:
  description:
    - On failure, the HTTP status the agent answered with. V(504) when the session did not
      come Up in time, V(409) for a configured session that is not running, V(503) when the
      administrative state could not be saved (nothing changed).
  returned: failure
  type: int
  sample: 504
observed:
  description: On failure, the session as the agent observed it when it gave up.
  returned: failure
  type: dict
  sample:
    state: Down
    remote_state: Down
    local_diag_text: No Diagnostic
    remote_diag_text: No Diagnostic
"""

import typing as t

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vigil.ha.plugins.module_utils._agent import (
    AgentConnection,
    VigilError,
    vigil_argument_spec,
)
from ansible_collections.vigil.ha.plugins.module_utils._bfd import (
    bfd_sessions,
    select_sessions,
    session_path,
    session_plan,
)


def snapshot(view: dict[str, t.Any]) -> dict[str, t.Any]:
    keys = ("state", "remote_state", "local_diag_text", "remote_diag_text")
    return {key: view.get(key) for key in keys}


def run(module: AnsibleModule) -> dict[str, t.Any]:
    params = module.params
    conn = AgentConnection(params["socket"], params["timeout"], action=True)
    (session,) = select_sessions(bfd_sessions(conn), params["name"])
    action = session_plan(session, params["state"])
    before = snapshot(session)
    out: dict[str, t.Any] = {
        "changed": action is not None,
        "session": params["name"],
        "action": action,
        "before": before,
        "after": before,
    }
    if action is not None and not module.check_mode:
        body: dict[str, t.Any] = {}
        if action == "enable":
            body["wait_up"] = params["wait_up"]
        answer = conn.act(session_path(params["name"], action), body)
        out["after"] = answer.get("after") or before
        out["message"] = answer.get("message")
        if "peer_acknowledged" in answer:
            out["peer_acknowledged"] = answer["peer_acknowledged"]
        admin_down = out["after"].get("state") == "AdminDown"
        if admin_down != (action == "shutdown"):
            raise VigilError(
                f"{params['name']}: the agent accepted {action} but reports "
                f"{out['after'].get('state')} afterwards; check its log",
                session=params["name"],
                observed=out["after"],
            )
    elif action is not None:
        predicted = "AdminDown" if action == "shutdown" else "Down"
        out["after"] = dict(before, state=predicted)
    if module._diff and action is not None:
        out["diff"] = {
            "before": {"admin_down": action == "enable"},
            "after": {"admin_down": action == "shutdown"},
        }
    return out


def main() -> None:
    argument_spec = vigil_argument_spec()
    argument_spec.update(
        name={"type": "str", "required": True},
        state={"type": "str", "required": True, "choices": ["enabled", "disabled"]},
        wait_up={"type": "bool", "default": True},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        result = run(module)
    except VigilError as exc:
        module.fail_json(msg=exc.msg, **{"session": module.params["name"], **exc.data})
    module.exit_json(**result)


if __name__ == "__main__":
    main()
