"""Property tests for the BFD codec: hostile bytes never raise, pack -> unpack round-trips,
and scapy agrees on every packet hypothesis can build.

The decoder sits on the receive path of a daemon that must not die on a hostile network:
for any input it returns a ControlPacket or a Rejection.
"""

from __future__ import annotations

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scapy.contrib.bfd import BFD

from vigil.bfd.packet import AuthSection, AuthType, ControlPacket, Rejection, State

FUZZ = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ORACLE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u32 = st.integers(0, 2**32 - 1)


@st.composite
def auth_sections(draw: st.DrawFn) -> AuthSection:
    auth_type = draw(st.sampled_from(list(AuthType)))
    key_id = draw(st.integers(0, 255))
    if auth_type is AuthType.SIMPLE_PASSWORD:
        return AuthSection(
            type=auth_type, key_id=key_id, data=draw(st.binary(min_size=1, max_size=16))
        )
    size = auth_type.digest_size
    return AuthSection(
        type=auth_type,
        key_id=key_id,
        sequence=draw(u32),
        reserved=draw(st.integers(0, 255)),
        data=draw(st.binary(min_size=size, max_size=size)),
    )


@st.composite
def valid_packets(draw: st.DrawFn) -> ControlPacket:
    """Packets a receiver must accept (the checks of RFC 5880 6.8.6 all pass)."""
    state = draw(st.sampled_from(list(State)))
    your = draw(u32 if state in (State.DOWN, State.ADMIN_DOWN) else st.integers(1, 2**32 - 1))
    poll = draw(st.booleans())
    return ControlPacket(
        state=state,
        diag=draw(st.integers(0, 31)),
        detect_mult=draw(st.integers(1, 255)),
        my_discr=draw(st.integers(1, 2**32 - 1)),
        your_discr=your,
        desired_min_tx=draw(u32),
        required_min_rx=draw(u32),
        required_min_echo_rx=draw(u32),
        poll=poll,
        final=draw(st.booleans()) and not poll,
        cpi=draw(st.booleans()),
        demand=draw(st.booleans()),
        auth=draw(st.none() | auth_sections()),
    )


@FUZZ
@given(st.binary(max_size=80))
def test_random_bytes_never_raise(data: bytes) -> None:
    result = ControlPacket.unpack(data)
    assert isinstance(result, ControlPacket | Rejection)
    if isinstance(result, ControlPacket):
        # Whatever is accepted re-encodes to the bytes it came from (up to Length).
        assert result.pack() == data[: result.length]


@FUZZ
@given(valid_packets(), st.binary(max_size=64), st.data())
def test_mutated_packets_never_raise(pkt: ControlPacket, tail: bytes, data: st.DataObject) -> None:
    """Valid packets with a few bytes flipped reach the deeper checks (auth, lengths)."""
    raw = bytearray(pkt.pack() + tail)
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(raw) - 1))
        raw[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    result = ControlPacket.unpack(bytes(raw[:cut]))
    assert isinstance(result, ControlPacket | Rejection)


@FUZZ
@given(valid_packets(), st.binary(max_size=16))
def test_pack_unpack_round_trips(pkt: ControlPacket, padding: bytes) -> None:
    data = pkt.pack()
    assert len(data) == pkt.length
    assert ControlPacket.unpack(data) == pkt
    assert ControlPacket.unpack(data + padding) == pkt


@ORACLE
@given(valid_packets())
def test_scapy_reads_every_field_we_write(pkt: ControlPacket) -> None:
    theirs = BFD(pkt.pack())
    assert (theirs.version, theirs.diag, theirs.sta, theirs.detect_mult, theirs.len) == (
        1,
        int(pkt.diag),
        int(pkt.state),
        pkt.detect_mult,
        pkt.length,
    )
    assert (
        theirs.my_discriminator,
        theirs.your_discriminator,
        theirs.min_tx_interval,
        theirs.min_rx_interval,
        theirs.echo_rx_interval,
    ) == (
        pkt.my_discr,
        pkt.your_discr,
        pkt.desired_min_tx,
        pkt.required_min_rx,
        pkt.required_min_echo_rx,
    )
    flags = theirs.flags
    ours = (pkt.poll, pkt.final, pkt.cpi, pkt.authenticated, pkt.demand, False)
    assert ours == (flags.P, flags.F, flags.C, flags.A, flags.D, flags.M)
    if pkt.auth is not None and pkt.auth.type is not AuthType.SIMPLE_PASSWORD:
        auth = theirs.optional_auth
        assert (auth.auth_type, auth.auth_keyid, auth.sequence_number) == (
            pkt.auth.type,
            pkt.auth.key_id,
            pkt.auth.sequence,
        )
        assert auth.auth_key.to_bytes(pkt.auth.type.digest_size, "big") == pkt.auth.data


@ORACLE
@given(valid_packets())
def test_scapy_rebuilds_our_bytes(pkt: ControlPacket) -> None:
    """scapy's dissect-then-build is the identity on our packets (no field it drops)."""
    assume(pkt.auth is None or pkt.auth.type is not AuthType.SIMPLE_PASSWORD)
    data = pkt.pack()
    assert bytes(BFD(data)) == data
