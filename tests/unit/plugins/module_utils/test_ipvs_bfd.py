# Copyright (c) vigil developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the IPVS and BFD modules decide from the API's data (pure functions, no agent).

The dicts carry the keys the agent's ``GET /v1/ipvs/virtual_servers``, ``/v1/vrrp/...``
and ``/v1/bfd/sessions`` give; the modules against real agents are in the integration
targets (tests/integration/targets).
"""

from __future__ import annotations

import pytest
from ansible_collections.vigil.ha.plugins.module_utils._agent import VigilError
from ansible_collections.vigil.ha.plugins.module_utils._bfd import (
    select_sessions,
    session_path,
    session_plan,
)
from ansible_collections.vigil.ha.plugins.module_utils._ipvs import (
    find_real_server,
    holds_vip,
    real_server_path,
    real_server_plan,
    select_virtual_servers,
    service_addresses,
)

WEB = {
    "name": "web",
    "services": ["tcp 10.0.0.100:80", "tcp [fd00::100]:80"],
    "real_servers": [
        {"name": "10.0.1.1:80", "address": "10.0.1.1", "drained": False},
        {"name": "10.0.1.1:81", "address": "10.0.1.1", "drained": True},
        {"name": "[fd00::2]:80", "address": "fd00::2", "drained": False},
    ],
}
MARK = {"name": "mark", "services": ["fwmark 7 (IPv4)"], "real_servers": []}


def test_real_servers_are_found_by_name_or_unique_address() -> None:
    assert find_real_server(WEB, "10.0.1.1:81")["drained"] is True
    assert find_real_server(WEB, "fd00::2")["name"] == "[fd00::2]:80"
    assert find_real_server(WEB, "[fd00::2]")["name"] == "[fd00::2]:80"
    with pytest.raises(VigilError, match=r"'10.0.1.1' is ambiguous in web; give the port"):
        find_real_server(WEB, "10.0.1.1")
    with pytest.raises(VigilError) as err:
        find_real_server(WEB, "10.0.1.9")
    assert err.value.msg == (
        "no real server '10.0.1.9' in web; it has: 10.0.1.1:80, 10.0.1.1:81, [fd00::2]:80"
    )


def test_virtual_servers_are_selected_by_name() -> None:
    assert select_virtual_servers([WEB, MARK], None) == [WEB, MARK]
    assert select_virtual_servers([WEB, MARK], "mark") == [MARK]
    with pytest.raises(VigilError, match=r"^unknown virtual server 'x'; this agent has: mark, web"):
        select_virtual_servers([WEB, MARK], "x")


@pytest.mark.parametrize(
    ("drained", "state", "action"),
    [
        (False, "drained", "drain"),
        (True, "drained", None),
        (True, "enabled", "enable"),
        (False, "enabled", None),
    ],
)
def test_the_real_server_plan(drained: bool, state: str, action: str | None) -> None:
    assert real_server_plan({"drained": drained}, state) == action


def test_paths_quote_every_name() -> None:
    assert (
        real_server_path("web/x", "[fd00::2]:80", "drain")
        == "/v1/ipvs/virtual_servers/web%2Fx/real_servers/%5Bfd00%3A%3A2%5D%3A80/drain"
    )
    assert session_path("up stream", "shutdown") == "/v1/bfd/sessions/up%20stream/shutdown"


def vrrp(state: str, address: str, present: bool) -> dict[str, object]:
    return {"name": "VI_1", "state": state, "vips": [{"address": address, "present": present}]}


def test_the_vip_holder_is_the_master_with_the_address_present() -> None:
    assert service_addresses(WEB) == ["10.0.0.100", "fd00::100"]
    assert holds_vip(WEB, [vrrp("MASTER", "10.0.0.100/24", True)]) is True
    assert holds_vip(WEB, [vrrp("MASTER", "10.0.0.100/24", False)]) is False
    assert holds_vip(WEB, [vrrp("BACKUP", "10.0.0.100/24", False)]) is False
    marked = dict(MARK, ha_suspend={"instance": "VI_1", "vrrp_state": "MASTER"})
    assert holds_vip(marked, []) is True
    with pytest.raises(VigilError, match=r"mark: no VRRP instance .* use director: all"):
        holds_vip(MARK, [vrrp("MASTER", "10.0.0.100/24", True)])


def test_the_bfd_session_plan_is_about_admin_down_only() -> None:
    assert session_plan({"state": "Up"}, "disabled") == "shutdown"
    assert session_plan({"state": "Down"}, "disabled") == "shutdown"
    assert session_plan({"state": "AdminDown"}, "disabled") is None
    assert session_plan({"state": "AdminDown"}, "enabled") == "enable"
    assert session_plan({"state": "Init"}, "enabled") is None
    with pytest.raises(VigilError, match=r"^unknown BFD session 'b'; this agent has: a$"):
        select_sessions([{"name": "a"}], "b")
