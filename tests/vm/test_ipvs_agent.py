"""vigild's IPVS subsystem on a real kernel: an LVS director pair with real traffic.

One topology and two vigild for the whole module (tests/lab/ipvs.py, build_ha_lab: two
directors running VRRP + IPVS, three real servers and a sorry server running busybox
httpd, a client), because starting vigild costs seconds in the VM. The tests run in file
order and each leaves the pair as it found it (backends running, nothing drained, d1
master); the last one crashes d2's agent on purpose.

``ipvsadm`` (libnl, not pyroute2) is the independent witness of the kernel's table; the
client's requests say which real server answered (each page is its server's name).
"""

from __future__ import annotations

import io
import itertools
import json
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from vigil.cli import main as vigilctl

from tests.lab.agents import AgentHandle
from tests.lab.capture import in_netns
from tests.lab.ipvs import (
    CLIENT,
    CLIENT_DIRECT,
    ECHO_PORT,
    HA_GATEWAY,
    HA_VIPS,
    SORRY,
    EchoServers,
    HaLab,
    Session,
    build_ha_lab,
)
from tests.lab.lab import Lab
from tests.lab.pytest_plugin import LAB_KEY
from tests.lab.waiting import wait_for
from tests.vm.conftest import AGENT_START

NAT, DR, TUN = HA_VIPS["nat"], HA_VIPS["dr"], HA_VIPS["tun"]
DELAY_LOOP, RETRY, DELAY_BEFORE_RETRY = 1.0, 1, 0.5
#: what the VM's slowness (TCG, 15-20x, a shared host) may add to a deadline vigil keeps
SLACK = 2.5
#: the API client's timeout here: under QEMU's emulation a reload can take longer than the
#: client's default 5 s when the host is busy (seen in make test)
CALL_TIMEOUT = 60.0
FAST = {
    "delay_loop": DELAY_LOOP,
    "retry": RETRY,
    "delay_before_retry": DELAY_BEFORE_RETRY,
    "warmup": 0,
    "connect_timeout": 1,
}


def rs(i: int, **extra: Any) -> dict[str, Any]:
    return {"address": f"10.62.1.{10 + i}", **extra}


def echo_service(name: str, vip: str, forwarding: str) -> dict[str, Any]:
    """The long-lived connections' service (an echo on rs1 and rs2), checked every 3 s."""
    return {
        "name": name,
        "address": vip,
        "port": ECHO_PORT,
        "scheduler": "rr",
        "forwarding": forwarding,
        **FAST,
        "delay_loop": 3,
        "real_servers": [rs(i, checks=["tcp"]) for i in (1, 2)],
    }


def director_config(n: int, *, dr_servers: int = 2, sync: bool = True) -> dict[str, Any]:
    http = [{"type": "http", "path": "/", "status_codes": [200]}]
    config: dict[str, Any] = {
        "global": {"router_id": f"d{n}"},
        "vrrp_instances": [
            {
                "name": "VI_1",
                "interface": "eth0",
                "vrid": 62,
                "priority": 150 if n == 1 else 100,
                "advert_interval": 1,
                "virtual_ipaddresses": [f"{vip}/24" for vip in (NAT, DR, TUN, HA_GATEWAY)],
            }
        ],
        "virtual_servers": [
            {
                "name": "web_nat",
                "address": NAT,
                "port": 80,
                "scheduler": "rr",
                "forwarding": "nat",
                **FAST,
                "quorum": 2,
                "sorry_server": {"address": SORRY},
                "ha_suspend": "VI_1",
                "real_servers": [rs(i, checks=http) for i in (1, 2, 3)],
            },
            {
                "name": "web_dr",
                "address": DR,
                "port": 80,
                "scheduler": "rr",
                "forwarding": "dr",
                **FAST,
                "real_servers": [rs(i, checks=["tcp"]) for i in range(1, dr_servers + 1)],
            },
            {
                "name": "web_tun",
                "address": TUN,
                "port": 80,
                "scheduler": "wrr",
                "forwarding": "tun",
                **FAST,
                "real_servers": [rs(i, checks=["tcp"]) for i in (1, 2, 3)],
            },
            echo_service("echo_nat", NAT, "nat"),
            echo_service("echo_dr", DR, "dr"),
        ],
    }
    if sync:
        config["ipvs_sync_daemon"] = {"interface": "eth0", "instance": "VI_1"}
    return config


