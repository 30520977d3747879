"""vigild: the agent process.

`main()` is the foreground process: parse arguments, lock the state dir, open the API
socket, start the :class:`~vigil.agent.Agent` (the core: config, events, metrics, shared
services and subsystems), tell systemd, and wait for signals. ``--check`` validates a
config and ``--cleanup`` removes what a crashed agent left in the kernel, both through
the subsystems listed in :mod:`vigil.subsystems`.

Start-up order matters to operators: the API answers (health 503, ready false) before the
subsystems start so a stuck start can be inspected; READY=1 goes to systemd only after
every subsystem started; on SIGTERM the subsystems stop first (VRRP sends priority 0 and
drops its VIPs) and the socket goes last.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from vigil.lean import lazy_modules, lean_packages, no_system_mime_types

# Before anything imports pyroute2 or aiohttp: the agent process loads only the parts of
# them it uses (see vigil.lean). A library user's ``import vigil`` changes nothing.
lean_packages()
lazy_modules()
no_system_mime_types()

from prometheus_client.metrics import disable_created_metrics  # noqa: E402

from vigil import __version__, subsystems  # noqa: E402
from vigil.agent import Agent, ReloadResult  # noqa: E402
from vigil.config import Config, ConfigError  # noqa: E402
from vigil.journal import CleanupReport, JournalNamespace, JournalWriteError  # noqa: E402
from vigil.log import LEVELS, RateLimitedLog, set_level, setup_logging  # noqa: E402
from vigil.looplag import new_event_loop  # noqa: E402
from vigil.sdnotify import SdNotifier  # noqa: E402
from vigil.statedir import (  # noqa: E402
    DEFAULT_CONFIG,
    DEFAULT_SOCKET,
    DEFAULT_STATE_DIR,
    StateDirError,
    StateDirLock,
)

if TYPE_CHECKING:  # (vigil.faststart imports this module: no cycle at run time)
    from vigil.faststart import FastStart

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_SOCKET",
    "DEFAULT_STATE_DIR",
    "Agent",
    "ReloadResult",
    "StateDirError",
    "StateDirLock",
    "main",
    "run_cleanup",
]

log = logging.getLogger("vigil.daemon")

# --------------------------------------------------------------------------- process


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vigild",
        description="vigil agent: VRRP virtual-IP failover, IPVS and BFD, with a local "
        "state/control API.",
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
    p.add_argument(
        "--metrics-listen",
        metavar="ADDR:PORT",
        help="also serve GET /metrics (read-only, nothing else) over TCP for Prometheus: "
        "10.0.0.11:9650, [fd00::11]:9650 or :9650 (default: off; the API stays on the socket)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="validate the config and exit; with --state-dir, also leave that config's IPVS "
        "start plan there, so that its first start programs IPVS before reading the config",
    )
    p.add_argument(
        "--cleanup",
        action="store_true",
        help="remove what the state journal records (the VIPs, routes and other kernel state a "
        "crashed vigild left behind) and exit; for systemd's ExecStopPost (uses --state-dir, "
        f"default {DEFAULT_STATE_DIR}; the config is not read)",
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


def run_check(
    path: str, fmt: str, out: TextIO, *, state_dir: str | None = None,
    notes: TextIO | None = None,
) -> int:  # fmt: skip
    """`vigild --check`: every section validates; the verdict is printed; 0 valid, 1 not.
    With ``--state-dir`` (``state_dir``), a valid config is also prepared for its start in
    that state dir (the IPVS start plan; see subsystems.prepare), and what failed there is
    said on ``notes``. Without it the check writes nothing anywhere."""
    return int(subsystems.check_command(path, fmt, out, state_dir=state_dir, notes=notes))


def run_cleanup(state_dir: Path, out: TextIO, *, netns: str | None = None) -> int:
    """`vigild --cleanup`: remove what the journal in STATE_DIR says an agent put in the kernel.

    Why: systemd runs this as ExecStopPost, after vigild exited for any reason. A clean stop
    has already removed its VIPs (the journal is empty and this is a no-op); after a crash
    (SIGKILL, OOM, a bug) the VIPs would otherwise stay on this node while the peer takes
    over, and two nodes would answer for one address until the agent comes back. The
    config is deliberately not read: a broken config must not stop the clean-up. Each
    subsystem's clean-up hook runs on its own journal namespace, the same hook the agent
    runs at start-up.

    The state dir lock is taken first, so a running agent's state is never touched. What
    cannot be removed stays in the journal (the next start or clean-up retries it) and the
    exit status is 1; otherwise 0.
    """
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
        work: list[tuple[Any, JournalNamespace, Any]] = []
        for spec in subsystems.specs():
            hook = spec.load_cleanup()
            if hook is None:
                continue
            ns = JournalNamespace(state_dir, spec.name)
            if ns.load():
                work.append((spec, ns, hook))
        if not work:
            print(f"vigild --cleanup: nothing to clean up in {state_dir}", file=out)
            return 0
        try:
            return asyncio.run(_cleanup(work, out, netns))
        except OSError as exc:  # netlink itself unusable (e.g. no such netns)
            print(f"vigild --cleanup: cannot open netlink: {exc}", file=out)
            return 1
    finally:
        lock.release()


async def _cleanup(
    work: list[tuple[Any, JournalNamespace, Any]], out: TextIO, netns: str | None
) -> int:
    failures = 0
    for spec, ns, hook in work:

        def emit(kind: str, key: str | None, message: str, data: dict[str, Any]) -> None:
            print(f"vigild --cleanup: ({key}) {message}", file=out)

        report = CleanupReport(spec.name, emit)
        await hook(ns, report, netns)
        failures += report.failures
        try:
            ns.flush()  # now: the loop ends with this function
        except JournalWriteError as exc:
            print(f"vigild --cleanup: {exc}", file=out)
            failures += 1
        if report.failures:
            print(
                "vigild --cleanup: some entries could not be removed and stay in "
                f"{ns.path}; the next start of vigild retries them",
                file=out,
            )
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None, *, early: FastStart | None = None) -> int:
    """The agent process. ``early``: what :mod:`vigil.faststart` (the ``vigild`` command)
    did before this module was imported; the agent takes over its state-dir lock."""
    try:
        args = build_parser().parse_args(argv)
        code = _main(args, early)
    except SystemExit:  # a bad argument (argparse said which): not starting
        if early is not None:
            print(f"vigild: {early.undo()}", file=sys.stderr)
        raise
    except subsystems.RegistryError as exc:
        print(f"vigild: {exc}; check {subsystems.PLUGINS_ENV}", file=sys.stderr)
        code = _refuse(early)
    finally:
        if early is not None:
            early.lock.release()  # (released once: the agent ran or refused to)
    return code


def _refuse(early: FastStart | None) -> int:
    """The agent is not starting: take back what the start plan added."""
    if early is not None:
        log.warning("agent: %s", early.undo())
    return 1


def _main(args: argparse.Namespace, early: FastStart | None = None) -> int:
    if args.check:
        return run_check(
            args.config, args.format, sys.stdout, state_dir=args.state_dir, notes=sys.stderr
        )
    if args.cleanup:
        return run_cleanup(Path(args.state_dir or DEFAULT_STATE_DIR), sys.stdout)
    setup_logging(args.log_level or "info")
    if early is not None:
        log.info("agent: %s", early.describe())
    metrics_listen: tuple[str, int] | None = None
    if args.metrics_listen:
        from vigil.api.metrics_http import parse_listen

        try:
            metrics_listen = parse_listen(args.metrics_listen)
        except ValueError as exc:
            log.error("agent: %s", exc)
            _refuse(early)
            return 2
    # *_created series double every counter's output and nobody alerts on them.
    disable_created_metrics()
    try:
        config = subsystems.load_config(args.config)
    except ConfigError as exc:
        log.error("agent: config %s is invalid (%d issue(s)):", args.config, len(exc.issues))
        for issue in exc.issues:
            log.error("  %s", issue)
        return _refuse(early)
    except OSError as exc:
        log.error("agent: cannot read config %s: %s", args.config, exc.strerror or exc)
        return _refuse(early)
    except Exception as exc:  # a loader bug: a clear line and exit 1, not a traceback
        log.error("agent: cannot load config %s: %r", args.config, exc)
        return _refuse(early)
    if not args.log_level:
        set_level(str(getattr(config.globals, "log_level", "info")))
    socket_path = args.socket or getattr(config.globals, "socket", None) or DEFAULT_SOCKET
    state_dir = Path(
        args.state_dir or getattr(config.globals, "state_dir", None) or DEFAULT_STATE_DIR
    )
    if early is not None and Path(early.state_dir) == state_dir:
        lock = early.lock  # the start plan's: already held
    else:
        if early is not None:  # the config moved the state dir: the plan was not for it
            _refuse(early)
            early.lock.release()
        lock = StateDirLock(state_dir)
        try:
            lock.acquire()
        except StateDirError as exc:
            log.error("agent: %s", exc)
            return 1
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            return runner.run(
                _serve(
                    config,
                    config_path=args.config,
                    socket_path=socket_path,
                    state_dir=state_dir,
                    allowed_uids=frozenset(args.api_allow_uid),
                    log_level_fixed=bool(args.log_level),
                    metrics_listen=metrics_listen,
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
    metrics_listen: tuple[str, int] | None = None,
) -> int:
    from vigil.api.metrics_http import MetricsServer
    from vigil.api.server import ApiServer, SocketInUse

    notifier = SdNotifier()
    agent = Agent(
        config,
        config_path=os.path.abspath(config_path),
        socket_path=socket_path,
        state_dir=state_dir,
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
    metrics_server: MetricsServer | None = None
    if metrics_listen is not None:
        metrics_server = MetricsServer(agent, *metrics_listen)
        try:
            await metrics_server.start()
        except OSError as exc:
            log.error(
                "agent: cannot listen for metrics on %s port %d: %s",
                metrics_listen[0] or "every address",
                metrics_listen[1],
                exc,
            )
            await server.stop()
            return 1
        log.info(
            "agent: metrics (GET /metrics only) on %s port %d",
            metrics_listen[0] or "every address",
            metrics_listen[1],
        )

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
            notifier.ready(agent.status_line())
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
        if metrics_server is not None:
            await metrics_server.stop()
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
