#!/usr/bin/python
# Copyright (c) vigil developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Ansible modules keep DOCUMENTATION, EXAMPLES and RETURN above the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: real_server
short_description: Drain an IPVS real server on a vigil director, or enable it again
version_added: 0.1.0
description:
  - O(state=drained) gives the real server weight 0 in every service of the virtual server
    on this director. It gets no new connections and keeps its established ones. The agent
    answers once a fresh read of the kernel shows weight 0. The drain is kept across agent
    restarts and reloads, and a drained server counts 0 toward the quorum.
  - With O(wait), the task then waits until the real server has no active connection left
    on this director, and fails when O(wait_timeout) passes first (the server stays drained).
    A director that does not carry the virtual server now (its address is on the other
    director) does not wait (C(wait.outcome) V(standby)).
  - O(state=enabled) lifts the drain. The real server gets its weight back, and its health
    checks still decide whether it serves. With O(wait), the task then waits until its
    checks pass (C(state) V(UP)).
  - Idempotent. Only a real server whose drain flag differs is changed, and the task reports
    C(changed) only then. Check mode reports what would change.
  - "Run it on both directors of a pair (O(director=all), the default) so a failover during
    the maintenance does not send new connections to the server. With
    O(director=vip_holder) only the director that holds the virtual server's address (the
    VRRP master of the instance that carries it) acts; the others report C(skipped)."
  - The agent can make and verify the change only where the kernel has IPVS; elsewhere it
    answers that IPVS is not available and nothing changes.
author:
  - vigil developers (@vigil)
options:
  virtual_server:
    description:
      - The virtual server (its C(name) in the agent's configuration).
      - A virtual server the agent does not run is an error that lists the ones it has.
    type: str
    required: true
  real_server:
    description:
      - The real server, as C(ADDRESS:PORT) (C([fd00::1]:80) for IPv6) or the bare address
        when only one real server of the virtual server has it.
      - An unknown real server is an error that lists the ones the virtual server has.
    type: str
    required: true
  state:
    description:
      - V(drained) drains the real server, V(enabled) lifts the drain.
    type: str
    required: true
    choices: [enabled, drained]
  wait:
    description:
      - With O(state=drained), wait until the real server has no active connection left.
      - With O(state=enabled), wait until its health checks pass.
      - Also waits when nothing had to change (a server drained earlier may still have
        connections).
      - Not in check mode.
    type: bool
    default: false
  wait_timeout:
    description:
      - How long O(wait) waits, in seconds, between V(0) (exclusive) and V(3600).
    type: float
    default: 60
  director:
    description:
      - V(all) acts on every director the task runs on.
      - V(vip_holder) acts only where this director holds the virtual server now, that is
        a VRRP instance of this agent that carries one of its addresses is C(MASTER) with the
        address present (a firewall-mark virtual server follows its C(ha_suspend) instance).
        Elsewhere the task is skipped.
    type: str
    default: all
    choices: [all, vip_holder]
extends_documentation_fragment:
  - vigil.ha.vigil
  - vigil.ha.vigil.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The diff shows the real server's drain flag.
notes:
  - The agent's own action timeout does not apply to a drain; O(timeout) bounds the queries
    and, for a drain with O(wait), the answer waits O(wait_timeout) plus 10 seconds.
seealso:
  - module: vigil.ha.ipvs_info
"""

EXAMPLES = r"""
- name: Drain web1 on both directors and wait for its connections to finish
  vigil.ha.real_server:
    virtual_server: web
    real_server: 10.77.1.21:80
    state: drained
    wait: true
    wait_timeout: 300
  become: true

- name: Put web1 back and wait until its checks pass
  vigil.ha.real_server:
    virtual_server: web
    real_server: 10.77.1.21
    state: enabled
    wait: true
  become: true

- name: Predict, on the director that serves web, whether web2 would be drained
  vigil.ha.real_server:
    virtual_server: web
    real_server: 10.77.1.22:80
    state: drained
    director: vip_holder
  become: true
  check_mode: true
  register: predicted
"""

RETURN = r"""
virtual_server:
  description: The virtual server's name.
  returned: success
  type: str
  sample: web
real_server:
  description: The real server's name (C(ADDRESS:PORT)).
  returned: success
  type: str
  sample: 10.77.1.21:80
action:
  description: V(drain), V(enable), or V(null) when the flag already was as wanted.
  returned: success
  type: str
  sample: drain
holds_vip:
  description:
    - Whether this director holds the virtual server now; V(null) with O(director=all).
  returned: success
  type: bool
  sample: true
before:
  description:
    - The real server before the task, from the agent's API (C(state), C(drained),
      C(in_ipvs), C(ipvs_weight), C(active_connections), C(inactive_connections); the
      last three V(null) while it is not in IPVS).
  returned: success
  type: dict
  sample:
    state: UP
    drained: false
    in_ipvs: true
    ipvs_weight: 1
    active_connections: 3
    inactive_connections: 12