@dataclass
class Pair:
    ha: HaLab
    d1: AgentHandle
    d2: AgentHandle

    @property
    def lab(self) -> Lab:
        return self.ha.lab


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    lab = Lab(tmp_path_factory.mktemp("ipvs-ha") / "lab")
    try:
        ha = build_ha_lab(lab)
        EchoServers(lab, ha.servers[:2])  # stopped by lab.close()
        d1 = lab.start_vigild(ha.directors[0], director_config(1), wait=False, log_level="info")
        d2 = lab.start_vigild(ha.directors[1], director_config(2), wait=False, log_level="info")
        d1.wait_ready(timeout=AGENT_START)
        d2.wait_ready(timeout=AGENT_START)
        d1.client.timeout = d2.client.timeout = CALL_TIMEOUT
        p = Pair(ha, d1, d2)
        wait_for(lambda: vrrp_state(d1) == "MASTER", timeout=60, what="d1 MASTER")
        yield p
    finally:
        lab.close()


@pytest.fixture(autouse=True)
def _logs_on_failure(request: pytest.FixtureRequest, pair: Pair) -> None:
    request.node.stash[LAB_KEY] = pair.lab  # a failure report gets vigild's logs


# ---------------------------------------------------------------------------- helpers


def vrrp_state(agent: AgentHandle) -> str | None:
    status, body = agent.client.get("/v1/vrrp/instances/VI_1")
    return body.get("state") if status == 200 else None


def table(ha: HaLab, director: int = 0) -> dict[str, dict[str, tuple[str, int, int, int]]]:
    """``ipvsadm -Ln``: service -> destination -> (forward, weight, active, inactive)."""
    out: dict[str, dict[str, tuple[str, int, int, int]]] = {}
    current: dict[str, tuple[str, int, int, int]] | None = None
    for line in ha.ipvsadm(director, "-Ln").splitlines():
        words = line.split()
        if not words or line.startswith(("IP Virtual", "Prot", "  -> RemoteAddress")):
            continue
        if words[0] in ("TCP", "UDP", "SCTP", "FWM"):
            current = out.setdefault(f"{words[0]} {words[1]}", {})
        elif words[0] == "->" and current is not None:
            current[words[1]] = (words[2], int(words[3]), int(words[4]), int(words[5]))
    return out


def daemons(ha: HaLab, director: int) -> set[str]:
    text = ha.ipvsadm(director, "-L", "--daemon")
    return {line.split()[0] for line in text.splitlines() if "sync daemon" in line}


def pages(ha: HaLab, vip: str, count: int, *, source: str = CLIENT) -> list[str]:
    return [ha.get(vip, source=source) for _ in range(count)]


def events(agent: AgentHandle, kind: str, since: int = 0) -> list[dict[str, Any]]:
    status, body = agent.client.get(f"/v1/events?since={since}")
    assert status == 200, body
    return [e for e in body if e["kind"] == kind]


def wait_event(
    agent: AgentHandle,
    kind: str,
    since: int,
    instance: str | None = None,
    real_server: str | None = None,
) -> dict[str, Any]:
    """The first event of ``kind`` after ``since`` (for that virtual / real server); asked
    of the agent's API, which costs no process start in the VM."""

    def find() -> dict[str, Any] | None:
        for e in events(agent, kind, since):
            if instance is not None and e["instance"] != instance:
                continue
            if real_server is not None and e["data"].get("real_server") != real_server:
                continue
            return e
        return None

    found: dict[str, Any] = wait_for(find, timeout=30, interval=0.1, what=f"a {kind} event")
    return found


def last_seq(agent: AgentHandle) -> int:
    return int(agent.client.get("/v1/status")[1]["agent"]["last_event_seq"])


def hold(ha: HaLab, vip: str) -> socket.socket:
    """A connection through the VIP with half a request sent: active until finished."""

    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.bind((CLIENT, 0))
        sock.connect((vip, 80))
        sock.sendall(b"GET / HTTP/1.0\r\nHost: vigil\r\n")
        return sock

    return in_netns(ha.client.ns, connect)


def finish(sock: socket.socket) -> str:
    """Complete a held request; the page (the real server's name)."""
    with sock:
        sock.sendall(b"\r\n")
        chunks = []
        for _ in range(100):
            data = sock.recv(4096)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).partition(b"\r\n\r\n")[2].decode().strip()


def shape(t: dict[str, dict[str, tuple[str, int, int, int]]]) -> dict[str, dict[str, Any]]:
    """A table without its connection counts: service -> destination -> (forward, weight)."""
    return {svc: {d: v[:2] for d, v in dests.items()} for svc, dests in t.items()}


