"""Notify scripts: run the operator's commands on state changes, in order, bounded in time.

keepalived runs ``notify_master`` / ``notify_backup`` / ``notify_fault`` / ``notify_stop``
and then the generic ``notify`` script on every transition, the generic one with four
arguments appended: ``INSTANCE NAME STATE PRIORITY`` for an instance (the effective
priority) and ``GROUP NAME STATE 0`` for a sync group (a group has no priority, so it is
always 0). ``STATE`` is ``MASTER``, ``BACKUP``, ``FAULT`` or ``STOP``. vigil keeps those
conventions so existing scripts work unchanged, and fixes what keepalived users fight
with: its scripts are started in parallel and may finish in any order, so a fast
BACKUP -> MASTER -> BACKUP flap can leave a service in the wrong state.

Here every instance (and every sync group) has its own queue: a command starts only when
the previous one for that instance has ended, so the scripts see the transitions in the
order they happened. Each run is bounded by ``notify.timeout``: a command still running
then is killed with its whole process group (it runs in a session of its own, so helpers
it started go too). Commands are split with shell quoting rules and run without a shell,
as ``global.script_user`` (``root`` is allowed, like keepalived's ``script_user root``),
with a small fixed environment. Everything runs as asyncio subprocesses, so a slow or hung
script never delays an advert. Each run's outcome (exit code, duration, timed out) is a
``notify`` event on the API's stream; a failure is also logged with the tail of its stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import pwd
import signal
import subprocess
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import CounterMetricFamily, Metric

from vigil.config import files
from vigil.vrrp.machine import Transition, VrrpState

if TYPE_CHECKING:
    from vigil.vrrp.config import NotifyConfig, VrrpConfig
    from vigil.vrrp.instance import InstanceRuntime
    from vigil.vrrp.runtime import VrrpSubsystem

log = logging.getLogger("vigil.vrrp.notify")

#: The state word keepalived passes (and the per-state command that runs), by VRRP state.
STATE_WORDS: dict[VrrpState, str] = {
    VrrpState.MASTER: "MASTER",
    VrrpState.BACKUP: "BACKUP",
    VrrpState.FAULT: "FAULT",
    VrrpState.STOPPED: "STOP",
}

INSTANCE = "INSTANCE"
GROUP = "GROUP"

#: Commands waiting per instance or group. A queue that grows past this (a hung script
#: while the instance keeps flapping) drops its oldest waiting run, never the newest: the
#: scripts must end up knowing the latest state.
MAX_PENDING = 32
#: How much of a script's stderr is kept for the event and the log.
STDERR_TAIL = 2048
#: Environment of every command: a fixed PATH (keepalived's safe path) and a home.
SAFE_PATH = ":".join(files.SAFE_PATH)


@dataclass(frozen=True)
class NotifyJob:
    """One command to run for one state change.

    ``kind`` is the config key (``master``, ``backup``, ``fault``, ``stop`` or
    ``generic``); ``argv`` is the final argument vector (for ``generic`` with
    ``TYPE NAME STATE PRIORITY`` appended).
    """

    kind: str
    target: str
    name: str
    state: str
    priority: int
    argv: tuple[str, ...]
    timeout: float

    def describe(self) -> str:
        return f"notify {self.kind} for {self.target.lower()} {self.name} ({self.state})"


def state_word(state: VrrpState) -> str | None:
    """The keepalived state word for ``state``; None for states nobody is told about."""
    return STATE_WORDS.get(state)


def build_jobs(
    notify: NotifyConfig, target: str, name: str, state: str, priority: int
) -> list[NotifyJob]:
    """The commands one state change runs, in keepalived's order: per-state, then generic.

    ``target`` is ``INSTANCE`` or ``GROUP`` (whose priority is always 0). A command that
    does not split (the config loader rejects those, so only a hand-built config can get
    here) raises ``ValueError`` naming the key.
    """
    if target not in (INSTANCE, GROUP):
        raise ValueError(f"target: must be {INSTANCE} or {GROUP}, got {target!r}")
    if target == GROUP:
        priority = 0
    jobs: list[NotifyJob] = []
    per_state = getattr(notify, state.lower(), None) if state in STATE_WORDS.values() else None
    if per_state:
        jobs.append(
            NotifyJob(
                state.lower(),
                target,
                name,
                state,
                priority,
                _split(per_state, state.lower()),
                notify.timeout,
            )
        )
    if notify.generic:
        argv = (*_split(notify.generic, "generic"), target, name, state, str(priority))
        jobs.append(NotifyJob("generic", target, name, state, priority, argv, notify.timeout))
    return jobs


def _split(command: str, key: str) -> tuple[str, ...]:
    try:
        argv = tuple(files.split_command(command))
    except ValueError as exc:
        raise ValueError(f"notify.{key}: cannot split {command!r}: {exc}") from None
    if not argv:
        raise ValueError(f"notify.{key}: the command is empty; give a program to run")
    return argv


# ---------------------------------------------------------------------------- identity


@dataclass(frozen=True)
class RunAs:
    """Who a command runs as. ``uid`` None: as the agent itself (no switch needed)."""

    spec: str
    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] = ()
    home: str = "/"

    @classmethod
    def resolve(cls, spec: str) -> RunAs:
        """Look ``user[:group]`` up now (a reload may have changed the account database).

        When the agent is not root it cannot switch users: the command then runs as the
        agent's own user (tests, or an unprivileged agent), which the caller logs once.
        """
        user, _, group = spec.partition(":")
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            raise LookupError(
                f"global.script_user: user {user!r} does not exist on this host"
            ) from None
        gid = pw.pw_gid
        if group:
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                raise LookupError(
                    f"global.script_user: group {group!r} does not exist on this host"
                ) from None
        if pw.pw_uid == os.geteuid() and gid == os.getegid():
            return cls(spec, home=pw.pw_dir or "/")
        groups = tuple(sorted(set(os.getgrouplist(pw.pw_name, gid))))
        return cls(spec, pw.pw_uid, gid, groups, pw.pw_dir or "/")

    @property
    def switches(self) -> bool:
        return self.uid is not None


# ---------------------------------------------------------------------------- one run


@dataclass
class NotifyResult:
    """What one run did: exit code (None if it never ran or was killed), time, stderr tail."""

    job: NotifyJob
    exit_code: int | None = None
    duration: float = 0.0
    timed_out: bool = False
    stderr: str = ""
    error: str | None = None  # could not start: the reason
    pid: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out and self.exit_code == 0

    @property
    def outcome(self) -> str:
        """``ok``, ``failed`` (non-zero exit), ``timeout`` or ``error`` (not run)."""
        if self.error is not None:
            return "error"
        if self.timed_out:
            return "timeout"
        return "ok" if self.exit_code == 0 else "failed"

    def summary(self) -> str:
        job = self.job
        if self.error is not None:
            return f"{job.describe()}: not run: {self.error}"
        if self.timed_out:
            return (
                f"{job.describe()}: killed after its {job.timeout:g}s timeout "
                f"(process group {self.pid})"
            )
        return f"{job.describe()}: exited {self.exit_code} in {self.duration:.3f}s"

    def to_data(self) -> dict[str, Any]:
        job = self.job
        return {
            "script": job.kind,
            "target": job.target,
            "name": job.name,
            "state": job.state,
            "priority": job.priority,
            "argv": list(job.argv),
            "exit_code": self.exit_code,
            "duration": round(self.duration, 6),
            "timed_out": self.timed_out,
            "timeout": job.timeout,
            "stderr": self.stderr,
            "error": self.error,
        }


class ScriptRunner:
    """Runs one command as a subprocess in its own session, killed as a group at timeout.

    stderr goes to an anonymous temporary file rather than a pipe: a script that leaves a
    background helper holding the pipe open must not keep the run (and the queue behind
    it) waiting for an end-of-file that never comes.
    """

    def __init__(self, *, script_security: bool = True, run_as: RunAs | None = None) -> None:
        self.script_security = script_security
        self.run_as = run_as
        self.running: dict[int, asyncio.subprocess.Process] = {}

    def _prepare(self, job: NotifyJob) -> list[str]:
        program, problem = files.resolve_program(job.argv[0])
        if program is None:
            raise PermissionError(problem)
        if self.script_security:
            later = [w for w in job.argv[1:] if os.path.isabs(w) and os.path.isfile(w)]
            for word in (program, *later):
                reason = files.insecure_reason(word)
                if reason is not None:
                    raise PermissionError(
                        f"refusing {word!r}: {reason}; make it and its directories "
                        "root-owned and not group/world-writable "
                        "(or set global.script_security: false)"
                    )
        return [program, *job.argv[1:]]

    async def run(self, job: NotifyJob) -> NotifyResult:
        result = NotifyResult(job)
        try:
            argv = self._prepare(job)
        except PermissionError as exc:
            result.error = str(exc)
            return result
        run_as = self.run_as
        kwargs: dict[str, Any] = {}
        if run_as is not None and run_as.switches:
            kwargs.update(user=run_as.uid, group=run_as.gid, extra_groups=list(run_as.groups))
        env = {"PATH": SAFE_PATH, "HOME": run_as.home if run_as else "/", "LANG": "C.UTF-8"}
        with tempfile.TemporaryFile() as err:
            start = time.monotonic()
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=err,
                    start_new_session=True,
                    cwd="/",
                    env=env,
                    close_fds=True,
                    **kwargs,
                )
            except (OSError, ValueError, subprocess.SubprocessError) as exc:
                result.error = f"cannot start {argv[0]!r}: {exc}"
                return result
            result.pid = proc.pid
            self.running[proc.pid] = proc
            try:
                result.exit_code = await asyncio.wait_for(proc.wait(), job.timeout)
            except TimeoutError:
                result.timed_out = True
                await self._kill(proc)
            except asyncio.CancelledError:
                await self._kill(proc)
                raise
            finally:
                self.running.pop(proc.pid, None)
                result.duration = time.monotonic() - start
            result.stderr = _tail(err)
        return result

    @staticmethod
    async def _kill(proc: asyncio.subprocess.Process) -> None:
        """SIGKILL the run's whole process group, then reap the leader (bounded)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError, ProcessLookupError):
            await asyncio.wait_for(proc.wait(), 5.0)

    def kill_all(self) -> None:
        for pid in list(self.running):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def _tail(fh: Any) -> str:
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    fh.seek(max(0, size - STDERR_TAIL))
    return fh.read().decode("utf-8", "replace").strip()


