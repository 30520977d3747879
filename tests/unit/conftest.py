# Copyright (c) vigil developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fixtures for the collection's unit tests: a real vigild, and running a module in-process.

The tests run both under ``ansible-test units`` (which imports the collection as
``ansible_collections.vigil.ha``) and under plain pytest from the repository root; for the
latter this file makes the repository importable under that name through a symlink tree
in a temporary directory (imports accept a symlink; ansible-test does not, hence its copy).

vigild is the real agent, started from the Python running the tests (``-m vigil.daemon``)
with its socket and state in a short temporary directory. Tests that need VRRP instances
run it in a private network namespace of its own (``unshare -rn``: a user namespace,
so no root is needed where the kernel allows unprivileged user namespaces) with a veth
pair inside; nothing touches the host's network.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import typing as t


def _make_collection_importable() -> None:
    try:
        import ansible_collections.vigil.ha.plugins.module_utils._api  # noqa: F401
    except ImportError:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        base = tempfile.mkdtemp(prefix="vigil-units-")
        atexit.register(shutil.rmtree, base, True)
        os.makedirs(os.path.join(base, "ansible_collections", "vigil"))
        os.symlink(root, os.path.join(base, "ansible_collections", "vigil", "ha"))
        sys.path.insert(0, base)
        for name in [m for m in sys.modules if m.startswith("ansible_collections")]:
            del sys.modules[name]


_make_collection_importable()

import pytest  # noqa: E402
from ansible.module_utils.testing import patch_module_args  # noqa: E402
from ansible_collections.vigil.ha.plugins.module_utils._api import (  # noqa: E402
    ApiClient,
    ApiUnreachable,
)

STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

# The namespace the netns agent gets: a veth pair vg0/vg1 (both up, so vg0 has a carrier)
# with the VRRP instance VI_1 on vg0, and vg2/vg3 left down, so VI_2 on vg2 is in FAULT.
NETNS_SETUP = (
    "ip link set lo up && "
    "ip link add vg0 type veth peer name vg1 && ip link set vg1 up && ip link set vg0 up && "
    "ip addr add 10.211.0.1/24 dev vg0 && "
    "ip link add vg2 type veth peer name vg3 && ip addr add 10.212.0.1/24 dev vg2"
)
VIP = "10.211.0.100/24"
NETNS_CONFIG = f"""\
global:
  router_id: unit1
vrrp_instances:
  - name: VI_1
    interface: vg0
    vrid: 61
    priority: 150
    version: 3
    advert_interval: 0.1
    virtual_ipaddresses: [{VIP}]
  - name: VI_2
    interface: vg2
    vrid: 62
    priority: 150
    version: 3
    advert_interval: 0.1
    virtual_ipaddresses: [10.212.0.100/24]
"""
EMPTY_CONFIG = "global:\n  router_id: unit0\n  allow_empty_config: true\nvrrp_instances: []\n"
# A safety net: the agent gets SIGTERM when the test process that started it dies.
# Fixtures stop their agent, but a killed test run skips teardown.
DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "TERM", "--"]


class Agent:
    """A vigild this test started: its socket, a client, and its log for failures."""

    def __init__(self, config: str, netns: bool) -> None:
        self.dir = tempfile.mkdtemp(prefix="vgu-", dir="/tmp")
        self.socket = os.path.join(self.dir, "v.sock")
        self.config = os.path.join(self.dir, "vigil.yml")
        self.log_path = os.path.join(self.dir, "vigild.log")
        with open(self.config, "w") as f:
            f.write(config)
        argv = [
            *DIE_WITH_PARENT,
            sys.executable, "-m", "vigil.daemon",
            "--config", self.config,
            "--socket", self.socket,
            "--state-dir", os.path.join(self.dir, "state"),
            "--log-level", "debug",
        ]  # fmt: skip
        if netns:
            quoted = " ".join(f"'{a}'" for a in argv)
            argv = ["unshare", "-rn", "sh", "-c", f"{NETNS_SETUP} && exec {quoted}"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.client = ApiClient(self.socket, timeout=5.0)
        self.vip = VIP

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-4000:]

    def wait(self, predicate: t.Callable[[], bool], what: str, timeout: float) -> None:
        """Poll ``predicate`` until true; fail with ``what`` and the agent's log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"vigild exited with {self.proc.returncode}; log:\n{self.log()}")
            with contextlib.suppress(ApiUnreachable):
                if predicate():
                    return
            time.sleep(0.05)
        pytest.fail(f"timed out after {timeout}s waiting for {what}; vigild log:\n{self.log()}")

    def ready(self) -> bool:
        status, body = self.client.get("/v1/health")
        return status == 200 and body.get("ready") is True

    def instance(self, name: str) -> dict[str, t.Any]:
        status, body = self.client.get(f"/v1/vrrp/instances/{name}")
        assert status == 200, body
        return t.cast(dict, body)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def agent() -> t.Iterator[Agent]:
    """A ready vigild with no VRRP instances (no namespace, no privileges needed).

    One per test, not per module: ansible-test runs every test in a fork of its own, which
    never tears down a fixture of a wider scope.
    """
    a = Agent(EMPTY_CONFIG, netns=False)
    try:
        a.wait(a.ready, "vigild ready", STARTUP_TIMEOUT)
        yield a
    finally:
        a.stop()


@pytest.fixture
def netns_agent() -> t.Iterator[Agent]:
    """A ready vigild in a private network namespace: VI_1 MASTER alone, VI_2 FAULT."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed for the namespace agent")
    a = Agent(NETNS_CONFIG, netns=True)
    try:
        a.wait(a.ready, "vigild ready", STARTUP_TIMEOUT)
        a.wait(
            lambda: (
                a.instance("VI_1")["state"] == "MASTER"
                and all(v["present"] for v in a.instance("VI_1")["vips"])
            ),
            "VI_1 MASTER with its VIP",
            STARTUP_TIMEOUT,
        )
        a.wait(lambda: a.instance("VI_2")["state"] == "FAULT", "VI_2 FAULT", STARTUP_TIMEOUT)
        yield a
    finally:
        a.stop()


class ModuleResult(dict):
    """The JSON a module printed, with ``failed`` always present."""


@pytest.fixture
def run_module(
    capsys: pytest.CaptureFixture[str],
) -> t.Callable[..., ModuleResult]:
    """Run a module's main() in-process with real arguments; return what it printed."""

    def run(
        module: t.Any, args: dict[str, t.Any], check: bool = False, diff: bool = False
    ) -> ModuleResult:
        full = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
        capsys.readouterr()
        with patch_module_args(full), pytest.raises(SystemExit) as exc:
            module.main()
        out = capsys.readouterr().out
        result = ModuleResult(json.loads(io.StringIO(out).read()))
        result.setdefault("failed", exc.value.code != 0)
        return result

    return run