def in_pool(ha: HaLab, vip: str, rip: str) -> bool:
    return f"{rip}:80" in table(ha).get(f"TCP {vip}:80", {})


# ---------------------------------------------------------------------------- tests


def test_both_directors_program_the_same_table_and_follow_vrrp(pair: Pair) -> None:
    ha = pair.ha
    want = {f"TCP {vip}:80" for vip in (NAT, DR, TUN)} | {f"TCP {v}:{ECHO_PORT}" for v in (NAT, DR)}

    def full(director: int) -> dict[str, Any] | None:
        t = table(ha, director)
        return t if set(t) == want and all(t.values()) else None

    t1 = wait_for(lambda: full(0), timeout=30, what="d1's table")
    assert {d: v[0] for d, v in t1[f"TCP {NAT}:80"].items()} == {
        "10.62.1.11:80": "Masq",
        "10.62.1.12:80": "Masq",
        "10.62.1.13:80": "Masq",
    }
    assert {v[0] for v in t1[f"TCP {DR}:80"].values()} == {"Route"}
    assert {v[0] for v in t1[f"TCP {TUN}:80"].values()} == {"Tunnel"}
    # the backup serves nothing now but holds the same services, ready to take over
    t2 = wait_for(lambda: full(1), timeout=30, what="d2's table")
    assert t2[f"TCP {DR}:80"].keys() == t1[f"TCP {DR}:80"].keys()
    # the sync daemon follows VI_1: master daemon on the master, backup on the backup
    assert wait_for(lambda: daemons(ha, 0) == {"master"}, timeout=30, what="d1: master daemon")
    assert wait_for(lambda: daemons(ha, 1) == {"backup"}, timeout=30, what="d2: backup daemon")
    # ha_suspend: the backup does not check web_nat's servers
    view = pair.d2.client.get("/v1/ipvs/virtual_servers/web_nat")[1]
    assert view["ha_suspend"] == {"instance": "VI_1", "vrrp_state": "BACKUP", "suspended": True}
    assert all(r["checks"] == [] for r in view["real_servers"])
    view = pair.d1.client.get("/v1/ipvs/virtual_servers/web_nat")[1]
    assert view["ha_suspend"]["suspended"] is False
    assert all(r["state"] == "UP" and r["checks"] for r in view["real_servers"])


def test_nat_dr_and_tunnel_traffic_reaches_every_backend_by_the_scheduler(pair: Pair) -> None:
    ha = pair.ha
    got = pages(ha, NAT, 6)
    assert sorted(got) == ["rs1", "rs1", "rs2", "rs2", "rs3", "rs3"], got  # rr: 2 each
    assert all(a != b for a, b in itertools.pairwise(got)), got
    assert sorted(set(pages(ha, DR, 4, source=CLIENT_DIRECT))) == ["rs1", "rs2"]
    assert sorted(set(pages(ha, TUN, 6, source=CLIENT_DIRECT))) == ["rs1", "rs2", "rs3"]

    # the agent's view of the same traffic: kernel counters per real server (the kernel
    # folds them in every 2 s, with its rate estimator)
    def counted() -> bool:
        view = pair.d1.client.get("/v1/ipvs/virtual_servers/web_nat")[1]
        return all(r["counters"]["conns"] >= 2 for r in view["real_servers"])

    wait_for(counted, timeout=30, interval=0.5, what="2 connections counted per real server")


def test_a_killed_backend_leaves_the_pool_in_time_and_comes_back(pair: Pair) -> None:
    ha = pair.ha
    rs2 = ha.servers[1]
    since = last_seq(pair.d1)
    t0 = time.time()
    ha.kill_httpd(rs2)
    try:
        down = wait_event(pair.d1, "real_server_down", since, "web_nat", "10.62.1.12:80")
        # vigil's own clock says when it took the server out: the test's polling (a
        # process per ipvsadm, slow in the VM) does not count
        assert down["time"] - t0 <= DELAY_LOOP * (RETRY + 1) + SLACK, down
        wait_for(lambda: not in_pool(ha, NAT, "10.62.1.12"), timeout=30, what="rs2 out")
        got = pages(ha, NAT, 6)  # every request after that succeeds, none on rs2
        assert sorted(set(got)) == ["rs1", "rs3"], got
    finally:
        ha.start_httpd(rs2)
    t1 = time.time()
    up = wait_event(pair.d1, "real_server_up", since, "web_nat", "10.62.1.12:80")
    assert up["time"] - t1 <= DELAY_LOOP + SLACK, up
    wait_for(lambda: in_pool(ha, NAT, "10.62.1.12"), timeout=30, what="rs2 back in web_nat")
    assert sorted(set(pages(ha, NAT, 6))) == ["rs1", "rs2", "rs3"]


