"""BFD's section of vigil.yml: the ``bfd`` key (docs/configuration.md, "bfd").

::

    bfd:
      defaults: {min_tx: 0.3, min_rx: 0.3, multiplier: 3}     # every session inherits
      profiles:
        fast: {min_tx: 0.05, min_rx: 0.05, multiplier: 3}    # sessions name one
      sessions:
        - name: upstream                  # tracker key bfd:upstream, API, events
          peer: 10.0.0.1
          local: 10.0.0.2                 # required for multihop
          interface: eth0                 # required for an IPv6 link-local peer
          profile: fast
          auth:
            type: meticulous_keyed_sha1
            keys: [{id: 1, secret: "..."}, {id: 2, secret: "..."}]
            send_key_id: 2                # the active key; both are accepted

A session's value for a timer or option is the first of: the session's own key, its
profile's, ``defaults``, the built-in default (300 ms x 3, active, no authentication).

schema (each part alone) -> semantic (names, references, families, keys; the resolved
session as the engine will take it) -> build (frozen :class:`BfdConfig`) -> diff (what a
reload changes, per session) -> cluster (a session between two vigil nodes must exist on
both ends with matching authentication, and each end's wish for a fast detection must be
met by the other end's transmit interval).

Secrets never leave the model in ``to_dict(redact=True)``, in ``repr`` or in an issue.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import voluptuous as vol

from vigil.bfd.auth import AuthConfig, AuthKey
from vigil.bfd.packet import PASSWORD_MAX, PASSWORD_MIN, AuthType
from vigil.bfd.spec import SessionSpec
from vigil.bfd.transport import DEFAULT_MIN_TTL
from vigil.config.errors import Issue
from vigil.config.model import REDACTED
from vigil.config.section import SectionInput
from vigil.config.validators import (
    Struct,
    boolean,
    choice,
    did_you_mean,
    ifname,
    integer,
    ip_address,
    name,
    required,
    seconds,
    show,
    string,
)

__all__ = [
    "AUTH_TYPES",
    "DEFAULTS",
    "SECTION",
    "BfdAuth",
    "BfdConfig",
    "BfdDiff",
    "BfdKey",
    "BfdSection",
    "BfdSessionConfig",
    "Validated",
]

IPAddress = IPv4Address | IPv6Address

#: the names of the authentication types in vigil.yml
AUTH_TYPES: dict[str, AuthType] = {
    "simple_password": AuthType.SIMPLE_PASSWORD,
    "keyed_md5": AuthType.KEYED_MD5,
    "meticulous_keyed_md5": AuthType.METICULOUS_KEYED_MD5,
    "keyed_sha1": AuthType.KEYED_SHA1,
    "meticulous_keyed_sha1": AuthType.METICULOUS_KEYED_SHA1,
}
_AUTH_NAMES = {v: k for k, v in AUTH_TYPES.items()}

#: the built-in defaults under ``bfd.defaults`` (and every profile)
DEFAULTS: dict[str, Any] = {
    "min_tx": 0.3,
    "min_rx": 0.3,
    "multiplier": 3,
    "passive": False,
    "min_ttl": DEFAULT_MIN_TTL,
    "auth": None,
}
#: the keys a session inherits from its profile and ``defaults``
INHERITED = tuple(DEFAULTS)

MIN_INTERVAL = 0.01  # 10 ms, as FRR: below that a timer on a shared host is noise
MAX_INTERVAL = 4294.0  # the wire carries microseconds in 32 bits


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class BfdKey:
    """One authentication key: its id on the wire and its secret (never in ``repr``)."""

    id: int
    secret: str = field(repr=False)

    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        return {"id": self.id, "secret": REDACTED if redact else self.secret}


@dataclass(frozen=True)
class BfdAuth:
    """A session's authentication: the type (its vigil.yml name), keys, the send key."""

    type: str
    keys: tuple[BfdKey, ...]
    send_key_id: int

    @property
    def auth_type(self) -> AuthType:
        return AUTH_TYPES[self.type]

    def key(self, key_id: int) -> BfdKey | None:
        return next((k for k in self.keys if k.id == key_id), None)

    def engine_config(self) -> AuthConfig:
        return AuthConfig(
            self.auth_type,
            tuple(AuthKey(k.id, k.secret.encode()) for k in self.keys),
            self.send_key_id,
        )

    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        return {
            "type": self.type,
            "keys": [k.to_dict(redact) for k in self.keys],
            "send_key_id": self.send_key_id,
        }


