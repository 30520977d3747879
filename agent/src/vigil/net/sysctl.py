"""Read and write network sysctls under /proc/sys/net for one network namespace.

vigild runs inside its namespace, so by default this touches the current namespace. Tests
keep their process in the root namespace and pass ``netns=NAME``: the file is then opened
from a short-lived thread that has joined that namespace with setns(2). setns only moves
the calling thread, and /proc/sys/net resolves against the opener's namespace, so the
rest of the process (and the root namespace's sysctls) are never touched.

Per-interface keys are built from path segments, not from dotted names, because interface
names may contain dots (``vrrp.51``) which sysctl(8) would read as separators.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

__all__ = [
    "SYSCTL_ROOT",
    "SysctlError",
    "conf_path",
    "read_conf",
    "read_sysctl",
    "write_conf",
    "write_sysctl",
]

SYSCTL_ROOT = Path("/proc/sys")
_CLONE_NEWNET = 0x40000000
_NETNS_DIR = Path("/run/netns")

Family = Literal[4, 6]
T = TypeVar("T")


class SysctlError(Exception):
    """A sysctl could not be read or written; the text says which key and why."""

    def __init__(self, op: str, key: str, err: int, hint: str = "") -> None:
        self.op = op
        self.key = key
        self.errno = err
        if err:
            text = f"cannot {op} {key}: {os.strerror(err).lower()}"
            if hint:
                text += f" ({hint})"
        else:
            text = f"cannot {op} {key}: {hint or 'failed'}"
        super().__init__(text)


def conf_path(family: Family, ifname: str, name: str) -> tuple[str, ...]:
    """Path segments of an interface sysctl, e.g. net/ipv4/conf/vrrp.51/arp_ignore."""
    if family not in (4, 6):
        raise ValueError(f"family must be 4 or 6, not {family!r}")
    _check_segment("interface name", ifname)
    _check_segment("sysctl name", name)
    return ("net", f"ipv{family}", "conf", ifname, name)


def _check_segment(what: str, value: str) -> None:
    if not value or "/" in value or value in (".", "..") or "\0" in value:
        raise ValueError(f"invalid {what} {value!r}: must be a single path segment")


def _display(segments: tuple[str, ...]) -> str:
    return "/".join(segments)


def _hint(err: int, segments: tuple[str, ...]) -> str:
    if err == errno.ENOENT and len(segments) >= 4 and segments[2] == "conf":
        return f"no interface {segments[3]!r} in this namespace, or IPv{segments[1][-1]} disabled"
    if err == errno.ENOENT:
        return "no such sysctl on this kernel"
    if err in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "vigild needs root / CAP_NET_ADMIN with a writable /proc/sys"
    if err == errno.EINVAL:
        return "the kernel rejected the value"
    return ""


def _in_netns(netns: str | None, func: Callable[[], T]) -> T:
    """Run func in the current namespace, or in a fresh thread joined to netns."""
    if netns is None:
        return func()
    result: list[T] = []
    failure: list[BaseException] = []

    def runner() -> None:
        try:
            _setns_thread(netns)
            result.append(func())
        except BaseException as exc:  # handed back to the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=runner, name=f"sysctl-{netns}", daemon=True)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return result[0]


def _setns_thread(netns: str) -> None:
    _check_segment("namespace name", netns)
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        fd = os.open(_NETNS_DIR / netns, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SysctlError("enter namespace", netns, errno.ENOENT, "no such netns") from None
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            raise SysctlError("enter namespace", netns, ctypes.get_errno())
    finally:
        os.close(fd)


def read_sysctl(segments: tuple[str, ...], *, netns: str | None = None) -> str:
    """The value of /proc/sys/<segments> with surrounding whitespace stripped."""
    path = SYSCTL_ROOT.joinpath(*segments)

    def read() -> str:
        try:
            return path.read_text().strip()
        except OSError as exc:
            err = exc.errno or errno.EIO
            raise SysctlError("read", _display(segments), err, _hint(err, segments)) from None

    return _in_netns(netns, read)


def write_sysctl(segments: tuple[str, ...], value: int | str, *, netns: str | None = None) -> None:
    """Write value to /proc/sys/<segments>; errors name the key and the likely cause."""
    path = SYSCTL_ROOT.joinpath(*segments)
    text = str(value)
    key = f"{_display(segments)}={text}"

    def write() -> None:
        try:
            with open(path, "w") as handle:
                handle.write(text)
        except OSError as exc:
            err = exc.errno or errno.EIO
            raise SysctlError("set", key, err, _hint(err, segments)) from None

    _in_netns(netns, write)


def read_conf(family: Family, ifname: str, name: str, *, netns: str | None = None) -> int:
    """An integer per-interface sysctl such as net/ipv4/conf/eth0/arp_ignore."""
    segments = conf_path(family, ifname, name)
    raw = read_sysctl(segments, netns=netns)
    try:
        return int(raw)
    except ValueError:
        raise SysctlError("parse", _display(segments), 0, f"not an integer: {raw!r}") from None


def write_conf(
    family: Family, ifname: str, name: str, value: int, *, netns: str | None = None
) -> None:
    """Set an integer per-interface sysctl such as net/ipv4/conf/eth0/arp_ignore."""
    write_sysctl(conf_path(family, ifname, name), int(value), netns=netns)
