"""vigild's entry point: put the last start's IPVS table back first, then start the agent.

Before its first IPVS write, a start of vigild imports the agent and reads and validates
its config: with 1000 virtual servers of 10 real servers each, 2 s on a host and about
50 s under the IPVS lab's QEMU TCG, where keepalived has its whole table in 5 s. Yet the
table a start programs before any check has run is the same every time the config file
and the drained real servers are the same (every real server is assumed alive, ``alpha``
ones dead). So once a start or a reload has settled, the IPVS subsystem writes that table
to ``STATE_DIR/ipvs-start-plan.bin`` as the generic netlink requests that build it
(:mod:`vigil.ipvs.startplan`), keyed by the config file's digest, the drain file's and
vigil's version. ``vigild --check`` writes the same for the config it accepts, to
``ipvs-start-plan.checked.bin``: a config validated on the director before it is
installed (as the collection does with every config it deploys) starts from a plan the
first time too. The next start with the same inputs sends them from here, before
anything else is imported: the interpreter, this module and the kernel's work.

The agent then starts as ever; it finds those services in the kernel and adopts them (the
``ipvs_adopted`` event), and corrects whatever does not match its config. What this step
may do is narrow:

- it runs only for a plain ``vigild`` start (not ``--check``, ``--cleanup`` or options it
  does not know) whose state dir is the one on the command line or the default, and only
  when the plan's key matches: any difference and it does nothing;
- it takes the state dir's lock first (a second vigild for the same dir does nothing
  here and then refuses to start, as before) and hands it on to the agent;
- it journals the services before it adds them (``vigild --cleanup`` removes them if the
  process dies before the agent runs);
- it never touches a service that is already in the kernel: a service whose add fails
  (``EEXIST``: a previous run's table, or another tool's) gets none of its real servers
  from here, and the agent adopts or corrects it;
- if the agent then refuses to start (its config no longer validates on this host, the
  state dir changed), the services added here are deleted again (:meth:`FastStart.undo`).

Until the agent's checks run, the real servers in the table are the ones assumed alive,
exactly as in the first table of a start without a plan (and as keepalived does).

This module imports nothing of the agent but :mod:`vigil.statedir` and
:mod:`vigil.journalfile`: under TCG every import is a fraction of a second.
"""

from __future__ import annotations

import _socket as socket  # (socket.py would import enum and selectors: see below)
import errno
import itertools
import os
import select
import struct
import sys
import time
from collections.abc import Iterable, Iterator, Sequence

from vigil import __version__

# The built-in sha256, not hashlib's: hashlib loads OpenSSL's libcrypto, about half a
# second under the IPVS lab's emulation. Both give the same digest.
try:
    from _sha256 import sha256  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover (Python 3.12 renamed it)
    try:
        from _sha2 import sha256  # type: ignore[import-not-found,no-redef,unused-ignore]
    except ImportError:
        from hashlib import sha256  # type: ignore[assignment,unused-ignore]
from vigil.journalfile import EMPTY, path_of, read_entries, render, write_entries, write_raw
from vigil.statedir import DEFAULT_CONFIG, DEFAULT_STATE_DIR, StateDirError, StateDirLock

__all__ = [
    "CHECKED_PLAN_FILE",
    "PLAN_FILE",
    "FastStart",
    "LoadedPlan",
    "Plan",
    "PlanService",
    "family_id",
    "main",
    "plan_key",
    "read_plan",
]

PLAN_FILE = "ipvs-start-plan.bin"
#: the plan of the last config ``vigild --check`` accepted (the collection checks every
#: config it deploys), kept apart so that checking a config that is then not installed
#: leaves the running config's plan alone
CHECKED_PLAN_FILE = "ipvs-start-plan.checked.bin"
#: where a start looks, in this order
PLAN_FILES = (PLAN_FILE, CHECKED_PLAN_FILE)
MAGIC = b"vigil-start-plan 2\n"
#: the config is refused above this size (vigil.config.loader); read no more of it here
MAX_CONFIG_BYTES = 8 << 20

