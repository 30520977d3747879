"""Packet timelines of a failover: why one implementation's outage is longer than another's.

A capture on the lab's bridge (tcpdump in the switch namespace sees every frame of the
segment) turns one benchmark round into a timeline relative to the moment of injection:

- the old master's last advert and its priority-0 advert (clean stop),
- the new master's first advert (when its Master_Down or skew timer fired),
- its first gratuitous ARP / unsolicited NA (when the client could learn the new MAC),
- the last echo reply from the old master's MAC and the first from the new one.

``python -m bench.failover --trace`` stores this per round; the derived spans
(``detect_ms``: injection -> first new advert, ``announce_ms``: first new advert -> first
GARP/NA, ``reply_ms``: GARP/NA -> first reply) locate where time is spent.
"""

from __future__ import annotations

import contextlib
import ipaddress
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.lab.lab import Lab
from tests.lab.procs import ProcessHandle
from tests.lab.waiting import wait_for

__all__ = ["Capture", "timeline"]

VRRP_PROTO = 112


@dataclass
class Capture:
    """tcpdump on the switch's bridge, writing a pcap; ``stop()`` flushes it.

    Immediate mode: without it libpcap hands packets over in blocks (up to 1 s late) and
    a SIGTERM before the block is handed over loses the end of a short round.
    """

    lab: Lab
    path: Path
    process: ProcessHandle | None = None

    def start(self, switch: str = "sw", iface: str = "br0") -> Capture:
        argv = [
            "tcpdump", "-i", iface, "-n", "-U", "--immediate-mode", "-s", "200",
            "-w", str(self.path),
            "--time-stamp-precision=micro",
            "vrrp or arp or icmp or icmp6 or (ip6 and ip6[6] == 112)",
        ]  # fmt: skip
        self.process = self.lab.spawn(switch, argv, name="tcpdump")
        proc = self.process
        wait_for(
            lambda: "listening on" in proc.log_text() or not proc.alive(),
            timeout=10,
            what="tcpdump to listen",
        )
        if not proc.alive():
            raise RuntimeError(f"tcpdump exited:\n{proc.log_text(tail=10)}")
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.signal(signal.SIGTERM)
        with contextlib.suppress(Exception):
            self.process.wait(timeout=5)
        self.process.stop(timeout=2)


def _vrrp_priority(payload: bytes) -> int | None:
    return payload[2] if len(payload) >= 3 else None


def _span(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round(end - start, 2)


def _is_announcement(pkt: Any, vip: str, target: Any) -> bool:
    """A gratuitous ARP (request, sender = target = VIP) or an NA for the VIP."""
    from scapy.layers.inet6 import ICMPv6ND_NA
    from scapy.layers.l2 import ARP

    if ARP in pkt:
        arp = pkt[ARP]
        return bool(arp.op == 1 and arp.psrc == arp.pdst == vip)
    if ICMPv6ND_NA in pkt:
        return bool(ipaddress.ip_address(pkt[ICMPv6ND_NA].tgt) == target)
    return False


def timeline(
    pcap: Path, vip: str, old_mac: str, new_mac: str, inject_wall: float
) -> dict[str, Any]:
    """Read the capture and return event times in ms relative to the injection."""
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.inet6 import ICMPv6EchoReply, IPv6
    from scapy.layers.l2 import Ether
    from scapy.utils import PcapReader

    target = ipaddress.ip_address(vip)
    old_mac, new_mac = old_mac.lower(), new_mac.lower()
    ev: dict[str, list[float]] = {
        "old_adverts": [],
        "old_prio0": [],
        "new_adverts": [],
        "old_announce": [],
        "new_announce": [],
        "old_replies": [],
        "new_replies": [],
    }
    with PcapReader(str(pcap)) as reader:
        for pkt in reader:
            if Ether not in pkt:
                continue
            t = (float(pkt.time) - inject_wall) * 1000.0
            src = pkt[Ether].src.lower()
            side = "old" if src == old_mac else "new" if src == new_mac else None
            if side is None:
                continue
            l3: Any = None
            proto = None
            if IP in pkt:
                l3, proto = pkt[IP], pkt[IP].proto
            elif IPv6 in pkt:
                l3, proto = pkt[IPv6], pkt[IPv6].nh
            if l3 is not None and proto == VRRP_PROTO:
                prio = _vrrp_priority(bytes(l3.payload))
                if prio == 0:
                    ev[f"{side}_prio0"].append(t)
                else:
                    ev[f"{side}_adverts"].append(t)
            elif _is_announcement(pkt, vip, target):
                ev[f"{side}_announce"].append(t)
            elif (ICMP in pkt and pkt[ICMP].type == 0) or ICMPv6EchoReply in pkt:
                ev[f"{side}_replies"].append(t)

    def last_before(key: str, limit: float = 0.0) -> float | None:
        vals = [x for x in ev[key] if x <= limit]
        return round(max(vals), 2) if vals else None

    def first_after(key: str, limit: float = 0.0) -> float | None:
        vals = [x for x in ev[key] if x > limit]
        return round(min(vals), 2) if vals else None

    out: dict[str, Any] = {
        "old_last_advert_ms": last_before("old_adverts"),
        "old_prio0_ms": first_after("old_prio0", -1000.0),
        "new_first_advert_ms": first_after("new_adverts", -1e9),
        "new_first_announce_ms": first_after("new_announce", -1e9),
        "old_last_reply_ms": last_before("old_replies", 1e9),
        "new_first_reply_ms": first_after("new_replies", -1e9),
    }
    adv, ann, rep = (
        out["new_first_advert_ms"],
        out["new_first_announce_ms"],
        out["new_first_reply_ms"],
    )
    out["announce_after_advert_ms"] = None if adv is None or ann is None else round(ann - adv, 2)
    out["reply_after_announce_ms"] = None if ann is None or rep is None else round(rep - ann, 2)
    last, prio0 = out["old_last_advert_ms"], out["old_prio0_ms"]
    # Master_Down (crash, link down) or Skew_Time (priority 0) as the backup ran it.
    out["advert_after_old_advert_ms"] = _span(last, adv)
    out["advert_after_prio0_ms"] = _span(prio0, adv)
    return out
