"""The BFD session state machine, sans-I/O (RFC 5880 sections 6.2, 6.5, 6.8; RFC 5881).

Why pure: liveness detection lives or dies on timer arithmetic (negotiated intervals,
Poll/Final, when a new value takes effect), and that has to be testable with a fake clock
and two machines talking to each other, without sockets or sleeping. The machine never
reads a clock, never draws a random number itself, never touches the network and never
logs: every input carries ``now`` (monotonic seconds), jitter comes from the injected
``rng``, and every input returns a list of :data:`Action` for the runtime to execute in
order.

Inputs: :meth:`BfdMachine.start`, :meth:`~BfdMachine.packet_received` (a packet the codec
decoded and the session's authentication accepted), :meth:`~BfdMachine.tx_timer_expired`,
:meth:`~BfdMachine.detect_timer_expired`, :meth:`~BfdMachine.admin_down` /
:meth:`~BfdMachine.admin_up`, :meth:`~BfdMachine.path_down`,
:meth:`~BfdMachine.params_changed` / :meth:`~BfdMachine.set_timers`.

Outputs: :class:`SendPacket` (send this packet now), :class:`ArmTx` / :class:`ArmDetect`
(the transmit / detection timer's new deadline, None to disarm; emitted only when a
deadline changes) and :class:`Transition` (a state change, first in its list; ``str()`` is
the log line)::

    (bfd 10.0.0.2) Down -> Up: remote Init
    (bfd 10.0.0.2) Up -> Down: no packet for 0.150s (detection time 3 x 50ms); diag 1
    Control Detection Time Expired

Shape (STYLE.md): :class:`~vigil.bfd.packet.State` is the enum, every state change goes
through one named method (``_init_seen``, ``_come_up``, ``_go_down``, ``_disable``,
``_enable``) and is checked against :data:`TRANSITIONS`.

Rules, with where they come from:

* Negotiation (6.8.2, 6.8.4): transmit interval = max(bfd.DesiredMinTxInterval in use,
  the remote's Required Min RX); detection time = the remote's Detect Mult x max(our
  Required Min RX in use, the remote's Desired Min TX).
* 6.8.3: while not Up, Desired Min TX is at least ``idle_tx`` (1 s or more). Changing
  Desired Min TX or Required Min RX while Up starts a Poll Sequence; a larger TX interval
  and a smaller RX interval take effect only when it terminates (so the peer's detection
  time is never shorter than our real interval); a smaller TX and a larger RX take effect
  at once. Outside Up the new values apply at once and no Poll is run (there is no peer
  detection time on a fast interval to protect, and a Poll needs a peer to answer it).
* 6.5: the P bit rides on the periodic packets (never an extra packet); a received P is
  answered at once with F (never with P and F together), also by a passive session. A
  change while a Poll runs waits for it; a new Poll starts only after the peer has sent a
  packet without F (6.8.3: so a late Final of the old Poll cannot end the new one). A
  Final ends a Poll only once at least one of its P packets has left.
* 6.8.7: periodic packets are jittered to 75-100 % of the interval (75-90 % with Detect
  Mult 1); none while passive and the remote discriminator is unknown, none while the
  remote asks for Required Min RX 0, none while the remote runs Demand mode (both Up)
  unless we poll. A state change sends a packet at once (and restarts the period).
  With ``MachineParams.tx_grid`` (a fraction of the interval, at most 0.25) the send time
  is one of the points of a grid of that step (counted from time 0) inside the jitter
  window, picked at random: sessions on one interval then send on the same ticks, and the
  runtime wakes once per tick for all of them instead of once per packet. The jitter
  stays random, in steps of the grid (at 0.25: 75 % or 100 % of the interval, a period
  that starts on the grid; the average is 87.5 %, as with a uniform jitter). A window
  with no grid point in it (Detect Mult 1 with a step over 0.15) uses the plain jitter.
* 6.8.6: the remote's variables are taken from every authentic packet, even in
  AdminDown, but an AdminDown session discards the packet after that (no Final, no
  detection timer). 6.8.4/6.8.1: when the detection time passes, the remote
  discriminator is forgotten, and Init/Up go Down with diagnostic 1.
* 6.8.16: AdminDown keeps sending (at the idle rate) so the peer learns why; enabling
  again goes to Down with the remote discriminator forgotten.
* RTT: when a Poll Sequence is answered after exactly one P packet, the time from that
  packet to the Final is an RTT sample (it includes the peer's time to answer). Polls
  happen when the session comes Up and on timer changes, so the sample is occasional;
  without one, :attr:`BfdMachine.rtt` is None.
* The steady state is cheap: :meth:`BfdMachine.packet_repeated` takes a packet the
  runtime found identical to the last one accepted (byte for byte, same addresses) and
  only restarts the detection time, when nothing else could change (both Up, no Poll
  running or wanted, no P, F or D bit); otherwise it returns None and the runtime takes
  the full path. The packet the machine sends is rebuilt only when a field changes.

Events are conditions, not commands: a timer callback before its deadline, a Final with
no Poll running, ``admin_up`` while enabled and the like do nothing. A transition the
table does not allow raises :class:`IllegalTransition` (a bug here, not in the caller).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vigil.bfd.packet import ControlPacket, Diag, State, diag_text

__all__ = [
    "IDLE_TX_US",
    "MAX_TX_GRID",
    "TRANSITIONS",
    "Action",
    "ArmDetect",
    "ArmTx",
    "BfdMachine",
    "Counters",
    "IllegalTransition",
    "MachineParams",
    "MachineParamsError",
    "SendPacket",
    "Transition",
    "Trigger",
    "is_allowed",
]

#: RFC 5880 6.8.3: Desired Min TX while the session is not Up is at least one second.
IDLE_TX_US = 1_000_000
#: The largest send grid (fraction of the interval): the 75-100 % jitter window holds two
#: of its points (the 75-90 % window of Detect Mult 1 may hold none: plain jitter then).
MAX_TX_GRID = 0.25
_U32 = 0xFFFFFFFF
# A timer callback this close to its deadline counts as on time (see vrrp.machine).
_TIMER_SLACK = 1e-6


class Trigger(enum.StrEnum):
    """Why a transition is requested; the transition table is keyed by these."""

    REMOTE_DOWN = "remote_down"
    REMOTE_INIT = "remote_init"
    REMOTE_UP = "remote_up"
    REMOTE_ADMIN_DOWN = "remote_admin_down"
    DETECTION_TIMEOUT = "detection_timeout"
    PATH_DOWN = "path_down"
    ADMIN_DOWN = "admin_down"
    ADMIN_UP = "admin_up"


# The single source of truth: (old, new) -> triggers that may cause it (RFC 5880 6.2).
TRANSITIONS: Mapping[tuple[State, State], frozenset[Trigger]] = {
    (State.DOWN, State.INIT): frozenset({Trigger.REMOTE_DOWN}),
    (State.DOWN, State.UP): frozenset({Trigger.REMOTE_INIT}),
    (State.INIT, State.UP): frozenset({Trigger.REMOTE_INIT, Trigger.REMOTE_UP}),
    (State.INIT, State.DOWN): frozenset(
        {Trigger.REMOTE_ADMIN_DOWN, Trigger.DETECTION_TIMEOUT, Trigger.PATH_DOWN}
    ),
    (State.UP, State.DOWN): frozenset(
        {
            Trigger.REMOTE_DOWN,
            Trigger.REMOTE_ADMIN_DOWN,
            Trigger.DETECTION_TIMEOUT,
            Trigger.PATH_DOWN,
        }
    ),
    (State.DOWN, State.ADMIN_DOWN): frozenset({Trigger.ADMIN_DOWN}),
    (State.INIT, State.ADMIN_DOWN): frozenset({Trigger.ADMIN_DOWN}),
    (State.UP, State.ADMIN_DOWN): frozenset({Trigger.ADMIN_DOWN}),
    (State.ADMIN_DOWN, State.DOWN): frozenset({Trigger.ADMIN_UP}),
}


def is_allowed(old: State, new: State, trigger: Trigger) -> bool:
    """Whether the table allows ``trigger`` to move a session from ``old`` to ``new``."""
    return trigger in TRANSITIONS.get((old, new), frozenset())


class IllegalTransition(RuntimeError):
    """A transition the table does not allow was requested: a bug in the machine."""


class MachineParamsError(ValueError):
    """Invalid :class:`MachineParams`; the message names the field and the fix."""


# ---------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class SendPacket:
    """Send this packet now (the runtime adds authentication and the addresses).

    ``why``: ``periodic``, ``final`` (answering a Poll) or ``state change``.
    """

    packet: ControlPacket
    why: str


@dataclass(frozen=True, slots=True)
class ArmTx:
    """The transmit timer's new deadline (None: disarmed); fire :meth:`tx_timer_expired`."""

    deadline: float | None


