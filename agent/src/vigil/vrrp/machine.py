"""The VRRP instance state machine, sans-I/O (RFC 5798 section 6; RFC 3768 for VRRPv2).

Why pure: failover logic is where HA bugs hide, and it has to be testable with a fake clock
(priority ties, preempt delays, priority-0 takeover) without sockets or sleeping. The
machine never reads a clock, never touches the network and never logs: every input carries
``now`` (monotonic seconds), every input returns a list of :class:`Action` for the runtime
to execute in order, and :meth:`VrrpMachine.next_deadline` says when to call
:meth:`VrrpMachine.timer_expired` next.

Shape (STYLE.md): :class:`VrrpState` is an enum, each state change goes through one named
method (``_become_master``, ``_release_to_backup``, ``_enter_backup``, ``_enter_fault``,
``_enter_stopped``), and every change is checked against :data:`TRANSITIONS`, the single
table of which trigger may move the machine from which state to which. A change carries a
human reason and yields a :class:`Transition` action whose ``str()`` is the log line::

    (VI_1) BACKUP -> MASTER: master down timer expired (3.61s)

Where the RFCs leave room the machine follows keepalived 2.2.7:

* every instance starts in BACKUP and becomes master only when its Master_Down timer
  expires, except the address owner (priority 255), which is master at once;
* a master that hears a lower-priority advert (or an equal priority from a lower address)
  answers at once with its own advert, so a confused peer backs off within one round
  trip instead of one advert interval, and asks for the ``lower_prio`` GARP burst
  (:attr:`GarpKind.LOWER_PRIORITY`; the runtime sends it only if ``garp.lower_prio_repeat``
  is set);
* a master that leaves for a higher-priority peer sends no priority-0 advert (the peer is
  already master) and removes its VIPs (but see the step-back notice below);
* ``preempt_delay``: a backup does not preempt a live lower-priority master until
  ``preempt_delay`` seconds after it entered BACKUP (start, recovery from FAULT), or, later
  on, after it first saw that lower-priority master following a master of higher or equal
  priority. A dead master (no adverts) is taken over at Master_Down as always. Unlike
  keepalived, which preempts only at the next Master_Down expiry after the delay, the
  machine preempts the moment the delay has passed.

Beyond keepalived, for a master that was cut off (a partition behind a switch, a stall):
both nodes were master for a while and clients followed the other one's GARP/NA. Whoever
hears the other first after the heal must make the winner announce its VIPs again, or the
clients stay on the loser's MAC until their neighbour entries go stale (seconds):

* a master that leaves for a higher-priority peer first sends one advert at its own
  priority (the *step-back notice*): the winner, which may never have known it had a
  rival, answers that lower priority with its ``lower_prio`` GARP burst;
* a master that hears priority 0 from another address (a rival master leaving) asks for
  that burst too, besides answering with its advert.

Beyond keepalived: fast peer detection (:meth:`VrrpMachine.peer_down`). A backup told by a
BFD session to its master that the master is gone takes over at once, as if Master_Down
had expired; docs/vrrp.md describes the trade-off.

Action order: a state change puts its :class:`Transition` first, then the side effects in
the order they must happen (becoming master: ``SendAdvert``, ``AddVips``,
``SendGratuitous``; leaving it: ``SendAdvert(0)`` where due, or the step-back notice,
then ``RemoveVips``). The
runtime executes them in order and runs notify scripts after the whole list. The address
owner preempts even with ``preempt: false`` (RFC 5798 6.1).

Events are of two kinds. Conditions (adverts, timers, priority changes, ``fault``,
``recover``, ``stop``) are ignored where they do not apply: an advert in FAULT, a
``recover`` while not in FAULT, a timer callback before its deadline. Commands that only
make sense in some states (``start`` twice, ``force_master`` in FAULT) raise
:class:`IllegalTransition`, because calling them there is a bug in the caller.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

PRIORITY_OWNER = 255
PRIORITY_STOP = 0
PRIORITY_MAX_BACKUP = 254
PRIORITY_MIN = 1

# asyncio may run a timer callback up to one clock resolution early; a callback this
# close to the deadline counts as on time rather than as a spurious wake-up.
_TIMER_SLACK = 1e-6

#: A master's adverts go out on a grid of this fraction of its advert interval (see
#: VrrpMachine._next_advert): 250 ms at 1 s, 25 ms at 0.1 s.
ADVERT_GRID = 0.25

#: A master's advert this many intervals late means it was stalled long enough for a
#: backup to take over (it waits 3 intervals after the last advert, which went out one
#: interval before this one was due): the advert is followed by a GARP/NA burst.
STALL_INTERVALS = 2.0

#: A master answers lower-priority and priority-0 adverts at once, but at most this many
#: in a row and then one per advert interval (a token bucket): a real peer sends one per
#: interval and is always answered; a flood is not reflected onto the group 1:1.
ANSWER_BURST = 2
#: ... and it announces its VIPs for a lower priority at most once per this many seconds.
LOWER_PRIO_GARP_HOLDOFF = 1.0


class VrrpState(enum.StrEnum):
    """RFC 5798 states plus FAULT (keepalived) and STOPPED (after a clean shutdown)."""

    INIT = "INIT"
    BACKUP = "BACKUP"
    MASTER = "MASTER"
    FAULT = "FAULT"
    STOPPED = "STOPPED"


class Trigger(enum.StrEnum):
    """Why a transition is requested; the transition table is keyed by these."""

    START = "start"
    MASTER_DOWN = "master_down"  # Master_Down timer expired (incl. priority-0 skew, preempt)
    PREEMPTED = "preempted"  # master heard a higher priority (or equal, higher address)
    FAULT = "fault"
    RECOVER = "recover"
    STOP = "stop"
    FORCE_BACKUP = "force_backup"  # sync group / planned handover
    FORCE_MASTER = "force_master"  # sync group
    RELOAD = "reload"  # params_changed made this node the address owner
    PEER_DOWN = "peer_down"  # fast peer detection: the BFD session to the master went Down


# The single source of truth: (old, new) -> triggers that may cause it.
TRANSITIONS: Mapping[tuple[VrrpState, VrrpState], frozenset[Trigger]] = {
    (VrrpState.INIT, VrrpState.BACKUP): frozenset({Trigger.START}),
    (VrrpState.INIT, VrrpState.MASTER): frozenset({Trigger.START}),
    (VrrpState.INIT, VrrpState.FAULT): frozenset({Trigger.FAULT}),
    (VrrpState.INIT, VrrpState.STOPPED): frozenset({Trigger.STOP}),
    (VrrpState.BACKUP, VrrpState.MASTER): frozenset(
        {Trigger.MASTER_DOWN, Trigger.FORCE_MASTER, Trigger.RELOAD, Trigger.PEER_DOWN}
    ),
    (VrrpState.BACKUP, VrrpState.FAULT): frozenset({Trigger.FAULT}),
    (VrrpState.BACKUP, VrrpState.STOPPED): frozenset({Trigger.STOP}),
    (VrrpState.MASTER, VrrpState.BACKUP): frozenset({Trigger.PREEMPTED, Trigger.FORCE_BACKUP}),
    (VrrpState.MASTER, VrrpState.FAULT): frozenset({Trigger.FAULT}),
    (VrrpState.MASTER, VrrpState.STOPPED): frozenset({Trigger.STOP}),
    (VrrpState.FAULT, VrrpState.BACKUP): frozenset({Trigger.RECOVER}),
    (VrrpState.FAULT, VrrpState.MASTER): frozenset({Trigger.RECOVER}),
    (VrrpState.FAULT, VrrpState.STOPPED): frozenset({Trigger.STOP}),
    (VrrpState.STOPPED, VrrpState.BACKUP): frozenset({Trigger.START}),
    (VrrpState.STOPPED, VrrpState.MASTER): frozenset({Trigger.START}),
}


def is_allowed(old: VrrpState, new: VrrpState, trigger: Trigger) -> bool:
    """Whether the table allows ``trigger`` to move a machine from ``old`` to ``new``."""
    return trigger in TRANSITIONS.get((old, new), frozenset())


class IllegalTransition(RuntimeError):
    """A transition the table does not allow was requested: a bug in the caller."""


class MachineParamsError(ValueError):
    """Invalid :class:`MachineParams`; the message names the field and the fix."""


class GarpKind(enum.StrEnum):
    """Which gratuitous ARP / unsolicited NA schedule the runtime should run."""

    MASTER = "master"  # became master: garp master_repeat now, again after master_delay
    LOWER_PRIORITY = "lower_priority"  # master heard a lower priority: garp lower_prio_*
    STALLED = "stalled"  # a master's advert went out so late a backup may have taken over
    REANNOUNCE = "reannounce"  # a master learns a backup may have taken over unheard


# ---------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class SendAdvert:
    """Send one advertisement now with this priority (0: we are releasing mastership)."""

    priority: int


@dataclass(frozen=True, slots=True)
class AddVips:
    """Add the instance's VIPs, excluded VIPs and routes (we became master)."""


