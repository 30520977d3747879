"""Pure parts of the netlink adapter: value types, parsing of real encoded messages,
event de-duplication, VMAC naming/MAC rules and sysctl paths. No root, no sockets.

Messages are built with pyroute2's own codec (encode, then decode from bytes), so the
parser sees exactly what it would get from the kernel; the namespace tests in
tests/integration/test_net_netlink.py cover the kernel side.
"""

from __future__ import annotations

import errno
import re
import socket
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Interface, IPv6Network
from typing import Any

import pytest
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from vigil.net import sysctl
from vigil.net.model import (
    IFA_F_NODAD,
    IFA_F_SECONDARY,
    IFA_F_TENTATIVE,
    IFF_LOWER_UP,
    IFF_UP,
    AddrEvent,
    LinkEvent,
    NetlinkFailure,
    RouteSpec,
    _addr_from_msg,
    _link_from_msg,
)
from vigil.net.monitor import NetlinkMonitor
from vigil.net.netlink import Netlink
from vigil.net.vmac import VmacSpec, default_vmac_name, eui64_link_local, vmac_address


def link_msg(index: int, name: str, flags: int, carrier: int, event: str = "RTM_NEWLINK") -> Any:
    msg = ifinfmsg()
    msg["index"] = index
    msg["flags"] = flags
    msg["attrs"] = [
        ("IFLA_IFNAME", name),
        ("IFLA_CARRIER", carrier),
        ("IFLA_MTU", 1500),
        ("IFLA_ADDRESS", "02:00:00:00:00:01"),
    ]
    msg.encode()
    decoded = ifinfmsg(msg.data)
    decoded.decode()
    decoded["event"] = event
    return decoded


def addr_msg(
    index: int,
    family: int,
    attrs: list[tuple[str, Any]],
    prefixlen: int,
    *,
    scope: int = 0,
    event: str = "RTM_NEWADDR",
) -> Any:
    msg = ifaddrmsg()
    msg["family"] = family
    msg["prefixlen"] = prefixlen
    msg["index"] = index
    msg["scope"] = scope
    msg["attrs"] = attrs
    msg.encode()
    decoded = ifaddrmsg(msg.data)
    decoded.decode()
    decoded["event"] = event
    return decoded


# ------------------------------------------------------------------ parsing


def test_link_message_parsed() -> None:
    state = _link_from_msg(link_msg(4, "ve0", IFF_UP | IFF_LOWER_UP, 1))
    assert (state.index, state.name, state.up, state.carrier, state.mtu) == (
        4,
        "ve0",
        True,
        True,
        1500,
    )
    assert state.mac == "02:00:00:00:00:01" and state.running
    down = _link_from_msg(link_msg(4, "ve0", 0, 0))
    assert not down.up and not down.carrier and not down.running


def test_ipv4_address_uses_local_not_peer_and_wide_flags() -> None:
    msg = addr_msg(
        3,
        socket.AF_INET,
        [
            ("IFA_LOCAL", "10.0.0.1"),
            ("IFA_ADDRESS", "10.0.0.2"),
            ("IFA_LABEL", "ve0:x"),
            ("IFA_FLAGS", 0x200 | IFA_F_SECONDARY),
        ],
        24,
    )
    info = _addr_from_msg(msg, "ve0")
    assert info.address == IPv4Interface("10.0.0.1/24")
    assert info.label == "ve0:x" and info.scope == "global" and info.index == 3
    assert info.flags & 0x200 and info.secondary


def test_ipv6_address_flags_and_scope() -> None:
    msg = addr_msg(
        3,
        socket.AF_INET6,
        [("IFA_ADDRESS", "fe80::1"), ("IFA_FLAGS", IFA_F_TENTATIVE | IFA_F_NODAD)],
        64,
        scope=253,
    )
    info = _addr_from_msg(msg, "ve0")
    assert info.address == IPv6Interface("fe80::1/64")
    assert info.scope == "link" and info.tentative and info.label is None


# ------------------------------------------------------------ event filtering


def make_monitor() -> NetlinkMonitor:
    return NetlinkMonitor(Netlink(), rcvbuf=4096)


def test_link_events_only_on_state_change() -> None:
    monitor = make_monitor()
    up = link_msg(4, "ve0", IFF_UP | IFF_LOWER_UP, 1)
    assert list(monitor._translate(up)) == [LinkEvent("ve0", 4, True, True)]
    assert list(monitor._translate(up)) == []  # statistics-only update: no event
    lost = link_msg(4, "ve0", IFF_UP, 0)
    assert list(monitor._translate(lost)) == [LinkEvent("ve0", 4, True, False)]
    gone = link_msg(4, "ve0", IFF_UP, 0, event="RTM_DELLINK")
    assert list(monitor._translate(gone)) == [LinkEvent("ve0", 4, False, False, removed=True)]


def test_address_events_deduplicated_and_named() -> None:
    monitor = make_monitor()
    list(monitor._translate(link_msg(4, "ve0", IFF_UP | IFF_LOWER_UP, 1)))
    attrs: list[tuple[str, Any]] = [("IFA_ADDRESS", "fd00::1"), ("IFA_FLAGS", IFA_F_TENTATIVE)]
    new = addr_msg(4, socket.AF_INET6, attrs, 64)
    expected = AddrEvent("ve0", IPv6Interface("fd00::1/64"), True, 4)
    assert list(monitor._translate(new)) == [expected]
    done = addr_msg(4, socket.AF_INET6, [("IFA_ADDRESS", "fd00::1"), ("IFA_FLAGS", 0)], 64)
    assert list(monitor._translate(done)) == []  # DAD finished: same address, no event
    deleted = addr_msg(4, socket.AF_INET6, attrs, 64, event="RTM_DELADDR")
    (ev,) = monitor._translate(deleted)
    assert isinstance(ev, AddrEvent) and ev.removed and ev.ifname == "ve0"
    assert list(monitor._translate(deleted)) == []


