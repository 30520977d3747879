"""Gratuitous ARP and unsolicited neighbour advertisements for VIPs that just moved here.

The frames match keepalived 2.2.7 byte for byte (see the golden captures in the test
vectors), because switches and hosts in the field have been tuned against those:

- gratuitous ARP: an ARP *request* broadcast, sender = target = VIP, sender hardware =
  the interface's (or the VRRP virtual) MAC, target hardware ff:ff:ff:ff:ff:ff;
- unsolicited NA: from the VIP to ff02::1, hop limit 255, flags O=1 R=0 S=0, target = VIP,
  with a target link-layer address option (keepalived leaves R clear even on a router).

Both are sent as complete Ethernet frames on an AF_PACKET socket. For the NA this keeps
the source = VIP even while the VIP is still tentative or being added (the kernel refuses
such a source on an ICMPv6 socket), and it puts tc=0/flow label 0 on the wire as
keepalived does; the price is computing the ICMPv6 checksum here.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Iterable

__all__ = [
    "MAX_BURST_COUNT",
    "MAX_BURST_INTERVAL",
    "GarpSender",
    "build_gratuitous_arp",
    "build_unsolicited_na",
    "icmpv6_checksum",
    "interface_mac",
    "parse_mac",
]

log = logging.getLogger("vigil.net.garp")

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
BROADCAST_MAC = b"\xff" * 6
ALL_NODES = ipaddress.IPv6Address("ff02::1")
ALL_NODES_MAC = b"\x33\x33\x00\x00\x00\x01"
ICMPV6_NA = 136
NA_FLAG_OVERRIDE = 0x20000000
ND_OPT_TARGET_LLADDR = 2
HOP_LIMIT = 255
SIOCGIFHWADDR = 0x8927

MAX_BURST_COUNT = 10_000  # the config schema allows garp master_repeat up to 10000
MAX_BURST_INTERVAL = 60.0
TRANSIENT_ERRNOS = frozenset({errno.ENOBUFS, errno.EAGAIN})
#: How long frames from :meth:`GarpSender.prepare` are used: they carry the interface's
#: MAC as read when they were built. VRRP prepares them 5 ms before a possible takeover.
PREPARED_MAX_AGE = 1.0
_PREPARED_MAX = 1024  # frames kept at most

_ETHERNET = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_NA = struct.Struct("!BBHI16sBB6s")


def parse_mac(mac: str | bytes, what: str = "mac") -> bytes:
    """Six bytes from ``aa:bb:cc:dd:ee:ff`` (or ``-`` separated) or from six raw bytes."""
    if isinstance(mac, bytes | bytearray):
        if len(mac) != 6:
            raise ValueError(f"{what}: must be 6 bytes, got {len(mac)}")
        return bytes(mac)
    parts = mac.replace("-", ":").split(":")
    try:
        if len(parts) != 6 or any(len(part) != 2 for part in parts):
            raise ValueError
        return bytes(int(part, 16) for part in parts)
    except ValueError:
        raise ValueError(
            f"{what}: {mac!r} is not a MAC address; write it as aa:bb:cc:dd:ee:ff"
        ) from None


def _ipv4(vip: ipaddress.IPv4Address | str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(vip)
    except ValueError:
        raise ValueError(f"vip: {vip!r} is not an IPv4 address (gratuitous ARP)") from None


def _ipv6(vip: ipaddress.IPv6Address | str) -> ipaddress.IPv6Address:
    try:
        return ipaddress.IPv6Address(vip)
    except ValueError:
        raise ValueError(f"vip: {vip!r} is not an IPv6 address (neighbour advert)") from None


def build_gratuitous_arp(mac: str | bytes, vip: ipaddress.IPv4Address | str) -> bytes:
    """The 42-byte Ethernet frame of a gratuitous ARP request announcing ``vip`` at ``mac``."""
    hw = parse_mac(mac)
    address = _ipv4(vip).packed
    ethernet = _ETHERNET.pack(BROADCAST_MAC, hw, ETH_P_ARP)
    # htype Ethernet, ptype IPv4, hlen 6, plen 4, op 1 (request)
    arp = _ARP.pack(1, 0x0800, 6, 4, 1, hw, address, BROADCAST_MAC, address)
    return ethernet + arp


def icmpv6_checksum(src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address, message: bytes) -> int:
    """RFC 4443 checksum: ones' complement sum over the pseudo-header and the message."""
    pseudo = src.packed + dst.packed + struct.pack("!I3xB", len(message), socket.IPPROTO_ICMPV6)
    data = pseudo + message
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def build_unsolicited_na(mac: str | bytes, vip: ipaddress.IPv6Address | str) -> bytes:
    """The 86-byte Ethernet frame of an unsolicited NA for ``vip`` at ``mac`` (to ff02::1)."""
    hw = parse_mac(mac)
    address = _ipv6(vip)
    message = _NA.pack(
        ICMPV6_NA, 0, 0, NA_FLAG_OVERRIDE, address.packed, ND_OPT_TARGET_LLADDR, 1, hw
    )
    checksum = icmpv6_checksum(address, ALL_NODES, message)
    message = message[:2] + struct.pack("!H", checksum) + message[4:]
    ipv6 = _IPV6.pack(
        6 << 28, len(message), socket.IPPROTO_ICMPV6, HOP_LIMIT, address.packed, ALL_NODES.packed
    )
    return _ETHERNET.pack(ALL_NODES_MAC, hw, ETH_P_IPV6) + ipv6 + message


