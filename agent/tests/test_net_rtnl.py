"""The synchronous RTM_NEWADDR codec (vigil.net.rtnl), checked against pyroute2's decoder.

No sockets: requests are decoded with pyroute2's ``ifaddrmsg``, acknowledgements are
built byte by byte the way the kernel lays them out (NETLINK_CAP_ACK + NETLINK_EXT_ACK).
The kernel side is in tests/integration/test_net_rtnl.py.
"""

from __future__ import annotations

import errno
import socket
import struct
from ipaddress import IPv4Address, ip_interface

import pytest
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg

from vigil.net import rtnl


def decode(data: bytes) -> ifaddrmsg:
    msg = ifaddrmsg(data)
    msg.decode()
    return msg


def test_ipv4_request_is_what_ip_addr_add_sends() -> None:
    data = rtnl.newaddr_request(
        7,
        rtnl.newaddr_payload(
            3,
            ip_interface("10.0.0.100/24"),
            scope=253,
            label="eth0:vip",
            broadcast=IPv4Address("10.0.0.255"),
        ),
    )
    msg = decode(data)
    assert msg["header"]["length"] == len(data) and len(data) % 4 == 0
    assert msg["header"]["type"] == rtnl.RTM_NEWADDR
    flags = rtnl.NLM_F_REQUEST | rtnl.NLM_F_ACK | rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL
    assert msg["header"]["flags"] == flags
    assert msg["header"]["sequence_number"] == 7
    assert (msg["family"], msg["prefixlen"], msg["scope"], msg["index"]) == (
        socket.AF_INET,
        24,
        253,
        3,
    )
    assert msg.get_attr("IFA_LOCAL") == msg.get_attr("IFA_ADDRESS") == "10.0.0.100"
    assert msg.get_attr("IFA_LABEL") == "eth0:vip"
    assert msg.get_attr("IFA_BROADCAST") == "10.0.0.255"
    assert msg.get_attr("IFA_FLAGS") is None


def test_ipv6_request_carries_nodad_in_both_places() -> None:
    msg = decode(
        rtnl.newaddr_request(1, rtnl.newaddr_payload(9, ip_interface("fd00::1/64"), nodad=True))
    )
    assert (msg["family"], msg["prefixlen"], msg["index"]) == (socket.AF_INET6, 64, 9)
    assert msg.get_attr("IFA_ADDRESS") == "fd00::1"
    assert msg["flags"] == rtnl.IFA_F_NODAD
    assert msg.get_attr("IFA_FLAGS") == rtnl.IFA_F_NODAD
    assert msg.get_attr("IFA_LABEL") is None and msg.get_attr("IFA_BROADCAST") is None


def test_odd_length_label_is_padded() -> None:
    data = rtnl.newaddr_request(
        1, rtnl.newaddr_payload(2, ip_interface("10.0.0.1/32"), label="ve0:a")
    )
    assert len(data) % 4 == 0
    assert decode(data).get_attr("IFA_LABEL") == "ve0:a"


def ack(seq: int, error: int, text: str | None = None) -> bytes:
    """An NLMSG_ERROR as the kernel sends it with NETLINK_CAP_ACK and NETLINK_EXT_ACK."""
    echoed = struct.pack("=IHHII", 40, rtnl.RTM_NEWADDR, 0x605, seq, 0)
    tlvs = b""
    flags = 0x100  # NLM_F_CAPPED
    if text is not None:
        raw = text.encode() + b"\0"
        tlvs = struct.pack("=HH", 4 + len(raw), rtnl.NLMSGERR_ATTR_MSG) + raw
        tlvs += b"\0" * (-len(tlvs) % 4)
        flags |= rtnl.NLM_F_ACK_TLVS
    body = struct.pack("=i", error) + echoed + tlvs
    return struct.pack("=IHHII", 16 + len(body), rtnl.NLMSG_ERROR, flags, seq, 4242) + body


def test_success_ack() -> None:
    assert rtnl.parse_ack(ack(5, 0), 5) == (True, 0, None)


def test_refusal_with_extack_text() -> None:
    data = ack(5, -errno.EINVAL, "Invalid prefix for given prefix length")
    assert rtnl.parse_ack(data, 5) == (
        True,
        errno.EINVAL,
        "Invalid prefix for given prefix length",
    )


def test_answers_to_other_requests_are_skipped() -> None:
    data = ack(4, -errno.EEXIST) + ack(5, 0)
    assert rtnl.parse_ack(data, 5) == (True, 0, None)
    assert rtnl.parse_ack(data, 4) == (True, errno.EEXIST, None)
    assert rtnl.parse_ack(data, 6) == (False, 0, None)


@pytest.mark.parametrize("cut", [0, 3, 15, 19, 30])
def test_truncated_answers_are_not_misread(cut: int) -> None:
    found, _error, _text = rtnl.parse_ack(ack(5, -errno.EPERM)[:cut], 5)
    assert found is False


def test_rtnl_error_text_prefers_the_kernel_message() -> None:
    assert str(rtnl.RtnlError(errno.EINVAL, "bad prefix")) == "[Errno 22] bad prefix"
    assert rtnl.RtnlError(errno.EINVAL).message is None
