"""Issue 15, defect 3: journal first, on a real full state dir (a tiny tmpfs).

Before: a reload added a VIP although its journal write failed (one log line, no event,
health ok), and after SIGKILL and restart that VIP was left behind; ``maintenance on``
answered 500 yet left the instance in maintenance and a 0-byte temp file; start-up on a
full state dir died with a traceback.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.lab import Lab, wait_for
from tests.lab.agents import AgentHandle

VIP1 = "10.99.0.100"
VIP2 = "10.99.0.101"


def node_config(name: str, priority: int, vips: list[str]) -> dict[str, Any]:
    return {
        "global": {"router_id": name},
        "vrrp_instances": [
            {
                "name": "VI_1",
                "interface": "eth0",
                "vrid": 51,
                "priority": priority,
                "version": 3,
                "advert_interval": 0.1,
                "virtual_ipaddresses": [f"{v}/24" for v in vips],
            }
        ],
    }


def tiny_state_dir(lab: Lab, name: str) -> Path:
    """A 64 KiB tmpfs, unmounted when the lab closes (after its processes are gone)."""
    path = lab.shortdir / f"{name}-state"
    path.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(path)],
        check=True,
        timeout=10,
    )
    lab.add_cleanup(
        lambda: subprocess.run(["umount", "-l", str(path)], check=False, timeout=10),
        after_processes=True,
    )
    return path


def fill(directory: Path) -> Path:
    """Write a filler file until the file system is full; returns it."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(10_000):  # bounded: 64 KiB in 512-byte steps needs 128
            try:
                os.write(fd, b"\0" * 512)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                return filler
    finally:
        os.close(fd)
    raise AssertionError(f"{directory} did not fill up")


def state(agent: AgentHandle) -> dict[str, Any]:
    status, body = agent.client.get("/v1/vrrp/instances/VI_1")
    assert status == 200, body
    return dict(body)


def pair(lab: Lab, state_dir: Path) -> tuple[AgentHandle, AgentHandle]:
    lab.add_switch()
    for i, name in enumerate(("n1", "n2"), start=1):
        lab.add_namespace(name)
        lab.connect(name, addrs=[f"10.99.0.1{i}/24"])
    a1 = lab.start_vigild(
        "n1", node_config("n1", 150, [VIP1]), ["--state-dir", str(state_dir)], log_level="info"
    )
    a2 = lab.start_vigild("n2", node_config("n2", 100, [VIP1]), log_level="info")
    wait_for(
        lambda: state(a1)["state"] == "MASTER" and state(a2)["state"] == "BACKUP",
        timeout=10,
        what="n1 MASTER, n2 BACKUP",
    )
    lab.wait_address("n1", VIP1)
    return a1, a2


def test_a_vip_the_journal_cannot_name_is_never_added(lab: Lab) -> None:
    state_dir = tiny_state_dir(lab, "n1")
    a1, _a2 = pair(lab, state_dir)
    filler = fill(state_dir)

    seq = a1.client.get("/v1/events")[1][-1]["seq"]
    a1.write_config(node_config("n1", 150, [VIP1, VIP2]))
    status, body = a1.reload()
    assert status == 200, body
    # n1 gives up mastership instead of holding VIPs it cannot journal; n2 serves VIP1.
    wait_for(lambda: state(a1)["state"] == "FAULT", timeout=5, what="n1 FAULT (journal)")
    lab.wait_address("n2", VIP1, timeout=5)
    assert not lab.has_address("n1", VIP2), "a VIP the journal does not name was added"
    assert "journal" in state(a1)["faults"]
    events = a1.client.get(f"/v1/events?since={seq}")[1]
    assert any(e["kind"] == "journal_failed" for e in events), events
    status, health = a1.health()
    assert status == 503 and health["status"] == "degraded", health
    assert any("journal" in p for p in health["problems"]), health
    metrics = a1.client.get("/metrics")[1]
    assert "vigil_vrrp_journal_ok 0.0" in metrics

    # A crash now, and a restart on the still full dir: a clear error, no traceback.
    lab.kill_group(a1)
    assert not lab.has_address("n1", VIP2) and not lab.has_address("n1", VIP1)
    again = lab.start_vigild(
        "n1", a1.config_path, ["--state-dir", str(state_dir)], log_level="info", wait=False
    )
    code = again.process.wait(timeout=15)
    log = again.log(tail=None)
    assert code != 0, log
    assert "Traceback" not in log, log
    assert "cannot write" in log or "cannot be written" in log, log

    # Room again: the agent starts, takes mastership back and holds both VIPs.
    os.unlink(filler)
    a1b = lab.start_vigild("n1", a1.config_path, ["--state-dir", str(state_dir)], log_level="info")
    lab.wait_address("n1", VIP2, timeout=10)
    lab.wait_address("n2", VIP1, present=False, timeout=5)
    assert state(a1b)["state"] == "MASTER"
    assert a1b.health()[0] == 200


