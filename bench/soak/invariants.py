"""The soak's invariants, checked from outside the agents while the injections run.

- **split**: at most one holder of each VIP (the kernel's addresses in every namespace,
  from rtnetlink) except for the detection window of its instance (Master_Down_Interval
  + one advert interval + a margin, see GroupSpec.window) after the holders changed;
  while an injection that makes two holders unavoidable is active (a stopped or cut-off
  master, a killed one before its restart cleans up) the window starts at its heal.
- **none**: no VIP without a holder for longer than the same window.
- **settled**: exactly one holder of each VIP, nothing but the node's own addresses and
  the group's VIPs in any node, and every agent healthy, once the group's last injection
  has been healed for ``settle_s`` (checked before the group's next injection and at the
  end).
- **crash**: vigild never exits unless an injection killed it.
- **leaks** (at the end): file descriptors, RSS and processes of every agent compared with
  their values at the start of the same process, and the namespaces' process counts.
- **visible**: every injection left the evidence its kind expects in the event streams.

Each violation names the invariant, where, when (seconds into the run) and the injection
in effect. More invariant checks (IPVS: the table matches the healthy real servers; BFD:
the tracked instance follows the session) plug in as :class:`Check` objects.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from bench.soak.cluster import Cluster
    from bench.soak.injections import InjectionRecord
    from bench.soak.model import GroupSpec

__all__ = ["Check", "Checker", "Violation"]


@dataclass
class Violation:
    invariant: str
    group: str
    where: str
    at: float  # seconds since the run began
    detail: str
    step: int | None = None
    kind: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "invariant": self.invariant,
            "group": self.group,
            "where": self.where,
            "at_s": round(self.at, 2),
            "detail": self.detail,
            "step": self.step,
            "injection": self.kind,
        }


class Check(Protocol):
    """A periodic invariant check (plug-in): called every tick with the time."""

    name: str

    def tick(self, checker: Checker, now: float) -> None: ...


@dataclass
class _Episode:
    since: float
    holders: tuple[str, ...]
    flagged: bool = False
    longest: float = 0.0


@dataclass
class GroupState:
    """Per group: the injection in effect and when the last one healed."""

    active: InjectionRecord | None = None
    excused_until: float = 0.0  # an excusing injection's heal time (inf while active)
    last_heal: float = 0.0
    last_step: InjectionRecord | None = None


class Checker:
    """Runs the continuous checks in a thread every ``tick`` seconds and collects violations."""

    def __init__(self, cluster: Cluster, t0: float, *, tick: float = 0.05) -> None:
        self.cluster = cluster
        self.t0 = t0
        self.tick = tick
        self.violations: list[Violation] = []
        self.groups = {name: GroupState() for name in cluster.groups}
        self.extra_checks: list[Check] = []
        self.splits: list[dict[str, Any]] = []  # every episode of two or more holders
        self._multi: dict[str, _Episode] = {}
        self._zero: dict[str, _Episode] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="invariants", daemon=True)
        self.ticks = 0
        self.settle_checks = 0
        self.unsettled_skips = 0

    # ------------------------------------------------------------------ bookkeeping

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def rel(self, t: float) -> float:
        return t - self.t0

    def flag(
        self, invariant: str, group: str, where: str, detail: str, now: float | None = None
    ) -> None:
        state = self.groups.get(group)
        step = state.active or state.last_step if state else None
        v = Violation(
            invariant,
            group,
            where,
            self.rel(time.monotonic() if now is None else now),
            detail,
            step.step.index if step else None,
            step.step.kind if step else None,
        )
        with self._lock:
            self.violations.append(v)

    def injection_started(self, rec: InjectionRecord, excuses_split: bool) -> None:
        state = self.groups[rec.step.group]
        state.active = rec
        if excuses_split:
            state.excused_until = float("inf")

    def injection_healed(self, rec: InjectionRecord, excuses_split: bool) -> None:
        state = self.groups[rec.step.group]
        now = rec.healed or time.monotonic()
        state.active = None
        state.last_step = rec
        state.last_heal = now
        if excuses_split:
            state.excused_until = now

    # ------------------------------------------------------------------ continuous

    def monitored(self, group: GroupSpec) -> list[str]:
        """The VIP addresses every node of the group agrees on (the extra VIP only when all
        have it configured; while a reload changes it, it is not judged)."""
        addrs = [a for inst in group.instances for a in inst.addresses]
        nodes = self.cluster.group_nodes(group)
        if all(n.extra_vip for n in nodes):
            addrs.append(group.extra_vip.split("/")[0])
        return addrs

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                self.check_holders(now)
                for check in self.extra_checks:
                    check.tick(self, now)
            except Exception as exc:  # a checker bug must be visible, not kill the thread
                self.flag("checker", "-", "-", f"checker error: {exc!r}")
            self.ticks += 1
            self._stop.wait(self.tick)

    def check_holders(self, now: float) -> None:
        for gname, group in self.cluster.groups.items():
            state = self.groups[gname]
            for addr in self.monitored(group):
                key = f"{gname}/{addr}"
                holders = tuple(self.cluster.holders(group, addr))
                window = group.window(group.vip_instance(addr))
                self._track(key, gname, addr, holders, window, state, now)

    def _track(
        self,
        key: str,
        gname: str,
        addr: str,
        holders: tuple[str, ...],
        window: float,
        state: GroupState,
        now: float,
    ) -> None:
        multi = self._multi.get(key)
        if len(holders) >= 2:
            if multi is None:
                multi = self._multi[key] = _Episode(now, holders)
            multi.longest = now - multi.since
            counted_from = max(multi.since, state.excused_until)
            if not multi.flagged and now - counted_from > window:
                multi.flagged = True
                self.flag(
                    "split",
                    gname,
                    addr,
                    f"{len(holders)} holders ({', '.join(holders)}) for over {window:.2f} s "
                    f"(the detection window)",
                    now,
                )
        elif multi is not None:
            self.splits.append(
                {
                    "vip": addr,
                    "group": gname,
                    "start_s": round(self.rel(multi.since), 3),
                    "duration_s": round(now - multi.since, 3),
                    "holders": list(multi.holders),
                    "flagged": multi.flagged,
                    "during": (state.active or state.last_step).step.kind
                    if (state.active or state.last_step)
                    else None,
                }
            )
            del self._multi[key]
        zero = self._zero.get(key)
        if not holders:
            if zero is None:
                zero = self._zero[key] = _Episode(now, ())
            zero.longest = now - zero.since
            counted_from = max(zero.since, state.excused_until)
            if not zero.flagged and now - counted_from > window:
                zero.flagged = True
                self.flag("none", gname, addr, f"no holder for over {window:.2f} s", now)
        elif zero is not None:
            del self._zero[key]

    # ------------------------------------------------------------------ at rest

    def check_settled(self, group: GroupSpec, *, final: bool = False) -> None:
        """Exactly one holder of each VIP whose instance had two windows since the group's
        last injection healed; once the whole group had its settle time (and at the end):
        no stray address, every agent running and healthy."""
        now = time.monotonic()
        state = self.groups[group.name]
        quiet = now - state.last_heal if state.active is None else -1.0
        label = "final" if final else "settled"
        for addr in self.monitored(group):
            if not final and quiet < 2 * group.window(group.vip_instance(addr)):
                self.unsettled_skips += 1
                continue
            self.settle_checks += 1
            holders = self.cluster.holders(group, addr)
            if len(holders) != 1:
                self.flag(
                    label, group.name, addr, f"{len(holders)} holders {holders}, not exactly 1"
                )
        if not final and quiet < group.settle_s:
            return
        allowed = {a for inst in group.instances for a in inst.addresses}
        nodes = self.cluster.group_nodes(group)
        if all(n.extra_vip for n in nodes):
            allowed.add(group.extra_vip.split("/")[0])
        assert self.cluster.watch is not None
        for node in nodes:
            own = group.static_addresses(node.spec)
            for ip in self.cluster.watch.present(node.name):
                if ip.is_loopback or ip.is_link_local or str(ip) in own or str(ip) in allowed:
                    continue
                self.flag(label, group.name, node.name, f"stray address {ip} (not configured)")
            if node.agent is None or not node.agent.process.alive():
                self.flag(label, group.name, node.name, "vigild is not running")
            elif not node.healthy():
                self.flag(label, group.name, node.name, "vigild does not answer /v1/health ready")

    def wait_settled(self, timeout: float, condition: Callable[[], bool]) -> bool:
        """Poll ``condition`` until it holds or ``timeout`` passes (bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.1)
        return False

    def converged(self) -> bool:
        for group in self.cluster.groups.values():
            for addr in self.monitored(group):
                if len(self.cluster.holders(group, addr)) != 1:
                    return False
        return all(n.healthy() for n in self.cluster.nodes.values())


