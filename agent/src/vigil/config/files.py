"""Host checks for programs named in the config: they exist, run, and are root-controlled.

A check script runs as root's choice of user but is chosen by whoever can write it: if a
non-root user can replace the program or rename a directory on its path, they can run code
as that user at the agent's next check. keepalived refuses such scripts
(``enable_script_security``); so do we, and we say which path component is the problem.
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import stat

SAFE_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


def split_command(command: str) -> list[str]:
    """Split a command with shell quoting rules (it is never run through a shell)."""
    return shlex.split(command)


def resolve_program(word: str) -> tuple[str | None, str | None]:
    """Find the program of a command: ``(path, None)`` or ``(None, reason)``."""
    if "/" in word:
        if not os.path.isabs(word):
            return None, f"program {word!r} must be an absolute path (e.g. /usr/local/bin/...)"
        candidate = word
    else:
        found = [os.path.join(d, word) for d in SAFE_PATH if os.path.isfile(os.path.join(d, word))]
        if not found:
            return None, (
                f"program {word!r} is not in {':'.join(SAFE_PATH)}; give its absolute path"
            )
        candidate = found[0]
    if not os.path.exists(candidate):
        return None, f"program {candidate!r} does not exist; install it or fix the path"
    if not os.path.isfile(candidate):
        return None, f"program {candidate!r} is not a regular file"
    if not os.access(candidate, os.X_OK):
        return None, f"program {candidate!r} is not executable; chmod 0755 it"
    return candidate, None


def _component_problem(path: str, st: os.stat_result) -> str | None:
    if st.st_uid != 0:
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = f"uid {st.st_uid}"
        return f"{path!r} is owned by {owner}, not root"
    if stat.S_ISLNK(st.st_mode):  # a link's own mode bits mean nothing; its owner does
        return None
    writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    # A root-owned sticky directory (/tmp) lets nobody else rename or delete root's files.
    if writable and not (stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX):
        who = "its group" if st.st_mode & stat.S_IWGRP else "everyone"
        if st.st_mode & stat.S_IWGRP and st.st_mode & stat.S_IWOTH:
            who = "its group and everyone"
        return f"{path!r} is writable by {who}"
    return None


def insecure_reason(program: str) -> str | None:
    """Why ``program`` is not safe to run (a non-root user could change it), or None."""
    chains = [os.path.realpath(program)]
    if chains[0] != program:
        chains.append(program)
    for start in chains:
        current = start
        while True:
            try:
                st = os.lstat(current) if start is program else os.stat(current)
            except OSError as exc:
                return f"cannot inspect {current!r}: {exc.strerror}"
            problem = _component_problem(current, st)
            if problem:
                return problem
            parent = os.path.dirname(current)
            if parent == current:
                break
            current = parent
    return None


def user_problem(spec: str) -> str | None:
    """Check a ``user[:group]`` spec against this host's account database."""
    user, _, group = spec.partition(":")
    try:
        pwd.getpwnam(user)
    except KeyError:
        return f"user {user!r} does not exist on this host; create it or pick another user"
    if group:
        try:
            grp.getgrnam(group)
        except KeyError:
            return f"group {group!r} does not exist on this host"
    return None
