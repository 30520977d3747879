"""Fuzzing: any text either imports (with its problems listed) or fails as a parse error.

The importer reads files written by people; a typo must never surface as a traceback.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vigil.keepalived import import_keepalived, render_yaml, validation_errors
from vigil.keepalived.parser import KeepalivedParseError, parse_text

WORDS = [
    "global_defs",
    "vrrp_instance",
    "vrrp_script",
    "vrrp_sync_group",
    "track_file",
    "vrrp_track_process",
    "virtual_server",
    "group",
    "interface",
    "eth0",
    "virtual_router_id",
    "priority",
    "advert_int",
    "state",
    "MASTER",
    "nopreempt",
    "preempt_delay",
    "weight",
    "reverse",
    "authentication",
    "auth_type",
    "PASS",
    "AH",
    "auth_pass",
    "virtual_ipaddress",
    "virtual_ipaddress_excluded",
    "virtual_routes",
    "via",
    "dev",
    "src",
    "to",
    "table",
    "metric",
    "brd",
    "label",
    "scope",
    "unicast_src_ip",
    "unicast_peer",
    "track_interface",
    "track_script",
    "track_process",
    "notify",
    "notify_master",
    "use_vmac",
    "script",
    "interval",
    "timeout",
    "rise",
    "fall",
    "user",
    "init_fail",
    "init_file",
    "file",
    "process",
    "quorum",
    "delay",
    "v3_checksum_as_v2",
    "vrrp_version",
    "version",
    "vrrp_garp_interval",
    "vrrp_gna_interval",
    "vrrp_min_garp",
    "garp_master_delay",
    "10.0.0.1/24",
    "10.0.0.1",
    "fd00::1/64",
    "default",
    "1",
    "255",
    "300",
    "-20",
    "0.5",
    "x",
    "VI_1",
    "{",
    "}",
    "\n",
    "\n",
    "\n",
    "#",
    "!",
    '"',
    "'",
    "include",
    "@x",
    "$V=1",
]

texts = st.lists(st.sampled_from(WORDS), max_size=80).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(texts)
def test_parser_never_raises_anything_but_a_parse_error(text: str) -> None:
    try:
        parse_text(text, "fuzz.conf")
    except KeepalivedParseError as exc:
        assert str(exc).startswith("fuzz.conf")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts)
def test_import_never_crashes_and_always_renders(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "keepalived.conf"
        path.write_text(text)
        try:
            result = import_keepalived(str(path))
        except KeepalivedParseError as exc:
            assert str(exc).startswith(str(Path(tmp)))
            return
        assert render_yaml(result).startswith("# vigil config imported from")
        for problem in validation_errors(result):
            assert problem
