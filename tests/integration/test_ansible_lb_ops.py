"""The role and playbooks for a director pair (issue 14 part B) on systemd-nspawn hosts.

Four hosts: lb1 and lb2 (the directors: one VRRP instance, a virtual server ``web``
whose real servers come from the inventory group ``web``, a BFD session between them, the
metrics listener, the alerting rules installed on lb1) and web1, web2 (backends running
``python3 -m http.server`` as a systemd unit). Once per module, in file order:

1. ``vigil.ha.site`` prepares the directors for IPVS: /etc/modules-load.d/vigil-ipvs.conf
   (ip_vs, the scheduler's module, nf_conntrack for NAT), /etc/sysctl.d/90-vigil-ipvs.conf
   with ip_forward for NAT, and applies ip_forward now (read back from /proc over SSH);
   the unit passes --metrics-listen and the controller namespace scrapes GET /metrics over
   TCP; the rules file lands where asked; the BFD session is Up on both; a rerun changes
   nothing.
2. The same inventory with IPVS verification on fails, naming the host and that the kernel
   has no IPVS (these hosts share the host's kernel, which has none: loading modules is
   off, as are the ipvsadm package (no package mirror here) and, in 1, the IPVS part of the
   verification; the real kernel side is tested in the VM suite).
3. ``vigil.ha.status`` prints the VRRP, virtual-server and BFD tables.
4. ``vigil.ha.drain``: an unknown virtual server and a backend that is not a real server
   fail before anything is drained; with a good inventory the roll stops at the first
   backend because the agent cannot drain without IPVS (503), and the second backend is
   never touched (its drain flag read from the agents' API stays false).
5. With lb1's BFD session shut down (vigil.ha.bfd_session), the role's verification fails
   naming lb2's session as Down, and not lb1's (AdminDown on purpose); then it comes back.
"""

from __future__ import annotations

import copy
import functools
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.hosts.fixtures import hosts_rootfs, module_host_lab, stash_lab  # noqa: F401
from tests.hosts.hostlab import AnsibleResult, HostLab
from tests.hosts.scenario import agent_get, bfd_states
from tests.lab.capture import in_netns
from tests.lab.waiting import wait_for

pytestmark = pytest.mark.hosts

TIMEOUT = 900.0
DIRECTORS = ("lb1", "lb2")
BACKENDS = ("web1", "web2")
VIP = "10.77.0.110"
RULES_DEST = "/etc/vigil-lab-rules/vigil-alerts.yml"

CLUSTER: dict[str, Any] = {
    "global": {"log_level": "info"},
    "vrrp_instances": [
        {
            "name": "VI_LB",
            "interface": "host0",
            "vrid": 70,
            "version": 3,
            "advert_interval": 1,
            "virtual_ipaddresses": [f"{VIP}/24"],
        }
    ],
    "virtual_servers": [
        {
            "name": "web",
            "address": VIP,
            "port": 80,
            "scheduler": "rr",
            "forwarding": "nat",
            "delay_loop": 1,
            "real_servers_from": {"group": "web", "port": 8080, "checks": [{"type": "tcp"}]},
        }
    ],
    "bfd": {"pair": True},
}


class LbLab:
    def __init__(self, hl: HostLab) -> None:
        self.hl = hl

    def inventory(self, name: str, **extra_vars: Any) -> Any:
        hl = self.hl
        directors = {
            h: {
                "ansible_host": hl.host(h).address,
                "vigil_node": {"router_id": h, "address": hl.host(h).address},
                "vigil_metrics_listen": f"{hl.host(h).address}:9650",
            }
            for h in DIRECTORS
        }
        backends = {
            h: {
                "ansible_host": hl.host(h).address,
                "vigil_real_server": {"address": hl.host(h).address},
            }
            for h in BACKENDS
        }
        lb_vars: dict[str, Any] = {
            "vigil_group": "lb",
            "vigil_cluster": copy.deepcopy(CLUSTER),
            "vigil_ipvs_packages": [],
            "vigil_ipvs_load_modules": False,
            "vigil_verify_ipvs": False,
            "vigil_alert_rules_dest": RULES_DEST,
            "vigil_alert_rules_host": "lb1",
        }
        lb_vars.update(extra_vars)
        data = {
            "all": {
                "vars": hl.connection_vars(),
                "children": {
                    "vigil": {"children": {"lb": {"hosts": directors, "vars": lb_vars}}},
                    "web": {"hosts": backends},
                },
            }
        }
        path = hl.lab.workdir / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def play(self, inv: Any, playbook: str, *extra: str) -> AnsibleResult:
        return self.hl.playbook(inv, playbook, *extra, timeout=TIMEOUT)

    def journal(self, host: str = "lb1") -> str:
        res = self.hl.ssh(host, "journalctl -u vigild -n 40 --no-pager", check=False)
        return f"--- journalctl -u vigild on {host}\n{res.stdout}{res.stderr}"


