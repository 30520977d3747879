"""keepalived and vigil, one keepalived.conf: the same kernel table.

One keepalived.conf (VRRP with a VIP, LVS virtual servers in every form: address:port with
NAT and persistence, a firewall mark with direct routing, a virtual_server_group with
tunnelling; HTTP_GET and TCP_CHECK checkers; lvs_sync_daemon bound to the VRRP instance)
is run by Debian's keepalived in the director namespace of the session's single-director
lab (conftest.py ``ipvs_lab``), then converted with ``vigilctl import-keepalived`` and run
by vigild in the same namespace, one after the other. Once each has converged (VRRP
master, every virtual server with all its real servers, the sync daemon in master mode),
``ipvsadm -Ln`` (and ``ipvsadm -L --daemon``) are taken; sorted, they must be the same.
Each daemon must also leave an empty table when stopped, as both promise.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from vigil.cli import main as vigilctl

from tests.lab.ipvs import IpvsLab
from tests.lab.pytest_plugin import LAB_KEY
from tests.lab.waiting import wait_for
from tests.vm.conftest import AGENT_START

VRRP_VIP = "10.62.0.150"

# keepalived 2.2.7 syntax; the real servers are the lab's two busybox httpd (port 80).
KEEPALIVED_CONF = f"""\
global_defs {{
    router_id ka_director
    lvs_sync_daemon eth0 VI_LB id 63
}}

vrrp_instance VI_LB {{
    state BACKUP
    interface eth0
    virtual_router_id 63
    priority 150
    advert_int 1
    virtual_ipaddress {{
        {VRRP_VIP}/24
    }}
}}

virtual_server {VRRP_VIP} 80 {{
    delay_loop 2
    lb_algo wrr
    lb_kind NAT
    persistence_timeout 300
    protocol TCP
    real_server 10.62.1.11 80 {{
        weight 3
        HTTP_GET {{
            url {{
                path /
                status_code 200
            }}
            connect_timeout 3
        }}
    }}
    real_server 10.62.1.12 80 {{
        weight 1
        inhibit_on_failure
        TCP_CHECK {{
            connect_timeout 3
        }}
    }}
}}

virtual_server fwmark 62 {{
    delay_loop 2
    lb_algo sh
    sh-port
    lb_kind DR
    protocol TCP
    real_server 10.62.1.11 80 {{
        weight 1
        TCP_CHECK {{
            connect_port 80
            connect_timeout 3
        }}
    }}
    real_server 10.62.1.12 80 {{
        weight 2
        TCP_CHECK {{
            connect_port 80
            connect_timeout 3
        }}
    }}
}}

virtual_server_group web_tun {{
    10.62.0.151 80
    10.62.0.152 80
}}

