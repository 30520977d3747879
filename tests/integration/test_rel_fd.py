"""Issue 15, defect 1: out of file descriptors, the agent must not split the brain.

Before: with the open-files limit at 1024 and ~1,100 idle API connections the master's
advert path failed (its source-address refresh opened a socket outside its error
handling, and the exception skipped the timer re-arm), so it kept its VIPs while the
backup took them too; a link-up event whose handling failed the same way left instances
in FAULT with the link up, health said ok, and 2.4 million log lines were written.

Here the limits are real (``prlimit`` on the running vigild), the flood is real
connections on its real socket, and VIP holders are sampled from the kernel throughout.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import resource
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab import Lab, wait_for
from tests.lab.agents import AgentHandle

VIP4 = "10.99.0.100"
VIP6 = "fd00:99::100"
#: The longest time two nodes may both hold the VIP: a takeover's own overlap (the new
#: master's advert reaches the old one a moment after the new one added the VIP).
OVERLAP_OK = 0.3


def node_config(name: str, priority: int) -> dict[str, Any]:
    def inst(iname: str, vrid: int, vip: str) -> dict[str, Any]:
        return {
            "name": iname,
            "interface": "eth0",
            "vrid": vrid,
            "priority": priority,
            "version": 3,
            "advert_interval": 0.1,
            "virtual_ipaddresses": [vip],
        }

    return {
        "global": {"router_id": name},
        "vrrp_instances": [inst("VI_4", 51, f"{VIP4}/24"), inst("VI_6", 52, f"{VIP6}/64")],
    }


def instance(agent: AgentHandle, name: str) -> dict[str, Any]:
    status, body = agent.client.get(f"/v1/vrrp/instances/{name}")
    assert status == 200, body
    return dict(body)


def start_pair(lab: Lab) -> tuple[AgentHandle, AgentHandle]:
    lab.add_switch()
    for i, name in enumerate(("n1", "n2"), start=1):
        lab.add_namespace(name)
        lab.sysctl(name, **{"net.ipv6.conf.all.keep_addr_on_down": 1})
        lab.connect(name, addrs=[f"10.99.0.1{i}/24", f"fd00:99::1{i}/64"])
    a1 = lab.start_vigild("n1", node_config("n1", 150), log_level="info")
    a2 = lab.start_vigild("n2", node_config("n2", 100), log_level="info")
    settle(lab, a1, a2)
    return a1, a2


def settle(lab: Lab, a1: AgentHandle, a2: AgentHandle, timeout: float = 10.0) -> None:
    """n1 MASTER with both VIPs, n2 BACKUP seeing n1, n2 holding nothing."""
    wait_for(
        lambda: (
            lab.has_address("n1", VIP4)
            and lab.has_address("n1", VIP6)
            and not lab.has_address("n2", VIP4)
            and instance(a2, "VI_4")["master_address"] == "10.99.0.11"
            and instance(a2, "VI_4")["state"] == "BACKUP"
            and instance(a1, "VI_4")["state"] == "MASTER"
        ),
        timeout=timeout,
        what="n1 MASTER with its VIPs and n2 BACKUP",
    )


class Holders:
    """Samples which nodes hold VIP4 every 20 ms from a thread, until stopped."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.samples: list[tuple[float, tuple[str, ...]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for _ in range(100_000):  # bounded: ~30 min at the sample rate
            if self._stop.is_set():
                return
            held = tuple(n for n in ("n1", "n2") if self.lab.has_address(n, VIP4))
            self.samples.append((time.monotonic(), held))
            self._stop.wait(0.02)

    def __enter__(self) -> Holders:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def longest_double(self) -> float:
        """The longest run of samples in which both nodes held the VIP (seconds)."""
        longest, since = 0.0, None
        for t, held in self.samples:
            if len(held) > 1:
                since = t if since is None else since
                longest = max(longest, t - since)
            else:
                since = None
        return longest


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def lowest_free_fd(pid: int) -> int:
    """The descriptor number the process gets next: as its limit, no new one fits."""
    used = {int(name) for name in os.listdir(f"/proc/{pid}/fd")}
    return next(n for n in range(len(used) + 1) if n not in used)


def set_nofile(pid: int, soft: int) -> None:
    """The soft open-files limit of a running process (the hard one stays, so it can be
    raised again without privileges a container may not grant)."""
    subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={soft}:"], check=True, timeout=10)


def nofile_hard(pid: int) -> int:
    for line in open(f"/proc/{pid}/limits").read().splitlines():  # noqa: SIM115
        if line.startswith("Max open files"):
            return int(line.split()[4])
    raise AssertionError(f"no open-files limit for {pid}")


def nofile(pid: int) -> int:
    for line in open(f"/proc/{pid}/limits").read().splitlines():  # noqa: SIM115
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError(f"no open-files limit for {pid}")