@dataclass(frozen=True)
class BfdSessionConfig:
    """One session, everything resolved (its profile and the defaults applied)."""

    name: str
    peer: IPAddress
    local: IPAddress | None = None
    interface: str | None = None
    multihop: bool = False
    min_ttl: int = DEFAULT_MIN_TTL
    min_tx: float = 0.3
    min_rx: float = 0.3
    multiplier: int = 3
    passive: bool = False
    admin_down: bool = False
    auth: BfdAuth | None = None
    profile: str | None = None

    @property
    def key_fields(self) -> tuple[Any, ...]:
        """What makes the session on the wire: a change means another session."""
        return (self.peer, self.local, self.interface, self.multihop)

    @property
    def detection_time(self) -> float:
        """The detection time this end asks for (a peer may make it longer)."""
        return self.multiplier * self.min_rx

    def spec(self, *, admin_down: bool | None = None) -> SessionSpec:
        """The engine's :class:`~vigil.bfd.spec.SessionSpec` (``admin_down`` overrides)."""
        return SessionSpec(
            peer=self.peer,
            local=self.local,
            interface=self.interface,
            multihop=self.multihop,
            min_ttl=self.min_ttl,
            min_tx=self.min_tx,
            min_rx=self.min_rx,
            multiplier=self.multiplier,
            passive=self.passive,
            admin_down=self.admin_down if admin_down is None else admin_down,
            auth=None if self.auth is None else self.auth.engine_config(),
            name=self.name,
        )

    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "peer": str(self.peer)}
        if self.local is not None:
            out["local"] = str(self.local)
        if self.interface is not None:
            out["interface"] = self.interface
        if self.profile is not None:
            out["profile"] = self.profile
        out["multihop"] = self.multihop
        if self.multihop:
            out["min_ttl"] = self.min_ttl
        out.update(
            min_tx=self.min_tx,
            min_rx=self.min_rx,
            multiplier=self.multiplier,
            passive=self.passive,
            admin_down=self.admin_down,
        )
        if self.auth is not None:
            out["auth"] = self.auth.to_dict(redact)
        return out


@dataclass(frozen=True)
class BfdConfig:
    """The section's model: sessions in file order, and what they inherit from."""

    sessions: tuple[BfdSessionConfig, ...] = ()
    #: ``bfd.defaults`` and ``bfd.profiles`` as written (validated), for to_dict
    defaults: Mapping[str, Any] = field(default_factory=dict)
    profiles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def session_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sessions)

    def session(self, session_name: str) -> BfdSessionConfig:
        for s in self.sessions:
            if s.name == session_name:
                return s
        known = ", ".join(self.session_names) or "none"
        raise KeyError(f"no BFD session {session_name!r}; this config has: {known}")

    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        if not (self.sessions or self.defaults or self.profiles):
            return {}
        out: dict[str, Any] = {}
        if self.defaults:
            out["defaults"] = _options_dict(self.defaults, redact)
        if self.profiles:
            out["profiles"] = {n: _options_dict(p, redact) for n, p in self.profiles.items()}
        out["sessions"] = [s.to_dict(redact) for s in self.sessions]
        return {"bfd": out}


def _options_dict(options: Mapping[str, Any], redact: bool) -> dict[str, Any]:
    out = dict(options)
    auth = out.get("auth")
    if isinstance(auth, BfdAuth):
        out["auth"] = auth.to_dict(redact)
    return out