after:
  description:
    - The real server after the task as the agent verified it (in check mode, the
      prediction), same keys as RV(before).
  returned: success
  type: dict
  sample:
    state: UP
    drained: true
    in_ipvs: true
    ipvs_weight: 0
    active_connections: 0
    inactive_connections: 15
message:
  description: The agent's description of what it did.
  returned: when the agent was asked to act
  type: str
  sample: "drained: weight 0 in IPVS; no active connection left after 41.3s"
wait:
  description:
    - With O(wait) and not in check mode, how the wait ended, C(outcome) V(drained),
      V(up) or V(timeout), with C(waited_s) and, for a drain, C(active_connections).
    - V(standby) (a drain, with C(reason)) means this director does not carry the virtual
      server now (the other director holds its address), so it did not wait; the
      connections its IPVS shows are the sync daemon's copies.
  returned: when O(wait) is true and not in check mode
  type: dict
  sample: {outcome: drained, active_connections: 0, waited_s: 41.3, timeout_s: 300}
status:
  description:
    - On failure, the HTTP status the agent answered with. V(503) when IPVS is not
      available on this host (nothing changed), V(504) when the weight did not show up in
      the kernel, V(409) while another action on the same real server runs.
  returned: failure
  type: int
  sample: 503
observed:
  description: On failure, the real server as the agent observed it when it gave up.
  returned: failure
  type: dict
  sample: {state: UP, drained: true, in_ipvs: true, ipvs_weight: 1}
"""

import time
import typing as t

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vigil.ha.plugins.module_utils._agent import (
    ANSWER_MARGIN,
    AgentConnection,
    VigilError,
    vigil_argument_spec,
)
from ansible_collections.vigil.ha.plugins.module_utils._ipvs import (
    find_real_server,
    holds_vip,
    ipvs_view,
    real_server_path,
    real_server_plan,
    rs_snapshot,
    select_virtual_servers,
)
from ansible_collections.vigil.ha.plugins.module_utils._vrrp import vrrp_status

MAX_WAIT = 3600.0
POLL = 0.5


def current(conn: AgentConnection, vs_name: str, rs_text: str) -> tuple[dict, dict]:
    (vs,) = select_virtual_servers(list(ipvs_view(conn).get("virtual_servers") or []), vs_name)
    return vs, find_real_server(vs, rs_text)


def wait_up(
    conn: AgentConnection, vs_name: str, rs_name: str, limit: float
) -> tuple[dict[str, t.Any], dict[str, t.Any]]:
    """Poll the API until the real server's checks pass (state UP), at most ``limit`` s."""
    started = time.monotonic()
    rs: dict[str, t.Any] = {}
    for _attempt in range(int(limit / POLL) + 2):
        _vs, rs = current(conn, vs_name, rs_name)
        if rs.get("state") == "UP":
            break
        if time.monotonic() - started >= limit:
            break
        time.sleep(POLL)
    waited = round(time.monotonic() - started, 3)
    outcome = "up" if rs.get("state") == "UP" else "timeout"
    return {"outcome": outcome, "waited_s": waited, "timeout_s": limit}, rs