NETLINK_GENERIC = 16
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
_HDR = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_NLA = struct.Struct("=HH")
#: one send: the kernel handles each message in turn within the call, and answers only
#: the ones it refuses (no NLM_F_ACK), so a batch's errors are queued when send returns
BATCH_BYTES = 32 << 10
BATCH_MESSAGES = 256
_RCVBUF = 4 << 20

# Options of vigild (vigil.daemon.build_parser) that take a value; a start with any other
# argument than these and --config / --state-dir is left to the agent alone.
_VALUE_OPTIONS = frozenset({"--socket", "--log-level", "--api-allow-uid", "--metrics-listen"})


# --------------------------------------------------------------------------- the plan


def plan_key(config_digest: str, inputs: Sequence[bytes | None]) -> str:
    """The key a plan is valid for: the config file's sha256 (hex), the contents of the
    state-dir files it depends on (None: no such file) and this vigil's version."""
    h = sha256(f"{MAGIC.decode().strip()} vigil {__version__}\0".encode())
    h.update(config_digest.encode())
    for data in inputs:
        h.update(b"\0-" if data is None else b"\0+" + sha256(data).digest())
    return h.hexdigest()


# (plain classes: a dataclass costs milliseconds to build at import, seconds under TCG)


class PlanService:
    """One service of a plan being written: its journal entry and its requests (generic
    netlink payloads: the command's header and attributes, without the netlink header)."""

    __slots__ = ("add", "delete", "dests", "journal_entry", "journal_key")

    def __init__(
        self, journal_key: str, journal_entry: dict[str, object], add: bytes, delete: bytes,
        dests: list[bytes],
    ) -> None:  # fmt: skip
        self.journal_key = journal_key
        self.journal_entry = journal_entry
        self.add = add
        self.delete = delete
        self.dests = dests


class Plan:
    """A plan being written (:mod:`vigil.ipvs.startplan`); :meth:`encode` is the file.

    The file holds the requests as the netlink messages the kernel gets (with headers for
    the family id the writer's kernel had, which a restart without reboot still has), cut
    into the batches they are sent in, and the journal's text for those services, so the
    start that reads it does next to no work of its own: no JSON, no message built."""

    __slots__ = ("family", "family_id", "inputs", "journal", "key", "services")

    def __init__(
        self, key: str, family: str, journal: str, inputs: list[str],
        services: list[PlanService], family_id: int = 0,
    ) -> None:  # fmt: skip
        self.key = key
        self.family = family  # the generic netlink family of the requests
        self.family_id = family_id  # its id in the writer's kernel (0: not known)
        self.journal = journal  # the journal namespace the services are recorded in
        self.inputs = inputs  # state-dir files the key covers (besides the config)
        self.services = services

    def encode(self) -> bytes:
        n = len(self.services)
        adds = [_message(self.family_id, i + 1, s.add) for i, s in enumerate(self.services)]
        seq, dests = n + 1, []
        for s in self.services:
            for payload in s.dests:
                dests.append(_message(self.family_id, seq, payload))
                seq += 1
        journal = render({s.journal_key: s.journal_entry for s in self.services})
        adds_b, dests_b = b"".join(adds), b"".join(dests)
        deletes = b"".join(s.delete for s in self.services)
        lines = [
            f"key {self.key}",
            f"family {self.family} {self.family_id}",
            f"journal {self.journal} {len(journal)}",
            "inputs " + " ".join(self.inputs),
            f"services {n} {len(adds_b)} {len(dests_b)} {len(deletes)}",
            "batches " + _spans_text(adds) + " " + _spans_text(dests),
        ]
        for s in self.services:
            size = sum(_HDR.size + len(d) for d in s.dests)
            lines.append(f"{s.journal_key} {len(s.dests)} {size} {len(s.delete)}")
        head = ("\n".join(lines) + "\nend\n").encode()
        return MAGIC + head + journal + adds_b + dests_b + deletes