@dataclass(frozen=True, slots=True)
class ArmDetect:
    """The detection timer's new deadline (None: disarmed)."""

    deadline: float | None


@dataclass(frozen=True, slots=True)
class Transition:
    """A state change; first in its action list. ``str()`` is the one log line for it.

    ``diag`` is the local diagnostic after the change (what our packets now carry).
    """

    session: str
    old: State
    new: State
    trigger: Trigger
    diag: Diag
    reason: str
    time: float

    def __str__(self) -> str:
        return f"(bfd {self.session}) {self.describe()}"

    def describe(self) -> str:
        """The log line without the session: ``Up -> Down: ...; diag 1 ...``."""
        line = f"{self.old} -> {self.new}: {self.reason}"
        down = self.new in (State.DOWN, State.ADMIN_DOWN)
        if down and self.trigger is not Trigger.ADMIN_UP and self.diag is not Diag.NONE:
            line += f"; diag {int(self.diag)} {self.diag.text}"
        return line

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "from": str(self.old),
            "to": str(self.new),
            "trigger": str(self.trigger),
            "diag": int(self.diag),
            "diag_text": self.diag.text,
            "reason": self.reason,
        }


Action = SendPacket | ArmTx | ArmDetect | Transition


# ---------------------------------------------------------------------------- params