@dataclass(frozen=True, slots=True)
class RemoveVips:
    """Remove the instance's VIPs, excluded VIPs and routes (we stopped being master)."""


@dataclass(frozen=True, slots=True)
class SendGratuitous:
    """Announce the VIPs (GARP / unsolicited NA); follows the advert and :class:`AddVips`.

    ``late`` is how late the advert before it was (seconds), for :attr:`GarpKind.STALLED`.
    """

    kind: GarpKind = GarpKind.MASTER
    late: float = 0.0


@dataclass(frozen=True, slots=True)
class LearnedInterval:
    """VRRPv3: the master advertises a different interval, adopted as Master_Adver_Interval."""

    interval: float
    previous: float


@dataclass(frozen=True, slots=True)
class Transition:
    """A state change; first in its action list. ``str()`` is the one log line for it."""

    instance: str
    old: VrrpState
    new: VrrpState
    trigger: Trigger
    reason: str
    time: float

    def __str__(self) -> str:
        return f"({self.instance}) {self.old} -> {self.new}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "from": str(self.old),
            "to": str(self.new),
            "trigger": str(self.trigger),
            "reason": self.reason,
        }


Action = SendAdvert | AddVips | RemoveVips | SendGratuitous | LearnedInterval | Transition


# ---------------------------------------------------------------------------- params


