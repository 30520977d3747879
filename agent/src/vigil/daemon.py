"""vigild: the agent process.

`Agent` is the core that outlives reloads: it owns the running Config, the EventBus, the
metrics registry and the subsystems, and it is the only place a config is swapped (start,
SIGHUP, POST /v1/reload all end in `Agent.reload_from_file()`). `main()` is the
foreground process: parse arguments, lock the state dir, open the API socket, start the
subsystems, tell systemd, and wait for signals.

Start-up order matters to operators: the API answers (health 503, ready false) before the
subsystems start so a stuck start can be inspected; READY=1 goes to systemd only after
every subsystem started; on SIGTERM the subsystems stop first (VRRP sends priority 0 and
drops its VIPs) and the socket goes last.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import fcntl
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import prometheus_client

from vigil import __version__
from vigil.config import Config, ConfigError, check_command, diff_configs, load_config
from vigil.events import EventBus
from vigil.log import LEVELS, RateLimitedLog, set_level, setup_logging
from vigil.metrics import AgentMetrics, SubsystemCollector
from vigil.sdnotify import SdNotifier
from vigil.subsystem import StartError, Subsystem, SubsystemContext, SubsystemFactory

if TYPE_CHECKING:
    from vigil.vrrp.journal import Journal

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_SOCKET",
    "DEFAULT_STATE_DIR",
    "Agent",
    "ReloadResult",
    "StateDirError",
    "StateDirLock",
    "build_subsystem_factories",
    "main",
    "run_cleanup",
]

log = logging.getLogger("vigil.daemon")

DEFAULT_CONFIG = "/etc/vigil/vigil.yml"
DEFAULT_SOCKET = "/run/vigil/vigil.sock"
DEFAULT_STATE_DIR = "/var/lib/vigil"
LOCK_NAME = "vigild.lock"
#: A failed reload logs at most this many of its issues (all of them are in the event).
MAX_LOGGED_ISSUES = 20


def build_subsystem_factories() -> list[SubsystemFactory]:
    """The subsystems vigild runs: VRRP now; IPVS and BFD plug in here later."""
    from vigil.vrrp.runtime import factory as vrrp_factory

    return [vrrp_factory]


# --------------------------------------------------------------------------- state dir


class StateDirError(Exception):
    """The state dir cannot be used (permissions, or another agent holds it)."""


class StateDirLock:
    """An exclusive flock on STATE_DIR/vigild.lock, held for the agent's lifetime.

    Two agents sharing one state dir would fight over the journal and maintenance flags,
    so the second one refuses to start and names the first one's pid. flock is released
    by the kernel when the process dies, so a crashed agent never leaves a stale lock.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            if self.state_dir.stat().st_uid == os.geteuid():
                os.chmod(self.state_dir, 0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateDirError(
                f"cannot use state dir {self.state_dir}: {exc.strerror}; "
                "pass --state-dir or set global.state_dir"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            other = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                who = f"pid {other}" if other else "another process"
                raise StateDirError(
                    f"state dir {self.state_dir} is in use by another vigild ({who}); "
                    "give each agent its own --state-dir"
                ) from exc
            raise StateDirError(f"cannot lock {self.path}: {exc.strerror}") from exc
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:  # a full or read-only state dir: say so, never a traceback
            os.close(fd)
            raise StateDirError(
                f"cannot write to state dir {self.state_dir}: {exc.strerror}; the agent "
                "needs it writable (journal, maintenance flags): free space or fix it"
            ) from exc
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (harmless)
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- agent


@dataclass
class ReloadResult:
    """Outcome of one reload attempt, as the API and SIGHUP report it."""

    ok: bool
    changed: bool = False
    diff: dict[str, Any] = field(default_factory=dict)
    issues: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    #: HTTP status the API answers with: 200, 409 would stop every instance and was not
    #: confirmed, 422 invalid config, 500 apply failed, 503 not running (starting or stopping)
    code: int = 200

    def to_dict(self) -> dict[str, Any]:
        if self.ok:
            return {"changed": self.changed, "diff": self.diff}
        return {"error": self.error, "issues": self.issues}


class Agent:
    """The running agent: config, events, metrics and subsystems, across reloads."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: str,
        socket_path: str,
        state_dir: Path,
        factories: Sequence[SubsystemFactory] = (),
        notifier: SdNotifier | None = None,
        log_level_fixed: bool = False,
    ) -> None:
        self.config = config
        # router_id names this agent in metrics labels and the subsystems' context, which
        # are fixed at start: a reload changing it takes effect at the next restart.
        self._router_id = str(getattr(config.globals, "router_id", "") or socket.gethostname())
        self.config_path = config_path
        self.socket_path = socket_path
        self.state_dir = state_dir
        self.loaded_at = time.time()
        self.notifier = notifier or SdNotifier(address="")
        self.log_level_fixed = log_level_fixed
        self.phase = "starting"  # starting -> running -> stopping -> stopped
        self._started_mono = time.monotonic()
        self._reload_lock = asyncio.Lock()
        self.events = EventBus()
        self.metrics = AgentMetrics(router_id=self.router_id)
        self.events.listeners.append(self.metrics.count_event)
        ctx = SubsystemContext(
            events=self.events,
            registry=self.metrics.registry,
            state_dir=state_dir,
            router_id=self.router_id,
        )
        self.subsystems: list[Subsystem] = [factory(ctx) for factory in factories]
        self._running: list[Subsystem] = []
        self.metrics.add_collector(
            SubsystemCollector(lambda: [(s.name, s.collect_metrics) for s in self.subsystems])
        )
        self.metrics.degraded.set_function(lambda: 1.0 if self.ready and self.problems() else 0.0)

    # -- read side (the API uses these) -------------------------------------------

    @property
    def router_id(self) -> str:
        return self._router_id

    @property
    def ready(self) -> bool:
        return self.phase == "running"

    @property
    def uptime_s(self) -> float:
        return round(time.monotonic() - self._started_mono, 3)

    def problems(self) -> list[str]:
        """Why a running agent cannot fully do its job (subsystems' ``degraded()``)."""
        out: list[str] = []
        for sub in self.subsystems:
            degraded = getattr(sub, "degraded", None)
            if degraded is None:
                continue
            try:
                out.extend(str(p) for p in degraded())
            except Exception as exc:
                out.append(f"{sub.name}: cannot tell its health: {exc}")
        return out

    def health(self) -> dict[str, Any]:
        """Liveness and readiness; ``status`` is ``degraded`` (and ``problems`` says why)
        when a running agent cannot do its job, e.g. a master that cannot send adverts."""
        problems = self.problems() if self.ready else []
        body: dict[str, Any] = {
            "status": ("degraded" if problems else "ok") if self.ready else self.phase,
            "live": True,
            "ready": self.ready,
            "version": __version__,
            "router_id": self.router_id,
            "uptime_s": self.uptime_s,
            "pid": os.getpid(),
        }
        if problems:
            body["problems"] = problems
        return body

    def status(self) -> dict[str, Any]:
        subsystems: dict[str, Any] = {}
        reported: dict[str, dict[str, Any]] = {}
        for sub in self.subsystems:
            try:
                st = dict(sub.status())
            except Exception as exc:
                log.exception("status of subsystem %s failed", sub.name)
                st = {"error": str(exc)}
            for inst in st.pop("instances", None) or []:
                if isinstance(inst, dict) and "name" in inst:
                    reported[str(inst["name"])] = inst
            subsystems[sub.name] = st
        instances = [
            reported.pop(inst.name) if inst.name in reported else self._placeholder(inst)
            for inst in self.config.vrrp_instances
        ]
        instances.extend(reported.values())  # reported but not configured (e.g. stopping)
        return {
            "agent": {
                "router_id": self.router_id,
                "version": __version__,
                "pid": os.getpid(),
                "phase": self.phase,
                "ready": self.ready,
                "uptime_s": self.uptime_s,
                "config_source": self.config_path,
                "config_loaded_at": self.loaded_at,
                "socket": self.socket_path,
                "state_dir": str(self.state_dir),
                "last_event_seq": self.events.last_seq,
                "subsystems": subsystems,
            },
            "instances": instances,
        }

    @staticmethod
    def _placeholder(inst: Any) -> dict[str, Any]:
        """An instance no subsystem runs: its configured identity, state INIT.

        Same keys and shapes as the VRRP subsystem's view, so clients need one parser.
        """
        dev = inst.use_vmac or inst.interface

        def vip(v: Any) -> dict[str, Any]:
            return {"address": str(v.address), "dev": v.dev or dev, "present": False}

        return {
            "name": inst.name,
            "state": "INIT",
            "interface": inst.interface,
            "vrid": inst.vrid,
            "version": inst.version,
            "family": inst.family,
            "priority": inst.priority,
            "effective_priority": inst.priority,
            "master_address": None,
            "vips": [vip(v) for v in inst.vips],
            "excluded_vips": [vip(v) for v in inst.excluded_vips],
        }

    def config_view(self) -> dict[str, Any]:
        return {
            "source": self.config_path,
            "loaded_at": self.loaded_at,
            "config": self.config.to_dict(redact=True),
        }

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Start every subsystem in order; if one fails, stop those already started."""
        self.notifier.status("starting subsystems")
        for sub in self.subsystems:
            try:
                await sub.start(self.config)
            except Exception as exc:
                if isinstance(exc, StartError):
                    log.error("agent: subsystem %s cannot start: %s", sub.name, exc)
                else:
                    log.exception("agent: subsystem %s failed to start", sub.name)
                await self._stop_running()
                self.phase = "stopped"
                raise
            self._running.append(sub)
        self.phase = "running"
        self.metrics.up.set(1)
        self.metrics.last_reload.set(self.loaded_at)
        n = len(self.config.vrrp_instances)
        self.events.publish(
            "agent_started",
            message=f"started (router_id {self.router_id}, {n} VRRP instance(s), "
            f"config {self.config_path})",
            router_id=self.router_id,
            version=__version__,
            instances=n,
        )

    async def stop(self) -> None:
        """Stop subsystems in reverse order; every one gets its chance even if one fails."""
        if self.phase in ("stopping", "stopped"):
            return
        self.phase = "stopping"
        self.metrics.up.set(0)
        self.events.publish("agent_stopping", message="stopping")
        await self._stop_running()
        self.phase = "stopped"
        self.events.close()

    async def _stop_running(self) -> None:
        while self._running:
            sub = self._running.pop()
            try:
                await sub.stop()
            except Exception:
                log.exception("agent: subsystem %s failed to stop cleanly", sub.name)

    async def reload(self, new_config: Config) -> ReloadResult:
        """Apply an already validated config: subsystems get the diff, then we swap."""
        old = self.config
        diff = diff_configs(old, new_config)
        changed = (old != new_config) or not diff.empty
        if changed:
            for sub in self._running:
                await sub.apply(new_config, diff)
        self.config = new_config
        self.loaded_at = time.time()
        self._warn_restart_only(old, new_config)
        if not self.log_level_fixed:
            level = str(getattr(new_config.globals, "log_level", "info"))
            if level in LEVELS:
                set_level(level)
        self.metrics.reloads.labels("success").inc()
        self.metrics.last_reload.set(self.loaded_at)
        diff_dict = diff.to_dict()
        self.events.publish(
            "config_reloaded",
            message=f"config reloaded ({_diff_summary(diff) if changed else 'no changes'})",
            changed=changed,
            diff=diff_dict,
        )
        return ReloadResult(ok=True, changed=changed, diff=diff_dict)

    def _warn_restart_only(self, old: Config, new: Config) -> None:
        for key in ("socket", "state_dir", "router_id"):
            before = getattr(old.globals, key, None)
            after = getattr(new.globals, key, None)
            if before != after:
                log.warning(
                    "agent: global.%s changed from %r to %r; it takes effect at the next "
                    "restart of vigild",
                    key,
                    before,
                    after,
                )

    async def reload_from_file(self, *, confirm_stop_all: bool = False) -> ReloadResult:
        """Reread the configured file; on any problem keep running the old config.

        Used by SIGHUP and POST /v1/reload. Reloads are serialized. A reload that would
        stop every running instance (none of them is in the new file) is refused with 409
        unless ``confirm_stop_all`` (the API's ``confirm_stop_all``, ``vigilctl reload
        --confirm-stop-all``; SIGHUP cannot confirm).
        """
        if self.phase != "running":
            log.warning("agent: reload refused: the agent is %s", self.phase)
            return ReloadResult(
                ok=False,
                error=f"the agent is {self.phase}; reload when it is ready (GET /v1/health)",
                code=503,
            )
        async with self._reload_lock:
            self.notifier.reloading(f"reloading {self.config_path}")
            try:
                return await self._reload_from_file(confirm_stop_all)
            finally:
                self.notifier.ready(self._status_line())

    async def _reload_from_file(self, confirm_stop_all: bool) -> ReloadResult:
        try:
            new_config = await asyncio.to_thread(load_config, self.config_path)
        except ConfigError as exc:
            issues = [issue.to_dict() for issue in exc.issues]
            for issue in exc.issues[:MAX_LOGGED_ISSUES]:
                log.warning("agent: reload: %s", issue)
            if len(exc.issues) > MAX_LOGGED_ISSUES:
                log.warning(
                    "agent: reload: ... and %d more issue(s); see vigild --check",
                    len(exc.issues) - MAX_LOGGED_ISSUES,
                )
            return self._reload_failed(
                "config is invalid; the running config is unchanged", issues, 422
            )
        except Exception as exc:  # a loader bug: one line, the same failure path
            log.error("agent: reload: cannot load %s: %r", self.config_path, exc)
            problem = {"path": "", "message": f"cannot load the config: {exc!r}", "line": None}
            return self._reload_failed(
                "config could not be loaded; the running config is unchanged", [problem], 422
            )
        stopped = self._stops_everything(new_config)
        if stopped and not confirm_stop_all:
            names = ", ".join(stopped)
            message = (
                f"this reload would stop every running instance ({names}) and start none of "
                "them again; the running config is unchanged. If that is what you want, "
                "confirm it: vigilctl reload --confirm-stop-all (POST /v1/reload with "
                '{"confirm_stop_all": true}); SIGHUP cannot confirm'
            )
            log.warning("agent: reload refused: %s", message)
            refusal = {"path": "vrrp_instances", "message": message, "line": None}
            return self._reload_failed(message, [refusal], 409)
        try:
            return await self.reload(new_config)
        except Exception as exc:
            log.exception("agent: applying the new config failed")
            return self._reload_failed(
                f"applying the new config failed: {exc}; see the vigild log", [], 500
            )

    def _stops_everything(self, new: Config) -> list[str]:
        """Names of the running instances if the new config keeps none of them, else []."""
        running = [inst.name for inst in self.config.vrrp_instances]
        keep = {inst.name for inst in new.vrrp_instances}
        return [] if not running or keep.intersection(running) else running

    def _reload_failed(self, message: str, issues: list[dict[str, Any]], code: int) -> ReloadResult:
        self.metrics.reloads.labels("failure").inc()
        self.events.publish(
            "reload_failed",
            message=f"config reload failed: {message} ({len(issues)} issue(s))",
            issues=issues,
        )
        return ReloadResult(ok=False, issues=issues, error=message, code=code)

    def _status_line(self) -> str:
        return (
            f"running: router_id {self.router_id}, "
            f"{len(self.config.vrrp_instances)} VRRP instance(s)"
        )


def _diff_summary(diff: Any) -> str:
    parts = []
    for name in ("added", "removed", "changed"):
        items = list(getattr(diff, name, ()) or ())
        if items:
            parts.append(f"{name}: {', '.join(map(str, items))}")
    if getattr(diff, "globals_changed", False):
        parts.append("globals changed")
    return "; ".join(parts) or "settings changed"


# --------------------------------------------------------------------------- process


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vigild",
        description="vigil agent: VRRP virtual-IP failover with a local state/control API.",
    )
    p.add_argument(
        "--config", "-c", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})"
    )
    p.add_argument("--socket", help="API socket path (default: global.socket of the config)")
    p.add_argument("--state-dir", help="state directory (default: global.state_dir)")
    p.add_argument(
        "--log-level", choices=sorted(LEVELS), help="log level (default: global.log_level)"
    )
    p.add_argument(
        "--api-allow-uid",
        action="append",
        type=_uid,
        default=[],
        metavar="UID",
        help="also allow this uid on the API socket (root always may); repeatable",
    )
    p.add_argument("--check", action="store_true", help="validate the config and exit")
    p.add_argument(
        "--cleanup",
        action="store_true",
        help="remove the VIPs and routes the state journal records (what a crashed vigild "
        "left behind) and exit; for systemd's ExecStopPost (uses --state-dir, default "
        f"{DEFAULT_STATE_DIR}; the config is not read)",
    )
    p.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="output format of --check (default text)",
    )
    p.add_argument("--version", action="version", version=f"vigild {__version__}")
    return p


def _uid(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--api-allow-uid: {text!r} is not a numeric uid (see `id -u USER`)"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError("--api-allow-uid: a uid cannot be negative")
    return value


def run_check(path: str, fmt: str, out: TextIO) -> int:
    """`vigild --check`: vigil.config.check_command prints the verdict; 0 valid, 1 not."""
    return int(check_command(path, fmt, out))


def run_cleanup(state_dir: Path, out: TextIO, *, netns: str | None = None) -> int:
    """`vigild --cleanup`: remove what the journal in STATE_DIR says an agent put in the kernel.

    Why: systemd runs this as ExecStopPost, after vigild exited for any reason. A clean stop
    has already removed its VIPs (the journal is empty and this is a no-op); after a crash
    (SIGKILL, OOM, a bug) the VIPs would otherwise stay on this node while the peer takes
    over, and two nodes would answer for one address until the agent comes back. The
    config is deliberately not read: a broken config must not stop the clean-up.

    The state dir lock is taken first, so a running agent's VIPs are never touched. What
    cannot be removed stays in the journal (the next start or clean-up retries it) and the
    exit status is 1; otherwise 0.
    """
    from vigil.vrrp.journal import Journal

    if not state_dir.is_dir():
        print(f"vigild --cleanup: nothing to clean up: {state_dir} does not exist", file=out)
        return 0
    lock = StateDirLock(state_dir)
    try:
        lock.acquire()
    except StateDirError as exc:
        print(f"vigild --cleanup: refusing: {exc}", file=out)
        return 1
    try:
        journal = Journal(state_dir)
        if not journal.load():
            print(f"vigild --cleanup: nothing to clean up in {journal.path}", file=out)
            return 0
        try:
            return asyncio.run(_cleanup_journal(journal, out, netns))
        except OSError as exc:  # netlink itself unusable (e.g. no such netns)
            print(f"vigild --cleanup: cannot open netlink: {exc}", file=out)
            return 1
    finally:
        lock.release()


async def _cleanup_journal(journal: Journal, out: TextIO, netns: str | None) -> int:
    """Remove every journalled route, then every address; keep what failed in the journal."""
    from vigil.net.netlink import Netlink, NetlinkFailure
    from vigil.vrrp.journal import JournalEntry

    failed: dict[str, JournalEntry] = {}
    async with Netlink(netns) as nl:
        for name, entry in sorted(journal.entries.items()):
            left = JournalEntry()
            for route in entry.routes:
                try:
                    gone = await nl.del_route(route)
                    verb = "removed" if gone else "already gone:"
                    print(f"vigild --cleanup: ({name}) {verb} route {route}", file=out)
                except NetlinkFailure as exc:
                    print(f"vigild --cleanup: ({name}) {exc}", file=out)
                    left.routes.append(route)
            for dev, addr in entry.addresses:
                try:
                    gone = await nl.del_address(dev, addr)
                    verb = "removed" if gone else "already gone:"
                    print(f"vigild --cleanup: ({name}) {verb} VIP {addr} on {dev}", file=out)
                except NetlinkFailure as exc:
                    print(f"vigild --cleanup: ({name}) {exc}", file=out)
                    left.addresses.append((dev, addr))
            if left.addresses or left.routes:
                failed[name] = left
    journal.clear()
    for name, left in failed.items():
        journal.record(name, left)
    journal.flush()  # now: the loop ends with this function
    if failed:
        print(
            "vigild --cleanup: some entries could not be removed and stay in "
            f"{journal.path}; the next start of vigild retries them",
            file=out,
        )
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.check:
        return run_check(args.config, args.format, sys.stdout)
    if args.cleanup:
        return run_cleanup(Path(args.state_dir or DEFAULT_STATE_DIR), sys.stdout)
    setup_logging(args.log_level or "info")
    # *_created series double every counter's output and nobody alerts on them.
    prometheus_client.disable_created_metrics()
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        log.error("agent: config %s is invalid (%d issue(s)):", args.config, len(exc.issues))
        for issue in exc.issues:
            log.error("  %s", issue)
        return 1
    except OSError as exc:
        log.error("agent: cannot read config %s: %s", args.config, exc.strerror or exc)
        return 1
    except Exception as exc:  # a loader bug: a clear line and exit 1, not a traceback
        log.error("agent: cannot load config %s: %r", args.config, exc)
        return 1
    if not args.log_level:
        set_level(str(getattr(config.globals, "log_level", "info")))
    socket_path = args.socket or getattr(config.globals, "socket", None) or DEFAULT_SOCKET
    state_dir = Path(
        args.state_dir or getattr(config.globals, "state_dir", None) or DEFAULT_STATE_DIR
    )
    lock = StateDirLock(state_dir)
    try:
        lock.acquire()
    except StateDirError as exc:
        log.error("agent: %s", exc)
        return 1
    try:
        return asyncio.run(
            _serve(
                config,
                config_path=args.config,
                socket_path=socket_path,
                state_dir=state_dir,
                allowed_uids=frozenset(args.api_allow_uid),
                log_level_fixed=bool(args.log_level),
            )
        )
    finally:
        lock.release()


async def _serve(
    config: Config,
    *,
    config_path: str,
    socket_path: str,
    state_dir: Path,
    allowed_uids: frozenset[int],
    log_level_fixed: bool,
) -> int:
    from vigil.api.server import ApiServer, SocketInUse

    notifier = SdNotifier()
    agent = Agent(
        config,
        config_path=os.path.abspath(config_path),
        socket_path=socket_path,
        state_dir=state_dir,
        factories=build_subsystem_factories(),
        notifier=notifier,
        log_level_fixed=log_level_fixed,
    )
    server = ApiServer(agent, socket_path, allowed_uids=allowed_uids)
    try:
        await server.start()
    except (SocketInUse, OSError) as exc:
        log.error("agent: cannot open the API socket %s: %s", socket_path, exc)
        return 1
    log.info("agent: API listening on %s", socket_path)

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_on_loop_exception)
    stop = asyncio.Event()
    background: set[asyncio.Task[Any]] = set()  # background tasks cancelled at stop

    def on_stop(signame: str) -> None:
        if not stop.is_set():
            log.info("agent: %s received, shutting down", signame)
        stop.set()

    def on_hup() -> None:
        log.info("agent: SIGHUP received, reloading %s", agent.config_path)
        task = loop.create_task(agent.reload_from_file())
        background.add(task)
        task.add_done_callback(background.discard)

    loop.add_signal_handler(signal.SIGTERM, on_stop, "SIGTERM")
    loop.add_signal_handler(signal.SIGINT, on_stop, "SIGINT")
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    rc = 0
    try:
        try:
            await agent.start()
        except Exception as exc:
            log.error("agent: start-up failed: %s", exc)
            rc = 1
        else:
            notifier.ready(agent._status_line())
            interval = notifier.watchdog_interval()
            if interval is not None:
                log.info("agent: systemd watchdog: pinging every %.3gs", interval)
                watchdog = loop.create_task(_watchdog(notifier, interval))
                background.add(watchdog)
            await stop.wait()
    finally:
        notifier.stopping("stopping")
        for task in list(background):
            task.cancel()
        await agent.stop()
        await server.stop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        log.info("agent: stopped")
    return rc


_loop_log = RateLimitedLog(log)


def _on_loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's own complaints, one line per kind and burst (out of descriptors, asyncio
    retries accept() every second and would log a traceback each time)."""
    message = str(context.get("message") or "unhandled error")
    exc = context.get("exception")
    _loop_log.error(message, "agent: asyncio: %s: %r", message, exc)


async def _watchdog(notifier: SdNotifier, interval: float) -> None:
    """WATCHDOG=1 from the event loop itself: it stops if the loop stalls."""
    while True:
        notifier.watchdog()
        await asyncio.sleep(interval)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