def run(module: AnsibleModule) -> dict[str, t.Any]:
    params = module.params
    limit = params["wait_timeout"]
    if not 0 < limit <= MAX_WAIT:
        raise VigilError(
            f"wait_timeout: must be more than 0 and at most {MAX_WAIT:g} seconds, got {limit:g}"
        )
    conn = AgentConnection(params["socket"], params["timeout"])
    vs, rs = current(conn, params["virtual_server"], params["real_server"])
    name = str(rs.get("name"))
    out: dict[str, t.Any] = {
        "changed": False,
        "virtual_server": vs.get("name"),
        "real_server": name,
        "action": None,
        "holds_vip": None,
    }
    if params["director"] == "vip_holder":
        _agent, instances = vrrp_status(conn)
        out["holds_vip"] = holds_vip(vs, instances)
        if not out["holds_vip"]:
            out.update(
                skipped=True,
                msg=f"{vs.get('name')}: this director does not hold it now; nothing done",
                before=rs_snapshot(rs),
                after=rs_snapshot(rs),
            )
            return out
    action = real_server_plan(rs, params["state"])
    before = rs_snapshot(rs)
    out.update(changed=action is not None, action=action, before=before, after=before)
    if module.check_mode:
        if action is not None:
            out["after"] = dict(before, drained=action == "drain")
        return finish(module, out)
    where = f"{vs.get('name')}/{name}"
    if params["state"] == "drained" and (action is not None or params["wait"]):
        body: dict[str, t.Any] = {"wait": True, "timeout": limit} if params["wait"] else {}
        answer = act(conn, where, real_server_path(str(vs.get("name")), name, "drain"), body, limit)
        out["message"] = answer.get("message")
        out["after"] = dict(answer.get("after") or before)
        if params["wait"]:
            out["wait"] = answer.get("wait") or {}
    elif action == "enable":
        answer = act(conn, where, real_server_path(str(vs.get("name")), name, "enable"), {}, 0)
        out["message"] = answer.get("message")
        out["after"] = dict(answer.get("after") or before)
    if params["state"] == "enabled" and params["wait"]:
        out["wait"], now = wait_up(conn, str(vs.get("name")), name, limit)
        out["after"] = rs_snapshot(now)
    if bool(out["after"].get("drained")) != (params["state"] == "drained"):
        raise VigilError(
            f"{where}: the agent accepted {action} but reports drained="
            f"{bool(out['after'].get('drained'))} afterwards; check its log",
            observed=out["after"],
            changed=out["changed"],
        )
    wait = out.get("wait") or {}
    if wait.get("outcome") == "timeout":
        if params["state"] == "drained":
            why = (
                f"{wait.get('active_connections')} active connection(s) still open after "
                f"{limit:g}s; the real server stays drained"
            )
        else:
            why = f"its checks did not pass within {limit:g}s (state {out['after'].get('state')})"
        raise VigilError(f"{where}: {why}", **{k: v for k, v in out.items() if k != "msg"})
    return finish(module, out)


def act(
    conn: AgentConnection, where: str, path: str, body: dict[str, t.Any], wait: float
) -> dict[str, t.Any]:
    try:
        return conn.act(path, body, send_timeout=False, answer_within=wait + ANSWER_MARGIN)
    except VigilError as exc:
        exc.msg = exc.msg if exc.msg.startswith(where) else f"{where}: {exc.msg}"
        raise


def finish(module: AnsibleModule, out: dict[str, t.Any]) -> dict[str, t.Any]:
    if module._diff and out["action"] is not None:
        out["diff"] = {
            "before": {"drained": out["action"] == "enable"},
            "after": {"drained": out["action"] == "drain"},
        }
    return out


def main() -> None:
    argument_spec = vigil_argument_spec()
    argument_spec.update(
        virtual_server={"type": "str", "required": True},
        real_server={"type": "str", "required": True},
        state={"type": "str", "required": True, "choices": ["enabled", "drained"]},
        wait={"type": "bool", "default": False},
        wait_timeout={"type": "float", "default": 60.0},
        director={"type": "str", "default": "all", "choices": ["all", "vip_holder"]},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        result = run(module)
    except VigilError as exc:
        module.fail_json(msg=exc.msg, **exc.data)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
