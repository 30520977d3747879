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

It is written by the running agent for its own config (:data:`PLAN_FILE`) and by
``vigild --check`` for the config it accepted (:func:`prepare`, :data:`CHECKED_PLAN_FILE`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from vigil.faststart import (
    CHECKED_PLAN_FILE,
    MAGIC,
    PLAN_FILE,
    Plan,
    PlanService,
    family_id,
    plan_key,
)
from vigil.incremental import Slicer
from vigil.journalfile import write_raw

from .config import IpvsConfig, RealServerConfig
from .control import CONTROL_FILE, DrainStore
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

__all__ = [
    "INPUTS",
    "assumed_view",
    "build_plan",
    "is_alpha",
    "prepare",
    "start_table",
    "take_checked",
    "write_plan",
]

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


def _plan_services(section: IpvsConfig, drained: Mapping[str, set[str]]) -> Iterator[PlanService]:
    table = start_table(section, drained)
    for cfg in section.virtual_servers:
        for ep in cfg.services:
            skey = service_key(ep)
            entry = table[skey]
            yield PlanService(
                service_key_text(ep),
                service_entry(ep, cfg.name),
                request_payload(IPVS_CMD_NEW_SERVICE, service_request(entry.service)),
                request_payload(IPVS_CMD_DEL_SERVICE, service_key_request(skey)),
                [
                    request_payload(IPVS_CMD_NEW_DEST, dest_request(skey, dest))
                    for dest in entry.destinations.values()
                ],
            )


async def build_plan(
    section: IpvsConfig,
    drained: Mapping[str, set[str]],
    key: str,
    slicer: Slicer | None = None,
    family_id: int = 0,
) -> Plan:
    """The plan of ``section`` (encoding 10,000 requests is seconds under TCG: in slices)."""
    slicer = slicer or Slicer()
    services: list[PlanService] = []
    for service in _plan_services(section, drained):
        services.append(service)
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


def plan_path(state_dir: Path, name: str = PLAN_FILE) -> Path:
    return state_dir / name


def written_key(state_dir: Path, name: str = PLAN_FILE) -> str | None:
    """The key of the plan ``name`` in the state dir (its first lines only), or None."""
    return _head(state_dir, name)[0]


def _head(state_dir: Path, name: str) -> tuple[str | None, int | None]:
    """(key, family id) of the plan ``name`` from its first lines; None for what is not
    there."""
    try:
        with open(plan_path(state_dir, name), "rb") as fh:
            magic = fh.readline(64)
            head = fh.readline(256)
            family = fh.readline(256).split()
    except OSError:
        return None, None
    if magic != MAGIC or not head.startswith(b"key "):
        return None, None
    key = head[4:].strip().decode(errors="replace")
    if len(family) != 3 or family[0] != b"family" or not family[2].isdigit():
        return key, None
    return key, int(family[2])


def write_plan(state_dir: Path, plan: Plan | None, name: str = PLAN_FILE) -> None:
    """Write ``plan`` whole (temporary file, then rename, as the journal is written), or
    remove the plan (None). OSError leaves the old file."""
    path = plan_path(state_dir, name)
    if plan is None:
        path.unlink(missing_ok=True)
        return
    write_raw(path, plan.encode())


def take_checked(state_dir: Path, key: str, family: int) -> bool:
    """Make the checked config's plan the running one's if it is for ``key`` and the
    family id ``family`` (the agent now runs the config ``vigild --check`` accepted): no
    need to build it again."""
    if _head(state_dir, CHECKED_PLAN_FILE) != (key, family):
        return False
    try:
        os.replace(plan_path(state_dir, CHECKED_PLAN_FILE), plan_path(state_dir))
    except OSError:
        return False
    return True


def prepare(section: IpvsConfig, config_digest: str | None, state_dir: Path) -> str | None:
    """``vigild --check`` accepted a config: write its start plan, so that its first start
    programs IPVS before it reads the config (:data:`CHECKED_PLAN_FILE`: the running
    config's own plan stays as it is). Nothing when the config was not read from a file or
    has no virtual servers, or when the state dir already has this plan. Returns what
    went wrong for the check to mention (not a config problem: its verdict stands); an
    unprivileged check, which cannot write the state dir, is no problem and says nothing."""
    if config_digest is None or not section.virtual_servers:
        return None
    key, inputs = current_key(state_dir, config_digest)
    if key in (written_key(state_dir), written_key(state_dir, CHECKED_PLAN_FILE)):
        return None
    drained = DrainStore(state_dir).parse(inputs[0])
    plan = Plan(
        key,
        FAMILY,
        NAMESPACE,
        list(INPUTS),
        list(_plan_services(section, drained)),
        family_id(FAMILY) or 0,
    )
    try:
        write_plan(state_dir, plan, CHECKED_PLAN_FILE)
    except PermissionError:
        return None
    except OSError as exc:
        return f"no IPVS start plan written in {state_dir}: {exc.strerror or exc}"
    return None
