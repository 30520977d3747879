"""BFD control packet codec (RFC 5880 section 4) and the checks a packet allows alone.

Wire format (all fields big-endian)::

     0                   1                   2                   3
    |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
    |                       My Discriminator                        |
    |                      Your Discriminator                       |
    |                    Desired Min TX Interval                    |   microseconds
    |                   Required Min RX Interval                    |   microseconds
    |                 Required Min Echo RX Interval                 |   microseconds
    | Auth Type     |   Auth Len    |  Auth Key ID  |  ...              (A bit set)

The authentication section, when the A bit is set (RFC 5880 4.2-4.4)::

    simple password (1):       type | len (3 + n) | key id | password (n = 1..16)
    keyed / meticulous MD5:    type | len 24 | key id | reserved | sequence | digest (16)
    keyed / meticulous SHA1:   type | len 28 | key id | reserved | sequence | hash (20)

Nothing here touches a socket, a session or a key. :meth:`ControlPacket.unpack` never
raises on bytes from the network: it returns a :class:`ControlPacket` or a
:class:`Rejection` carrying a typed :class:`RejectReason` and a sentence for the log, for
every check of RFC 5880 6.8.6 that the packet allows alone (version, Length against the A
bit and the datagram, Detect Mult 0, the M bit, My Discriminator 0, Your Discriminator 0
outside Down/AdminDown) and for the authentication section's shape (type, Auth Len per
type). The checks that need a session (demultiplexing, TTL, authentication itself) use the
same :class:`RejectReason` so the runtime counts every drop in one place.

Where vigil is stricter than RFC 5880: a Length field that disagrees with the
authentication section (24 without it, 24 + Auth Len with it) is rejected. The RFC only
demands a minimum, but a longer Length would put bytes in the packet that no field
describes and that a digest would cover; every implementation we interoperate with (FRR,
BIRD, keepalived) sends exactly 24 or 24 + Auth Len. Bytes after Length in the datagram
are ignored, as the RFC allows.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "AuthSection",
    "AuthType",
    "ControlPacket",
    "Diag",
    "RejectReason",
    "Rejection",
    "State",
    "diag_text",
]

_HEADER = struct.Struct("!BBBBIIIII")
_DIGEST_HEAD = struct.Struct("!BBBBI")  # type, len, key id, reserved, sequence
_U32 = 0xFFFFFFFF

# Bits of the second byte, most significant first: P F C A D M.
_P, _F, _C, _A, _D, _M = 0x20, 0x10, 0x08, 0x04, 0x02, 0x01
_FLAG_BITS = (_P, _F, _C, _A, _D, _M)


class State(enum.IntEnum):
    """Session states, with their wire values (RFC 5880 4.1 "Sta")."""

    ADMIN_DOWN = 0
    DOWN = 1
    INIT = 2
    UP = 3

    def __str__(self) -> str:
        return _STATE_NAMES[self]


_STATE_NAMES = {
    State.ADMIN_DOWN: "AdminDown",
    State.DOWN: "Down",
    State.INIT: "Init",
    State.UP: "Up",
}


class Diag(enum.IntEnum):
    """Diagnostic codes (RFC 5880 4.1); 10-31 are reserved and may still arrive."""

    NONE = 0
    CONTROL_DETECTION_TIME_EXPIRED = 1
    ECHO_FUNCTION_FAILED = 2
    NEIGHBOR_SIGNALED_SESSION_DOWN = 3
    FORWARDING_PLANE_RESET = 4
    PATH_DOWN = 5
    CONCATENATED_PATH_DOWN = 6
    ADMINISTRATIVELY_DOWN = 7
    REVERSE_CONCATENATED_PATH_DOWN = 8
    MIS_CONNECTIVITY_DEFECT = 9  # RFC 6428

    @property
    def text(self) -> str:
        """The RFC's name for the code, as operators know it from other BFD speakers."""
        return _DIAG_TEXT[self]

    def __str__(self) -> str:
        return self.text


