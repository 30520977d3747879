"""SO_PEERCRED: who may talk to the API.

The allow-list logic is tested with the real credentials of a real socket pair. The
end-to-end refusal needs a second uid: when the tests run as root we start a real client
process as `nobody`; otherwise those tests are skipped (the namespace integration tests
cover them too).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_api_harness import AgentThread

import vigil.client
from vigil.api.peercred import PeerCred, is_allowed, peer_credentials

NOBODY = 65534


def test_peer_credentials_of_a_real_socket_pair() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        cred = peer_credentials(a)
    assert cred == PeerCred(pid=os.getpid(), uid=os.getuid(), gid=os.getgid())


def test_peer_credentials_of_non_unix_socket_is_none() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        assert peer_credentials(s) is None


def test_allow_list_with_the_real_uid() -> None:
    a, b = socket.socketpair()
    with a, b:
        me = peer_credentials(a)
    assert me is not None
    assert is_allowed(me, ()) is (me.uid == 0)
    assert is_allowed(me, [me.uid]) is True


def test_allow_list_rules() -> None:
    root = PeerCred(pid=1, uid=0, gid=0)
    other = PeerCred(pid=2, uid=1000, gid=1000)
    assert is_allowed(root, ())
    assert not is_allowed(other, ())
    assert not is_allowed(other, [1001])
    assert is_allowed(other, [1001, 1000])
    assert not is_allowed(None, [0, 1000])


SYSTEM_PYTHON = "/usr/bin/python3"
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not os.access(SYSTEM_PYTHON, os.X_OK),
    reason="needs root (to run a client as nobody) and the system python3",
)

# The client runs as `nobody` under the system Python, from the module's own source: that
# also proves vigil.client is stdlib-only, as the Ansible module_utils need it to be.
CLIENT = (
    Path(vigil.client.__file__).read_text()
    + """
import json, sys
status, body = ApiClient(sys.argv[1]).request(sys.argv[2], sys.argv[3])
print(json.dumps([status, body]))
"""
)

RAW_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])
s.sendall(b"GARBAGE\\r\\n\\r\\n")
data = b""
while chunk := s.recv(4096):
    data += chunk
print(data.partition(b"\\r\\n\\r\\n")[2].decode())
"""


def _as_nobody(script: str, *args: str) -> str:
    proc = subprocess.run(
        [SYSTEM_PYTHON, "-I", "-c", script, *args],
        user=NOBODY,
        group=NOBODY,
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _open_up(at: AgentThread) -> None:
    """Let other uids reach the socket file so the SO_PEERCRED check is what decides."""
    os.chmod(at.dir, 0o755)
    os.chmod(os.path.dirname(at.socket_path), 0o755)
    os.chmod(at.socket_path, 0o666)


@pytest.fixture
def open_agent() -> Iterator[AgentThread]:
    with AgentThread() as at:
        _open_up(at)
        yield at


@needs_root
def test_non_root_peer_is_refused_with_json_403(open_agent: AgentThread) -> None:
    status, body = json.loads(_as_nobody(CLIENT, open_agent.socket_path, "GET", "/v1/status"))
    assert status == 403
    assert body["error"]["code"] == 403
    assert f"uid {NOBODY}" in body["error"]["message"]
    assert f"--api-allow-uid {NOBODY}" in body["error"]["message"]


@needs_root
def test_non_root_malformed_request_is_refused_too(open_agent: AgentThread) -> None:
    body = json.loads(_as_nobody(RAW_CLIENT, open_agent.socket_path))
    assert body["error"]["code"] == 403


@needs_root
def test_allowed_uid_may_talk() -> None:
    with AgentThread(allowed_uids=[NOBODY]) as at:
        _open_up(at)
        status, body = json.loads(_as_nobody(CLIENT, at.socket_path, "GET", "/v1/health"))
        assert status == 200
        assert body["ready"] is True


def test_socket_file_is_0600_in_0755_dir() -> None:
    with AgentThread() as at:
        assert os.stat(at.socket_path).st_mode & 0o777 == 0o600
        assert os.stat(os.path.dirname(at.socket_path)).st_mode & 0o777 == 0o755


UNREACHABLE_CLIENT = (
    Path(vigil.client.__file__).read_text()
    + """
import sys
try:
    ApiClient(sys.argv[1]).get("/v1/health")
except ApiUnreachable as exc:
    print(exc.message)
"""
)


@needs_root
def test_socket_mode_keeps_other_users_out_with_a_hint() -> None:
    with AgentThread() as at:
        os.chmod(at.dir, 0o755)  # the directory is searchable; the 0600 socket is not
        message = _as_nobody(UNREACHABLE_CLIENT, at.socket_path)
        assert "Permission denied" in message
        assert "run as root, or start vigild with --api-allow-uid" in message