class LoadedPlan:
    """A plan as read for a start: its header parsed, its requests left where they are."""

    __slots__ = (
        "adds", "delete_sizes", "deletes", "dest_counts", "dest_sizes", "dests", "family",
        "family_id", "inputs", "journal", "journal_keys", "journal_text", "key", "spans",
    )  # fmt: skip

    def __init__(self, data: bytes) -> None:
        """ValueError if ``data`` is not a whole plan file."""
        if not data.startswith(MAGIC):
            raise ValueError("not a start plan of this format")
        end = data.find(b"\nend\n", len(MAGIC))
        if end < 0:
            raise ValueError("the plan's header is cut short")
        lines = data[len(MAGIC) : end].decode().split("\n")
        fields = {}
        for line in lines[:6]:
            name, _, value = line.partition(" ")
            fields[name] = value
        self.key = fields["key"]
        family, family_id = fields["family"].split()
        self.family, self.family_id = family, int(family_id)
        journal, journal_len = fields["journal"].split()
        self.journal = journal
        self.inputs = fields["inputs"].split()
        n, n_adds, n_dests, n_deletes = (int(x) for x in fields["services"].split())
        spans = fields["batches"].split()
        self.spans = (_spans(spans[0]), _spans(spans[1]))
        self.journal_keys: list[str] = []
        self.dest_counts: list[int] = []
        self.dest_sizes: list[int] = []
        self.delete_sizes: list[int] = []
        for line in lines[6 : 6 + n]:
            key, count, size, dsize = line.split()
            self.journal_keys.append(key)
            self.dest_counts.append(int(count))
            self.dest_sizes.append(int(size))
            self.delete_sizes.append(int(dsize))
        if len(self.journal_keys) != n or len(lines) != 6 + n:
            raise ValueError("the plan lists another number of services")
        view = memoryview(data)
        off = end + len(b"\nend\n")
        parts = []
        for length in (int(journal_len), n_adds, n_dests, n_deletes):
            parts.append(view[off : off + length])
            off += length
        if off != len(data) or sum(self.dest_sizes) != n_dests:
            raise ValueError("the plan's requests do not add up")
        if sum(self.delete_sizes) != n_deletes or self.spans[0][-1:] != [n_adds]:
            raise ValueError("the plan's requests do not add up")
        if self.spans[1][-1:] != [n_dests]:
            raise ValueError("the plan's batches do not add up")
        self.journal_text, self.adds, self.dests, self.deletes = parts

    @property
    def count(self) -> int:
        return len(self.journal_keys)

    def delete_payloads(self, indices: Sequence[int]) -> list[bytes]:
        offsets = [0]
        for size in self.delete_sizes:
            offsets.append(offsets[-1] + size)
        return [bytes(self.deletes[offsets[i] : offsets[i + 1]]) for i in indices]

    def dest_messages(
        self, indices: Sequence[int], chunk: bytes | memoryview | bytearray | None = None
    ) -> list[memoryview]:
        """The real servers' messages of those services, each a whole netlink message
        (from ``chunk``: the plan's, or the same made for another family id)."""
        view = memoryview(self.dests if chunk is None else chunk)
        starts = [0]
        for size in self.dest_sizes:
            starts.append(starts[-1] + size)
        out = []
        for i in indices:
            out += messages(view[starts[i] : starts[i + 1]])
        return out


def _message(family: int, seq: int, payload: bytes) -> bytes:
    return _HDR.pack(_HDR.size + len(payload), family, NLM_F_REQUEST, seq, 0) + payload


def _spans_text(msgs: list[bytes]) -> str:
    """The batch boundaries of ``msgs`` back to back, as byte offsets: "0,a,b,...,end"."""
    offsets, off = [0], 0
    sizes = [len(m) for m in msgs]
    for start, stop in _batches(sizes):
        off += sum(sizes[start:stop])
        offsets.append(off)
    return ",".join(map(str, offsets if msgs else [0]))


def _spans(text: str) -> list[int]:
    offsets = [int(x) for x in text.split(",")]
    if offsets[0] != 0 or any(b <= a for a, b in itertools.pairwise(offsets)):
        raise ValueError("the plan's batches are not in order")
    return offsets


def messages(chunk: memoryview | bytes) -> list[memoryview]:
    """The netlink messages back to back in ``chunk`` (ValueError if one is cut short)."""
    view, out, off = memoryview(chunk), [], 0
    while off + _HDR.size <= len(view):
        length = _HDR.unpack_from(view, off)[0]
        if length < _HDR.size or off + length > len(view):
            raise ValueError("a netlink message is cut short")
        out.append(view[off : off + length])
        off += (length + 3) & ~3
    return out