_DIAG_TEXT = {
    Diag.NONE: "No Diagnostic",
    Diag.CONTROL_DETECTION_TIME_EXPIRED: "Control Detection Time Expired",
    Diag.ECHO_FUNCTION_FAILED: "Echo Function Failed",
    Diag.NEIGHBOR_SIGNALED_SESSION_DOWN: "Neighbor Signaled Session Down",
    Diag.FORWARDING_PLANE_RESET: "Forwarding Plane Reset",
    Diag.PATH_DOWN: "Path Down",
    Diag.CONCATENATED_PATH_DOWN: "Concatenated Path Down",
    Diag.ADMINISTRATIVELY_DOWN: "Administratively Down",
    Diag.REVERSE_CONCATENATED_PATH_DOWN: "Reverse Concatenated Path Down",
    Diag.MIS_CONNECTIVITY_DEFECT: "Mis-Connectivity Defect",
}


def diag_text(code: int) -> str:
    """The name of a diagnostic code, also for the reserved ones (``reserved (12)``)."""
    try:
        return Diag(code).text
    except ValueError:
        return f"reserved ({code})"


def _as_diag(code: int) -> int:
    try:
        return Diag(code)
    except ValueError:
        return code


class AuthType(enum.IntEnum):
    """Authentication types (RFC 5880 4.1 "Auth Type"); 0 and 6-255 are reserved."""

    SIMPLE_PASSWORD = 1
    KEYED_MD5 = 2
    METICULOUS_KEYED_MD5 = 3
    KEYED_SHA1 = 4
    METICULOUS_KEYED_SHA1 = 5

    @property
    def meticulous(self) -> bool:
        """The sequence number must grow with every packet (else: within a window)."""
        return self in (AuthType.METICULOUS_KEYED_MD5, AuthType.METICULOUS_KEYED_SHA1)

    @property
    def digest_size(self) -> int:
        """Bytes of digest/hash in the section; 0 for the simple password."""
        return _DIGEST_SIZE[self]

    @property
    def section_length(self) -> int | None:
        """The fixed Auth Len of this type; None for the simple password (4..19)."""
        if self is AuthType.SIMPLE_PASSWORD:
            return None
        return _DIGEST_HEAD.size + self.digest_size

    @property
    def text(self) -> str:
        return _AUTH_TEXT[self]

    def __str__(self) -> str:
        return self.text


_DIGEST_SIZE = {
    AuthType.SIMPLE_PASSWORD: 0,
    AuthType.KEYED_MD5: 16,
    AuthType.METICULOUS_KEYED_MD5: 16,
    AuthType.KEYED_SHA1: 20,
    AuthType.METICULOUS_KEYED_SHA1: 20,
}
_AUTH_TEXT = {
    AuthType.SIMPLE_PASSWORD: "simple password",
    AuthType.KEYED_MD5: "keyed MD5",
    AuthType.METICULOUS_KEYED_MD5: "meticulous keyed MD5",
    AuthType.KEYED_SHA1: "keyed SHA1",
    AuthType.METICULOUS_KEYED_SHA1: "meticulous keyed SHA1",
}

PASSWORD_MIN = 1
PASSWORD_MAX = 16