virtual_server group web_tun {{
    delay_loop 2
    lb_algo lc
    lb_kind TUN
    protocol TCP
    real_server 10.62.1.11 80 {{
        TCP_CHECK {{
            connect_timeout 3
        }}
    }}
    real_server 10.62.1.12 80 {{
        TCP_CHECK {{
            connect_timeout 3
        }}
    }}
}}
"""

#: what "converged" means for this conf: every service with both real servers
SERVICES = {
    f"TCP {VRRP_VIP}:80": 2,
    "FWM 62": 2,
    "TCP 10.62.0.151:80": 2,
    "TCP 10.62.0.152:80": 2,
}


@pytest.fixture(autouse=True)
def _logs_on_failure(request: pytest.FixtureRequest, ipvs_lab: IpvsLab) -> None:
    request.node.stash[LAB_KEY] = ipvs_lab.lab  # a failure report gets the daemons' logs


def listing(ipl: IpvsLab) -> list[tuple[str, ...]]:
    """``ipvsadm -Ln`` as sorted blocks: (service line, its sorted destination lines...),
    every line with its whitespace normalised; the header lines dropped."""
    blocks: list[list[str]] = []
    for line in ipl.ipvsadm("-Ln").splitlines():
        text = " ".join(line.split())
        if not text or text.startswith(("IP Virtual Server", "Prot ", "-> RemoteAddress")):
            continue
        if text.startswith("->"):
            assert blocks, f"a destination before any service: {line!r}"
            blocks[-1].append(text)
        else:
            blocks.append([text])
    return sorted((b[0], *sorted(b[1:])) for b in blocks)


def daemon_lines(ipl: IpvsLab) -> list[str]:
    return sorted(" ".join(x.split()) for x in ipl.ipvsadm("-L", "--daemon").splitlines() if x)


def converged(ipl: IpvsLab) -> Callable[[], list[tuple[str, ...]] | None]:
    """The listing once VRRP holds the VIP, every service has all its real servers and
    the sync daemon runs as master (keepalived starts it as backup); None before."""

    def check() -> list[tuple[str, ...]] | None:
        blocks = listing(ipl)
        have = {" ".join(b[0].split()[:2]): len(b) - 1 for b in blocks}
        if have != SERVICES:
            return None
        if not ipl.lab.has_address(ipl.director, f"{VRRP_VIP}/24", "eth0"):
            return None
        if not any(line.startswith("master sync daemon") for line in daemon_lines(ipl)):
            return None
        return blocks

    return check


def empty(ipl: IpvsLab) -> bool:
    return (
        listing(ipl) == []
        and daemon_lines(ipl) == []
        and not ipl.lab.has_address(ipl.director, f"{VRRP_VIP}/24", "eth0")
    )


def test_keepalived_and_vigil_program_the_same_table_from_one_keepalived_conf(
    ipvs_lab: IpvsLab, tmp_path: Path
) -> None:
    ipl, lab = ipvs_lab, ipvs_lab.lab
    assert empty(ipl), "the director must start clean"
    conf = tmp_path / "keepalived.conf"
    conf.write_text(KEEPALIVED_CONF)

    # 1. keepalived, as Debian ships it
    ka = lab.start_keepalived(ipl.director, KEEPALIVED_CONF, timeout=60)
    try:
        ka_table = wait_for(
            converged(ipl), timeout=120, interval=0.5, what="keepalived's table",
            observe=lambda: (listing(ipl), daemon_lines(ipl)),
        )  # fmt: skip
        ka_daemons = daemon_lines(ipl)
    finally:
        ka.stop(timeout=30)
    wait_for(lambda: empty(ipl), timeout=30, interval=0.5, what="keepalived to clean up",
             observe=lambda: (listing(ipl), daemon_lines(ipl)))  # fmt: skip

    # 2. the same file through `vigilctl import-keepalived` (its entry point, called in this
    # process: a vigilctl process costs a minute in a busy VM), run by vigild
    out, err = io.StringIO(), io.StringIO()
    code = vigilctl(["import-keepalived", str(conf)], out, err)
    assert code == 0, out.getvalue() + err.getvalue()
    assert err.getvalue() == "", err.getvalue()  # every keyword carried: nothing unsupported
    vigil_conf = tmp_path / "vigil.yml"
    vigil_conf.write_text(out.getvalue())
    agent = lab.start_vigild(ipl.director, vigil_conf, wait=False, log_level="info")
    try:
        agent.wait_ready(timeout=AGENT_START)
        vigil_table = wait_for(
            converged(ipl), timeout=120, interval=0.5, what="vigil's table",
            observe=lambda: (listing(ipl), daemon_lines(ipl)),
        )  # fmt: skip
        vigil_daemons = daemon_lines(ipl)
    finally:
        agent.stop(timeout=60)
    wait_for(lambda: empty(ipl), timeout=30, interval=0.5, what="vigild to clean up",
             observe=lambda: (listing(ipl), daemon_lines(ipl)))  # fmt: skip

    print("ipvsadm -Ln, sorted, keepalived and vigil:", *ka_table, sep="\n  ")
    assert vigil_table == ka_table
    assert vigil_daemons == ka_daemons
