"""IPVS's journal: the services and sync daemons this agent put in the kernel.

The journal itself (a namespace per subsystem, batched atomic writes, "record before
adding, forget after removing") is :mod:`vigil.journal`. IPVS records one entry per
service (``service:tcp|10.0.0.1|80``) before it adds the service, and one per sync daemon
(``sync:master``) before it starts it; destinations are not journalled, since deleting a
service deletes them with it. Removing exactly the journalled services and daemons is
what :func:`cleanup` does, for ``vigild --cleanup`` after a crash.

At start-up the same hook runs, with one difference: services the new config still wants
are **adopted**, not removed. The runtime registers those keys (:func:`adopt_at_startup`)
when the agent builds it, before the hook runs; the hook removes the other entries, and
the runtime then corrects the adopted services in place (the planner's ``set``), so
established connections of an unchanged service survive a restart of vigild.
"""

from __future__ import annotations

import errno
import logging
import weakref
from collections.abc import Iterable
from typing import Any

from vigil.journal import CleanupReport, JournalNamespace

from .config import Endpoint

log = logging.getLogger("vigil.ipvs.journal")

__all__ = [
    "NAMESPACE",
    "adopt_at_startup",
    "cleanup",
    "daemon_entry",
    "daemon_key",
    "service_entry",
    "service_key_text",
]

NAMESPACE = "ipvs"
_ADOPT: weakref.WeakKeyDictionary[JournalNamespace, frozenset[str]] = weakref.WeakKeyDictionary()


def service_key_text(ep: Endpoint) -> str:
    return f"service:{ep.key}"


def daemon_key(state: str) -> str:
    return f"sync:{state}"


def service_entry(ep: Endpoint, vs: str) -> dict[str, Any]:
    return {"kind": "service", "vs": vs, "service": ep.to_dict()}


def daemon_entry(state: str, interface: str, syncid: int) -> dict[str, Any]:
    return {"kind": "sync_daemon", "state": state, "interface": interface, "syncid": syncid}


def adopt_at_startup(ns: JournalNamespace, keys: Iterable[str]) -> None:
    """The start-up clean-up of ``ns`` keeps these entries (the runtime takes them over)."""
    _ADOPT[ns] = frozenset(keys)


async def cleanup(ns: JournalNamespace, report: CleanupReport, netns: str | None = None) -> None:
    """Remove every journalled service and sync daemon (but those adopted at start-up).

    IPVS's clean-up hook (``SubsystemSpec.cleanup``). What cannot be removed stays in the
    journal, so the next start or clean-up retries it.
    """
    from vigil.ipvs.kernel import IpvsError, IpvsKernel

    keep = _ADOPT.pop(ns, frozenset())
    todo = {key: entry for key, entry in ns.entries.items() if key not in keep}
    if keep:
        log.info("ipvs: adopting %d journalled entries the config still wants", len(keep))
    if not todo:
        return
    kernel = IpvsKernel(netns)
    try:
        await kernel.open()
    except IpvsError as exc:
        for key in todo:
            report.failed(key, _what(todo[key]), str(exc))
        return
    try:
        for key, entry in sorted(todo.items()):
            what = _what(entry)
            try:
                if isinstance(entry, dict) and entry.get("kind") == "sync_daemon":
                    await kernel.stop_sync_daemon(entry["state"])
                elif isinstance(entry, dict) and entry.get("kind") == "service":
                    from vigil.ipvs.planner import service_key

                    await kernel.delete_service(service_key(Endpoint.from_dict(entry["service"])))
                else:
                    log.warning("ipvs: ignoring a journal entry of unknown kind: %s", key)
                    ns.forget(key)
                    continue
            except IpvsError as exc:
                if exc.errno in (errno.ESRCH, errno.ENOENT):
                    report.already_gone(key, what)
                    ns.forget(key)
                else:
                    report.failed(key, what, str(exc))
                continue
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("ipvs: ignoring a damaged journal entry %s: %s", key, exc)
                ns.forget(key)
                continue
            report.removed(key, what, kind="ipvs_cleanup", **_data(entry))
            ns.forget(key)
    finally:
        await kernel.close()


def _what(entry: Any) -> str:
    if not isinstance(entry, dict):
        return "a damaged entry"
    if entry.get("kind") == "sync_daemon":
        return f"{entry.get('state')} sync daemon on {entry.get('interface')}"
    try:
        return f"service {Endpoint.from_dict(entry['service'])} ({entry.get('vs')})"
    except (KeyError, TypeError, ValueError):
        return "a damaged service entry"


def _data(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "kind"}
