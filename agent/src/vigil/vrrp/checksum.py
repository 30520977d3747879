"""Internet checksum (RFC 1071) and the IPv4/IPv6 pseudo-headers VRRP uses.

Kept apart from the packet codec because the same arithmetic serves the IPv4 header the
sender builds for IP_HDRINCL and, later, other protocols.

The sum is computed without a Python loop: a byte string read as one big-endian integer
is congruent, modulo 0xFFFF, to the sum of its 16-bit words (2**16 = 1 mod 0xFFFF), which
is exactly the one's-complement sum. This keeps the receive path cheap.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address

_IPV4_PSEUDO = struct.Struct("!4s4sBBH")
_IPV6_PSEUDO = struct.Struct("!16s16sI3xB")


def ones_complement_sum(data: bytes) -> int:
    """Return the folded 16-bit one's-complement sum of ``data`` (odd length is zero-padded).

    The result is in 0..0xFFFF; 0 only for all-zero input, as an end-around-carry adder
    would give.
    """
    if len(data) % 2:
        data += b"\x00"
    value = int.from_bytes(data, "big")
    if value == 0:
        return 0
    folded = value % 0xFFFF
    return folded or 0xFFFF


def internet_checksum(data: bytes) -> int:
    """Return the RFC 1071 checksum of ``data`` (with its checksum field zeroed)."""
    return ~ones_complement_sum(data) & 0xFFFF


def checksum_ok(data: bytes) -> bool:
    """Tell whether ``data``, checksum field included, sums to all ones (a valid checksum)."""
    return ones_complement_sum(data) == 0xFFFF


def ipv4_pseudo_header(src: IPv4Address, dst: IPv4Address, protocol: int, length: int) -> bytes:
    """The 12-byte IPv4 pseudo-header: source, destination, zero, protocol, length."""
    return _IPV4_PSEUDO.pack(src.packed, dst.packed, 0, protocol, length)


def ipv6_pseudo_header(src: IPv6Address, dst: IPv6Address, next_header: int, length: int) -> bytes:
    """The 40-byte IPv6 pseudo-header of RFC 8200 section 8.1."""
    return _IPV6_PSEUDO.pack(src.packed, dst.packed, length, next_header)