@dataclass
class LeakReport:
    """Start and end of every agent process, and what changed."""

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)


def leak_report(
    cluster: Cluster,
    *,
    fd_slack: int = 4,
    rss_limit_kb: int = 10 * 1024,
    ns_before: dict[str, int] | None = None,
    ns_after: dict[str, int] | None = None,
) -> LeakReport:
    """Compare each node's first and last samples (of the run, and of the current process)."""
    rep = LeakReport()
    for name, node in cluster.nodes.items():
        samples = node.samples
        if not samples:
            continue
        first, last = samples[0], samples[-1]
        current = [s for s in samples if s.pid == last.pid]
        base = current[0]
        entry = {
            "start": first.to_dict(),
            "end": last.to_dict(),
            "current_process_start": base.to_dict(),
            "restarts": len({s.pid for s in samples}) - 1,
        }
        rep.nodes[name] = entry
        # The same process's growth; a restarted process is compared with its own start.
        if len(current) >= 2:
            if last.fds > base.fds + fd_slack:
                rep.violations.append(f"{name}: fds {base.fds} -> {last.fds} (pid {last.pid})")
            if last.rss_kb > base.rss_kb + rss_limit_kb:
                rep.violations.append(
                    f"{name}: RSS {base.rss_kb} -> {last.rss_kb} KiB (pid {last.pid})"
                )
        if last.group != 1:
            rep.violations.append(f"{name}: {last.group} processes in vigild's group at the end")
    if ns_before is not None and ns_after is not None:
        for ns, n in ns_after.items():
            if n > ns_before.get(ns, 0):
                rep.violations.append(f"namespace {ns}: {ns_before.get(ns, 0)} -> {n} processes")
    return rep
