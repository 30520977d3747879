"""The soak's invariants for BFD and IPVS (plug-ins of bench.soak.invariants.Checker).

Both are read from the agents' API while the soak runs (once a second, only while the
group has no injection in effect and the last one healed ``QUIET_S`` ago, so the checks
stay cheap) and once more at the end:

- **bfd_stuck**: every BFD session of the group is Up on every node once the group has
  been quiet for ``STUCK_S`` (a cut, a kill or a partition may take a session Down; healed,
  it must come back by itself). At the end, every session's state in the API is also the
  ``new`` state of its last ``bfd_transition`` event from that agent process
  (**bfd_events**: the state is visible in the event stream).
- **ipvs_stuck**: every real server is UP on every director and the virtual server's
  quorum UP once the group has been quiet for ``STUCK_S`` (the real servers all run
  then). At the end, each real server's state is also the one its last
  ``real_server_up`` / ``real_server_down`` event says (**ipvs_events**; no event from
  the process means UP, the agent announces only servers that start down).
- The kernel side: this host has no IPVS, so every director must report
  ``kernel.available: false`` with the reason, and ``in_ipvs: false``: the checkers,
  quorum, events and API run without the kernel, the closest real thing here (the
  kernel side is tested in the IPVS VM, tests/vm). Recorded in the result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vigil.client import ApiUnreachable

if TYPE_CHECKING:
    from bench.soak.cluster import NodeRuntime
    from bench.soak.invariants import Checker
    from bench.soak.model import GroupSpec
    from tests.lab.observe import SeenEvent

__all__ = ["BfdCheck", "IpvsCheck", "subsystem_checks"]

QUIET_S = 2.0
STUCK_S = 10.0
EVERY_S = 1.0


def _get(node: NodeRuntime, path: str) -> Any:
    try:
        status, body = node.client.get(path)
    except ApiUnreachable:
        return None
    return body if status == 200 else None


def _current(events: list[SeenEvent], node: NodeRuntime) -> list[SeenEvent]:
    """The node's events from the agent process running now (a session can come Up before
    the agent publishes ``agent_started``, so the process, not that event, is the mark)."""
    return [e for e in events if e.node == node.name and e.pid == node.pid]


class _Periodic:
    name = ""

    def __init__(self) -> None:
        self._next = 0.0
        self._bad_since: dict[str, float] = {}
        self._flagged: set[str] = set()
        self.polls = 0
        self.final_results: dict[str, Any] = {}

    def applies(self, group: GroupSpec) -> bool:
        raise NotImplementedError

    def problems(self, group: GroupSpec, node: NodeRuntime) -> list[str] | None:
        """What is not as it must be on ``node`` once quiet (None: could not ask)."""
        raise NotImplementedError

    def tick(self, checker: Checker, now: float) -> None:
        if now < self._next:
            return
        self._next = now + EVERY_S
        for group in checker.cluster.groups.values():
            if not self.applies(group):
                continue
            state = checker.groups[group.name]
            quiet = now - state.last_heal if state.active is None else -1.0
            if quiet < QUIET_S:
                self._bad_since = {
                    k: v for k, v in self._bad_since.items() if not k.startswith(f"{group.name}/")
                }
                self._flagged = {k for k in self._flagged if not k.startswith(f"{group.name}/")}
                continue
            for node in checker.cluster.group_nodes(group):
                found = self.problems(group, node)
                self.polls += 1
                if found is None:
                    continue
                keys = {f"{group.name}/{node.name}/{p}" for p in found}
                for key in list(self._bad_since):
                    if key.startswith(f"{group.name}/{node.name}/") and key not in keys:
                        del self._bad_since[key]
                for key in keys:
                    since = self._bad_since.setdefault(key, now)
                    if key not in self._flagged and quiet >= STUCK_S:
                        self._flagged.add(key)
                        checker.flag(
                            self.name,
                            group.name,
                            node.name,
                            f"{key.split('/', 2)[2]} (seen for {now - since:.1f} s) while "
                            f"the group was quiet for {quiet:.1f} s",
                            now,
                        )

    def pending(self, checker: Checker) -> list[str]:
        """Everything not yet as it must be, on every node of the groups it applies to."""
        out = []
        for group in checker.cluster.groups.values():
            if not self.applies(group):
                continue
            for node in checker.cluster.group_nodes(group):
                found = self.problems(group, node)
                out += [f"{node.name}: {p}" for p in (["no answer"] if found is None else found)]
        return out

    def final_stuck(self, checker: Checker) -> None:
        for item in self.pending(checker):
            checker.flag(self.name, "-", item.split(":")[0], f"at the end: {item}")


class BfdCheck(_Periodic):
    name = "bfd_stuck"

    def applies(self, group: GroupSpec) -> bool:
        return group.bfd is not None

    def problems(self, group: GroupSpec, node: NodeRuntime) -> list[str] | None:
        body = _get(node, "/v1/bfd/sessions")
        if not isinstance(body, dict):
            return None
        return [
            f"BFD session {s['name']} is {s['state']} (remote {s['remote_state']})"
            for s in body.get("sessions", [])
            if s.get("state") != "Up"
        ]

    def final(self, checker: Checker, events: list[SeenEvent]) -> None:
        """Each session's API state is the last bfd_transition's ``new`` since the start."""
        out: dict[str, Any] = {}
        for group in checker.cluster.groups.values():
            if group.bfd is None:
                continue
            for node in checker.cluster.group_nodes(group):
                body = _get(node, "/v1/bfd/sessions")
                if not isinstance(body, dict):
                    checker.flag("bfd_events", group.name, node.name, "no answer at the end")
                    continue
                mine = _current(events, node)
                for s in body.get("sessions", []):
                    trans = [
                        e
                        for e in mine
                        if e.kind == "bfd_transition" and e.event.get("instance") == s["name"]
                    ]
                    said = str(trans[-1].event["data"]["new"]) if trans else "Down"
                    out[f"{node.name}/{s['name']}"] = {
                        "state": s["state"],
                        "last_event": said,
                        "counters": s.get("counters"),
                    }
                    if said != s["state"]:
                        checker.flag(
                            "bfd_events",
                            group.name,
                            node.name,
                            f"session {s['name']} is {s['state']} but its last bfd_transition "
                            f"said {said}",
                        )
        self.final_results = out


class IpvsCheck(_Periodic):
    name = "ipvs_stuck"

    def __init__(self) -> None:
        super().__init__()
        self.kernel: dict[str, Any] = {}

    def applies(self, group: GroupSpec) -> bool:
        return group.ipvs is not None

    def problems(self, group: GroupSpec, node: NodeRuntime) -> list[str] | None:
        body = _get(node, "/v1/ipvs/virtual_servers")
        if not isinstance(body, dict):
            return None
        found = []
        kernel = body.get("kernel", {})
        self.kernel[node.name] = {k: kernel.get(k) for k in ("available", "used", "error")}
        if kernel.get("available") is not False:
            found.append(f"kernel.available is {kernel.get('available')} on a host without IPVS")
        for vs in body.get("virtual_servers", []):
            if vs.get("quorum", {}).get("state") != "UP":
                found.append(f"{vs['name']}: quorum {vs.get('quorum', {}).get('state')}")
            if vs.get("in_ipvs") is not False:
                found.append(f"{vs['name']}: in_ipvs {vs.get('in_ipvs')} without IPVS")
            for rs in vs.get("real_servers", []):
                if rs.get("state") != "UP":
                    found.append(
                        f"{vs['name']}/{rs['name']}: {rs.get('state')} "
                        f"({rs.get('last_error') or rs.get('reason')})"
                    )
        return found

    def final(self, checker: Checker, events: list[SeenEvent]) -> None:
        out: dict[str, Any] = {}
        for group in checker.cluster.groups.values():
            if group.ipvs is None:
                continue
            for node in checker.cluster.group_nodes(group):
                body = _get(node, "/v1/ipvs/virtual_servers")
                if not isinstance(body, dict):
                    checker.flag("ipvs_events", group.name, node.name, "no answer at the end")
                    continue
                mine = _current(events, node)
                for vs in body.get("virtual_servers", []):
                    for rs in vs.get("real_servers", []):
                        said = "UP"
                        for e in mine:
                            if e.event.get("data", {}).get("real_server") != rs["name"]:
                                continue
                            if e.kind == "real_server_up":
                                said = "UP"
                            elif e.kind == "real_server_down":
                                said = "DOWN"
                        out[f"{node.name}/{vs['name']}/{rs['name']}"] = {
                            "state": rs["state"],
                            "last_event": said,
                        }
                        if said != rs["state"]:
                            checker.flag(
                                "ipvs_events",
                                group.name,
                                node.name,
                                f"{vs['name']}/{rs['name']} is {rs['state']} but its last "
                                f"event said {said}",
                            )
        self.final_results = out


def subsystem_checks() -> list[BfdCheck | IpvsCheck]:
    return [BfdCheck(), IpvsCheck()]


def event_counts(events: list[SeenEvent]) -> dict[str, Any]:
    """BFD and IPVS events seen per node (transitions by new state, fast takeovers)."""
    out: dict[str, dict[str, int]] = {}
    for e in events:
        per = out.setdefault(e.node, {})
        if e.kind == "bfd_transition":
            key = f"bfd_to_{e.event.get('data', {}).get('new')}"
        elif e.kind in (
            "real_server_up",
            "real_server_down",
            "quorum_lost",
            "quorum_gained",
            "ipvs_unavailable",
        ):
            key = e.kind
        elif e.kind == "vrrp_transition" and "fast peer detection" in str(e.event.get("message")):
            key = "fast_takeover"
        else:
            continue
        per[key] = per.get(key, 0) + 1
    return out


IPVS_NOTE = (
    "this host's kernel has no IPVS (CONFIG_IP_VS): the directors run their virtual "
    "server with the kernel marked unavailable; the checkers, quorum, events and API run "
    "against real servers in namespaces, nothing is programmed into a kernel table (the "
    "closest real thing here; the kernel side is tested in the IPVS VM, tests/vm)"
)
