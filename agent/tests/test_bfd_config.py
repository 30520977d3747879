"""The ``bfd`` section of vigil.yml: schema, resolution, semantic checks, model, diff, cluster."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from vigil.bfd.auth import AuthConfig
from vigil.bfd.config import BfdConfig, BfdSessionConfig, diff_bfd
from vigil.bfd.packet import AuthType
from vigil.config import ClusterContext, Config, ConfigError, Issue
from vigil.subsystems import check_cluster, diff_configs, load_config, validate_data

pytestmark = pytest.mark.unit

SHA = {"type": "meticulous_keyed_sha1", "keys": [{"id": 1, "secret": "s3cret"}]}


def sess(name: str = "up", peer: str = "10.0.0.1", **extra: Any) -> dict[str, Any]:
    return {"name": name, "peer": peer, **extra}


def cfg(*sessions: dict[str, Any], **bfd: Any) -> dict[str, Any]:
    return {"global": {"router_id": "n1"}, "bfd": {"sessions": list(sessions), **bfd}}


def valid(data: dict[str, Any]) -> BfdConfig:
    model: BfdConfig = validate_data(data, check_files=False).section("bfd")
    return model


def issues(data: dict[str, Any]) -> dict[str, Issue]:
    with pytest.raises(ConfigError) as info:
        validate_data(data, check_files=False)
    return {issue.path: issue for issue in info.value.issues}


def only(data: dict[str, Any]) -> Issue:
    found = issues(data)
    assert len(found) == 1, found
    return next(iter(found.values()))


# --------------------------------------------------------------------------- resolution


def test_defaults_profile_and_session_values_in_that_order() -> None:
    model = valid(
        cfg(
            sess("a"),
            sess("b", "10.0.0.2", profile="fast"),
            sess("c", "10.0.0.3", profile="fast", multiplier=5, passive=True),
            defaults={"min_tx": 0.2, "multiplier": 4},
            profiles={"fast": {"min_tx": 0.05, "min_rx": 0.05}},
        )
    )
    a, b, c = model.sessions
    assert (a.min_tx, a.min_rx, a.multiplier, a.passive) == (0.2, 0.3, 4, False)
    assert (b.min_tx, b.min_rx, b.multiplier, b.profile) == (0.05, 0.05, 4, "fast")
    assert (c.min_tx, c.multiplier, c.passive) == (0.05, 5, True)
    assert model.session_names == ("a", "b", "c")
    assert model.session("b") is b
    with pytest.raises(KeyError, match="this config has: a, b, c"):
        model.session("d")


def test_no_bfd_key_is_an_empty_section_and_adds_nothing_to_the_file() -> None:
    config = validate_data({"global": {"router_id": "n1"}}, check_files=False)
    assert config.section("bfd") == BfdConfig()
    assert "bfd" not in config.to_dict()


def test_the_session_becomes_the_engines_spec() -> None:
    model = valid(
        cfg(
            sess(
                "mh",
                "fd00:2::1",
                local="fd00:1::1",
                multihop=True,
                min_ttl=250,
                auth={**SHA, "keys": [*SHA["keys"], {"id": 2, "secret": "next"}], "send_key_id": 2},
            )
        )
    )
    spec = model.sessions[0].spec()
    assert spec.key.multihop and spec.min_ttl == 250 and spec.label == "mh"
    assert spec.peer_ip == ipaddress.ip_address("fd00:2::1")
    assert isinstance(spec.auth, AuthConfig)
    assert spec.auth.type is AuthType.METICULOUS_KEYED_SHA1
    assert spec.auth.send_key_id == 2 and [k.key_id for k in spec.auth.keys] == [1, 2]
    assert model.sessions[0].spec(admin_down=True).admin_down


def test_a_single_key_is_the_send_key() -> None:
    (s,) = valid(cfg(sess(auth=SHA))).sessions
    assert s.auth is not None and s.auth.send_key_id == 1


def test_auth_from_a_profile_and_type_spelling() -> None:
    model = valid(
        cfg(
            sess(profile="p"),
            profiles={"p": {"auth": {"type": "Keyed-MD5", "keys": [{"id": 3, "secret": "x"}]}}},
        )
    )
    auth = model.sessions[0].auth
    assert auth is not None and auth.type == "keyed_md5" and auth.send_key_id == 3


# --------------------------------------------------------------------------- errors


def test_unknown_keys_say_did_you_mean() -> None:
    found = issues(cfg(sess(min_txx=0.1), profiles={"p": {"multiplyer": 3}}, sesions=[]))
    assert found["bfd.sessions[0].min_txx"].message == "unknown key; did you mean 'min_tx'?"
    assert "did you mean 'multiplier'?" in found["bfd.profiles.p.multiplyer"].message
    assert "did you mean 'sessions'?" in found["bfd.sesions"].message


def test_every_problem_at_once_with_paths() -> None:
    found = issues(
        cfg(
            sess("a", "10.0.0.1", local="fd00::1"),
            sess("b", "10.0.0.2", multihop=True),
            sess("c", "fe80::1"),
            sess("d", "10.0.0.4", min_ttl=200),
            sess("e", "10.0.0.5", profile="fats"),
            sess("f", "10.0.0.6", min_tx=0.001, multiplier=0),
            profiles={"fast": {}},
        )
    )
    assert "is IPv6 but the peer 10.0.0.1 is IPv4" in found["bfd.sessions[0].local"].message
    assert "multihop session needs the local address" in found["bfd.sessions[1].local"].message
    assert "link-local: name the interface" in found["bfd.sessions[2].interface"].message
    assert "min_ttl applies to multihop sessions only" in found["bfd.sessions[3].min_ttl"].message
    assert (
        found["bfd.sessions[4].profile"].message == "unknown profile 'fats'; did you mean 'fast'?"
    )
    assert found["bfd.sessions[5].min_tx"].message == "must be at least 0.01"
    assert found["bfd.sessions[5].multiplier"].message == "must be at least 1"
    assert len(found) == 7


def test_names_and_sessions_are_unique() -> None:
    found = issues(
        cfg(
            sess("a", "10.0.0.1"),
            sess("a", "10.0.0.2"),
            sess("b", "10.0.0.1"),
        )
    )
    assert "'a' is also the name of bfd.sessions[0]" in found["bfd.sessions[1].name"].message
    assert "the same session as bfd.sessions[0]" in found["bfd.sessions[2]"].message


def test_auth_checks() -> None:
    found = issues(
        cfg(
            sess(
                "a",
                auth={
                    "type": "keyed_md5",
                    "keys": [{"id": 1, "secret": "x" * 17}, {"id": 1, "secret": "y"}],
                },
            ),
            sess("b", "10.0.0.2", auth={"type": "simple_password", "keys": [{"id": 1}]}),
            sess("c", "10.0.0.3", auth={**SHA, "send_key_id": 9}),
            sess("d", "10.0.0.4", auth={"type": "keyd_sha1", "keys": [{"id": 1, "secret": "x"}]}),
        )
    )
    base = "bfd.sessions[0].auth"
    assert (
        "keyed MD5 takes a secret of 1 to 16 bytes, got 17"
        in found[f"{base}.keys[0].secret"].message
    )
    assert "key id 1 is also keys[0]" in found[f"{base}.keys[1].id"].message
    assert "say which one this end sends with" in found[f"{base}.send_key_id"].message
    assert found["bfd.sessions[1].auth.keys[0].secret"].message == "required key missing"
    assert "9 is not among the keys' ids (1)" in found["bfd.sessions[2].auth.send_key_id"].message
    assert "did you mean 'keyed_sha1'?" in found["bfd.sessions[3].auth.type"].message


def test_errors_carry_the_line_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "vigil.yml"
    path.write_text(
        "global: {router_id: n1}\n"
        "bfd:\n"
        "  sessions:\n"
        "    - name: up\n"
        "      peer: 10.0.0.1\n"
        "      multiplier: 300\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(str(path), check_files=False)
    (issue,) = info.value.issues
    assert str(issue) == f"{path}:6: bfd.sessions[0].multiplier: must be at most 255"


def test_a_bad_bfd_value_is_named() -> None:
    issue = only({"global": {"router_id": "n1"}, "bfd": ["x"]})
    assert issue.path == "bfd" and "expected a mapping with defaults, profiles, sessions" in (
        issue.message
    )


# --------------------------------------------------------------------------- model


def test_secrets_are_redacted_and_round_trip_without_redaction() -> None:
    config = validate_data(
        cfg(sess(auth=SHA), profiles={"p": {"auth": SHA}}, defaults={"multiplier": 4}),
        check_files=False,
    )
    shown = config.to_dict(redact=True)["bfd"]
    assert shown["sessions"][0]["auth"]["keys"] == [{"id": 1, "secret": "<redacted>"}]
    assert shown["profiles"]["p"]["auth"]["keys"][0]["secret"] == "<redacted>"
    assert "s3cret" not in repr(config)
    again = validate_data(config.to_dict(redact=False), check_files=False)
    assert again == config


def test_summary_counts_sessions() -> None:
    config = validate_data(cfg(sess("a"), sess("b", "10.0.0.2")), check_files=False)
    from vigil.bfd.config import SECTION

    assert SECTION.summary(config.section("bfd")) == (2, "BFD sessions")


# --------------------------------------------------------------------------- diff


def _model(*sessions: BfdSessionConfig) -> BfdConfig:
    return BfdConfig(sessions=tuple(sessions))


def test_diff_tells_timers_from_identity() -> None:
    ip = ipaddress.ip_address
    a = BfdSessionConfig("a", ip("10.0.0.1"))
    b = BfdSessionConfig("b", ip("10.0.0.2"))
    c = BfdSessionConfig("c", ip("10.0.0.3"))
    diff = diff_bfd(
        _model(a, b, c),
        _model(
            BfdSessionConfig("a", ip("10.0.0.1"), min_tx=0.05),
            BfdSessionConfig("b", ip("10.0.0.9")),
            BfdSessionConfig("d", ip("10.0.0.4")),
        ),
    )
    assert diff.added == ("d",) and diff.removed == ("c",)
    assert diff.changed == ("a", "b") and diff.recreated == ("b",)
    assert diff.details["a"] == ("min_tx",)
    assert not diff.empty and "added d" in diff.summary()
    assert diff_bfd(_model(a), _model(a)).empty


def test_reload_diff_through_the_config_core() -> None:
    old = validate_data(cfg(sess("a")), check_files=False)
    new = validate_data(cfg(sess("a", min_rx=0.1)), check_files=False)
    diff = diff_configs(old, new).to_dict()
    assert diff["bfd"]["changed"] == ["a"]
    assert diff["bfd"]["details"] == {"a": {"fields": ["min_rx"]}}


# --------------------------------------------------------------------------- cluster


def node(rid: str, *sessions: dict[str, Any]) -> Config:
    return validate_data(
        {"global": {"router_id": rid}, "bfd": {"sessions": list(sessions)}}, check_files=False
    )


def pair_issues(one: list[dict[str, Any]], two: list[dict[str, Any]]) -> list[Issue]:
    return check_cluster({"n1": node("n1", *one), "n2": node("n2", *two)})


A, B, R = "10.9.0.1", "10.9.0.2", "10.9.0.254"


def test_a_matching_pair_and_sessions_to_routers_are_fine() -> None:
    router = sess("gw", R, local=None)
    assert (
        pair_issues(
            [sess("to-n2", B, local=A, auth=SHA), {**router, "local": A}],
            [sess("to-n1", A, local=B, auth=SHA), {**router, "local": B}],
        )
        == []
    )


def test_a_session_to_a_node_without_one_back() -> None:
    (issue,) = pair_issues([sess("to-n2", B, local=A)], [sess("gw", R, local=B)])
    assert issue.file == "n1" and issue.path == "bfd.sessions[0].peer"
    assert "10.9.0.2 is n2, which has no BFD session to this node" in issue.message


def test_node_addresses_from_the_context_find_sessions_without_local() -> None:
    """Without ``local`` nothing says 10.9.0.2 is n2, unless the caller knows its addresses."""
    one, two = [sess("to-n2", B)], [sess("gw", R)]
    assert pair_issues(one, two) == []
    addrs = {"n1": [ipaddress.ip_address(A)], "n2": [ipaddress.ip_address(B)]}
    context = ClusterContext(addresses=lambda node: addrs[node])
    (issue,) = check_cluster({"n1": node("n1", *one), "n2": node("n2", *two)}, context)
    assert issue.file == "n1" and issue.path == "bfd.sessions[0].peer"
    assert "10.9.0.2 is n2, which has no BFD session to this node" in issue.message
    both = [sess("to-n1", A)]
    assert check_cluster({"n1": node("n1", *one), "n2": node("n2", *both)}, context) == []


def test_auth_mismatches_never_show_a_secret() -> None:
    other = {**SHA, "keys": [{"id": 1, "secret": "zz-other-zz"}]}
    found = pair_issues([sess("x", B, local=A, auth=SHA)], [sess("y", A, local=B, auth=other)])
    assert {(i.file, i.path) for i in found} == {
        ("n1", "bfd.sessions[0].auth.send_key_id"),
        ("n2", "bfd.sessions[0].auth.send_key_id"),
    }
    assert all("different secret" in i.message for i in found)
    assert not any("s3cret" in str(i) or "zz-other-zz" in str(i) for i in found)
    found = pair_issues([sess("x", B, local=A, auth=SHA)], [sess("y", A, local=B)])
    assert {i.path for i in found} == {"bfd.sessions[0].auth"}
    rolled = {**SHA, "keys": [*SHA["keys"], {"id": 2, "secret": "k2"}], "send_key_id": 2}
    found = pair_issues([sess("x", B, local=A, auth=rolled)], [sess("y", A, local=B, auth=SHA)])
    (issue,) = found
    assert issue.file == "n1" and "key id 2, which n2's session 'y' does not have" in issue.message


def test_multihop_both_passive_and_slow_transmitters() -> None:
    found = pair_issues(
        [sess("x", B, local=A, multihop=True)], [sess("y", A, local=B, multihop=False)]
    )
    assert {i.path for i in found} == {"bfd.sessions[0].multihop"}
    found = pair_issues(
        [sess("x", B, local=A, passive=True)], [sess("y", A, local=B, passive=True)]
    )
    assert [i.path for i in found] == ["bfd.sessions[0].passive"]
    found = pair_issues(
        [sess("x", B, local=A, min_rx=0.02, min_tx=0.02)],
        [sess("y", A, local=B, min_tx=0.3, min_rx=0.3)],
    )
    (issue,) = found
    assert issue.file == "n1" and issue.path == "bfd.sessions[0].min_rx"
    assert "detects a failure in 900 ms, not 60 ms" in issue.message
