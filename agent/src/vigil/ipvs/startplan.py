"""The start plan: the IPVS table a start programs before any check, for the next start.

:mod:`vigil.faststart` (the ``vigild`` command) sends it before the agent is imported,
when the config file, the drain file and vigil's version are the ones it was written
for; see there for what that step may and may not do. Here: what the plan holds and
when it is written.

The table is the one the runtime's first pass wants (:func:`start_table`): every real
server assumed alive with its configured weight (dead under ``alpha``, kept at weight 0
when it also has ``inhibit_on_failure``), drained ones at weight 0, the quorum and the
sorry server as those weights make them. It does not depend on the VRRP state
(``ha_suspend`` holds the assumed pool too) nor on anything else of the host.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from vigil.faststart import MAGIC, PLAN_FILE, Plan, PlanService, plan_key
from vigil.incremental import Slicer

from .config import IpvsConfig, RealServerConfig
from .control import CONTROL_FILE
from .journal import NAMESPACE, service_entry, service_key_text
from .kernel import (
    IPVS_CMD_DEL_SERVICE,
    IPVS_CMD_NEW_DEST,
    IPVS_CMD_NEW_SERVICE,
    ServiceKey,
    dest_request,
    request_payload,
    service_key_request,
    service_request,
)
from .planner import Entry, ServerView, desired_entries, live_weight, service_key
from .quorum import Quorum

__all__ = ["INPUTS", "assumed_view", "build_plan", "is_alpha", "start_table", "write_plan"]

#: the state-dir files the plan depends on, besides the config: the drained real servers
INPUTS = (CONTROL_FILE,)
FAMILY = "IPVS"


def is_alpha(rs: RealServerConfig) -> bool:
    """A check of ``rs`` has ``alpha``: it starts dead until checked."""
    return any(c.settings is not None and c.settings.alpha for c in rs.checks)


def assumed_view(rs: RealServerConfig) -> ServerView:
    """A never-checked real server: alive with its weight (dead with ``alpha``)."""
    if is_alpha(rs):
        return ServerView(rs.inhibit_on_failure, 0)
    return ServerView(True, rs.weight)


def start_table(section: IpvsConfig, drained: Mapping[str, set[str]]) -> dict[ServiceKey, Entry]:
    """Every service of ``section`` as a start programs it before any check has run."""
    out: dict[ServiceKey, Entry] = {}
    for cfg in section.virtual_servers:
        off = drained.get(cfg.name, set())
        views = {}
        for rs in cfg.real_servers:
            view = assumed_view(rs)
            views[rs.label] = ServerView(view.present, 0) if rs.label in off else view
        quorum = Quorum(cfg.name, cfg.quorum, cfg.hysteresis)
        quorum.update(live_weight(cfg, views))
        out.update(desired_entries(cfg, views, quorum.up))
    return out


async def build_plan(
    section: IpvsConfig,
    drained: Mapping[str, set[str]],
    key: str,
    slicer: Slicer | None = None,
    family_id: int = 0,
) -> Plan:
    """The plan of ``section`` (encoding 10,000 requests is seconds under TCG: in slices)."""
    slicer = slicer or Slicer()
    table = start_table(section, drained)
    services: list[PlanService] = []
    for cfg in section.virtual_servers:
        for ep in cfg.services:
            skey = service_key(ep)
            entry = table[skey]
            services.append(
                PlanService(
                    service_key_text(ep),
                    service_entry(ep, cfg.name),
                    request_payload(IPVS_CMD_NEW_SERVICE, service_request(entry.service)),
                    request_payload(IPVS_CMD_DEL_SERVICE, service_key_request(skey)),
                    [
                        request_payload(IPVS_CMD_NEW_DEST, dest_request(skey, dest))
                        for dest in entry.destinations.values()
                    ],
                )
            )
            await slicer.tick()
    return Plan(key, FAMILY, NAMESPACE, list(INPUTS), services, family_id)


def current_key(state_dir: Path, config_digest: str) -> tuple[str, list[bytes | None]]:
    """The key a plan written now gets, and the inputs' contents it covers."""
    inputs: list[bytes | None] = []
    for name in INPUTS:
        try:
            inputs.append((state_dir / name).read_bytes())
        except FileNotFoundError:
            inputs.append(None)
    return plan_key(config_digest, inputs), inputs


def plan_path(state_dir: Path) -> Path:
    return state_dir / PLAN_FILE


def written_key(state_dir: Path) -> str | None:
    """The key of the plan in the state dir (its first two lines only), or None."""
    try:
        with open(plan_path(state_dir), "rb") as fh:
            magic = fh.readline(64)
            head = fh.readline(256)
    except OSError:
        return None
    if magic != MAGIC or not head.startswith(b"key "):
        return None
    return head[4:].strip().decode(errors="replace")


def write_plan(state_dir: Path, plan: Plan | None) -> None:
    """Write ``plan`` whole (temporary file, then rename), or remove the plan (None).
    OSError leaves the old file."""
    path = plan_path(state_dir)
    if plan is None:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_suffix(".tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(plan.encode())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
