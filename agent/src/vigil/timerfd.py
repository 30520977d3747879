"""A one-shot event-loop timer that fires on time, to the tens of microseconds.

asyncio's ``call_at`` waits in ``epoll_wait``, whose timeout is whole milliseconds rounded
up, so a handle runs 0-1 ms after its deadline (0.75 ms median measured here). For the
VRRP Master_Down timer that lateness is added to every failover. :class:`PreciseTimer`
arms a Linux ``timerfd`` on CLOCK_MONOTONIC (the clock ``loop.time()`` reads) at the
absolute deadline and lets the loop watch its descriptor, so the callback runs when the
kernel's timer expires. Where timerfd is unavailable it falls back to ``call_at``.

Re-arming costs nothing extra: a backup moves its Master_Down deadline on every advert it
receives, so the timer waits with a plain ``call_at`` until :data:`LEAD` seconds before
the deadline and only then arms the timerfd (one system call per expiry, none per
re-arm). ``arm(when, precise=False)`` is a plain ``call_at`` (a master's advert timer,
where a millisecond does not matter).

An optional ``on_lead`` callback runs at that lead before a precise deadline (also with
the ``call_at`` fallback, and at once for a deadline armed inside the lead): the one
moment a backup knows its Master_Down timer is about to expire, used to get the takeover's
packets ready so that the deadline itself only sends them.

``lead=False`` arms the timerfd at once for every precise deadline (one
``timerfd_settime`` per re-arm, no ``call_at`` step): for a timer that is re-armed about
once per expiry anyway (the BFD engine's one timer for all its sessions), where the lead
would only add a wake-up per deadline.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC
_TFD_TIMER_ABSTIME = 1

#: How long before a precise deadline the timerfd takes over from ``call_at`` (which may
#: itself wake a millisecond or more late on a busy machine).
LEAD = 0.005


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _load_libc() -> ctypes.CDLL | None:
    if time.get_clock_info("monotonic").implementation != "clock_gettime(CLOCK_MONOTONIC)":
        return None  # loop.time() would not be the clock a timerfd counts on
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.timerfd_create.restype = ctypes.c_int
        libc.timerfd_settime.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(_Itimerspec),
            ctypes.POINTER(_Itimerspec),
        ]
        libc.timerfd_settime.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


_libc = _load_libc()


def available() -> bool:
    """True if timers here use a timerfd (else they fall back to ``call_at``)."""
    return _libc is not None


class PreciseTimer:
    """One re-armable one-shot timer calling ``callback()`` at a ``loop.time()`` deadline.

    ``arm(when)`` replaces any earlier deadline; ``cancel()`` disarms; ``close()`` releases
    the descriptor (the timer cannot be armed afterwards). Not thread-safe: use it from the
    loop's thread, like the loop itself.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        callback: Callable[[], None],
        *,
        on_lead: Callable[[], None] | None = None,
        lead: bool = True,
    ) -> None:
        self._loop = loop
        self._callback = callback
        self._on_lead = on_lead
        self._use_lead = lead
        self._when: float | None = None
        self._precise = True
        self._handle: asyncio.TimerHandle | None = None
        self._fd_armed = False
        self._fd = -1
        self._closed = False
        self._spec = _Itimerspec()  # reused by every timerfd_settime
        if _libc is not None:
            fd = _libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
            if fd >= 0:
                self._fd = fd
                loop.add_reader(fd, self._on_readable)
            else:
                err = ctypes.get_errno()
                log.debug("timerfd_create failed (%s); using call_at", os.strerror(err))

    @property
    def when(self) -> float | None:
        """The armed deadline (``loop.time()`` seconds), or None if not armed."""
        return self._when

    @property
    def uses_timerfd(self) -> bool:
        return self._fd >= 0

    def arm(self, when: float, *, precise: bool = True) -> None:
        """Call back at ``when`` (``loop.time()`` seconds), replacing any earlier deadline."""
        if self._closed:
            raise RuntimeError("PreciseTimer is closed")
        if when == self._when and precise == self._precise:
            return
        self._when, self._precise = when, precise
        if precise and not self._use_lead and self._fd >= 0:
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None
            self._arm_fd(when)  # replaces any armed expiry: one system call
            return
        self._disarm()
        if not precise:
            self._handle = self._loop.call_at(when, self._fire)
        elif when - LEAD <= self._loop.time():
            self._lead_then_arm(when)
        else:
            self._handle = self._loop.call_at(when - LEAD, self._lead)

    def cancel(self) -> None:
        self._when = None
        self._disarm()

    def close(self) -> None:
        if self._closed:
            return
        self.cancel()
        self._closed = True
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1

    def _disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._fd_armed:
            self._settime(None)
            self._fd_armed = False

    def _lead(self) -> None:
        self._handle = None
        if self._when is not None:
            self._lead_then_arm(self._when)

    def _lead_then_arm(self, when: float) -> None:
        """Run ``on_lead``, then arm the timerfd unless the callback re-armed or cancelled.

        ``on_lead`` is a preparation: its failure is logged and never stops the timer.
        """
        if self._on_lead is not None:
            try:
                self._on_lead()
            except Exception:
                log.exception("timer lead callback %r failed", self._on_lead)
            if self._when != when or self._handle is not None or self._fd_armed:
                return
        if self._fd >= 0:
            self._arm_fd(when)
        else:
            self._handle = self._loop.call_at(when, self._fire)

    def _arm_fd(self, when: float) -> None:
        self._settime(when)
        self._fd_armed = True

    def _settime(self, when: float | None) -> None:
        spec = self._spec
        if when is None:
            spec.it_value.tv_sec = spec.it_value.tv_nsec = 0
        else:
            # A zero it_value disarms, so a deadline at or before 0 becomes 1 ns.
            ns = max(1, int(when * 1_000_000_000))
            spec.it_value.tv_sec, spec.it_value.tv_nsec = divmod(ns, 1_000_000_000)
        assert _libc is not None
        if _libc.timerfd_settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_settime: {os.strerror(err)}")

    def _on_readable(self) -> None:
        try:
            os.read(self._fd, 8)  # the expiry count; reading it clears the readiness
        except BlockingIOError:
            return  # re-armed or cancelled after it expired: nothing is due
        self._fd_armed = False
        self._fire()

    def _fire(self) -> None:
        self._handle = None
        if self._when is None:
            return
        self._when = None
        self._callback()