def test_quorum_loss_switches_to_the_sorry_server_and_back(pair: Pair) -> None:
    ha = pair.ha
    since = last_seq(pair.d1)
    ha.kill_httpd(ha.servers[0])
    ha.kill_httpd(ha.servers[1])
    try:
        lost = wait_event(pair.d1, "quorum_lost", since, "web_nat")
        assert "live weight 1 < quorum 2" in lost["message"]
        assert "sorry server 10.62.1.99:80 takes over" in lost["message"]
        wait_for(
            lambda: list(table(ha).get(f"TCP {NAT}:80", {})) == [f"{SORRY}:80"],
            timeout=30,
            interval=0.2,
            what="only the sorry server in web_nat",
        )
        assert set(pages(ha, NAT, 3)) == {"sorry"}
        view = pair.d1.client.get("/v1/ipvs/virtual_servers/web_nat")[1]
        assert view["quorum"]["state"] == "DOWN" and view["sorry_server"]["active"] is True
    finally:
        ha.start_httpd(ha.servers[0])
        ha.start_httpd(ha.servers[1])
    wait_event(pair.d1, "quorum_gained", since, "web_nat")
    wait_for(
        lambda: (
            sorted(table(ha).get(f"TCP {NAT}:80", {}))
            == ["10.62.1.11:80", "10.62.1.12:80", "10.62.1.13:80"]
        ),
        timeout=30,
        interval=0.2,
        what="the real servers back, the sorry server gone",
    )
    assert "sorry" not in pages(ha, NAT, 6)


def test_a_drained_backend_gets_no_new_connections_while_its_own_finish(pair: Pair) -> None:
    ha = pair.ha
    pair.d1.client.timeout = 60
    held = hold(ha, NAT)
    path = None
    try:
        busy = wait_for(
            lambda: next((d for d, v in table(ha)[f"TCP {NAT}:80"].items() if v[2] == 1), None),
            timeout=30,
            what="the held connection in IPVS",
        )
        name = {"10.62.1.11:80": "rs1", "10.62.1.12:80": "rs2", "10.62.1.13:80": "rs3"}[busy]
        path = f"/v1/ipvs/virtual_servers/web_nat/real_servers/{busy}"
        status, body = pair.d1.client.post(f"{path}/drain")
        assert status == 200, body
        assert body["message"] == "drained: weight 0 in IPVS"
        assert body["after"]["ipvs_weight"] == 0 and body["after"]["active_connections"] == 1
        assert table(ha)[f"TCP {NAT}:80"][busy][1] == 0  # in IPVS, weight 0
        got = pages(ha, NAT, 6)
        assert name not in got and len(set(got)) == 2, got
        # still held: --wait gives up at the timeout and says so (vigilctl then exits 1:
        # agent/tests/test_ipvs_cli.py; a vigilctl process costs seconds in the VM)
        status, body = pair.d1.client.post(f"{path}/drain", {"wait": True, "timeout": 2})
        assert status == 200, body
        assert body["wait"]["outcome"] == "timeout" and body["wait"]["active_connections"] == 1
        assert "1 active connection(s) still open after 2s" in body["message"]
        # the established connection finishes normally, on the drained server
        assert finish(held) == name
        status, body = pair.d1.client.post(f"{path}/drain", {"wait": True, "timeout": 30})
        assert status == 200, body
        assert body["wait"]["outcome"] == "drained", body
        assert "no active connection left" in body["message"]
        control = json.loads((pair.d1.state_dir / "ipvs-control.json").read_text())
        assert control["drained"] == {"web_nat": [busy]}
    finally:
        held.close()
        if path is not None:
            status, body = pair.d1.client.post(f"{path}/enable")
    assert status == 200 and body["message"] == "drain lifted: weight 1 in IPVS", body
    assert table(ha)[f"TCP {NAT}:80"][busy][1] == 1
    assert sorted(set(pages(ha, NAT, 6))) == ["rs1", "rs2", "rs3"]


