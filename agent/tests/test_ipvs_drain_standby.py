"""Which director a drain waits on: vigil.ipvs.control.standby_reason (pure).

The VM-host run of vigil.ha.drain found the backup director holding a backend's drain for
its whole timeout: the sync daemon's copy of a closed connection stays "active" there.
"""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from vigil.ipvs.config.model import Endpoint, VirtualServerConfig
from vigil.ipvs.control import Outcome, standby_reason

pytestmark = pytest.mark.unit

VIP = ip_address("10.77.0.110")


def vs(*services: Endpoint, ha_suspend: str | None = None) -> VirtualServerConfig:
    return VirtualServerConfig(name="web", services=services, ha_suspend=ha_suspend)


def no_vrrp(_name: str) -> str | None:
    return None


def test_the_director_holding_the_address_waits() -> None:
    v = vs(Endpoint("tcp", VIP, 80))
    assert standby_reason(v, {ip_address("10.77.0.11"), VIP}, no_vrrp) is None


def test_the_other_director_does_not_and_says_why() -> None:
    v = vs(Endpoint("tcp", VIP, 80))
    why = standby_reason(v, {ip_address("10.77.0.12")}, no_vrrp)
    assert why is not None and "10.77.0.110 is not on this director" in why
    assert "sync daemon" in why
    assert Outcome.STANDBY == "standby"


def test_a_group_is_carried_where_any_of_its_addresses_is() -> None:
    other = ip_address("fd00:77::110")
    v = vs(Endpoint("tcp", VIP, 80), Endpoint("tcp", other, 443, family=6))
    assert standby_reason(v, {other}, no_vrrp) is None
    assert standby_reason(v, set(), no_vrrp) is not None


def test_a_firewall_mark_follows_its_ha_suspend_instance() -> None:
    v = vs(Endpoint(fwmark=7), ha_suspend="VI_1")
    assert standby_reason(v, set(), lambda name: "MASTER") is None
    why = standby_reason(v, set(), lambda name: "BACKUP")
    assert why is not None and "VI_1 is BACKUP" in why
    assert "not running" in (standby_reason(v, set(), no_vrrp) or "")


def test_without_an_address_or_instance_nothing_tells_so_it_waits() -> None:
    assert standby_reason(vs(Endpoint(fwmark=7)), set(), no_vrrp) is None