def _coerce_address(value: object, what: str) -> IPAddress:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    if isinstance(value, str):
        try:
            return ipaddress.ip_address(value.split("%", 1)[0])
        except ValueError:
            pass
    raise MachineParamsError(f"{what}: {value!r} is not an IPv4 or IPv6 address")


@dataclass(frozen=True)
class MachineParams:
    """What the machine needs from an instance's config; independent of ``vigil.config``.

    ``advert_interval`` and ``preempt_delay`` are seconds. ``primary_address`` is this
    node's advert source address, compared with a peer's on equal priorities; ``None``
    (not known yet) makes us lose every tie, which can never give two masters. An address
    owner always runs at priority 255, whatever ``base_priority`` says.
    """

    name: str
    vrid: int
    version: int
    base_priority: int
    advert_interval: float
    preempt: bool = True
    preempt_delay: float = 0.0
    address_owner: bool = False
    primary_address: IPAddress | str | None = None

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise MachineParamsError(
                "; ".join(f"MachineParams({self.name!r}).{p}" for p in problems)
            )
        if self.primary_address is not None:
            addr = _coerce_address(self.primary_address, "primary_address")
            object.__setattr__(self, "primary_address", addr)

    def _problems(self) -> list[str]:
        out: list[str] = []
        if not self.name:
            out.append("name: must not be empty")
        if not isinstance(self.vrid, int) or not 1 <= self.vrid <= 255:
            out.append(f"vrid: must be an integer 1..255, got {self.vrid!r}")
        if self.version not in (2, 3):
            out.append(f"version: must be 2 or 3, got {self.version!r}")
        if not isinstance(self.base_priority, int) or not 1 <= self.base_priority <= 255:
            out.append(f"base_priority: must be an integer 1..255, got {self.base_priority!r}")
        elif self.base_priority == PRIORITY_OWNER and not self.address_owner:
            out.append("base_priority: 255 is reserved for the address owner; set 254 or less")
        out.extend(self._interval_problems())
        delay = self.preempt_delay
        if not isinstance(delay, int | float) or not math.isfinite(delay) or delay < 0:
            out.append(f"preempt_delay: must be seconds >= 0, got {delay!r}")
        if self.primary_address is not None:
            try:
                _coerce_address(self.primary_address, "primary_address")
            except MachineParamsError as exc:
                out.append(str(exc))
        return out

    def _interval_problems(self) -> list[str]:
        interval = self.advert_interval
        if not isinstance(interval, int | float) or not math.isfinite(interval):
            return [f"advert_interval: must be a number of seconds, got {interval!r}"]
        if self.version == 2 and (interval != int(interval) or not 1 <= interval <= 255):
            return [f"advert_interval: VRRPv2 needs whole seconds 1..255, got {interval!r}"]
        if self.version == 3:
            centis = round(interval * 100)
            if not 1 <= centis <= 4095 or abs(centis - interval * 100) > 1e-6:
                return [
                    "advert_interval: VRRPv3 needs 0.01..40.95 s in steps of 0.01, "
                    f"got {interval!r}"
                ]
        return []

    @property
    def priority(self) -> int:
        """The configured priority as advertised: 255 for the address owner."""
        return PRIORITY_OWNER if self.address_owner else self.base_priority

    @property
    def address(self) -> IPAddress | None:
        """``primary_address`` as an address object (it is coerced on construction)."""
        addr = self.primary_address
        assert addr is None or not isinstance(addr, str)
        return addr


# ---------------------------------------------------------------------------- counters


@dataclass
class Counters:
    """Per-instance protocol counters, exported by the API and metrics."""

    adverts_sent: int = 0
    adverts_received: int = 0
    became_master: int = 0
    released_master: int = 0
    priority_zero_sent: int = 0
    priority_zero_received: int = 0

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class _Timer(enum.Enum):
    MASTER_DOWN = "master_down"
    ADVERT = "advert"


def _secs(value: float) -> str:
    return f"{value:.2f}s"


# ---------------------------------------------------------------------------- machine


@dataclass
class _MasterInfo:
    """What a backup knows about the current master (for the API and for preemption)."""

    address: IPAddress | None = None
    priority: int | None = None


@dataclass
class _DownTimer:
    """The armed Master_Down timer and what its expiry will mean, for the reason text."""

    span: float = 0.0
    reason: str = ""


