"""BFD's part of ``vigilctl import-keepalived``: ``bfd_instance`` blocks -> ``bfd.sessions``.

keepalived's ``bfd_instance NAME { neighbor_ip .. source_ip .. min_rx .. }`` becomes a
session named NAME (its ``track_bfd`` references keep working: VRRP's part converts them
to ``track: {bfd: [...]}``). Intervals are milliseconds there and seconds here.

keepalived's own defaults (10 ms x 5) are written out when the block leaves them out,
since vigil's defaults differ (300 ms x 3): the imported session behaves as it did.

What does not carry over, and why (each reported with its file and line):

* ``ttl`` / ``hoplimit`` other than 255: vigil always sends single-hop BFD with 255 (RFC
  5881 5), the only value a conforming peer accepts.
* ``max_hops`` other than 0: keepalived lets a single-hop session (UDP 3784) accept a
  lower TTL; vigil's single-hop sessions require 255, and a peer behind routers is a
  multihop session (UDP 4784), which keepalived does not speak.
* ``idle_tx`` other than 1000 ms: vigil sends once a second while a session is not Up.
* ``vrrp`` / ``checker``: keepalived sends a session's events to one of its processes;
  every vigil subsystem sees every session (noted, nothing to carry).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from vigil.keepalived.convert import BadValue, Converter, ImporterPart, integer
from vigil.keepalived.parser import Statement

__all__ = ["BfdImporter"]

#: keepalived's defaults for what a bfd_instance leaves out (keepalived.conf(5))
KA_DEFAULTS = {"min_rx": 10, "min_tx": 10, "multiplier": 5}
SESSION_ORDER = ("name", "peer", "local", "min_tx", "min_rx", "multiplier", "passive")
SEND_TTL = 255


def _ms(value: int) -> float:
    return round(value / 1000.0, 6)


class BfdImporter(ImporterPart):
    """Converts ``bfd_instance`` blocks into vigil's ``bfd`` section."""

    blocks = ("bfd_instance",)

    def __init__(self, conv: Converter) -> None:
        super().__init__(conv)
        self.sessions: list[dict[str, Any]] = []
        self.names: dict[str, int] = {}

    def block(self, stmt: Statement) -> None:
        conv = self.conv
        name = conv._named(stmt)
        if name is None:
            return
        if name in self.names:
            conv.note(stmt, f"bfd_instance {name} is defined again; keepalived uses the first one")
            return
        index = len(self.sessions)
        path: list[Any] = ["bfd", "sessions", index]
        conv.origin(path, stmt)
        out: dict[str, Any] = {"name": name}
        conv.origin([*path, "name"], stmt)
        given: set[str] = set()
        for s in conv._block(stmt):
            kw = s.name
            if kw == "neighbor_ip":
                conv.convert(s, path, out, "peer", self._address)
            elif kw == "source_ip":
                conv.convert(s, path, out, "local", self._address)
            elif kw in ("min_rx", "min_tx"):
                if conv.convert(s, path, out, kw, lambda x: _ms(self._positive(x))):
                    given.add(kw)
            elif kw == "multiplier":
                if conv.convert(s, path, out, kw, lambda x: integer(conv._one_arg(x))):
                    given.add(kw)
            elif kw == "passive":
                out["passive"] = True
                conv.origin([*path, "passive"], s)
            elif kw == "disabled":
                out["admin_down"] = True
                conv.origin([*path, "admin_down"], s)
            elif kw in ("ttl", "hoplimit"):
                self._send_ttl(s)
            elif kw == "max_hops":
                self._max_hops(s)
            elif kw == "idle_tx":
                self._idle_tx(s)
            elif kw in ("vrrp", "checker"):
                conv.note(
                    s,
                    f"bfd_instance {name}: {kw} (which keepalived process hears the session) "
                    "has no equivalent: every vigil subsystem sees every session",
                )
            else:
                conv.unsupported(s, kw, f"unknown in bfd_instance {name}")
        if "peer" not in out:
            conv.error(stmt, "bfd_instance", f"{name} has no neighbor_ip")
            return
        for key, default in KA_DEFAULTS.items():
            if key not in given:
                out[key] = _ms(default) if key != "multiplier" else default
                conv.origin([*path, key], stmt)
        self.names[name] = index
        self.sessions.append({k: out[k] for k in (*SESSION_ORDER, *out) if k in out})

    # -- keyword values -------------------------------------------------------------

    def _address(self, stmt: Statement) -> str:
        text = self.conv._one_arg(stmt)
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            raise BadValue(f"{text!r} is not an IP address") from None

    def _positive(self, stmt: Statement) -> int:
        value = integer(self.conv._one_arg(stmt))
        if value <= 0:
            raise BadValue(f"must be more than 0 ms, got {value}")
        return value

    def _send_ttl(self, stmt: Statement) -> None:
        try:
            value = integer(self.conv._one_arg(stmt))
        except BadValue as exc:
            self.conv.error(stmt, stmt.name, str(exc))
            return
        if value != SEND_TTL:
            self.conv.unsupported(
                stmt,
                f"{stmt.name} {value}",
                "vigil sends single-hop BFD with TTL/hop limit 255 (RFC 5881), the only value "
                "a conforming peer accepts",
            )

    def _max_hops(self, stmt: Statement) -> None:
        try:
            value = integer(self.conv._one_arg(stmt))
        except BadValue as exc:
            self.conv.error(stmt, stmt.name, str(exc))
            return
        if value != 0:
            self.conv.unsupported(
                stmt,
                f"max_hops {value}",
                "vigil's single-hop sessions require TTL 255; a peer behind routers needs a "
                "multihop session (UDP 4784, multihop: true with min_ttl), which keepalived "
                "does not speak",
            )

    def _idle_tx(self, stmt: Statement) -> None:
        try:
            value = integer(self.conv._one_arg(stmt))
        except BadValue as exc:
            self.conv.error(stmt, stmt.name, str(exc))
            return
        if value != 1000:
            self.conv.unsupported(
                stmt,
                f"idle_tx {value}",
                "vigil sends once a second while a session is not Up (RFC 5880 6.8.3)",
            )

    # -- for VRRP's track_bfd -------------------------------------------------------

    def finish(self, config: dict[str, Any]) -> None:
        if self.sessions:
            config["bfd"] = {"sessions": self.sessions}
