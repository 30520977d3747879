"""A standalone BFD engine: sessions on the asyncio loop, a callback on every state change.

:class:`BfdEngine` runs a set of :class:`~vigil.bfd.spec.SessionSpec` sessions. Each has a
pure :class:`~vigil.bfd.machine.BfdMachine`, an optional
:class:`~vigil.bfd.auth.AuthState` and a sender; the engine only glues them:

    datagram -> ControlPacket.unpack -> SessionTable.lookup -> TTL -> authentication
             -> machine.packet_received -> actions (send, report transitions)

Cost, since a host may run a hundred sessions at 20 packets a second each (the numbers
are in docs/benchmarks.md):

* **One timer for all sessions.** The machines' deadlines (next packet, detection) go
  into one heap, and one timer (a timerfd, armed directly at the earliest deadline) wakes
  the engine, which handles every deadline that is due. A received packet moves its
  session's detection deadline *later*, which costs nothing: the heap keeps the earlier
  entry, and when it comes to the top the engine sees the deadline moved and puts the
  entry back at the new time (before arming the timer, so a stale entry never wakes it).
* **Sends on a grid.** Sessions are built with ``tx_grid`` (:data:`TX_GRID` of the
  interval), so sessions on one interval send on the same ticks: one wake-up sends for
  all of them.
* **Repeated packets take a short path.** In the steady state a peer sends the same bytes
  every time; a datagram identical to the last one accepted from the same address and
  port, with the same ancillary data (destination, interface, TTL), skips decoding, the
  lookup and the checks and only restarts the detection time
  (:meth:`~vigil.bfd.machine.BfdMachine.packet_repeated`). Not for meticulous
  authentication, where a repeat is a replay, and never outside the steady state.
* The packet a session sends is packed once and reused while the machine sends the
  same one (not for the digest types, which sign every packet).
* **No wake-up per received packet under load.** When the sessions that are Up expect
  more than :data:`RX_POLL_MIN_RATE` packets a second in all, the engine stops asking the
  loop to wake it for each datagram and reads them all whenever its timer wakes it, and
  at least every :data:`RX_POLL` seconds. Datagrams carry the kernel's arrival time, so
  the detection time still runs from when each arrived; and before any deadline is
  handled, the waiting datagrams are read, so a packet that came in time is never missed.
  Waking per datagram, the same read happens before a detection time expires: after a
  stall (a busy machine, a flood of junk) the timer may run before the reader, and a
  packet from the peer that arrived in time must still count.
  The only cost is that an answer (a Final, the next step of a handshake) may leave up to
  :data:`RX_POLL` later.

Everything it needs from outside is handed in (constructor injection), so the coming
``BfdSubsystem`` can wrap it without this module knowing the agent core:
``on_state_change`` (called with a :class:`BfdEvent` for every transition), ``clock``
(monotonic seconds; the loop's clock by default), ``rng`` (discriminators, jitter, source
ports, initial sequence numbers), ``transport`` (a factory taking the datagram handler;
the UDP one by default) and ``timer_factory`` (the engine's one timer: ``PreciseTimer``
without a lead by default, a timerfd, so a session goes down on time, not up to a
millisecond late; a timer from a factory is armed with deadlines on the engine's clock).
``log_transitions=False`` leaves the log line of each transition to the callback (the
agent's event bus logs it).

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
import heapq
import itertools
import logging
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from vigil.bfd.auth import AuthState, check_auth
from vigil.bfd.machine import (
    Action,
    BfdMachine,
    MachineParams,
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
    "RX_POLL",
    "RX_POLL_MIN_RATE",
    "TX_GRID",
    "BfdEngine",
    "BfdEvent",
    "SessionSnapshot",
    "StateCallback",
]

log = logging.getLogger("vigil.bfd")

#: A (session, reason) of rejected packets is logged at most this often.
REJECT_LOG_PERIOD = 10.0
#: Periodic packets go out on a grid of this fraction of the interval (12.5 ms at 50 ms):
#: a period that starts on the grid is 75 % or 100 % of the interval, picked at random.
TX_GRID = 0.25
#: Above this many expected packets a second, datagrams are read on the engine's timer ...
RX_POLL_MIN_RATE = 150.0
#: ... which then wakes at least this often (seconds)
RX_POLL = 0.02
_U32 = 0xFFFFFFFF
_TX, _DETECT = 0, 1
# A deadline this close counts as due (a timer may wake a microsecond early).
_DUE_SLACK = 1e-6
# The most deadlines one wake-up handles before it lets the loop run again.
_MAX_DUE_PER_WAKEUP = 10_000


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
    """Log each (reason, session) once per period, with the count of the suppressed.

    Packets that match no session are keyed by the reason alone, their source only shown:
    keyed by source, a flood from spoofed addresses made one log line and one entry here
    per address (the BFD fuzz grew each agent by 2.9 MB over a million packets).
    """

    period: float = REJECT_LOG_PERIOD
    last: dict[tuple[str, RejectReason], float] = field(default_factory=dict)
    quiet: Counter[tuple[str, RejectReason]] = field(default_factory=Counter)

    def report(
        self, where: str, rejection: Rejection, now: float, *, source: str | None = None
    ) -> None:
        key = (where, rejection.reason)
        last = self.last.get(key)
        if last is not None and now - last < self.period:
            self.quiet[key] += 1
            return
        self.last[key] = now
        suppressed = self.quiet.pop(key, 0)
        more = f" (and {suppressed} more since the last report)" if suppressed else ""
        origin = f" from {source}" if source else ""
        log.warning("(bfd %s) packet%s dropped: %s%s", where, origin, rejection, more)


@dataclass(eq=False)
class _Session:
    spec: SessionSpec
    key: SessionKey
    machine: BfdMachine
    sender: Sender
    auth: AuthState | None
    rejects: Counter[RejectReason] = field(default_factory=Counter)
    auth_failures: int = 0
    send_failures: int = 0
    # the time of this session's live entry in the engine's heap, per timer (None: none)
    tx_at: float | None = None
    detect_at: float | None = None
    removed: bool = False
    # the last packet sent and its bytes (reused while the machine sends the same packet)
    sent_packet: ControlPacket | None = None
    sent_bytes: bytes = b""
    # the last datagram accepted in full: (bytes, ancillary data, multihop), and where from
    repeat: tuple[bytes, Any, bool] | None = None
    repeat_from: Any = None
    # packets a second it expects while Up (its part of the engine's rate)
    rate: float = 0.0


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
        # every session's deadlines: (when on the engine's clock, tie-break, kind, session)
        self._heap: list[tuple[float, int, int, _Session]] = []
        self._ticket = itertools.count()
        self._timer: Timer | None = None
        self._armed: float | None = None  # the deadline the timer is armed for
        self._in_timer = False
        self._polling = False  # reading datagrams on the timer, not on each arrival
        self._last_wake = 0.0
        self._rx_rate = 0.0  # packets a second all sessions that are Up expect
        # where the last fully accepted datagram of each session came from -> session
        self._repeat: dict[Any, _Session] = {}
        #: timer wake-ups, and datagrams taken by the short path for repeats
        self.wakeups = 0
        self.repeats = 0

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
                    self._on_datagram,
                    loop=self._get_loop(),
                    rng=random.Random(self._rng.random()),
                    on_raw=self._on_raw,
                )
        return self._transport

    def _get_timer(self) -> Timer:
        if self._timer is None:
            if self._timer_factory is not None:
                self._timer = self._timer_factory(self._on_timer)
            else:
                self._timer = PreciseTimer(self._get_loop(), self._on_timer, lead=False)
        return self._timer

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
        if self._timer is not None:
            self._timer.close()
        self._heap.clear()
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
        machine = BfdMachine(self._params(spec, discr), self._rng.random)
        auth = None
        if spec.auth is not None:
            auth = AuthState(spec.auth, xmit_seq=self._rng.getrandbits(32))
        session = _Session(spec=spec, key=key, machine=machine, sender=sender, auth=auth)
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
        session.removed = True  # its heap entries are dropped when they come to the top
        if session.repeat_from is not None and self._repeat.get(session.repeat_from) is session:
            del self._repeat[session.repeat_from]
        session.sender.close()
        if self._transport is not None:
            self._transport.unlisten(key.family, key.multihop)
        self._rate_changed(session)
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
        session.sent_packet = None  # a new password changes the bytes of the same packet
        now = self.now()
        machine = session.machine
        actions = machine.params_changed(now, self._params(spec, machine.local_discr))
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
        self._rate_changed(session)

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
            "wakeups": self.wakeups,
            "repeats": self.repeats,
            "polling": self._polling,
        }

    # ------------------------------------------------------------------ events

    @staticmethod
    def _params(spec: SessionSpec, discr: int) -> MachineParams:
        return replace(spec.machine_params(discr), tx_grid=TX_GRID)

    def _new_discriminator(self) -> int:
        for _ in range(1000):
            discr = self._rng.randint(1, _U32)
            if not self._table.discriminator_in_use(discr):
                return discr
        raise RuntimeError("no free BFD discriminator after 1000 draws")  # pragma: no cover

    # ------------------------------------------------------------------ scheduling

    def _schedule(self, session: _Session) -> None:
        """After a machine input: put its deadlines that moved *earlier* into the heap.

        A deadline that moved later (every received packet moves the detection time) is
        left alone: its earlier entry stays and is moved when it comes to the top.
        """
        machine = session.machine
        earliest: float | None = None
        tx = machine.tx_deadline
        if tx is not None and (session.tx_at is None or tx < session.tx_at):
            session.tx_at = tx
            heapq.heappush(self._heap, (tx, next(self._ticket), _TX, session))
            earliest = tx
        detect = machine.detect_deadline
        if detect is not None and (session.detect_at is None or detect < session.detect_at):
            session.detect_at = detect
            heapq.heappush(self._heap, (detect, next(self._ticket), _DETECT, session))
            earliest = detect if earliest is None else min(earliest, detect)
        if (
            earliest is not None
            and not self._in_timer
            and (self._armed is None or earliest < self._armed)
        ):
            self._rearm()

    def _top(self) -> tuple[float, int, _Session] | None:
        """The heap's first live entry as (when, kind, session), stale ones dropped or moved.

        An entry is stale when its session is gone, when a newer entry replaced it, or
        when the machine's deadline moved (later: the entry moves there; gone: dropped).
        """
        heap = self._heap
        for _ in range(len(heap) + 1):
            if not heap:
                return None
            when, _ticket, kind, session = heap[0]
            at = session.tx_at if kind == _TX else session.detect_at
            if session.removed or at != when:
                heapq.heappop(heap)
                continue
            machine = session.machine
            actual = machine.tx_deadline if kind == _TX else machine.detect_deadline
            if actual == when:
                return when, kind, session
            if actual is None or actual < when:  # pragma: no cover - _schedule keeps it
                heapq.heappop(heap)
                self._set_at(session, kind, None)
                if actual is not None:
                    self._schedule(session)
                continue
            heapq.heapreplace(heap, (actual, next(self._ticket), kind, session))
            self._set_at(session, kind, actual)
        return None  # pragma: no cover - every round pops or moves one entry

    @staticmethod
    def _set_at(session: _Session, kind: int, when: float | None) -> None:
        if kind == _TX:
            session.tx_at = when
        else:
            session.detect_at = when

    def _rearm(self) -> None:
        top = self._top()
        timer = self._get_timer()
        when = None if top is None else top[0]
        if self._polling:
            poll = self._last_wake + RX_POLL
            when = poll if when is None else min(when, poll)
        if when is None:
            self._armed = None
            timer.cancel()
            return
        if when != self._armed:
            self._armed = when
            timer.arm(self._loop_time(when))

    def _rate_changed(self, session: _Session) -> None:
        """After an input that may change a session's state or receive interval."""
        machine = session.machine
        rx = machine.rx_interval
        rate = 1e6 / rx if rx and machine.state is State.UP and not session.removed else 0.0
        if rate != session.rate:
            self._rx_rate += rate - session.rate
            session.rate = rate
            self._update_rx_mode()

    def _update_rx_mode(self) -> None:
        """Poll for datagrams on the timer while the sessions that are Up expect many."""
        transport = self._transport
        if transport is None or not hasattr(transport, "set_polling"):
            return
        rate = self._rx_rate
        polling = rate >= RX_POLL_MIN_RATE
        if polling == self._polling:
            return
        self._polling = polling
        self._last_wake = self.now()
        transport.set_polling(polling)
        log.debug("BFD: %s (%.0f packets/s expected)", "polling" if polling else "waking", rate)
        if not self._in_timer:
            self._rearm()

    def _on_timer(self) -> None:
        """The engine's timer: every deadline that is due, then the timer again."""
        self._armed = None
        self.wakeups += 1
        self._in_timer = True
        try:
            now = self.now()
            if self._polling:
                self._last_wake = now
                drain = getattr(self._transport, "drain", None)
                if drain is not None:
                    drain()  # first: a datagram that came before a deadline counts
            drained = self._polling
            heap, ticket, push, pop = self._heap, self._ticket, heapq.heappush, heapq.heappop
            limit = now + _DUE_SLACK
            for _ in range(_MAX_DUE_PER_WAKEUP):
                if not heap or heap[0][0] > limit:
                    break
                when, _ticket, kind, session = pop(heap)
                machine = session.machine
                # the same checks as _top, inline: this loop runs for every packet sent
                if kind == _TX:
                    if session.removed or session.tx_at != when:
                        continue  # superseded
                    session.tx_at = None
                    actual = machine.tx_deadline
                    if actual != when:
                        if actual is not None:  # moved later: back in the heap
                            session.tx_at = actual
                            push(heap, (actual, next(ticket), _TX, session))
                        continue
                    packet = machine.periodic(now)
                    if packet is not None:  # the steady state: send, next deadline
                        self._send(session, packet)
                        tx = machine.tx_deadline
                        if tx is not None:
                            session.tx_at = tx
                            push(heap, (tx, next(ticket), _TX, session))
                        continue
                    actions = machine.tx_timer_expired(now)
                else:
                    if session.removed or session.detect_at != when:
                        continue
                    session.detect_at = None
                    actual = machine.detect_deadline
                    if actual == when and not drained:
                        # A detection time is up: first read what is waiting (a stalled
                        # loop may not have run the reader yet), with its arrival times.
                        drained = True
                        drain = getattr(self._transport, "drain", None)
                        if drain is not None:
                            drain()
                            actual = machine.detect_deadline
                            if session.removed:
                                continue
                    if actual != when:
                        if actual is not None:
                            session.detect_at = actual
                            push(heap, (actual, next(ticket), _DETECT, session))
                        continue
                    actions = machine.detect_timer_expired(now)
                self._execute(session, actions)
        finally:
            self._in_timer = False
        self._rearm()

    # ------------------------------------------------------------------ receiving

    def _arrival(self, now: float, arrived: float | None) -> float:
        """When a datagram arrived, on the engine's clock: the kernel's stamp, kept within
        the last second (a wall clock step must not move a detection time far)."""
        if arrived is None or self._clock is not None:
            return now
        return min(now, max(arrived, now - 1.0))

    def _on_raw(
        self, data: bytes, ancdata: Any, address: Any, multihop: bool, arrived: float | None
    ) -> bool:
        """The short path for a repeat of the last packet accepted from ``address``;
        False when the datagram needs the full path (see the module docstring)."""
        session = self._repeat.get(address)
        if session is None or session.repeat != (data, ancdata, multihop):
            return False
        if self._clock is None:
            assert self._loop is not None  # set when the transport was made
            now = self._loop.time()
            at = now if arrived is None else min(now, max(arrived, now - 1.0))  # _arrival
        else:
            now = at = self._clock()
        if session.machine.packet_repeated(now, at) is None:
            return False
        if session.auth is not None:
            session.auth.touch(now)
        self.repeats += 1
        # no _schedule: the detection deadline only moved later, the next packet not at all
        return True

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
        arrived = self._arrival(now, datagram.arrived)
        self._execute(session, session.machine.packet_received(now, pkt, arrived))
        self._rate_changed(session)
        self._remember(session, datagram)

    def _remember(self, session: _Session, datagram: BfdDatagram) -> None:
        """Keep an accepted datagram for the short path (not under meticulous auth)."""
        raw = datagram.raw
        if raw is None or session.removed:
            return
        auth = session.auth
        if auth is not None and auth.config.type.meticulous:
            return
        address, ancdata = raw
        old = session.repeat_from
        if old is not None and old != address and self._repeat.get(old) is session:
            del self._repeat[old]
        session.repeat = (datagram.data, ancdata, datagram.multihop)
        session.repeat_from = address
        self._repeat[address] = session

    def _unmatched(self, datagram: BfdDatagram, rejection: Rejection, now: float) -> None:
        self.unmatched[rejection.reason] += 1
        self._reject_log.report("no session", rejection, now, source=str(datagram.src))

    def _execute(self, session: _Session, actions: list[Action]) -> None:
        """Carry out a machine's actions in order (I/O only), then its new deadlines.

        The machine's ArmTx / ArmDetect actions are not needed: the engine reads the
        machine's deadlines (see :meth:`_schedule`).
        """
        for action in actions:
            if isinstance(action, SendPacket):
                self._send(session, action.packet)
            elif isinstance(action, Transition):
                self._report(session, action)
        if not session.removed:
            self._schedule(session)

    def _send(self, session: _Session, packet: ControlPacket) -> None:
        auth = session.auth
        if auth is not None and auth.config.type.digest_size:
            data = auth.sign(packet, self.now())  # a new sequence number or digest
        elif packet is session.sent_packet:
            data = session.sent_bytes
        else:
            data = packet.pack() if auth is None else auth.sign(packet, self.now())
            session.sent_packet, session.sent_bytes = packet, data
        if not session.sender.send(data):
            session.send_failures += 1

    def _report(self, session: _Session, transition: Transition) -> None:
        self._rate_changed(session)
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