def run_module(name: str, args: dict[str, Any], *, check: bool = False) -> dict[str, Any]:
    """A vigil.ha module's main() in this process, as Ansible would run it on the director.

    In-process because a process start costs seconds in the VM; the collection is this
    checkout, made importable as ``ansible_collections.vigil.ha`` through a symlink tree.
    """
    import contextlib
    import importlib
    import io
    import os
    import tempfile

    from ansible.module_utils.testing import patch_module_args

    try:
        importlib.import_module("ansible_collections.vigil.ha.plugins.modules")
    except ImportError:
        base = tempfile.mkdtemp(prefix="vigil-coll-")
        os.makedirs(os.path.join(base, "ansible_collections", "vigil"))
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        os.symlink(repo, os.path.join(base, "ansible_collections", "vigil", "ha"))
        sys.path.insert(0, base)
        for loaded in [m for m in sys.modules if m.startswith("ansible_collections")]:
            del sys.modules[loaded]
    module = importlib.import_module(f"ansible_collections.vigil.ha.plugins.modules.{name}")
    out = io.StringIO()
    full = dict(args, _ansible_check_mode=check, _ansible_diff=True)
    with patch_module_args(full), contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        module.main()
    return dict(json.loads(out.getvalue()))


def test_the_real_server_module_drains_waits_and_enables(pair: Pair) -> None:
    """vigil.ha.real_server (the collection's module) on the master director with IPVS."""
    ha = pair.ha
    held = hold(ha, NAT)
    busy = None
    base = {"socket": str(pair.d1.socket_path), "virtual_server": "web_nat"}
    try:
        busy = wait_for(
            lambda: next((d for d, v in table(ha)[f"TCP {NAT}:80"].items() if v[2] == 1), None),
            timeout=30,
            what="the held connection in IPVS",
        )
        drain = {**base, "real_server": busy, "state": "drained"}
        predicted = run_module("real_server", drain, check=True)
        assert predicted["changed"] is True and predicted["action"] == "drain", predicted
        assert table(ha)[f"TCP {NAT}:80"][busy][1] == 1  # check mode changed nothing
        # the wait gives up while the connection is held: a failure that says so, drained
        timed_out = run_module("real_server", {**drain, "wait": True, "wait_timeout": 2})
        assert timed_out["failed"] is True and timed_out["changed"] is True, timed_out
        assert "1 active connection(s) still open after 2s" in timed_out["msg"], timed_out
        assert table(ha)[f"TCP {NAT}:80"][busy][1] == 0  # weight 0, still in IPVS
        finish(held)
        done = run_module("real_server", {**drain, "wait": True, "wait_timeout": 30})
        assert done.get("failed") is not True and done["changed"] is False, done
        assert done["wait"]["outcome"] == "drained" and done["after"]["ipvs_weight"] == 0
        holder = run_module("real_server", {**drain, "director": "vip_holder"})
        assert holder["holds_vip"] is True and holder["changed"] is False, holder
        on_backup = run_module(
            "real_server",
            {**drain, "socket": str(pair.d2.socket_path), "director": "vip_holder"},
        )
        assert on_backup.get("skipped") is True and on_backup["holds_vip"] is False, on_backup
    finally:
        held.close()
        if busy is not None:
            enable = {**base, "real_server": busy, "state": "enabled", "wait": True}
            enabled = run_module("real_server", enable)
    assert enabled.get("failed") is not True and enabled["changed"] is True, enabled
    assert enabled["wait"]["outcome"] == "up" and enabled["after"]["ipvs_weight"] == 1
    assert table(ha)[f"TCP {NAT}:80"][busy][1] == 1
    assert run_module("real_server", enable)["changed"] is False


def ipvs_kernel(agent: AgentHandle) -> dict[str, Any]:
    return dict(agent.client.get("/v1/status")[1]["ipvs"]["kernel"])