@pytest.fixture(scope="module")
def lb(module_host_lab: HostLab) -> Iterator[LbLab]:  # noqa: F811
    hl = module_host_lab
    hl.boot([*DIRECTORS, *BACKENDS], timeout=120)
    for h in BACKENDS:
        addr = hl.host(h).address
        hl.ssh(
            h,
            "systemd-run --unit=web --property=Restart=always "
            f"python3 -m http.server 8080 --bind {addr}",
        )
    yield LbLab(hl)


def sysctl(hl: HostLab, host: str, key: str) -> str:
    return hl.ssh(host, f"cat /proc/sys/{key.replace('.', '/')}").stdout.strip()


def test_site_prepares_directors_and_converges(lb: LbLab, request: pytest.FixtureRequest) -> None:
    hl = lb.hl
    stash_lab(request, hl)
    for h in DIRECTORS:
        assert sysctl(hl, h, "net.ipv4.ip_forward") == "0", h
    inv = lb.inventory("lb.yml")
    res = lb.play(inv, "vigil.ha.site")
    assert res.returncode == 0, res.describe() + lb.journal()
    for h in DIRECTORS:
        text = hl.ssh(h, "cat /etc/modules-load.d/vigil-ipvs.conf").stdout
        modules = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
        assert modules == ["ip_vs", "ip_vs_rr", "nf_conntrack"], text
        conf = hl.ssh(h, "cat /etc/sysctl.d/90-vigil-ipvs.conf").stdout
        assert "net.ipv4.ip_forward = 1" in conf and "net.ipv4.vs.conntrack = 1" in conf, conf
        assert sysctl(hl, h, "net.ipv4.ip_forward") == "1", h
        assert sysctl(hl, h, "net.ipv4.conf.all.send_redirects") == "0", h
        unit = hl.ssh(h, "systemctl cat vigild").stdout
        assert f"--metrics-listen {hl.host(h).address}:9650" in unit
        assert bfd_states(hl, h) == {"peer": "Up"}, h
        real = agent_get(hl, h, "/v1/ipvs/virtual_servers/web")["real_servers"]
        assert sorted(r["name"] for r in real) == sorted(
            f"{hl.host(b).address}:8080" for b in BACKENDS
        ), real

    def scrape(addr: str) -> str:
        with urllib.request.urlopen(f"http://{addr}:9650/metrics", timeout=10) as resp:
            return str(resp.read().decode())

    for h in DIRECTORS:
        body = in_netns(hl.lab.node("ctl").ns, functools.partial(scrape, hl.host(h).address))
        assert 'vigil_bfd_session_up{session="peer"} 1.0' in body, h
        assert 'vigil_vrrp_state{instance="VI_LB",state="MASTER"}' in body, h
    shipped = (
        hl.collections_dir() / "ansible_collections/vigil/ha/monitoring/vigil-alerts.yml"
    ).read_text()
    assert hl.ssh("lb1", f"cat {RULES_DEST}").stdout == shipped
    assert hl.ssh("lb2", f"test -e {RULES_DEST}", check=False).returncode != 0

    again = lb.play(inv, "vigil.ha.site")
    assert again.returncode == 0, again.describe()
    assert again.total("changed") == 0, again.describe()


def test_ipvs_verification_names_the_missing_kernel(
    lb: LbLab, request: pytest.FixtureRequest
) -> None:
    stash_lab(request, lb.hl)
    inv = lb.inventory("lb-verify.yml", vigil_verify_ipvs=True, vigil_verify_attempts=2)
    res = lb.play(inv, "vigil.ha.site")
    assert res.returncode != 0, res.describe()
    assert "lb1: IPVS is not available in its kernel" in res.stdout, res.describe()
    assert "load ip_vs (vigil_ipvs_prepare)" in res.stdout, res.describe()


