"""Verified runtime control of BFD sessions: shutdown and enable (``POST /v1/bfd/...``).

Each action returns once its effect is observed, or fails with what was seen:
``shutdown`` when the session is AdminDown here and (if it was talking to its peer) the
peer has answered that it went Down; ``enable`` when the session left AdminDown and,
unless told not to wait, is Up again. A shutdown is saved in ``STATE_DIR/bfd-control.json``
before it is made, so it survives an agent restart; an enable removes it again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

__all__ = ["CONTROL_FILE", "MAX_WAIT", "BfdControl", "ControlError", "ControlHost"]

log = logging.getLogger("vigil.bfd")

#: runtime shutdowns (``vigilctl bfd shutdown``) survive a restart in this file
CONTROL_FILE = "bfd-control.json"
#: the longest a caller may ask an action to wait (seconds)
MAX_WAIT = 600.0


class ControlHost(Protocol):
    """What control needs of the BFD subsystem."""

    def view(self, name: str) -> dict[str, Any]: ...

    def admin_down(self, name: str) -> None: ...

    def admin_up(self, name: str) -> None: ...

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool: ...


class ControlError(Exception):
    """A control action failed: the HTTP status, a message, and what was observed."""

    def __init__(self, status: int, message: str, **data: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.data = data


class BfdControl:
    """Verified shutdown / enable of sessions (``POST /v1/bfd/sessions/NAME/...``).

    Each returns once its effect is observed: ``shutdown`` when the session is AdminDown
    here and (if it was talking to its peer) the peer has answered that it went Down;
    ``enable`` when the session left AdminDown and, unless told not to wait, is Up again.
    A timeout answers 504 with what was seen. Shutdowns are saved before they are made.
    """

    def __init__(self, sub: ControlHost, state_dir: str | os.PathLike[str]) -> None:
        self.sub = sub
        self.path = Path(state_dir) / CONTROL_FILE
        self.shutdown: set[str] = set()

    def load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("bfd: cannot read %s (%s); no session is shut down from it", self.path, exc)
            return
        names = data.get("shutdown") if isinstance(data, dict) else None
        if isinstance(names, list):
            self.shutdown = {n for n in names if isinstance(n, str)}

    def _save(self, names: set[str]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"shutdown": sorted(names)}) + "\n")
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise ControlError(
                503,
                f"cannot save the session's admin state to {self.path}: {exc.strerror}; "
                "nothing was changed",
            ) from None
        self.shutdown = names

    def forget(self, names: Iterable[str]) -> None:
        """Sessions that left the config: their saved shutdown goes too."""
        gone = self.shutdown & set(names)
        if gone:
            with contextlib.suppress(ControlError):
                self._save(self.shutdown - gone)

    async def shutdown_session(self, name: str, timeout: float | None) -> dict[str, Any]:
        sub = self.sub
        before = sub.view(name)
        started = time.monotonic()
        was_up = before["state"] in ("Up", "Init")
        self._save(self.shutdown | {name})
        sub.admin_down(name)
        wait = timeout if timeout is not None else 3.0

        def acknowledged() -> bool:
            view = sub.view(name)
            return view["state"] == "AdminDown" and (
                not was_up or view["remote_state"] in ("Down", "AdminDown")
            )

        acked = await sub.wait_until(acknowledged, wait)
        after = sub.view(name)
        if after["state"] != "AdminDown":  # pragma: no cover - admin_down is synchronous
            raise ControlError(
                504, f"session {name} is not AdminDown", observed=_snap(after), session=name
            )
        message = "shut down"
        if was_up:
            message += (
                "; the peer answered Down"
                if acked
                else f"; the peer did not answer within {wait:g}s (remote state "
                f"{after['remote_state']})"
            )
        return _result(name, message, before, after, started, peer_acknowledged=acked)

    async def enable_session(
        self, name: str, timeout: float | None, wait_up: bool
    ) -> dict[str, Any]:
        sub = self.sub
        before = sub.view(name)
        started = time.monotonic()
        if name in self.shutdown:
            self._save(self.shutdown - {name})
        sub.admin_up(name)
        if not wait_up:
            after = sub.view(name)
            return _result(name, "enabled", before, after, started)
        wait = timeout if timeout is not None else 10.0
        up = await sub.wait_until(lambda: sub.view(name)["state"] == "Up", wait)
        after = sub.view(name)
        if not up:
            raise ControlError(
                504,
                f"session {name} is enabled but not Up after {wait:g}s: {after['state']}, "
                f"remote {after['remote_state']} (is the peer configured and reachable?)",
                observed=_snap(after),
                session=name,
            )
        return _result(name, "enabled and Up", before, after, started)


def _snap(view: dict[str, Any]) -> dict[str, Any]:
    return {
        "state": view.get("state"),
        "remote_state": view.get("remote_state"),
        "local_diag_text": view.get("local_diag_text"),
        "remote_diag_text": view.get("remote_diag_text"),
    }


def _result(
    name: str,
    message: str,
    before: dict[str, Any],
    after: dict[str, Any],
    started: float,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "session": name,
        "message": message,
        "before": _snap(before),
        "after": _snap(after),
        "elapsed_s": round(time.monotonic() - started, 4),
        **extra,
    }
