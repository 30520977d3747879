"""The soak's injections: one plug-in per kind of fault, registered in INJECTIONS.

An injection kind (:class:`Injection`) has

- ``kind`` and ``weight`` (how often the schedule draws it),
- ``applies_to(group)``: whether it makes sense for a group (an IPVS injection needs a
  group running IPVS, a BFD one a group with BFD sessions),
- ``plan(rng, group)``: its seeded parameters (target role, duration, variant), pure,
- ``apply(ctx, rec)`` / ``heal(ctx, rec)``: start the fault and end it, bounded in time;
  the runner holds the fault for ``rec.step.params["duration"]`` seconds in between,
- ``excuses_split``: True when the fault itself can leave two holders of a VIP for as long
  as it lasts (a stopped or cut-off master cannot give its VIPs up), so the split-brain
  invariant starts counting only when it is healed,
- ``expect(ctx, rec, events)``: the evidence the fault must leave in the group's event
  streams (None: none can be asked for), checked after the run.

IPVS and BFD plug in the same way: ``bfd_cut`` (nftables in a node drops every BFD packet
in and out, then the table goes; it applies to groups with BFD sessions) and
``real_server`` (a real server of the group's virtual server dies, is cut off or answers
500, then comes back; it applies to groups running IPVS). A new kind is a class with
``applies_to`` and ``register(...)``; the schedule, the runner and the report need no
change.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from bench.soak.model import GroupSpec
from tests.lab import nft
from tests.lab.bfd import cut_bfd, heal_bfd
from tests.lab.observe import SeenEvent
from tests.lab.waiting import wait_for

if TYPE_CHECKING:
    from bench.soak.cluster import Cluster, NodeRuntime
    from bench.soak.schedule import Step

__all__ = ["INJECTIONS", "Injection", "InjectionRecord", "SoakContext", "register"]

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class InjectionRecord:
    """What happened to one step: its target, times (monotonic and wall) and notes."""

    step: Step
    target: str | None = None
    target_role: str | None = None
    started: float = 0.0
    healed: float | None = None
    wall_started: float = 0.0
    wall_healed: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    visible: bool | None = None  # the expected evidence was seen (None: none expected)
    visibility: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.step.to_dict(),
            "target": self.target,
            "target_role": self.target_role,
            "started": round(self.started, 3),
            "healed": round(self.healed, 3) if self.healed is not None else None,
            "notes": self.notes,
            "errors": self.errors,
            "visible": self.visible,
            "visibility": self.visibility,
        }


@dataclass
class SoakContext:
    cluster: Cluster
    workdir: Path
    rng: random.Random
    stop: Callable[[], bool]

    def group(self, rec: InjectionRecord) -> GroupSpec:
        return self.cluster.groups[rec.step.group]

    def node(self, name: str) -> NodeRuntime:
        return self.cluster.nodes[name]

    def pick(self, rec: InjectionRecord, role: str) -> NodeRuntime:
        """The node playing ``role`` now: master (the primary VIP's holder), backup (any
        other), or any node; the step's random generator breaks ties."""
        group = self.group(rec)
        names = list(group.node_names)
        master = self.cluster.master_of(group)
        if role == "master" and master is not None:
            chosen = master
        elif role == "backup" and master is not None:
            chosen = self.rng.choice([n for n in names if n != master])
        else:
            chosen = self.rng.choice(names)
        rec.target = chosen
        rec.target_role = role if master is not None else f"{role} (no single master)"
        return self.cluster.nodes[chosen]

    def post(
        self, node: NodeRuntime, path: str, body: dict[str, Any] | None, timeout: float
    ) -> tuple[int, Any]:
        from vigil.client import ApiClient, ApiUnreachable

        try:
            return ApiClient(str(node.socket_path), timeout=timeout).post(path, body)
        except ApiUnreachable as exc:
            return 0, exc.message


# ---------------------------------------------------------------------- expectations


def _events(
    events: Sequence[SeenEvent], nodes: Sequence[str], t0: float, t1: float
) -> list[SeenEvent]:
    """Events from ``nodes`` whose agent time (wall clock) is within [t0, t1]."""
    out = []
    for e in events:
        when = e.event.get("time")
        if e.node in nodes and isinstance(when, int | float) and t0 <= when <= t1:
            out.append(e)
    return out


def _transition_to(events: Sequence[SeenEvent], state: str) -> list[SeenEvent]:
    return [
        e
        for e in events
        if e.kind == "vrrp_transition" and str(e.event.get("data", {}).get("new")) == state
    ]


def _mentions(events: Sequence[SeenEvent], words: Sequence[str]) -> list[SeenEvent]:
    found = []
    for e in events:
        text = f"{e.kind} {e.event.get('message', '')}".lower()
        if any(w in text for w in words):
            found.append(e)
    return found