@dataclass(frozen=True)
class BfdDiff:
    """What a reload changes in ``bfd``: session names by fate, changed fields per name.

    ``recreated``: changed sessions whose peer, local address, interface or multihop
    changed (another session on the wire: the old one is removed, the new one added).
    """

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    recreated: tuple[str, ...] = ()
    details: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": list(self.changed),
            "unchanged": list(self.unchanged),
            "recreated": list(self.recreated),
            "details": {n: {"fields": list(f)} for n, f in self.details.items()},
        }

    def summary(self) -> str:
        parts = [
            f"{what} {', '.join(getattr(self, what))}"
            for what in ("added", "removed", "changed")
            if getattr(self, what)
        ]
        return "BFD sessions " + "; ".join(parts) if parts else ""


def diff_bfd(old: BfdConfig, new: BfdConfig) -> BfdDiff:
    before = {s.name: s for s in old.sessions}
    after = {s.name: s for s in new.sessions}
    added, changed, unchanged, recreated = [], [], [], []
    details: dict[str, tuple[str, ...]] = {}
    for session_name, s in after.items():
        prev = before.get(session_name)
        if prev is None:
            added.append(session_name)
        elif prev != s:
            changed.append(session_name)
            details[session_name] = tuple(
                f.name
                for f in fields(BfdSessionConfig)
                if getattr(prev, f.name) != getattr(s, f.name)
            )
            if prev.key_fields != s.key_fields:
                recreated.append(session_name)
        else:
            unchanged.append(session_name)
    removed = [n for n in before if n not in after]
    return BfdDiff(
        tuple(added), tuple(removed), tuple(changed), tuple(unchanged), tuple(recreated), details
    )


# --------------------------------------------------------------------------- schema


def _auth_type(value: Any) -> str:
    if isinstance(value, str) and value.replace("-", "_").lower() in AUTH_TYPES:
        return value.replace("-", "_").lower()
    return str(choice(*AUTH_TYPES)(value))


KEY = Struct(
    {
        required("id"): integer(0, 255),
        required("secret"): string(what="a secret string"),
    },
    what="a key mapping {id: N, secret: STR}",
)


def _keys(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise vol.Invalid(
            f"expected a non-empty list of keys [{{id: 1, secret: ...}}], got {show(value)}"
        )
    out: list[dict[str, Any]] = []
    errors: list[vol.Invalid] = []
    for i, item in enumerate(value):
        try:
            out.append(KEY(item))
        except vol.MultipleInvalid as exc:
            exc.prepend([i])
            errors.extend(exc.errors)
        except vol.Invalid as exc:
            exc.prepend([i])
            errors.append(exc)
    if errors:
        raise vol.MultipleInvalid(errors)
    return out


AUTH = Struct(
    {
        required("type"): _auth_type,
        required("keys"): _keys,
        vol.Optional("send_key_id"): integer(0, 255),
    },
    what="an auth mapping {type: keyed_sha1, keys: [{id: 1, secret: ...}], send_key_id: 1}",
)


def _interval(value: Any) -> float:
    return seconds(MIN_INTERVAL, MAX_INTERVAL)(value)


#: what defaults, profiles and sessions may set for a session to inherit
OPTION_FIELDS: dict[Any, Any] = {
    vol.Optional("min_tx"): _interval,
    vol.Optional("min_rx"): _interval,
    vol.Optional("multiplier"): integer(1, 255),
    vol.Optional("passive"): boolean,
    vol.Optional("min_ttl"): integer(1, 255),
    vol.Optional("auth"): AUTH,
}

OPTIONS = Struct(OPTION_FIELDS, what="a mapping of BFD session options (min_tx, min_rx, ...)")

SESSION = Struct(
    {
        required("name"): name,
        required("peer"): ip_address,
        vol.Optional("local"): ip_address,
        vol.Optional("interface"): ifname,
        vol.Optional("multihop", default=False): boolean,
        vol.Optional("profile"): name,
        vol.Optional("admin_down", default=False): boolean,
        **OPTION_FIELDS,
    },
    what="a BFD session mapping with at least 'name' and 'peer'",
)

TOP_KEYS = ("defaults", "profiles", "sessions")


# --------------------------------------------------------------------------- section


@dataclass
class Validated:
    """Schema-checked and resolved sessions (None: failed, reported), and what they use.

    ``names`` are every session name written (also of failed items) so that references
    from other sections (a VRRP instance tracking ``bfd: [NAME]``) to a broken session
    do not report a second error.
    """

    sessions: list[dict[str, Any] | None] = field(default_factory=list)
    defaults: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)

    def has(self, session_name: str) -> bool:
        return session_name in self.names

    def session(self, session_name: str) -> dict[str, Any] | None:
        for s in self.sessions:
            if s is not None and s["name"] == session_name:
                return s
        return None