class RejectReason(enum.Enum):
    """Why a received BFD packet was dropped; the value is the metric/log label.

    The first group is decided by :meth:`ControlPacket.unpack` alone; the rest by the
    transport (``TRUNCATED_DATAGRAM``), the session table (``NO_SESSION``, ``ADDRESS``,
    ``TTL``) and :mod:`vigil.bfd.auth` (``AUTH_*``).
    """

    # the packet alone (RFC 5880 6.8.6 and 4.2-4.4)
    TRUNCATED = "truncated"
    VERSION = "version"
    LENGTH = "length"
    LENGTH_EXCEEDS_DATAGRAM = "length_exceeds_datagram"
    DETECT_MULT = "detect_mult"
    MULTIPOINT = "multipoint"
    MY_DISCRIMINATOR = "my_discriminator"
    YOUR_DISCRIMINATOR = "your_discriminator"
    AUTH_TYPE_UNKNOWN = "auth_type_unknown"
    AUTH_LENGTH = "auth_length"
    # the transport and the session table
    TRUNCATED_DATAGRAM = "truncated_datagram"
    NO_SESSION = "no_session"
    ADDRESS = "address"
    TTL = "ttl"
    # authentication against the session's configuration (RFC 5880 6.7, 6.8.6)
    AUTH_MISSING = "auth_missing"
    AUTH_UNEXPECTED = "auth_unexpected"
    AUTH_TYPE = "auth_type"
    AUTH_KEY_ID = "auth_key_id"
    AUTH_SEQUENCE = "auth_sequence"
    AUTH_DIGEST = "auth_digest"

    @property
    def is_auth(self) -> bool:
        """An authentication failure (counted as such, besides the reason itself)."""
        return self.value.startswith("auth_") and self not in (
            RejectReason.AUTH_TYPE_UNKNOWN,
            RejectReason.AUTH_LENGTH,
        )


@dataclass(frozen=True, slots=True)
class Rejection:
    """A dropped packet: the typed reason and a sentence for an operator."""

    reason: RejectReason
    detail: str

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}"


