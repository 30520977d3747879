"""Synchronous RTM_NEWADDR on a plain rtnetlink socket, for the failover fast path.

Taking over a VIP is on the clock: between the first advert as master and the first
gratuitous ARP/NA the VIP has to be in the kernel, and every millisecond there is client
outage. pyroute2's asyncio API costs a couple of milliseconds per address (message
objects, a future, two trips round the event loop). The kernel, though, handles an
rtnetlink request inside the sender's ``sendmsg`` and has queued the acknowledgement by
the time the call returns, so a request built with :mod:`struct` and answered with one
``recv`` takes tens of microseconds and never has to wait for the loop.

Only what VIPs need is here (add an address with label, scope, broadcast and NODAD);
everything else stays on :class:`vigil.net.netlink.Netlink`.
"""

from __future__ import annotations

import errno as errno_mod
import socket
import struct
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface

IPInterface = IPv4Interface | IPv6Interface

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11

NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_ACK_TLVS = 0x200  # in an NLMSG_ERROR header: extended-ack attributes follow
NLMSGERR_ATTR_MSG = 1

RTM_NEWADDR = 20
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_LABEL = 3
IFA_BROADCAST = 4
IFA_FLAGS = 8
IFA_F_NODAD = 0x02

_NLMSGHDR = struct.Struct("=IHHII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTATTR = struct.Struct("=HH")
_ERRHDR = struct.Struct("=i")

#: How long ``recv`` may wait for the kernel's answer. It is queued before ``sendmsg``
#: returns, so this only bounds a kernel that somehow does not answer.
ACK_TIMEOUT = 1.0


class RtnlError(OSError):
    """The kernel refused a request: ``errno`` plus its extended-ack text if it gave one."""

    def __init__(self, errno: int, message: str | None = None) -> None:
        text = message or errno_mod.errorcode.get(errno, str(errno))
        super().__init__(errno, text)
        self.message = message


def _attr(kind: int, payload: bytes) -> bytes:
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, kind) + payload + b"\0" * (-length % 4)


def newaddr_payload(
    index: int,
    address: IPInterface,
    *,
    scope: int = 0,
    label: str | None = None,
    broadcast: IPv4Address | None = None,
    nodad: bool = False,
) -> bytes:
    """The body of an RTM_NEWADDR request (ifaddrmsg and attributes), without its header.

    It holds no sequence number, so it can be built ahead of time and sent later with
    :meth:`RtnlSocket.new_address`.
    """
    family = socket.AF_INET if isinstance(address, IPv4Interface) else socket.AF_INET6
    packed = address.ip.packed
    flags = IFA_F_NODAD if nodad else 0
    body = _IFADDRMSG.pack(family, address.network.prefixlen, flags, scope, index)
    attrs = [_attr(IFA_LOCAL, packed), _attr(IFA_ADDRESS, packed)]
    if broadcast is not None:
        attrs.append(_attr(IFA_BROADCAST, broadcast.packed))
    if label is not None:
        attrs.append(_attr(IFA_LABEL, label.encode() + b"\0"))
    if flags:
        attrs.append(_attr(IFA_FLAGS, struct.pack("=I", flags)))
    return body + b"".join(attrs)


def newaddr_request(seq: int, payload: bytes) -> bytes:
    """The RTM_NEWADDR request ``ip addr add`` would send (create, fail if it exists)."""
    header = _NLMSGHDR.pack(
        _NLMSGHDR.size + len(payload),
        RTM_NEWADDR,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        seq,
        0,
    )
    return header + payload


def parse_ack(data: bytes, seq: int) -> tuple[bool, int, str | None]:
    """Find the answer to ``seq`` in ``data``: (found, errno (0 = success), extack text)."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, flags, mseq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            break
        if kind == NLMSG_ERROR and mseq == seq:
            start = offset + _NLMSGHDR.size
            (error,) = _ERRHDR.unpack_from(data, start)
            message = None
            if flags & NLM_F_ACK_TLVS:
                # With NETLINK_CAP_ACK only the request's header is echoed, then the TLVs.
                message = _extack_message(data, start + 4 + _NLMSGHDR.size, offset + length)
            return True, -error, message
        offset += (length + 3) & ~3
    return False, 0, None


def _extack_message(data: bytes, offset: int, end: int) -> str | None:
    while offset + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size:
            return None
        if kind & 0x3FFF == NLMSGERR_ATTR_MSG:
            raw = data[offset + _RTATTR.size : offset + length]
            return raw.split(b"\0", 1)[0].decode(errors="replace") or None
        offset += (length + 3) & ~3
    return None


class RtnlSocket:
    """A blocking rtnetlink request socket in the current network namespace."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._seq = 0

    def open(self) -> None:
        """Create the socket now rather than on the first request (harmless twice)."""
        self._socket()

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(
                socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE
            )
            try:
                sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
                sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
            except OSError:
                pass  # older kernels: full echo, no extack text; still works
            sock.bind((0, 0))
            sock.settimeout(ACK_TIMEOUT)
            self._sock = sock
        return self._sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def new_address(self, payload: bytes) -> bool:
        """Send an RTM_NEWADDR built by :func:`newaddr_payload`; False if it existed."""
        sock = self._socket()
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        seq = self._seq
        sock.send(newaddr_request(seq, payload))
        for _ in range(64):  # stale answers to abandoned requests, at most
            try:
                data = sock.recv(65536)
            except TimeoutError:
                # Drop the socket: a late answer must not be read as the next one's.
                self.close()
                raise RtnlError(errno_mod.ETIMEDOUT, "no answer from the kernel") from None
            found, error, message = parse_ack(data, seq)
            if not found:
                continue  # an answer to an earlier, abandoned request
            if error == 0:
                return True
            if error == errno_mod.EEXIST:
                return False
            raise RtnlError(error, message)
        self.close()
        raise RtnlError(errno_mod.EIO, "no answer to this request among the kernel's replies")