# ---------------------------------------------------------------------- the plug-ins


class Injection:
    kind: ClassVar[str] = ""
    weight: ClassVar[float] = 1.0
    excuses_split: ClassVar[bool] = False
    roles: ClassVar[tuple[tuple[str, float], ...]] = (
        ("master", 0.5),
        ("backup", 0.3),
        ("any", 0.2),
    )
    duration: ClassVar[tuple[float, float]] = (1.0, 3.0)

    def applies_to(self, group: GroupSpec) -> bool:
        return True

    def excuses(self, step: Step) -> bool:
        """Whether this step may leave two holders while it lasts (``excuses_split``; a
        kind may decide per variant)."""
        return self.excuses_split

    def plan(self, rng: random.Random, group: GroupSpec) -> dict[str, Any]:
        roles = [r for r, _ in self.roles]
        weights = [w for _, w in self.roles]
        return {
            "role": rng.choices(roles, weights)[0],
            "duration": round(rng.uniform(*self.duration), 2),
            **self.extra_params(rng, group),
        }

    def extra_params(self, rng: random.Random, group: GroupSpec) -> dict[str, Any]:
        return {}

    def apply(self, ctx: SoakContext, rec: InjectionRecord) -> None:
        raise NotImplementedError

    def heal(self, ctx: SoakContext, rec: InjectionRecord) -> None:
        """End the fault (default: nothing to undo)."""

    def expect(
        self, ctx: SoakContext, rec: InjectionRecord, events: Sequence[SeenEvent]
    ) -> tuple[bool | None, str]:
        return None, "nothing observable is required"


class Kill(Injection):
    """SIGKILL of vigild's whole process group; the supervisor cleans up and restarts it."""

    kind = "kill"
    weight = 3.0
    excuses_split = True  # until the restarted agent is ready (its clean-up runs first)
    duration = (0.0, 0.0)

    def apply(self, ctx: SoakContext, rec: InjectionRecord) -> None:
        node = ctx.pick(rec, rec.step.params["role"])
        rec.notes["old_pid"] = ctx.cluster.kill(node)

    def heal(self, ctx: SoakContext, rec: InjectionRecord) -> None:
        node = ctx.node(str(rec.target))
        ok = ctx.cluster.wait_restarted(node, rec.notes.get("old_pid"), timeout=45)
        rec.notes["restarted"] = ok
        rec.notes["new_pid"] = node.pid
        if not ok:
            rec.errors.append(f"{node.name}: vigild not ready again within 45 s")

    def expect(
        self, ctx: SoakContext, rec: InjectionRecord, events: Sequence[SeenEvent]
    ) -> tuple[bool | None, str]:
        seen = [
            e
            for e in _events(events, [str(rec.target)], rec.wall_started, 1e12)
            if e.kind == "agent_started"
        ]
        return bool(seen), "agent_started after the restart" + ("" if seen else ": not seen")


class Stop(Injection):
    """SIGSTOP of the process group for a while, then SIGCONT: a stalled daemon."""

    kind = "stop"
    weight = 2.0
    excuses_split = True  # a stopped master cannot give its VIPs up
    duration = (0.5, 4.0)

    def apply(self, ctx: SoakContext, rec: InjectionRecord) -> None:
        node = ctx.pick(rec, rec.step.params["role"])
        if not ctx.cluster.signal(node, signal.SIGSTOP):
            rec.errors.append(f"{node.name}: no vigild to stop")

    def heal(self, ctx: SoakContext, rec: InjectionRecord) -> None:
        ctx.cluster.signal(ctx.node(str(rec.target)), signal.SIGCONT)

    def expect(
        self, ctx: SoakContext, rec: InjectionRecord, events: Sequence[SeenEvent]
    ) -> tuple[bool | None, str]:
        group = ctx.group(rec)
        if not str(rec.target_role).startswith("master"):
            return None, "a stalled backup leaves no trace (the agent does not notice a stall)"
        if rec.step.params["duration"] <= group.max_window:
            return None, "shorter than the detection window"
        others = [n for n in group.node_names if n != rec.target]
        window = _events(events, others, rec.wall_started, (rec.wall_healed or 0) + group.settle_s)
        seen = _transition_to(window, "MASTER")
        return bool(seen), "a peer became MASTER" + ("" if seen else ": not seen")