class VrrpMachine:
    """One VRRP instance's protocol state. See the module docstring for the contract."""

    def __init__(self, params: MachineParams) -> None:
        self._params = params
        self._state = VrrpState.INIT
        self._effective = params.priority
        self._master_adver_interval = float(params.advert_interval)
        self._deadline: float | None = None
        self._timer: _Timer | None = None
        self._down = _DownTimer()
        self._master = _MasterInfo()
        self._preempt_time: float | None = None
        self._hold_until: float | None = None
        self._fault_reason: str | None = None
        self._last_transition: Transition | None = None
        self.counters = Counters()
        # Rate limit of immediate answers (see ANSWER_BURST) and lower-priority GARPs.
        self._answer_tokens = float(ANSWER_BURST)
        self._answer_at: float | None = None
        self._lower_garp_at: float | None = None
        #: answers (adverts and GARP/NA bursts) left out by the rate limit
        self.answers_suppressed = 0

    # ------------------------------------------------------------------ read side

    @property
    def params(self) -> MachineParams:
        return self._params

    @property
    def name(self) -> str:
        return self._params.name

    @property
    def state(self) -> VrrpState:
        return self._state

    @property
    def base_priority(self) -> int:
        return self._params.priority

    @property
    def effective_priority(self) -> int:
        return self._effective

    @property
    def master_address(self) -> IPAddress | None:
        """The current master as this node knows it (our own address while MASTER)."""
        return self._master.address

    @property
    def master_priority(self) -> int | None:
        return self._master.priority

    @property
    def learned_interval(self) -> float:
        """Master_Adver_Interval: the master's interval (v3), else our own."""
        return self._master_adver_interval

    @property
    def skew_time(self) -> float:
        """RFC 5798 6.1 Skew_Time for our effective priority (v2: RFC 3768 seconds form)."""
        weight = 256 - self._effective
        if self._params.version == 2:
            return weight / 256
        return weight * self._master_adver_interval / 256

    @property
    def master_down_interval(self) -> float:
        """3 x Master_Adver_Interval + Skew_Time."""
        return 3 * self._master_adver_interval + self.skew_time

    @property
    def last_transition(self) -> Transition | None:
        return self._last_transition

    @property
    def fault_reason(self) -> str | None:
        """Why the machine is in FAULT (the latest reason given), else ``None``."""
        return self._fault_reason if self._state is VrrpState.FAULT else None

    @property
    def preempt_hold_until(self) -> float | None:
        """While ``now`` is before this, a backup does not preempt (see force_backup)."""
        return self._hold_until

    @property
    def preempt_time(self) -> float | None:
        """With ``preempt_delay``: when preempting a live lower-priority master is allowed."""
        return self._preempt_time

    def next_deadline(self) -> float | None:
        """When the runtime must call :meth:`timer_expired` next (``None``: no timer)."""
        return self._deadline

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able snapshot for the API (times are the machine's monotonic seconds)."""
        last = self._last_transition
        return {
            "name": self.name,
            "vrid": self._params.vrid,
            "version": self._params.version,
            "state": str(self._state),
            "base_priority": self.base_priority,
            "effective_priority": self._effective,
            "master_address": None if self._master.address is None else str(self._master.address),
            "master_priority": self._master.priority,
            "advert_interval": self._params.advert_interval,
            "learned_interval": self._master_adver_interval,
            "master_down_interval": self.master_down_interval,
            "skew_time": self.skew_time,
            "preempt": self._params.preempt,
            "preempt_delay": self._params.preempt_delay,
            "preempt_hold_until": self._hold_until,
            "fault_reason": self.fault_reason,
            "next_deadline": self._deadline,
            "last_transition": None if last is None else last.to_dict(),
            "counters": self.counters.to_dict(),
        }

    # ------------------------------------------------------------------ inputs

    def start(self, now: float) -> list[Action]:
        """Begin: the address owner becomes MASTER at once, anyone else BACKUP."""
        target = VrrpState.MASTER if self._params.address_owner else VrrpState.BACKUP
        self._require(target, Trigger.START)
        self._reset_run_state()
        if self._params.address_owner:
            return self._become_master(now, Trigger.START, "address owner (priority 255)")
        mdi = self.master_down_interval
        return self._enter_backup(now, Trigger.START, f"started; master down in {_secs(mdi)}")

    def advert_received(
        self,
        now: float,
        src_address: IPAddress | str,
        priority: int,
        adver_int_seconds: float,
    ) -> list[Action]:
        """An advert for this VRID that the codec accepted (TTL, auth, checksum, ...)."""
        src = self._check_advert(src_address, priority, adver_int_seconds)
        self.counters.adverts_received += 1
        if priority == PRIORITY_STOP:
            self.counters.priority_zero_received += 1
        if self._state is VrrpState.BACKUP:
            return self._backup_rx(now, src, priority, adver_int_seconds)
        if self._state is VrrpState.MASTER:
            return self._master_rx(now, src, priority, adver_int_seconds)
        return []

    def timer_expired(self, now: float) -> list[Action]:
        """The runtime's timer for :meth:`next_deadline` fired; early calls do nothing.

        A master whose advert is due more than STALL_INTERVALS advert intervals late (the
        process was stopped or starved) may have been taken over meanwhile: the backup
        announced the VIPs with its own MAC and steps back on this advert, but clients
        keep sending to it. So the advert is followed by a :attr:`GarpKind.STALLED`
        announcement, which takes the clients back at once.
        """
        if self._deadline is None or now + _TIMER_SLACK < self._deadline:
            return []
        if self._timer is _Timer.ADVERT:
            late = now - self._deadline
            self._arm(_Timer.ADVERT, self._next_advert(now))
            actions: list[Action] = [self._advert(self._effective)]
            if late > STALL_INTERVALS * self._params.advert_interval:
                actions.append(SendGratuitous(GarpKind.STALLED, late=late))
            return actions
        return self._become_master(now, Trigger.MASTER_DOWN, self._down.reason)

    def own_address_received(self, now: float, priority: int) -> list[Action]:
        """An advert for our VRID carrying our own source address (and otherwise valid).

        We never hear our own adverts (multicast loopback is off), so someone spoofs us
        or has our address. While MASTER, a priority-0 one would make every backup take
        over after its Skew_Time: it is answered at once like any priority 0 (RFC 5798
        6.4.3), so the backups hear a live master first and nothing moves. Anything else
        changes nothing.
        """
        if self._state is not VrrpState.MASTER or priority != PRIORITY_STOP:
            return []
        if not self._may_answer(now):
            return []
        self._arm(_Timer.ADVERT, self._next_advert(now))
        return [self._advert(self._effective)]

    def set_effective_priority(self, now: float, priority: int) -> list[Action]:
        """Trackers / runtime overrides set the priority we advertise and compare with.

        Clamped to 1..254 (255 is the owner's alone; an owner stays at 255 and ignores
        this). A master advertises the new value with its next advert; a backup uses it
        for its next preemption decision and Skew_Time.
        """
        if not isinstance(priority, int):
            raise TypeError(f"priority: must be an int, got {priority!r}")
        if self._params.address_owner:
            return []
        self._effective = min(PRIORITY_MAX_BACKUP, max(PRIORITY_MIN, priority))
        if self._state is VrrpState.MASTER:
            self._master.priority = self._effective
        return []

    priority_changed = set_effective_priority

    def fault(self, now: float, reason: str) -> list[Action]:
        """Enter FAULT (interface down, failed tracker); a master releases first."""
        if self._state is VrrpState.STOPPED:
            return []
        if self._state is VrrpState.FAULT:
            self._fault_reason = reason
            return []
        return self._enter_fault(now, reason)

    def recover(self, now: float, reason: str) -> list[Action]:
        """Leave FAULT: to BACKUP, or to MASTER at once for the address owner."""
        if self._state is not VrrpState.FAULT:
            return []
        self._reset_run_state()
        if self._params.address_owner:
            return self._become_master(now, Trigger.RECOVER, reason)
        return self._enter_backup(now, Trigger.RECOVER, reason)

    def stop(self, now: float, reason: str = "stopped") -> list[Action]:
        """Shut down cleanly: a master sends priority 0 and removes its VIPs."""
        if self._state is VrrpState.STOPPED:
            return []
        return self._enter_stopped(now, reason)

    def force_backup(
        self,
        now: float,
        reason: str,
        *,
        release: bool = True,
        hold_until: float | None = None,
    ) -> list[Action]:
        """Leave MASTER on request (sync group follows a member, planned handover).

        ``release`` sends a priority-0 advert so the peer takes over after its Skew_Time
        instead of its Master_Down_Interval. ``hold_until`` stops this node from
        preempting until then (``math.inf``: until :meth:`release_hold`), so a higher
        priority node can hand over without taking the VIPs straight back; it never stops
        us from taking over from a dead master. In states other than MASTER only the hold
        is recorded.
        """
        if hold_until is not None:
            self._hold_until = hold_until
        if self._state is not VrrpState.MASTER:
            return []
        return self._release_to_backup(
            now, Trigger.FORCE_BACKUP, reason, release=release, master=_MasterInfo()
        )

    def release_hold(self, now: float) -> list[Action]:
        """End a preemption hold set by :meth:`force_backup`."""
        self._hold_until = None
        return []

    def force_master(self, now: float, reason: str) -> list[Action]:
        """BACKUP -> MASTER on request (sync group); a no-op while MASTER."""
        if self._state is VrrpState.MASTER:
            return []
        self._require(VrrpState.MASTER, Trigger.FORCE_MASTER)
        return self._become_master(now, Trigger.FORCE_MASTER, reason)

    def peer_down(
        self, now: float, reason: str, *, peer: IPAddress | str | None = None
    ) -> list[Action]:
        """Fast peer detection: the master is gone (its BFD session went Down); take over.

        BACKUP -> MASTER at once instead of at Master_Down, like a Master_Down expiry (a
        preemption hold never stops a takeover from a dead master). Ignored outside
        BACKUP, before any master was heard (Master_Down decides then), and when ``peer``
        is given and the master heard last is another address (someone else is master
        now). If only the path died and the old master lives, it hears our adverts at a
        lower priority, answers with its own at once, and we go back to BACKUP on it.
        """
        if self._state is not VrrpState.BACKUP or self._master.address is None:
            return []
        if peer is not None and ipaddress.ip_address(peer) != self._master.address:
            return []
        return self._become_master(now, Trigger.PEER_DOWN, reason)

    def params_changed(self, now: float, new: MachineParams) -> list[Action]:
        """Reload in place; mastership does not change unless the new params demand it.

        A new priority keeps the tracker offset (effective - base) and is advertised with
        the next advert; a master keeps its VIPs even if its priority fell below a peer's
        (the peer preempts if it is configured to). A new interval applies to the next
        advert and never postpones a pending timer. Becoming the address owner while
        BACKUP takes over at once. vrid and version identify the instance on the wire: a
        change there needs a new machine.
        """
        old = self._params
        for attr in ("vrid", "version"):
            if getattr(new, attr) != getattr(old, attr):
                raise MachineParamsError(
                    f"MachineParams({old.name!r}).{attr}: changed from {getattr(old, attr)} "
                    f"to {getattr(new, attr)}; replace the instance instead of reloading it"
                )
        offset = 0 if old.address_owner else self._effective - old.base_priority
        self._params = new
        if new.address_owner:
            self._effective = PRIORITY_OWNER
        else:
            self._effective = min(PRIORITY_MAX_BACKUP, max(PRIORITY_MIN, new.priority + offset))
        self._apply_interval_change(now, old)
        self._apply_preempt_delay_change(old)
        if self._state is VrrpState.MASTER:
            self._master.address = new.address
            self._master.priority = self._effective
        if new.address_owner and self._state is VrrpState.BACKUP:
            return self._become_master(now, Trigger.RELOAD, "reload made this node address owner")
        return []

    def interval_changed(self, now: float, advert_interval: float) -> list[Action]:
        """Shorthand for :meth:`params_changed` with only a new advert interval."""
        return self.params_changed(
            now, dataclasses.replace(self._params, advert_interval=advert_interval)
        )

    # ------------------------------------------------------------------ rules

    def _backup_rx(
        self, now: float, src: IPAddress, priority: int, adver_int: float
    ) -> list[Action]:
        """RFC 5798 6.4.2 with keepalived's preempt_delay and our preemption hold."""
        if priority == PRIORITY_STOP:
            if self._master.address in (None, src):
                self._master.address, self._master.priority = src, PRIORITY_STOP
            skew = self.skew_time
            self._arm_down(now, skew, f"master {src} sent priority 0; took over after skew time")
            return []
        held = self._hold_until is not None and now < self._hold_until
        delay = self._params.preempt_delay
        lower = priority < self._effective
        in_delay = delay > 0 and (self._preempt_time is None or now < self._preempt_time)
        preempt = self._preempts
        self._master.address, self._master.priority = src, priority
        if preempt and lower and not held and not in_delay:
            # Discard: the Master_Down timer keeps running and we preempt when it fires.
            self._down.reason = (
                f"preempted lower-priority master {src} (priority {priority}, ours "
                f"{self._effective}) after master down timer ({_secs(self._down.span)})"
            )
            return []
        actions: list[Action] = []
        if self._params.version == 3:
            actions.extend(self._learn_interval(adver_int))
        mdi = self.master_down_interval
        self._arm_down(now, mdi, "master down timer expired")
        if preempt and delay > 0 and not held:
            if not lower:
                self._preempt_time = None
            else:
                if self._preempt_time is None:
                    self._preempt_time = now + delay
                if self._preempt_time < now + mdi:
                    self._deadline = self._preempt_time
                    self._down.reason = (
                        f"preempt delay ({_secs(delay)}) passed; preempted lower-priority "
                        f"master {src} (priority {priority}, ours {self._effective})"
                    )
        return actions

    def _master_rx(
        self, now: float, src: IPAddress, priority: int, adver_int: float
    ) -> list[Action]:
        """RFC 5798 6.4.3, plus keepalived's immediate answer to a lower priority."""
        mine = self._effective
        if priority == PRIORITY_STOP:
            answer: list[Action] = []
            if self._may_answer(now):
                self._arm(_Timer.ADVERT, self._next_advert(now))
                answer.append(self._advert(mine))
            if src != self._params.address:
                # A rival master leaves: clients it drew away must come back to us.
                answer.extend(self._lower_prio_garp(now))
            return answer
        higher_addr = self._peer_address_higher(src)
        if priority > mine or (priority == mine and higher_addr):
            actions: list[Action] = []
            if self._params.version == 3:
                actions.extend(self._learn_interval(adver_int))
            if priority > mine:
                reason = f"higher priority advert from {src} ({priority}, ours {mine})"
            else:
                reason = f"equal priority {priority} from higher address {src}"
            winner = _MasterInfo(src, priority)
            released = self._release_to_backup(
                now, Trigger.PREEMPTED, reason, release=False, master=winner
            )
            # The step-back notice (module docstring): right after the transition, before
            # the VIPs go. The winner answers this lower priority with a GARP/NA burst.
            released.insert(1, self._advert(mine))
            return released + actions
        if priority == mine and src == self._params.address:
            return []  # our own address: a reflection or a duplicate address; nothing to win
        answer = []
        if self._may_answer(now):
            answer.append(self._advert(mine))
        return answer + self._lower_prio_garp(now)

    def _lower_prio_garp(self, now: float) -> list[Action]:
        """The ``lower_prio`` GARP/NA burst, at most once per LOWER_PRIO_GARP_HOLDOFF."""
        last = self._lower_garp_at
        if last is None or now - last >= LOWER_PRIO_GARP_HOLDOFF:
            self._lower_garp_at = now
            return [SendGratuitous(GarpKind.LOWER_PRIORITY)]
        self.answers_suppressed += 1
        return []

    def _may_answer(self, now: float) -> bool:
        """Take a token for an immediate answer (ANSWER_BURST, refilled one per interval)."""
        if self._answer_at is not None:
            refill = max(0.0, now - self._answer_at) / self._params.advert_interval
            self._answer_tokens = min(float(ANSWER_BURST), self._answer_tokens + refill)
        self._answer_at = now
        if self._answer_tokens < 1.0:
            self.answers_suppressed += 1
            return False
        self._answer_tokens -= 1.0
        return True

    @property
    def _preempts(self) -> bool:
        """RFC 5798 6.1: the address owner preempts whatever Preempt_Mode says."""
        return self._params.preempt or self._params.address_owner

    def _peer_address_higher(self, src: IPAddress) -> bool:
        own = self._params.address
        if own is None:
            return True  # unknown own address: yield on ties, never risk two masters
        return int(src) > int(own)

    def _learn_interval(self, adver_int: float) -> list[Action]:
        previous = self._master_adver_interval
        if adver_int == previous:
            return []
        self._master_adver_interval = float(adver_int)
        return [LearnedInterval(float(adver_int), previous)]

    def _apply_interval_change(self, now: float, old: MachineParams) -> None:
        new_interval = float(self._params.advert_interval)
        if new_interval == old.advert_interval:
            return
        learned = self._params.version == 3 and self._master.address is not None
        if self._state is not VrrpState.BACKUP or not learned:
            self._master_adver_interval = new_interval
        if self._deadline is None:
            return
        if self._timer is _Timer.ADVERT:
            self._deadline = min(self._deadline, now + new_interval)
        else:
            self._deadline = min(self._deadline, now + self.master_down_interval)

    def _apply_preempt_delay_change(self, old: MachineParams) -> None:
        new_delay = self._params.preempt_delay
        if new_delay == 0:
            self._preempt_time = None
        elif self._preempt_time is not None:
            self._preempt_time += new_delay - old.preempt_delay

    def _check_advert(
        self, src_address: IPAddress | str, priority: int, adver_int: float
    ) -> IPAddress:
        try:
            src = _coerce_address(src_address, "src_address")
        except MachineParamsError as exc:
            raise ValueError(str(exc)) from None
        own = self._params.address
        if own is not None and own.version != src.version:
            raise ValueError(
                f"src_address: IPv{src.version} {src} for an IPv{own.version} instance "
                f"({self.name}); the codec must demultiplex by family"
            )
        if not isinstance(priority, int) or not 0 <= priority <= 255:
            raise ValueError(f"priority: must be an integer 0..255, got {priority!r}")
        if not isinstance(adver_int, int | float) or not adver_int > 0:
            raise ValueError(f"adver_int_seconds: must be > 0, got {adver_int!r}")
        return src

    # ------------------------------------------------------------------ transitions

    def _become_master(self, now: float, trigger: Trigger, reason: str) -> list[Action]:
        """-> MASTER: advert first (the old master drops its VIPs), then VIPs, then GARP."""
        transition = self._transition(now, VrrpState.MASTER, trigger, reason)
        self.counters.became_master += 1
        self._master.address, self._master.priority = self._params.address, self._effective
        self._master_adver_interval = float(self._params.advert_interval)
        self._preempt_time = None
        self._arm(_Timer.ADVERT, self._next_advert(now))
        return [
            transition,
            self._advert(self._effective),
            AddVips(),
            SendGratuitous(GarpKind.MASTER),
        ]

    def _release_to_backup(
        self, now: float, trigger: Trigger, reason: str, *, release: bool, master: _MasterInfo
    ) -> list[Action]:
        """MASTER -> BACKUP: optional priority-0 advert, drop VIPs, arm Master_Down.

        ``master`` is who we now believe is master: the winner of an election, or nobody
        yet when we stepped down on request.
        """
        transition = self._transition(now, VrrpState.BACKUP, trigger, reason)
        actions: list[Action] = [transition]
        if release:
            actions.append(self._advert(PRIORITY_STOP))
        actions.append(RemoveVips())
        self.counters.released_master += 1
        self._preempt_time = None
        self._master = master
        self._arm_down(now, self.master_down_interval, "master down timer expired")
        return actions

    def _enter_backup(self, now: float, trigger: Trigger, reason: str) -> list[Action]:
        """INIT/STOPPED/FAULT -> BACKUP with Master_Down armed and the preempt delay started."""
        transition = self._transition(now, VrrpState.BACKUP, trigger, reason)
        delay = self._params.preempt_delay
        self._preempt_time = now + delay if delay > 0 else None
        self._arm_down(now, self.master_down_interval, "master down timer expired")
        return [transition]

    def _enter_fault(self, now: float, reason: str) -> list[Action]:
        """-> FAULT: a master sends priority 0 before dropping its VIPs; timers stop."""
        was_master = self._state is VrrpState.MASTER
        actions: list[Action] = [self._transition(now, VrrpState.FAULT, Trigger.FAULT, reason)]
        if was_master:
            actions += [self._advert(PRIORITY_STOP), RemoveVips()]
            self.counters.released_master += 1
        self._fault_reason = reason
        self._leave_protocol()
        return actions

    def _enter_stopped(self, now: float, reason: str) -> list[Action]:
        """-> STOPPED: a master sends priority 0 before dropping its VIPs; timers stop."""
        was_master = self._state is VrrpState.MASTER
        actions: list[Action] = [self._transition(now, VrrpState.STOPPED, Trigger.STOP, reason)]
        if was_master:
            actions += [self._advert(PRIORITY_STOP), RemoveVips()]
            self.counters.released_master += 1
        self._leave_protocol()
        return actions

    def _transition(self, now: float, new: VrrpState, trigger: Trigger, reason: str) -> Transition:
        self._require(new, trigger)
        record = Transition(self.name, self._state, new, trigger, reason, now)
        self._state = new
        self._last_transition = record
        return record

    def _require(self, new: VrrpState, trigger: Trigger) -> None:
        if is_allowed(self._state, new, trigger):
            return
        sources = sorted(
            str(old) for (old, _), triggers in TRANSITIONS.items() if trigger in triggers
        )
        raise IllegalTransition(
            f"({self.name}) {self._state} -> {new} on {trigger} is not allowed; "
            f"{trigger} applies in: {', '.join(dict.fromkeys(sources))}"
        )

    # ------------------------------------------------------------------ helpers

    def _advert(self, priority: int) -> SendAdvert:
        self.counters.adverts_sent += 1
        if priority == PRIORITY_STOP:
            self.counters.priority_zero_sent += 1
        return SendAdvert(priority)

    def _next_advert(self, now: float) -> float:
        """When a master sends its next advert: one Advertisement_Interval from ``now``,
        moved onto the grid of ADVERT_GRID intervals (by at most half a grid step).

        Instances with the same interval then send in at most four instants per interval
        (those that became master together, in one or two), so a node with many instances
        wakes a few times per interval to send them all, and its peers wake a few times to
        read them, instead of once per instance. A late timer does not move the grid. Only
        the first interval after the master starts advertising is shorter or longer, by at
        most 12.5 % (a backup waits three intervals and more before it takes over).
        """
        interval = self._params.advert_interval
        step = interval * ADVERT_GRID
        return round((now + interval) / step) * step

    def _arm(self, timer: _Timer, deadline: float) -> None:
        self._timer, self._deadline = timer, deadline

    def _arm_down(self, now: float, span: float, reason: str) -> None:
        self._arm(_Timer.MASTER_DOWN, now + span)
        self._down = _DownTimer(span, f"{reason} ({_secs(span)})")

    def _leave_protocol(self) -> None:
        self._timer, self._deadline = None, None
        self._master = _MasterInfo()
        self._preempt_time = None

    def _reset_run_state(self) -> None:
        """Forget the previous run's master and learned interval (start, recovery)."""
        self._master = _MasterInfo()
        self._master_adver_interval = float(self._params.advert_interval)
        if self._state is not VrrpState.FAULT:
            self._hold_until = None


__all__ = [
    "PRIORITY_OWNER",
    "PRIORITY_STOP",
    "TRANSITIONS",
    "Action",
    "AddVips",
    "Counters",
    "GarpKind",
    "IPAddress",
    "IllegalTransition",
    "LearnedInterval",
    "MachineParams",
    "MachineParamsError",
    "RemoveVips",
    "SendAdvert",
    "SendGratuitous",
    "Transition",
    "Trigger",
    "VrrpMachine",
    "VrrpState",
    "is_allowed",
]
