"""vigil.faststart: the start plan's file, its key, which starts may use it, and its netlink.

The netlink part runs against this host's real kernel: its generic netlink controller
(``nlctrl``) answers the batches as IPVS would (each message handled in turn within the
send, a refusal queued for each message it refuses). This kernel has no IPVS, so a plan
here never reaches a table: the whole fast start on a real IPVS table is tested in the VM
(tests/vm/test_ipvs_agent.py, ``test_a_restart_programs_its_table_from_the_start_plan``).
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from vigil import faststart
from vigil.faststart import (
    CTRL_ATTR_FAMILY_NAME,
    CTRL_CMD_GETFAMILY,
    GENL_ID_CTRL,
    LoadedPlan,
    Plan,
    PlanService,
    _Genl,
    fast_start,
    messages,
    options,
    plan_key,
)
from vigil.journalfile import EMPTY, render
from vigil.statedir import StateDirLock

DIGEST = "ab" * 32


def plan(key: str = "k" * 64, n: int = 3) -> Plan:
    services = [
        PlanService(
            f"service:tcp/10.62.0.{i}:80",
            {"kind": "service", "vs": f"vs{i}", "service": {"address": f"10.62.0.{i}"}},
            b"\x01\x01\x00\x00" + i.to_bytes(4, "little") * 2,
            b"\x02\x01\x00\x00" + i.to_bytes(4, "little"),
            [
                b"\x05\x01\x00\x00" + i.to_bytes(4, "little") + bytes([d % 251]) * 8
                for d in range(i % 20)
            ],
        )
        for i in range(n)
    ]
    return Plan(key, "IPVS", "ipvs", ["ipvs-control.json"], services)


# ---------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("argv", "want"),
    [
        ([], ("/etc/vigil/vigil.yml", "/var/lib/vigil")),
        (["--config", "a.yml", "--state-dir", "/s"], ("a.yml", "/s")),
        (["-c", "a.yml", "--state-dir=/s", "--log-level", "debug"], ("a.yml", "/s")),
        (["--config=a.yml", "--socket", "/x", "--api-allow-uid", "7"], ("a.yml", "/var/lib/vigil")),
        (["--check", "--config", "a.yml"], None),
        (["--cleanup"], None),
        (["--version"], None),
        (["--help"], None),
        (["--confg", "a.yml"], None),  # a typo: argparse says so, not this step
        (["--config"], None),
        (["--socket"], None),
    ],
)  # fmt: skip
def test_only_a_plain_agent_start_uses_the_plan(
    argv: list[str], want: tuple[str, str] | None
) -> None:
    assert options(argv) == want


# ---------------------------------------------------------------------------- the file


def payloads(chunk: Any) -> list[bytes]:
    """The requests of a chunk without their netlink headers."""
    return [bytes(m[16:]) for m in messages(chunk)]


def headers(chunk: Any) -> list[tuple[int, int, int]]:
    """(family, flags, sequence) of each request of a chunk."""
    return [struct.unpack_from("=IHHII", m)[1:4] for m in messages(chunk)]


def test_a_plan_reads_back_as_written() -> None:
    p = plan(n=4)
    p.family_id = 0x22
    back = LoadedPlan(p.encode())
    assert (back.key, back.family, back.family_id, back.journal, back.inputs) == (
        p.key, "IPVS", 0x22, "ipvs", p.inputs
    )  # fmt: skip
    assert back.journal_keys == [s.journal_key for s in p.services]
    assert payloads(back.adds) == [s.add for s in p.services]
    assert payloads(back.dests) == [d for s in p.services for d in s.dests]
    assert [[bytes(m[16:]) for m in back.dest_messages([i])] for i in range(4)] == [
        s.dests for s in p.services
    ]
    assert back.delete_payloads([3, 1]) == [p.services[3].delete, p.services[1].delete]
    # the kernel gets the writer's family id, requests numbered from 1 in plan order
    assert headers(back.adds) == [(0x22, 1, i + 1) for i in range(4)]
    assert headers(back.dests) == [(0x22, 1, 5 + i) for i in range(6)]
    # the journal's text records the plan's services as vigil.journal writes them
    entries = {s.journal_key: s.journal_entry for s in p.services}
    assert bytes(back.journal_text) == render(entries)
    assert json.loads(bytes(back.journal_text))["entries"] == entries


def test_the_batches_of_a_large_plan_cover_it_in_order_within_the_bounds() -> None:
    p = plan(n=300)
    back = LoadedPlan(p.encode())
    for chunk, offsets in ((back.adds, back.spans[0]), (back.dests, back.spans[1])):
        assert offsets[0] == 0 and offsets[-1] == len(chunk)
        for start, stop in itertools.pairwise(offsets):
            batch = messages(chunk[start:stop])
            assert len(batch) <= faststart.BATCH_MESSAGES
            assert stop - start <= faststart.BATCH_BYTES or len(batch) == 1
    assert len(back.spans[1]) > 2, "300 services' real servers are more than one batch"


def test_another_family_id_is_written_into_every_request() -> None:
    p = plan(n=5)
    p.family_id = 0x22
    back = LoadedPlan(p.encode())
    moved = faststart._refamily(back.dests, 0x31)
    assert [h[0] for h in headers(moved)] == [0x31] * 10
    assert payloads(moved) == payloads(back.dests)


def test_an_empty_journal_is_what_the_journal_writes_for_no_entries() -> None:
    assert render({}) == EMPTY


def test_the_key_covers_the_config_the_inputs_and_the_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = plan_key(DIGEST, [b'{"drained": {}}'])
    assert plan_key(DIGEST, [b'{"drained": {}}']) == base
    assert plan_key("cd" * 32, [b'{"drained": {}}']) != base
    assert plan_key(DIGEST, [b'{"drained": {"web": ["rs1"]}}']) != base
    assert plan_key(DIGEST, [None]) != plan_key(DIGEST, [b""])
    monkeypatch.setattr(faststart, "__version__", "9.9.9")
    assert plan_key(DIGEST, [b'{"drained": {}}']) != base


# ---------------------------------------------------------------------------- fast_start


def setup_plan(tmp_path: Path, *, matching: bool) -> tuple[Path, Path]:
    state, config = tmp_path / "state", tmp_path / "vigil.yml"
    state.mkdir()
    config.write_text("virtual_servers: []\n")
    digest = hashlib.sha256(config.read_bytes()).hexdigest()
    key = plan_key(digest if matching else DIGEST, [None])
    (state / faststart.PLAN_FILE).write_bytes(plan(key).encode())
    return state, config


def test_a_plan_for_another_config_does_nothing_and_takes_no_lock(tmp_path: Path) -> None:
    state, config = setup_plan(tmp_path, matching=False)
    assert fast_start(["--config", str(config), "--state-dir", str(state)]) is None
    assert not (state / "ipvs-journal.json").exists()
    lock = StateDirLock(state)
    lock.acquire()  # not held by anyone
    lock.release()


def test_without_ipvs_in_the_kernel_the_agent_starts_alone(tmp_path: Path) -> None:
    """A matching plan, but this kernel has no IPVS family: nothing journalled, the lock
    free again for the agent."""
    state, config = setup_plan(tmp_path, matching=True)
    assert fast_start(["--config", str(config), "--state-dir", str(state)]) is None
    assert not (state / "ipvs-journal.json").exists()
    lock = StateDirLock(state)
    lock.acquire()
    lock.release()


def test_a_state_dir_held_by_another_agent_is_left_alone(tmp_path: Path) -> None:
    state, config = setup_plan(tmp_path, matching=True)
    holder = StateDirLock(state)
    holder.acquire()
    try:
        assert fast_start(["--config", str(config), "--state-dir", str(state)]) is None
        assert not (state / "ipvs-journal.json").exists()
    finally:
        holder.release()


def test_the_checked_plan_serves_a_start_the_running_one_does_not(tmp_path: Path) -> None:
    """``vigild --check`` wrote a plan for the config now installed; the running agent's
    is for the config before it: the start takes the checked one. When both match, the
    running agent's comes first."""
    state, config = setup_plan(tmp_path, matching=False)
    digest = hashlib.sha256(config.read_bytes()).hexdigest()
    checked = plan(plan_key(digest, [None]), n=5)
    (state / faststart.CHECKED_PLAN_FILE).write_bytes(checked.encode())
    found = faststart._matching_plan(str(config), str(state))
    assert found is not None and found.key == checked.key and found.count == 5
    (state / faststart.PLAN_FILE).write_bytes(plan(checked.key, n=2).encode())
    found = faststart._matching_plan(str(config), str(state))
    assert found is not None and found.count == 2
    (state / faststart.CHECKED_PLAN_FILE).unlink()
    (state / faststart.PLAN_FILE).write_bytes(plan(DIGEST).encode())
    assert faststart._matching_plan(str(config), str(state)) is None


