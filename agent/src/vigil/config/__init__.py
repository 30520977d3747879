"""vigil.config: the one schema of vigil.yml, its loader, model and diff.

The daemon validates with it on load and reload, ``vigild --check`` prints its issues,
and the Ansible action plugin imports it on the controller (``check_files=False``).
"""

from .check import check_command
from .cluster import check_cluster
from .diff import ConfigDiff, InstanceChange, diff_configs
from .errors import ConfigError, Issue
from .loader import load_config, validate_data
from .model import (
    AuthConfig,
    Config,
    GarpConfig,
    GlobalConfig,
    NotifyConfig,
    RouteConfig,
    SyncGroupConfig,
    TrackConfig,
    TrackFileConfig,
    TrackInterface,
    TrackProcessConfig,
    TrackRef,
    UnicastConfig,
    VipConfig,
    VrrpInstanceConfig,
    VrrpScriptConfig,
)

__all__ = [
    "AuthConfig",
    "Config",
    "ConfigDiff",
    "ConfigError",
    "GarpConfig",
    "GlobalConfig",
    "InstanceChange",
    "Issue",
    "NotifyConfig",
    "RouteConfig",
    "SyncGroupConfig",
    "TrackConfig",
    "TrackFileConfig",
    "TrackInterface",
    "TrackProcessConfig",
    "TrackRef",
    "UnicastConfig",
    "VipConfig",
    "VrrpInstanceConfig",
    "VrrpScriptConfig",
    "check_cluster",
    "check_command",
    "diff_configs",
    "load_config",
    "validate_data",
]
