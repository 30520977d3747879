"""Runs a vigil.bfd.runtime.BfdEngine inside a lab namespace: ``python -m tests.lab.bfd_driver``.

vigild does not run BFD yet (the BfdSubsystem will wrap this engine), so the lab drives the
engine itself, over its real UDP transport, from a process started with ``ip netns exec``
(see ``tests.lab.bfd.BfdAgent``). It reads one JSON command per line on stdin and writes
one JSON line per reply or event on stdout; logs go to stderr.

Commands (each with an ``id``, answered with ``{"reply": id, "ok": ..., ...}``):
``add {spec}``, ``update {spec}``, ``remove {spec}``, ``admin_down {spec, reason}``,
``admin_up {spec}``, ``snapshot`` (``sessions``: one dict per session), ``stats``, ``quit``.
A spec is a dict of SessionSpec fields; ``auth`` is ``{"type": "keyed_sha1", "keys":
[[id, "secret"], ...], "send_key_id": id}``.

Events: ``{"event": "ready"}``, and ``{"event": "state", "session": name, "time": t,
"from": .., "to": .., "diag": n, "reason": .., "log": line}`` for every transition.
``time`` is CLOCK_MONOTONIC (the loop's clock), the clock of the test process too.

Bounded: the driver exits on EOF, on ``quit``, on SIGTERM and after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from typing import Any

from vigil.bfd.auth import AuthConfig, AuthKey
from vigil.bfd.packet import AuthType
from vigil.bfd.runtime import BfdEngine, BfdEvent
from vigil.bfd.spec import SessionSpec

AUTH_TYPES = {t.name.lower(): t for t in AuthType}


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def spec_from(data: dict[str, Any]) -> SessionSpec:
    values = dict(data)
    auth = values.pop("auth", None)
    if auth is not None:
        keys = tuple(AuthKey(int(kid), str(secret).encode()) for kid, secret in auth["keys"])
        values["auth"] = AuthConfig(AUTH_TYPES[auth["type"]], keys, int(auth["send_key_id"]))
    return SessionSpec(**values)


class Driver:
    def __init__(self) -> None:
        self.engine = BfdEngine(on_state_change=self.on_state)
        self.done = asyncio.Event()

    def on_state(self, event: BfdEvent) -> None:
        emit({"event": "state", "session": event.name, **event.transition.to_dict(),
              "log": str(event)})  # fmt: skip

    def execute(self, cmd: dict[str, Any]) -> dict[str, Any]:
        op = cmd["op"]
        if op == "add":
            key = self.engine.add_session(spec_from(cmd["spec"]))
            return {"key": str(key)}
        if op == "update":
            self.engine.update_session(spec_from(cmd["spec"]))
            return {}
        if op == "remove":
            self.engine.remove_session(
                spec_from(cmd["spec"]).key, admin_down=cmd.get("admin_down", True)
            )
            return {}
        if op == "admin_down":
            self.engine.admin_down(spec_from(cmd["spec"]).key, cmd.get("reason", "test"))
            return {}
        if op == "admin_up":
            self.engine.admin_up(spec_from(cmd["spec"]).key)
            return {}
        if op == "snapshot":
            return {"sessions": [s.to_dict() for s in self.engine.snapshot()]}
        if op == "stats":
            return {"stats": self.engine.stats()}
        if op == "quit":
            self.done.set()
            return {}
        raise ValueError(f"unknown op {op!r}")

    def on_stdin(self, buffer: list[bytes]) -> None:
        chunk = sys.stdin.buffer.raw.read(65536)  # type: ignore[attr-defined]
        if not chunk:
            self.done.set()
            return
        buffer.append(chunk)
        lines = b"".join(buffer).split(b"\n")
        buffer[:] = [lines.pop()]
        for line in lines:
            if not line.strip():
                continue
            cmd = json.loads(line)
            try:
                reply = {"reply": cmd["id"], "ok": True, **self.execute(cmd)}
            except Exception as exc:
                reply = {"reply": cmd["id"], "ok": False, "error": f"{type(exc).__name__}: {exc}"}
            emit(reply)

    async def run(self, max_seconds: float) -> None:
        loop = asyncio.get_running_loop()
        buffer: list[bytes] = []
        loop.add_reader(sys.stdin.fileno(), self.on_stdin, buffer)
        loop.add_signal_handler(signal.SIGTERM, self.done.set)
        self.engine.start()
        emit({"event": "ready"})
        try:
            await asyncio.wait_for(self.done.wait(), timeout=max_seconds)
        except TimeoutError:
            logging.warning("bfd_driver: --max-seconds %s reached, exiting", max_seconds)
        finally:
            loop.remove_reader(sys.stdin.fileno())
            self.engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args()
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG,
        format="%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    asyncio.run(Driver().run(args.max_seconds))


if __name__ == "__main__":
    main()