def test_status_shows_virtual_servers_and_bfd(lb: LbLab, request: pytest.FixtureRequest) -> None:
    hl = lb.hl
    stash_lab(request, hl)
    res = lb.play(lb.inventory("lb.yml"), "vigil.ha.status")
    assert res.returncode == 0, res.describe()
    out = res.stdout
    assert "HOST  INSTANCE  STATE" in out and "VI_LB" in out, out
    assert "VIRTUAL SERVER" in out and "NO IPVS" in out, out  # this kernel has none
    assert "SESSION" in out, out
    for h in DIRECTORS:
        peer = hl.host(DIRECTORS[1] if h == DIRECTORS[0] else DIRECTORS[0]).address
        assert any(
            line.split()[:5] == [h, "peer", "Up", "Up", peer]
            for line in (ln.strip().strip('",') for ln in out.splitlines())
        ), out
    assert res.total("changed") == 0


def drained(hl: HostLab) -> dict[str, dict[str, bool]]:
    out: dict[str, dict[str, bool]] = {}
    for h in DIRECTORS:
        real = agent_get(hl, h, "/v1/ipvs/virtual_servers/web")["real_servers"]
        out[h] = {r["name"]: r["drained"] for r in real}
    return out


def test_drain_refuses_bad_input_and_stops_at_first_failure(
    lb: LbLab, request: pytest.FixtureRequest
) -> None:
    hl = lb.hl
    stash_lab(request, hl)
    inv = lb.inventory("lb.yml")
    before = drained(hl)
    assert all(not v for per in before.values() for v in per.values()), before

    unknown = lb.play(
        inv,
        "vigil.ha.drain",
        "-e",
        "vigil_drain_virtual_server=www",
        "-e",
        "vigil_drain_backends=web",
    )
    assert unknown.returncode != 0
    assert "www" in unknown.stdout and "web" in unknown.stdout, unknown.describe()

    not_real = lb.play(
        inv, "vigil.ha.drain", "-e", "vigil_drain_virtual_server=web",
        "-e", "vigil_drain_backends=lb2",
    )  # fmt: skip
    assert not_real.returncode != 0
    assert "has no real server for lb2" in not_real.stdout, not_real.describe()
    assert drained(hl) == before

    marker = hl.lab.workdir / "maintenance.yml"
    marker.write_text(
        yaml.safe_dump([{"name": "mark", "ansible.builtin.command": "touch /run/maintained"}])
    )
    res = lb.play(
        inv, "vigil.ha.drain", "-e", "vigil_drain_virtual_server=web",
        "-e", "vigil_drain_backends=web", "-e", f"vigil_drain_tasks={marker}",
    )  # fmt: skip
    assert res.returncode != 0
    assert "IPVS" in res.stdout and "not available" in res.stdout, res.describe()
    # The roll stopped at web1: no maintenance ran anywhere, web2 was never drained.
    for h in BACKENDS:
        assert hl.ssh(h, "test -e /run/maintained", check=False).returncode != 0, h
    assert "web2" not in {line.split()[0] for line in res.stdout.splitlines() if "ok=" in line}
    assert drained(hl) == before


def test_bfd_verification_names_a_session_that_is_down(
    lb: LbLab, request: pytest.FixtureRequest
) -> None:
    hl = lb.hl
    stash_lab(request, hl)
    inv = lb.inventory("lb.yml")
    down = hl.ansible(
        "ansible",
        [
            "-i",
            str(inv),
            "lb1",
            "-b",
            "-m",
            "vigil.ha.bfd_session",
            "-a",
            "name=peer state=disabled",
        ],
    )
    assert down.returncode == 0, down.describe()
    try:
        wait_for(
            lambda: bfd_states(hl, "lb2") == {"peer": "Down"},
            timeout=20,
            interval=0.5,
            what="lb2's session Down after lb1 shut it down",
        )
        quick = lb.inventory("lb-quick.yml", vigil_verify_attempts=2)
        res = lb.play(quick, "vigil.ha.site")
        assert res.returncode != 0, res.describe()
        lb1 = hl.host("lb1").address
        # lb1's own session is AdminDown by an operator: not a problem; lb2's is.
        assert f"lb2: BFD session peer to {lb1} is Down" in res.stdout, res.describe()
        assert "lb1: BFD session" not in res.stdout, res.describe()
    finally:
        up = hl.ansible(
            "ansible",
            ["-i", str(inv), "lb1", "-b", "-m", "vigil.ha.bfd_session",
             "-a", "name=peer state=enabled"],
        )  # fmt: skip
        assert up.returncode == 0, up.describe()
    wait_for(
        lambda: bfd_states(hl, "lb1") == {"peer": "Up"} and bfd_states(hl, "lb2") == {"peer": "Up"},
        timeout=30,
        interval=0.5,
        what="the session Up again on both",
    )
