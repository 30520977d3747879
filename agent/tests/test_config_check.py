"""check_command (vigild --check) output, and that every shipped example validates."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from vigil.subsystems import check_command, load_config

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures" / "config"
EXAMPLES = sorted((REPO / "examples").rglob("*.yml"))


def run(path: Path | str, fmt: str = "text") -> tuple[int, str]:
    out = io.StringIO()
    code = check_command(str(path), fmt, out)
    return code, out.getvalue()


def test_valid_text() -> None:
    path = REPO / "examples" / "demo" / "node1.yml"
    assert run(path) == (0, f"{path}: OK (2 VRRP instances)\n")


def test_valid_json() -> None:
    path = REPO / "examples" / "demo" / "node2.yml"
    code, text = run(path, "json")
    assert code == 0
    assert json.loads(text) == {
        "valid": True,
        "file": str(path),
        "errors": [],
        "counts": {"bfd": 0, "vrrp": 2, "ipvs": 0},
    }


def test_singular_noun(tmp_path: Path) -> None:
    path = tmp_path / "one.yml"
    path.write_text(
        "vrrp_instances:\n"
        "  - {name: A, interface: eth0, vrid: 1, virtual_ipaddresses: [10.0.0.1]}\n"
    )
    assert run(path)[1].endswith(": OK (1 VRRP instance)\n")


def test_invalid_text_lists_every_issue_as_file_line_path_message() -> None:
    path = FIXTURES / "many_mistakes.yml"
    code, text = run(path)
    assert code == 1
    lines = text.splitlines()
    assert len(lines) == 19
    assert f"{path}:25: vrrp_instances[1].vrid: must be at most 255" in lines
    assert f"{path}:26: vrrp_instances[1].prioirty: unknown key; did you mean 'priority'?" in lines
    assert all(line.startswith(f"{path}:") for line in lines)


def test_invalid_json() -> None:
    path = FIXTURES / "many_mistakes.yml"
    code, text = run(path, "json")
    assert code == 1
    payload = json.loads(text)
    assert payload["valid"] is False
    assert len(payload["errors"]) == 19
    first = payload["errors"][0]
    assert set(first) == {"path", "message", "line", "file"}
    assert first == {
        "path": "global.log_levle",
        "message": "unknown key; did you mean 'log_level'?",
        "line": 4,
        "file": str(path),
    }


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yml"
    code, text = run(missing)
    assert code == 1
    assert text.startswith(f"{missing}: cannot read the config")


def test_unknown_format_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="'xml'"):
        check_command("x.yml", "xml", io.StringIO())


def test_demo_pair_matches_the_lab_contract() -> None:
    node1 = load_config(str(REPO / "examples" / "demo" / "node1.yml"))
    node2 = load_config(str(REPO / "examples" / "demo" / "node2.yml"))
    for config, router_id, priority in ((node1, "node1", 150), (node2, "node2", 100)):
        assert config.globals.router_id == router_id
        assert config.vrrp_sync_groups == () and config.vrrp_scripts == {}
        v4, v6 = config.section("vrrp").instance("VI_4"), config.section("vrrp").instance("VI_6")
        assert (v4.interface, v4.vrid, v4.version, v4.advert_interval) == ("eth0", 51, 3, 1.0)
        assert [str(v.address) for v in v4.vips] == ["10.99.0.100/24"]
        assert (v6.interface, v6.vrid, v6.version) == ("eth0", 52, 3)
        assert [str(v.address) for v in v6.vips] == ["fd00:99::100/64"]
        assert v4.priority == v6.priority == priority


@pytest.mark.parametrize("path", EXAMPLES, ids=[str(p.relative_to(REPO)) for p in EXAMPLES])
def test_every_example_validates(path: Path) -> None:
    assert EXAMPLES, "no examples found"
    config = load_config(str(path), check_files=False)
    assert config.vrrp_instances


@pytest.mark.parametrize("path", EXAMPLES, ids=[str(p.relative_to(REPO)) for p in EXAMPLES])
def test_every_example_passes_vigild_check_on_debian(path: Path) -> None:
    # the full example names Debian programs (pgrep, logger); check them where they exist
    for program in ("/usr/bin/pgrep", "/usr/bin/logger"):
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed here")
    code, text = run(path)
    assert code == 0, text


def test_bfd_and_its_consumers_are_checked_with_file_lines(tmp_path: Path) -> None:
    """vigild --check on a file with a bfd section and the three things that use it: every
    mistake at once, each with its line, and the bad session named where it is used."""
    path = tmp_path / "bfd.yml"
    path.write_text(
        "global: {realtime_priority: 120}\n"  # 1
        "bfd:\n"  # 2
        "  sessions:\n"  # 3
        "    - {name: upstream, peer: 10.0.0.254, min_tx: 0, multiplier: 3}\n"  # 4
        "vrrp_instances:\n"  # 5
        "  - name: VI_1\n"  # 6
        "    interface: eth0\n"  # 7
        "    vrid: 1\n"  # 8
        "    virtual_ipaddresses: [10.0.0.1/24]\n"  # 9
        "    track: {bfd: [upstrem]}\n"  # 10
        "virtual_servers:\n"  # 11
        "  - address: 10.0.0.1\n"  # 12
        "    port: 80\n"  # 13
        "    real_servers:\n"  # 14
        "      - address: 10.0.1.1\n"  # 15
        "        checks: [{type: bfd, session: upstrem}]\n"  # 16
    )
    code, text = run(path)
    assert code == 1
    lines = text.splitlines()
    assert any(
        line.startswith(f"{path}:1: global.realtime_priority:") and "at most 99" in line
        for line in lines
    ), text
    assert any(line.startswith(f"{path}:4: bfd.sessions[0].min_tx:") for line in lines), text
    assert any(
        "vrrp_instances[0].track.bfd" in line and "did you mean 'upstream'" in line
        for line in lines
    ), text
    assert any(
        "virtual_servers[0].real_servers[0].checks[0]: session: no BFD session named "
        "'upstrem'; did you mean 'upstream'?" in line
        for line in lines
    ), text
    path.write_text(
        path.read_text()
        .replace("realtime_priority: 120", "realtime_priority: 10")
        .replace("min_tx: 0,", "min_tx: 0.05,")
        .replace("upstrem", "upstream")
    )
    assert run(path) == (0, f"{path}: OK (1 BFD session, 1 VRRP instance, 1 virtual server)\n")
