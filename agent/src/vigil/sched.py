"""vigild's scheduling policy: ``global.realtime_priority`` (keepalived's ``*_rt_priority``).

A daemon whose timers are tens of milliseconds (BFD at 20 ms x 3 has a detection time of
60 ms) must get a core within a few milliseconds of its timer, also while other processes
keep both cores busy. Under the normal policy it may wait longer than that
(docs/benchmarks.md, BFD stability); SCHED_RR at any priority runs it before every
normal process.

The policy is set for the calling thread, the one that runs the event loop, with
``SCHED_RESET_ON_FORK``: threads and processes it starts later (check scripts, notify
commands, the file-check pool) run at the normal policy, so a runaway script never runs
at real-time priority. The kernel's real-time throttling (``sched_rt_runtime_us``, 95 %
by default) still bounds what a runaway agent could take.
"""

from __future__ import annotations

import errno
import logging
import os

log = logging.getLogger("vigil.daemon")

__all__ = ["apply_realtime_priority", "current_policy"]


def current_policy() -> tuple[str, int]:
    """(``"rr"``, ``"fifo"`` or ``"other"``, priority) of the calling thread."""
    policy = os.sched_getscheduler(0) & ~getattr(os, "SCHED_RESET_ON_FORK", 0)
    priority = os.sched_getparam(0).sched_priority
    names = {os.SCHED_RR: "rr", os.SCHED_FIFO: "fifo"}
    return names.get(policy, "other"), priority


def apply_realtime_priority(priority: int) -> str | None:
    """SCHED_RR at ``priority`` (1-99) for this thread, or the normal policy for 0.

    Returns None when it is in force, else why not (the agent runs on without it: a
    missing CAP_SYS_NICE, or a container that forbids real-time scheduling).
    """
    if not 0 <= priority <= 99:
        return f"realtime_priority: must be 0..99, got {priority}"
    reset = getattr(os, "SCHED_RESET_ON_FORK", 0)
    try:
        if priority:
            os.sched_setscheduler(0, os.SCHED_RR | reset, os.sched_param(priority))
        else:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except OSError as exc:
        why = f"cannot set SCHED_RR priority {priority}: {exc.strerror or exc}"
        if exc.errno == errno.EPERM and priority:
            why += (
                " (it needs CAP_SYS_NICE, for systemd no RestrictRealtime=yes; and on a "
                "kernel with RT group scheduling and cgroup v1, a real-time budget in the "
                "service's cpu cgroup, cpu.rt_runtime_us)"
            )
        return why
    return None
