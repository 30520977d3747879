"""Real keepalived (`keepalived -t`) as the judge that the fixtures are genuine syntax.

`keepalived -t` only parses and checks, but it insists that the interfaces it is given
exist and that scripts are present and safe. Each check therefore runs in a throw-away
user + network + mount namespace (`unshare -rnm`, no root needed): veth pairs named as
the config's interfaces, and a tmpfs over /etc/keepalived with stub scripts. The
namespaces die with the process, so nothing is left behind and the host's interfaces
and /etc are never touched.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from vigil.keepalived import import_keepalived

FIXTURES = Path(__file__).parent / "fixtures" / "keepalived"
VALID_FOR_2_2_7 = [
    "haproxy_pair/lb1.conf",
    "haproxy_pair/lb2.conf",
    "multi_interface.conf",
    "unicast.conf",
    "ipv6.conf",
    "sync_groups.conf",
    "split/keepalived.conf",
    "lvs_director.conf",
]
STUB_DIR = "/etc/keepalived/"


def _can_unshare() -> str | None:
    if shutil.which("keepalived") is None:
        return "keepalived is not installed"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--net", "--mount", "true"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if probe.returncode != 0:
        return f"unprivileged user namespaces unavailable: {probe.stderr.strip()}"
    return None


SKIP = _can_unshare()
pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")


def _interfaces(config: dict[str, Any]) -> list[str]:
    names: set[str] = set()
    for inst in config.get("vrrp_instances", []):
        if "interface" in inst:
            names.add(inst["interface"])
        for key in ("virtual_ipaddresses", "virtual_ipaddresses_excluded", "virtual_routes"):
            names.update(v["dev"] for v in inst.get(key, []) if isinstance(v, dict) and "dev" in v)
        for item in inst.get("track", {}).get("interfaces", []):
            names.add(item if isinstance(item, str) else item["name"])
    return sorted(names)


def _programs(config: dict[str, Any]) -> list[str]:
    commands = [s["script"] for s in config.get("vrrp_scripts", {}).values()]
    for obj in [*config.get("vrrp_instances", []), *config.get("vrrp_sync_groups", [])]:
        commands += [c for k, c in obj.get("notify", {}).items() if k != "timeout"]
    return sorted({shlex.split(c)[0] for c in commands})


def keepalived_check(conf: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run `keepalived -t -f conf` in a private namespace prepared from our own import."""
    config = import_keepalived(conf).config
    steps = ["set -e", f"mount -t tmpfs -o mode=755 tmpfs {STUB_DIR}"]
    for program in _programs(config):
        if program.startswith(STUB_DIR):
            quoted = shlex.quote(program)
            steps += [
                f"mkdir -p {shlex.quote(os.path.dirname(program))}",
                f"printf '#!/bin/sh\\nexit 0\\n' > {quoted}",
                f"chmod 755 {quoted}",
            ]
    for index, name in enumerate(_interfaces(config)):
        steps.append(f"ip link add {shlex.quote(name)} type veth peer name ktpeer{index}")
    pids = " ".join(f"-{flag} {tmp_path}/{flag}.pid" for flag in "prcb")
    steps.append(f"exec keepalived -t -l -n -f {shlex.quote(os.path.abspath(conf))} {pids}")
    return subprocess.run(
        ["unshare", "--user", "--map-root-user", "--net", "--mount", "sh", "-c", "\n".join(steps)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("name", VALID_FOR_2_2_7)
def test_keepalived_accepts_valid_fixture(name: str, tmp_path: Path) -> None:
    proc = keepalived_check(str(FIXTURES / name), tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("name", "complaint"),
    [
        ("invalid_duplicate_vrid.conf", "both use VRID 51"),
        ("invalid_priority.conf", "outside range"),
    ],
)
def test_keepalived_rejects_what_the_import_rejects(
    name: str, complaint: str, tmp_path: Path
) -> None:
    proc = keepalived_check(str(FIXTURES / name), tmp_path)
    assert proc.returncode != 0
    assert complaint in proc.stdout + proc.stderr


def test_checksum_keyword_is_newer_than_installed_keepalived(tmp_path: Path) -> None:
    """v3_checksum_as_v2 arrived in keepalived 2.2.8; Debian 12 ships 2.2.7."""
    version = subprocess.run(
        ["keepalived", "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    if "v2.2.7" not in version.stdout + version.stderr:
        pytest.skip("only meaningful against keepalived 2.2.7")
    proc = keepalived_check(str(FIXTURES / "checksum_v3_as_v2.conf"), tmp_path)
    assert "Unknown keyword 'v3_checksum_as_v2'" in proc.stdout + proc.stderr


def test_keepalived_also_zeroes_track_weights_in_sync_groups(tmp_path: Path) -> None:
    """The importer's weight-0 rule for sync-group members is what keepalived itself does."""
    conf = tmp_path / "keepalived.conf"
    conf.write_text(
        "global_defs {\n  script_user root\n  enable_script_security\n}\n"
        "vrrp_script chk {\n  script /usr/bin/true\n  weight -20\n}\n"
        "vrrp_sync_group G {\n  group {\n    VI_1\n    VI_2\n  }\n}\n"
        "vrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 1\n"
        "  virtual_ipaddress {\n    10.0.0.1/24\n  }\n  track_script {\n    chk\n  }\n}\n"
        "vrrp_instance VI_2 {\n  interface eth0\n  virtual_router_id 2\n"
        "  virtual_ipaddress {\n    10.0.0.2/24\n  }\n}\n"
    )
    proc = keepalived_check(str(conf), tmp_path)
    assert "ignoring tracked script chk with weights due to SYNC group" in proc.stdout + proc.stderr
    inst = import_keepalived(str(conf)).config["vrrp_instances"][0]
    assert inst["track"]["scripts"] == [{"name": "chk", "weight": 0}]
