"""The voluptuous schema of VRRP's part of vigil.yml (docs/configuration.md).

This layer checks types, ranges and keys of each part on its own, and normalizes the
shape (VIP strings -> mappings, track shorthands -> mappings, durations -> floats).
Checks that need several parts at once (VRID clashes, references, families) live in
``semantic.py``; values inherited from ``global`` are resolved in ``build.py``.
"""

from __future__ import annotations

from typing import Any

import voluptuous as vol

from vigil.config.validators import (
    Struct,
    boolean,
    choice,
    ifname,
    integer,
    ip_address,
    ip_interface,
    ip_network_or_default,
    list_of,
    name,
    nullable,
    required,
    seconds,
    show,
    string,
)

SCOPES = ("global", "site", "link", "host")

GARP_DEFAULTS: dict[str, Any] = {
    "master_delay": 5.0,
    "master_repeat": 5,
    "master_refresh": 0.0,
    "master_refresh_repeat": 1,
    "interval": 0.0,
    "lower_prio_delay": 5.0,
    "lower_prio_repeat": 5,
}


def _garp_fields(with_defaults: bool) -> dict[Any, Any]:
    validators: dict[str, Any] = {
        "master_delay": seconds(0, 3600),
        "master_repeat": integer(1, 10000),
        "master_refresh": seconds(0, 86400),
        "master_refresh_repeat": integer(1, 10000),
        "interval": seconds(0, 60),
        "lower_prio_delay": seconds(0, 3600),
        "lower_prio_repeat": integer(0, 10000),
    }
    if with_defaults:
        return {vol.Optional(k, default=GARP_DEFAULTS[k]): v for k, v in validators.items()}
    return {vol.Optional(k): v for k, v in validators.items()}


GARP_GLOBAL = Struct(_garp_fields(with_defaults=True), what="a garp mapping")
GARP_OVERRIDE = Struct(_garp_fields(with_defaults=False), what="a garp mapping")

#: the keys VRRP adds under ``global``: defaults its instances inherit
GLOBAL_FIELDS: dict[Any, Any] = {
    vol.Optional("vrrp_version", default=2): choice(2, 3),
    vol.Optional("v3_checksum_pseudo_header", default=True): boolean,
    vol.Optional("garp", default=dict): GARP_GLOBAL,
}

VIP_MAPPING = Struct(
    {
        required("address"): ip_interface,
        vol.Optional("dev", default=None): nullable(ifname),
        vol.Optional("label", default=None): nullable(string(15)),
        vol.Optional("scope", default="global"): choice(*SCOPES),
    },
    what="a VIP: an address string or a mapping with 'address'",
)


def vip(value: Any) -> dict[str, Any]:
    """A VIP written as ``10.0.0.1/24`` or as a mapping; always returns the mapping form."""
    if isinstance(value, str):
        return {"address": ip_interface(value), "dev": None, "label": None, "scope": "global"}
    if isinstance(value, dict):
        return VIP_MAPPING(value)
    raise vol.Invalid(
        f"expected a VIP: an address string like '10.0.0.100/24' or a mapping, got {show(value)}"
    )


ROUTE = Struct(
    {
        required("to"): ip_network_or_default,
        vol.Optional("via", default=None): nullable(ip_address),
        vol.Optional("dev", default=None): nullable(ifname),
        vol.Optional("src", default=None): nullable(ip_address),
        vol.Optional("metric", default=None): nullable(integer(0, 2**32 - 1)),
        vol.Optional("table", default=None): nullable(integer(1, 2**32 - 1)),
        vol.Optional("scope", default=None): nullable(choice(*SCOPES)),
    },
    what="a route mapping with at least 'to'",
)

UNICAST = Struct(
    {
        vol.Optional("source", default=None): nullable(ip_address),
        required("peers"): list_of(ip_address, what="a list of peer addresses"),
    },
    what="a mapping {source: ADDR, peers: [ADDR, ...]}",
)


def _password(value: Any) -> str:
    text = string(what="a password string")(value)
    if len(text) > 8:
        raise vol.Invalid(
            f"is {len(text)} characters long; VRRPv2 PASS authentication carries at most 8"
        )
    return text


AUTHENTICATION = Struct(
    {
        vol.Optional("type", default="pass"): choice("pass"),
        required("password"): _password,
    },
    what="a mapping {type: pass, password: STR}",
)


