"""Who is on the other end of the API socket (SO_PEERCRED), and may they talk.

The socket is 0600 root already; the peer check is the second lock, and the one that
lets an operator grant a monitoring uid read access with `--api-allow-uid` without
loosening file modes.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Collection
from dataclasses import dataclass

__all__ = ["PeerCred", "is_allowed", "peer_credentials"]

_UCRED = struct.Struct("3i")


@dataclass(frozen=True)
class PeerCred:
    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> PeerCred | None:
    """Credentials of the peer of a connected AF_UNIX socket; None if not available."""
    if sock.family != socket.AF_UNIX:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError:
        return None
    pid, uid, gid = _UCRED.unpack(raw)
    return PeerCred(pid=pid, uid=uid, gid=gid)


def is_allowed(cred: PeerCred | None, allowed_uids: Collection[int]) -> bool:
    """Root always; other uids only when listed. Unknown peers are refused."""
    if cred is None:
        return False
    return cred.uid == 0 or cred.uid in allowed_uids
