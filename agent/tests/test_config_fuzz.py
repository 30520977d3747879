"""Whatever the input, the loader answers with a Config or a ConfigError, never a crash."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vigil.config import Config, ConfigError
from vigil.config.yamlload import load_yaml
from vigil.subsystems import validate_data

KEYS = [
    "global",
    "vrrp_instances",
    "vrrp_scripts",
    "track_files",
    "track_processes",
    "vrrp_sync_groups",
    "name",
    "interface",
    "vrid",
    "priority",
    "version",
    "advert_interval",
    "virtual_ipaddresses",
    "virtual_routes",
    "unicast",
    "peers",
    "source",
    "authentication",
    "password",
    "track",
    "scripts",
    "interfaces",
    "weight",
    "members",
    "notify",
    "garp",
    "use_vmac",
    "address",
    "to",
    "via",
    "script",
    "file",
    "process",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-300, 300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["10.0.0.1", "fd00::1/64", "eth0", "VI_1", "default", "", "x y", "/bin/true"]),
    st.text(max_size=12),
)

junk = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.text(max_size=6)), children, max_size=5
        ),
    ),
    max_leaves=15,
)


def outcome(data: Any) -> str:
    try:
        config = validate_data(data, check_files=False)
    except ConfigError as exc:
        assert exc.issues, "a ConfigError always carries at least one issue"
        for issue in exc.issues:
            assert issue.message
            str(issue)
        return "invalid"
    assert isinstance(config, Config)
    config.to_dict()
    return "valid"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(junk)
def test_random_structures_never_crash(data: Any) -> None:
    assert outcome(data) in ("valid", "invalid")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(KEYS[:6]),
        st.one_of(
            junk,
            st.lists(st.dictionaries(st.sampled_from(KEYS), junk, max_size=6), max_size=3),
        ),
        max_size=6,
    )
)
def test_config_shaped_junk_never_crashes(data: dict[str, Any]) -> None:
    assert outcome(data) in ("valid", "invalid")


@settings(max_examples=80, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"\n\t #,.1%@`<?=")), max_size=60))
def test_random_yaml_text_never_crashes(text: str) -> None:
    loaded = load_yaml(text)
    for issue in loaded.issues:
        assert issue.line is None or issue.line >= 1
    if not loaded.issues or loaded.data is not None:
        outcome(loaded.data)