def _track_item(weight: Any, *, default_weight: Any) -> Any:
    """A track entry: a bare name, or ``{name, weight, weight_reverse}``."""
    mapping = Struct(
        {
            required("name"): name,
            vol.Optional("weight", default=default_weight): nullable(weight),
            vol.Optional("weight_reverse", default=None): nullable(boolean),
        },
        what="a name or a mapping {name: ..., weight: N}",
    )

    def check(value: Any) -> dict[str, Any]:
        if isinstance(value, str):
            return mapping({"name": value})
        if isinstance(value, dict):
            return mapping(value)
        raise vol.Invalid(
            f"expected a name or a mapping {{name: ..., weight: N}}, got {show(value)}"
        )

    return check


TRACK_INTERFACE = Struct(
    {
        required("name"): ifname,
        vol.Optional("weight", default=0): integer(-253, 253),
        vol.Optional("weight_reverse", default=False): boolean,
    },
    what="an interface name or a mapping {name: eth1, weight: -20}",
)


def _track_interface(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return TRACK_INTERFACE({"name": value})
    if isinstance(value, dict):
        return TRACK_INTERFACE(value)
    raise vol.Invalid(f"expected an interface name or a mapping {{name: eth1}}, got {show(value)}")


TRACK = Struct(
    {
        vol.Optional("interfaces", default=list): list_of(_track_interface),
        vol.Optional("scripts", default=list): list_of(
            _track_item(integer(-253, 253), default_weight=None)
        ),
        vol.Optional("files", default=list): list_of(
            _track_item(integer(-254, 254), default_weight=None)
        ),
        vol.Optional("processes", default=list): list_of(
            _track_item(integer(-254, 254), default_weight=None)
        ),
        # BFD sessions (the bfd section): weight 0, the default, means FAULT while not Up
        vol.Optional("bfd", default=list): list_of(
            _track_item(integer(-253, 253), default_weight=0)
        ),
    },
    what="a mapping with interfaces, scripts, files, processes, bfd",
)

NOTIFY = Struct(
    {
        vol.Optional("master", default=None): nullable(string(what="a command")),
        vol.Optional("backup", default=None): nullable(string(what="a command")),
        vol.Optional("fault", default=None): nullable(string(what="a command")),
        vol.Optional("stop", default=None): nullable(string(what="a command")),
        vol.Optional("generic", default=None): nullable(string(what="a command")),
        vol.Optional("timeout", default=None): nullable(seconds(0.01, 3600)),
    },
    what="a mapping of notify commands",
)


def _use_vmac(value: Any) -> bool | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return ifname(value)
    raise vol.Invalid(f"expected true, false or a macvlan interface name, got {show(value)}")


INSTANCE = Struct(
    {
        required("name"): name,
        required("interface"): ifname,
        required("vrid"): integer(1, 255),
        vol.Optional("priority"): integer(1, 255),
        vol.Optional("address_owner", default=False): boolean,
        vol.Optional("version"): choice(2, 3),
        vol.Optional("advert_interval", default=1): seconds(0.01, 255),
        vol.Optional("preempt", default=True): boolean,
        vol.Optional("preempt_delay", default=0): seconds(0, 1000),
        vol.Optional("unicast"): UNICAST,
        vol.Optional("authentication"): AUTHENTICATION,
        required("virtual_ipaddresses"): list_of(
            vip, min_length=1, what="a list of VIPs (address strings or mappings)"
        ),
        vol.Optional("virtual_ipaddresses_excluded", default=list): list_of(
            vip, what="a list of VIPs"
        ),
        vol.Optional("virtual_routes", default=list): list_of(ROUTE, what="a list of routes"),
        vol.Optional("garp", default=dict): GARP_OVERRIDE,
        vol.Optional("v3_checksum_pseudo_header"): boolean,
        vol.Optional("use_vmac", default=False): _use_vmac,
        vol.Optional("track", default=dict): TRACK,
        # fast peer detection: a BFD session to the master; Down means take over now
        vol.Optional("fast_takeover_bfd"): name,
        vol.Optional("notify", default=dict): NOTIFY,
    },
    what="a VRRP instance mapping",
)


SYNC_GROUP = Struct(
    {
        required("name"): name,
        required("members"): list_of(name, min_length=1, what="a list of instance names"),
        vol.Optional("notify", default=dict): NOTIFY,
    },
    what="a sync group mapping {name: G1, members: [VI_1, VI_2]}",
)