@contextlib.contextmanager
def own_fd_room(n: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, n))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def connect(sock: socket.socket, agent: AgentHandle) -> bool:
    """One non-blocking connect attempt; False while the listen backlog is full."""
    try:
        sock.connect(str(agent.socket_path))
    except (BlockingIOError, InterruptedError):
        return False
    return True


def adverts_seen(agent: AgentHandle) -> int:
    return int(instance(agent, "VI_4")["counters"]["adverts_received"])


def log_lines(agent: AgentHandle) -> int:
    return len(agent.log(tail=None).splitlines())


def test_api_flood_under_fd_limit_keeps_one_master(lab: Lab) -> None:
    a1, a2 = start_pair(lab)
    set_nofile(a1.pid, 1024)
    lines_before = log_lines(a1)
    conns: list[socket.socket] = []
    with own_fd_room(4096), Holders(lab) as holders:
        try:
            for _ in range(1100):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                conns.append(s)
                s.setblocking(False)
                wait_for(lambda s=s: connect(s, a1), timeout=5, interval=0.001, what="connect")
            # The flood holds its connections; n1 keeps advertising through it.
            base = adverts_seen(a2)
            wait_for(lambda: adverts_seen(a2) >= base + 30, timeout=10, what="30 adverts")
            assert fd_count(a1.pid) < 1024 - 100, "the API must leave descriptors free"
            # A real client still gets through: the oldest idle connections make room.
            status, body = a1.health()
            assert status == 200 and body["status"] == "ok", body
        finally:
            for s in conns:
                s.close()
        settle(lab, a1, a2, timeout=5)
    assert all("n2" not in held for _, held in holders.samples), "n2 took the VIP"
    assert instance(a1, "VI_4")["counters"]["advert_send_failures"] == 0
    flood_lines = log_lines(a1) - lines_before
    assert flood_lines < 50, a1.log(tail=60)
    # ... and says so in the event stream, once per burst (not once per connection): the
    # accept pacing at the flood's first burst, the limit once 64 are open, and for each
    # at most a summary per 10 s after that
    status, events = a1.client.get("/v1/events")
    assert status == 200, events
    limit = [e for e in events if e["kind"] == "api_connection_limit"]
    assert 2 <= len(limit) <= 8, limit
    evict = [e for e in limit if e["data"]["action"] == "evict"]
    assert evict and evict[0]["data"]["limit"] == 64, limit
    assert "64 connections open (the limit)" in evict[0]["message"]
    pace = [e for e in limit if e["data"]["action"] == "pace"]
    assert pace and "faster than 200 a second" in pace[0]["message"], limit


@pytest.mark.serial  # counts adverts on the wire against a deadline: run alone in make test
def test_advert_path_and_link_state_survive_fd_exhaustion(lab: Lab) -> None:
    a1, a2 = start_pair(lab)
    original = nofile(a1.pid)
    with Holders(lab) as holders:
        # No descriptor to spare: the limit is what n1 has open now.
        set_nofile(a1.pid, lowest_free_fd(a1.pid))
        try:
            base = adverts_seen(a2)
            # Over 2 s the source-address cache expires twice: the refresh opens nothing.
            wait_for(lambda: adverts_seen(a2) >= base + 20, timeout=10, what="20 adverts")
            assert instance(a2, "VI_4")["state"] == "BACKUP"
            # A link flap while out of descriptors: n1 drops to FAULT, n2 takes over;
            # the link comes back while n1 cannot reopen its raw sockets.
            lab.link_down("n1")
            wait_for(lambda: lab.has_address("n2", VIP4), timeout=5, what="n2 to take over")
            set_nofile(a1.pid, lowest_free_fd(a1.pid))
            lab.link_up("n1")
            # n1 cannot advertise, so it must not add the VIP (two holders) meanwhile.
            wait_for(lambda: instance(a2, "VI_4")["state"] == "MASTER", timeout=5, what="n2 MASTER")
        finally:
            set_nofile(a1.pid, original)
        # Nobody flaps the link again: n1 recovers by itself and preempts back.
        settle(lab, a1, a2, timeout=20)
    assert holders.longest_double() <= OVERLAP_OK, holders.samples
    status, body = a1.health()
    assert status == 200 and body["status"] == "ok", body
    log = a1.log(tail=None)
    assert "Traceback" not in log, log[-3000:]
    assert len(log.splitlines()) < 400, log[-3000:]


