"""The VM itself: IPVS is there with every scheduler the kernel ships.

That the namespace lab works inside (namespaces, veth, bridge, tunnels) is shown by
test_ipvs_kernel.py's topology, which every test there uses.
"""

from __future__ import annotations

import platform
from pathlib import Path

from tests.lab.vm import IPVS_SCHEDULERS


def _loaded_modules() -> set[str]:
    return {line.split(" ", 1)[0] for line in Path("/proc/modules").read_text().splitlines()}


def _shipped_modules() -> set[str]:
    ipvs = Path("/lib/modules", platform.release(), "kernel/net/netfilter/ipvs")
    return {p.name.split(".ko", 1)[0] for p in ipvs.glob("ip_vs*.ko*")}


def test_ipvs_with_every_scheduler_the_kernel_ships() -> None:
    shipped = {s for s in IPVS_SCHEDULERS if f"ip_vs_{s}" in _shipped_modules()}
    loaded = {s for s in IPVS_SCHEDULERS if f"ip_vs_{s}" in _loaded_modules()}
    assert "ip_vs" in _loaded_modules()
    assert {"rr", "wrr", "lc", "wlc", "sh", "mh"} <= shipped
    assert loaded == shipped, f"shipped but not loaded: {sorted(shipped - loaded)}"
    assert Path("/proc/net/ip_vs").read_text().startswith("IP Virtual Server version")