class BfdSection:
    """BFD's part of vigil.yml (implements :class:`vigil.config.ConfigSection`)."""

    name = "bfd"
    keys = ("bfd",)
    global_fields: Mapping[Any, Any] = {}

    # -- validate -------------------------------------------------------------------

    def validate(self, inp: SectionInput) -> Validated:
        out = Validated()
        raw = inp.data.get("bfd")
        if raw is None:
            return out
        if not isinstance(raw, dict):
            inp.error(["bfd"], f"expected a mapping with {', '.join(TOP_KEYS)}, got {show(raw)}")
            return out
        for key in raw:
            if key not in TOP_KEYS:
                hint = did_you_mean(str(key), TOP_KEYS) or "; allowed: " + ", ".join(TOP_KEYS)
                inp.error(["bfd", str(key)], f"unknown key{hint}")
        if raw.get("defaults") is not None:
            out.defaults = inp.schema.one(OPTIONS, raw["defaults"], ["bfd", "defaults"]) or {}
        out.profiles = inp.schema.named(OPTIONS, raw.get("profiles"), "bfd.profiles", "profile")
        raw_sessions = raw.get("sessions")
        items = inp.schema.items(SESSION, raw_sessions, "bfd.sessions", "BFD sessions")
        if isinstance(raw_sessions, list):
            for item in raw_sessions:
                if isinstance(item, dict) and isinstance(item.get("name"), str):
                    out.names.append(item["name"])
        _Checker(inp, out).run(items)
        return out

    # -- build ----------------------------------------------------------------------

    def build(self, inp: SectionInput, validated: Validated) -> BfdConfig:
        sessions = []
        for s in validated.sessions:
            assert s is not None  # build runs only on a valid file
            auth = s["auth"]
            sessions.append(
                BfdSessionConfig(
                    name=s["name"],
                    peer=s["peer"],
                    local=s.get("local"),
                    interface=s.get("interface"),
                    multihop=s["multihop"],
                    min_ttl=s["min_ttl"],
                    min_tx=s["min_tx"],
                    min_rx=s["min_rx"],
                    multiplier=s["multiplier"],
                    passive=s["passive"],
                    admin_down=s["admin_down"],
                    auth=None if auth is None else _build_auth(auth),
                    profile=s.get("profile"),
                )
            )
        return BfdConfig(
            sessions=tuple(sessions),
            defaults=_build_options(validated.defaults),
            profiles={n: _build_options(p) for n, p in validated.profiles.items() if p is not None},
        )

    def to_dict(self, model: BfdConfig, *, redact: bool = True) -> dict[str, Any]:
        return model.to_dict(redact=redact)

    def diff(self, old: BfdConfig, new: BfdConfig) -> BfdDiff:
        return diff_bfd(old, new)

    def summary(self, model: BfdConfig) -> tuple[int, str]:
        count = len(model.sessions)
        return count, "BFD session" if count == 1 else "BFD sessions"

    def check_cluster(self, models: Mapping[str, BfdConfig], context: Any = None) -> list[Issue]:
        addresses = getattr(context, "node_addresses", None)
        known = {node: addresses(node) for node in models} if addresses is not None else None
        return check_bfd_cluster(models, known)