def _check_int(name: str, value: object, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= high:
        raise ValueError(f"{name}: must be an integer from 0 to {high}, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthSection:
    """The authentication section as on the wire.

    ``data`` is the password for the simple type, else the digest (MD5, 16 bytes) or hash
    (SHA1, 20 bytes) as received or as computed by :mod:`vigil.bfd.auth`. ``sequence``
    and ``reserved`` exist only for the digest types; ``reserved`` is kept so that a
    decoded packet re-encodes byte for byte (it must be 0 on send and is ignored on
    receipt).
    """

    type: AuthType
    key_id: int
    data: bytes
    sequence: int = 0
    reserved: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", AuthType(self.type))
        _check_int("key_id", self.key_id, 0xFF)
        _check_int("sequence", self.sequence, _U32)
        _check_int("reserved", self.reserved, 0xFF)
        data = bytes(self.data)
        object.__setattr__(self, "data", data)
        if self.type is AuthType.SIMPLE_PASSWORD:
            if not PASSWORD_MIN <= len(data) <= PASSWORD_MAX:
                raise ValueError(
                    f"data: a simple password has {PASSWORD_MIN} to {PASSWORD_MAX} bytes, "
                    f"got {len(data)}"
                )
            if self.sequence or self.reserved:
                raise ValueError("sequence/reserved: the simple password section has neither")
        elif len(data) != self.type.digest_size:
            raise ValueError(
                f"data: {self.type} carries {self.type.digest_size} bytes, got {len(data)}"
            )

    @property
    def length(self) -> int:
        """Auth Len: the section's size in bytes."""
        if self.type is AuthType.SIMPLE_PASSWORD:
            return 3 + len(self.data)
        return _DIGEST_HEAD.size + len(self.data)

    @property
    def digest_offset(self) -> int:
        """Where ``data`` starts inside the section."""
        return 3 if self.type is AuthType.SIMPLE_PASSWORD else _DIGEST_HEAD.size

    def pack(self) -> bytes:
        if self.type is AuthType.SIMPLE_PASSWORD:
            return bytes((self.type, self.length, self.key_id)) + self.data
        head = _DIGEST_HEAD.pack(self.type, self.length, self.key_id, self.reserved, self.sequence)
        return head + self.data


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlPacket:
    """One BFD Control packet. Intervals are microseconds, as on the wire.

    ``diag`` is a :class:`Diag` when the code is known, else the plain int (10-31 are
    reserved but not a reason to drop a packet). The A bit and Length are derived from
    ``auth``. :meth:`pack` encodes any field values that fit their bits, including ones
    a receiver must reject (version 0, Detect Mult 0, the M bit): tests craft those.
    """

    VERSION: ClassVar[int] = 1
    HEADER_LEN: ClassVar[int] = 24
    MIN_AUTH_LEN: ClassVar[int] = 26
    PORT: ClassVar[int] = 3784  # RFC 5881 single hop
    PORT_MULTIHOP: ClassVar[int] = 4784  # RFC 5883
    SOURCE_PORT_MIN: ClassVar[int] = 49152
    SOURCE_PORT_MAX: ClassVar[int] = 65535
    TTL: ClassVar[int] = 255

    state: State
    diag: int = Diag.NONE
    detect_mult: int
    my_discr: int
    your_discr: int = 0
    desired_min_tx: int
    required_min_rx: int
    required_min_echo_rx: int = 0
    poll: bool = False
    final: bool = False
    cpi: bool = False  # C: the control plane is independent of the forwarding plane
    demand: bool = False
    multipoint: bool = False
    auth: AuthSection | None = None
    version: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", State(self.state))
        _check_int("version", self.version, 7)
        _check_int("diag", self.diag, 31)
        object.__setattr__(self, "diag", _as_diag(self.diag))
        _check_int("detect_mult", self.detect_mult, 0xFF)
        for name in (
            "my_discr",
            "your_discr",
            "desired_min_tx",
            "required_min_rx",
            "required_min_echo_rx",
        ):
            _check_int(name, getattr(self, name), _U32)

    @property
    def authenticated(self) -> bool:
        """The A bit."""
        return self.auth is not None

    @property
    def length(self) -> int:
        """The Length field: 24, plus the authentication section."""
        return self.HEADER_LEN + (self.auth.length if self.auth is not None else 0)

    @property
    def flags(self) -> int:
        """The six flag bits P F C A D M as one integer (P is 0x20)."""
        bits = 0
        for flag, bit in (
            (self.poll, _P),
            (self.final, _F),
            (self.cpi, _C),
            (self.authenticated, _A),
            (self.demand, _D),
            (self.multipoint, _M),
        ):
            if flag:
                bits |= bit
        return bits

    def pack(self) -> bytes:
        head = _HEADER.pack(
            (self.version << 5) | int(self.diag),
            (int(self.state) << 6) | self.flags,
            self.detect_mult,
            self.length,
            self.my_discr,
            self.your_discr,
            self.desired_min_tx,
            self.required_min_rx,
            self.required_min_echo_rx,
        )
        return head if self.auth is None else head + self.auth.pack()

    @classmethod
    def unpack(cls, data: bytes) -> ControlPacket | Rejection:
        """Decode and check a received BFD Control packet; never raises.

        ``data`` is the UDP payload. Bytes beyond the Length field are ignored; a digest
        is verified over ``data[:packet.length]`` (see :mod:`vigil.bfd.auth`).
        """
        return _unpack(bytes(data))

    def __str__(self) -> str:
        flags = "".join(n for n, b in zip("PFCADM", _FLAG_BITS, strict=True) if self.flags & b)
        return (
            f"BFD {self.state} diag={int(self.diag)} flags={flags or '-'} "
            f"mult={self.detect_mult} my={self.my_discr} your={self.your_discr} "
            f"tx={self.desired_min_tx}us rx={self.required_min_rx}us"
        )


def _unpack(data: bytes) -> ControlPacket | Rejection:
    size = len(data)
    if size < ControlPacket.HEADER_LEN:
        return Rejection(
            RejectReason.TRUNCATED,
            f"{size} bytes, shorter than the {ControlPacket.HEADER_LEN}-byte BFD header",
        )
    b0, b1, mult, length, my, your, tx, rx, echo = _HEADER.unpack_from(data)
    version, diag = b0 >> 5, b0 & 0x1F
    state, flags = State(b1 >> 6), b1 & 0x3F
    if version != ControlPacket.VERSION:
        return Rejection(
            RejectReason.VERSION, f"BFD version {version}, only {ControlPacket.VERSION} exists"
        )
    has_auth = bool(flags & _A)
    minimum = ControlPacket.MIN_AUTH_LEN if has_auth else ControlPacket.HEADER_LEN
    if length < minimum:
        return Rejection(
            RejectReason.LENGTH,
            f"Length {length} is below the minimum of {minimum} "
            f"(A bit {'set' if has_auth else 'clear'})",
        )
    if length > size:
        return Rejection(
            RejectReason.LENGTH_EXCEEDS_DATAGRAM,
            f"Length {length} is more than the {size} bytes received",
        )
    if not has_auth and length != ControlPacket.HEADER_LEN:
        return Rejection(
            RejectReason.LENGTH,
            f"Length {length} without authentication (A bit clear); expected "
            f"{ControlPacket.HEADER_LEN}",
        )
    if mult == 0:
        return Rejection(RejectReason.DETECT_MULT, "Detect Mult 0 is invalid")
    if flags & _M:
        return Rejection(RejectReason.MULTIPOINT, "the Multipoint (M) bit is set")
    if my == 0:
        return Rejection(RejectReason.MY_DISCRIMINATOR, "My Discriminator 0 is invalid")
    if your == 0 and state not in (State.DOWN, State.ADMIN_DOWN):
        return Rejection(
            RejectReason.YOUR_DISCRIMINATOR,
            f"Your Discriminator 0 in state {state} (allowed only in Down and AdminDown)",
        )
    auth = None
    if has_auth:
        section = _unpack_auth(data[ControlPacket.HEADER_LEN : length])
        if isinstance(section, Rejection):
            return section
        auth = section
    return ControlPacket(
        version=version,
        diag=diag,
        state=state,
        poll=bool(flags & _P),
        final=bool(flags & _F),
        cpi=bool(flags & _C),
        demand=bool(flags & _D),
        multipoint=False,
        detect_mult=mult,
        my_discr=my,
        your_discr=your,
        desired_min_tx=tx,
        required_min_rx=rx,
        required_min_echo_rx=echo,
        auth=auth,
    )


def _unpack_auth(section: bytes) -> AuthSection | Rejection:
    """The authentication section: ``section`` is everything from byte 24 to Length."""
    kind, auth_len, key_id = section[0], section[1], section[2] if len(section) > 2 else 0
    try:
        auth_type = AuthType(kind)
    except ValueError:
        return Rejection(
            RejectReason.AUTH_TYPE_UNKNOWN,
            f"authentication type {kind} is reserved (known: 1-5)",
        )
    if auth_len != len(section):
        return Rejection(
            RejectReason.AUTH_LENGTH,
            f"Auth Len {auth_len} but Length leaves {len(section)} bytes for the "
            f"{auth_type} section",
        )
    if auth_type is AuthType.SIMPLE_PASSWORD:
        if not 3 + PASSWORD_MIN <= auth_len <= 3 + PASSWORD_MAX:
            return Rejection(
                RejectReason.AUTH_LENGTH,
                f"Auth Len {auth_len} for a simple password (must be "
                f"{3 + PASSWORD_MIN} to {3 + PASSWORD_MAX})",
            )
        return AuthSection(type=auth_type, key_id=key_id, data=section[3:])
    want = auth_type.section_length
    if auth_len != want:
        return Rejection(
            RejectReason.AUTH_LENGTH,
            f"Auth Len {auth_len} for {auth_type} (must be {want})",
        )
    _t, _l, key_id, reserved, sequence = _DIGEST_HEAD.unpack_from(section)
    return AuthSection(
        type=auth_type,
        key_id=key_id,
        reserved=reserved,
        sequence=sequence,
        data=section[_DIGEST_HEAD.size :],
    )
