"""What a BFD session is, as the engine takes it: :class:`SessionSpec`.

Independent of ``vigil.config``: the subsystem that wraps :class:`vigil.bfd.runtime.BfdEngine`
builds these from its config section. Intervals are seconds (floats), like the rest of the
agent; on the wire they become microseconds.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field
from typing import Any

from vigil.bfd.auth import AuthConfig
from vigil.bfd.machine import IDLE_TX_US, MachineParams
from vigil.bfd.transport import DEFAULT_MIN_TTL, SessionKey

__all__ = ["SessionSpec", "SessionSpecError"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_MAX_INTERVAL = 0xFFFFFFFF / 1e6  # the wire carries microseconds in 32 bits


class SessionSpecError(ValueError):
    """Invalid :class:`SessionSpec`; the message lists every problem with its field."""


def _address(value: object) -> IPAddress:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    if isinstance(value, str):
        return ipaddress.ip_address(value.split("%", 1)[0])
    raise ValueError(f"{value!r} is not an IP address")


@dataclass(frozen=True)
class SessionSpec:
    """One BFD session.

    - ``peer``: the remote address; ``local``: our address (required for multihop; for
      single hop None lets the kernel pick the source and accepts packets to any of our
      addresses); ``interface``: bind to it (required for an IPv6 link-local peer).
    - ``multihop``: RFC 5883 on UDP 4784, accepting packets whose TTL / hop limit is at
      least ``min_ttl``; single hop (RFC 5881, UDP 3784) always requires 255.
    - ``min_tx`` / ``min_rx`` (seconds): our Desired Min TX and Required Min RX;
      ``multiplier``: Detect Mult. ``idle_tx`` is Desired Min TX while not Up (1 s or
      more, RFC 5880 6.8.3).
    - ``passive``: send nothing until the peer speaks; ``admin_down``: start disabled.
    - ``auth``: RFC 5880 authentication, or None.
    - ``name``: the label in logs and snapshots (default: the session key as text).
    """

    peer: IPAddress | str
    local: IPAddress | str | None = None
    interface: str | None = None
    multihop: bool = False
    min_ttl: int = DEFAULT_MIN_TTL
    min_tx: float = 0.3
    min_rx: float = 0.3
    multiplier: int = 3
    idle_tx: float = IDLE_TX_US / 1e6
    passive: bool = False
    admin_down: bool = False
    auth: AuthConfig | None = field(default=None, repr=False)
    name: str | None = None

    def __post_init__(self) -> None:
        problems: list[str] = []
        try:
            object.__setattr__(self, "peer", _address(self.peer))
        except ValueError as exc:
            problems.append(f"peer: {exc}")
        if self.local is not None:
            try:
                object.__setattr__(self, "local", _address(self.local))
            except ValueError as exc:
                problems.append(f"local: {exc}")
        iface = self.interface
        if iface is not None and (
            not iface or len(iface.encode()) > 15 or "/" in iface or " " in iface
        ):
            problems.append(f"interface: {iface!r} is not a valid Linux interface name")
        for name in ("min_tx", "min_rx", "idle_tx"):
            value = getattr(self, name)
            if (
                not isinstance(value, int | float)
                or isinstance(value, bool)
                or not math.isfinite(value)
                or not 1e-6 <= value <= _MAX_INTERVAL
            ):
                problems.append(f"{name}: must be seconds from 0.000001 to 4294, got {value!r}")
        if isinstance(self.idle_tx, int | float) and self.idle_tx < IDLE_TX_US / 1e6:
            problems.append(
                f"idle_tx: RFC 5880 wants at least 1 s while not Up, got {self.idle_tx}"
            )
        mult = self.multiplier
        if not isinstance(mult, int) or isinstance(mult, bool) or not 1 <= mult <= 255:
            problems.append(f"multiplier: must be an integer from 1 to 255, got {mult!r}")
        ttl = self.min_ttl
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= 255:
            problems.append(f"min_ttl: must be an integer from 1 to 255, got {ttl!r}")
        if not problems:
            try:
                SessionKey(self.peer_ip, self.local_ip, self.interface, self.multihop)
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            label = self.name or str(self.peer)
            raise SessionSpecError("; ".join(f"bfd session {label}: {p}" for p in problems))

    @property
    def peer_ip(self) -> IPAddress:
        """``peer`` as an address object (it is coerced on construction)."""
        assert not isinstance(self.peer, str)
        return self.peer

    @property
    def local_ip(self) -> IPAddress | None:
        assert not isinstance(self.local, str)
        return self.local

    @property
    def key(self) -> SessionKey:
        return SessionKey(self.peer_ip, self.local_ip, self.interface, self.multihop)

    @property
    def label(self) -> str:
        return self.name or str(self.key)

    def machine_params(self, local_discr: int) -> MachineParams:
        return MachineParams(
            name=self.label,
            local_discr=local_discr,
            desired_min_tx=max(1, round(self.min_tx * 1e6)),
            required_min_rx=max(1, round(self.min_rx * 1e6)),
            detect_mult=self.multiplier,
            passive=self.passive,
            idle_tx=max(IDLE_TX_US, round(self.idle_tx * 1e6)),
            admin_down=self.admin_down,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, without secrets (the auth type and key ids only)."""
        auth = self.auth
        return {
            "name": self.label,
            "peer": str(self.peer),
            "local": None if self.local is None else str(self.local),
            "interface": self.interface,
            "multihop": self.multihop,
            "min_ttl": self.min_ttl if self.multihop else 255,
            "min_tx": self.min_tx,
            "min_rx": self.min_rx,
            "multiplier": self.multiplier,
            "passive": self.passive,
            "auth": None
            if auth is None
            else {
                "type": auth.type.name.lower(),
                "key_ids": [k.key_id for k in auth.keys],
                "send_key_id": auth.send_key_id,
            },
        }