def test_a_journal_write_that_fails_on_a_backup_is_an_event(lab: Lab) -> None:
    """Soak finding: a backup's reload records the new VIP ahead (it adds nothing) and that
    write failed with a log line only; every failing journal write now says so in the event
    stream, once per streak, and again when the journal can be written."""
    lab.add_switch()
    state_dir = tiny_state_dir(lab, "n2")
    for i, name in enumerate(("n1", "n2"), start=1):
        lab.add_namespace(name)
        lab.connect(name, addrs=[f"10.99.0.1{i}/24"])
    a1 = lab.start_vigild("n1", node_config("n1", 150, [VIP1]), log_level="info")
    a2 = lab.start_vigild(
        "n2", node_config("n2", 100, [VIP1]), ["--state-dir", str(state_dir)], log_level="info"
    )
    wait_for(lambda: state(a2)["state"] == "BACKUP", timeout=10, what="n2 BACKUP")
    # (a write batched from the start may still be pending: it fails too, and counts)
    seq = a2.client.get("/v1/events")[1][-1]["seq"]
    filler = fill(state_dir)
    a2.write_config(node_config("n2", 100, [VIP1, VIP2]))
    status, body = a2.reload()
    assert status == 200, body
    # the master follows at once (a backup hearing adverts whose addresses differ from its
    # own would discard them and take over after its master-down interval)
    a1.write_config(node_config("n1", 150, [VIP1, VIP2]))
    status, body = a1.reload()
    assert status == 200, body

    def kinds() -> list[dict[str, Any]]:
        events = a2.client.get(f"/v1/events?since={seq}")[1]
        return [e for e in events if e["kind"].startswith("journal_w")]

    wait_for(lambda: kinds(), timeout=5, what="a journal_write_failed event")
    failed = kinds()
    assert [e["kind"] for e in failed] == ["journal_write_failed"], failed
    assert failed[0]["data"]["namespace"] == "vrrp", failed
    assert "No space left" in failed[0]["message"], failed
    assert state(a2)["state"] == "BACKUP", "a backup adds nothing: it stays BACKUP"
    os.unlink(filler)
    # the pending change is written again by the subsystem's periodic retry
    wait_for(
        lambda: [e["kind"] for e in kinds()] == ["journal_write_failed", "journal_writable"],
        timeout=10,
        what="journal_writable once there is room",
    )


def test_maintenance_on_a_full_state_dir_changes_nothing(lab: Lab) -> None:
    state_dir = tiny_state_dir(lab, "n1")
    a1, _a2 = pair(lab, state_dir)
    fill(state_dir)
    status, body = a1.client.post("/v1/vrrp/maintenance", {"enabled": True, "instance": "VI_1"})
    assert status == 503, body
    assert "cannot persist" in body["error"]["message"], body
    inst = state(a1)
    assert inst["maintenance"] is False and inst["state"] == "MASTER", inst
    assert lab.has_address("n1", VIP1)
    assert sorted(p.name for p in state_dir.iterdir() if p.suffix == ".tmp") == []