def interface_mac(ifname: str) -> bytes:
    """The interface's own MAC address (SIOCGIFHWADDR); OSError if it does not exist."""
    request = struct.pack("16s16x", ifname.encode()[:15])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        reply = fcntl.ioctl(probe.fileno(), SIOCGIFHWADDR, request)
    return reply[18:24]


def _frame_for(mac: bytes, vip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[bytes, int]:
    if isinstance(vip, ipaddress.IPv4Address):
        return build_gratuitous_arp(mac, vip), ETH_P_ARP
    return build_unsolicited_na(mac, vip), ETH_P_IPV6


class GarpSender:
    """Sends gratuitous ARPs and unsolicited NAs as raw Ethernet frames.

    One AF_PACKET socket (protocol 0, so it never receives and needs no draining) serves
    every interface; it is opened on first use in the agent's network namespace.
    """

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self.sent = 0
        self.errors = 0
        # prepare(): (frame, protocol, when) by (interface, VIP, MAC given or None).
        self._prepared: dict[tuple[str, object, bytes | None], tuple[bytes, int, float]] = {}

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            sock.setblocking(False)
            self._sock = sock
        return self._sock

    def open(self) -> None:
        """Create the packet socket now rather than on the first announcement."""
        self._socket()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def prepare(
        self,
        ifname: str,
        vips: Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address | str],
        mac: str | bytes | None = None,
    ) -> int:
        """Build the frames a burst for ``vips`` on ``ifname`` will send; how many.

        Reading the interface's MAC and building a frame (with the NA's checksum) cost more
        than sending it, and VRRP announces VIPs on the clock: it prepares them shortly
        before a deadline that may make it master. Prepared frames are used for
        PREPARED_MAX_AGE. An interface that cannot be read now is left for the send to
        report.
        """
        hw = parse_mac(mac) if mac is not None else None
        try:
            own = hw if hw is not None else interface_mac(ifname)
        except OSError:
            return 0
        if len(self._prepared) >= _PREPARED_MAX:
            self._prepared.clear()
        now = time.monotonic()
        done = 0
        for vip in vips:
            address = ipaddress.ip_address(vip)
            frame, proto = _frame_for(own, address)
            self._prepared[(ifname, address, hw)] = (frame, proto, now)
            done += 1
        return done

    def send_one(
        self,
        ifname: str,
        vip: ipaddress.IPv4Address | ipaddress.IPv6Address | str,
        mac: str | bytes | None = None,
    ) -> bool:
        """Send one frame for ``vip`` on ``ifname``; False (logged, counted) if it failed."""
        return self._send(ifname, ipaddress.ip_address(vip), mac) is None

    def _send(
        self,
        ifname: str,
        address: ipaddress.IPv4Address | ipaddress.IPv6Address,
        mac: str | bytes | None,
    ) -> OSError | None:
        try:
            hw = parse_mac(mac) if mac is not None else None
            prepared = self._prepared.get((ifname, address, hw))
            if prepared is not None and time.monotonic() - prepared[2] < PREPARED_MAX_AGE:
                frame, proto, _ = prepared
            else:
                frame, proto = _frame_for(hw or interface_mac(ifname), address)
            self._socket().sendto(frame, (ifname, proto))
        except OSError as exc:
            self.errors += 1
            log.warning("cannot announce %s on %s: %s", address, ifname, exc.strerror or exc)
            return exc
        self.sent += 1
        return None

    def send_head(
        self,
        ifname: str,
        vips: Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address | str],
        count: int = 5,
        interval: float = 0.0,
        mac: str | bytes | None = None,
    ) -> tuple[int, int, bool]:
        """Send the start of a burst right now, without waiting for the event loop.

        That is the whole first round when there is no ``interval`` between frames, else
        the first frame. Returns (frames done, frames sent, burst over); hand the first to
        :meth:`send_burst` as ``skip`` to send the rest. A VIP that has just moved here is
        announced in the same breath as it is added.
        """
        addresses, hw = self._burst(vips, count, interval, mac)
        if not addresses:
            return 0, 0, True
        head = len(addresses) if interval == 0 else 1
        sent = 0
        for address in addresses[:head]:
            ok, fatal = self._send_counted(ifname, address, hw)
            sent += ok
            if fatal:
                return head, sent, True
        return head, sent, head >= count * len(addresses)

    async def send_burst(
        self,
        ifname: str,
        vips: Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address | str],
        count: int = 5,
        interval: float = 0.0,
        mac: str | bytes | None = None,
        *,
        skip: int = 0,
    ) -> int:
        """Announce every VIP ``count`` times, ``interval`` seconds between frames.

        IPv4 VIPs get gratuitous ARPs, IPv6 VIPs unsolicited NAs; each round covers all VIPs
        in order. Returns the number of frames sent. A full queue (ENOBUFS, EAGAIN) only
        loses that frame; a missing or down interface ends the burst (the runtime hears
        about the link from the netlink monitor and announces again when it is back).
        ``skip`` frames of the sequence were sent already (:meth:`send_head`).
        """
        addresses, hw = self._burst(vips, count, interval, mac)
        sent = 0
        for position in range(skip, count * len(addresses)):
            if position:
                await asyncio.sleep(interval)
            ok, fatal = self._send_counted(ifname, addresses[position % len(addresses)], hw)
            sent += ok
            if fatal:
                break
        return sent

    @staticmethod
    def _burst(
        vips: Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address | str],
        count: int,
        interval: float,
        mac: str | bytes | None,
    ) -> tuple[list[ipaddress.IPv4Address | ipaddress.IPv6Address], bytes | None]:
        """Check a burst's arguments: (the VIPs as addresses, the source MAC or None)."""
        if not isinstance(count, int) or not 1 <= count <= MAX_BURST_COUNT:
            raise ValueError(f"count: must be an integer from 1 to {MAX_BURST_COUNT}")
        if not 0 <= interval <= MAX_BURST_INTERVAL:
            raise ValueError(f"interval: must be from 0 to {MAX_BURST_INTERVAL} seconds")
        addresses = [ipaddress.ip_address(vip) for vip in vips]
        return addresses, parse_mac(mac) if mac is not None else None

    def _send_counted(
        self,
        ifname: str,
        address: ipaddress.IPv4Address | ipaddress.IPv6Address,
        hw: bytes | None,
    ) -> tuple[int, bool]:
        """One frame of a burst: (1 if it left else 0, whether the burst must stop).

        A full queue (ENOBUFS, EAGAIN) only loses the frame; anything else ends the burst.
        """
        error = self._send(ifname, address, hw)
        if error is None:
            return 1, False
        return 0, error.errno not in TRANSIENT_ERRNOS
