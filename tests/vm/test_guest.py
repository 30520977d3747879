"""The VM itself: IPVS and its schedulers are loaded, and the namespace lab works inside."""

from __future__ import annotations

import platform
from pathlib import Path

from tests.lab import Lab
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


def test_namespace_lab_in_the_guest(lab: Lab) -> None:
    """Namespaces, veths and a bridge (modules in the guest, built in on the host)."""
    lab.add_switch()
    for n, name in enumerate(("a", "b"), start=1):
        lab.add_namespace(name)
        lab.connect(name, "eth0", addrs=[f"10.61.0.{n}/24", f"fd00:61::{n}/64"])
    lab.run("a", ["ping", "-c", "1", "-W", "5", "10.61.0.2"])
    lab.run("a", ["ping", "-6", "-c", "1", "-W", "5", "fd00:61::2"])
