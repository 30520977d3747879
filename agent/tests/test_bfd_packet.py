"""BFD control packet codec: every rejection of RFC 5880 6.8.6 that a packet allows alone,
the authentication section's shapes, and scapy's BFD layer as the oracle both ways.

scapy quirk worth knowing when reading these tests: ``scapy.contrib.bfd`` builds a simple
password section correctly but, when dissecting, sizes the password by Auth Len instead of
Auth Len - 3; with nothing after the section it simply reads to the end, which is why the
password cross-check below still holds.
"""

from __future__ import annotations

import struct

import pytest
from scapy.contrib.bfd import BFD, OptionalAuth

from vigil.bfd.packet import (
    AuthSection,
    AuthType,
    ControlPacket,
    Diag,
    Rejection,
    RejectReason,
    State,
    diag_text,
)


def packet(**overrides: object) -> ControlPacket:
    values: dict[str, object] = {
        "state": State.UP,
        "detect_mult": 3,
        "my_discr": 0x01020304,
        "your_discr": 0x0A0B0C0D,
        "desired_min_tx": 50_000,
        "required_min_rx": 60_000,
    }
    values.update(overrides)
    return ControlPacket(**values)  # type: ignore[arg-type]


def decoded(data: bytes) -> ControlPacket:
    result = ControlPacket.unpack(data)
    assert isinstance(result, ControlPacket), result
    return result


def rejected(data: bytes) -> Rejection:
    result = ControlPacket.unpack(data)
    assert isinstance(result, Rejection), result
    return result


def with_byte(data: bytes, index: int, value: int) -> bytes:
    return data[:index] + bytes([value]) + data[index + 1 :]


MD5 = AuthSection(type=AuthType.KEYED_MD5, key_id=7, sequence=0x11223344, data=bytes(range(16)))
SHA1 = AuthSection(
    type=AuthType.METICULOUS_KEYED_SHA1, key_id=255, sequence=1, data=bytes(range(20))
)
SIMPLE = AuthSection(type=AuthType.SIMPLE_PASSWORD, key_id=1, data=b"secret")


# --------------------------------------------------------------------------- layout


class TestLayout:
    def test_header_bytes_by_hand(self) -> None:
        data = packet(diag=Diag.PATH_DOWN, poll=True).pack()
        assert data == bytes.fromhex(
            "25"  # version 1, diag 5
            "e0"  # state Up (3 << 6), P
            "03" "18"  # mult 3, length 24
            "01020304" "0a0b0c0d"
            "0000c350" "0000ea60" "00000000"
        )  # fmt: skip

    @pytest.mark.parametrize(
        ("flag", "bit"),
        [("poll", 0x20), ("final", 0x10), ("cpi", 0x08), ("demand", 0x02)],
    )
    def test_each_flag_has_its_bit(self, flag: str, bit: int) -> None:
        data = packet(state=State.DOWN, **{flag: True}).pack()
        assert data[1] == (1 << 6) | bit
        assert getattr(decoded(data), flag) is True

    def test_a_bit_and_length_follow_the_auth_section(self) -> None:
        for section, length in ((SIMPLE, 33), (MD5, 48), (SHA1, 52)):
            data = packet(auth=section).pack()
            assert data[1] & 0x04 and data[3] == length == len(data)
            assert decoded(data) == packet(auth=section)

    def test_digest_section_bytes_by_hand(self) -> None:
        tail = packet(auth=MD5).pack()[24:]
        assert tail[:8] == bytes.fromhex("02" "18" "07" "00" "11223344")  # fmt: skip
        assert tail[8:] == bytes(range(16))

    def test_unknown_diagnostic_codes_are_kept_as_numbers(self) -> None:
        pkt = decoded(packet(diag=12).pack())
        assert pkt.diag == 12 and not isinstance(pkt.diag, Diag)
        assert diag_text(12) == "reserved (12)"
        assert decoded(packet(diag=1).pack()).diag is Diag.CONTROL_DETECTION_TIME_EXPIRED
        assert str(Diag.ADMINISTRATIVELY_DOWN) == "Administratively Down"

    def test_bytes_after_length_are_ignored(self) -> None:
        pkt = packet(auth=MD5)
        assert decoded(pkt.pack() + b"\xff" * 7) == pkt

    def test_reserved_byte_of_a_digest_section_survives_a_round_trip(self) -> None:
        data = with_byte(packet(auth=MD5).pack(), 27, 0x5A)
        pkt = decoded(data)
        assert pkt.auth is not None and pkt.auth.reserved == 0x5A
        assert pkt.pack() == data

    def test_poll_and_final_together_are_decoded_not_dropped(self) -> None:
        """RFC 5880 6.5 forbids sending both; 6.8.6 has no rule to drop such a packet."""
        pkt = decoded(packet(poll=True, final=True).pack())
        assert pkt.poll and pkt.final

    def test_str_is_one_readable_line(self) -> None:
        text = str(packet(poll=True, auth=MD5))
        assert text.startswith("BFD Up diag=0 flags=PA mult=3") and "\n" not in text