# ---------------------------------------------------------------------------- netlink


def getfamily(name: str) -> bytes:
    value = name.encode() + b"\0"
    attr = struct.pack("=HH", 4 + len(value), CTRL_ATTR_FAMILY_NAME) + value
    attr += b"\0" * (-len(attr) % 4)
    return struct.pack("=BBH", CTRL_CMD_GETFAMILY, 1, 0) + attr


def test_the_controller_family_resolves_and_an_unknown_one_does_not() -> None:
    genl = _Genl()
    try:
        assert genl.family("nlctrl") == GENL_ID_CTRL
        assert genl.family("no-such-family-here") is None
    finally:
        genl.close()


def test_batches_report_exactly_the_refused_requests() -> None:
    """600 requests in three batches: the kernel refuses the ones naming no family; the
    answers to the others (replies, not refusals) are read and passed over."""
    names = [("nlctrl" if i % 50 == 0 else f"none-{i}") for i in range(600)]
    genl = _Genl()
    try:
        refused = genl.send_all(GENL_ID_CTRL, [getfamily(n) for n in names])
        assert refused == {i: errno.ENOENT for i, n in enumerate(names) if n != "nlctrl"}
        # the sequence numbers go on: a second round is told apart from the first
        again = genl.send_all(GENL_ID_CTRL, [getfamily("nlctrl"), getfamily("none")])
        assert again == {1: errno.ENOENT}
    finally:
        genl.close()


def test_the_batches_respect_the_size_bounds() -> None:
    sizes = [112] * 700 + [20016] * 3
    spans = list(faststart._batches(sizes))
    assert spans[0][0] == 0 and spans[-1][1] == len(sizes)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    for start, stop in spans:
        assert stop - start <= faststart.BATCH_MESSAGES
        assert sum(sizes[start:stop]) <= faststart.BATCH_BYTES or stop - start == 1