def test_master_that_cannot_send_releases_and_recovers(lab: Lab) -> None:
    """nftables drops n1's outgoing VRRP (sendto fails with EPERM): n1 gives up the
    VIP within two intervals, health says degraded with an event and a metric, and once
    the rule is gone n1 takes the VIP back by itself."""
    a1, a2 = start_pair(lab)
    seq = a1.client.get("/v1/events")[1][-1]["seq"]
    rules = """
table inet vigiltx {
    chain out {
        type filter hook output priority 0; policy accept;
        meta l4proto 112 drop
    }
}
"""
    with Holders(lab) as holders:
        lab.run("n1", ["nft", "-f", "-"], input=rules)
        try:
            wait_for(lambda: lab.has_address("n2", VIP4), timeout=5, what="n2 to take over")
            wait_for(lambda: not lab.has_address("n1", VIP4), timeout=5, what="n1 to let go")
            status, body = a1.health()
            assert status == 503 and body["status"] == "degraded", body
            assert any("cannot send adverts" in p for p in body["problems"]), body
            _, metrics = a1.client.get("/metrics")
            assert "vigil_degraded 1.0" in metrics
            assert 'vigil_vrrp_advert_send_failures_total{instance="VI_4"}' in metrics
            events = a1.client.get(f"/v1/events?since={seq}")[1]
            assert any(e["kind"] == "vrrp_tx_failed" for e in events), events
        finally:
            lab.run("n1", ["nft", "delete", "table", "inet", "vigiltx"], check=False)
        settle(lab, a1, a2, timeout=15)
    assert holders.longest_double() <= OVERLAP_OK, holders.samples
    assert a1.health()[0] == 200


@pytest.mark.serial  # advert gaps on the wire under a flood: run alone in make test
def test_connection_flood_does_not_starve_the_masters_adverts(lab: Lab, tmp_path: Any) -> None:
    """The soak's ``api_flood`` (8192 idle connections as fast as they open, the soak's
    own flood tool) at the master: its adverts, captured on its wire, keep their interval
    closely enough that the backup never takes over, and no two nodes hold the VIP.

    In the 30-minute soak the master's adverts went out 0.2-1.15 s late during each
    flood's connect phase (``advert went out ... late`` in its log), long enough for the
    backup (Master_Down 0.36 s) to take over: asyncio accepted whatever was waiting on
    every turn of the loop, so the flood made the agent a CPU-bound process whose timers
    waited for a CPU. The API now accepts at most ACCEPT_RATE connections a second (the
    rest wait in the kernel's backlog or are refused there): checked here from the
    flood's own count of connections that got in."""
    import json
    import signal
    import sys

    from vigil.api.server import ACCEPT_BACKLOG, ACCEPT_BURST, ACCEPT_RATE

    from tests.lab.capture import Capture

    a1, a2 = start_pair(lab)
    hard = nofile_hard(a1.pid)
    subprocess.run(
        ["prlimit", f"--pid={a1.pid}", f"--nofile={hard}:{hard}"], check=True, timeout=10
    )
    cap = Capture(lab, "n1", outgoing=True, bpf="ip proto 112")
    became = instance(a2, "VI_4")["counters"]["became_master"]
    out = tmp_path / "flood.json"
    repo = str(Path(__file__).resolve().parents[2])
    with Holders(lab) as holders:
        t0 = time.time()
        flood = lab.spawn(
            None,
            [sys.executable, "-m", "bench.soak.flood", "--socket", str(a1.socket_path),
             "--count", "8192", "--hold", "60", "--out", str(out)],
            name="flood", cwd=repo,
        )  # fmt: skip
        opened = Path(str(out) + ".opened")
        wait_for(lambda: opened.exists(), timeout=60, what="the flood's connections")
        # held a while (adverts counted by the backup, not a sleep)
        base = adverts_seen(a2)
        wait_for(lambda: adverts_seen(a2) >= base + 20, timeout=20, what="20 more adverts")
        flood.signal(signal.SIGTERM)
        flood.wait(timeout=30)
        t1 = time.time()
    result = json.loads(out.read_text())
    stamps = sorted(f.time for f in cap.read(0.5) if t0 - 0.2 <= f.time <= t1)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    worst = max(gaps)
    # n2 (priority 100) takes over after Master_Down = 3 x 0.1 + (256 - 100) / 256 x 0.1
    master_down = 0.3 + 156 / 256 * 0.1
    print(f"\nflood: {result}; {len(stamps)} adverts, worst gap {worst * 1000:.0f} ms")
    # the flood came faster than the API takes connections: most were refused in the
    # kernel, and the agent said so (whether the 64-connection limit is also reached
    # depends on how long the connect phase lasts: 58-93 got in, in the soak's floods)
    assert result["connected"] >= ACCEPT_BURST and sum(result["refused"].values()) > 0, result
    status, events = a1.client.get("/v1/events")
    assert status == 200, events
    paced = [
        e for e in events if e["kind"] == "api_connection_limit" and e["data"]["action"] == "pace"
    ]
    assert paced, [e["kind"] for e in events]
    # what got in: the pace's tokens over the connect phase, the burst, the backlog
    allowed = ACCEPT_RATE * result["open_s"] + ACCEPT_BURST + ACCEPT_BACKLOG + 64
    assert result["connected"] <= allowed, (result, allowed)
    assert worst < master_down, f"advert gap {worst:.3f}s >= n2's Master_Down {master_down:.3f}s"
    assert instance(a2, "VI_4")["counters"]["became_master"] == became
    assert holders.longest_double() == 0.0, holders.samples
    settle(lab, a1, a2, timeout=15)