class LinkFlap(Injection):
    """The node's link goes down (inside the node, or the cable at the switch), then up."""

    kind = "link"
    weight = 2.0
    duration = (0.3, 3.0)

    def extra_params(self, rng: random.Random, group: GroupSpec) -> dict[str, Any]:
        return {"variant": rng.choice(["admin", "cable"])}

    def apply(self, ctx: SoakContext, rec: InjectionRecord) -> None:
        node = ctx.pick(rec, rec.step.params["role"])
        if rec.step.params["variant"] == "admin":
            ctx.cluster.lab.link_down(node.name)
        else:
            ctx.cluster.lab.cable_pull(node.name)

    def heal(self, ctx: SoakContext, rec: InjectionRecord) -> None:
        name = str(rec.target)
        if rec.step.params["variant"] == "admin":
            ctx.cluster.lab.link_up(name)
        else:
            ctx.cluster.lab.cable_plug(name)

    def expect(
        self, ctx: SoakContext, rec: InjectionRecord, events: Sequence[SeenEvent]
    ) -> tuple[bool | None, str]:
        group = ctx.group(rec)
        window = _events(
            events, [str(rec.target)], rec.wall_started, (rec.wall_healed or 0) + group.settle_s
        )
        seen = _transition_to(window, "FAULT")
        return bool(seen), "the node went FAULT" + ("" if seen else ": not seen")


class Loss(Injection):
    """Random loss of VRRP in and out of a node (nftables numgen)."""

    kind = "loss"
    weight = 2.0
    duration = (2.0, 6.0)

    def extra_params(self, rng: random.Random, group: GroupSpec) -> dict[str, Any]:
        return {"percent": rng.choice([10, 20, 30, 50])}

    def apply(self, ctx: SoakContext, rec: InjectionRecord) -> None:
        node = ctx.pick(rec, rec.step.params["role"])
        nft.loss(ctx.cluster.lab, node.name, int(rec.step.params["percent"]))

    def heal(self, ctx: SoakContext, rec: InjectionRecord) -> None:
        nft.heal(ctx.cluster.lab, str(rec.target), "loss")


class Partition(Injection):
    """The node and the rest of its group stop hearing each other: VRRP only (the
    heartbeat path breaks, clients still reach both), or everything (the node is cut off)."""

    kind = "partition"
    weight = 2.0
    excuses_split = True  # two masters while the network is split is VRRP by design
    duration = (1.0, 4.0)
    roles = (("master", 0.6), ("backup", 0.4))

    def extra_params(self, rng: random.Random, group: GroupSpec) -> dict[str, Any]:
        return {"variant": rng.choice(["vrrp", "isolate"])}

    def apply(self, ctx: SoakContext, rec: InjectionRecord) -> None:
        node = ctx.pick(rec, rec.step.params["role"])
        group = ctx.group(rec)
        lab = ctx.cluster.lab
        if rec.step.params["variant"] == "isolate":
            nft.isolate(lab, node.name)
            return
        peers = [n for n in group.nodes if n.name != node.name]
        nft.partition(lab, node.name, [p.mac for p in peers])
        for p in peers:
            nft.partition(lab, p.name, [node.spec.mac])

    def heal(self, ctx: SoakContext, rec: InjectionRecord) -> None:
        lab = ctx.cluster.lab
        for name in ctx.group(rec).node_names:
            nft.heal(lab, name, "partition")
            nft.heal(lab, name, "isolate")

    def expect(
        self, ctx: SoakContext, rec: InjectionRecord, events: Sequence[SeenEvent]
    ) -> tuple[bool | None, str]:
        group = ctx.group(rec)
        if rec.step.params["duration"] <= group.max_window:
            return None, "shorter than the detection window"
        window = _events(
            events, group.node_names, rec.wall_started, (rec.wall_healed or 0) + group.settle_s
        )
        seen = _transition_to(window, "MASTER")
        if seen:
            return True, "a node on the other side became MASTER"
        if (
            group.bfd is not None
            and group.bfd.mode == "track"
            and rec.step.params["variant"] == "isolate"
        ):
            # cut off, the node also loses its tracked upstream BFD session: FAULT, not MASTER
            fault = [e for e in _transition_to(window, "FAULT") if e.node == rec.target]
            return bool(fault), "the isolated node went FAULT (its tracked BFD path is cut)" + (
                "" if fault else ": not seen (nor a MASTER)"
            )
        return False, "a node on the other side became MASTER: not seen"


def _reload(ctx: SoakContext, node: NodeRuntime, timeout: float = 60) -> tuple[int, Any]:
    return ctx.post(node, "/v1/reload", None, timeout)