def _check_u32(out: list[str], name: str, value: object, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= _U32:
        out.append(f"{name}: must be an integer from {low} to {_U32}, got {value!r}")


@dataclass(frozen=True)
class MachineParams:
    """What the machine needs from a session's configuration (independent of any schema).

    Intervals are microseconds, as on the wire. ``name`` labels log lines (usually the
    peer address). ``local_discr`` is bfd.LocalDiscr, unique per session on this host.
    ``idle_tx`` is Desired Min TX while not Up (RFC 5880 6.8.3: at least 1 s).
    ``admin_down`` starts the session in AdminDown.
    """

    name: str
    local_discr: int
    desired_min_tx: int
    required_min_rx: int
    detect_mult: int = 3
    passive: bool = False
    idle_tx: int = IDLE_TX_US
    admin_down: bool = False
    #: send periodic packets on a grid of this fraction of the interval (0: no grid)
    tx_grid: float = 0.0

    def __post_init__(self) -> None:
        out: list[str] = []
        grid = self.tx_grid
        if not isinstance(grid, int | float) or not 0.0 <= grid <= MAX_TX_GRID:
            out.append(f"tx_grid: must be from 0 to {MAX_TX_GRID}, got {grid!r}")
        if not self.name:
            out.append("name: must not be empty")
        _check_u32(out, "local_discr", self.local_discr, 1)
        _check_u32(out, "desired_min_tx", self.desired_min_tx, 1)
        _check_u32(out, "required_min_rx", self.required_min_rx, 1)
        _check_u32(out, "idle_tx", self.idle_tx, IDLE_TX_US)
        mult = self.detect_mult
        if not isinstance(mult, int) or isinstance(mult, bool) or not 1 <= mult <= 255:
            out.append(f"detect_mult: must be an integer from 1 to 255, got {mult!r}")
        if out:
            raise MachineParamsError("; ".join(f"MachineParams({self.name!r}).{p}" for p in out))


# ---------------------------------------------------------------------------- counters


@dataclass
class Counters:
    """Per-session protocol counters (the runtime adds rejects and auth failures)."""

    packets_in: int = 0
    packets_out: int = 0
    finals_sent: int = 0
    polls_started: int = 0
    polls_completed: int = 0
    up_transitions: int = 0
    down_transitions: int = 0
    discarded_admin_down: int = 0

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def _ms(us: int) -> str:
    return f"{us / 1000:g}ms"


def _secs(seconds: float) -> str:
    return f"{seconds:.3f}s"


@dataclass
class _Poll:
    """The Poll Sequence: running, wanted, and what the RTT sample needs."""

    active: bool = False
    pending: bool = False  # values changed while a Poll ran, or before F=0 was seen
    peer_done: bool = True  # the peer sent F=0 since our last Poll ended
    p_sent: int = 0
    last_p_at: float = 0.0


# ---------------------------------------------------------------------------- machine


class BfdMachine:
    """One BFD session's protocol state. See the module docstring for the contract.

    ``rng()`` returns a float in [0, 1) (``random.Random(...).random``); it decides each
    periodic packet's jitter.
    """

    def __init__(self, params: MachineParams, rng: Callable[[], float]) -> None:
        self._params = params
        self._rng = rng
        self._state = State.ADMIN_DOWN if params.admin_down else State.DOWN
        self._local_diag = Diag.ADMINISTRATIVELY_DOWN if params.admin_down else Diag.NONE
        self._remote_state = State.DOWN
        self._remote_discr = 0
        self._remote_diag: int = Diag.NONE
        self._remote_min_rx = 1  # RFC 5880 6.8.1 initial value
        self._remote_desired_tx = 0  # unknown until the first packet
        self._remote_mult = 0
        self._remote_demand = False
        # bfd.DesiredMinTxInterval / RequiredMinRxInterval as advertised, and as in use
        # for our transmit interval / the detection time (they differ during a Poll).
        self._adv_tx, self._adv_rx = self._target_timers()
        self._eff_tx, self._eff_rx = self._adv_tx, self._adv_rx
        self._poll = _Poll()
        self._tx_deadline: float | None = None
        self._tx_jitter = 1.0
        self._last_tx: float | None = None
        self._tx_base: float | None = None  # where the current period counts from
        self._detect_deadline: float | None = None
        self._last_rx: float | None = None
        self._up_since: float | None = None
        self._rtt: float | None = None
        self._started = False
        self._last_transition: Transition | None = None
        # the last packet built and what it was built from (rebuilt only on a change)
        self._built: tuple[tuple[Any, ...], ControlPacket] | None = None
        # the last packet accepted allows packet_repeated (no P, F or D bit in it), and
        # the detection time it set
        self._repeat_ok = False
        self._repeat_detect: float | None = None
        self.counters = Counters()

    # ------------------------------------------------------------------ read side

    @property
    def params(self) -> MachineParams:
        return self._params

    @property
    def name(self) -> str:
        return self._params.name

    @property
    def state(self) -> State:
        return self._state

    @property
    def remote_state(self) -> State:
        return self._remote_state

    @property
    def local_diag(self) -> Diag:
        return self._local_diag

    @property
    def remote_diag(self) -> int:
        return self._remote_diag

    @property
    def local_discr(self) -> int:
        return self._params.local_discr

    @property
    def remote_discr(self) -> int:
        return self._remote_discr

    @property
    def poll_active(self) -> bool:
        return self._poll.active

    @property
    def advertised_timers(self) -> tuple[int, int]:
        """(Desired Min TX, Required Min RX) our packets carry now, in microseconds."""
        return self._adv_tx, self._adv_rx

    @property
    def tx_interval(self) -> int | None:
        """The negotiated transmit interval in µs (before jitter); None: no periodic TX."""
        if not self._may_send_periodic():
            return None
        return max(self._eff_tx, self._remote_min_rx)

    @property
    def rx_interval(self) -> int | None:
        """The interval we expect packets at (µs); None before the first packet."""
        if not self._remote_mult:
            return None
        return max(self._eff_rx, self._remote_desired_tx)

    @property
    def detection_time(self) -> float | None:
        """Seconds without a packet before the session goes down; None before any packet."""
        rx = self.rx_interval
        if rx is None:
            return None
        return self._remote_mult * rx / 1e6

    @property
    def remote_detect_mult(self) -> int:
        return self._remote_mult

    @property
    def tx_deadline(self) -> float | None:
        return self._tx_deadline

    @property
    def detect_deadline(self) -> float | None:
        return self._detect_deadline

    def next_deadline(self) -> float | None:
        """The earlier of the two timers (None: neither is armed)."""
        times = [t for t in (self._tx_deadline, self._detect_deadline) if t is not None]
        return min(times) if times else None

    @property
    def up_since(self) -> float | None:
        """When the session last came Up (None unless it is Up)."""
        return self._up_since

    @property
    def last_rx(self) -> float | None:
        """When the last packet was accepted (not discarded in AdminDown)."""
        return self._last_rx

    @property
    def rtt(self) -> float | None:
        """The last Poll/Final round trip in seconds (see the module docstring)."""
        return self._rtt

    @property
    def last_transition(self) -> Transition | None:
        return self._last_transition

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        """A JSON-able snapshot (times are the machine's monotonic seconds)."""
        last = self._last_transition
        up = self._up_since
        return {
            "name": self.name,
            "state": str(self._state),
            "remote_state": str(self._remote_state),
            "local_diag": int(self._local_diag),
            "local_diag_text": self._local_diag.text,
            "remote_diag": int(self._remote_diag),
            "remote_diag_text": diag_text(self._remote_diag),
            "local_discr": self.local_discr,
            "remote_discr": self._remote_discr,
            "passive": self._params.passive,
            "detect_mult": self._params.detect_mult,
            "remote_detect_mult": self._remote_mult,
            "desired_min_tx_us": self._adv_tx,
            "required_min_rx_us": self._adv_rx,
            "remote_desired_min_tx_us": self._remote_desired_tx,
            "remote_required_min_rx_us": self._remote_min_rx,
            "tx_interval_us": self.tx_interval,
            "rx_interval_us": self.rx_interval,
            "detection_time": self.detection_time,
            "poll_active": self._poll.active,
            "up_since": up,
            "uptime": None if up is None or now is None else now - up,
            "rtt": self._rtt,
            "last_transition": None if last is None else last.to_dict(),
            "counters": self.counters.to_dict(),
        }

    # ------------------------------------------------------------------ inputs

    def start(self, now: float) -> list[Action]:
        """Begin sending (an active session sends its first packet at once)."""
        if self._started:
            return []
        self._started = True
        before = self._deadlines()
        if self._may_send_periodic():
            self._tx_deadline = now
        return self._with_timers([], before)

    def packet_received(
        self, now: float, pkt: ControlPacket, arrived: float | None = None
    ) -> list[Action]:
        """RFC 5880 6.8.6 from "Set bfd.RemoteDiscr" on, for an authentic packet.

        ``arrived`` (at most ``now``) is when the packet reached the host, if the runtime
        read it later: the detection time runs from then.
        """
        if not self._started:
            return []
        before = self._deadlines()
        self.counters.packets_in += 1
        self._repeat_ok = False
        actions: list[Action] = []
        self._remote_discr = pkt.my_discr
        self._remote_state = pkt.state
        self._remote_diag = pkt.diag
        self._remote_demand = pkt.demand
        self._remote_min_rx = pkt.required_min_rx
        self._remote_desired_tx = pkt.desired_min_tx
        self._remote_mult = pkt.detect_mult
        if pkt.final:
            self._end_poll(now)
        else:
            self._poll.peer_done = True
        if self._state is State.ADMIN_DOWN:
            self.counters.discarded_admin_down += 1
            self._reschedule_tx(now)
            return self._with_timers(actions, before)
        actions.extend(self._remote_state_rules(now, pkt))
        self._maybe_start_poll(now, actions)
        if pkt.poll:
            actions.append(self._final())
        rx = now if arrived is None else arrived
        self._last_rx = rx
        detect = self.detection_time
        self._detect_deadline = None if detect is None else rx + detect
        self._reschedule_tx(now)
        self._repeat_ok = not (pkt.poll or pkt.final or pkt.demand) and not actions
        self._repeat_detect = detect
        return self._with_timers(actions, before)

    def packet_repeated(self, now: float, arrived: float | None = None) -> list[Action] | None:
        """The last accepted packet again, byte for byte (see the module docstring).

        Returns the actions (none: only the detection time restarts) or None when the
        full :meth:`packet_received` is needed.
        """
        poll = self._poll
        if (
            not self._repeat_ok
            or self._state is not State.UP
            or self._remote_state is not State.UP
            or poll.active
            or poll.pending
            or not self._started
        ):
            return None
        self.counters.packets_in += 1
        rx = now if arrived is None else arrived
        self._last_rx = rx
        detect = self._repeat_detect  # nothing it depends on changed since (see above)
        self._detect_deadline = None if detect is None else rx + detect
        return []

    def periodic(self, now: float) -> ControlPacket | None:
        """:meth:`tx_timer_expired` in the steady state (Up, no Poll running, the remote
        neither silent nor in Demand mode): the packet to send, the next deadline set, and
        no action list. None when the full :meth:`tx_timer_expired` is needed."""
        deadline = self._tx_deadline
        if (
            deadline is None
            or now + _TIMER_SLACK < deadline
            or self._state is not State.UP
            or self._poll.active
            or self._remote_min_rx == 0
            or self._remote_demand
            or self._silent()
        ):
            return None
        packet = self._build(final=False)
        self._last_tx = now
        self.counters.packets_out += 1
        self._tx_jitter = self._jitter()
        interval = max(self._eff_tx, self._remote_min_rx)
        grid = self._params.tx_grid
        # _period_start, inline: the grid point the timer was due at, unless a step late
        base = deadline if grid and now - deadline < interval * grid / 1e6 else now
        self._tx_base = base
        self._tx_deadline = self._tx_due(base, interval)
        return packet

    def tx_timer_expired(self, now: float) -> list[Action]:
        """The transmit timer fired: send the periodic packet, arm the next one."""
        deadline = self._tx_deadline
        if deadline is None or now + _TIMER_SLACK < deadline:
            return []
        before = self._deadlines()
        actions: list[Action] = []
        if self._may_send_periodic():
            actions.append(self._send(now, "periodic"))
            self._arm_tx_from(self._period_start(now, deadline))
        else:
            self._tx_deadline = None
        return self._with_timers(actions, before)

    def detect_timer_expired(self, now: float) -> list[Action]:
        """The detection time passed without a packet (RFC 5880 6.8.4, 6.8.1)."""
        deadline = self._detect_deadline
        if deadline is None or now + _TIMER_SLACK < deadline:
            return []
        before = self._deadlines()
        detect = self.detection_time or 0.0
        rx = self.rx_interval or 0
        silent = now - self._last_rx if self._last_rx is not None else detect
        self._detect_deadline = None
        self._repeat_ok = False
        self._remote_discr = 0
        self._remote_state = State.DOWN
        actions: list[Action] = []
        if self._state in (State.INIT, State.UP):
            reason = (
                f"no packet for {_secs(silent)} (detection time {self._remote_mult} x {_ms(rx)})"
            )
            actions.extend(
                self._go_down(
                    now, Trigger.DETECTION_TIMEOUT, Diag.CONTROL_DETECTION_TIME_EXPIRED, reason
                )
            )
        self._reschedule_tx(now)
        return self._with_timers(actions, before)

    def admin_down(
        self,
        now: float,
        reason: str = "administratively down",
        diag: Diag = Diag.ADMINISTRATIVELY_DOWN,
    ) -> list[Action]:
        """Disable the session (RFC 5880 6.8.16); the peer sees AdminDown and ``diag``."""
        if self._state is State.ADMIN_DOWN:
            return []
        before = self._deadlines()
        return self._with_timers(self._disable(now, reason, diag), before)

    def admin_up(self, now: float, reason: str = "administratively up") -> list[Action]:
        """Enable the session again: AdminDown -> Down."""
        if self._state is not State.ADMIN_DOWN:
            return []
        before = self._deadlines()
        return self._with_timers(self._enable(now, reason), before)

    def path_down(self, now: float, reason: str = "path down") -> list[Action]:
        """Outside knowledge that the path failed (an interface went down): Init/Up -> Down
        with diagnostic 5 (Path Down). The session keeps trying to come back."""
        if self._state not in (State.INIT, State.UP):
            return []
        before = self._deadlines()
        actions = self._go_down(now, Trigger.PATH_DOWN, Diag.PATH_DOWN, reason)
        return self._with_timers(actions, before)

    def params_changed(self, now: float, new: MachineParams) -> list[Action]:
        """Apply new parameters in place, never flapping the session.

        New intervals go through a Poll Sequence while Up (see the module docstring); a
        new Detect Mult is sent with the next packet (RFC 5880 6.8.12); ``passive`` and
        ``idle_tx`` apply at once. ``local_discr`` identifies the session on the wire: a
        change there needs a new machine. ``admin_down`` is only read at construction
        (use :meth:`admin_down` / :meth:`admin_up`).
        """
        if new.local_discr != self._params.local_discr:
            raise MachineParamsError(
                f"MachineParams({self.name!r}).local_discr: changed from "
                f"{self._params.local_discr} to {new.local_discr}; replace the session instead"
            )
        before = self._deadlines()
        self._params = new
        self._repeat_ok = False
        actions: list[Action] = []
        self._retime(now, actions)
        self._reschedule_tx(now)
        return self._with_timers(actions, before)

    def set_timers(
        self,
        now: float,
        *,
        desired_min_tx: int | None = None,
        required_min_rx: int | None = None,
        detect_mult: int | None = None,
    ) -> list[Action]:
        """Shorthand for :meth:`params_changed` with new intervals (µs) or multiplier."""
        p = self._params
        new = dataclasses.replace(
            p,
            desired_min_tx=p.desired_min_tx if desired_min_tx is None else desired_min_tx,
            required_min_rx=p.required_min_rx if required_min_rx is None else required_min_rx,
            detect_mult=p.detect_mult if detect_mult is None else detect_mult,
        )
        return self.params_changed(now, new)

    # ------------------------------------------------------------------ rules

    def _remote_state_rules(self, now: float, pkt: ControlPacket) -> list[Action]:
        """The state part of RFC 5880 6.8.6 (the caller has handled AdminDown)."""
        remote = pkt.state
        state = self._state
        if remote is State.ADMIN_DOWN:
            if state is State.DOWN:
                return []
            reason = f"remote AdminDown{self._remote_diag_note()}"
            return self._go_down(
                now, Trigger.REMOTE_ADMIN_DOWN, Diag.NEIGHBOR_SIGNALED_SESSION_DOWN, reason
            )
        if state is State.DOWN:
            if remote is State.DOWN:
                return self._init_seen(now)
            if remote is State.INIT:
                return self._come_up(now, Trigger.REMOTE_INIT)
            return []
        if state is State.INIT:
            if remote is State.INIT:
                return self._come_up(now, Trigger.REMOTE_INIT)
            if remote is State.UP:
                return self._come_up(now, Trigger.REMOTE_UP)
            return []
        if remote is State.DOWN:
            reason = f"remote Down{self._remote_diag_note()}"
            return self._go_down(
                now, Trigger.REMOTE_DOWN, Diag.NEIGHBOR_SIGNALED_SESSION_DOWN, reason
            )
        return []

    def _remote_diag_note(self) -> str:
        if self._remote_diag == Diag.NONE:
            return ""
        return f" (remote diag {int(self._remote_diag)} {diag_text(self._remote_diag)})"

    def _target_timers(self) -> tuple[int, int]:
        """The Desired Min TX / Required Min RX we want to advertise in this state."""
        p = self._params
        tx = p.desired_min_tx if self._state is State.UP else max(p.idle_tx, p.desired_min_tx)
        return tx, p.required_min_rx

    def _retime(self, now: float, actions: list[Action]) -> None:
        """Move the advertised timers towards the targets (RFC 5880 6.8.3)."""
        tx, rx = self._target_timers()
        if self._state is not State.UP:
            self._adv_tx = self._eff_tx = tx
            self._adv_rx = self._eff_rx = rx
            self._poll = _Poll(peer_done=self._poll.peer_done)
            return
        if (tx, rx) == (self._adv_tx, self._adv_rx):
            self._poll.pending = False
            return
        self._poll.pending = True
        self._maybe_start_poll(now, actions)

    def _maybe_start_poll(self, now: float, actions: list[Action]) -> None:
        poll = self._poll
        if not poll.pending or poll.active or not poll.peer_done or self._state is not State.UP:
            return
        tx, rx = self._target_timers()
        poll.pending = False
        if (tx, rx) == (self._adv_tx, self._adv_rx):
            return
        self._adv_tx, self._adv_rx = tx, rx
        if tx < self._eff_tx:
            self._eff_tx = tx  # sending faster is safe at once
        if rx > self._eff_rx:
            self._eff_rx = rx  # a longer detection time is safe at once
        poll.active, poll.p_sent = True, 0
        self.counters.polls_started += 1

    def _end_poll(self, now: float) -> None:
        poll = self._poll
        if not poll.active or poll.p_sent == 0:
            return  # a Final for nothing we sent (or for an earlier Poll): ignore it
        if poll.p_sent == 1:
            self._rtt = now - poll.last_p_at
        poll.active, poll.peer_done = False, False
        self._eff_tx, self._eff_rx = self._adv_tx, self._adv_rx
        self.counters.polls_completed += 1
        poll.pending = poll.pending or self._target_timers() != (self._adv_tx, self._adv_rx)

    # ------------------------------------------------------------------ transitions

    def _init_seen(self, now: float) -> list[Action]:
        """Down -> Init: the remote is Down and talking to us."""
        return self._change(now, State.INIT, Trigger.REMOTE_DOWN, None, "remote Down")

    def _come_up(self, now: float, trigger: Trigger) -> list[Action]:
        """Down/Init -> Up: the three-way handshake is complete."""
        remote = "Init" if trigger is Trigger.REMOTE_INIT else "Up"
        self.counters.up_transitions += 1
        self._up_since = now
        return self._change(now, State.UP, trigger, Diag.NONE, f"remote {remote}")

    def _go_down(self, now: float, trigger: Trigger, diag: Diag, reason: str) -> list[Action]:
        """Init/Up -> Down with a diagnostic."""
        if self._state is State.UP:
            self.counters.down_transitions += 1
        self._up_since = None
        return self._change(now, State.DOWN, trigger, diag, reason)

    def _disable(self, now: float, reason: str, diag: Diag) -> list[Action]:
        """Down/Init/Up -> AdminDown: keep telling the peer, stop detecting it."""
        if self._state is State.UP:
            self.counters.down_transitions += 1
        self._up_since = None
        actions = self._change(now, State.ADMIN_DOWN, Trigger.ADMIN_DOWN, diag, reason)
        self._detect_deadline = None
        return actions

    def _enable(self, now: float, reason: str) -> list[Action]:
        """AdminDown -> Down, starting afresh: the remote is unknown again."""
        self._remote_discr = 0
        self._remote_state = State.DOWN
        return self._change(now, State.DOWN, Trigger.ADMIN_UP, None, reason)

    def _change(
        self, now: float, new: State, trigger: Trigger, diag: Diag | None, reason: str
    ) -> list[Action]:
        """Record the transition, retime, and send the news at once (6.8.7 allowing)."""
        if not is_allowed(self._state, new, trigger):
            raise IllegalTransition(
                f"(bfd {self.name}) {self._state} -> {new} on {trigger} is not allowed"
            )
        if diag is not None:
            self._local_diag = diag
        self._repeat_ok = False
        record = Transition(self.name, self._state, new, trigger, self._local_diag, reason, now)
        self._state = new
        self._last_transition = record
        actions: list[Action] = [record]
        self._retime(now, actions)
        if self._started and not self._silent():
            actions.append(self._send(now, "state change"))
            self._arm_tx_from(now)
        return actions

    # ------------------------------------------------------------------ transmission

    def _silent(self) -> bool:
        """RFC 5880 6.8.7: a passive session sends nothing until the remote is known."""
        return self._params.passive and self._remote_discr == 0

    def _may_send_periodic(self) -> bool:
        if self._silent() or self._remote_min_rx == 0:
            return False
        demand = (
            self._remote_demand
            and self._state is State.UP
            and self._remote_state is State.UP
            and not self._poll.active
        )
        return not demand

    def _build(self, *, final: bool) -> ControlPacket:
        """The packet to send now; the same object as last time if no field changed."""
        poll = self._poll.active and not final
        fields = (
            self._state,
            self._local_diag,
            self._params.detect_mult,
            self._params.local_discr,
            self._remote_discr,
            self._adv_tx,
            self._adv_rx,
            poll,
            final,
        )
        built = self._built
        if built is not None and built[0] == fields:
            return built[1]
        packet = ControlPacket(
            state=self._state,
            diag=self._local_diag,
            detect_mult=self._params.detect_mult,
            my_discr=self._params.local_discr,
            your_discr=self._remote_discr,
            desired_min_tx=self._adv_tx,
            required_min_rx=self._adv_rx,
            required_min_echo_rx=0,
            poll=poll,
            final=final,
        )
        self._built = (fields, packet)
        return packet

    def _send(self, now: float, why: str) -> SendPacket:
        packet = self._build(final=False)
        if packet.poll:
            self._poll.p_sent += 1
            self._poll.last_p_at = now
        self._last_tx = now
        self.counters.packets_out += 1
        return SendPacket(packet, why)

    def _final(self) -> SendPacket:
        """The answer to a Poll: F set, P clear, at once (also when passive)."""
        self.counters.packets_out += 1
        self.counters.finals_sent += 1
        return SendPacket(self._build(final=True), "final")

    def _jitter(self) -> float:
        """RFC 5880 6.8.7: 75-100 % of the interval, 75-90 % with Detect Mult 1."""
        r = self._rng()
        if self._params.detect_mult == 1:
            return 0.90 - 0.15 * r
        return 1.0 - 0.25 * r

    def _arm_tx_from(self, now: float) -> None:
        interval = self.tx_interval
        if interval is None:
            self._tx_deadline = None
            return
        self._tx_jitter = self._jitter()
        self._tx_base = now
        self._tx_deadline = self._tx_due(now, interval)

    def _period_start(self, now: float, deadline: float) -> float:
        """Where the next period counts from: with a send grid, the grid point the timer
        was due at (it fires a little after it), so the next point is picked from the
        grid and not from the timer's lateness; otherwise, and if it fired a whole grid
        step late, ``now``."""
        grid = self._params.tx_grid
        interval = self.tx_interval
        if not grid or interval is None or now - deadline >= interval * grid / 1e6:
            return now
        return deadline

    def _tx_due(self, base: float, interval: int) -> float:
        """``base`` + the jittered interval, on a point of the send grid if there is one.

        The grid points inside the window are equally likely; which one is decided by the
        jitter already drawn (so the same draw gives the same point when recomputed).
        """
        seconds = interval / 1e6
        jitter = self._tx_jitter
        due = base + seconds * jitter
        grid = self._params.tx_grid
        if not grid:
            return due
        top = 0.90 if self._params.detect_mult == 1 else 1.0
        step = seconds * grid
        first = math.ceil((base + seconds * 0.75) / step - 1e-9)
        last = math.floor((base + seconds * top) / step + 1e-9)
        count = last - first + 1
        if count <= 0:
            return due
        pick = min(count - 1, int((jitter - 0.75) / (top - 0.75) * count))
        return (first + pick) * step

    def _reschedule_tx(self, now: float) -> None:
        """After the interval or the permission to send changed (RFC 5880 6.8.3, 6.8.7).

        The current period keeps its jitter: a shorter interval is honoured at once (at
        the latest ``interval`` after the last packet), a longer one postpones it.
        """
        if not self._started:
            return
        interval = self.tx_interval
        if interval is None:
            self._tx_deadline = None
        elif self._last_tx is None or self._tx_deadline is None:
            self._tx_deadline = now if self._tx_deadline is None else self._tx_deadline
        else:
            base = self._last_tx if self._tx_base is None else self._tx_base
            self._tx_deadline = max(now, self._tx_due(base, interval))

    def _deadlines(self) -> tuple[float | None, float | None]:
        return self._tx_deadline, self._detect_deadline

    def _with_timers(
        self, actions: list[Action], before: tuple[float | None, float | None]
    ) -> list[Action]:
        if self._tx_deadline != before[0]:
            actions.append(ArmTx(self._tx_deadline))
        if self._detect_deadline != before[1]:
            actions.append(ArmDetect(self._detect_deadline))
        return actions