class TestConstruction:
    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            ({"detect_mult": 256}, "detect_mult"),
            ({"my_discr": -1}, "my_discr"),
            ({"your_discr": 2**32}, "your_discr"),
            ({"desired_min_tx": 2**32}, "desired_min_tx"),
            ({"diag": 32}, "diag"),
            ({"version": 8}, "version"),
            ({"required_min_rx": True}, "required_min_rx"),
        ],
    )
    def test_values_that_do_not_fit_their_bits_are_refused(
        self, overrides: dict[str, object], field: str
    ) -> None:
        with pytest.raises(ValueError, match=field):
            packet(**overrides)

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"type": AuthType.SIMPLE_PASSWORD, "key_id": 1, "data": b""}, "1 to 16"),
            ({"type": AuthType.SIMPLE_PASSWORD, "key_id": 1, "data": b"x" * 17}, "1 to 16"),
            ({"type": AuthType.KEYED_MD5, "key_id": 1, "data": b"x" * 20}, "16 bytes"),
            ({"type": AuthType.KEYED_SHA1, "key_id": 1, "data": b"x" * 16}, "20 bytes"),
            ({"type": AuthType.KEYED_SHA1, "key_id": 256, "data": b"x" * 20}, "key_id"),
            ({"type": 9, "key_id": 1, "data": b"x"}, "AuthType"),
            (
                {"type": AuthType.SIMPLE_PASSWORD, "key_id": 1, "data": b"x", "sequence": 1},
                "neither",
            ),
        ],
    )
    def test_auth_sections_that_cannot_exist_are_refused(
        self, kwargs: dict[str, object], message: str
    ) -> None:
        with pytest.raises(ValueError, match=message):
            AuthSection(**kwargs)  # type: ignore[arg-type]

    def test_auth_type_properties(self) -> None:
        assert [t.meticulous for t in AuthType] == [False, False, True, False, True]
        assert [t.section_length for t in AuthType] == [None, 24, 24, 28, 28]


# --------------------------------------------------------------------------- rejections


