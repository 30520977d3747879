"""IPVS figures, vigil vs keepalived side by side on a real kernel: ``python -m bench.ipvs``.

    python -m bench.ipvs [--phases cpu,death,memory,startup] [--cpu-servers 1000]
                         [--cpu-delay-loop 10] [--cpu-seconds 60] [--deaths 8]
                         [--startup-vs 100] [--startup-rs 10] [--vrrp-instances 50]
                         [--json FILE] [--plot FILE] [--timeout 3600]

The host kernel has no IPVS, so the run boots the project's throw-away VM once
(tests/lab/vm.py: Debian's cloud kernel under QEMU TCG, the host's root over virtiofs) and
runs this module inside it (``--guest``); every phase runs keepalived (Debian's 2.2.7) and
then vigild in the same boot, on the same lab and from the same keepalived.conf (vigil runs
what ``vigilctl import-keepalived`` makes of it). The guest prints its JSON between two
marker lines; the host writes it to ``--json`` and draws ``--plot``.

Lab (tests.lab, inside the VM): a switch, a server namespace ``srv`` and two director
namespaces, ``ka`` (keepalived) and ``vg`` (vigild), each with its own IPVS table.

- ``cpu``: CPU of keepalived's checker process and of the whole vigild while they check
  ``--cpu-servers`` real servers (TCP_CHECK, then HTTP_GET) served by
  tests.lab.check_servers (250 ports per address). Under TCG the guest's CPU is 15-20x
  slower than the host's: 1000 checks a second do not fit in one vCPU for either daemon
  and the servers, so the rate is scaled with ``--cpu-delay-loop`` (1000 servers at 10 s:
  100 checks a second); the ratio, not the absolute figure, is the result. CPU is the
  scheduler's count (/proc/PID/task/*/schedstat) over a window of ``--cpu-seconds`` after
  every real server is in the table and one delay_loop has passed.
- ``death``: one virtual server with 4 real servers whose listening sockets belong to this
  process (in ``srv``); a death is the close of one listener (connects get a reset from
  then on), at a random phase of the check loop; its removal is the destination's absence
  in ``/proc/net/ip_vs`` of the director, polled every 20 ms from a thread in its
  namespace. delay_loop 1, retry 1, delay_before_retry 1, connect_timeout 1 for both.
- ``memory``: ``--vrrp-instances`` VRRP instances (advert 1 s, one VIP each, alone on the
  link so every one is MASTER) plus the cpu phase's real servers with TCP_CHECK; RSS of
  vigild vs keepalived's three processes together, after ``--memory-seconds``.
- ``startup``: ``--startup-vs`` virtual servers x ``--startup-rs`` real servers without
  checkers (both treat an unchecked real server as up): time from the daemon's exec to
  the last destination in ``/proc/net/ip_vs`` (polled every 0.1 s). Then a reload that
  adds one real server: netlink requests counted by vigil (``kernel.requests`` and
  ``ops`` of /v1/status) and independently by an nlmon device in the director's
  namespace (tcpdump; write commands to the IPVS generic netlink family), for keepalived
  (SIGHUP) too. Then the cost of ``/v1/status``, ``/v1/ipvs/virtual_servers`` and
  ``/metrics`` at that scale, and how long each holds the event loop (the worst
  ``/v1/health`` latency while it runs). Then two more starts, each timed from exec to the
  last service's last destination by a netlink probe: a restart with the same config
  (vigild from its start plan), and a first start of a config the daemon never ran that
  was validated on the director first, as a deployment does (``vigild --check``, which
  writes that config's start plan, or ``keepalived --config-test``; the checks are timed
  apart).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import json
import os
import random
import re
import select
import selectors
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results"
BEGIN, END = "=== bench.ipvs result begin ===", "=== bench.ipvs result end ==="
IMPLS = ("keepalived", "vigil")
DIRECTOR = {"keepalived": "ka", "vigil": "vg"}
DIRECTOR_ADDR = {"keepalived": "10.78.0.1/16", "vigil": "10.78.0.2/16"}
VS_ADDR = "10.79.0.1"
PORT0 = 9000
PER_ADDRESS = 250
DEATH_ADDR, DEATH_PORT0, DEATH_SERVERS = "10.78.2.1", 7001, 4
#: keepalived's and vigil's IPVS write commands (ip_vs.h: IPVS_CMD_*)
IPVS_WRITE_CMDS = {1: "new_service", 2: "set_service", 3: "del_service", 5: "new_dest",
                   6: "set_dest", 7: "del_dest", 9: "new_daemon", 10: "del_daemon",
                   12: "set_config", 17: "flush"}  # fmt: skip


#: lab label -> real namespace name (filled in by the guest when it builds the lab)
REAL_NS: dict[str, str] = {}


def real_ns(label: str) -> str:
    return REAL_NS.get(label, label)


def log(msg: str) -> None:
    print(f"[{time.monotonic():9.1f}] bench.ipvs: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- configs


def backend_addresses(count: int) -> list[str]:
    return [f"10.78.1.{i}" for i in range(1, (count + PER_ADDRESS - 1) // PER_ADDRESS + 1)]


def check_block(kind: str | None, timing: dict[str, float]) -> list[str]:
    if kind is None:
        return []
    common = [f"      {k} {v:g}" for k, v in timing.items()]
    if kind == "http":
        return [
            "    HTTP_GET {",
            "      url {",
            "        path /",
            "        status_code 200",
            "      }",
            *common,
            "    }",
        ]
    return ["    TCP_CHECK {", *common, "    }"]


def ka_conf(
    services: Sequence[tuple[int, Sequence[tuple[str, int]]]],
    *,
    kind: str | None,
    delay_loop: float,
    timing: dict[str, float] | None = None,
    vrrp_instances: int = 0,
) -> str:
    """keepalived.conf: one virtual server VS_ADDR:port per entry of ``services``."""
    lines = ["global_defs {", "  router_id bench_ipvs", "}", ""]
    for i in range(vrrp_instances):
        lines += [
            f"vrrp_instance VI_{i + 1} {{",
            "  state BACKUP",
            "  interface eth0",
            f"  virtual_router_id {i + 1}",
            "  priority 100",
            "  advert_int 1",
            "  virtual_ipaddress {",
            f"    10.80.{i // 200}.{i % 200 + 1}/16",
            "  }",
            "}",
            "",
        ]
    timing = timing or {"connect_timeout": 2, "retry": 1, "delay_before_retry": 1}
    for port, members in services:
        lines += [
            f"virtual_server {VS_ADDR} {port} {{",
            f"  delay_loop {delay_loop:g}",
            "  lb_algo wrr",
            "  lb_kind NAT",
            "  protocol TCP",
        ]
        for addr, rport in members:
            lines += [f"  real_server {addr} {rport} {{", "    weight 1"]
            lines += check_block(kind, timing)
            lines.append("  }")
        lines += ["}", ""]
    return "\n".join(lines)


def cpu_services(count: int) -> list[tuple[int, list[tuple[str, int]]]]:
    """One virtual server per backend port, its real servers the backend addresses."""
    addrs = backend_addresses(count)
    out: list[tuple[int, list[tuple[str, int]]]] = []
    for i in range(count):
        port = PORT0 + i % PER_ADDRESS
        if i < PER_ADDRESS:
            out.append((port, []))
        out[i % PER_ADDRESS][1].append((addrs[i // PER_ADDRESS], port))
    return out


def startup_services(vs: int, rs: int) -> list[tuple[int, list[tuple[str, int]]]]:
    return [(10000 + v, [(f"10.78.3.{r + 1}", 80) for r in range(rs)]) for v in range(vs)]


# ---------------------------------------------------------------------------- kernel table


def in_ns(label: str, fn: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Call ``fn`` in a thread joined to the lab namespace ``label`` (tests.lab.capture's
    in_netns, with a limit to suit polls that run for minutes)."""
    import ctypes

    from tests.lab.capture import CLONE_NEWNET, _libc

    ns = real_ns(label)
    result: list[Any] = []

    def target() -> None:
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({ns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(fn())
        except BaseException as exc:  # handed to the caller
            result.append(exc)

    thread = threading.Thread(target=target, name=f"netns-{ns}", daemon=True)
    thread.start()
    thread.join(timeout=timeout + 60)
    if not result:
        raise TimeoutError(f"in_ns({ns}): no result within {timeout + 60:.0f} s")
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def _hex_endpoint(addr: str, port: int) -> str:
    return f"{socket.inet_aton(addr).hex().upper()}:{port:04X}"


def read_table(ns: str) -> dict[str, dict[str, int]]:
    """The director's IPVS table from /proc/net/ip_vs: {service: {destination: weight}}."""

    def read() -> str:
        return Path("/proc/thread-self/net/ip_vs").read_text()

    return parse_table(in_ns(ns, read))


def parse_table(text: str) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {}
    current: dict[str, int] | None = None
    for line in text.splitlines()[3:]:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "->":
            if current is not None:
                current[parts[1]] = int(parts[3])
        else:
            current = table.setdefault(f"{parts[0]} {parts[1]}", {})
    return table


def count_dests(text: str) -> int:
    """The destinations in /proc/net/ip_vs (its header has an arrow line too)."""
    return text.count("  -> ") - text.count("  -> RemoteAddress")


#: a table poll pauses at least this many times as long as its read took
READ_DUTY = 9.0


class TablePoller:
    """A thread in the director's namespace reading /proc/net/ip_vs on demand or in a loop."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.resolution = 0.0  # the longest read plus pause of the last until()

    def until(
        self,
        cond: Callable[[str], bool],
        timeout: float,
        interval: float,
        stall: float = 300.0,
        last: tuple[int, int] | None = None,
    ) -> tuple[float | None, int]:
        """Poll until ``cond(text)``; (monotonic time it first held or None, polls).

        A table that stops growing for ``stall`` seconds before ``cond`` holds ends the
        wait (None). A read of a large table is itself costly (10,000 destinations under
        TCG: about a second of the guest's one CPU), so the pause after a read is at least
        ``READ_DUTY`` times as long as the read took: the poller takes at most a tenth of
        the CPU from the daemon it measures. At 0.1 s between reads of a growing table it
        took so much that vigild had not finished 1000 x 10 after 16 minutes. The time a
        table is complete is then known to within the pause, which the result records
        (``poll_resolution_s``).

        With ``last`` (the last service's (VIP port, real servers)), the pauses are spent
        asking the kernel over netlink how many real servers that one service has, every
        ``interval`` (one small request); when it is complete, the table is read at once,
        and if ``cond`` holds the time of that answer is the result. Both daemons program
        their services in config order, so this brings the resolution down to about
        ``interval`` where the table fills at once (a restart from vigild's start plan)."""

        def loop() -> tuple[float | None, int]:
            deadline = time.monotonic() + timeout
            self.resolution = interval
            probe = LastService(*last) if last is not None else None
            try:
                return polling(deadline, probe)
            finally:
                if probe is not None:
                    probe.genl.close()

        def polling(deadline: float, probe: LastService | None) -> tuple[float | None, int]:
            polls = 0
            report = time.monotonic() + 30
            seen, moved = -1, time.monotonic()  # the table's size, and when it last changed
            for _ in range(int(timeout / interval) + 10):
                polls += 1
                began = time.monotonic()
                text = Path("/proc/thread-self/net/ip_vs").read_text()
                now = time.monotonic()
                if cond(text):
                    return now, polls
                size = count_dests(text)
                if size != seen:
                    seen, moved = size, now
                elif size > 0 and now - moved > stall:
                    log(f"  {self.ns}: stuck at {size} destinations for {stall:.0f} s")
                    break
                if now >= report:  # a long wait says how far it got
                    report = now + 30
                    log(f"  {self.ns}: {count_dests(text)} destinations so far "
                        f"(a read took {now - began:.2f} s)")  # fmt: skip
                if now > deadline:
                    break
                pause = max(interval, READ_DUTY * (now - began))
                if probe is not None:
                    at = probe.wait(pause, interval)
                    if at is None:
                        continue
                    if cond(Path("/proc/thread-self/net/ip_vs").read_text()):
                        self.resolution = max(interval, probe.took)
                        return at, polls
                    # the last service was complete before the rest (another order):
                    # back to reads with pauses, never back-to-back reads
                    probe = None
                self.resolution = max(self.resolution, pause + (now - began))
                time.sleep(pause)
            return None, polls

        result: tuple[float | None, int] = in_ns(self.ns, loop, timeout)
        return result


class LastService:
    """How many real servers one service has, over netlink from the caller's namespace."""

    def __init__(self, port: int, want: int) -> None:
        from vigil.faststart import _Genl
        from vigil.ipvs.kernel import (
            IPVS_CMD_GET_DEST,
            ServiceKey,
            request_payload,
            service_key_request,
        )

        self.want = want
        self.genl = _Genl()
        self.family = self.genl.family("IPVS") or 0
        key = ServiceKey.inet("tcp", VS_ADDR, port)
        self.payload = request_payload(IPVS_CMD_GET_DEST, service_key_request(key))
        self.took = 0.0

    def count(self) -> int:
        """The service's real servers now (0 without it)."""
        from vigil.faststart import _replies

        g = self.genl
        g.seq += 1
        flags = 0x1 | 0x300  # NLM_F_REQUEST | NLM_F_DUMP
        head = struct.pack("=IHHII", 16 + len(self.payload), self.family, flags, g.seq, 0)
        g.sock.send(head + self.payload)
        n = 0
        for _ in range(1000):
            if not select.select([g.sock], [], [], 5.0)[0]:
                return n
            for kind, seq, _payload in _replies(g.sock.recv(1 << 16)):
                if seq == g.seq:
                    if kind in (2, 3):  # NLMSG_ERROR (no such service), NLMSG_DONE
                        return n
                    n += 1
        return n

    def wait(self, pause: float, interval: float) -> float | None:
        """Ask every ``interval`` for at most ``pause``; when it was complete, or None."""
        end = time.monotonic() + pause
        while True:
            began = time.monotonic()
            if self.family and self.count() >= self.want:
                now = time.monotonic()
                self.took = now - began
                return now
            if time.monotonic() + interval > end:
                time.sleep(max(0.0, end - time.monotonic()))
                return None
            time.sleep(interval)


# ---------------------------------------------------------------------------- backends


class Listeners:
    """TCP listeners in ``ns`` owned by this process: accept and close, until killed."""

    def __init__(self, ns: str, addr: str, ports: Sequence[int]) -> None:
        self.ns, self.addr = ns, addr
        self.sel = selectors.DefaultSelector()
        self.socks: dict[int, socket.socket] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        for port in ports:
            self.open(port)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def open(self, port: int) -> None:
        def make() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((self.addr, port))
            s.listen(512)
            s.setblocking(False)
            return s

        s = in_ns(self.ns, make)
        with self.lock:
            self.socks[port] = s
            self.sel.register(s, selectors.EVENT_READ, port)

    def kill(self, port: int) -> None:
        """Close the listener: from now on a connect to it is refused (RST)."""
        with self.lock:
            s = self.socks.pop(port)
            self.sel.unregister(s)
            s.close()

    def _run(self) -> None:
        for _ in range(10**9):
            if self.stop.is_set():
                return
            ready = self.sel.select(timeout=0.1)
            with self.lock:
                for key, _ev in ready:
                    with contextlib.suppress(OSError, ValueError):
                        conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                        conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        with self.lock:
            for s in self.socks.values():
                s.close()
            self.socks.clear()


# ---------------------------------------------------------------------------- processes

#: keepalived.conf digest -> what ``vigilctl import-keepalived`` made of it (on the host:
#: a CLI start costs a minute under TCG)
IMPORTED: dict[str, Path] = {}


def _digest(conf: str) -> str:
    return hashlib.sha256(conf.encode()).hexdigest()[:16]


def vigil_config(conf: str, dest: Path) -> Path:
    """vigil's config for ``conf``: imported on the host before the boot, else here."""
    found = IMPORTED.get(_digest(conf))
    if found is not None:
        shutil.copyfile(found, dest)
        return dest
    from .pair import import_keepalived_conf

    src = dest.with_suffix(".keepalived.conf")
    src.write_text(conf)
    return import_keepalived_conf(src, dest, timeout=600)


def import_all(args: argparse.Namespace, into: Path) -> None:
    """Import every keepalived.conf the run uses (host side), with an index for the guest."""
    from .pair import import_keepalived_conf

    into.mkdir(parents=True, exist_ok=True)
    index = {}
    for conf in all_confs(args):
        digest = _digest(conf)
        src = into / f"{digest}.conf"
        src.write_text(conf)
        import_keepalived_conf(src, into / f"{digest}.yml", timeout=600)
        index[digest] = f"{digest}.yml"
    (into / "index.json").write_text(json.dumps(index))


def load_imported(into: Path) -> None:
    for digest, name in json.loads((into / "index.json").read_text()).items():
        IMPORTED[digest] = into / name


def run_ns(pid: int) -> int:
    from .cpu import _run_ns

    return _run_ns(pid)


def status_kb(pid: int, key: str) -> int:
    from .cpu import _status_kb

    return _status_kb(pid, key)


def pidfile(path: Path) -> int:
    from tests.lab.waiting import wait_for

    wait_for(lambda: path.exists() and path.read_text().strip().isdigit(), 120, what=str(path))
    return int(path.read_text().strip())


class Daemon:
    """keepalived or vigild in a director namespace, started from one keepalived.conf."""

    def __init__(self, lab: Any, impl: str, conf: str, workdir: Path, tag: str) -> None:
        self.lab, self.impl, self.ns = lab, impl, DIRECTOR[impl]
        self.ka_path = workdir / f"{tag}-{impl}.conf"
        self.ka_path.write_text(conf)
        self.handle: Any = None
        self.started = 0.0
        if impl == "vigil":
            self.vigil_path = vigil_config(conf, workdir / f"{tag}-vigil.yml")

    def start(self) -> None:
        self.started = time.monotonic()
        if self.impl == "keepalived":
            self.handle = self.lab.start_keepalived(self.ns, self.ka_path.read_text(), timeout=300)
        else:
            self.handle = self.lab.start_vigild(
                self.ns, str(self.vigil_path), wait=False, log_level="info"
            )

    def wait_ready(self, timeout: float = 900) -> None:
        if self.impl == "vigil":
            self.handle.client.timeout = 120.0
            self.handle.wait_ready(timeout=timeout)

    def pids(self) -> dict[str, int]:
        """keepalived: parent, vrrp, checker; vigil: vigild."""
        if self.impl == "vigil":
            return {"vigild": self.handle.pid}
        files = self.handle.files
        out = {"parent": pidfile(files["pid"]), "checker": pidfile(files["checkers_pid"])}
        if files["vrrp_pid"].exists():
            out["vrrp"] = pidfile(files["vrrp_pid"])
        return out

    def measured_pid(self) -> int:
        """The process the CPU figure is about: keepalived's checker, or vigild."""
        p = self.pids()
        return p["checker"] if self.impl == "keepalived" else p["vigild"]

    def status(self) -> dict[str, Any]:
        st, body = self.handle.client.get("/v1/status")
        if st != 200:
            raise RuntimeError(f"/v1/status: {st} {body}")
        return body  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.handle is None:
            return
        if self.impl == "vigil":
            self.handle.stop(timeout=120)
        else:
            self.handle.stop()
        self.handle = None
        # Whatever the daemon left behind goes: the kernel's /proc/net/ip_vs misreads
        # (drops about half of a 10,000-destination table, in every way of reading it)
        # while another namespace holds IPVS services, and the next daemon's table, the
        # polls here and vigild's own light drift check all read it. Measured in the VM:
        # 5040 of 10,000 shown while ipvsadm -Ln (netlink) listed all 10,000.
        subprocess.run(
            ["ip", "netns", "exec", real_ns(self.ns), "ipvsadm", "-C"],
            capture_output=True,
            timeout=300,
            check=False,
        )


# ---------------------------------------------------------------------------- phases


def wait_dests(ns: str, want: int, timeout: float, interval: float = 0.1) -> float | None:
    at, _ = TablePoller(ns).until(lambda t: count_dests(t) >= want, timeout, interval)
    return at


DEATH_TIMING = {"connect_timeout": 1, "retry": 1, "delay_before_retry": 1}


def conf_cpu(args: argparse.Namespace, kind: str) -> str:
    return ka_conf(cpu_services(args.cpu_servers), kind=kind, delay_loop=args.cpu_delay_loop)


def conf_death() -> str:
    ports = [DEATH_PORT0 + i for i in range(DEATH_SERVERS)]
    return ka_conf(
        [(80, [(DEATH_ADDR, p) for p in ports])], kind="tcp", delay_loop=1, timing=DEATH_TIMING
    )


def conf_memory(args: argparse.Namespace) -> str:
    return ka_conf(
        cpu_services(args.cpu_servers),
        kind="tcp",
        delay_loop=args.cpu_delay_loop,
        vrrp_instances=args.vrrp_instances,
    )


def conf_startup(args: argparse.Namespace) -> tuple[str, str]:
    """The start-up config and the same with one more real server in the first service."""
    services = startup_services(args.startup_vs, args.startup_rs)
    extra = (f"10.78.3.{args.startup_rs + 1}", 80)
    bigger = [(services[0][0], [*services[0][1], extra]), *services[1:]]
    return ka_conf(services, kind=None, delay_loop=10), ka_conf(bigger, kind=None, delay_loop=10)


def all_confs(args: argparse.Namespace) -> list[str]:
    phases = args.phases.split(",")
    out = []
    if "cpu" in phases:
        out += [conf_cpu(args, "tcp"), conf_cpu(args, "http")]
    if "death" in phases:
        out.append(conf_death())
    if "memory" in phases:
        out.append(conf_memory(args))
    if "startup" in phases:
        out += list(conf_startup(args))
    return out


def phase_cpu(lab: Any, work: Path, args: argparse.Namespace, kind: str) -> dict[str, Any]:
    conf = conf_cpu(args, kind)
    out: dict[str, Any] = {
        "kind": kind,
        "servers": args.cpu_servers,
        "delay_loop_s": args.cpu_delay_loop,
        "checks_per_s": round(args.cpu_servers / args.cpu_delay_loop, 1),
        "window_s": args.cpu_seconds,
    }
    for impl in IMPLS:
        d = Daemon(lab, impl, conf, work, f"cpu-{kind}")
        log(f"cpu {kind}: starting {impl}")
        d.start()
        d.wait_ready()
        at = wait_dests(d.ns, args.cpu_servers, 900)
        if at is None:
            raise RuntimeError(f"{impl}: the table never had all {args.cpu_servers} servers")
        log(f"cpu {kind}: {impl} table complete after {at - d.started:.1f}s; warming up")
        time.sleep(args.cpu_delay_loop + 5)  # a whole round of checks before the window
        pid = d.measured_pid()
        fails0 = check_failures(d) if impl == "vigil" else None
        runs0 = d.status()["ipvs"]["checker"]["runs"] if impl == "vigil" else None
        conns0 = backend_connections(work)
        c0, t0 = run_ns(pid), time.monotonic()
        time.sleep(args.cpu_seconds)
        c1, t1 = run_ns(pid), time.monotonic()
        conns1 = backend_connections(work)
        runs1 = d.status()["ipvs"]["checker"]["runs"] if impl == "vigil" else None
        fails1 = check_failures(d) if impl == "vigil" else None
        table = read_table(d.ns)
        in_table = sum(len(v) for v in table.values())
        row: dict[str, Any] = {
            "cpu_pct": round(100 * (c1 - c0) / 1e9 / (t1 - t0), 2),
            "process": "checker child" if impl == "keepalived" else "vigild (whole agent)",
            "servers_in_table_after": in_table,
            "rss_mb": round(status_kb(pid, "VmRSS") / 1024, 1),
        }
        if runs0 is not None and runs1 is not None:
            row["checks_per_s_measured"] = round((runs1 - runs0) / (t1 - t0), 1)
        # Seen from the backends, the same way for both (each check is one connection;
        # the counts are rewritten every second, so +-1 s of the window)
        row["connections_per_s_at_backends"] = round((conns1 - conns0) / (t1 - t0), 1)
        if conns1 > conns0:
            row["cpu_ms_per_connection"] = round(1e3 * (c1 - c0) / 1e9 / (conns1 - conns0), 3)
        if fails0 is not None and fails1 is not None:  # which checks failed, and how
            row["check_failures_in_window"] = fails1[0] - fails0[0]
            row["last_errors"] = fails1[1]
        if impl == "vigil":  # its drift checks: light (/proc) or dumps, and misreads
            row["ipvs_counters"] = vigil_ipvs_counters(d)
        out[impl] = row
        log(f"cpu {kind}: {impl} {row}")
        d.stop()
    k, v = out["keepalived"]["cpu_pct"], out["vigil"]["cpu_pct"]
    out["ratio"] = round(v / k, 2) if k > 0 else None
    kc = out["keepalived"].get("cpu_ms_per_connection")
    vc = out["vigil"].get("cpu_ms_per_connection")
    out["ratio_per_check"] = round(vc / kc, 2) if kc and vc else None
    return out


def backend_connections(work: Path) -> int:
    """Connections the check servers have accepted so far (all addresses)."""
    total = 0
    for path in work.glob("conns-*"):
        if path.name.endswith(".tmp"):
            continue
        with contextlib.suppress(OSError, ValueError):
            total += int(path.read_text().strip() or 0)
    return total


def check_failures(d: Daemon) -> tuple[int, dict[str, int]]:
    """vigild's failed check runs so far (all checkers), and the last result of each
    checker whose last run failed, counted by text (what the failures were)."""
    st, body = d.handle.client.get("/v1/ipvs/virtual_servers")
    if st != 200:
        return 0, {}
    total, errors = 0, collections.Counter[str]()
    for vs in body.get("virtual_servers", body if isinstance(body, list) else []):
        for rs in vs.get("real_servers", []):
            for check in rs.get("checks", []):
                total += int(check.get("counters", {}).get("failures", 0))
                if check.get("ok") is False:
                    errors[str(check.get("last_result"))] += 1
    return total, dict(errors.most_common(5))


def vigil_down_event(d: Daemon, since: float, label: str) -> float | None:
    """The time (epoch) of vigild's real_server_down event for ``label`` after ``since``."""
    st, events = d.handle.client.get("/v1/events")
    if st != 200:
        return None
    for ev in events:
        if ev["kind"] == "real_server_down" and ev["time"] >= since and label in ev["message"]:
            return float(ev["time"])
    return None


def phase_death(lab: Any, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    ports = [DEATH_PORT0 + i for i in range(DEATH_SERVERS)]
    timing = DEATH_TIMING
    conf = conf_death()
    service = f"TCP {_hex_endpoint(VS_ADDR, 80)}"
    out: dict[str, Any] = {
        "real_servers": DEATH_SERVERS,
        "delay_loop_s": 1,
        **{f"{k}": v for k, v in timing.items()},
        "deaths": args.deaths,
    }
    rng = random.Random(args.seed)
    for impl in IMPLS:
        backends = Listeners("srv", DEATH_ADDR, ports)
        d = Daemon(lab, impl, conf, work, "death")
        try:
            d.start()
            d.wait_ready()
            poller = TablePoller(d.ns)
            if wait_dests(d.ns, DEATH_SERVERS, 600) is None:
                raise RuntimeError(f"{impl}: the death phase's servers never all came up")
            samples: list[float] = []
            verdicts: list[float | None] = []
            for n in range(args.deaths):
                port = ports[n % len(ports)]
                dest = _hex_endpoint(DEATH_ADDR, port)
                time.sleep(3 + rng.uniform(0, 1))  # a random phase of the 1 s check loop
                t0, wall0 = time.monotonic(), time.time()
                backends.kill(port)
                gone, _ = poller.until(
                    lambda t, dest=dest: dest not in parse_table(t).get(service, {}), 60, 0.02
                )
                if gone is None:
                    raise RuntimeError(f"{impl}: {DEATH_ADDR}:{port} stayed in the table 60 s")
                samples.append(round(gone - t0, 3))
                if impl == "vigil":  # where the time went: the checker's verdict, then IPVS
                    down = vigil_down_event(d, wall0, f"{DEATH_ADDR}:{port}")
                    verdicts.append(None if down is None else round(down - wall0, 3))
                verdict = verdicts[-1] if verdicts else "-"
                log(f"death {impl} #{n + 1}: removed after {gone - t0:.3f}s (verdict {verdict})")
                backends.open(port)
                back, _ = poller.until(
                    lambda t, dest=dest: dest in parse_table(t).get(service, {}), 120, 0.1
                )
                if back is None:
                    raise RuntimeError(f"{impl}: {DEATH_ADDR}:{port} never came back")
        finally:
            d.stop()
            backends.close()
        out[impl] = {
            **({"down_event_s": verdicts} if impl == "vigil" else {}),
            "samples_s": samples,
            "median_s": round(statistics.median(samples), 3),
            "min_s": min(samples),
            "max_s": max(samples),
        }
    return out


def phase_memory(lab: Any, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    conf = conf_memory(args)
    out: dict[str, Any] = {
        "vrrp_instances": args.vrrp_instances,
        "servers": args.cpu_servers,
        "delay_loop_s": args.cpu_delay_loop,
        "after_s": args.memory_seconds,
    }
    for impl in IMPLS:
        d = Daemon(lab, impl, conf, work, "memory")
        log(f"memory: starting {impl}")
        d.start()
        d.wait_ready()
        if wait_dests(d.ns, args.cpu_servers, 900) is None:
            raise RuntimeError(f"{impl}: memory phase table incomplete")
        time.sleep(args.memory_seconds)
        pids = d.pids()
        row: dict[str, Any] = {
            name: {
                "rss_mb": round(status_kb(pid, "VmRSS") / 1024, 1),
                "hwm_mb": round(status_kb(pid, "VmHWM") / 1024, 1),
            }
            for name, pid in pids.items()
        }
        row["total_rss_mb"] = round(sum(r["rss_mb"] for r in row.values()), 1)
        row["total_hwm_mb"] = round(
            sum(r["hwm_mb"] for k, r in row.items() if isinstance(r, dict)), 1
        )
        if impl == "vigil":
            st = d.status()
            row["vrrp_masters"] = sum(
                1 for i in st.get("vrrp", {}).get("instances", []) if i.get("state") == "MASTER"
            )
        out[impl] = row
        log(f"memory: {impl} {row}")
        d.stop()
    return out


# -- netlink requests, counted by an nlmon tap


def nlmon_start(lab: Any, ns: str, pcap: Path) -> Any:
    from tests.lab.waiting import wait_for

    lab.run(ns, ["ip", "link", "add", "nlmon0", "type", "nlmon"], check=True)
    lab.run(ns, ["ip", "link", "set", "nlmon0", "up"], check=True)
    proc = lab.spawn(
        ns, ["tcpdump", "-i", "nlmon0", "-U", "-s", "0", "-w", str(pcap)], name=f"nlmon-{ns}"
    )
    wait_for(lambda: "listening on" in proc.log_text(), 120, what="tcpdump on nlmon0")
    return proc


def nlmon_stop(lab: Any, ns: str, proc: Any) -> None:
    from tests.lab.waiting import wait_for

    proc.signal(signal.SIGINT)
    wait_for(lambda: not proc.alive(), 60, what="tcpdump to exit")
    lab.run(ns, ["ip", "link", "del", "nlmon0"], check=False)


def ipvs_family_id() -> int:
    """The IPVS generic netlink family's id (``genl ctrl get name IPVS``)."""
    res = subprocess.run(
        ["genl", "ctrl", "get", "name", "IPVS"], capture_output=True, text=True, timeout=120
    )
    m = re.search(r"ID:\s*(0x[0-9a-fA-F]+|\d+)", res.stdout)
    if m is None:
        raise RuntimeError(f"genl ctrl get name IPVS: {res.stdout} {res.stderr}")
    return int(m.group(1), 0)


def count_ipvs_writes(pcap: Path, family: int) -> dict[str, int]:
    """IPVS write requests (user to kernel, NLM_F_REQUEST, not a dump) in an nlmon pcap."""
    data = pcap.read_bytes()
    magic = data[:4]
    endian = "<" if magic == b"\xd4\xc3\xb2\xa1" else ">"
    off = 24
    counts: dict[str, int] = {}
    while off + 16 <= len(data):
        _s, _us, incl, _orig = struct.unpack(endian + "IIII", data[off : off + 16])
        pkt = data[off + 16 : off + 16 + incl]
        off += 16 + incl
        # DLT_NETLINK: a 16-byte cooked header (SLL), then the netlink message(s)
        body = pkt[16:]
        pos = 0
        while pos + 20 <= len(body):
            length, mtype, flags = struct.unpack("=IHH", body[pos : pos + 8])
            cmd = body[pos + 16]
            if length < 16:
                break
            if mtype == family and flags & 0x1 and not flags & 0x300:
                name = IPVS_WRITE_CMDS.get(cmd)
                if name is not None:
                    counts[name] = counts.get(name, 0) + 1
            pos += (length + 3) & ~3
    return counts


def vigil_ipvs_counters(d: Daemon) -> dict[str, Any] | str:
    """vigild's IPVS worker counters (ops sent, failures, passes, drift checks), with a
    long limit: /v1/status of 1000 x 10 takes seconds under TCG."""
    from vigil.client import ApiClient

    try:
        _, body = ApiClient(str(d.handle.socket_path), timeout=120).get("/v1/status")
        k = body["ipvs"]["kernel"]
    except Exception as exc:  # a diagnostic: say why there is none
        return f"unavailable ({exc})"
    keys = ("ops", "op_failures", "passes", "drift_checks", "light_checks", "proc_misreads")
    keys += ("requests",)
    return {key: k.get(key) for key in keys}


def _ipvs_kernel(st: dict[str, Any]) -> dict[str, Any]:
    k = st["ipvs"]["kernel"]
    return {key: k.get(key) for key in ("requests", "ops", "passes", "drift_checks")}


def time_endpoints(sock: str, rounds: int, interval: float = 0.005) -> dict[str, Any]:
    """Each endpoint ``rounds`` times: its latency, and the worst /v1/health latency (a
    probe every ``interval`` from another thread) while it ran: how long it held the loop.
    In the VM a probe costs vigild tens of ms of emulated CPU: probe every 0.1 s there,
    or the probes themselves are the load."""
    from vigil.client import ApiClient

    out: dict[str, Any] = {}
    for path in ("/v1/status", "/v1/ipvs/virtual_servers", "/metrics"):
        lat, held, size = [], [], 0
        for _ in range(rounds):
            stop = threading.Event()
            health: list[float] = []

            def ping(stop: threading.Event = stop, health: list[float] = health) -> None:
                c = ApiClient(sock, timeout=120)
                for _ in range(100000):
                    if stop.is_set():
                        return
                    t = time.monotonic()
                    c.get("/v1/health")
                    health.append(time.monotonic() - t)
                    time.sleep(interval)

            th = threading.Thread(target=ping, daemon=True)
            th.start()
            time.sleep(0.3)
            baseline = max(health) if health else None
            t = time.monotonic()
            status, body = ApiClient(sock, timeout=300).get(path)
            lat.append(time.monotonic() - t)
            stop.set()
            th.join(60)
            if status != 200:
                raise RuntimeError(f"{path}: {status}")
            size = len(body if isinstance(body, str) else json.dumps(body))
            held.append(max(health) if health else 0.0)
            log(f"api {path}: {lat[-1]:.3f}s, health worst {held[-1]:.3f}s (idle {baseline})")
        out[path] = {
            "latency_s": [round(x, 3) for x in lat],
            "median_s": round(statistics.median(lat), 3),
            "health_worst_s": [round(x, 3) for x in held],
            "health_worst_median_s": round(statistics.median(held), 3),
            "bytes": size,
        }
    return out


def phase_startup(lab: Any, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    vs_n, rs_n = args.startup_vs, args.startup_rs
    total = vs_n * rs_n
    conf, conf2 = conf_startup(args)
    family = ipvs_family_id()
    out: dict[str, Any] = {"virtual_servers": vs_n, "real_servers_each": rs_n}
    for impl in IMPLS:
        d = Daemon(lab, impl, conf, work, "startup")
        if impl == "vigil":
            added_yml = vigil_config(conf2, work / "startup2-vigil.yml")
        log(f"startup: starting {impl} ({vs_n} x {rs_n})")
        d.start()
        first: list[float] = []  # when the first destination appeared
        counted = [0.0]  # when vigild's counters are next logged
        api_up: list[float] = []  # vigild: when its API socket appeared (imports done)

        def complete(
            text: str,
            d: Daemon = d,
            first: list[float] = first,
            api_up: list[float] = api_up,
            counted: list[float] = counted,
        ) -> bool:
            n = count_dests(text)
            if n and not first:
                first.append(time.monotonic())
            if d.impl == "vigil" and not api_up and d.handle.socket_path.exists():
                api_up.append(time.monotonic())
            if d.impl == "vigil" and api_up and time.monotonic() >= counted[0]:
                counted[0] = time.monotonic() + 30  # how far vigild thinks it got
                log(f"  vigild at {n} destinations: {vigil_ipvs_counters(d)}")
            return n >= total

        poller = TablePoller(d.ns)
        # (no netlink probe here: at 0.1 s it took enough of the guest's CPU to double
        # keepalived's start-up, 13.9 s against 5.1-7.2 s without it)
        at, _ = poller.until(complete, 1800, 0.1, stall=90)
        if at is None:
            if impl == "vigil":
                log("vigild's log:\n" + d.handle.log(tail=60))
                with contextlib.suppress(Exception):
                    _, body = d.handle.client.get("/v1/events")
                    events = body.get("events", body) if isinstance(body, dict) else body
                    for e in list(events)[-40:]:
                        log(f"  event {e.get('kind')}: {str(e.get('message'))[:300]}")
                log(f"  ipvs kernel: {vigil_ipvs_counters(d)}")
            raise RuntimeError(f"{impl}: startup table never complete")
        row: dict[str, Any] = {"complete_s": round(at - d.started, 2)}
        row["poll_resolution_s"] = round(poller.resolution, 2)
        if first:
            row["first_dest_s"] = round(first[0] - d.started, 2)
            row["first_to_complete_s"] = round(at - first[0], 2)
        if api_up:
            row["api_socket_s"] = round(api_up[0] - d.started, 2)
        log(f"startup: {impl} complete after {row['complete_s']}s")
        d.wait_ready()
        time.sleep(3)
        pcap = work / f"reload-{impl}.pcap"
        tap = nlmon_start(lab, d.ns, pcap)
        before = _ipvs_kernel(d.status()) if impl == "vigil" else None
        t0 = time.monotonic()
        if impl == "vigil":
            os.replace(added_yml, d.vigil_path)
            st, body = d.handle.reload()
            if st != 200:
                raise RuntimeError(f"vigil reload: {st} {body}")
        else:
            d.handle.files["conf"].write_text(conf2)
            os.kill(d.pids()["parent"], signal.SIGHUP)
        at2 = wait_dests(d.ns, total + 1, 600, 0.05)
        if at2 is None:
            raise RuntimeError(f"{impl}: the reload's real server never appeared")
        row["reload_visible_s"] = round(at2 - t0, 2)
        time.sleep(3)
        after = _ipvs_kernel(d.status()) if impl == "vigil" else None
        nlmon_stop(lab, d.ns, tap)
        row["reload_writes_nlmon"] = count_ipvs_writes(pcap, family)
        if before is not None and after is not None:
            row["reload_counter"] = {k: after[k] - before[k] for k in before}
        log(f"startup: {impl} reload {row}")
        if impl == "vigil" and args.api_rounds > 0:
            row["api"] = time_endpoints(str(d.handle.socket_path), args.api_rounds, 0.1)
            row["api_probe_interval_s"] = 0.1
        last = (10000 + vs_n - 1, rs_n)
        row.update(restart(d, conf2, total + 1, last))
        if impl == "vigil":
            first_yml = vigil_config(conf, work / "startup3-vigil.yml")
            row.update(checked_start(d, conf, first_yml, total, last))
        else:
            row.update(checked_start(d, conf, None, total, last))
        out[impl] = row
        d.stop()
    for name, field, _ in STARTS:
        k, v = out["keepalived"][field], out["vigil"][field]
        out[name] = round(v / k, 2) if k > 0 else None
    return out


#: the starts the startup phase times: (ratio in the result, figure of each daemon, what)
STARTS = (
    ("ratio", "complete_s",
     "first start, never checked, to a complete table, {virtual_servers} x "
     "{real_servers_each}"),
    ("restart_ratio", "restart_complete_s",
     "restart with the same config to a complete table (vigild: from its start plan)"),
    ("checked_ratio", "checked_complete_s",
     "first start of a config checked on the director (vigild --check / keepalived "
     "--config-test, then start)"),
)  # fmt: skip


def restart(d: Daemon, conf: str, total: int, last: tuple[int, int]) -> dict[str, Any]:
    """A clean stop and a start with the same config (the reloaded one) and state dir, as a
    reboot or a package upgrade does: vigild's start plan (vigil.faststart) programs the
    table before the agent reads its config; keepalived starts as it always does."""
    if d.impl == "vigil":
        from vigil.ipvs.startplan import current_key, plan_path, written_key

        state = Path(d.handle.state_dir)
        want, _ = current_key(state, hashlib.sha256(d.vigil_path.read_bytes()).hexdigest())
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and written_key(state) != want:
            time.sleep(0.5)  # written once the reload has settled
        plan_bytes = plan_path(state).stat().st_size
    else:
        d.ka_path.write_text(conf)
    d.stop()
    row = timed_start(d, "restart", total, last)
    if d.impl == "vigil":
        row["restart_plan_bytes"] = plan_bytes
    return row


def checked_start(
    d: Daemon, conf: str, vigil_yml: Path | None, total: int, last: tuple[int, int]
) -> dict[str, Any]:
    """A config the daemon never ran, validated on the director and then started, as a
    deployment does (the collection runs ``vigild --check`` on every config it installs):
    ``vigild --check`` / ``keepalived --config-test`` (timed on their own), then a start
    timed as a restart is. vigild starts from the plan its check wrote."""
    state = d.handle.state_dir if d.impl == "vigil" else None
    d.stop()
    ns = real_ns(d.ns)
    if vigil_yml is not None:
        from tests.lab.agents import bin_path

        shutil.copyfile(vigil_yml, d.vigil_path)
        argv = [bin_path("vigild"), "--check", "--config", str(d.vigil_path)]
        argv += ["--state-dir", str(state)]
    else:
        d.ka_path.write_text(conf)
        argv = ["keepalived", "--config-test", "-f", str(d.ka_path)]
    t0 = time.monotonic()
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=900
    )
    check_s = round(time.monotonic() - t0, 2)
    if proc.returncode != 0:
        raise RuntimeError(f"{d.impl}: the config check failed: {proc.stdout}{proc.stderr}")
    log(f"startup: {d.impl} config check took {check_s}s")
    row = timed_start(d, "checked", total, last)
    row["checked_check_s"] = check_s
    return row


def timed_start(d: Daemon, tag: str, total: int, last: tuple[int, int]) -> dict[str, Any]:
    """Start ``d`` and time its table to ``total`` destinations (``{tag}_...`` figures).

    Timed with the netlink probe of the last service (``TablePoller.until``'s ``last``):
    vigild's table fills within a second from a plan, which reads with pauses of up to
    8 s cannot time. The probe costs the guest's CPU, both daemons alike."""
    row: dict[str, Any] = {}
    log(f"startup: {tag} start of {d.impl}")
    d.start()
    poller = TablePoller(d.ns)
    first: list[float] = []

    def complete(text: str) -> bool:
        n = count_dests(text)
        if n and not first:
            first.append(time.monotonic())
        return n >= total

    at, _ = poller.until(complete, 1800, 0.1, stall=90, last=last)
    if at is None:
        raise RuntimeError(f"{d.impl}: the {tag} start's table never complete")
    row[f"{tag}_complete_s"] = round(at - d.started, 2)
    row[f"{tag}_poll_resolution_s"] = round(poller.resolution, 2)
    if first:
        row[f"{tag}_first_dest_s"] = round(first[0] - d.started, 2)
    if d.impl == "vigil":
        d.wait_ready()  # (its log line comes once the agent is imported)
        lines = [ln for ln in d.handle.log(tail=None).splitlines() if "start plan:" in ln]
        row[f"{tag}_from_plan"] = lines[-1].split("agent: ", 1)[-1] if lines else None
    log(f"startup: {d.impl} {tag} start {row}")
    return row


# ---------------------------------------------------------------------------- guest


def guest(args: argparse.Namespace) -> dict[str, Any]:
    from tests.lab.lab import Lab

    phases = args.phases.split(",")
    result: dict[str, Any] = {"phases": {}}
    if args.configs is not None:
        load_imported(args.configs)
    with tempfile.TemporaryDirectory(prefix="bench-ipvs-") as tmp, Lab(Path(tmp)) as lab:
        work = Path(tmp)
        lab.add_switch()
        lab.add_namespace("srv")
        srv_addrs = [f"{a}/16" for a in backend_addresses(args.cpu_servers)]
        srv_addrs += [f"{DEATH_ADDR}/16"]
        lab.connect("srv", addrs=srv_addrs)
        for impl in IMPLS:
            lab.add_namespace(DIRECTOR[impl])
            lab.connect(DIRECTOR[impl], addrs=[DIRECTOR_ADDR[impl]])
        REAL_NS.update({name: lab.node(name).ns for name in ("srv", *DIRECTOR.values())})
        if {"cpu", "memory"} & set(phases):
            from tests.lab.waiting import wait_for

            last = f"{PORT0}-{PORT0 + min(args.cpu_servers, PER_ADDRESS) - 1}"
            for addr in backend_addresses(args.cpu_servers):
                proc = lab.spawn(
                    "srv",
                    [sys.executable, "-m", "tests.lab.check_servers", "--listen", addr,
                     "--ports", last, "--max-duration", str(args.timeout),
                     "--count-file", str(work / f"conns-{addr}")],
                    name=f"web-{addr}",
                    cwd=str(REPO_ROOT),
                )  # fmt: skip
                wait_for(lambda p=proc: "listening" in p.log_text(), 300, what=f"web {addr}")
        for phase in phases:
            t = time.monotonic()
            if phase == "cpu":
                for kind in ("tcp", "http"):
                    result["phases"][f"cpu_{kind}"] = phase_cpu(lab, work, args, kind)
            elif phase == "death":
                result["phases"]["death"] = phase_death(lab, work, args)
            elif phase == "memory":
                result["phases"]["memory"] = phase_memory(lab, work, args)
            elif phase == "startup":
                result["phases"]["startup"] = phase_startup(lab, work, args)
            log(f"phase {phase} took {time.monotonic() - t:.0f}s")
    result["guest"] = {
        "kernel": os.uname().release,
        "keepalived": _version(["keepalived", "--version"]),
        "cpus": os.cpu_count(),
    }
    return result


def _version(argv: list[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        res = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        return (res.stdout + res.stderr).splitlines()[0].strip()
    return "unknown"


# ---------------------------------------------------------------------------- host


def summary(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The table rows: figure, keepalived, vigil, ratio or difference."""
    p = doc["phases"]
    rows: list[dict[str, Any]] = []
    for kind in ("tcp", "http"):
        c = p.get(f"cpu_{kind}")
        if c:
            rows.append(
                {
                    "figure": f"checker CPU, {c['servers']} {kind.upper()} real servers at "
                    f"delay_loop {c['delay_loop_s']:g} s, % of a core",
                    "keepalived": c["keepalived"]["cpu_pct"],
                    "vigil": c["vigil"]["cpu_pct"],
                    "compare": f"{c['ratio']}x",
                    "goal": "at most 2x",
                    "met": c["ratio"] is not None and c["ratio"] <= 2,
                }
            )
    if "death" in p:
        d = p["death"]
        rows.append(
            {
                "figure": f"death to removal, median of {d['deaths']}, s",
                "keepalived": d["keepalived"]["median_s"],
                "vigil": d["vigil"]["median_s"],
                "compare": f"{d['vigil']['median_s'] - d['keepalived']['median_s']:+.3f} s",
                "goal": "at or below keepalived's",
                "met": d["vigil"]["median_s"] <= d["keepalived"]["median_s"],
            }
        )
    if "memory" in p:
        m = p["memory"]
        rows.append(
            {
                "figure": f"RSS, {m['vrrp_instances']} VRRP instances + {m['servers']} "
                "checked real servers, MB",
                "keepalived": m["keepalived"]["total_rss_mb"],
                "vigil": m["vigil"]["total_rss_mb"],
                "compare": f"{m['vigil']['total_rss_mb'] / m['keepalived']['total_rss_mb']:.1f}x",
                "goal": "vigild at most 60 MB",
                "met": m["vigil"]["total_rss_mb"] <= 60,
            }
        )
    if "startup" in p:
        s = p["startup"]
        for ratio, field, figure in STARTS:
            if ratio not in s:
                continue  # (a result from before that start was measured)
            note = ""
            if ratio == "checked_ratio":
                k, v = s["keepalived"]["checked_check_s"], s["vigil"]["checked_check_s"]
                note = f" (checks: {k} / {v} s)"
            rows.append(
                {
                    "figure": figure.format(**s) + ", s",
                    "keepalived": s["keepalived"][field],
                    "vigil": s["vigil"][field],
                    "compare": f"{s[ratio]}x{note}",
                    "goal": "at or below keepalived's",
                    "met": s[ratio] is not None and s[ratio] <= 1,
                }
            )
        kw = sum(s["keepalived"]["reload_writes_nlmon"].values())
        vw = sum(s["vigil"]["reload_writes_nlmon"].values())
        rows.append(
            {
                "figure": "reload adding one real server: IPVS write requests (nlmon)",
                "keepalived": kw,
                "vigil": vw,
                "compare": f"vigil's own counter: {s['vigil'].get('reload_counter', {})}",
                "goal": "exactly 1",
                "met": vw == 1,
            }
        )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'figure':78} {'keepalived':>11} {'vigil':>9}  compare   met")
    for r in rows:
        print(f"{r['figure']:78} {r['keepalived']!s:>11} {r['vigil']!s:>9}  {r['compare']}  "
              f"{'yes' if r['met'] else 'NO'}")  # fmt: skip


def plot(doc: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plot import COLORS

    p = doc["phases"]
    panels = [k for k in ("cpu", "death", "memory", "startup") if any(n.startswith(k) for n in p)]
    width = max(3.6 * len(panels), 6.4)  # (the title's width, with one panel)
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 4.0), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        if panel == "cpu":
            kinds = [k for k in ("tcp", "http") if f"cpu_{k}" in p]
            for off, impl in ((-0.19, "keepalived"), (0.19, "vigil")):
                vals = [p[f"cpu_{k}"][impl]["cpu_pct"] for k in kinds]
                ax.bar([i + off for i in range(len(kinds))], vals, 0.38, label=impl,
                       color=COLORS[impl])  # fmt: skip
                for i, v in enumerate(vals):
                    ax.annotate(f"{v:.1f}", (i + off, v), ha="center", va="bottom", fontsize=7)
            c0 = p[f"cpu_{kinds[0]}"]
            ax.set_xticks(range(len(kinds)), [k.upper() for k in kinds])
            ax.set_title(
                f"checker CPU, {c0['servers']} servers\n@ delay_loop {c0['delay_loop_s']:g} s",
                fontsize=9,
            )
            ax.set_ylabel("% of a (TCG) core", fontsize=8)
        elif panel == "death":
            d = p["death"]
            for i, impl in enumerate(IMPLS):
                ax.bar(i, d[impl]["median_s"], 0.6, color=COLORS[impl], label=impl)
                ax.scatter([i] * len(d[impl]["samples_s"]), d[impl]["samples_s"], s=9,
                           color="black", zorder=3)  # fmt: skip
            ax.set_xticks(range(2), list(IMPLS))
            ax.set_title(f"death to removal (median, dots = {d['deaths']} deaths)", fontsize=9)
            ax.set_ylabel("s", fontsize=8)
        elif panel == "memory":
            m = p["memory"]
            vals = [m[impl]["total_rss_mb"] for impl in IMPLS]
            ax.bar(range(2), vals, 0.6, color=[COLORS[i] for i in IMPLS])
            ax.axhline(60, color="red", lw=0.8, ls="--")
            ax.set_xticks(range(2), ["keepalived (3 procs)", "vigild"], fontsize=8)
            ax.set_title(
                f"RSS, {m['vrrp_instances']} VRRP + {m['servers']} real servers", fontsize=9
            )
            ax.set_ylabel("MB", fontsize=8)
        else:
            s = p["startup"]
            kinds = [
                (f, label)
                for f, label in (("complete_s", "first"), ("restart_complete_s", "restart"),
                                 ("checked_complete_s", "checked"))
                if all(f in s[impl] for impl in IMPLS)
            ]  # fmt: skip
            for j, impl in enumerate(IMPLS):
                xs = [i + (j - 0.5) * 0.4 for i in range(len(kinds))]
                vals = [s[impl][f] for f, _ in kinds]
                ax.bar(xs, vals, 0.4, color=COLORS[impl], label=impl)
                for x, v in zip(xs, vals, strict=True):
                    ax.annotate(f"{v:.1f}", (x, v), ha="center", va="bottom", fontsize=7)
            ax.set_xticks(range(len(kinds)), [label for _, label in kinds], fontsize=8)
            ax.legend(fontsize=7)
            ax.set_title(
                f"start-up to full table\n{s['virtual_servers']} x {s['real_servers_each']}",
                fontsize=9,
            )
            ax.set_ylabel("s from exec", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    title = doc.get("plot_title") or "IPVS in the VM (QEMU TCG, 1 vCPU): keepalived 2.2.7 vs vigil"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def host_api(args: argparse.Namespace) -> dict[str, Any]:
    """``--host-api``: the API's cost at ``--startup-vs`` x ``--startup-rs`` on this host
    (no IPVS here: vigild runs the checks and views, the kernel part reports unavailable),
    so the views can be measured at a scale the VM cannot start in reasonable time."""
    from tests.lab.lab import Lab

    conf, _ = conf_startup(args)
    with tempfile.TemporaryDirectory(prefix="bench-ipvs-api-") as tmp, Lab(Path(tmp)) as lab:
        work = Path(tmp)
        lab.add_namespace("vg")
        REAL_NS["vg"] = lab.node("vg").ns
        d = Daemon(lab, "vigil", conf, work, "api")
        t = time.monotonic()
        d.start()
        d.wait_ready()
        ready = time.monotonic() - t
        log(f"host api: vigild ready after {ready:.1f}s")
        from .failover import load_average

        result = {
            "host_load_1min": load_average(),
            "virtual_servers": args.startup_vs,
            "real_servers_each": args.startup_rs,
            "ready_s": round(ready, 1),
            "api": time_endpoints(str(d.handle.socket_path), args.api_rounds),
        }
        d.stop()
    return result


def host_memory(args: argparse.Namespace) -> dict[str, Any]:
    """``--host-memory``: the memory phase's config run by vigild alone on this host (no
    IPVS here: the checks run and the kernel part reports unavailable), RSS after
    ``--memory-seconds``; keepalived's checker needs IPVS, so its figure comes from the VM."""
    from tests.lab.lab import Lab
    from tests.lab.waiting import wait_for

    conf = conf_memory(args)
    with tempfile.TemporaryDirectory(prefix="bench-ipvs-mem-") as tmp, Lab(Path(tmp)) as lab:
        work = Path(tmp)
        lab.add_switch()
        lab.add_namespace("srv")
        lab.connect("srv", addrs=[f"{a}/16" for a in backend_addresses(args.cpu_servers)])
        lab.add_namespace("vg")
        lab.connect("vg", addrs=[DIRECTOR_ADDR["vigil"]])
        REAL_NS.update({name: lab.node(name).ns for name in ("srv", "vg")})
        last = f"{PORT0}-{PORT0 + min(args.cpu_servers, PER_ADDRESS) - 1}"
        for addr in backend_addresses(args.cpu_servers):
            proc = lab.spawn(
                "srv",
                [sys.executable, "-m", "tests.lab.check_servers", "--listen", addr,
                 "--ports", last, "--max-duration", "3600"],
                name=f"web-{addr}",
                cwd=str(REPO_ROOT),
            )  # fmt: skip
            wait_for(lambda p=proc: "listening" in p.log_text(), 300, what=f"web {addr}")
        d = Daemon(lab, "vigil", conf, work, "memory")
        t = time.monotonic()
        d.start()
        d.wait_ready()
        ready = time.monotonic() - t
        log(f"host memory: vigild ready after {ready:.1f}s; waiting {args.memory_seconds:g}s")
        time.sleep(args.memory_seconds)
        pid = d.measured_pid()
        st = d.status()
        from .failover import load_average

        result = {
            "host_load_1min": load_average(),
            "vrrp_instances": args.vrrp_instances,
            "servers": args.cpu_servers,
            "delay_loop_s": args.cpu_delay_loop,
            "after_s": args.memory_seconds,
            "ready_s": round(ready, 1),
            "rss_mb": round(status_kb(pid, "VmRSS") / 1024, 1),
            "hwm_mb": round(status_kb(pid, "VmHWM") / 1024, 1),
            "vrrp_masters": sum(
                1 for i in st.get("vrrp", {}).get("instances", []) if i.get("state") == "MASTER"
            ),
            "checker_runs": st["ipvs"]["checker"]["runs"],
        }
        d.stop()
    return result


def _head() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    ).stdout.strip()


def host(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from tests.lab.vm import VmError, run_in_vm

    from .failover import machine

    configs = RESULTS / f"ipvs-configs-{os.getpid()}"  # runs may overlap
    shutil.rmtree(configs, ignore_errors=True)
    log(f"importing the keepalived configs into vigil's on the host ({configs})")
    import_all(args, configs)
    guest_argv = [sys.executable, "-m", "bench.ipvs", "--guest", "--configs", str(configs), *argv]
    commit = subprocess.run(  # what is measured: the checkout as the run starts
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO_ROOT, check=False
    ).stdout.strip()
    env = {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    started = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        res = run_in_vm(
            guest_argv,
            cwd=REPO_ROOT,
            env=env,
            timeout=args.timeout,
            cpus=1,
            memory_mb=args.memory,
            stream=sys.stderr,
        )
    except VmError as exc:
        print(f"bench.ipvs: {exc}", file=sys.stderr)
        return 125
    m = re.search(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), res.output, re.S)
    if res.returncode != 0 or m is None:
        print(f"bench.ipvs: the guest failed (exit {res.returncode}); logs in {res.logs}",
              file=sys.stderr)  # fmt: skip
        return res.returncode or 1
    doc = json.loads(m.group(1))
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "agent/src"], capture_output=True, text=True,
        cwd=REPO_ROOT, check=False,
    ).stdout.strip()  # fmt: skip
    doc = {
        "benchmark": "ipvs",
        "started": started,
        "command": "python -m bench.ipvs " + " ".join(argv),
        "vigil_commit": commit + ("+dirty" if dirty else ""),
        "vm": {
            "kernel": res.kernel,
            "boot_s": res.boot_seconds,
            "vcpus": 1,
            "memory_mb": args.memory,
            "accel": "tcg",
        },
        "machine": machine(),
        **doc,
    }
    doc["summary"] = summary(doc)
    out = args.json or RESULTS / f"ipvs-{started.replace(':', '')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print_table(doc["summary"])
    print(f"wrote {out}")
    if args.plot is not None:
        print(f"wrote {plot(doc, args.plot)}")
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.ipvs", description=__doc__.split("\n")[0])
    p.add_argument("--phases", default="cpu,death,memory,startup")
    p.add_argument("--cpu-servers", type=int, default=1000)
    p.add_argument("--cpu-delay-loop", type=float, default=10.0)
    p.add_argument("--cpu-seconds", type=float, default=60.0)
    p.add_argument("--deaths", type=int, default=8)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--vrrp-instances", type=int, default=50)
    p.add_argument("--memory-seconds", type=float, default=30.0)
    p.add_argument("--startup-vs", type=int, default=100)
    p.add_argument("--startup-rs", type=int, default=10)
    p.add_argument("--api-rounds", type=int, default=3)
    p.add_argument("--timeout", type=float, default=3600.0, help="the guest's limit, s")
    p.add_argument("--memory", type=int, default=2048, help="guest MiB")
    p.add_argument("--json", type=Path)
    p.add_argument("--plot", type=Path)
    p.add_argument("--replot", type=Path, help="draw --plot from this result file and exit")
    p.add_argument("--guest", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--configs", type=Path, help=argparse.SUPPRESS)
    p.add_argument(
        "--host-api",
        action="store_true",
        help="time the API on this host at --startup-vs x --startup-rs (no VM) and exit",
    )
    p.add_argument(
        "--host-memory",
        action="store_true",
        help="run the memory phase's config with vigild alone on this host (no VM) and exit",
    )
    args = p.parse_args(argv)
    bad = set(args.phases.split(",")) - {"cpu", "death", "memory", "startup"}
    if bad:
        p.error(f"--phases: unknown {sorted(bad)}; choose from cpu, death, memory, startup")
    if not 1 <= args.cpu_servers <= 62500 or args.deaths < 1 or args.startup_vs < 1:
        p.error("--cpu-servers 1..62500, --deaths >= 1, --startup-vs >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.replot is not None:
        out = args.plot or REPO_ROOT / "docs" / "img" / "ipvs.png"
        print(plot(json.loads(args.replot.read_text()), out))
        return 0
    if args.host_api or args.host_memory:
        from tests.lab.vm import precompile

        precompile(REPO_ROOT)  # as installed (and as the VM runs do): vigil byte-compiled
        doc = {
            "benchmark": "ipvs-api" if args.host_api else "ipvs-memory-host",
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": "python -m bench.ipvs " + " ".join(argv),
            "vigil_source": os.environ.get("PYTHONPATH", ""),
            "vigil_commit": _head(),
            **(host_api(args) if args.host_api else host_memory(args)),
        }
        text = json.dumps(doc, indent=2)
        print(text)
        if args.json is not None:
            args.json.write_text(text + "\n")
        return 0
    if args.guest:
        if os.environ.get("VIGIL_VM") != "1":
            print("bench.ipvs --guest runs inside the VM (python -m bench.ipvs)", file=sys.stderr)
            return 2
        result = guest(args)
        print(BEGIN, json.dumps(result), END, sep="\n", flush=True)
        return 0
    return host(args, [a for a in argv if a not in ("--guest",)])


if __name__ == "__main__":
    sys.exit(main())