def test_ipvsadm_clear_and_edits_are_undone_within_one_delay_loop(pair: Pair) -> None:
    ha = pair.ha
    # In steady state a drift check is a read of /proc/net/ip_vs that matches what was
    # programmed (the real kernel's format, parsed by vigil.ipvs.kernel): no dump.
    k0 = ipvs_kernel(pair.d1)
    wait_for(
        lambda: ipvs_kernel(pair.d1)["light_checks"] >= k0["light_checks"] + 2,
        timeout=6 * DELAY_LOOP + 30,
        interval=0.5,
        what="two drift checks answered by /proc/net/ip_vs",
    )
    before = shape(table(ha))
    since = last_seq(pair.d1)
    ha.ipvsadm(0, "-C")
    cleared = time.time()  # the table was cleared before ipvsadm returned
    drift = wait_event(pair.d1, "drift_corrected", since)
    assert drift["time"] - cleared <= DELAY_LOOP + SLACK, drift
    assert drift["message"].startswith("the IPVS table was changed by someone else; correcting")
    wait_for(lambda: shape(table(ha)) == before, timeout=30, interval=0.2, what="table back")
    # a drift check that read the table while ipvsadm was clearing it saw a part gone (a
    # service without its real servers, say) and the next one the rest; a correction that
    # failed because -C removed the service meanwhile is redone in full. The NAT service
    # is reported either way: as missing, or its real servers as missing from it.
    findings = [f for e in events(pair.d1, "drift_corrected", since) for f in e["data"]["findings"]]
    assert any(f"tcp {NAT}:80" in f and f.endswith(": missing") for f in findings), findings
    since = last_seq(pair.d1)
    ha.ipvsadm(0, "-e", "-t", f"{NAT}:80", "-r", "10.62.1.11:80", "-m", "-w", "7")
    edited = time.time()
    drift = wait_event(pair.d1, "drift_corrected", since)
    assert drift["time"] - edited <= DELAY_LOOP + SLACK, drift
    assert "weight 7, want 1" in drift["message"]
    wait_for(
        lambda: table(ha)[f"TCP {NAT}:80"]["10.62.1.11:80"][1] == 1,
        timeout=30,
        interval=0.2,
        what="rs1's weight back to 1",
    )


def test_reload_adding_a_real_server_is_one_request_and_disturbs_nothing(pair: Pair) -> None:
    ha = pair.ha
    held = hold(ha, NAT)
    try:
        ops = pair.d1.client.get("/v1/status")[1]["ipvs"]["kernel"]["ops"]
        pair.d1.write_config(director_config(1, dr_servers=3))
        status, body = pair.d1.client.post("/v1/reload")
        assert status == 200, body
        assert body["diff"]["ipvs"]["changed"] == ["web_dr"]
        assert body["diff"]["ipvs"]["details"]["web_dr"]["real_servers_added"] == ["10.62.1.13:80"]
        assert "10.62.1.13:80" in table(ha)[f"TCP {DR}:80"]
        after = pair.d1.client.get("/v1/status")[1]["ipvs"]["kernel"]["ops"]
        assert after - ops == 1, (ops, after)
        assert finish(held) in ("rs1", "rs2", "rs3")  # the established connection lived on
    finally:
        held.close()
        pair.d1.write_config(director_config(1))
        assert pair.d1.client.post("/v1/reload")[0] == 200


def test_the_sync_daemon_switches_on_every_transition(pair: Pair) -> None:
    ha = pair.ha
    pair.d1.client.timeout = 60
    status, body = pair.d1.client.post("/v1/vrrp/instances/VI_1/handover")
    assert status == 200, body
    try:
        assert wait_for(lambda: vrrp_state(pair.d2) == "MASTER", timeout=30, what="d2 MASTER")
        wait_for(
            lambda: daemons(ha, 1) == {"master"} and daemons(ha, 0) == {"backup"},
            timeout=30,
            what="daemons swapped",
        )
        # d2 now checks web_nat (it holds the VIP), d1 suspended its checks
        view = pair.d2.client.get("/v1/ipvs/virtual_servers/web_nat")[1]
        assert view["ha_suspend"]["suspended"] is False
    finally:
        status, body = pair.d1.client.post("/v1/vrrp/instances/VI_1/takeover")
        assert status == 200, body
    wait_for(
        lambda: daemons(ha, 0) == {"master"} and daemons(ha, 1) == {"backup"},
        timeout=30,
        what="daemons back",
    )
    assert sorted(set(pages(ha, NAT, 6))) == ["rs1", "rs2", "rs3"]


# ------------------------------------------------- long-lived connections across a failover


def connections(ha: HaLab, director: int) -> set[str]:
    """``ipvsadm -Lnc``: the client ends (``addr:port``) of the director's IPVS
    connections that are ESTABLISHED."""
    out = set()
    for line in ha.ipvsadm(director, "-Lnc").splitlines():
        words = line.split()
        if len(words) >= 6 and words[2] == "ESTABLISHED":
            out.add(words[3])
    return out


def mac(ha: HaLab, director: int) -> str:
    return str(ha.lab.link_info(ha.directors[director])["address"]).lower()


def client_arp(ha: HaLab) -> dict[str, str]:
    """The client's ARP table: IPv4 address -> MAC (complete entries only)."""
    text = in_netns(ha.client.ns, Path("/proc/thread-self/net/arp").read_text)
    return {w[0]: w[3].lower() for w in (x.split() for x in text.splitlines()[1:]) if w[2] != "0x0"}


