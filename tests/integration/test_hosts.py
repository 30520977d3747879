"""Self-tests of the nspawn host lab (tests/hosts): real Debian hosts reached over SSH.

What the Ansible end-to-end tests rely on: hosts boot from the shared cached rootfs with
their own identity (hostname, machine-id, SSH host key, address), run systemd with sshd and
networkd, may change their own network (CAP_NET_ADMIN), answer Ansible, and leave nothing
behind (processes, namespaces, writes to the shared rootfs).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.hosts.fixtures import host_lab, hosts_rootfs  # noqa: F401
from tests.hosts.hostlab import HostLab, parse_recap
from tests.hosts.rootfs import _sources_uris, recipe_key
from tests.lab.lab import Lab, netns_exists
from tests.lab.registry import proc_alive

pytestmark = pytest.mark.hosts


def test_sources_parsing_finds_the_bookworm_mirror() -> None:
    deb822 = (
        "Types: deb\n# http://snapshot.debian.org/archive/debian/2025\n"
        "URIs: http://deb.example.org/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://deb.example.org/debian-security\n"
        "Suites: bookworm-security\n"
    )
    assert _sources_uris(deb822)[0] == (
        "http://deb.example.org/debian",
        ["bookworm", "bookworm-updates"],
    )
    one_line = "deb [arch=amd64] http://mirror.example.net/debian bookworm main\n"
    assert _sources_uris(one_line) == [("http://mirror.example.net/debian", ["bookworm"])]
    assert len(recipe_key()) == 12 and recipe_key() == recipe_key()


def test_parse_recap_reads_every_host() -> None:
    out = (
        "TASK [x] ***\nok: [h1]\n\nPLAY RECAP *********\n"
        "h1                         : ok=5    changed=2    unreachable=0    failed=0    "
        "skipped=1    rescued=0    ignored=0   \n"
        "h2                         : ok=4    changed=0    unreachable=0    failed=1    "
        "skipped=0    rescued=0    ignored=0   \n"
    )
    recap = parse_recap(out)
    assert recap["h1"]["changed"] == 2 and recap["h2"]["failed"] == 1
    assert parse_recap("no recap here") == {}


def test_two_hosts_boot_with_their_own_identity(host_lab: HostLab, hosts_rootfs: Path) -> None:  # noqa: F811
    h1, h2 = host_lab.boot(["h1", "h2"])
    seen = {}
    for h in (h1, h2):
        res = h.ssh(
            "hostname; cat /etc/machine-id; cat /etc/ssh/ssh_host_ed25519_key.pub; "
            "readlink /proc/1/exe; systemctl is-system-running || "
            "{ systemctl list-units --failed --no-legend; "
            "journalctl -b --no-pager -n 40 -p warning; }"
        )
        lines = res.stdout.split("\n")
        name, machine_id, hostkey, init, state = lines[:5]
        assert name == h.name
        assert init.endswith("systemd"), f"{h.name}: pid 1 is {init}"
        assert state == "running", f"{h.name}: system state {state}: {res.stdout}"
        seen[h.name] = (machine_id, hostkey)
        assert h.has_address(f"{h.address}/24"), h.addresses()
    assert seen["h1"][0] != seen["h2"][0], "hosts share a machine-id"
    assert seen["h1"][1] != seen["h2"][1], "hosts share an SSH host key"
    # The hosts reach each other on the lab bridge (TCP to the other's sshd).
    probe = (
        'python3 -c \'import socket; s = socket.create_connection(("%s", 22), 2); '
        "print(s.recv(64).decode().strip())'"
    )
    assert h1.ssh(probe % h2.address).stdout.startswith("SSH-2.0-")
    # Names resolve locally (no DNS in the lab).
    assert h1.ssh("getent hosts h2").stdout.split()[0] == h2.address
    # CAP_NET_ADMIN inside: a host may add and remove its own addresses.
    h2.ssh("ip addr add 10.77.0.200/24 dev host0")
    assert h2.has_address("10.77.0.200/24")
    h2.ssh("ip addr del 10.77.0.200/24 dev host0")
    assert not h2.has_address("10.77.0.200/24")
    # The shared rootfs is not written to (volatile overlay).
    h1.ssh("echo written > /root/overlay-marker")
    assert not (hosts_rootfs / "root/overlay-marker").exists()


def test_ansible_reaches_the_hosts(host_lab: HostLab) -> None:  # noqa: F811
    host_lab.boot(["h1", "h2"])
    inv = host_lab.inventory({"pair": ["h1", "h2"]})
    res = host_lab.ansible(
        "ansible", ["-i", str(inv), "pair", "-m", "ansible.builtin.setup",
                    "-a", "filter=ansible_hostname,ansible_default_ipv4,ansible_service_mgr"],
        timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.describe()
    for name in ("h1", "h2"):
        assert f"{name} | SUCCESS" in res.stdout, res.describe()
    assert res.stdout.count('"ansible_service_mgr": "systemd"') == 2, res.describe()
    bad = host_lab.ansible(
        "ansible",
        ["-i", str(inv), "pair", "-m", "ansible.builtin.command", "-a", "false"],
        timeout=60,
    )
    assert bad.returncode != 0 and "FAILED" in bad.stdout, bad.describe()


def test_teardown_leaves_nothing(hosts_rootfs: Path, tmp_path: Path) -> None:  # noqa: F811
    lab = Lab(tmp_path / "lab")
    try:
        hl = HostLab(lab, hosts_rootfs)
        (h1,) = hl.boot(["h1"])
        nspawn_pid, init_pid = h1.process.pid, h1.init_pid
        assert init_pid is not None and proc_alive(init_pid)
        namespaces = [n.ns for n in lab.nodes.values()]
    finally:
        lab.close()
    assert not proc_alive(nspawn_pid), "systemd-nspawn survived the teardown"
    assert not proc_alive(init_pid), "the container's init survived the teardown"
    assert not any(netns_exists(ns) for ns in namespaces)
    assert not lab.shortdir.exists()
    assert os.path.isdir(hosts_rootfs / "etc")
