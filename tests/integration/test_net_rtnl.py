"""Netlink.add_address_now (the synchronous rtnetlink path VRRP uses on failover) against
a real kernel, inside a throw-away namespace.

The adapter's fast path only works in the caller's own namespace, so each case runs a
small Python program inside the node (as vigild runs) and the result is checked from
outside with iproute2. It must do what the pyroute2 path does (tests/integration/
test_net_netlink.py): same attributes, same idempotence, same errors.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from tests.integration.test_net_netlink import find_addr
from tests.lab.lab import Lab

pytestmark = pytest.mark.integration

PROGRAM = """
import json, sys
from ipaddress import ip_interface, IPv4Address
from vigil.net.netlink import Netlink, NetlinkFailure
nl = Netlink()
out = []
for ifname, address, kwargs in json.loads(sys.argv[1]):
    if kwargs.get("broadcast") not in (None, "auto"):
        kwargs["broadcast"] = IPv4Address(kwargs["broadcast"])
    try:
        out.append({"added": nl.add_address_now(ifname, ip_interface(address), **kwargs)})
    except NetlinkFailure as exc:
        out.append({"errno": exc.errno, "error": str(exc)})
    except ValueError as exc:
        out.append({"value_error": str(exc)})
print(json.dumps(out))
"""


@pytest.fixture
def node(lab: Lab) -> str:
    """Node n1 with ve0 on the lab switch; returns its namespace (for ``ip -n``)."""
    lab.add_switch()
    n1 = lab.add_namespace("n1")
    lab.connect(n1, "ve0")
    return n1.ns


def add_now(lab: Lab, _ns: str, *calls: tuple[str, str, dict[str, Any]]) -> list[dict[str, Any]]:
    done = lab.run("n1", [sys.executable, "-c", PROGRAM, json.dumps(calls)], timeout=30)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_ipv4_with_label_scope_and_broadcast(lab: Lab, node: str) -> None:
    results = add_now(
        lab,
        node,
        ("ve0", "10.0.0.100/24", {"label": "ve0:vip"}),
        ("ve0", "10.0.0.100/24", {"label": "ve0:vip"}),
        ("ve0", "10.0.1.1/32", {"scope": "host"}),
        ("ve0", "10.0.2.1/24", {"broadcast": "10.0.2.7"}),
    )
    assert results == [{"added": True}, {"added": False}, {"added": True}, {"added": True}]
    vip = find_addr(node, "ve0", "10.0.0.100")
    assert vip is not None
    assert (vip["prefixlen"], vip["label"], vip["broadcast"], vip["scope"]) == (
        24,
        "ve0:vip",
        "10.0.0.255",
        "global",
    )
    host = find_addr(node, "ve0", "10.0.1.1")
    assert host is not None and host["scope"] == "host" and "broadcast" not in host
    other = find_addr(node, "ve0", "10.0.2.1")
    assert other is not None and other["broadcast"] == "10.0.2.7"


def test_ipv6_is_usable_at_once(lab: Lab, node: str) -> None:
    lab.run("n1", ["sysctl", "-qw", "net.ipv6.conf.ve0.accept_dad=1"])
    assert add_now(lab, node, ("ve0", "fd00::1/64", {}), ("ve0", "fd00::1/64", {})) == [
        {"added": True},
        {"added": False},
    ]
    entry = find_addr(node, "ve0", "fd00::1")
    assert entry is not None and entry["prefixlen"] == 64
    assert entry.get("nodad") is True and not entry.get("tentative")


def test_errors_name_the_address_and_the_reason(lab: Lab, node: str) -> None:
    results = add_now(
        lab,
        node,
        ("eth9", "10.0.0.100/24", {}),
        ("ve0", "10.0.0.100/24", {"label": "eth0:vip"}),
        ("ve0", "fd00::5/64", {"label": "ve0:x"}),
        ("ve0", "10.0.0.1/33", {}),
    )
    assert results[0] == {
        "errno": 19,
        "error": "cannot add 10.0.0.100/24 to eth9: no such device",
    }
    assert (
        "label 'eth0:vip' for 10.0.0.100/24 to ve0: must start with 've0'"
        in (results[1]["value_error"])
    )
    assert "labels are IPv4 only" in results[2]["value_error"]
    assert "value_error" in results[3]  # ip_interface itself refuses /33
    assert find_addr(node, "ve0", "10.0.0.100") is None


def test_kernel_refusal_keeps_its_explanation(lab: Lab, node: str) -> None:
    lab.run("n1", ["sysctl", "-qw", "net.ipv6.conf.ve0.disable_ipv6=1"])
    (result,) = add_now(lab, node, ("ve0", "fd00::9/64", {}))
    assert result.get("errno"), result
    assert result["error"].startswith("cannot add fd00::9/64 to ve0: "), result
    assert "(kernel: " in result["error"], result
    assert find_addr(node, "ve0", "fd00::9") is None


PREPARED = """
import json, subprocess, sys
from ipaddress import ip_interface
from vigil.net import netlink
from vigil.net.netlink import Netlink, NetlinkFailure
nl = Netlink()
out = {}

def add(ifname, address, **kwargs):
    try:
        return {"added": nl.add_address_now(ifname, ip_interface(address), **kwargs)}
    except NetlinkFailure as exc:
        return {"errno": exc.errno}

out["prepared"] = nl.prepare_address("ve0", ip_interface("10.0.0.50/24"), label="ve0:p")
out["stale"] = nl.prepare_address("ve0", ip_interface("10.0.0.51/24"))
out["bad_label"] = nl.prepare_address("ve0", ip_interface("10.0.0.52/24"), label="x:y")
out["no_device"] = nl.prepare_address("eth9", ip_interface("10.0.0.53/24"))
# The requests name ve0 by its index: renamed, it is still the interface they add to.
subprocess.run(["ip", "link", "set", "ve0", "down"], check=True)
subprocess.run(["ip", "link", "set", "ve0", "name", "ve9"], check=True)
out["add_prepared"] = add("ve0", "10.0.0.50/24", label="ve0:p")
out["used_once"] = add("ve0", "10.0.0.50/24", label="ve0:p")
netlink.PREPARED_MAX_AGE = 0.0
out["add_stale"] = add("ve0", "10.0.0.51/24")
print(json.dumps(out))
"""


def test_a_prepared_request_is_sent_as_built_once_while_fresh(lab: Lab, node: str) -> None:
    """prepare_address() packs the request (interface index included) ahead of a takeover;
    add_address_now() sends it once, within PREPARED_MAX_AGE, and else builds anew."""
    done = lab.run("n1", [sys.executable, "-c", PREPARED], timeout=30)
    out = json.loads(done.stdout)
    assert out["prepared"] is True and out["stale"] is True
    assert out["bad_label"] is False and out["no_device"] is False
    assert out["add_prepared"] == {"added": True}
    assert out["used_once"] == {"errno": 19}  # built anew: there is no ve0 any more
    assert out["add_stale"] == {"errno": 19}  # too old: built anew
    vip = find_addr(node, "ve9", "10.0.0.50")
    assert vip is not None and vip["label"] == "ve0:p" and vip["prefixlen"] == 24
    assert find_addr(node, "ve9", "10.0.0.51") is None
