"""Issue 15, defect 6: what an outsider can make the agent send or log is bounded.

Before: a master answered every lower-priority or priority-0 advert with one of its own
(a 1:1 multicast reflector), refused API calls were logged one line each, and the count
of suppressed packet rejections came only with the next rejected packet.
"""

from __future__ import annotations

import json
import os
from typing import Any

from tests.lab import Lab, wait_for
from tests.lab.agents import AgentHandle
from tests.lab.capture import Capture
from tests.lab.configs import one_instance
from tests.lab.spoof import spoof_advert

VIP = "10.99.0.100"
NOBODY = 65534


def one(lab: Lab, interval: float = 1.0) -> AgentHandle:
    lab.add_switch()
    for name, addr in (("n1", "10.99.0.11"), ("client", "10.99.0.20")):
        lab.add_namespace(name)
        lab.connect(name, addrs=[f"{addr}/24"])
    config = one_instance("n1", 51, VIP, advert_interval=interval)
    agent = lab.start_vigild("n1", config, log_level="info")
    wait_for(lambda: lab.has_address("n1", VIP), timeout=10, what="n1 MASTER with the VIP")
    return agent


def instance(agent: AgentHandle) -> dict[str, Any]:
    return dict(agent.client.get("/v1/vrrp/instances/VI_1")[1])


def is_vrrp_from(mac: str) -> Any:
    def match(frame: Any) -> bool:
        data = frame.data
        return (
            data[6:12] == bytes.fromhex(mac.replace(":", ""))
            and data[12:14] == b"\x08\x00"
            and data[23] == 112
        )

    return match


def test_master_does_not_reflect_a_flood_of_lower_priority_adverts(lab: Lab) -> None:
    agent = one(lab)
    mac = str(lab.link_info("n1")["address"])
    capture = Capture(lab, "client", outgoing=True)  # the spoofed adverts leave it
    before = instance(agent)["counters"]
    spoof_advert(
        lab, "client", src="10.99.0.30", vrid=51, priority=50, vips=[VIP], interval=1.0,
        count=300, gap=0.002,
    )  # fmt: skip
    after = wait_for(
        lambda: (
            (c := instance(agent)["counters"])["adverts_received"]
            >= before["adverts_received"] + 300
            and c
        ),
        timeout=10,
        what="n1 to receive the 300 lower-priority adverts",
    )
    frames = capture.read(0.2)
    lower = [f for f in frames if f.data[6:12] != bytes.fromhex(mac.replace(":", ""))]
    start, end = lower[0].time, lower[-1].time
    ours = [f for f in frames if is_vrrp_from(mac)(f) and start <= f.time <= end + 0.1]
    # One advert per second of its own schedule, plus the burst of 2 and one answer per
    # interval: not 300.
    assert len(ours) <= (end - start) / 1.0 + 4, (len(ours), end - start)
    suppressed = after["answers_suppressed"] - before["answers_suppressed"]
    assert suppressed >= 250, after


def test_reject_summary_comes_when_the_burst_ends(lab: Lab) -> None:
    agent = one(lab)
    seq = agent.client.get("/v1/events")[1][-1]["seq"]
    spoof_advert(
        lab, "client", src="10.99.0.30", vrid=51, priority=50, vips=[VIP], version=2,
        interval=1.0, count=20,
    )  # fmt: skip

    def rejected() -> list[dict[str, Any]]:
        events = agent.client.get(f"/v1/events?since={seq}")[1]
        return [e for e in events if e["kind"] == "vrrp_rejected"]

    first = wait_for(rejected, timeout=5, what="the first rejection to be reported")
    assert first[0]["data"]["reason"] == "version"
    # No more packets come; the summary of the other 19 must come by itself.
    events = wait_for(lambda: len(rejected()) >= 2 and rejected(), timeout=15, what="summary")
    assert events[1]["data"]["suppressed"] == 19, events
    assert instance(agent)["counters"]["rejected"]["version"] == 20


NOBODY_LOOP = r"""
import socket, sys
for _ in range(50):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(sys.argv[1])
    s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    while s.recv(65536):
        pass
    s.close()
print("done")
"""


def test_refused_api_calls_are_logged_once_per_burst(lab: Lab) -> None:
    agent = one(lab)
    sock = agent.socket_path
    for parent in (sock.parent, sock.parent.parent, lab.shortdir):
        os.chmod(parent, 0o711)
    os.chmod(sock, 0o666)
    res = lab.run(
        "n1",
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         "/usr/bin/python3", "-c", NOBODY_LOOP, str(sock)],
        timeout=60,
    )  # fmt: skip
    assert res.stdout.strip() == "done", res
    refused = [line for line in agent.log(tail=None).splitlines() if "api: refused" in line]
    assert 1 <= len(refused) <= 2, refused
    assert json.loads(json.dumps(agent.health()[1]))["status"] == "ok"
