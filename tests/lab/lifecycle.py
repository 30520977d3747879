"""Make sure open labs are torn down however the test process ends.

pytest runs fixture finalizers on failures and on Ctrl-C (KeyboardInterrupt). For the
other ways out we add two backstops: an atexit hook that closes any lab still open, and a
SIGTERM/SIGHUP handler that turns the signal into KeyboardInterrupt, so the normal
finalizers run instead of the process dying with namespaces behind. A SIGKILLed run leaves
its resources in the registry, where ``python -m tests.lab.cleanup`` finds them.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .lab import Lab

__all__ = [
    "close_all",
    "install_signal_handlers",
    "open_labs",
    "register",
    "unregister",
]

_open: list[Lab] = []
_installed = False
_owner_pid = os.getpid()


def open_labs() -> list[Lab]:
    return list(_open)


def register(lab: Lab) -> None:
    _install_once()
    _open.append(lab)


def unregister(lab: Lab) -> None:
    with contextlib.suppress(ValueError):
        _open.remove(lab)


def close_all() -> list[str]:
    """Close every open lab; return the errors (teardown goes on past each one)."""
    errors = []
    for lab in reversed(list(_open)):
        try:
            lab.close()
        except Exception as exc:
            errors.append(f"{lab.lab_id}: {exc}")
    from .registry import current_run

    current_run().remove_if_empty()
    return errors


def _atexit() -> None:
    if os.getpid() != _owner_pid:
        return  # a forked child (pyroute2, multiprocessing) must not tear down our labs
    for err in close_all():
        print(f"vigil lab: teardown at exit: {err}", file=sys.stderr)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    # Restore the default first: a second signal ends the process even if teardown hangs.
    signal.signal(signum, signal.SIG_DFL)
    if os.getpid() != _owner_pid:
        # A forked child inherited this handler: die of the signal as it would have.
        os.kill(os.getpid(), signum)
        return
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def install_signal_handlers() -> None:
    """Route SIGTERM and SIGHUP through KeyboardInterrupt (main thread, default only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _on_signal)


def _install_once() -> None:
    global _installed, _owner_pid
    if _installed:
        return
    _installed = True
    _owner_pid = os.getpid()
    atexit.register(_atexit)
    install_signal_handlers()
