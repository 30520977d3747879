"""systemd's sd_notify protocol, implemented directly (no libsystemd binding).

With `Type=notify` systemd learns from these datagrams when vigild is ready (after the
subsystems started, so `systemctl start` returns only when VIPs are being defended), when
it reloads and when it stops. NOTIFY_SOCKET may be a path or an abstract-namespace name
written with a leading "@". Without NOTIFY_SOCKET every call is a no-op; a failing send
is logged, never raised, because notification must not take the agent down.
"""

from __future__ import annotations

import logging
import os
import socket
import time

__all__ = ["SdNotifier"]

log = logging.getLogger("vigil.sdnotify")


class SdNotifier:
    """Sends `KEY=VALUE` lines to the socket named by $NOTIFY_SOCKET (or `address`)."""

    def __init__(self, address: str | None = None) -> None:
        if address is None:
            address = os.environ.get("NOTIFY_SOCKET") or None
        self.address = address

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def _sockaddr(self) -> str | bytes:
        assert self.address
        if self.address.startswith("@"):
            return b"\0" + self.address[1:].encode()
        return self.address

    def send(self, *lines: str) -> bool:
        """Send one datagram made of `lines`; True if it was sent."""
        if not self.address:
            return False
        payload = "\n".join(lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.connect(self._sockaddr())
                s.sendall(payload)
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        lines = ["READY=1"]
        if status:
            lines.append(f"STATUS={status}")
        return self.send(*lines)

    def reloading(self, status: str | None = None) -> bool:
        """RELOADING=1 with MONOTONIC_USEC, as Type=notify-reload requires."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        lines = ["RELOADING=1", f"MONOTONIC_USEC={usec}"]
        if status:
            lines.append(f"STATUS={status}")
        return self.send(*lines)

    def stopping(self, status: str | None = None) -> bool:
        lines = ["STOPPING=1"]
        if status:
            lines.append(f"STATUS={status}")
        return self.send(*lines)

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None if not asked.

        systemd sets WATCHDOG_USEC (and WATCHDOG_PID) when the unit has WatchdogSec=; a
        ping that comes from the event loop proves the loop is not stuck.
        """
        if not self.address:
            return None
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        if not usec.isdigit() or int(usec) == 0:
            return None
        if pid and pid != str(os.getpid()):
            return None  # meant for another process (e.g. our parent)
        return int(usec) / 2_000_000
