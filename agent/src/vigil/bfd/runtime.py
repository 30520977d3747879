"""A standalone BFD engine: sessions on the asyncio loop, a callback on every state change.

:class:`BfdEngine` runs a set of :class:`~vigil.bfd.spec.SessionSpec` sessions. Each has a
pure :class:`~vigil.bfd.machine.BfdMachine`, an optional
:class:`~vigil.bfd.auth.AuthState`, a sender and two timers; the engine only glues them:

    datagram -> ControlPacket.unpack -> SessionTable.lookup -> TTL -> authentication
             -> machine.packet_received -> actions (send, arm timers, report transitions)

Everything it needs from outside is handed in (constructor injection), so the coming
``BfdSubsystem`` can wrap it without this module knowing the agent core:
``on_state_change`` (called with a :class:`BfdEvent` for every transition), ``clock``
(monotonic seconds; the loop's clock by default), ``rng`` (discriminators, jitter, source
ports, initial sequence numbers), ``transport`` (a factory taking the datagram handler;
the UDP one by default) and ``timer_factory`` (``PreciseTimer`` by default: the detection
timer runs off a timerfd, so a session goes down on time, not up to a millisecond late;
timers from a factory are armed with deadlines on the engine's clock).

Rejected packets are counted per session and reason when the session is known (TTL,
authentication), and per reason for the engine when no session could be found (bad
packets, unknown discriminators, no matching session); each (session, reason) is logged
once per :data:`REJECT_LOG_PERIOD` with the count of those not logged.

RTT: the snapshot's ``rtt`` is the last Poll/Final round trip measured by the machine (see
:mod:`vigil.bfd.machine`): time from a lone P packet to its Final, which includes the
peer's time to answer. Polls happen when a session comes Up and on timer changes, so it
is an occasional sample, and None until there is one.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from vigil.bfd.auth import AuthState, check_auth
from vigil.bfd.machine import (
    Action,
    ArmDetect,
    ArmTx,
    BfdMachine,
    SendPacket,
    Transition,
)
from vigil.bfd.packet import ControlPacket, Diag, Rejection, RejectReason, State, diag_text
from vigil.bfd.spec import SessionSpec
from vigil.bfd.transport import (
    BfdDatagram,
    Sender,
    SessionKey,
    SessionTable,
    Transport,
    UdpTransport,
    check_ttl,
    interface_name,
)
from vigil.timerfd import PreciseTimer

__all__ = [
    "REJECT_LOG_PERIOD",
    "BfdEngine",
    "BfdEvent",
    "SessionSnapshot",
    "StateCallback",
]

log = logging.getLogger("vigil.bfd")

#: A (session, reason) of rejected packets is logged at most this often.
REJECT_LOG_PERIOD = 10.0
_U32 = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class BfdEvent:
    """A session changed state; ``transition`` carries old/new state, diag and reason."""

    key: SessionKey
    name: str
    transition: Transition

    @property
    def state(self) -> State:
        return self.transition.new

    def __str__(self) -> str:
        return str(self.transition)


StateCallback = Callable[[BfdEvent], None]


class Timer(Protocol):
    """What the engine needs of a timer (``vigil.timerfd.PreciseTimer`` has it)."""

    def arm(self, when: float, *, precise: bool = True) -> None: ...

    def cancel(self) -> None: ...

    def close(self) -> None: ...


TransportFactory = Callable[[Callable[[BfdDatagram], None]], Transport]
TimerFactory = Callable[[Callable[[], None]], Timer]


@dataclass
class _RejectLog:
    """Log each (reason, session) once per period, with the count of the suppressed."""

    period: float = REJECT_LOG_PERIOD
    last: dict[tuple[str, RejectReason], float] = field(default_factory=dict)
    quiet: Counter[tuple[str, RejectReason]] = field(default_factory=Counter)

    def report(self, where: str, rejection: Rejection, now: float) -> None:
        key = (where, rejection.reason)
        last = self.last.get(key)
        if last is not None and now - last < self.period:
            self.quiet[key] += 1
            return
        self.last[key] = now
        suppressed = self.quiet.pop(key, 0)
        more = f" (and {suppressed} more since the last report)" if suppressed else ""
        log.warning("(bfd %s) packet dropped: %s%s", where, rejection, more)


@dataclass
class _Session:
    spec: SessionSpec
    key: SessionKey
    machine: BfdMachine
    sender: Sender
    auth: AuthState | None
    tx_timer: Timer
    detect_timer: Timer
    rejects: Counter[RejectReason] = field(default_factory=Counter)
    auth_failures: int = 0
    send_failures: int = 0


@dataclass(frozen=True)
class SessionSnapshot:
    """One session as :meth:`BfdEngine.snapshot` reports it. Times are seconds."""

    name: str
    key: SessionKey
    state: State
    remote_state: State
    local_diag: Diag
    remote_diag: int
    local_discr: int
    remote_discr: int
    tx_interval: float | None
    rx_interval: float | None
    detection_time: float | None
    detect_mult: int
    remote_detect_mult: int
    uptime: float | None
    rtt: float | None
    source_port: int
    counters: dict[str, int]
    rejects: dict[str, int]
    auth_failures: int
    last_transition: Transition | None
    spec: SessionSpec

    def to_dict(self) -> dict[str, Any]:
        last = self.last_transition
        return {
            "name": self.name,
            "peer": str(self.key.peer),
            "local": None if self.key.local is None else str(self.key.local),
            "interface": self.key.interface,
            "multihop": self.key.multihop,
            "state": str(self.state),
            "remote_state": str(self.remote_state),
            "local_diag": int(self.local_diag),
            "local_diag_text": self.local_diag.text,
            "remote_diag": int(self.remote_diag),
            "remote_diag_text": diag_text(self.remote_diag),
            "local_discr": self.local_discr,
            "remote_discr": self.remote_discr,
            "tx_interval": self.tx_interval,
            "rx_interval": self.rx_interval,
            "detection_time": self.detection_time,
            "detect_mult": self.detect_mult,
            "remote_detect_mult": self.remote_detect_mult,
            "uptime": self.uptime,
            "rtt": self.rtt,
            "source_port": self.source_port,
            "counters": dict(self.counters),
            "rejects": dict(self.rejects),
            "auth_failures": self.auth_failures,
            "last_transition": None if last is None else {**last.to_dict(), "log": str(last)},
            "config": self.spec.to_dict(),
        }


class BfdEngine:
    """BFD sessions on one event loop. Not thread-safe: call it from the loop's thread.

    Sessions may be added before :meth:`start`; they begin sending when it is called.
    Every method that names a session raises KeyError for one that does not exist.
    """

    def __init__(
        self,
        *,
        on_state_change: StateCallback | None = None,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
        transport: TransportFactory | None = None,
        timer_factory: TimerFactory | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        log_transitions: bool = True,
    ) -> None:
        self._on_state_change = on_state_change
        self._log_transitions = log_transitions
        self._clock = clock
        self._rng = rng or random.Random()
        self._loop = loop
        self._transport_factory = transport
        self._timer_factory = timer_factory
        self._transport: Transport | None = None
        self._table: SessionTable[_Session] = SessionTable()
        self._started = False
        self._closed = False
        self.unmatched: Counter[RejectReason] = Counter()
        self._reject_log = _RejectLog()

    # ------------------------------------------------------------------ plumbing

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def now(self) -> float:
        """The engine's clock (the loop's by default)."""
        return self._clock() if self._clock is not None else self._get_loop().time()

    def _loop_time(self, deadline: float) -> float:
        """A deadline on the engine's clock as the timers take it: ``loop.time()`` for the
        default PreciseTimer, the engine's own clock for timers from ``timer_factory``."""
        if self._clock is None or self._timer_factory is not None:
            return deadline
        return self._get_loop().time() + (deadline - self._clock())

    def _get_transport(self) -> Transport:
        if self._transport is None:
            if self._transport_factory is not None:
                self._transport = self._transport_factory(self._on_datagram)
            else:
                self._transport = UdpTransport(
                    self._on_datagram, loop=self._loop, rng=random.Random(self._rng.random())
                )
        return self._transport

    def _make_timer(self, callback: Callable[[], None]) -> Timer:
        if self._timer_factory is not None:
            return self._timer_factory(callback)
        return PreciseTimer(self._get_loop(), callback)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start every session added so far (later ones start when added)."""
        if self._closed:
            raise RuntimeError("BfdEngine is closed")
        if self._started:
            return
        self._started = True
        for key in self.keys():
            session = self._session(key)
            self._execute(session, session.machine.start(self.now()))

    def close(self, *, admin_down: bool = False) -> None:
        """Stop every session and release sockets and timers.

        With ``admin_down`` each session first sends one AdminDown packet, so peers go
        down at once (with diagnostic 3) instead of after their detection time; FRR, BIRD
        and keepalived send nothing when they stop, which is the default here too.
        """
        if self._closed:
            return
        for key in self.keys():
            self.remove_session(key, admin_down=admin_down)
        if self._transport is not None:
            self._transport.close()
        self._closed = True

    # ------------------------------------------------------------------ sessions

    def keys(self) -> list[SessionKey]:
        return [s.key for s in self._sessions()]

    def _sessions(self) -> list[_Session]:
        return [item for _key, item in self._table.items()]

    def _session(self, key: SessionKey) -> _Session:
        session = self._table.get(key)
        if session is None:
            known = ", ".join(str(k) for k in self.keys()) or "none"
            raise KeyError(f"no BFD session {key}; the engine has: {known}")
        return session

    def add_session(self, spec: SessionSpec) -> SessionKey:
        """Add and (if the engine runs) start a session; returns its key.

        Raises ValueError if a session with the same key exists, OSError if its port
        cannot be bound (another BFD speaker holds it).
        """
        if self._closed:
            raise RuntimeError("BfdEngine is closed")
        key = spec.key
        if key in self._table:
            raise ValueError(f"BFD session {key} exists already; use update_session()")
        discr = self._new_discriminator()
        transport = self._get_transport()
        transport.listen(key.family, key.multihop)
        try:
            sender = transport.sender(key)
        except BaseException:
            transport.unlisten(key.family, key.multihop)
            raise
        machine = BfdMachine(spec.machine_params(discr), self._rng.random)
        auth = None
        if spec.auth is not None:
            auth = AuthState(spec.auth, xmit_seq=self._rng.getrandbits(32))
        holder: list[_Session] = []
        session = _Session(
            spec=spec,
            key=key,
            machine=machine,
            sender=sender,
            auth=auth,
            tx_timer=self._make_timer(lambda: self._tx_fired(holder[0])),
            detect_timer=self._make_timer(lambda: self._detect_fired(holder[0])),
        )
        holder.append(session)
        self._table.add(key, discr, session)
        log.info("(bfd %s) session added, discriminator %d", spec.label, discr)
        if self._started:
            self._execute(session, machine.start(self.now()))
        return key

    def remove_session(self, key: SessionKey, *, admin_down: bool = True) -> None:
        """Stop and forget a session.

        By default it first tells the peer with one AdminDown packet (RFC 5882 3.2: a
        peer's client should not take that for a failure), unless it was already down.
        """
        session = self._session(key)
        machine = session.machine
        if admin_down and self._started and machine.state in (State.INIT, State.UP):
            actions = machine.admin_down(self.now(), "session removed")
            self._execute(session, [a for a in actions if isinstance(a, SendPacket)])
        self._table.remove(key)
        session.tx_timer.close()
        session.detect_timer.close()
        session.sender.close()
        if self._transport is not None:
            self._transport.unlisten(key.family, key.multihop)
        log.info("(bfd %s) session removed", session.spec.label)

    def update_session(self, spec: SessionSpec) -> None:
        """Apply a changed spec to the session with the same key, without a flap.

        Timers go through a Poll Sequence while Up; the multiplier, ``passive``,
        ``min_ttl`` and the name apply at once; new keys or a new send key for the same
        authentication type keep the sequence state (a rollover). Turning authentication
        on or off, or changing its type, takes effect at once and will take the session
        down until the peer changes too. A change of ``admin_down`` disables or enables
        the session. Peer, local address, interface and multihop make another session:
        remove this one and add that one.
        """
        session = self._session(spec.key)
        old = session.spec
        session.spec = spec
        now = self.now()
        machine = session.machine
        actions = machine.params_changed(now, spec.machine_params(machine.local_discr))
        if spec.auth is None:
            session.auth = None
        elif session.auth is None or (old.auth is not None and old.auth.type != spec.auth.type):
            session.auth = AuthState(spec.auth, xmit_seq=self._rng.getrandbits(32))
        else:
            session.auth.reconfigure(spec.auth)
        if spec.admin_down and not old.admin_down:
            actions += machine.admin_down(now)
        elif old.admin_down and not spec.admin_down:
            actions += machine.admin_up(now)
        self._execute(session, actions)

    def admin_down(self, key: SessionKey, reason: str = "administratively down") -> None:
        """Disable a session: the peer is told (AdminDown, diag 7) and it stops detecting."""
        session = self._session(key)
        self._execute(session, session.machine.admin_down(self.now(), reason))

    def admin_up(self, key: SessionKey, reason: str = "administratively up") -> None:
        session = self._session(key)
        self._execute(session, session.machine.admin_up(self.now(), reason))

    def path_down(self, key: SessionKey, reason: str = "path down") -> None:
        """Outside knowledge that the path failed: Init/Up -> Down with diag 5."""
        session = self._session(key)
        self._execute(session, session.machine.path_down(self.now(), reason))

    def link_down(self, ifname: str) -> None:
        """An interface went down: :meth:`path_down` for every session bound to it."""
        for session in self._sessions():
            if session.key.interface == ifname:
                self.path_down(session.key, f"interface {ifname} went down")

    def state(self, key: SessionKey) -> State:
        return self._session(key).machine.state

    def snapshot(self, keys: Iterable[SessionKey] | None = None) -> list[SessionSnapshot]:
        """Per session: states, diagnostics, negotiated timers, uptime, RTT, counters."""
        now = self.now()
        wanted = self.keys() if keys is None else list(keys)
        out = []
        for key in wanted:
            session = self._session(key)
            m = session.machine
            tx, rx = m.tx_interval, m.rx_interval
            counters = m.counters.to_dict()
            counters["send_failures"] = session.send_failures
            out.append(
                SessionSnapshot(
                    name=session.spec.label,
                    key=key,
                    state=m.state,
                    remote_state=m.remote_state,
                    local_diag=m.local_diag,
                    remote_diag=m.remote_diag,
                    local_discr=m.local_discr,
                    remote_discr=m.remote_discr,
                    tx_interval=None if tx is None else tx / 1e6,
                    rx_interval=None if rx is None else rx / 1e6,
                    detection_time=m.detection_time,
                    detect_mult=m.params.detect_mult,
                    remote_detect_mult=m.remote_detect_mult,
                    uptime=None if m.up_since is None else now - m.up_since,
                    rtt=m.rtt,
                    source_port=session.sender.port,
                    counters=counters,
                    rejects={r.value: n for r, n in sorted(session.rejects.items(), key=_val)},
                    auth_failures=session.auth_failures,
                    last_transition=m.last_transition,
                    spec=session.spec,
                )
            )
        return out

    def stats(self) -> dict[str, Any]:
        """Engine-wide counters: packets no session could be found for, by reason."""
        return {
            "sessions": len(self._table),
            "unmatched": {r.value: n for r, n in sorted(self.unmatched.items(), key=_val)},
        }

    # ------------------------------------------------------------------ events

    def _new_discriminator(self) -> int:
        for _ in range(1000):
            discr = self._rng.randint(1, _U32)
            if not self._table.discriminator_in_use(discr):
                return discr
        raise RuntimeError("no free BFD discriminator after 1000 draws")  # pragma: no cover

    def _tx_fired(self, session: _Session) -> None:
        if self._table.get(session.key) is not session:
            return
        self._execute(session, session.machine.tx_timer_expired(self.now()))

    def _detect_fired(self, session: _Session) -> None:
        if self._table.get(session.key) is not session:
            return
        self._execute(session, session.machine.detect_timer_expired(self.now()))

    def _on_datagram(self, datagram: BfdDatagram) -> None:
        """The receive path; never raises (the transport logs it if it did)."""
        now = self.now()
        pkt = ControlPacket.unpack(datagram.data)
        if isinstance(pkt, Rejection):
            self._unmatched(datagram, pkt, now)
            return
        ifname = interface_name(datagram.ifindex)
        found = self._table.lookup(
            your_discr=pkt.your_discr,
            src=datagram.src,
            dst=datagram.dst,
            ifname=ifname,
            multihop=datagram.multihop,
        )
        if isinstance(found, Rejection):
            self._unmatched(datagram, found, now)
            return
        _key, session = found
        rejection = check_ttl(datagram.ttl, session.key, session.spec.min_ttl)
        if rejection is None:
            detect = session.machine.detection_time
            rejection = check_auth(
                pkt,
                datagram.data,
                session.auth,
                now,
                forget_after=None if detect is None else 2 * detect,
            )
        if rejection is not None:
            session.rejects[rejection.reason] += 1
            if rejection.reason.is_auth:
                session.auth_failures += 1
            self._reject_log.report(session.spec.label, rejection, now)
            return
        self._execute(session, session.machine.packet_received(now, pkt))

    def _unmatched(self, datagram: BfdDatagram, rejection: Rejection, now: float) -> None:
        self.unmatched[rejection.reason] += 1
        self._reject_log.report(f"from {datagram.src}", rejection, now)

    def _execute(self, session: _Session, actions: list[Action]) -> None:
        """Carry out a machine's actions in order (I/O only)."""
        for action in actions:
            if isinstance(action, SendPacket):
                self._send(session, action.packet)
            elif isinstance(action, ArmTx):
                if action.deadline is None:
                    session.tx_timer.cancel()
                else:
                    session.tx_timer.arm(self._loop_time(action.deadline), precise=False)
            elif isinstance(action, ArmDetect):
                if action.deadline is None:
                    session.detect_timer.cancel()
                else:
                    session.detect_timer.arm(self._loop_time(action.deadline))
            elif isinstance(action, Transition):
                self._report(session, action)

    def _send(self, session: _Session, packet: ControlPacket) -> None:
        auth = session.auth
        data = packet.pack() if auth is None else auth.sign(packet, self.now())
        if not session.sender.send(data):
            session.send_failures += 1

    def _report(self, session: _Session, transition: Transition) -> None:
        if self._log_transitions:
            level = logging.WARNING if transition.new is not State.UP else logging.INFO
            if transition.old is State.DOWN and transition.new is State.INIT:
                level = logging.INFO
            log.log(level, "%s", transition)
        if self._on_state_change is None:
            return
        try:
            self._on_state_change(BfdEvent(session.key, session.spec.label, transition))
        except Exception:
            log.exception("BFD state change callback failed for %s", session.spec.label)


def _val(item: tuple[RejectReason, int]) -> str:
    return item[0].value
