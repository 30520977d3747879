# Copyright (c) vigil developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Start and stop real vigild agents for the collection's integration targets.

Run with the controller's Python (``ansible_playbook_python``: it has the agent's
dependencies) as ``python vigild_lab.py start DIR`` (one agent per config found:
``DIR/vigil-a.yml`` and, if present, ``DIR/vigil-b.yml``) and ``python vigild_lab.py stop DIR``.

Every agent runs in a network namespace of its own made with ``unshare`` (so nothing touches
the host's network, and the namespace disappears with the agent; no name to clean up):

- one agent: its namespace has a veth pair vg0 (10.213.0.1/24) / vg1 (up, so vg0 has a
  carrier) and a second pair vg2 / vg3 left down (an instance on vg2 is in FAULT);
- two agents: A's namespace holds vg0 (10.213.0.1/24); B's namespace, made from inside A's,
  holds its peer vg1 (10.213.0.2/24): a cable between the two agents.

The agents are the collection's own sources (``agent/src`` of the collection this file is
in), started as ``python -m vigil.daemon`` with their socket, state directory and log in DIR.
They run in one process group of their own, recorded in DIR/lab.json; ``stop`` sends it
SIGTERM, waits, then SIGKILL. Each agent's state directory may be seeded: a directory
``DIR/seed-a`` (``seed-b``) is copied into its state directory before it starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0

ONE = (
    "ip link set lo up && "
    "ip link add vg0 type veth peer name vg1 && ip link set vg1 up && ip link set vg0 up && "
    "ip addr add 10.213.0.1/24 dev vg0 && "
    "ip link add vg2 type veth peer name vg3 && ip addr add 10.214.0.1/24 dev vg2"
)
# B: its own namespace, then wait (bounded) for vg1 to be moved in by A
B_SETUP = (
    "ip link set lo up && i=0; while ! ip link show vg1 >/dev/null 2>&1; do "
    "i=$((i+1)); [ $i -gt 400 ] && exit 3; sleep 0.05; done; "
    "ip addr add 10.213.0.2/24 dev vg1 && ip link set vg1 up"
)
# A: start B in a nested namespace, wait (bounded) until B has left A's namespace, then
# move vg1 into B's namespace
A_SETUP = (
    "ip link set lo up && {b} & B=$!; i=0; "
    'while [ "$(readlink /proc/$B/ns/net)" = "$(readlink /proc/self/ns/net)" ]; do '
    "i=$((i+1)); [ $i -gt 400 ] && exit 3; sleep 0.05; done; "
    "ip link add vg0 type veth peer name vg1 netns $B && "
    "ip addr add 10.213.0.1/24 dev vg0 && ip link set vg0 up"
)


def collection_root() -> str:
    """The collection this file belongs to: the first directory above it with agent/src."""
    here = os.path.dirname(os.path.abspath(__file__))
    while here != os.path.dirname(here):
        if os.path.isdir(os.path.join(here, "agent", "src", "vigil")):
            return here
        here = os.path.dirname(here)
    raise SystemExit("vigild_lab: no agent/src above " + __file__)


def agent_argv(workdir: str, name: str, config: str) -> list[str]:
    state = os.path.join(workdir, f"state-{name}")
    os.makedirs(state, mode=0o700, exist_ok=True)
    seed = os.path.join(workdir, f"seed-{name}")
    if os.path.isdir(seed):
        for entry in os.listdir(seed):
            shutil.copy(os.path.join(seed, entry), state)
    return [
        sys.executable, "-m", "vigil.daemon",
        "--config", config,
        "--socket", os.path.join(workdir, f"{name}.sock"),
        "--state-dir", state,
        "--log-level", "debug",
    ]  # fmt: skip


def ready(socket_path: str) -> bool:
    from vigil.client import ApiClient, ApiUnreachable

    try:
        status, body = ApiClient(socket_path, timeout=2.0).get("/v1/health")
    except ApiUnreachable:
        return False
    return status == 200 and isinstance(body, dict) and body.get("ready") is True


def start(workdir: str, configs: list[str]) -> dict[str, object]:
    src = os.path.join(collection_root(), "agent", "src")
    sys.path.insert(0, src)
    env = dict(os.environ, PYTHONPATH=src)
    names = ["a", "b"][: len(configs)]
    argvs = {n: agent_argv(workdir, n, os.path.abspath(configs[i])) for i, n in enumerate(names)}
    logs = {n: os.path.join(workdir, f"vigild-{n}.log") for n in names}
    quoted = {n: " ".join(shlex.quote(a) for a in argv) for n, argv in argvs.items()}
    if len(configs) == 1:
        script = f"{ONE} && exec {quoted['a']} >>{shlex.quote(logs['a'])} 2>&1"
    else:
        b = (
            f"unshare -n sh -c {shlex.quote(B_SETUP + ' && exec ' + quoted['b'])} "
            f">>{shlex.quote(logs['b'])} 2>&1"
        )
        script = A_SETUP.format(b=b) + f" && exec {quoted['a']} >>{shlex.quote(logs['a'])} 2>&1"
    with open(os.path.join(workdir, "setup.log"), "ab") as setup_log:
        proc = subprocess.Popen(
            ["unshare", "-rn", "sh", "-c", script],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=setup_log,
            env=env,
            start_new_session=True,
        )
    lab = {"pgid": proc.pid, "sockets": {n: os.path.join(workdir, f"{n}.sock") for n in names}}
    with open(os.path.join(workdir, "lab.json"), "w") as fh:
        json.dump(lab, fh)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    waiting = set(names)
    while waiting and time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        waiting = {n for n in waiting if not ready(str(lab["sockets"][n]))}  # type: ignore[index]
        if waiting:
            time.sleep(0.1)
    if waiting:
        stop(workdir)
        tails = []
        for n in sorted(waiting):
            with open(logs[n], errors="replace") as fh:
                tails.append(f"--- vigild {n}:\n" + fh.read()[-3000:])
        raise SystemExit(f"vigild {', '.join(sorted(waiting))} not ready:\n" + "\n".join(tails))
    return lab


def stop(workdir: str) -> dict[str, object]:
    path = os.path.join(workdir, "lab.json")
    if not os.path.exists(path):
        return {"stopped": False}
    with open(path) as fh:
        pgid = int(json.load(fh)["pgid"])
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return {"stopped": True, "killed": False}
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return {"stopped": True, "killed": False}
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    return {"stopped": True, "killed": True}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "start":
        configs = [os.path.join(sys.argv[2], f"vigil-{n}.yml") for n in ("a", "b")]
        print(json.dumps(start(sys.argv[2], [c for c in configs if os.path.exists(c)])))
    elif len(sys.argv) == 3 and sys.argv[1] == "stop":
        print(json.dumps(stop(sys.argv[2])))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
