"""vigild's process life cycle inside a lab namespace: sd_notify, SIGTERM, crash, restart."""

from __future__ import annotations

import signal
import socket
from pathlib import Path
from typing import Any

import yaml

from tests.lab import Lab, wait_for
from tests.lab.probe import REPO_ROOT

DEMO = REPO_ROOT / "examples" / "demo"


def node1(lab: Lab) -> dict[str, Any]:
    lab.add_switch()
    lab.add_namespace("node1")
    lab.connect("node1", addrs=["10.99.0.11/24", "fd00:99::11/64"])
    return dict(yaml.safe_load((DEMO / "node1.yml").read_text()))


class NotifyListener:
    """The systemd side of sd_notify: a datagram socket that collects what vigild says.

    A path-bound AF_UNIX socket is reachable from any network namespace, like systemd's.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    def poll(self) -> list[dict[str, str]]:
        for _ in range(100):
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                break
            fields = dict(
                line.partition("=")[::2] for line in data.decode().splitlines() if "=" in line
            )
            self.messages.append(fields)
        return self.messages

    def wait_for_key(self, key: str, value: str, after: int = 0) -> int:
        """Wait for a message with KEY=VALUE at index >= ``after``; return its index."""

        def found() -> int | None:
            for i, msg in enumerate(self.poll()):
                if i >= after and msg.get(key) == value:
                    return i + 1  # truthy even for the first message
            return None

        index = wait_for(
            found, timeout=10, what=f"sd_notify {key}={value}", observe=lambda: self.messages
        )
        assert index is not None
        return index - 1

    def close(self) -> None:
        self.sock.close()


def test_sd_notify_ready_reloading_stopping(lab: Lab) -> None:
    config = node1(lab)
    listener = NotifyListener(lab.shortdir / "notify.sock")
    lab.add_cleanup(listener.close)
    agent = lab.start_vigild("node1", config, env={"NOTIFY_SOCKET": str(listener.path)})
    ready = listener.wait_for_key("READY", "1")
    assert listener.messages[ready].get("MAINPID", str(agent.pid)) == str(agent.pid)
    # Nothing claims READY before the API answers: the agent is ready by now.
    assert agent.health()[0] == 200

    agent.sighup()
    reloading = listener.wait_for_key("RELOADING", "1", after=ready + 1)
    ready_again = listener.wait_for_key("READY", "1", after=reloading + 1)
    assert ready_again > reloading > ready

    agent.process.signal(signal.SIGTERM)
    listener.wait_for_key("STOPPING", "1", after=ready_again + 1)
    assert agent.process.wait(timeout=10) == 0


def test_sigterm_exits_0_and_removes_the_socket(lab: Lab) -> None:
    agent = lab.start_vigild("node1", node1(lab))
    assert agent.socket_path.exists()
    assert agent.stop() == 0
    assert not agent.socket_path.exists()
    assert "stopped" in agent.log(tail=None)


def test_a_crashed_agent_is_replaced_on_the_same_socket_and_state_dir(lab: Lab) -> None:
    config = node1(lab)
    first = lab.start_vigild("node1", config)
    first.kill()
    assert first.process.returncode == -signal.SIGKILL
    assert first.socket_path.exists(), "SIGKILL cannot remove the socket file"
    # The successor takes over the stale socket and the (unlocked) state dir.
    second = lab.start_vigild("node1", first.config_path)
    assert second.socket_path == first.socket_path
    assert second.state_dir == first.state_dir
    assert second.health()[1]["pid"] == second.pid


def test_a_second_agent_on_the_same_state_dir_is_refused(lab: Lab) -> None:
    config = node1(lab)
    first = lab.start_vigild("node1", config)
    second = lab.start_vigild(
        "node1",
        first.config_path,
        ["--state-dir", str(first.state_dir)],
        name="vigild-2",
        wait=False,
    )
    code = second.process.wait(timeout=15)
    assert code != 0
    assert "in use by another vigild" in second.log(tail=None)
    assert first.health()[0] == 200