def read_plan(state_dir: str, name: str = PLAN_FILE) -> LoadedPlan | None:
    """The state dir's plan ``name``, or None (none, unreadable or damaged: no fast
    start from it)."""
    try:
        with open(os.path.join(state_dir, name), "rb") as fh:
            return LoadedPlan(fh.read())
    except (OSError, ValueError, KeyError, IndexError, UnicodeDecodeError):
        return None


def read_input(state_dir: str, name: str) -> bytes | None:
    try:
        with open(os.path.join(state_dir, name), "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def file_digest(path: str) -> str:
    with open(path, "rb") as fh:
        return sha256(fh.read(MAX_CONFIG_BYTES + 1)).hexdigest()


# --------------------------------------------------------------------------- netlink


class _Genl:
    """A bare generic netlink socket: resolve a family, send batches, collect refusals."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        try:
            self.sock.bind((0, 0))
            for opt in (33, socket.SO_RCVBUF):  # SO_RCVBUFFORCE (root), else what is allowed
                try:
                    self.sock.setsockopt(socket.SOL_SOCKET, opt, _RCVBUF)
                    break
                except OSError:
                    continue
            self.sock.setblocking(False)  # (the kernel answers within each send)
        except OSError:
            self.sock.close()
            raise
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def family(self, name: str) -> int | None:
        """The family's id, or None if the kernel has none of that name (not loaded)."""
        self.seq += 1
        value = name.encode() + b"\0"
        attr = _NLA.pack(4 + len(value), CTRL_ATTR_FAMILY_NAME) + value
        attr += b"\0" * (-len(attr) % 4)
        body = struct.pack("=BBH", CTRL_CMD_GETFAMILY, 1, 0) + attr
        self.sock.send(
            _HDR.pack(_HDR.size + len(body), GENL_ID_CTRL, NLM_F_REQUEST, self.seq, 0) + body
        )
        if not select.select([self.sock], [], [], 5.0)[0]:
            return None
        for kind, seq, payload in _replies(self.sock.recv(1 << 16)):
            if seq != self.seq:
                continue
            if kind == NLMSG_ERROR:
                return None
            off = 4
            while off + 4 <= len(payload):
                length, atype = _NLA.unpack_from(payload, off)
                if length < 4:
                    break
                if atype & 0x3FFF == CTRL_ATTR_FAMILY_ID:
                    return int(struct.unpack_from("=H", payload, off + 4)[0])
                off += (length + 3) & ~3
        return None

    def send_all(self, family: int, payloads: list[bytes]) -> dict[int, int]:
        """Send every payload as a request of ``family``; {index: errno} of the refused.
        Raises OSError if the refusals cannot be told (lost to a full socket buffer)."""
        first = self.seq + 1
        msgs = [_message(family, first + i, p) for i, p in enumerate(payloads)]
        self.seq += len(msgs)
        return self.send_chunks(_joined(msgs), first, len(msgs))

    def send_chunks(
        self, chunks: Iterable[bytes | memoryview | bytearray], first: int, count: int
    ) -> dict[int, int]:
        """Send requests already made, a batch per chunk, numbered ``first`` on; {index:
        errno} of the refused (OSError if they cannot be told)."""
        refused: dict[int, int] = {}
        for chunk in chunks:
            self.sock.send(chunk)
            while True:  # the refusals of this batch, queued during send
                try:
                    data = self.sock.recv(1 << 16)
                except BlockingIOError:
                    break
                for kind, seq, payload in _replies(data):
                    if kind == NLMSG_ERROR and first <= seq < first + count:
                        code = -int(struct.unpack_from("=i", payload)[0])
                        if code:
                            refused[seq - first] = code
        return refused


def family_id(name: str) -> int | None:
    """The generic netlink family's id in this kernel; None: not there (not loaded), or
    no netlink to ask."""
    try:
        genl = _Genl()
    except OSError:
        return None
    try:
        return genl.family(name)
    except OSError:
        return None
    finally:
        genl.close()


def _batches(sizes: list[int]) -> Iterator[tuple[int, int]]:
    """Spans of messages of these sizes sent together: at most BATCH_BYTES (unless one
    message is larger) and BATCH_MESSAGES each."""
    start, size = 0, 0
    for i, n in enumerate(sizes):
        size += n
        if i > start and (size > BATCH_BYTES or i - start >= BATCH_MESSAGES):
            yield start, i
            start, size = i, n
    if start < len(sizes):
        yield start, len(sizes)


def _joined(msgs: Sequence[bytes | memoryview]) -> Iterator[bytes]:
    for start, stop in _batches([len(m) for m in msgs]):
        yield b"".join(msgs[start:stop])


def _cut(
    chunk: bytes | memoryview | bytearray, offsets: list[int]
) -> Iterator[bytes | memoryview | bytearray]:
    for start, stop in itertools.pairwise(offsets):
        yield chunk[start:stop]


def _replies(data: bytes) -> Iterator[tuple[int, int, memoryview]]:
    """(type, sequence, payload) of each message of a datagram from the kernel."""
    for msg in messages(data):
        _length, kind, _flags, seq, _port = _HDR.unpack_from(msg)
        yield kind, seq, msg[_HDR.size :]


def _refamily(chunk: memoryview, family: int) -> bytearray:
    """The messages of ``chunk`` for another family id (the module loaded anew)."""
    buf, off = bytearray(chunk), 0
    while off + _HDR.size <= len(buf):
        struct.pack_into("=H", buf, off + 4, family)
        off += (_HDR.unpack_from(buf, off)[0] + 3) & ~3
    return buf


# --------------------------------------------------------------------------- the start


class FastStart:
    """What the fast start did; the agent takes over its lock."""

    def __init__(self, state_dir: str, lock: StateDirLock, plan: LoadedPlan, family: int) -> None:
        self.state_dir = state_dir
        self.lock = lock
        self.plan = plan
        self.family = family
        self.added: list[int] = []  # the plan's services this step created
        self.present = 0  # services already in the kernel: left alone
        self.refused: dict[str, int] = {}  # what else failed: errno
        self.dests = 0  # real servers added
        self.elapsed_s = 0.0
        self.since_exec_s: float | None = None  # when it was done, from the exec

    def describe(self) -> str:
        text = (
            f"start plan: {len(self.added)} IPVS service(s) with {self.dests} real server(s) "
            f"programmed in {self.elapsed_s:.2f} s"
        )
        if self.since_exec_s is not None:
            text += f" ({self.since_exec_s:.2f} s after exec)"
        text += ", before the config was read"
        if self.present:
            text += f"; {self.present} already in the kernel, left to the agent"
        if self.refused:
            first = ", ".join(f"{k}: {os.strerror(v)}" for k, v in list(self.refused.items())[:3])
            text += f"; {len(self.refused)} request(s) refused ({first})"
        return text

    def undo(self) -> str:
        """Delete what this step added (the agent is not starting); what it did."""
        if not self.added:
            return "start plan: nothing to take back"
        gone = 0
        try:
            genl = _Genl()
        except OSError as exc:
            return f"start plan: cannot take back its services: {exc}"
        try:
            genl.seq = 1 << 30  # (numbers of their own)
            refused = genl.send_all(self.family, self.plan.delete_payloads(self.added))
            gone = len(self.added) - len(refused)
        except OSError as exc:
            return f"start plan: cannot take back its services: {exc}"
        finally:
            genl.close()
        path = path_of(self.state_dir, self.plan.journal)
        try:
            entries = read_entries(path)
            for i in self.added:
                entries.pop(self.plan.journal_keys[i], None)
            write_entries(path, entries)
        except (OSError, ValueError) as exc:
            return f"start plan: deleted {gone} service(s); the journal keeps them: {exc}"
        self.added = []
        return f"start plan: the agent is not starting; deleted the {gone} service(s) it added"


def options(argv: Sequence[str]) -> tuple[str, str] | None:
    """(config, state dir) of a plain agent start, or None for anything else."""
    config, state_dir = DEFAULT_CONFIG, DEFAULT_STATE_DIR
    args = iter(argv)
    for arg in args:
        name, eq, value = arg.partition("=")
        if name in ("--config", "-c", "--state-dir"):
            got = value if eq else next(args, None)
            if got is None:
                return None
            if name == "--state-dir":
                state_dir = got
            else:
                config = got
        elif name in _VALUE_OPTIONS:
            if not eq and next(args, None) is None:
                return None
        else:
            return None  # --check, --cleanup, --help, --version, a typo: the agent's parser
    return config, state_dir


def fast_start(argv: Sequence[str]) -> FastStart | None:
    """Send the state dir's start plan if it is valid for this start; None if not."""
    t0 = time.monotonic()
    found = options(argv)
    if found is None:
        return None
    config, state_dir = found
    plan = _matching_plan(config, state_dir)
    if plan is None:
        return None
    lock = StateDirLock(state_dir)
    try:
        lock.acquire()
    except StateDirError:
        return None  # the agent says why when it tries
    done: FastStart | None = None
    try:
        genl = _Genl()
        try:
            family = genl.family(plan.family)
            if family is not None:
                done = FastStart(state_dir, lock, plan, family)
                _program(genl, done)
        finally:
            genl.close()
    except OSError:
        pass  # what is not in the kernel yet, the agent adds
    except BaseException:
        lock.release()  # (what it journalled and added, the agent adopts)
        raise
    if done is None:
        lock.release()
    else:
        done.elapsed_s = time.monotonic() - t0
        done.since_exec_s = _since_exec()
    return done


def _matching_plan(config: str, state_dir: str) -> LoadedPlan | None:
    """The first plan of PLAN_FILES written for this config file and state dir."""
    digest = None
    for name in PLAN_FILES:
        plan = read_plan(state_dir, name)
        if plan is None or not plan.count:
            continue
        try:
            digest = digest or file_digest(config)
            inputs = [read_input(state_dir, f) for f in plan.inputs]
        except OSError:
            return None
        if plan_key(digest, inputs) == plan.key:
            return plan
    return None


def _since_exec() -> float | None:
    """Seconds since this process started (/proc/self/stat), or None."""
    try:
        with open("/proc/self/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # starttime, field 22
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError):
        return None


def _program(genl: _Genl, done: FastStart) -> None:
    plan = done.plan
    adds: bytes | memoryview | bytearray = plan.adds
    dests: bytes | memoryview | bytearray = plan.dests
    if done.family != plan.family_id:
        adds, dests = _refamily(plan.adds, done.family), _refamily(plan.dests, done.family)
    _journal(done)  # journal first, then the kernel
    n, total = plan.count, sum(plan.dest_counts)
    refused = genl.send_chunks(_cut(adds, plan.spans[0]), 1, n)
    done.added = [i for i in range(n) if i not in refused]
    for i, code in refused.items():
        if code == errno.EEXIST:
            done.present += 1
        else:
            done.refused[plan.journal_keys[i]] = code
    if not refused:
        failed = genl.send_chunks(_cut(dests, plan.spans[1]), n + 1, total)
        done.dests = total - len(failed)
    else:  # only the real servers of the services added here
        msgs = plan.dest_messages(done.added, dests)
        failed = genl.send_chunks(_joined(msgs), n + 1, total)
        done.dests = len(msgs) - len(failed)
    genl.seq = n + total
    if failed:
        done.refused["real servers"] = next(iter(failed.values()))


def _journal(done: FastStart) -> None:
    """Record the plan's services. The usual case, an empty journal (the last run
    stopped cleanly), takes the plan's text as it is; otherwise they are merged."""
    plan = done.plan
    path = path_of(done.state_dir, plan.journal)
    try:
        with open(path, "rb") as fh:
            existing: bytes | None = fh.read()
    except FileNotFoundError:
        existing = None
    if existing is None or existing == EMPTY:
        write_raw(path, bytes(plan.journal_text))
        return
    import json

    try:
        entries = read_entries(path)
    except ValueError:
        entries = {}  # damaged: the agent says so; ours are recorded anyway
    entries.update(json.loads(bytes(plan.journal_text))["entries"])
    write_entries(path, entries)


def main() -> int:
    """The ``vigild`` command."""
    argv = sys.argv[1:]
    early: FastStart | None = None
    try:
        early = fast_start(argv)
    except Exception:  # never in the way of a start: the agent programs the table itself
        early = None
    from vigil.daemon import main as agent_main

    return agent_main(argv, early=early)
