"""vigil.ipvs.genl: IPVS replies decoded with struct, and the request/reply loop.

The decoding is checked against pyroute2's own decoding of the same bytes (an independent
implementation of the same attribute map): every attribute of a service, a destination
and a sync daemon, and what vigil's parsers make of them. The loop runs against a datagram
socket pair whose other end plays the kernel (this host's kernel has no IPVS; the real one
answers the same loop in tests/vm, where every agent request goes through it).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from loop_turns import LoopTurns
from pyroute2.netlink import NLM_F_ACK, NLM_F_DUMP, NLM_F_MULTI, NLM_F_REQUEST
from pyroute2.netlink.generic.ipvs import (
    IPVS_CMD_GET_DEST,
    IPVS_CMD_GET_SERVICE,
    IPVS_CMD_NEW_DAEMON,
    IPVS_CMD_NEW_DEST,
    IPVS_CMD_NEW_SERVICE,
)

from vigil.incremental import Slicer
from vigil.ipvs.genl import (
    NLMSG_DONE,
    NLMSG_ERROR,
    Channel,
    GenlError,
    decode_replies,
    encode_request,
)
from vigil.ipvs.kernel import (
    Destination,
    Service,
    ServiceKey,
    SyncDaemon,
    _IpvsMsg,
    daemon_attrs,
    dest_attrs,
    parse_daemon,
    parse_destination,
    parse_service,
    service_attrs,
    service_key_attrs,
)

FAMILY = 0x1E
STATS = [
    ("IPVS_STATS_ATTR_CONNS", 7),
    ("IPVS_STATS_ATTR_INPKTS", 100),
    ("IPVS_STATS_ATTR_OUTPKTS", 90),
    ("IPVS_STATS_ATTR_INBYTES", 1 << 40),
    ("IPVS_STATS_ATTR_OUTBYTES", 12345),
    ("IPVS_STATS_ATTR_CPS", 3),
    ("IPVS_STATS_ATTR_INPPS", 4),
    ("IPVS_STATS_ATTR_OUTPPS", 5),
    ("IPVS_STATS_ATTR_INBPS", 6),
    ("IPVS_STATS_ATTR_OUTBPS", 8),
]
SERVICE = [
    ("IPVS_SVC_ATTR_AF", socket.AF_INET),
    ("IPVS_SVC_ATTR_PROTOCOL", socket.IPPROTO_TCP),
    ("IPVS_SVC_ATTR_ADDR", bytes([10, 62, 0, 100]) + bytes(12)),
    ("IPVS_SVC_ATTR_PORT", 8080),
    ("IPVS_SVC_ATTR_SCHED_NAME", "sh"),
    ("IPVS_SVC_ATTR_FLAGS", {"flags": 0x1 | 0x8 | 0x10, "mask": 0xFFFFFFFF}),
    ("IPVS_SVC_ATTR_TIMEOUT", 300),
    ("IPVS_SVC_ATTR_NETMASK", bytes([255, 255, 255, 0])),
    ("IPVS_SVC_ATTR_STATS", {"attrs": STATS}),
    ("IPVS_SVC_ATTR_PE_NAME", "sip"),
    ("IPVS_SVC_ATTR_STATS64", {"attrs": STATS}),
]
DEST = [
    ("IPVS_DEST_ATTR_ADDR", bytes([10, 62, 1, 11]) + bytes(12)),
    ("IPVS_DEST_ATTR_PORT", 80),
    ("IPVS_DEST_ATTR_FWD_METHOD", 2),
    ("IPVS_DEST_ATTR_WEIGHT", 5),
    ("IPVS_DEST_ATTR_U_THRESH", 1000),
    ("IPVS_DEST_ATTR_L_THRESH", 10),
    ("IPVS_DEST_ATTR_ACTIVE_CONNS", 4),
    ("IPVS_DEST_ATTR_INACT_CONNS", 9),
    ("IPVS_DEST_ATTR_PERSIST_CONNS", 2),
    ("IPVS_DEST_ATTR_STATS", {"attrs": STATS}),
    ("IPVS_DEST_ATTR_ADDR_FAMILY", socket.AF_INET),
    ("IPVS_DEST_ATTR_STATS64", {"attrs": STATS}),
    ("IPVS_DEST_ATTR_TUN_TYPE", 1),
    ("IPVS_DEST_ATTR_TUN_PORT", 6080),
    ("IPVS_DEST_ATTR_TUN_FLAGS", 2),
]
DAEMONS = [
    [
        ("IPVS_DAEMON_ATTR_STATE", 1),
        ("IPVS_DAEMON_ATTR_MCAST_IFN", "eth0"),
        ("IPVS_DAEMON_ATTR_SYNC_ID", 7),
        ("IPVS_DAEMON_ATTR_SYNC_MAXLEN", 1400),
        ("IPVS_DAEMON_ATTR_MCAST_GROUP", "224.0.0.82"),
        ("IPVS_DAEMON_ATTR_MCAST_PORT", 8849),
        ("IPVS_DAEMON_ATTR_MCAST_TTL", 2),
    ],
    [
        ("IPVS_DAEMON_ATTR_STATE", 2),
        ("IPVS_DAEMON_ATTR_MCAST_IFN", "eth1"),
        ("IPVS_DAEMON_ATTR_SYNC_ID", 9),
        ("IPVS_DAEMON_ATTR_MCAST_GROUP6", "ff02::81"),
    ],
]


def pyroute2_encode(cmd: int, attrs: dict[str, Any], seq: int, flags: int) -> bytes:
    msg = _IpvsMsg()
    msg["cmd"] = cmd
    msg["version"] = 1
    msg["attrs"] = [(k, v) for k, v in attrs.items()]
    msg["header"]["type"] = FAMILY
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = seq
    msg["header"]["pid"] = 0
    msg.encode()
    return bytes(msg.data)


def reply(cmd: int, attrs: dict[str, Any], seq: int, flags: int = NLM_F_MULTI) -> bytes:
    """A reply as the kernel sends it, encoded by pyroute2."""
    return pyroute2_encode(cmd, attrs, seq, flags)


def request(chan: Channel, cmd: int, flags: int) -> Any:
    return chan.request(cmd, 1, [], flags)


def control(kind: int, seq: int, code: int = 0) -> bytes:
    """NLMSG_ERROR (an ACK when ``code`` is 0) or NLMSG_DONE for request ``seq``."""
    body = struct.pack("=i", -code)
    if kind == NLMSG_ERROR:
        body += struct.pack("=IHHII", 16, 0, 0, seq, 0)  # the request's header, echoed
    return struct.pack("=IHHII", 16 + len(body), kind, 0, seq, 0) + body


def pyroute2_view(data: bytes) -> Any:
    msg = _IpvsMsg(data)
    msg.decode()
    return msg


def names(cls: type) -> Iterator[str]:
    for name, _ in cls.nla_map:  # type: ignore[attr-defined]
        if not name.endswith("_UNSPEC"):
            yield name


def same(ours: Any, theirs: Any, cls: type) -> None:
    """Every attribute of ``cls`` reads the same from both decodings."""
    for name in names(cls):
        a, b = ours.get_attr(name), theirs.get_attr(name)
        if b is not None and hasattr(b, "get_attr"):
            assert a is not None, name
            sub = getattr(cls, dict(cls.nla_map)[name])  # type: ignore[attr-defined]
            if getattr(sub, "fields", None) and not getattr(sub, "nla_map", None):
                assert a == {k: b[k] for k, _ in sub.fields}, name
            else:
                same(a, b, sub)
        else:
            assert a == b, (name, a, b)


def test_a_service_decodes_as_pyroute2_decodes_it() -> None:
    data = reply(IPVS_CMD_GET_SERVICE, {"IPVS_CMD_ATTR_SERVICE": {"attrs": SERVICE}}, 5)
    (ours,), finished, error = decode_replies(data, 5, FAMILY, _IpvsMsg)
    assert (finished, error) == (False, None)  # a dump part: more may follow
    assert ours.cmd == IPVS_CMD_GET_SERVICE
    theirs = pyroute2_view(data)
    svc_ours, svc_theirs = (
        ours.get_attr("IPVS_CMD_ATTR_SERVICE"),
        theirs.get_attr("IPVS_CMD_ATTR_SERVICE"),
    )
    same(svc_ours, svc_theirs, _IpvsMsg.service)
    assert parse_service(svc_ours) == parse_service(svc_theirs)
    service, counters = parse_service(svc_ours)
    assert (service.scheduler, service.persistence_timeout, service.persistence_prefix) == (
        "sh",
        300,
        24,
    )
    assert counters.bytes_in == 1 << 40 and counters.conns == 7


def test_a_destination_and_the_daemons_decode_as_pyroute2_decodes_them() -> None:
    data = reply(IPVS_CMD_GET_DEST, {"IPVS_CMD_ATTR_DEST": {"attrs": DEST}}, 6)
    (ours,), _, _ = decode_replies(data, 6, FAMILY, _IpvsMsg)
    d_ours = ours.get_attr("IPVS_CMD_ATTR_DEST")
    d_theirs = pyroute2_view(data).get_attr("IPVS_CMD_ATTR_DEST")
    same(d_ours, d_theirs, _IpvsMsg.dest)
    state = parse_destination(d_ours, 4)
    assert state == parse_destination(d_theirs, 4)
    assert (state.destination.tunnel_port, state.active_conns) == (6080, 4)
    for attrs in DAEMONS:
        data = reply(3, {"IPVS_CMD_ATTR_DAEMON": {"attrs": attrs}}, 8)
        (ours,), _, _ = decode_replies(data, 8, FAMILY, _IpvsMsg)
        theirs = pyroute2_view(data).get_attr("IPVS_CMD_ATTR_DAEMON")
        same(ours.get_attr("IPVS_CMD_ATTR_DAEMON"), theirs, _IpvsMsg.daemon)
        assert parse_daemon(ours.get_attr("IPVS_CMD_ATTR_DAEMON")) == parse_daemon(theirs)


def test_requests_encode_byte_for_byte_as_pyroute2_encodes_them() -> None:
    svc = Service(
        key=ServiceKey.inet("tcp", "fd00::100", 443),
        scheduler="mh",
        sched_flags=frozenset({"mh-fallback", "mh-port"}),
        persistence_timeout=600,
        persistence_prefix=64,
        pe_name="sip",
    )
    tun = Destination(
        addr=ipaddress.ip_address("10.62.1.11"), port=80, weight=3, forward="tun",
        tunnel_type="gue", tunnel_port=6080, tunnel_csum="csum", upper_threshold=9,
    )  # fmt: skip
    requests: list[tuple[int, dict[str, Any]]] = [
        (IPVS_CMD_NEW_SERVICE, {"IPVS_CMD_ATTR_SERVICE": service_attrs(svc)}),
        (
            IPVS_CMD_NEW_DEST,
            {
                "IPVS_CMD_ATTR_SERVICE": service_key_attrs(ServiceKey.mark(7, 4)),
                "IPVS_CMD_ATTR_DEST": dest_attrs(tun),
            },
        ),
        (IPVS_CMD_GET_SERVICE, {}),
    ]
    for daemon in (
        SyncDaemon("master", "eth0", 7, maxlen=1400, group=ipaddress.ip_address("224.0.0.82"),
                   port=8849, ttl=2),
        SyncDaemon("backup", "eth1", 9, group=ipaddress.ip_address("ff02::81")),
    ):  # fmt: skip
        requests.append((IPVS_CMD_NEW_DAEMON, {"IPVS_CMD_ATTR_DAEMON": daemon_attrs(daemon)}))
    for cmd, attrs in requests:
        ours = encode_request(
            _IpvsMsg, FAMILY, NLM_F_REQUEST | NLM_F_ACK, 11, cmd, 1, list(attrs.items())
        )
        nested = {k: {"attrs": v} for k, v in attrs.items()}
        assert ours == pyroute2_encode(cmd, nested, 11, NLM_F_REQUEST | NLM_F_ACK), cmd
    with pytest.raises(ValueError, match="IPVS_SVC_ATTR_NOPE"):
        encode_request(
            _IpvsMsg, FAMILY, 1, 1, 1, 1, [("IPVS_CMD_ATTR_SERVICE", [("IPVS_SVC_ATTR_NOPE", 1)])]
        )


def test_decode_skips_other_requests_and_stops_at_done_or_error() -> None:
    svc = {"IPVS_CMD_ATTR_SERVICE": {"attrs": SERVICE}}
    data = reply(1, svc, 4) + reply(1, svc, 5) + reply(1, svc, 5) + control(NLMSG_DONE, 5)
    replies, finished, error = decode_replies(data, 5, FAMILY, _IpvsMsg)
    assert (len(replies), finished, error) == (2, True, None)
    assert decode_replies(control(NLMSG_ERROR, 9, errno.EEXIST), 9, FAMILY, _IpvsMsg) == (
        [],
        True,
        errno.EEXIST,
    )
    assert decode_replies(control(NLMSG_ERROR, 9), 9, FAMILY, _IpvsMsg) == ([], True, None)
    truncated = reply(1, svc, 5)[:-8]
    assert decode_replies(truncated, 5, FAMILY, _IpvsMsg) == ([], False, None)


class FakeKernel:
    """The other end of a datagram pair: reads requests, answers as told."""

    def __init__(self, slicer: Slicer | None = None) -> None:
        self.ours, self.kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.kernel.setblocking(False)
        self.chan = Channel(self.ours, FAMILY, _IpvsMsg, slicer)

    async def request(self) -> tuple[int, int, int]:
        """The next request: (sequence, flags, command)."""
        data = await asyncio.get_running_loop().sock_recv(self.kernel, 65536)
        _length, kind, flags, seq, _pid = struct.unpack_from("=IHHII", data)
        assert kind == FAMILY
        return seq, flags, data[16]

    async def ask(self, cmd: int, flags: int) -> tuple[asyncio.Task[Any], int, int, int]:
        """Send a request through the channel; (its task, and the sequence, flags and
        command this end read)."""
        task = asyncio.create_task(self.chan.request(cmd, 1, [], flags))
        seq, got_flags, got_cmd = await self.request()
        return task, seq, got_flags, got_cmd

    def send(self, data: bytes) -> None:
        self.kernel.send(data)

    def close(self) -> None:
        self.chan.close()
        self.kernel.close()


async def test_requests_dumps_errors_and_a_request_given_up_half_way() -> None:
    k = FakeKernel()
    svc = {"IPVS_CMD_ATTR_SERVICE": {"attrs": SERVICE}}
    try:
        # a write: ACK requested, answered with an ACK
        task, seq, flags, cmd = await k.ask(IPVS_CMD_NEW_DEST, NLM_F_REQUEST | NLM_F_ACK)
        assert (flags, cmd) == (NLM_F_REQUEST | NLM_F_ACK, IPVS_CMD_NEW_DEST)
        k.send(control(NLMSG_ERROR, seq))
        assert await task == []
        # a refusal
        task, seq, _, _ = await k.ask(IPVS_CMD_NEW_DEST, NLM_F_REQUEST | NLM_F_ACK)
        k.send(control(NLMSG_ERROR, seq, errno.EEXIST))
        with pytest.raises(GenlError) as refused:
            await task
        assert refused.value.code == errno.EEXIST
        # a dump in three datagrams, the caller waiting on the socket between them
        task, seq, flags, _ = await k.ask(IPVS_CMD_GET_SERVICE, NLM_F_REQUEST | NLM_F_DUMP)
        assert flags & NLM_F_DUMP == NLM_F_DUMP
        k.send(reply(1, svc, seq) + reply(1, svc, seq))
        k.send(reply(1, svc, seq))
        k.send(control(NLMSG_DONE, seq))
        assert len(await task) == 3
        # a dump given up half-way (cancelled): its late parts are skipped by the next
        task, old, _, _ = await k.ask(IPVS_CMD_GET_SERVICE, NLM_F_REQUEST | NLM_F_DUMP)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        k.send(reply(1, svc, old))
        task, seq, _, _ = await k.ask(IPVS_CMD_GET_SERVICE, NLM_F_REQUEST | NLM_F_DUMP)
        assert seq != old
        k.send(reply(1, svc, old) + control(NLMSG_DONE, old))
        k.send(reply(1, svc, seq) + control(NLMSG_DONE, seq))
        (got,) = await task
        assert parse_service(got.get_attr("IPVS_CMD_ATTR_SERVICE"))[0].key.port == 8080
    finally:
        k.close()


async def test_concurrent_requests_get_their_own_replies() -> None:
    k = FakeKernel()
    svc = {"IPVS_CMD_ATTR_SERVICE": {"attrs": SERVICE}}
    try:
        first = asyncio.create_task(
            request(k.chan, IPVS_CMD_GET_SERVICE, NLM_F_REQUEST | NLM_F_DUMP)
        )
        second = asyncio.create_task(
            request(k.chan, IPVS_CMD_GET_SERVICE, NLM_F_REQUEST | NLM_F_DUMP)
        )
        seq1, _, _ = await k.request()
        k.send(reply(1, svc, seq1) + control(NLMSG_DONE, seq1))
        seq2, _, _ = await k.request()  # sent only once the first had its answer
        assert seq2 == seq1 + 1
        k.send(reply(1, svc, seq2) + reply(1, svc, seq2) + control(NLMSG_DONE, seq2))
        assert (len(await first), len(await second)) == (1, 2)
    finally:
        k.close()


async def test_a_dump_already_waiting_hands_the_loop_back_between_its_parts() -> None:
    """The kernel queues a dump's parts before we read them: reading them all at once
    would hold the loop. With a slice of 0 the channel yields after every part."""
    k = FakeKernel(Slicer(0.0))
    svc = {"IPVS_CMD_ATTR_SERVICE": {"attrs": SERVICE}}
    try:
        task, seq, _, _ = await k.ask(IPVS_CMD_GET_SERVICE, NLM_F_REQUEST | NLM_F_DUMP)
        for _ in range(8):
            k.send(reply(1, svc, seq) + reply(1, svc, seq))
        k.send(control(NLMSG_DONE, seq))
        async with LoopTurns() as turns:
            assert len(await task) == 16
        assert turns.count >= 8, turns.count
    finally:
        k.close()


async def test_a_reply_that_never_comes_fails_the_request_and_frees_the_channel() -> None:
    k = FakeKernel()
    k.chan.reply_timeout = 0.2
    svc = {"IPVS_CMD_ATTR_SERVICE": {"attrs": SERVICE}}
    try:
        task, _, _, _ = await k.ask(
            IPVS_CMD_NEW_DEST, NLM_F_REQUEST | NLM_F_ACK
        )  # read, never answered
        with pytest.raises(GenlError) as lost:
            await task
        assert lost.value.code == errno.ETIMEDOUT
        task, seq, _, _ = await k.ask(IPVS_CMD_GET_SERVICE, NLM_F_REQUEST | NLM_F_DUMP)
        k.send(reply(1, svc, seq) + control(NLMSG_DONE, seq))
        assert len(await task) == 1
    finally:
        k.close()