# ---------------------------------------------------------------------------- ordering


@dataclass
class NotifyQueue:
    """The commands of one instance or group, run one after the other in arrival order."""

    key: tuple[str, str]
    run: Callable[[NotifyJob], Any]
    on_drop: Callable[[NotifyJob], None]
    pending: deque[NotifyJob] = field(default_factory=deque)
    worker: asyncio.Task[None] | None = None
    current: NotifyJob | None = None

    def put(self, jobs: Iterable[NotifyJob]) -> None:
        for job in jobs:
            if len(self.pending) >= MAX_PENDING:
                self.on_drop(self.pending.popleft())
            self.pending.append(job)
        if self.pending and (self.worker is None or self.worker.done()):
            self.worker = asyncio.get_running_loop().create_task(self._work())

    async def _work(self) -> None:
        while self.pending:
            self.current = self.pending.popleft()
            try:
                await self.run(self.current)
            finally:
                self.current = None

    @property
    def idle(self) -> bool:
        return not self.pending and (self.worker is None or self.worker.done())


class Notifier:
    """Per-key ordered queues over a :class:`ScriptRunner`; reports each result.

    Pure of the VRRP runtime so it can be tested with real scripts and no agent.
    """

    def __init__(
        self,
        report: Callable[[NotifyResult], None],
        *,
        script_security: bool = True,
        run_as: RunAs | None = None,
    ) -> None:
        self.runner = ScriptRunner(script_security=script_security, run_as=run_as)
        self.report = report
        self.queues: dict[tuple[str, str], NotifyQueue] = {}
        self.dropped = 0

    def submit(self, jobs: Iterable[NotifyJob]) -> None:
        jobs = list(jobs)
        if not jobs:
            return
        key = (jobs[0].target, jobs[0].name)
        queue = self.queues.get(key)
        if queue is None:
            queue = self.queues[key] = NotifyQueue(key, self._run_one, self._dropped)
        queue.put(jobs)

    async def _run_one(self, job: NotifyJob) -> None:
        try:
            result = await self.runner.run(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not stop the queue behind it
            log.exception("%s failed unexpectedly", job.describe())
            result = NotifyResult(job, error=f"internal error: {exc}")
        self.report(result)

    def _dropped(self, job: NotifyJob) -> None:
        self.dropped += 1
        self.report(
            NotifyResult(
                job,
                error=f"dropped: more than {MAX_PENDING} notify commands were waiting "
                f"behind a slow one for {job.target.lower()} {job.name}",
            )
        )

    @property
    def idle(self) -> bool:
        return all(q.idle for q in self.queues.values())

    async def wait_idle(self, timeout: float) -> bool:
        """Wait (bounded) until every queue is empty and nothing runs; True if it is."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.idle:
            workers = [q.worker for q in self.queues.values() if q.worker and not q.worker.done()]
            left = deadline - loop.time()
            if left <= 0 or not workers:
                break
            await asyncio.wait(workers, timeout=left)
        return self.idle

    async def close(self, timeout: float) -> None:
        """Let queued commands finish within ``timeout``, then kill and cancel the rest."""
        if not await self.wait_idle(timeout):
            self.runner.kill_all()
            workers = [q.worker for q in self.queues.values() if q.worker and not q.worker.done()]
            for task in workers:
                task.cancel()
            for task in workers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self.queues.clear()


# ---------------------------------------------------------------------------- agent wiring


class NotifyManager:
    """The VRRP subsystem's notify scripts: instance transitions and sync group changes.

    Registered as a transition hook; :meth:`configure` takes the global settings
    (``script_user``, ``script_security``, ``notify_timeout``) at start and on reload. The
    commands themselves are read from the instance's (or group's) config when the change
    happens, so a reload applies to the next transition.
    """

    def __init__(self, owner: VrrpSubsystem) -> None:
        self.owner = owner
        self.notify_timeout = 10.0
        self.notifier = Notifier(self._report)
        self._warned_identity = False
        # Finished runs by result (ok, failed, timeout, error), for the metrics.
        self.results: Counter[tuple[str, str, str]] = Counter()
        owner.transition_hooks.append(self.on_transition)

    def configure(self, config: VrrpConfig) -> None:
        glob = config
        self.notify_timeout = max(
            [10.0]
            + [inst.notify.timeout for inst in config.vrrp_instances]
            + [group.notify.timeout for group in config.vrrp_sync_groups]
        )
        try:
            run_as: RunAs | None = RunAs.resolve(glob.script_user)
        except LookupError as exc:
            log.error("notify scripts will run as the agent's own user: %s", exc)
            run_as = None
        if run_as is not None and run_as.switches and os.geteuid() != 0:
            if not self._warned_identity:
                log.warning(
                    "notify scripts run as uid %d, not %s: only root can switch users",
                    os.geteuid(),
                    glob.script_user,
                )
                self._warned_identity = True
            run_as = RunAs(run_as.spec, home=run_as.home)
        self.notifier.runner.run_as = run_as
        self.notifier.runner.script_security = glob.script_security

    def on_transition(self, inst: InstanceRuntime, tr: Transition) -> None:
        word = state_word(tr.new)
        if word is None:
            return
        self._submit(inst.cfg.notify, INSTANCE, inst.name, word, inst.machine.effective_priority)

    def group_changed(self, name: str, notify: NotifyConfig, state: str) -> None:
        """A sync group entered ``state`` (MASTER/BACKUP/FAULT/STOP): run its commands."""
        self._submit(notify, GROUP, name, state, 0)

    def _submit(self, notify: NotifyConfig, target: str, name: str, state: str, prio: int) -> None:
        try:
            jobs = build_jobs(notify, target, name, state, prio)
        except ValueError as exc:
            log.error("(%s) %s", name, exc)
            return
        self.notifier.submit(jobs)

    def _report(self, result: NotifyResult) -> None:
        job = result.job
        self.results[(job.target.lower(), job.name, result.outcome)] += 1
        if not result.ok:
            tail = result.stderr.replace("\n", " | ")[-400:] if result.stderr else ""
            log.warning(
                "(%s) %s%s", job.name, result.summary(), f"; stderr: {tail}" if tail else ""
            )
        self.owner.publish(
            "notify",
            job.name if job.target == INSTANCE else None,
            result.summary(),
            **result.to_data(),
        )

    def metrics(self) -> Iterable[Metric]:
        """``vigil_notify_runs_total{target,name,result}``: finished notify commands."""
        family = CounterMetricFamily(
            "vigil_notify_runs",
            "notify commands finished, by instance or group and result "
            "(ok, failed, timeout, error)",
            labels=["target", "name", "result"],
        )
        for (target, name, outcome), count in sorted(self.results.items()):
            family.add_metric([target, name, outcome], count)
        yield family

    async def close(self) -> None:
        """On agent stop: the STOP commands run (bounded), then whatever is left is killed."""
        await self.notifier.close(min(60.0, 2 * self.notify_timeout + 1.0))


__all__ = [
    "GROUP",
    "INSTANCE",
    "MAX_PENDING",
    "STATE_WORDS",
    "Notifier",
    "NotifyJob",
    "NotifyManager",
    "NotifyQueue",
    "NotifyResult",
    "RunAs",
    "ScriptRunner",
    "build_jobs",
    "state_word",
]