def wait_master(pair: Pair, director: int) -> None:
    """``director`` is VRRP master and the client sends the VIPs' traffic to it (its GARPs
    reached the client)."""
    ha = pair.ha
    agent = (pair.d1, pair.d2)[director]
    wait_for(lambda: vrrp_state(agent) == "MASTER", timeout=60, what=f"d{director + 1} MASTER")
    want = mac(ha, director)
    wait_for(
        lambda: all(client_arp(ha).get(vip) == want for vip in (NAT, DR)),
        timeout=30,
        interval=0.2,
        what=f"the client's ARP entries for {NAT} and {DR} pointing at d{director + 1} ({want})",
        observe=lambda: client_arp(ha),
    )


def open_sessions(ha: HaLab) -> list[Session]:
    """A NAT and a DR echo connection through the VIPs, each answering once."""
    sessions = [
        Session(ha.client, NAT, source=CLIENT),
        Session(ha.client, DR, source=CLIENT_DIRECT),
    ]
    for s in sessions:
        assert s.exchange() == "ok", s
    return sessions


def known_to(ha: HaLab, director: int, sessions: list[Session]) -> bool:
    have = connections(ha, director)
    return all(s.local in have for s in sessions)


def wait_daemons(ha: HaLab, master: int) -> None:
    """The master sync daemon on director ``master``, the backup daemon on the other."""
    wait_for(
        lambda: daemons(ha, master) == {"master"} and daemons(ha, 1 - master) == {"backup"},
        timeout=120,
        what=f"master sync daemon on d{master + 1}, backup on d{2 - master}",
        observe=lambda: (daemons(ha, 0), daemons(ha, 1)),
    )


def crash(pair: Pair, director: int) -> None:
    """A director dies: its vigild SIGKILLed (its kernel keeps the VIPs, the IPVS table and
    the sync daemon) and its cable pulled, so nothing it left keeps forwarding."""
    (pair.d1, pair.d2)[director].kill()
    pair.lab.cable_pull(pair.ha.directors[director])


def restart_d2(pair: Pair) -> None:
    """Back to d1 MASTER, d2 BACKUP, after :func:`crash` of d2 (or a test that failed on
    the way there): d2's agent killed if it still runs, its cable back, d1 master, vigild
    restarted on d2 with the sync config (it removes its predecessor's VIPs and adopts the
    IPVS table); the daemons set."""
    ha = pair.ha
    if pair.d2.process.alive():
        pair.d2.kill()
    pair.lab.cable_plug(ha.directors[1])
    wait_for(lambda: vrrp_state(pair.d1) == "MASTER", timeout=60, what="d1 MASTER")
    pair.d2 = pair.lab.start_vigild(
        ha.directors[1], director_config(2), wait=False, log_level="info"
    )
    pair.d2.wait_ready(timeout=AGENT_START)
    pair.d2.client.timeout = CALL_TIMEOUT
    wait_for(lambda: vrrp_state(pair.d2) == "BACKUP", timeout=120, what="d2 BACKUP",
             observe=lambda: (vrrp_state(pair.d1), vrrp_state(pair.d2)))  # fmt: skip
    wait_for(
        lambda: daemons(ha, 0) == {"master"} and daemons(ha, 1) == {"backup"},
        timeout=120,
        what="master daemon on d1, backup daemon on d2",
        observe=lambda: (daemons(ha, 0), daemons(ha, 1)),
    )


