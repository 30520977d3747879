"""BFD authentication (RFC 5880 6.7): signing, verification, sequence numbers, key rotation.

Pure: no clock, no randomness, no I/O. Every call that depends on time takes ``now``
(monotonic seconds), and the initial transmit sequence number is handed in (the RFC wants
it random; the runtime draws it from its injected RNG).

The five types::

    simple password (1)          the password travels in clear; compared in constant time
    keyed MD5 (2) / SHA1 (4)     digest over the packet with the key in the digest field;
                                 sequence accepted within [last, last + 3 x Detect Mult]
    meticulous MD5 (3) / SHA1 (5) the same, but the sequence must grow with every packet:
                                 accepted within [last + 1, last + 3 x Detect Mult]

The window uses the Detect Mult of the received packet and wraps modulo 2**32. Until a
first packet is accepted (and again after no packet was accepted for twice the Detection
Time, RFC 5880 6.8.1 bfd.AuthSeqKnown) any sequence number is taken.

Keys have ids (0-255). An :class:`AuthConfig` holds every key the session accepts and the
one it sends with. That is how a key is rolled over without a flap: add the new key on
both ends (both still send the old one and now accept either), switch ``send_key_id`` on
both ends in any order (each accepts the other's old or new key meanwhile), then remove
the old key. The sequence state belongs to the session, not to a key, so a switch of key
neither resets nor re-opens the replay window.

Transmit sequence numbers: meticulous types increment for every packet (RFC MUST); keyed
types increment at most once per :data:`KEYED_SEQUENCE_PERIOD`, which the RFC allows
("MAY be incremented"): a receiver's window is only 3 x Detect Mult wide, and a slower
count keeps a short burst of lost packets from moving us outside it.

Comparisons of passwords and digests use :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from vigil.bfd.packet import (
    PASSWORD_MAX,
    PASSWORD_MIN,
    AuthSection,
    AuthType,
    ControlPacket,
    Rejection,
    RejectReason,
)

__all__ = [
    "KEYED_SEQUENCE_PERIOD",
    "AuthConfig",
    "AuthKey",
    "AuthState",
    "check_auth",
]

_U32 = 0xFFFFFFFF
_DIGEST_START = ControlPacket.HEADER_LEN + 8  # header, then type/len/key id/reserved/seq

#: Keyed (non-meticulous) types move their transmit sequence number at most this often.
KEYED_SEQUENCE_PERIOD = 1.0

_HASHES = {
    AuthType.KEYED_MD5: hashlib.md5,
    AuthType.METICULOUS_KEYED_MD5: hashlib.md5,
    AuthType.KEYED_SHA1: hashlib.sha1,
    AuthType.METICULOUS_KEYED_SHA1: hashlib.sha1,
}


def _max_secret(auth_type: AuthType) -> int:
    return PASSWORD_MAX if auth_type is AuthType.SIMPLE_PASSWORD else auth_type.digest_size


@dataclass(frozen=True, slots=True)
class AuthKey:
    """One key: its id on the wire and its secret (a str is taken as UTF-8).

    The secret never appears in ``repr()``.
    """

    key_id: int
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.secret, str):
            object.__setattr__(self, "secret", self.secret.encode())
        else:
            object.__setattr__(self, "secret", bytes(self.secret))
        kid = self.key_id
        if not isinstance(kid, int) or isinstance(kid, bool) or not 0 <= kid <= 255:
            raise ValueError(f"key_id: must be an integer from 0 to 255, got {kid!r}")


@dataclass(frozen=True)
class AuthConfig:
    """A session's authentication: the type, the keys it accepts, the key it sends with."""

    type: AuthType
    keys: tuple[AuthKey, ...]
    send_key_id: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", AuthType(self.type))
        keys = tuple(self.keys)
        object.__setattr__(self, "keys", keys)
        problems = []
        if not keys:
            problems.append("keys: at least one key is needed")
        ids = [k.key_id for k in keys]
        dups = sorted({i for i in ids if ids.count(i) > 1})
        if dups:
            problems.append(f"keys: key id(s) {dups} appear more than once")
        if keys and self.send_key_id not in ids:
            problems.append(
                f"send_key_id: {self.send_key_id} is not among the keys ({sorted(ids)})"
            )
        longest = _max_secret(self.type)
        for key in keys:
            if not PASSWORD_MIN <= len(key.secret) <= longest:
                problems.append(
                    f"keys[id {key.key_id}].secret: {self.type} takes {PASSWORD_MIN} to "
                    f"{longest} bytes, got {len(key.secret)}"
                )
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def single(cls, auth_type: AuthType, key_id: int, secret: bytes | str) -> AuthConfig:
        """One key, used to send and to accept."""
        raw = secret.encode() if isinstance(secret, str) else secret
        return cls(auth_type, (AuthKey(key_id, raw),), key_id)

    def key(self, key_id: int) -> AuthKey | None:
        for key in self.keys:
            if key.key_id == key_id:
                return key
        return None

    @property
    def send_key(self) -> AuthKey:
        key = self.key(self.send_key_id)
        assert key is not None  # checked in __post_init__
        return key

    def with_keys(self, keys: Iterable[AuthKey], send_key_id: int) -> AuthConfig:
        return replace(self, keys=tuple(keys), send_key_id=send_key_id)