class ReloadValid(Injection):
    """Every node of the group reloads a config that adds (or removes) a VIP."""

    kind = "reload_valid"
    weight = 1.5
    duration = (0.0, 0.0)
    roles = (("any", 1.0),)

    def apply(self, ctx: SoakContext, rec: InjectionRecord) -> None:
        group = ctx.group(rec)
        nodes = ctx.cluster.group_nodes(group)
        want = not nodes[0].extra_vip
        rec.target = ",".join(n.name for n in nodes)
        rec.notes["extra_vip"] = want
        rec.notes["variant"] = "add a VIP" if want else "remove a VIP"
        rec.notes["answers"] = {}
        ctx.rng.shuffle(nodes)
        for node in nodes:
            node.extra_vip = want
            node.write_config(node.good_config())
            status, body = _reload(ctx, node)
            rec.notes["answers"][node.name] = status
            if status != 200:
                rec.errors.append(f"{node.name}: reload answered {status}: {str(body)[:300]}")

    def expect(
        self, ctx: SoakContext, rec: InjectionRecord, events: Sequence[SeenEvent]
    ) -> tuple[bool | None, str]:
        group = ctx.group(rec)
        window = _events(events, group.node_names, rec.wall_started, (rec.wall_healed or 0) + 10)
        reloaded = {e.node for e in window if e.kind == "config_reloaded"}
        missing = [n for n in group.node_names if n not in reloaded]
        return not missing, "config_reloaded on every node" + (
            f"; missing on {missing}" if missing else ""
        )


def _deep_yaml(levels: int) -> str:
    return "x: " + "[" * levels + "]" * levels + "\n"