def failovers(pair: Pair, *, sync: bool) -> dict[str, dict[str, str]]:
    """A planned handover d1 -> d2 (``vigilctl handover`` with sync, the API without), then
    a crash of d2 (-> d1), each under a NAT and a DR echo connection opened on the master
    of the moment; one exchange on each after each failover. Leaves d2 crashed and d1
    MASTER. The outcome of each connection, by phase."""
    ha = pair.ha
    pair.d1.client.timeout = 60
    result: dict[str, dict[str, str]] = {}
    # 1. planned handover d1 -> d2
    if sync:  # a connection is sent once it is established: the backup must listen by then
        wait_daemons(ha, master=0)
    first = open_sessions(ha)
    if sync:
        wait_for(lambda: known_to(ha, 1, first), timeout=60, interval=0.3,
                 what="d1's sync daemon sending the connections to d2",
                 observe=lambda: connections(ha, 1))  # fmt: skip
        # vigilctl's entry point in this process (a vigilctl process costs a minute in a
        # busy VM), over the agent's socket
        out, err = io.StringIO(), io.StringIO()
        argv = ["--socket", str(pair.d1.socket_path), "--timeout", "60"]
        code = vigilctl([*argv, "handover", "VI_1", "--timeout", "30"], out, err)
        assert code == 0, out.getvalue() + err.getvalue()
        assert "VI_1: handed over to 10.62.0.2" in out.getvalue(), out.getvalue()
    else:
        status, body = pair.d1.client.post("/v1/vrrp/instances/VI_1/handover", {"timeout": 30})
        assert status == 200, body
    wait_master(pair, 1)
    result["handover"] = {str(s): s.exchange() for s in first}
    # 2. d2, master now, crashes -> d1
    if sync:
        wait_daemons(ha, master=1)
    second = open_sessions(ha)
    if sync:
        wait_for(lambda: known_to(ha, 0, second), timeout=60, interval=0.3,
                 what="d2's sync daemon sending the connections to d1",
                 observe=lambda: connections(ha, 0))  # fmt: skip
    crash(pair, 1)
    wait_master(pair, 0)
    result["crash"] = {str(s): s.exchange() for s in second}
    if sync:  # the connections of phase 1 again: they have been through both failovers
        result["both"] = {str(s): s.exchange() for s in first}
    for s in first + second:
        s.close()
    return result


def test_with_sync_long_lived_connections_survive_a_handover_and_a_crash(pair: Pair) -> None:
    """Done when: with the sync daemon on, a long-lived TCP connection through the VIP keeps
    working across a planned `vigilctl handover` and across a director crash (NAT and DR)."""
    try:
        got = failovers(pair, sync=True)
        print(f"with the sync daemon: {got}")
        for phase in ("handover", "crash", "both"):
            assert set(got[phase].values()) == {"ok"}, (phase, got)
    finally:
        restart_d2(pair)


def test_without_sync_the_same_failovers_reset_the_connections(pair: Pair) -> None:
    """The same failovers without the sync daemon: the new master has no entry for the
    connection, so the client's next segment is not forwarded; the new director's own
    stack holds the VIP and answers with a reset (never an echo)."""
    ha = pair.ha
    try:
        for agent, n in ((pair.d1, 1), (pair.d2, 2)):
            agent.write_config(director_config(n, sync=False))
            status, body = agent.client.post("/v1/reload")
            assert status == 200, body
        wait_for(lambda: daemons(ha, 0) == daemons(ha, 1) == set(), timeout=60, what="no daemons")
        got = failovers(pair, sync=False)
        print(f"without the sync daemon: {got}")
        # NAT: the new master's stack resets; DR: the client's direct address has no route
        # on the directors, so their reset never arrives and the connection stalls
        want = {NAT: "reset", DR: "stalled"}
        for phase in ("handover", "crash"):
            for name, outcome in got[phase].items():
                assert outcome == want[name.split(" -> ")[1].split(":")[0]], (phase, got)
    finally:
        pair.d1.write_config(director_config(1))
        assert pair.d1.client.post("/v1/reload")[0] == 200
        restart_d2(pair)


def test_cleanup_after_sigkill_removes_exactly_what_the_journal_recorded(pair: Pair) -> None:
    ha, d2 = pair.ha, pair.d2
    ha.ipvsadm(1, "-A", "-t", "10.62.0.200:80", "-s", "rr")  # someone else's service
    journal = json.loads((d2.state_dir / "ipvs-journal.json").read_text())["entries"]
    assert sorted(journal) == [
        f"service:tcp|{NAT}|{ECHO_PORT}",
        f"service:tcp|{NAT}|80",
        f"service:tcp|{DR}|{ECHO_PORT}",
        f"service:tcp|{DR}|80",
        f"service:tcp|{TUN}|80",
        "sync:backup",
    ]
    d2.kill()
    assert len(table(ha, 1)) == 6 and daemons(ha, 1) == {"backup"}  # a crash leaves it all
    res = pair.lab.run(
        ha.directors[1],
        [
            sys.executable,
            "-m",
            "vigil.daemon",
            "--cleanup",
            "--state-dir",
            str(d2.state_dir),
        ],
        check=False,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"(service:tcp|{NAT}|80) removed service tcp {NAT}:80 (web_nat)" in res.stdout
    assert "(sync:backup) removed backup sync daemon on eth0" in res.stdout
    assert list(table(ha, 1)) == ["TCP 10.62.0.200:80"]  # exactly: the foreign one stays
    assert daemons(ha, 1) == set()
    assert json.loads((d2.state_dir / "ipvs-journal.json").read_text())["entries"] == {}