class TestRejections:
    """One test per check of RFC 5880 6.8.6 (and 4.2-4.4) that needs only the packet."""

    def test_shorter_than_the_header(self) -> None:
        for size in (0, 1, 23):
            assert rejected(packet().pack()[:size]).reason is RejectReason.TRUNCATED

    @pytest.mark.parametrize("version", [0, 2, 7])
    def test_version_other_than_1(self, version: int) -> None:
        rej = rejected(packet(version=version).pack())
        assert rej.reason is RejectReason.VERSION and str(version) in rej.detail

    def test_length_below_24(self) -> None:
        rej = rejected(with_byte(packet().pack(), 3, 23))
        assert rej.reason is RejectReason.LENGTH and "minimum of 24" in rej.detail

    def test_length_below_26_with_the_a_bit(self) -> None:
        data = with_byte(packet().pack(), 1, (3 << 6) | 0x04)  # A set, Length still 24
        rej = rejected(with_byte(data, 3, 25) + b"\x01")
        assert rej.reason is RejectReason.LENGTH and "minimum of 26" in rej.detail

    def test_length_beyond_the_datagram(self) -> None:
        rej = rejected(with_byte(packet().pack(), 3, 25))
        assert rej.reason is RejectReason.LENGTH_EXCEEDS_DATAGRAM
        data = packet(auth=SHA1).pack()
        assert rejected(data[:-1]).reason is RejectReason.LENGTH_EXCEEDS_DATAGRAM

    def test_length_above_24_without_the_a_bit(self) -> None:
        """Stricter than the RFC (module docstring): bytes no field describes."""
        rej = rejected(with_byte(packet().pack(), 3, 28) + bytes(4))
        assert rej.reason is RejectReason.LENGTH and "A bit clear" in rej.detail

    def test_detect_mult_zero(self) -> None:
        assert rejected(packet(detect_mult=0).pack()).reason is RejectReason.DETECT_MULT

    def test_multipoint_bit(self) -> None:
        assert rejected(packet(multipoint=True).pack()).reason is RejectReason.MULTIPOINT

    def test_my_discriminator_zero(self) -> None:
        assert rejected(packet(my_discr=0).pack()).reason is RejectReason.MY_DISCRIMINATOR

    @pytest.mark.parametrize("state", [State.INIT, State.UP])
    def test_your_discriminator_zero_outside_down(self, state: State) -> None:
        rej = rejected(packet(state=state, your_discr=0).pack())
        assert rej.reason is RejectReason.YOUR_DISCRIMINATOR and str(state) in rej.detail

    @pytest.mark.parametrize("state", [State.DOWN, State.ADMIN_DOWN])
    def test_your_discriminator_zero_is_fine_in_down_and_admin_down(self, state: State) -> None:
        assert decoded(packet(state=state, your_discr=0).pack()).your_discr == 0

    @pytest.mark.parametrize("kind", [0, 6, 255])
    def test_reserved_auth_types(self, kind: int) -> None:
        data = bytearray(packet(auth=MD5).pack())
        data[24] = kind
        rej = rejected(bytes(data))
        assert rej.reason is RejectReason.AUTH_TYPE_UNKNOWN and str(kind) in rej.detail

    @pytest.mark.parametrize(
        ("section", "bad_len"),
        [(MD5, 28), (MD5, 20), (SHA1, 24), (SIMPLE, 8)],
    )
    def test_auth_len_that_disagrees_with_length(self, section: AuthSection, bad_len: int) -> None:
        data = bytearray(packet(auth=section).pack())
        data[25] = bad_len
        assert rejected(bytes(data)).reason is RejectReason.AUTH_LENGTH

    @pytest.mark.parametrize(
        ("auth_type", "auth_len"),
        [(AuthType.KEYED_MD5, 28), (AuthType.KEYED_SHA1, 24), (AuthType.SIMPLE_PASSWORD, 3)],
    )
    def test_auth_len_wrong_for_the_type(self, auth_type: AuthType, auth_len: int) -> None:
        body = bytes([auth_type, auth_len]) + bytes(auth_len - 2)
        head = bytearray(packet().pack())
        head[1] |= 0x04
        head[3] = 24 + auth_len
        rej = rejected(bytes(head) + body)
        assert rej.reason is RejectReason.AUTH_LENGTH and str(auth_len) in rej.detail

    def test_simple_password_longer_than_16(self) -> None:
        head = bytearray(packet().pack())
        head[1] |= 0x04
        head[3] = 24 + 20
        body = bytes([1, 20, 1]) + b"p" * 17
        assert rejected(bytes(head) + body).reason is RejectReason.AUTH_LENGTH

    def test_rejection_str_names_the_reason(self) -> None:
        assert str(rejected(b"")).startswith("truncated: 0 bytes")

    def test_auth_reasons_are_marked(self) -> None:
        assert RejectReason.AUTH_DIGEST.is_auth and RejectReason.AUTH_MISSING.is_auth
        assert not RejectReason.AUTH_LENGTH.is_auth and not RejectReason.TTL.is_auth


# --------------------------------------------------------------------------- scapy oracle


def scapy_fields(pkt: BFD) -> dict[str, object]:
    flags = pkt.flags
    return {
        "version": pkt.version,
        "diag": pkt.diag,
        "state": pkt.sta,
        "poll": bool(flags.P),
        "final": bool(flags.F),
        "cpi": bool(flags.C),
        "a": bool(flags.A),
        "demand": bool(flags.D),
        "multipoint": bool(flags.M),
        "detect_mult": pkt.detect_mult,
        "length": pkt.len,
        "my_discr": pkt.my_discriminator,
        "your_discr": pkt.your_discriminator,
        "desired_min_tx": pkt.min_tx_interval,
        "required_min_rx": pkt.min_rx_interval,
        "required_min_echo_rx": pkt.echo_rx_interval,
    }


