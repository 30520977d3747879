"""Run vigild inside a lab node and talk to it over its real socket.

Each agent gets its own socket and state directory under the lab's short directory (Unix
socket paths must stay under 108 bytes, so never under tests/output or a deep tmp_path),
and its config and log under the test's workdir, where they survive for reading.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from vigil.client import ApiClient, ApiUnreachable

from .waiting import WaitTimeout, wait_for

if TYPE_CHECKING:
    from .lab import Lab, Node, NodeRef
    from .procs import ProcessHandle

__all__ = ["AgentError", "AgentHandle", "bin_path", "start_vigild"]

SUN_PATH_MAX = 107


class AgentError(RuntimeError):
    """vigild did not start or stop as expected; the message carries its log."""


def bin_path(name: str) -> str:
    """A console script of the venv running the tests (vigild, vigilctl)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    raise AgentError(f"{name} not found next to {sys.executable}; run `make setup`")


@dataclass
class AgentHandle:
    """A running vigild: its process group, socket, state dir, config file and client."""

    lab: Lab
    node: Node
    name: str
    process: ProcessHandle
    config_path: Path
    socket_path: Path
    state_dir: Path
    client: ApiClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = ApiClient(str(self.socket_path), timeout=5.0)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self, tail: int | None = 80) -> str:
        return self.process.log_text(tail=tail)

    def health(self) -> tuple[int, Any]:
        return self.client.get("/v1/health")

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Wait until /v1/health answers 200 with ready true; fail fast if vigild exits."""
        last: list[object] = [None]

        def ready() -> bool:
            if not self.process.alive():
                return True  # reported below: a predicate's exception only means "not yet"
            try:
                status, body = self.health()
            except ApiUnreachable as exc:
                last[0] = exc.message
                return False
            last[0] = (status, body)
            return status == 200 and isinstance(body, dict) and body.get("ready") is True

        try:
            wait_for(ready, timeout=timeout, interval=0.05, what=f"vigild on {self.node.name}")
        except WaitTimeout as exc:
            raise AgentError(
                f"vigild on {self.node.name} not ready after {timeout}s (last: {last[0]!r}); "
                f"its log:\n{self.log()}"
            ) from exc
        if not self.process.alive():
            raise AgentError(
                f"vigild on {self.node.name} exited with {self.process.returncode} "
                f"before it was ready; its log:\n{self.log()}"
            )

    def write_config(self, config: dict[str, Any] | str) -> None:
        """Replace the config file (atomically): a dict is dumped as YAML, a str as is."""
        text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)

    def reload(self) -> tuple[int, Any]:
        """POST /v1/reload: (status, body)."""
        return self.client.post("/v1/reload")

    def sighup(self) -> None:
        if not self.process.signal(signal.SIGHUP):
            raise AgentError(f"vigild on {self.node.name} is not running")

    def vigilctl(
        self, *args: str, check: bool = False, timeout: float = 15.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``vigilctl --socket S ARGS`` inside the agent's node."""
        argv = [bin_path("vigilctl"), "--socket", str(self.socket_path), *args]
        return self.lab.run(self.node, argv, check=check, timeout=timeout)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM vigild (it stops its subsystems, then its socket) and wait for its exit.

        Anything of its group still alive after ``timeout`` is killed, and that is an
        error: a clean stop must not need SIGKILL.
        """
        self.process.signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.stop(timeout=0.1)
            raise AgentError(
                f"vigild on {self.node.name} ignored SIGTERM for {timeout}s; killed. "
                f"Log:\n{self.log()}"
            ) from None
        self.process.stop(timeout=timeout)  # reap the rest of the group, if any
        return code

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash (VIPs stay, socket file stays)."""
        self.process.kill()


def start_vigild(
    lab: Lab,
    node: NodeRef,
    config: dict[str, Any] | str | os.PathLike[str],
    extra_args: Sequence[str] = (),
    *,
    name: str = "vigild",
    log_level: str = "debug",
    env: dict[str, str] | None = None,
    wait: bool = True,
    timeout: float = 15.0,
    wrapper: Sequence[str] = (),
) -> AgentHandle:
    """Start vigild in ``node`` with ``config`` (a mapping, or the path of a file).

    A mapping is written to ``workdir/<node>/<name>.yml``; a path is used as it is (tests
    that rewrite it for a reload should pass a copy). Returns once /v1/health says ready
    unless ``wait`` is false. ``wrapper`` goes before vigild on the command line and must
    exec it (``prlimit --nofile=1024:524288``: the limits systemd gives a unit), so the
    pid is still vigild's own. Starting again with the same ``name`` in the same node
    reuses the socket and state directory: a restart, as systemd would do it.
    """
    n = lab.node(node)
    base = lab.node_dir(n, short=True) / name
    base.mkdir(parents=True, exist_ok=True)
    socket_path = base / "vigil.sock"
    state_dir = base / "state"
    if len(str(socket_path).encode()) > SUN_PATH_MAX:
        raise AgentError(f"socket path {socket_path} is too long for a Unix socket")
    if isinstance(config, dict):
        config_path = lab.unique_path(lab.node_dir(n), name, ".yml")
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    else:
        config_path = Path(config)
        if not config_path.exists():
            raise AgentError(f"config {config_path} does not exist")
    argv = [
        *wrapper,
        bin_path("vigild"),
        "--config", str(config_path),
        "--socket", str(socket_path),
        "--state-dir", str(state_dir),
        "--log-level", log_level,
        *extra_args,
    ]  # fmt: skip
    process = lab.spawn(n, argv, name=name, env=env)
    handle = AgentHandle(lab, n, name, process, config_path, socket_path, state_dir)
    if wait:
        handle.wait_ready(timeout=timeout)
    return handle
