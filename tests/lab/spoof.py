"""Spoofed VRRP adverts from a lab node, built with vigil's codec and sent with scapy.

Run inside the sending namespace (``Lab.run`` does that)::

    python -m tests.lab.spoof --iface eth0 --src 10.99.0.11 --vrid 51 --priority 0 \\
        --version 3 --interval 0.1 --vip 10.99.0.100 [--count 1] [--gap 0.01]

The VRRP message comes from ``vigil.vrrp.packet.build_advert`` (cross-checked against
scapy in the unit tests); scapy builds the Ethernet and IP headers (TTL 255, TOS 0xc0,
any source address) and sends the frames at layer 2, so the source address is whatever
the attacker claims, not the node's own. ``spoof_advert(lab, node, ...)`` wraps it.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .probe import REPO_ROOT

if TYPE_CHECKING:
    from .lab import Lab, NodeRef

__all__ = ["main", "spoof_advert"]

MAX_COUNT = 100_000


def _group_mac(dst: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if dst.version == 4:
        tail = (int(dst) & 0x7FFFFF).to_bytes(3, "big")
        return "01:00:5e:" + ":".join(f"{b:02x}" for b in tail)
    return "33:33:" + ":".join(f"{b:02x}" for b in dst.packed[-4:])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.lab.spoof", description=__doc__)
    p.add_argument("--iface", default="eth0")
    p.add_argument("--src", required=True, help="the source address to claim")
    p.add_argument("--vrid", type=int, required=True)
    p.add_argument("--priority", type=int, required=True)
    p.add_argument("--version", type=int, choices=(2, 3), default=3)
    p.add_argument("--interval", type=float, default=1.0, help="advert interval, seconds")
    p.add_argument("--vip", action="append", default=[], help="a VIP the advert lists")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--gap", type=float, default=0.0, help="seconds between adverts")
    args = p.parse_args(argv)

    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.sendrecv import sendp
    from vigil.vrrp import packet as codec
    from vigil.vrrp.transport import VRRP_GROUP_V4, VRRP_GROUP_V6

    src = ipaddress.ip_address(args.src)
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address = (
        VRRP_GROUP_V4 if src.version == 4 else VRRP_GROUP_V6
    )
    vips = tuple(ipaddress.ip_address(v) for v in args.vip)
    payload = codec.build_advert(
        version=args.version,
        vrid=args.vrid,
        priority=args.priority,
        adver_int=codec.interval_to_wire(args.version, args.interval),
        addresses=vips,
        src=src,
        dst=dst,
    )
    if src.version == 4:
        ip = IP(src=str(src), dst=str(dst), ttl=255, tos=0xC0, proto=112)
    else:
        ip = IPv6(src=str(src), dst=str(dst), hlim=255, tc=0xC0, nh=112)
    frame = Ether(dst=_group_mac(dst)) / ip / Raw(payload)
    sendp(frame, iface=args.iface, count=min(args.count, MAX_COUNT), inter=args.gap, verbose=False)
    return 0


def spoof_advert(
    lab: Lab,
    node: NodeRef,
    *,
    src: str,
    vrid: int,
    priority: int,
    vips: Sequence[str],
    version: int = 3,
    interval: float = 1.0,
    iface: str = "eth0",
    count: int = 1,
    gap: float = 0.0,
) -> None:
    """Send ``count`` adverts claiming to come from ``src`` out of ``node``'s ``iface``."""
    argv = [
        sys.executable, "-m", "tests.lab.spoof", "--iface", iface, "--src", src,
        "--vrid", str(vrid), "--priority", str(priority), "--version", str(version),
        "--interval", str(interval), "--count", str(count), "--gap", str(gap),
    ]  # fmt: skip
    for vip in vips:
        argv += ["--vip", vip]
    lab.run(node, ["env", f"PYTHONPATH={REPO_ROOT}:{REPO_ROOT / 'agent' / 'src'}", *argv])


if __name__ == "__main__":
    sys.exit(main())