def our_fields(pkt: ControlPacket) -> dict[str, object]:
    return {
        "version": pkt.version,
        "diag": int(pkt.diag),
        "state": int(pkt.state),
        "poll": pkt.poll,
        "final": pkt.final,
        "cpi": pkt.cpi,
        "a": pkt.authenticated,
        "demand": pkt.demand,
        "multipoint": pkt.multipoint,
        "detect_mult": pkt.detect_mult,
        "length": pkt.length,
        "my_discr": pkt.my_discr,
        "your_discr": pkt.your_discr,
        "desired_min_tx": pkt.desired_min_tx,
        "required_min_rx": pkt.required_min_rx,
        "required_min_echo_rx": pkt.required_min_echo_rx,
    }


CASES = [
    packet(),
    packet(state=State.DOWN, your_discr=0, diag=Diag.CONTROL_DETECTION_TIME_EXPIRED),
    packet(state=State.ADMIN_DOWN, diag=Diag.ADMINISTRATIVELY_DOWN, your_discr=0),
    packet(state=State.INIT, poll=True, required_min_echo_rx=10_000),
    packet(final=True, cpi=True, demand=True, detect_mult=255),
    packet(my_discr=0xFFFFFFFF, desired_min_tx=0xFFFFFFFF, required_min_rx=0),
    packet(auth=SIMPLE),
    packet(auth=MD5, state=State.DOWN, your_discr=0),
    packet(auth=SHA1, poll=True),
]


@pytest.mark.parametrize("ours", CASES, ids=str)
def test_scapy_dissects_what_we_pack(ours: ControlPacket) -> None:
    theirs = BFD(ours.pack())
    assert scapy_fields(theirs) == our_fields(ours)
    if ours.auth is not None:
        auth = theirs.optional_auth
        assert (auth.auth_type, auth.auth_len, auth.auth_keyid) == (
            ours.auth.type,
            ours.auth.length,
            ours.auth.key_id,
        )
        if ours.auth.type is AuthType.SIMPLE_PASSWORD:
            assert auth.auth_key == ours.auth.data
        else:
            assert auth.sequence_number == ours.auth.sequence
            size = ours.auth.type.digest_size
            assert auth.auth_key.to_bytes(size, "big") == ours.auth.data


@pytest.mark.parametrize("ours", CASES, ids=str)
def test_we_decode_what_scapy_builds(ours: ControlPacket) -> None:
    flags = "".join(
        letter
        for letter, on in zip(
            "PFCAD",
            (ours.poll, ours.final, ours.cpi, ours.authenticated, ours.demand),
            strict=True,
        )
        if on
    )
    theirs = BFD(
        version=ours.version,
        diag=int(ours.diag),
        sta=int(ours.state),
        flags=flags,
        detect_mult=ours.detect_mult,
        my_discriminator=ours.my_discr,
        your_discriminator=ours.your_discr,
        min_tx_interval=ours.desired_min_tx,
        min_rx_interval=ours.required_min_rx,
        echo_rx_interval=ours.required_min_echo_rx,
    )
    if ours.auth is not None:
        auth = ours.auth
        key: object = auth.data
        if auth.type is not AuthType.SIMPLE_PASSWORD:
            key = int.from_bytes(auth.data, "big")
        extra = (
            {}
            if auth.type is AuthType.SIMPLE_PASSWORD
            else {"sequence_number": auth.sequence, "reserved": 0}
        )
        theirs.optional_auth = OptionalAuth(
            auth_type=int(auth.type), auth_keyid=auth.key_id, auth_key=key, **extra
        )
    data = bytes(theirs)
    assert decoded(data) == ours
    assert ours.pack() == data


def test_scapy_default_packet_is_a_valid_up_packet() -> None:
    """scapy's defaults (Up, mult 3, discriminators 0x11111111/0x22222222, 1 s timers)."""
    pkt = decoded(bytes(BFD()))
    assert (pkt.state, pkt.my_discr, pkt.your_discr) == (State.UP, 0x11111111, 0x22222222)
    assert pkt.desired_min_tx == pkt.required_min_rx == 1_000_000_000


def test_header_struct_matches_rfc_sizes() -> None:
    assert struct.calcsize("!BBBBIIIII") == ControlPacket.HEADER_LEN