def _build_auth(auth: dict[str, Any]) -> BfdAuth:
    keys = tuple(BfdKey(k["id"], k["secret"]) for k in auth["keys"])
    send = auth.get("send_key_id")
    return BfdAuth(auth["type"], keys, keys[0].id if send is None else send)


def _build_options(options: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(options)
    if out.get("auth") is not None:
        out["auth"] = _build_auth(out["auth"])
    return out


def _max_secret(auth_type: AuthType) -> int:
    return PASSWORD_MAX if auth_type is AuthType.SIMPLE_PASSWORD else auth_type.digest_size


class _Checker:
    """Semantic checks of the ``bfd`` section; resolves each session as it goes."""

    def __init__(self, inp: SectionInput, out: Validated) -> None:
        self.inp = inp
        self.out = out

    def error(self, path: list[Any], message: str) -> None:
        self.inp.error(path, message)

    def run(self, items: list[dict[str, Any] | None]) -> None:
        if self.out.defaults.get("auth") is not None:
            self._auth(["bfd", "defaults", "auth"], self.out.defaults["auth"])
        for profile_name, profile in self.out.profiles.items():
            if profile is not None and profile.get("auth") is not None:
                self._auth(["bfd.profiles", profile_name, "auth"], profile["auth"])
        # a session that failed the schema or a check stays None: never built
        self.out.sessions = [
            None if item is None else self._session(i, item) for i, item in enumerate(items)
        ]
        self._unique(items)

    def _session(self, i: int, item: dict[str, Any]) -> dict[str, Any] | None:
        base: list[Any] = ["bfd.sessions", i]
        ok = True
        profile: dict[str, Any] = {}
        profile_name = item.get("profile")
        if profile_name is not None:
            if profile_name not in self.out.profiles:
                known = list(self.out.profiles)
                hint = did_you_mean(profile_name, known) or (
                    f"; profiles here: {', '.join(known)}"
                    if known
                    else "; define it under bfd.profiles"
                )
                self.error([*base, "profile"], f"unknown profile {profile_name!r}{hint}")
                ok = False
            else:
                profile = self.out.profiles[profile_name] or {}
        session = dict(item)
        for key in INHERITED:
            if key in item:
                continue
            for source in (profile, self.out.defaults, DEFAULTS):
                if key in source:
                    session[key] = source[key]
                    break
        peer, local = session["peer"], session.get("local")
        iface = session.get("interface")
        if local is not None and local.version != peer.version:
            self.error(
                [*base, "local"],
                f"{local} is IPv{local.version} but the peer {peer} is IPv{peer.version}; "
                "use an address of the peer's family",
            )
            ok = False
        if local is not None and local == peer:
            self.error([*base, "local"], f"{local} is the peer's address; use this node's own")
            ok = False
        if session["multihop"] and local is None:
            self.error(
                [*base, "local"],
                "a multihop session needs the local address it sends from and is reached at "
                "(RFC 5883); add local: ADDRESS",
            )
            ok = False
        for what, addr in (("peer", peer), ("local", local)):
            if addr is not None and addr.version == 6 and addr.is_link_local and not iface:
                self.error(
                    [*base, "interface"],
                    f"the {what} {addr} is link-local: name the interface it is on",
                )
                ok = False
        if session["multihop"] and peer.version == 6 and peer.is_link_local:
            self.error(
                [*base, "multihop"], f"{peer} is link-local: it cannot be more than one hop away"
            )
            ok = False
        if "min_ttl" in item and not session["multihop"]:
            self.error(
                [*base, "min_ttl"],
                "min_ttl applies to multihop sessions only; a single-hop session always "
                "requires TTL 255 (RFC 5881): remove it or set multihop: true",
            )
            ok = False
        if "auth" in item and session["auth"] is not None:
            ok = self._auth([*base, "auth"], session["auth"]) and ok
        if not ok:
            return None
        try:
            spec = SessionSpec(
                peer=peer,
                local=local,
                interface=iface,
                multihop=session["multihop"],
                min_ttl=session["min_ttl"],
                min_tx=session["min_tx"],
                min_rx=session["min_rx"],
                multiplier=session["multiplier"],
                passive=session["passive"],
                name=session["name"],
            )
        except ValueError as exc:  # pragma: no cover - the checks above cover the spec's
            self.error(base, str(exc))
            return None
        session["key"] = spec.key
        return session

    def _auth(self, path: list[Any], auth: dict[str, Any]) -> bool:
        ok = True
        auth_type = AUTH_TYPES[auth["type"]]
        ids = [k["id"] for k in auth["keys"]]
        seen: dict[int, int] = {}
        for j, key in enumerate(auth["keys"]):
            if key["id"] in seen:
                self.error(
                    [*path, "keys", j, "id"],
                    f"key id {key['id']} is also keys[{seen[key['id']]}]; ids must be unique",
                )
                ok = False
            seen.setdefault(key["id"], j)
            size = len(key["secret"].encode())
            longest = _max_secret(auth_type)
            if not PASSWORD_MIN <= size <= longest:
                self.error(
                    [*path, "keys", j, "secret"],
                    f"{auth_type} takes a secret of {PASSWORD_MIN} to {longest} bytes, got {size}",
                )
                ok = False
        send = auth.get("send_key_id")
        if send is None and len(ids) > 1:
            self.error(
                [*path, "send_key_id"],
                f"with several keys ({', '.join(map(str, ids))}) say which one this end "
                "sends with: send_key_id: N",
            )
            ok = False
        elif send is not None and send not in ids:
            self.error(
                [*path, "send_key_id"],
                f"{send} is not among the keys' ids ({', '.join(map(str, ids))})",
            )
            ok = False
        return ok

    def _unique(self, items: list[dict[str, Any] | None]) -> None:
        names: dict[str, int] = {}
        keys: dict[Any, int] = {}
        for i, item in enumerate(items):
            if item is None:
                continue
            first = names.setdefault(item["name"], i)
            if first != i:
                self.error(
                    ["bfd.sessions", i, "name"],
                    f"{item['name']!r} is also the name of bfd.sessions[{first}]; session "
                    "names must be unique",
                )
                self.out.sessions[i] = None
        for i, session in enumerate(self.out.sessions):
            if session is None:
                continue
            first = keys.setdefault(session["key"], i)
            if first != i:
                self.error(
                    ["bfd.sessions", i],
                    f"the same session as bfd.sessions[{first}] (peer {session['peer']}, "
                    f"local {session.get('local') or 'any'}, interface "
                    f"{session.get('interface') or 'any'}, "
                    f"{'multihop' if session['multihop'] else 'single hop'}); remove one",
                )
                self.out.sessions[i] = None


# --------------------------------------------------------------------------- cluster


def _same_secret(a: BfdKey, b: BfdKey) -> bool:
    return hmac.compare_digest(a.secret.encode(), b.secret.encode())


def check_bfd_cluster(
    models: Mapping[str, BfdConfig],
    addresses: Mapping[str, Iterable[IPAddress]] | None = None,
) -> list[Issue]:
    """Sessions between two vigil nodes of the group, checked from both ends.

    A node's addresses are the ``local`` addresses of its sessions, and those ``addresses``
    gives (what the caller knows of each node: the collection reads facts); a session whose peer
    is another node's address is a session between the two, and that node must have the
    matching session (peer = this node's local address, same single hop / multihop) with
    a compatible configuration. Sessions to anything else (an upstream router) are not
    checked here.
    """
    issues: list[Issue] = []
    owners: dict[IPAddress, str] = {}
    known: dict[str, set[IPAddress]] = {node: set() for node in models}
    for node, model in models.items():
        for s in model.sessions:
            if s.local is not None:
                owners.setdefault(s.local, node)
                known[node].add(s.local)
    for node, addrs in (addresses or {}).items():
        if node in known:
            for addr in addrs:
                owners.setdefault(addr, node)
                known[node].add(addr)

    def error(node: str, model: BfdConfig, s: BfdSessionConfig, key: str, message: str) -> None:
        path = f"bfd.sessions[{model.session_names.index(s.name)}]" + (f".{key}" if key else "")
        issues.append(Issue(path, message, file=node))

    for node, model in models.items():
        for s in model.sessions:
            other = owners.get(s.peer)
            if other is None or other == node:
                continue
            theirs = [
                t
                for t in models[other].sessions
                if t.peer in known[node] and (s.local is None or t.peer == s.local)
            ]
            match = next((t for t in theirs if t.multihop == s.multihop), None)
            if match is None:
                if theirs:
                    t = theirs[0]
                    error(
                        node,
                        model,
                        s,
                        "multihop",
                        f"{s.name}: multihop is {_yn(s.multihop)} here but {_yn(t.multihop)} "
                        f"in {other}'s session {t.name!r}; single hop (UDP 3784) and multihop "
                        "(UDP 4784) never meet",
                    )
                else:
                    error(
                        node,
                        model,
                        s,
                        "peer",
                        f"{s.name}: {s.peer} is {other}, which has no BFD session to this "
                        f"node; add one there (peer: {s.local or 'this address'}) or the "
                        "session stays Down",
                    )
                continue
            _pair(node, model, s, other, match, error)
    return issues


def _yn(flag: bool) -> str:
    return "on" if flag else "off"


def _pair(
    node: str,
    model: BfdConfig,
    s: BfdSessionConfig,
    other: str,
    t: BfdSessionConfig,
    error: Any,
) -> None:
    """One end ``s`` on ``node`` against its matching session ``t`` on ``other``."""
    if s.passive and t.passive and node < other:
        error(
            node,
            model,
            s,
            "passive",
            f"{s.name}: passive here and in {other}'s session {t.name!r}: neither end "
            "starts talking; make one of them active",
        )
    if (s.auth is None) != (t.auth is None):
        mine = "on" if s.auth else "off"
        error(
            node,
            model,
            s,
            "auth",
            f"{s.name}: authentication is {mine} here but not in {other}'s session "
            f"{t.name!r}; both ends need the same type and keys",
        )
    elif s.auth is not None and t.auth is not None:
        if s.auth.type != t.auth.type:
            error(
                node,
                model,
                s,
                "auth.type",
                f"{s.name}: {s.auth.type} here but {t.auth.type} in {other}'s session "
                f"{t.name!r}; both ends must use one type",
            )
        else:
            send = s.auth.key(s.auth.send_key_id)
            theirs = t.auth.key(s.auth.send_key_id)
            assert send is not None
            if theirs is None:
                error(
                    node,
                    model,
                    s,
                    "auth.send_key_id",
                    f"{s.name}: this end sends with key id {send.id}, which {other}'s "
                    f"session {t.name!r} does not have; add it there first (a rollover adds "
                    "the new key on both ends before either sends with it)",
                )
            elif not _same_secret(send, theirs):
                error(
                    node,
                    model,
                    s,
                    "auth.send_key_id",
                    f"{s.name}: key id {send.id} has a different secret in {other}'s "
                    f"session {t.name!r} (secrets not shown); the peer would drop every "
                    "packet",
                )
    # The detection time this end asks for needs the other end to send that often.
    achieved = max(s.min_rx, t.min_tx) * t.multiplier
    wanted = s.min_rx * t.multiplier
    if achieved > wanted * 1.0001:
        error(
            node,
            model,
            s,
            "min_rx",
            f"{s.name}: asks for a packet every {_ms(s.min_rx)} but {other}'s session "
            f"{t.name!r} sends at most every {_ms(t.min_tx)} (min_tx), so this end detects a "
            f"failure in {_ms(achieved)}, not {_ms(wanted)}; lower min_tx on {other} or "
            "raise min_rx here",
        )


def _ms(value: float) -> str:
    return f"{value * 1000:g} ms"


def names_of(validated: Any) -> Iterable[str]:
    """Session names a validated ``bfd`` section defines (for other sections' checks)."""
    return list(getattr(validated, "names", []) or [])


SECTION = BfdSection()