def _in_window(seq: int, low: int, span: int) -> bool:
    """``seq`` in [low, low + span], modulo 2**32."""
    return (seq - low) & _U32 <= span


class AuthState:
    """The authentication state of one session: its config and both sequence numbers.

    ``xmit_seq`` is the first transmit sequence number (the runtime draws it at random).
    """

    def __init__(self, config: AuthConfig, *, xmit_seq: int) -> None:
        if not 0 <= xmit_seq <= _U32:
            raise ValueError(f"xmit_seq: must be a 32-bit unsigned integer, got {xmit_seq}")
        self._config = config
        self._xmit_seq = xmit_seq
        self._xmit_moved: float | None = None
        self._rcv_seq: int | None = None  # None: bfd.AuthSeqKnown is 0
        self._last_accepted: float | None = None

    @property
    def config(self) -> AuthConfig:
        return self._config

    @property
    def xmit_seq(self) -> int:
        """bfd.XmitAuthSeq: the sequence number of the last packet signed."""
        return self._xmit_seq

    @property
    def rcv_seq(self) -> int | None:
        """bfd.RcvAuthSeq, or None while bfd.AuthSeqKnown is 0."""
        return self._rcv_seq

    def touch(self, now: float) -> None:
        """A packet identical to the last one accepted was taken again (the runtime's
        short path for repeats; never for the meticulous types): it counts as accepted."""
        if self._rcv_seq is not None:
            self._last_accepted = now

    def reconfigure(self, config: AuthConfig) -> None:
        """New keys or send key (a rollover): the sequence state is kept.

        A change of type starts the receive side afresh (another type's numbers mean
        nothing here); the transmit sequence keeps counting.
        """
        if config.type is not self._config.type:
            self._rcv_seq = None
            self._last_accepted = None
        self._config = config

    # ------------------------------------------------------------------ sending

    def sign(self, packet: ControlPacket, now: float) -> bytes:
        """The wire bytes of ``packet`` with this session's authentication section.

        ``packet.auth`` is ignored (the machine builds packets without one).
        """
        config = self._config
        key = config.send_key
        if config.type is AuthType.SIMPLE_PASSWORD:
            section = AuthSection(type=config.type, key_id=key.key_id, data=key.secret)
            return replace(packet, auth=section).pack()
        self._advance_xmit(now)
        size = config.type.digest_size
        section = AuthSection(
            type=config.type,
            key_id=key.key_id,
            sequence=self._xmit_seq,
            data=key.secret.ljust(size, b"\x00"),
        )
        keyed = replace(packet, auth=section).pack()
        return keyed[:-size] + _HASHES[config.type](keyed).digest()

    def _advance_xmit(self, now: float) -> None:
        if self._config.type.meticulous:
            self._xmit_seq = (self._xmit_seq + 1) & _U32
        elif self._xmit_moved is None or now - self._xmit_moved >= KEYED_SEQUENCE_PERIOD:
            if self._xmit_moved is not None:
                self._xmit_seq = (self._xmit_seq + 1) & _U32
            self._xmit_moved = now

    # ------------------------------------------------------------------ receiving

    def verify(
        self,
        packet: ControlPacket,
        raw: bytes,
        now: float,
        *,
        forget_after: float | None = None,
    ) -> Rejection | None:
        """Check a decoded packet's authentication section; None if it is authentic.

        ``raw`` is the datagram the packet was decoded from (the digest covers its first
        ``packet.length`` bytes). ``forget_after`` is twice the session's Detection Time:
        when no packet was accepted for that long, the receive sequence is forgotten
        (RFC 5880 6.8.1). Only an accepted packet moves the receive sequence.
        """
        section = packet.auth
        if section is None:
            return Rejection(
                RejectReason.AUTH_MISSING,
                f"packet without authentication; this session uses {self._config.type}",
            )
        config = self._config
        if section.type is not config.type:
            return Rejection(
                RejectReason.AUTH_TYPE,
                f"{section.type} packet; this session uses {config.type}",
            )
        key = config.key(section.key_id)
        if key is None:
            known = ", ".join(str(k.key_id) for k in config.keys)
            return Rejection(
                RejectReason.AUTH_KEY_ID,
                f"key id {section.key_id} is not configured (this session accepts {known})",
            )
        if config.type is AuthType.SIMPLE_PASSWORD:
            if not hmac.compare_digest(section.data, key.secret):
                return Rejection(
                    RejectReason.AUTH_DIGEST, f"wrong password for key id {section.key_id}"
                )
            return None
        if (
            forget_after is not None
            and self._last_accepted is not None
            and now - self._last_accepted >= forget_after
        ):
            self._rcv_seq = None
        rejection = self._check_sequence(section.sequence, packet.detect_mult)
        if rejection is not None:
            return rejection
        if not hmac.compare_digest(section.data, _digest(raw[: packet.length], config.type, key)):
            return Rejection(
                RejectReason.AUTH_DIGEST,
                f"{config.type} digest does not match key id {section.key_id}",
            )
        self._rcv_seq = section.sequence
        self._last_accepted = now
        return None

    def _check_sequence(self, seq: int, detect_mult: int) -> Rejection | None:
        last = self._rcv_seq
        if last is None:
            return None
        span = 3 * detect_mult
        if self._config.type.meticulous:
            ok = _in_window(seq, (last + 1) & _U32, span - 1)
            low = (last + 1) & _U32
        else:
            ok = _in_window(seq, last, span)
            low = last
        if ok:
            return None
        return Rejection(
            RejectReason.AUTH_SEQUENCE,
            f"sequence {seq} outside [{low}, {(last + span) & _U32}] "
            f"(last accepted {last}): a replay, or the peer restarted",
        )


def _digest(data: bytes, auth_type: AuthType, key: AuthKey) -> bytes:
    """The digest of a received packet: its digest field replaced by the padded key."""
    size = auth_type.digest_size
    keyed = data[:_DIGEST_START] + key.secret.ljust(size, b"\x00") + data[_DIGEST_START + size :]
    return _HASHES[auth_type](keyed).digest()


def check_auth(
    packet: ControlPacket,
    raw: bytes,
    state: AuthState | None,
    now: float,
    *,
    forget_after: float | None = None,
) -> Rejection | None:
    """RFC 5880 6.8.6's authentication steps for a session with or without authentication.

    A packet with the A bit for a session without authentication is dropped, and one
    without it for a session with authentication; otherwise :meth:`AuthState.verify`.
    """
    if state is None:
        if packet.auth is None:
            return None
        return Rejection(
            RejectReason.AUTH_UNEXPECTED,
            f"{packet.auth.type} packet (key id {packet.auth.key_id}); this session has no "
            "authentication configured",
        )
    return state.verify(packet, raw, now, forget_after=forget_after)
