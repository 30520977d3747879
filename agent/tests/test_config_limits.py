"""Config limits: nesting depth, alias expansion and file size give a clear issue.

Regression for issue 15, defect 5: 600 levels of YAML made ``vigild --check`` print a
traceback, and a 50 MB file took 45 s and 657 MB to check.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from vigil.config import ConfigError
from vigil.config.loader import MAX_CONFIG_BYTES
from vigil.config.yamlload import MAX_ALIAS_NODES, MAX_DEPTH, MAX_NODES
from vigil.subsystems import check_command, load_config

pytestmark = pytest.mark.unit


def deep_block(levels: int) -> str:
    return "a:\n" + "".join("  " * i + f"b{i}:\n" for i in range(1, levels))


def deep_flow(levels: int) -> str:
    return "a: " + "[" * levels + "]" * levels + "\n"


def alias_bomb() -> str:
    lines = ["x-a: &l0 [1, 2, 3, 4, 5, 6, 7, 8, 9]"]
    for i in range(1, 10):
        lines.append(f"x-{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "vigil.yml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text", [deep_block(600), deep_flow(600)], ids=["block", "flow"])
def test_deep_nesting_is_one_issue_with_a_line(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    (issue,) = info.value.issues
    assert f"nested more than {MAX_DEPTH} levels" in issue.message
    assert issue.line is not None


MINIMAL = """\
vrrp_instances:
  - name: VI_1
    interface: eth0
    vrid: 51
    virtual_ipaddresses: [10.0.0.100/24]
"""


def test_nesting_within_the_limit_loads(tmp_path: Path) -> None:
    text = MINIMAL + "x-deep: " + "[" * 40 + "]" * 40 + "\n"
    assert load_config(write(tmp_path, text)).section("vrrp").instance("VI_1") is not None


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, alias_bomb()))
    (issue,) = info.value.issues
    assert f"aliases add more than {MAX_ALIAS_NODES} values" in issue.message


def test_a_director_with_ten_thousand_checked_real_servers_loads(tmp_path: Path) -> None:
    """1000 virtual servers x 10 real servers, each with an HTTP check: 2.6 MB and about
    250,000 values, which the first limits (1 MiB, 200,000 values) refused."""
    rs = (
        "      - address: 10.78.{a}.{b}\n        port: 80\n        weight: 1\n"
        "        checks:\n          - type: http\n            connect_timeout: 2\n"
        "            retry: 1\n            delay_before_retry: 1\n            path: /\n"
        "            status_codes: [200]\n"
    )
    parts = ["global:\n  router_id: lb\nvirtual_servers:\n"]
    for v in range(1000):
        parts.append(
            f"  - address: 10.79.{v // 250}.{v % 250 + 1}\n    port: 80\n    protocol: tcp\n"
            "    scheduler: wrr\n    delay_loop: 10\n    real_servers:\n"
        )
        parts += [rs.format(a=v // 25, b=(v % 25) * 10 + r + 1) for r in range(10)]
    text = "".join(parts)
    assert 2 << 20 < len(text) < MAX_CONFIG_BYTES
    config = load_config(write(tmp_path, text))
    assert len(config.section("ipvs").virtual_servers) == 1000


def test_a_plain_config_with_too_many_values_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flow list of 2 bytes per value fits 4 million values in the size limit. (The
    limit is lowered here: libyaml takes seconds to compose two million values.)"""
    from vigil.config import yamlload

    monkeypatch.setattr(yamlload, "MAX_NODES", 5000)
    text = "x-many: [" + ",".join(["1"] * 5010) + "]\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, MINIMAL + text))
    (issue,) = info.value.issues
    assert "more than 5000 values" in issue.message
    assert MAX_NODES * 2 < MAX_CONFIG_BYTES  # what the real limit is there for


def test_oversized_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = write(tmp_path, "# " + "x" * (MAX_CONFIG_BYTES + 10) + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (issue,) = info.value.issues
    assert f"larger than {MAX_CONFIG_BYTES >> 20} MiB" in issue.message and issue.file == path


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_check_prints_the_issue_and_exits_1(tmp_path: Path, fmt: str) -> None:
    out = io.StringIO()
    assert check_command(write(tmp_path, deep_block(600)), fmt, out) == 1
    text = out.getvalue()
    assert "Traceback" not in text
    if fmt == "json":
        doc = json.loads(text)
        assert doc["valid"] is False and "nested more than" in doc["errors"][0]["message"]
    else:
        assert len(text.splitlines()) == 1 and "nested more than" in text
