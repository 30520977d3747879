"""Runs vigil.vrrp.transport inside a namespace for the transport tests (no tests here).

Started as ``ip netns exec NS python test_net_transport_driver.py``: it reads one JSON
command per line on stdin and writes one JSON line per reply or event on stdout, so the
test (in the root namespace) can drive a real SocketRegistry on the real event loop.

Commands: acquire {family, ifname}; release; register {vrid}; send {payload (hex), dst,
src, builder}; source_interface {source}; advertise {vrid, priority, adver_int,
addresses, count, every} (real VRRPv3 adverts from vigil.vrrp.packet, paced on the loop);
stop_advertising; link_up;
link_down {reason}; status; quit. Every command names family and
ifname where it applies and is answered with {"reply": id, ...}. Events: rx (a registered
VRID), unknown (no handler), status (socket up/down).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import sys
from dataclasses import asdict
from typing import Any

from vigil.vrrp.packet import build_advert
from vigil.vrrp.transport import RawReceived, SocketRegistry, VrrpSocket


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def describe(packet: RawReceived) -> dict[str, Any]:
    return {
        "family": packet.family,
        "ifname": packet.ifname,
        "src": str(packet.src),
        "dst": str(packet.dst),
        "ttl": packet.ttl,
        "data": packet.data.hex(),
        "ifindex": packet.ifindex,
        "vrid": packet.vrid,
    }


class Driver:
    def __init__(self) -> None:
        self.registry = SocketRegistry(on_unknown_vrid=self.on_unknown, on_status=self.on_status)
        self.done = asyncio.Event()
        self.adverts: list[asyncio.Future[None]] = []

    async def advertise(self, cmd: dict[str, Any]) -> None:
        """Send real adverts (vigil.vrrp.packet) every ``every`` s, ``count`` times at most."""
        sock = self.socket_for(cmd)
        addresses = [ipaddress.ip_address(a) for a in cmd["addresses"]]

        def build(src: Any, dst: Any) -> bytes:
            return build_advert(
                version=3,
                vrid=cmd["vrid"],
                priority=cmd["priority"],
                adver_int=cmd["adver_int"],
                addresses=addresses,
                src=src,
                dst=dst,
            )

        sent = 0
        for _ in range(cmd["count"]):
            sent += sock.send(build)
            await asyncio.sleep(cmd["every"])
        emit({"event": "advertised", "vrid": cmd["vrid"], "sent": sent})

    def on_unknown(self, packet: RawReceived, vrid: int | None) -> None:
        emit({"event": "unknown", "reported_vrid": vrid, **describe(packet)})

    def on_status(self, sock: VrrpSocket, up: bool, reason: str) -> None:
        emit(
            {
                "event": "status",
                "family": sock.family,
                "ifname": sock.ifname,
                "up": up,
                "reason": reason,
            }
        )

    def handler(self, vrid: int) -> Any:
        def deliver(packet: RawReceived) -> None:
            emit({"event": "rx", "handler": vrid, **describe(packet)})

        return deliver

    def socket_for(self, cmd: dict[str, Any]) -> VrrpSocket:
        sock = self.registry.get(cmd["family"], cmd["ifname"])
        if sock is None:
            raise KeyError(f"no socket for IPv{cmd['family']} {cmd['ifname']}")
        return sock

    def execute(self, cmd: dict[str, Any]) -> dict[str, Any]:
        op = cmd["op"]
        if op == "acquire":
            sock = self.registry.acquire(cmd["family"], cmd["ifname"])
            return {
                "up": sock.up,
                "reason": sock.down_reason,
                "refs": self.registry.refcount(cmd["family"], cmd["ifname"]),
            }
        if op == "release":
            self.registry.release(self.socket_for(cmd))
            return {"open": len(self.registry)}
        if op == "source_interface":
            self.socket_for(cmd).source_interface = cmd["source"]
            return {}
        if op == "register":
            self.socket_for(cmd).register(cmd["vrid"], self.handler(cmd["vrid"]))
            return {}
        if op == "unregister":
            self.socket_for(cmd).unregister(cmd["vrid"])
            return {}
        if op == "send":
            sock = self.socket_for(cmd)
            payload = bytes.fromhex(cmd["payload"])
            if cmd.get("builder"):
                # Put each datagram's own destination in the payload, to show the builder
                # is called per peer with the right (src, dst).
                def build(src: Any, dst: Any) -> bytes:
                    return payload + ipaddress.ip_address(src).packed + dst.packed

                return {"sent": sock.send(build, cmd.get("dst"), cmd.get("src"))}
            return {"sent": sock.send(payload, cmd.get("dst"), cmd.get("src"))}
        if op == "prepare":
            sock = self.socket_for(cmd)
            seen: list[list[str]] = []

            def record(src: Any, dst: Any) -> bytes:
                seen.append([str(src), str(dst)])
                return b""

            sock.prepare(record, cmd.get("dst"), cmd.get("src"))
            return {"built": seen, "tx_packets": sock.stats.tx_packets}
        if op == "link_up":
            return {"up": [repr(s) for s in self.registry.link_up(cmd["ifname"])]}
        if op == "link_down":
            self.registry.link_down(cmd["ifname"], cmd.get("reason", "link down"))
            return {}
        if op == "status":
            sock = self.socket_for(cmd)
            source = sock.default_source()
            return {
                "up": sock.up,
                "reason": sock.down_reason,
                "stats": asdict(sock.stats),
                "ifindex": sock.ifindex,
                "source": str(source) if source else None,
            }
        if op == "advertise":
            self.adverts.append(asyncio.ensure_future(self.advertise(cmd)))
            return {}
        if op == "stop_advertising":
            for task in self.adverts:
                task.cancel()
            self.adverts.clear()
            return {}
        if op == "quit":
            self.registry.close()
            self.done.set()
            return {}
        raise ValueError(f"unknown op {op!r}")

    def on_stdin(self, buffer: list[bytes]) -> None:
        chunk = sys.stdin.buffer.raw.read(65536)  # type: ignore[attr-defined]
        if not chunk:
            self.registry.close()
            self.done.set()
            return
        buffer.append(chunk)
        data = b"".join(buffer)
        lines = data.split(b"\n")
        buffer[:] = [lines.pop()]
        for line in lines:
            if not line.strip():
                continue
            cmd = json.loads(line)
            try:
                reply = {"reply": cmd["id"], "ok": True, **self.execute(cmd)}
            except Exception as exc:
                reply = {
                    "reply": cmd["id"],
                    "ok": False,
                    "error": f"{type(exc).__name__}: {exc}",
                }
            emit(reply)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        buffer: list[bytes] = []
        loop.add_reader(sys.stdin.fileno(), self.on_stdin, buffer)
        emit({"event": "ready"})
        await self.done.wait()


if __name__ == "__main__":
    asyncio.run(Driver().run())