class ReloadInvalid(Injection):
    """One node's config file is broken, then reloaded; afterwards the file is restored
    (and reloaded again if the broken one was taken)."""

    kind = "reload_invalid"
    weight = 2.0
    duration = (0.0, 0.0)
    roles = (("master", 0.5), ("any", 0.5))
    variants: ClassVar[tuple[str, ...]] = ("schema", "yaml", "truncated", "empty", "deep", "huge")

    def extra_params(self, rng: random.Random, group: GroupSpec) -> dict[str, Any]:
        return {"variant": rng.choice(self.variants)}

    def broken(self, node: NodeRuntime, variant: str) -> str:
        good = node.good_config()
        if variant == "schema":
            return good.replace("vrid: 51", "vrid: 300")
        if variant == "yaml":
            return good + "vrrp_instances: [\n  - {name: : }\n"
        if variant == "truncated":
            return good[: len(good) // 3]
        if variant == "empty":
            return ""
        if variant == "deep":
            return _deep_yaml(600)
        return good + "x-padding: " + "a" * (8 << 20) + "\n"  # 8 MB

    def apply(self, ctx: SoakContext, rec: InjectionRecord) -> None:
        node = ctx.pick(rec, rec.step.params["role"])
        node.write_config(self.broken(node, rec.step.params["variant"]))
        t0 = time.monotonic()
        status, body = _reload(ctx, node, timeout=120)
        rec.notes["answer"] = status
        rec.notes["answer_s"] = round(time.monotonic() - t0, 2)
        rec.notes["body"] = str(body)[:300]

    def heal(self, ctx: SoakContext, rec: InjectionRecord) -> None:
        node = ctx.node(str(rec.target))
        node.write_config(node.good_config())
        if rec.notes.get("answer") == 200:
            status, body = _reload(ctx, node)
            rec.notes["restore_answer"] = status
            if status != 200:
                rec.errors.append(f"restoring the config answered {status}: {str(body)[:300]}")

    def expect(
        self, ctx: SoakContext, rec: InjectionRecord, events: Sequence[SeenEvent]
    ) -> tuple[bool | None, str]:
        window = _events(events, [str(rec.target)], rec.wall_started, (rec.wall_healed or 0) + 10)
        failed = [e for e in window if e.kind == "reload_failed"]
        if failed:
            return True, "reload_failed"
        took = [e for e in window if e.kind == "config_reloaded"]
        what = "the broken config was applied (config_reloaded)" if took else "no event"
        return False, f"reload_failed expected; {what} (answer {rec.notes.get('answer')})"


class Handover(Injection):
    """A planned handover from the current master of one instance (with a hold)."""

    kind = "handover"
    weight = 1.5
    duration = (0.0, 0.0)
    roles = (("master", 1.0),)

    def extra_params(self, rng: random.Random, group: GroupSpec) -> dict[str, Any]:
        return {
            "instance": rng.choice([i.name for i in group.instances]),
            "hold": round(rng.uniform(2, 6), 1),
        }

    def apply(self, ctx: SoakContext, rec: InjectionRecord) -> None:
        group = ctx.group(rec)
        inst = group.primary
        name = rec.step.params["instance"]
        for i in group.instances:
            if i.name == name:
                inst = i
        holders = ctx.cluster.holders(group, inst.addresses[0])
        node = ctx.node(holders[0]) if len(holders) == 1 else ctx.pick(rec, "any")
        rec.target, rec.target_role = node.name, "master" if len(holders) == 1 else "any"
        status, body = ctx.post(
            node,
            f"/v1/vrrp/instances/{name}/handover",
            {"timeout": 10, "hold": rec.step.params["hold"]},
            20,
        )
        rec.notes["answer"] = status
        rec.notes["body"] = str(body)[:300]

    def expect(
        self, ctx: SoakContext, rec: InjectionRecord, events: Sequence[SeenEvent]
    ) -> tuple[bool | None, str]:
        window = _events(events, [str(rec.target)], rec.wall_started, (rec.wall_healed or 0) + 10)
        seen = [
            e
            for e in window
            if e.kind == "control" and e.event.get("data", {}).get("action") == "handover"
        ]
        return bool(seen), "a handover control event" + ("" if seen else ": not seen")


class Maintenance(Injection):
    """Maintenance on for a while, then off (verified actions over the API)."""

    kind = "maintenance"
    weight = 1.5
    duration = (1.0, 4.0)

    def apply(self, ctx: SoakContext, rec: InjectionRecord) -> None:
        node = ctx.pick(rec, rec.step.params["role"])
        status, body = ctx.post(node, "/v1/vrrp/maintenance", {"enabled": True, "timeout": 10}, 20)
        rec.notes["on"] = status
        if status != 200:
            rec.notes["on_body"] = str(body)[:300]

    def heal(self, ctx: SoakContext, rec: InjectionRecord) -> None:
        node = ctx.node(str(rec.target))
        status, body = ctx.post(node, "/v1/vrrp/maintenance", {"enabled": False, "timeout": 10}, 20)
        rec.notes["off"] = status
        if status != 200:
            rec.notes["off_body"] = str(body)[:300]

    def expect(
        self, ctx: SoakContext, rec: InjectionRecord, events: Sequence[SeenEvent]
    ) -> tuple[bool | None, str]:
        window = _events(events, [str(rec.target)], rec.wall_started, (rec.wall_healed or 0) + 10)
        seen = [
            e
            for e in window
            if e.kind == "control" and e.event.get("data", {}).get("action") == "maintenance"
        ]
        return bool(seen), "maintenance control events" + ("" if seen else ": not seen")


class StateDirFull(Injection):
    """The node's state dir (a tiny tmpfs) fills up; then something must write to it: a
    maintenance toggle, a reload adding a VIP, or a crash and restart. Then it is freed."""

    kind = "statedir_full"
    weight = 1.0
    duration = (2.0, 5.0)

    def extra_params(self, rng: random.Random, group: GroupSpec) -> dict[str, Any]:
        return {"trigger": rng.choice(["maintenance", "reload_vip", "restart"])}

    def apply(self, ctx: SoakContext, rec: InjectionRecord) -> None:
        node = ctx.pick(rec, rec.step.params["role"])
        filler = node.state_dir / "soak-filler"
        written = 0
        try:
            with open(filler, "wb") as fh:
                chunk = b"\0" * 4096
                for _ in range(1 << 16):  # bounded: 256 MB at most, the tmpfs is far smaller
                    fh.write(chunk)
                    fh.flush()
                    written += len(chunk)
        except OSError as exc:
            rec.notes["filled"] = f"{written} bytes, then {exc.strerror}"
        trigger = rec.step.params["trigger"]
        if trigger == "maintenance":
            status, body = ctx.post(
                node, "/v1/vrrp/maintenance", {"enabled": True, "timeout": 10}, 20
            )
            rec.notes["maintenance_on"] = status
            rec.notes["body"] = str(body)[:300]
        elif trigger == "reload_vip":
            node.extra_vip = not node.extra_vip
            node.write_config(node.good_config())
            status, body = _reload(ctx, node)
            rec.notes["reload"] = status
            rec.notes["body"] = str(body)[:300]
        else:
            # A restart while the dir is full exits 1 (the promised start-up refusal) and
            # the supervisor starts it again, as systemd's Restart= would.
            node.state_full = True
            rec.notes["old_pid"] = ctx.cluster.kill(node)

    def heal(self, ctx: SoakContext, rec: InjectionRecord) -> None:
        node = ctx.node(str(rec.target))
        (node.state_dir / "soak-filler").unlink(missing_ok=True)
        trigger = rec.step.params["trigger"]
        if trigger == "maintenance":
            status, _ = ctx.post(
                node, "/v1/vrrp/maintenance", {"enabled": False, "timeout": 10}, 20
            )
            rec.notes["maintenance_off"] = status
        elif trigger == "reload_vip":
            # Back to the group's config (the other nodes never changed theirs).
            node.extra_vip = not node.extra_vip
            node.write_config(node.good_config())
            status, _ = _reload(ctx, node)
            rec.notes["reload_back"] = status
        else:
            ok = ctx.cluster.wait_restarted(node, rec.notes.get("old_pid"), timeout=60)
            node.state_full = False  # every refused start before this one is recorded
            rec.notes["restarted"] = ok
            if not ok:
                rec.errors.append(f"{node.name}: vigild not ready again within 60 s")

    def excuses(self, step: Step) -> bool:
        # the "restart" trigger is a SIGKILL: the dead master's VIPs stay in the kernel
        # until the unit's ExecStopPost clean-up runs, as with ``kill``
        return step.params.get("trigger") == "restart"

    def expect(
        self, ctx: SoakContext, rec: InjectionRecord, events: Sequence[SeenEvent]
    ) -> tuple[bool | None, str]:
        window = _events(events, [str(rec.target)], rec.wall_started, (rec.wall_healed or 0) + 10)
        seen = _mentions(window, ("journal", "state dir", "state_dir", "no space", "degraded"))
        if seen:
            return True, "an event about the state dir / journal"
        trigger = rec.step.params["trigger"]
        if trigger == "restart":
            return None, (
                "a restarted agent writes only if it becomes master while the dir is still "
                "full (the supervisor's clean-up and restart may outlast the fault)"
            )
        if trigger == "reload_vip" and not str(rec.target_role).startswith("master"):
            return None, "a backup adds no VIP on reload, so it writes nothing"
        return False, "an event about the state dir / journal: none"


#: the most connections a flood opens: the unit's LimitNOFILE (65536) + 100 would take the
#: flood half a minute to open on this machine; 8192 is still 128 times the API's own limit
#: (64) and 8 times systemd's default soft limit (1024), where defect 1 split the brain
FLOOD_MAX = 8192


class ApiFlood(Injection):
    """More idle API connections than the agent may hold (its open-files soft limit + 100,
    at most FLOOD_MAX), held a while."""

    kind = "api_flood"
    weight = 1.0
    duration = (3.0, 6.0)
    roles = (("master", 0.7), ("any", 0.3))

    def apply(self, ctx: SoakContext, rec: InjectionRecord) -> None:
        node = ctx.pick(rec, rec.step.params["role"])
        count = min(ctx.cluster.unit.effective_nofile()[0] + 100, FLOOD_MAX)
        out = ctx.workdir / f"flood-{rec.step.index}.json"
        rec.notes["connections"] = count
        proc = ctx.cluster.lab.spawn(
            None,
            [sys.executable, "-m", "bench.soak.flood", "--socket", str(node.socket_path),
             "--count", str(count), "--hold", "300", "--out", str(out)],
            name=f"flood-{rec.step.index}", cwd=REPO_ROOT,
        )  # fmt: skip
        rec.notes["_proc"] = proc
        rec.notes["_out"] = str(out)
        opened = Path(str(out) + ".opened")
        with contextlib.suppress(AssertionError):
            wait_for(
                lambda: opened.exists() or not proc.alive(),
                timeout=20,
                interval=0.05,
                what="the flood's connections",
            )

    def heal(self, ctx: SoakContext, rec: InjectionRecord) -> None:
        proc = rec.notes.pop("_proc", None)
        out = Path(rec.notes.pop("_out", "/nonexistent"))
        if proc is not None:
            proc.signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except Exception:
                proc.stop(timeout=2)
        try:
            rec.notes["flood"] = json.loads(out.read_text())
        except (OSError, ValueError):
            rec.notes["flood"] = None

    def expect(
        self, ctx: SoakContext, rec: InjectionRecord, events: Sequence[SeenEvent]
    ) -> tuple[bool | None, str]:
        window = _events(events, [str(rec.target)], rec.wall_started, (rec.wall_healed or 0) + 10)
        seen = _mentions(window, ("connection", "too many", "file descriptor", "degraded"))
        return bool(seen), "an event about the API connection limit" + (
            "" if seen else ": none (api_connection_limit expected)"
        )


def _bfd_to(events: Sequence[SeenEvent], state: str) -> list[SeenEvent]:
    return [
        e
        for e in events
        if e.kind == "bfd_transition" and str(e.event.get("data", {}).get("new")) == state
    ]


class BfdCut(Injection):
    """Every BFD packet in and out of one node is dropped (nftables in the node), then the
    rule goes. In the pair (sessions between the nodes, VI_4 and VI_2 with fast peer
    detection) both ends go Down and the backup takes over at once, then steps back when
    the live master answers; in the trio (each node's session to the upstream router,
    tracked by its instances) the node goes FAULT and its VIPs move."""

    kind = "bfd_cut"
    weight = 2.0
    duration = (1.0, 4.0)

    def applies_to(self, group: GroupSpec) -> bool:
        return group.bfd is not None

    def apply(self, ctx: SoakContext, rec: InjectionRecord) -> None:
        node = ctx.pick(rec, rec.step.params["role"])
        group = ctx.group(rec)
        assert group.bfd is not None
        ends = [node.name] if group.bfd.mode == "track" else list(group.node_names)
        # A session still coming back from the last fault is not Up: it cannot go Down.
        rec.notes["up_at_cut"] = {name: self._up(ctx, name) for name in ends}
        cut_bfd(ctx.cluster.lab, node.name)
        rec.notes["master_at_cut"] = ctx.cluster.master_of(group)

    @staticmethod
    def _up(ctx: SoakContext, name: str) -> bool | None:
        from vigil.client import ApiClient, ApiUnreachable

        try:
            status, body = ApiClient(str(ctx.node(name).socket_path), timeout=2).get(
                "/v1/bfd/sessions"
            )
        except ApiUnreachable:
            return None
        if status != 200 or not isinstance(body, dict):
            return None
        return all(s.get("state") == "Up" for s in body.get("sessions", []))

    def heal(self, ctx: SoakContext, rec: InjectionRecord) -> None:
        heal_bfd(ctx.cluster.lab, str(rec.target))

    def expect(
        self, ctx: SoakContext, rec: InjectionRecord, events: Sequence[SeenEvent]
    ) -> tuple[bool | None, str]:
        group = ctx.group(rec)
        assert group.bfd is not None
        target = str(rec.target)
        healed = rec.wall_healed or rec.wall_started
        ends = [target] if group.bfd.mode == "track" else list(group.node_names)
        up_at_cut = rec.notes.get("up_at_cut", {})
        during = _events(events, ends, rec.wall_started, healed + 1.0)
        # "after" starts at the cut: the heal's own command may return after the first Up
        after = _events(events, ends, rec.wall_started, healed + group.settle_s + 10)
        missing = []
        for name in ends:
            downs = [e for e in _bfd_to(during, "Down") if e.node == name]
            if not downs and up_at_cut.get(name) is not False:
                missing.append(f"{name}: no bfd_transition to Down")
            since = max((e.event.get("time", 0) for e in downs), default=rec.wall_started)
            ups = [e for e in _bfd_to(after, "Up") if e.node == name]
            if not any(e.event.get("time", 0) >= since for e in ups):
                missing.append(f"{name}: no bfd_transition back to Up")
        if not all(up_at_cut.get(n) is not False for n in ends):
            rec.notes["not_up_at_cut"] = [n for n in ends if up_at_cut.get(n) is False]
            what = "a session not Up at the cut (the last fault's) came Up again"
            return not missing, what + (f"; missing: {missing}" if missing else "")
        if group.bfd.mode == "track":
            if not any(e.node == target for e in _transition_to(during, "FAULT")):
                missing.append(f"{target}: its instances did not go FAULT (track.bfd)")
        else:
            master = rec.notes.get("master_at_cut")
            backups = [n for n in group.node_names if n != master] if master else []
            fast = [
                e
                for e in _transition_to(during, "MASTER")
                if e.node in backups and "fast peer detection" in str(e.event.get("message"))
            ]
            rec.notes["fast_takeovers"] = len(fast)
            if master and not fast:
                missing.append(f"no fast peer detection takeover by {backups}")
        what = "BFD Down then Up on " + ", ".join(ends)
        what += " and FAULT (track.bfd)" if group.bfd.mode == "track" else " and a fast takeover"
        return not missing, what + (f"; missing: {missing}" if missing else "")


class RealServer(Injection):
    """A real server of the group's IPVS virtual server fails, then recovers: its process is
    killed (connections refused) and started again, its cable is pulled (checks time out)
    and plugged, or it answers HTTP 500 for a while. Every director must see it go down and
    come back, and the virtual server lose and regain its quorum (2 of 2)."""

    kind = "real_server"
    weight = 2.0
    duration = (3.0, 6.0)
    roles = (("any", 1.0),)

    def applies_to(self, group: GroupSpec) -> bool:
        return group.ipvs is not None

    def extra_params(self, rng: random.Random, group: GroupSpec) -> dict[str, Any]:
        assert group.ipvs is not None
        return {
            "variant": rng.choice(["kill", "cable", "http500"]),
            "server": rng.choice([rs.name for rs in group.ipvs.real_servers]),
        }

    def _label(self, group: GroupSpec, name: str) -> str:
        assert group.ipvs is not None
        for rs, label in zip(group.ipvs.real_servers, group.ipvs.real_server_names, strict=True):
            if rs.name == name:
                return label
        raise KeyError(name)

    @staticmethod
    def _quorum_up(ctx: SoakContext, node: str) -> bool | None:
        from vigil.client import ApiClient, ApiUnreachable

        try:
            status, body = ApiClient(str(ctx.node(node).socket_path), timeout=2).get(
                "/v1/ipvs/virtual_servers"
            )
        except ApiUnreachable:
            return None
        if status != 200 or not isinstance(body, dict):
            return None
        return all(v.get("quorum", {}).get("state") == "UP" for v in body["virtual_servers"])

    def apply(self, ctx: SoakContext, rec: InjectionRecord) -> None:
        name = str(rec.step.params["server"])
        rec.target, rec.target_role = name, "real server"
        group = ctx.group(rec)
        # A quorum still down from the last fault (a server starting again) cannot be lost.
        rec.notes["quorum_up_at_start"] = {n: self._quorum_up(ctx, n) for n in group.node_names}
        rec.notes["pids"] = {n: ctx.node(n).pid for n in group.node_names}
        variant = rec.step.params["variant"]
        cluster = ctx.cluster
        if variant == "kill":
            cluster.kill_real_server(name)
        elif variant == "cable":
            cluster.lab.cable_pull(name)
        else:
            cluster.set_real_server_status(name, 500)

    def heal(self, ctx: SoakContext, rec: InjectionRecord) -> None:
        name = str(rec.target)
        variant = rec.step.params["variant"]
        cluster = ctx.cluster
        if variant == "kill":
            cluster.start_real_server(ctx.group(rec), name)
        elif variant == "cable":
            cluster.lab.cable_plug(name)
        else:
            cluster.set_real_server_status(name, None)

    def expect(
        self, ctx: SoakContext, rec: InjectionRecord, events: Sequence[SeenEvent]
    ) -> tuple[bool | None, str]:
        group = ctx.group(rec)
        label = self._label(group, str(rec.target))
        healed = rec.wall_healed or rec.wall_started
        during = _events(events, group.node_names, rec.wall_started, healed + 1.0)
        # the comeback is looked for after the node's own "down" event: the heal's command
        # may return after a check already saw the server again
        after = _events(events, group.node_names, rec.wall_started, healed + group.settle_s + 10)

        def first(evs: list[SeenEvent], node: str, kind: str, rs: bool) -> float | None:
            times = [
                float(e.event.get("time", 0))
                for e in evs
                if e.node == node
                and e.kind == kind
                and (not rs or e.event.get("data", {}).get("real_server") == label)
            ]
            return min(times) if times else None

        def later(evs: list[SeenEvent], node: str, kind: str, rs: bool, t: float) -> bool:
            return any(
                float(e.event.get("time", 0)) >= t
                for e in evs
                if e.node == node
                and e.kind == kind
                and (not rs or e.event.get("data", {}).get("real_server") == label)
            )

        missing = []
        quorum_up = rec.notes.get("quorum_up_at_start", {})
        pids = rec.notes.get("pids", {})
        restarted = []
        for node in group.node_names:
            # Killed by a later injection before its check saw the server again: its new
            # process announces only servers that start down, so nothing more to ask.
            mine = [e for e in after if e.node == node]
            if any(e.pid != pids.get(node) for e in mine):
                restarted.append(node)
                mine = [e for e in mine if e.pid == pids.get(node)]
            down = first(during, node, "real_server_down", True)
            if down is None:
                missing.append(f"{node}: no real_server_down")
            elif not later(mine, node, "real_server_up", True, down) and node not in restarted:
                missing.append(f"{node}: no real_server_up")
            lost = first(during, node, "quorum_lost", False)
            if lost is None:
                if quorum_up.get(node) is not False:
                    missing.append(f"{node}: no quorum_lost")
            elif not later(mine, node, "quorum_gained", False, lost) and node not in restarted:
                missing.append(f"{node}: no quorum_gained")
        if restarted:
            rec.notes["restarted_after"] = restarted
        return not missing, f"{label} down and up, quorum lost and regained on every director" + (
            f"; missing: {missing}" if missing else ""
        )


INJECTIONS: dict[str, Injection] = {}


def register(injection: Injection) -> None:
    """Add a kind of injection (a plug-in); its ``kind`` is its name in schedules."""
    if not injection.kind:
        raise ValueError("an injection needs a kind")
    INJECTIONS[injection.kind] = injection


for _cls in (Kill, Stop, LinkFlap, Loss, Partition, ReloadValid, ReloadInvalid, Handover,
             Maintenance, StateDirFull, ApiFlood, BfdCut, RealServer):  # fmt: skip
    register(_cls())