def test_monitor_before_open_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match=re.escape("await nl.open()")):
        _ = Netlink().ipr


# -------------------------------------------------------------------- routes


def test_route_parse_default_takes_family_from_gateway() -> None:
    assert RouteSpec.parse("default", via="10.0.0.1").to == IPv4Network("0.0.0.0/0")
    assert RouteSpec.parse("default", via="fd00::1").to == IPv6Network("::/0")
    assert RouteSpec.parse("default", dev="eth0").to == IPv4Network("0.0.0.0/0")
    spec = RouteSpec.parse("10.1.2.3/16", via="10.0.0.1", metric=5, table=100)
    assert spec.to == IPv4Network("10.1.0.0/16") and spec.via == IPv4Address("10.0.0.1")
    assert str(spec) == "10.1.0.0/16 via 10.0.0.1 metric 5 table 100"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"to": "10.1.0.0/16", "via": "fd00::1"},
            "via fd00::1 is IPv6 but the destination is IPv4",
        ),
        ({"to": "10.1.0.0/16", "dev": "eth0", "src": "fd00::1"}, "src fd00::1 is IPv6"),
        ({"to": "10.1.0.0/16"}, "needs a gateway (via) or a device (dev)"),
        ({"to": "10.1.0.0/16", "dev": "eth0", "table": 0}, "table 0 out of range"),
        ({"to": "10.1.0.0/16", "dev": "eth0", "metric": -1}, "metric -1 out of range"),
        ({"to": "10.1.0.0/16", "dev": "eth0", "scope": "planet"}, "unknown scope 'planet'"),
    ],
)
def test_route_errors_name_the_problem(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        RouteSpec.parse(**kwargs)
    assert message in str(info.value)


def test_route_from_config_like_object_fills_default_dev() -> None:
    @dataclass(frozen=True)
    class Route:
        to: IPv4Network
        via: IPv4Address | None = None
        dev: str | None = None
        src: IPv4Address | None = None
        metric: int | None = None
        table: int | None = None
        scope: str | None = None

    spec = RouteSpec.from_fields(Route(IPv4Network("10.1.0.0/16"), metric=7), default_dev="eth0")
    assert spec == RouteSpec(IPv4Network("10.1.0.0/16"), dev="eth0", metric=7)
    own = RouteSpec.from_fields(Route(IPv4Network("10.1.0.0/16"), dev="eth1"), default_dev="eth0")
    assert own.dev == "eth1"


def test_route_identity_ignores_protocol() -> None:
    a = RouteSpec(IPv4Network("10.1.0.0/16"), dev="eth0", protocol=4)
    b = RouteSpec(IPv4Network("10.1.0.0/16"), dev="eth0", protocol=3)
    assert a == b


# -------------------------------------------------------------------- errors


def test_failure_text_is_for_operators() -> None:
    failure = NetlinkFailure("add", "10.0.0.100/24 to eth9", errno.ENODEV)
    assert str(failure) == "cannot add 10.0.0.100/24 to eth9: no such device"
    assert failure.errno == errno.ENODEV and failure.op == "add"
    other = NetlinkFailure("add", "x", errno.EMLINK)
    assert str(other) == "cannot add x: too many links"


# ---------------------------------------------------------------------- VMAC


def test_vmac_addresses_follow_rfc5798() -> None:
    assert vmac_address(1, 4) == "00:00:5e:00:01:01"
    assert vmac_address(255, 6) == "00:00:5e:00:02:ff"
    assert default_vmac_name(51) == "vrrp.51"
    assert VmacSpec("vrrp.51", "eth0", 51).mac == "00:00:5e:00:01:33"
    with pytest.raises(ValueError, match="vrid 0 out of range"):
        vmac_address(0, 4)


def test_vmac_name_rules() -> None:
    with pytest.raises(ValueError, match=re.escape("1..15 characters")):
        VmacSpec("a-very-long-vmac-name", "eth0", 1)
    with pytest.raises(ValueError, match="is the parent interface"):
        VmacSpec("eth0", "eth0", 1)


def test_eui64_link_local() -> None:
    assert eui64_link_local("52:54:00:12:34:56") == IPv6Interface("fe80::5054:ff:fe12:3456/64")
    with pytest.raises(ValueError, match="48-bit"):
        eui64_link_local("52:54:00")


# -------------------------------------------------------------------- sysctl


def test_sysctl_paths_keep_dotted_interface_names_whole() -> None:
    assert sysctl.conf_path(4, "vrrp.51", "arp_ignore") == (
        "net",
        "ipv4",
        "conf",
        "vrrp.51",
        "arp_ignore",
    )
    with pytest.raises(ValueError, match="single path segment"):
        sysctl.conf_path(4, "../../kernel", "x")
    with pytest.raises(ValueError, match="family must be 4 or 6"):
        sysctl.conf_path(5, "eth0", "x")  # type: ignore[arg-type]


def test_sysctl_error_text() -> None:
    err = sysctl.SysctlError("set", "net/ipv4/conf/eth9/arp_ignore=1", errno.ENOENT, "no iface")
    assert (
        str(err)
        == "cannot set net/ipv4/conf/eth9/arp_ignore=1: no such file or directory (no iface)"
    )
