"""keepalived's bfd_instance -> vigil's bfd.sessions (vigilctl import-keepalived)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.keepalived import import_keepalived
from vigil.subsystems import validate_data

pytestmark = pytest.mark.unit

CONF = """\
global_defs {
    router_id lb1
    bfd_rt_priority 50
}
bfd_instance gw {
    neighbor_ip 10.0.0.254
    source_ip 10.0.0.1
    min_rx 50
    min_tx 40
    multiplier 3
    passive
    ttl 255
    vrrp
}
bfd_instance gw6 {
    neighbor_ip fd00::fe
    hoplimit 64
    max_hops 2
    idle_tx 2000
    disabled
    bogus 1
}
bfd_instance gw {
    neighbor_ip 10.0.0.253
}
bfd_instance broken {
    source_ip 10.0.0.1
}
"""


def test_bfd_instances_become_sessions(tmp_path: Path) -> None:
    path = tmp_path / "keepalived.conf"
    path.write_text(CONF)
    result = import_keepalived(str(path))
    assert result.config["bfd"] == {
        "sessions": [
            {
                "name": "gw",
                "peer": "10.0.0.254",
                "local": "10.0.0.1",
                "min_tx": 0.04,
                "min_rx": 0.05,
                "multiplier": 3,
                "passive": True,
            },
            # keepalived's defaults written out: vigil's own (300 ms x 3) differ
            {
                "name": "gw6",
                "peer": "fd00::fe",
                "min_tx": 0.01,
                "min_rx": 0.01,
                "multiplier": 5,
                "admin_down": True,
            },
        ]
    }
    unsupported = {u.keyword: u for u in result.unsupported}
    assert unsupported["hoplimit 64"].line == 17 and "TTL/hop limit 255" in (
        unsupported["hoplimit 64"].reason
    )
    assert "multihop session (UDP 4784" in unsupported["max_hops 2"].reason
    assert "once a second" in unsupported["idle_tx 2000"].reason
    assert unsupported["bogus"].reason == "unknown in bfd_instance gw6"
    # keepalived's BFD process priority becomes vigild's (one loop for everything)
    assert "bfd_rt_priority" not in unsupported
    assert result.config["global"]["realtime_priority"] == 50
    assert any("takes the highest *_rt_priority" in n for n in result.notes)
    assert "ttl 255" not in unsupported
    assert any("bfd_instance gw is defined again" in n for n in result.notes)
    assert any("vrrp (which keepalived process hears the session)" in n for n in result.notes)
    assert any("broken has no neighbor_ip" in e for e in result.errors)
    assert result.origin_of("bfd.sessions[1].admin_down") == (str(path), 20)
    assert list(result.config)[:2] == ["global", "bfd"]
    config = validate_data(result.config, check_files=False)
    assert config.section("bfd").session_names == ("gw", "gw6")
    assert config.globals.realtime_priority == 50
