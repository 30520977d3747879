"""vigil.config: the config machinery that knows no protocol.

YAML loading with line numbers, the ``global`` mapping, issues with dotted paths, and the
:class:`ConfigSection` contract by which each part of vigil.yml (the trackers, VRRP, IPVS,
BFD) validates, builds, diffs and cross-checks itself. Which sections exist is decided in
one place, :mod:`vigil.subsystems`, which also offers ``load_config`` and friends with
every section filled in; the daemon, ``vigilctl`` and the Ansible action plugin use those.
"""

from .check import check_command, summary_text
from .cluster import ClusterContext, check_cluster
from .diff import ConfigDiff, diff_configs
from .errors import ConfigError, Issue
from .loader import build_globals, load_config, runs_nothing, validate_data
from .model import REDACTED, Config, GlobalConfig
from .section import ConfigSection, SchemaRunner, SectionDiff, SectionInput

__all__ = [
    "REDACTED",
    "ClusterContext",
    "Config",
    "ConfigDiff",
    "ConfigError",
    "ConfigSection",
    "GlobalConfig",
    "Issue",
    "SchemaRunner",
    "SectionDiff",
    "SectionInput",
    "build_globals",
    "check_cluster",
    "check_command",
    "diff_configs",
    "load_config",
    "runs_nothing",
    "summary_text",
    "validate_data",
]
