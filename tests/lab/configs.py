"""Small agent configs the integration tests share."""

from __future__ import annotations

from typing import Any


def one_instance(
    router_id: str, vrid: int, vip: str, *, realtime_priority: int = 0, **instance: Any
) -> dict[str, Any]:
    """A vigild config with one VRRPv3 instance ``VI_1`` on ``eth0`` (priority 150) holding
    ``vip``/24; ``instance`` overrides or adds instance keys."""
    glob: dict[str, Any] = {"router_id": router_id}
    if realtime_priority:
        glob["realtime_priority"] = realtime_priority
    inst = {
        "name": "VI_1",
        "interface": "eth0",
        "vrid": vrid,
        "priority": 150,
        "version": 3,
        "virtual_ipaddresses": [f"{vip}/24"],
        **instance,
    }
    return {"global": glob, "vrrp_instances": [inst]}
