"""keepalived keywords the importer recognises, and why each unsupported one is left out.

Kept apart from the converter so the tables read as a reference: one place to look up
what happens to a keepalived keyword, and one place to extend when vigil grows (IPVS and
BFD blocks moved from "later" to converted: vigil.ipvs.keepalived, vigil.bfd.keepalived).
"""

from __future__ import annotations

BFD_PROCESS = "BFD runs in vigild's event loop, not in a process of its own: no process settings"
EMAIL = "vigil sends no email; run a notify script (or watch the event API) instead"
NO_EQUIVALENT = "keepalived daemon setting with no vigil equivalent"
UNKNOWN = "not a keepalived keyword the importer knows"

BOOL_WORDS = {"on": True, "true": True, "yes": True, "off": False, "false": False, "no": False}

# Readable key order in the output (the rest keep insertion order after these).
INSTANCE_ORDER = (
    "name",
    "interface",
    "vrid",
    "priority",
    "address_owner",
    "version",
    "advert_interval",
    "preempt",
    "preempt_delay",
    "unicast",
    "authentication",
    "virtual_ipaddresses",
    "virtual_ipaddresses_excluded",
    "virtual_routes",
    "garp",
    "v3_checksum_pseudo_header",
    "use_vmac",
    "track",
    "notify",
)
TOP_ORDER = (
    "global",
    "vrrp_scripts",
    "track_files",
    "track_processes",
    "bfd",
    "vrrp_instances",
    "vrrp_sync_groups",
)

# keepalived garp keywords -> vigil garp keys (global ones carry a vrrp_ prefix).
GARP_KEYS = {
    "garp_master_delay": ("master_delay", float),
    "garp_master_repeat": ("master_repeat", int),
    "garp_master_refresh": ("master_refresh", float),
    "garp_master_refresh_repeat": ("master_refresh_repeat", int),
    "garp_interval": ("interval", float),
    "gna_interval": ("interval", float),
    "garp_lower_prio_delay": ("lower_prio_delay", float),
    "garp_lower_prio_repeat": ("lower_prio_repeat", int),
}

NOTIFY_KEYS = {
    "notify_master": "master",
    "notify_backup": "backup",
    "notify_fault": "fault",
    "notify_stop": "stop",
    "notify": "generic",
}

# Top-level blocks reported once per block because a later release will import them. None
# are left: IPVS's blocks (virtual_server, virtual_server_group, SSL) are converted by
# vigil.ipvs.keepalived and bfd_instance by vigil.bfd.keepalived.
LATER_BLOCKS: dict[str, str] = {}

TOP_UNSUPPORTED = {
    "static_ipaddress": "static addresses are not managed by vigil; configure them in the OS",
    "static_routes": "static routes are not managed by vigil; configure them in the OS",
    "static_rules": "static rules are not managed by vigil; configure them in the OS",
    "linkbeat_interfaces": "vigil follows links through netlink only",
    "garp_group": "per-interface GARP rate groups are not supported; use garp.interval",
    "interface_up_down_delays": "interface debounce delays are not supported",
    "track_group": "static track groups are not supported",
    "net_namespace": "run vigild inside the namespace instead (ip netns exec)",
    "net_namespace_ipvs": "run vigild inside the namespace instead (ip netns exec)",
    "namespace_with_ipsets": NO_EQUIVALENT,
    "instance": NO_EQUIVALENT,
    "use_pid_dir": NO_EQUIVALENT,
    "linkbeat_use_polling": "vigil follows links through netlink only",
    "child_wait_time": NO_EQUIVALENT,
}

GLOBAL_REASONS = {
    "vrrp_strict": "strict mode is not supported; vigil follows the RFCs without no_accept",
    "vrrp_mcast_group4": "vigil uses the standard group 224.0.0.18",
    "vrrp_mcast_group6": "vigil uses the standard group ff02::12",
    "vrrp_iptables": "vigil does not manage firewall rules",
    "vrrp_nftables": "vigil does not manage firewall rules",
    "nftables": "vigil does not manage firewall rules",
    "vrrp_ipsets": "vigil does not manage firewall rules",
    "vrrp_skip_check_adv_addr": "vigil checks every advert's addresses",
    "vrrp_check_unicast_src": "vigil checks the source of unicast adverts against the peers",
    "enable_snmp_vrrp": "vigil exports Prometheus metrics instead of SNMP",
    "enable_snmp_checker": "vigil exports Prometheus metrics instead of SNMP",
    "enable_snmp_rfc": "vigil exports Prometheus metrics instead of SNMP",
    "enable_snmp_rfcv2": "vigil exports Prometheus metrics instead of SNMP",
    "enable_snmp_rfcv3": "vigil exports Prometheus metrics instead of SNMP",
    "enable_traps": "vigil exports Prometheus metrics instead of SNMP",
    "snmp_socket": "vigil exports Prometheus metrics instead of SNMP",
    "enable_dbus": "vigil offers its local HTTP API instead of D-Bus",
    "notify_fifo": "vigil streams events on its API instead of a FIFO",
    "notify_fifo_script": "vigil streams events on its API instead of a FIFO",
    "vrrp_notify_fifo": "vigil streams events on its API instead of a FIFO",
    "vrrp_notify_fifo_script": "vigil streams events on its API instead of a FIFO",
    "vrrp_startup_delay": "startup delay is not supported; use preempt_delay",
    "vrrp_lower_prio_no_advert": "not supported",
    "vrrp_higher_prio_send_advert": "not supported",
    "vrrp_garp_extra_if": "GARP on extra interfaces is not supported",
    "vrrp_down_timer_adverts": "vigil uses the RFC Master_Down interval (3 adverts + skew)",
    "dynamic_interfaces": "vigil waits for missing interfaces on its own",
    "max_auto_priority": "vigil does not change its scheduling priority",
    "startup_script": "run it from the service manager (ExecStartPre=) instead",
    "startup_script_timeout": "run it from the service manager (ExecStartPre=) instead",
    "shutdown_script": "run it from the service manager (ExecStopPost=) instead",
    "shutdown_script_timeout": "run it from the service manager (ExecStopPost=) instead",
    "vmac_prefix": "vigil names macvlans itself (use_vmac: NAME)",
    "vmac_addr_prefix": "vigil names macvlans itself (use_vmac: NAME)",
}
GLOBAL_PREFIX_REASONS = (
    ("smtp_", EMAIL),
    ("notification_email", EMAIL),
    ("no_email", EMAIL),
    ("no_checker_emails", EMAIL),
    ("bfd_", BFD_PROCESS),
    ("vrrp_netlink_", NO_EQUIVALENT),
    ("process_", NO_EQUIVALENT),
    ("vrrp_rx_bufs", NO_EQUIVALENT),
    ("vrrp_no_swap", NO_EQUIVALENT),
    ("vrrp_cpu_affinity", NO_EQUIVALENT),
    ("vrrp_rt_priority", NO_EQUIVALENT),
    ("vrrp_rlimit_rttime", NO_EQUIVALENT),
    ("vrrp_priority", NO_EQUIVALENT),
    ("vrrp_process_name", NO_EQUIVALENT),
    ("reload_", NO_EQUIVALENT),
    ("config_save_dir", NO_EQUIVALENT),
    ("tmp_config_directory", NO_EQUIVALENT),
    ("include_check", NO_EQUIVALENT),
    ("umask", NO_EQUIVALENT),
    ("random_seed", NO_EQUIVALENT),
    ("data_use_instance", NO_EQUIVALENT),
    ("log_unknown_vrids", NO_EQUIVALENT),
    ("fifo_write_vrrp_states_on_reload", NO_EQUIVALENT),
    ("disable_local_igmp", NO_EQUIVALENT),
    ("default_interface", "static addresses are not managed by vigil"),
    ("min_auto_priority_delay", NO_EQUIVALENT),
    ("dbus_service_name", "vigil offers its local HTTP API instead of D-Bus"),
    ("vrrp_notify_priority_changes", "priority changes are events on vigil's API"),
)

INSTANCE_REASONS = {
    "mcast_src_ip": "adverts use the interface's primary address (or unicast.source)",
    "mcast_dst_ip": "vigil uses the standard multicast group",
    "dont_track_primary": "vigil always tracks the instance's interface",
    "track_src_ip": "not supported",
    "check_unicast_src": "vigil checks the source of unicast adverts against the peers",
    "unicast_fault_no_peer": "vigil refuses unicast without peers at validation",
    "unicast_ttl": "vigil sends unicast adverts with TTL 255",
    "old_unicast_checksum": "pre-1.3.6 keepalived checksums are not supported",
    "no_accept": "vigil always accepts traffic to the VIPs (accept mode)",
    "strict_mode": "strict mode is not supported",
    "skip_check_adv_addr": "vigil checks every advert's addresses",
    "smtp_alert": EMAIL,
    "notify_master_rx_lower_pri": "not supported; watch the event API instead",
    "notify_deleted": "not supported; watch the event API instead",
    "notify_priority_changes": "priority changes are events on vigil's API",
    "lvs_sync_daemon_interface": "use global_defs lvs_sync_daemon IF INSTANCE (imported as "
    "ipvs_sync_daemon)",
    "virtual_rules": "policy routing rules are not supported",
    "promote_secondaries": "set net.ipv4.conf.IF.promote_secondaries with sysctl instead",
    "vmac_xmit_base": "adverts go out on the macvlan when use_vmac is set",
    "use_vmac_addr": "not supported; give each VIP's interface its own instance",
    "use_ipvlan": "ipvlan is not supported; use use_vmac",
    "vrf": "VRFs are not supported",
    "garp_extra_if": "GARP on extra interfaces is not supported",
    "down_timer_adverts": "vigil uses the RFC Master_Down interval (3 adverts + skew)",
    "lower_prio_no_advert": "not supported",
    "higher_prio_send_advert": "not supported",
    "kernel_rx_buf_size": NO_EQUIVALENT,
    "linkbeat_use_polling": "vigil follows links through netlink only",
    "debug": NO_EQUIVALENT,
    "thread_timer_expired": NO_EQUIVALENT,
    "no_virtual_ipaddress": "vigil needs at least one VIP per instance",
}

GROUP_REASONS = {
    "track_interface": "sync group tracking is not supported; track in each member instance",
    "track_script": "sync group tracking is not supported; track in each member instance",
    "track_file": "sync group tracking is not supported; track in each member instance",
    "track_process": "sync group tracking is not supported; track in each member instance",
    "track_bfd": "sync group tracking is not supported; track in each member instance",
    "smtp_alert": EMAIL,
    "global_tracking": "deprecated in keepalived; track in each member instance",
    "sync_group_tracking_weight": "noted; member weights are imported as written",
    "notify_deleted": "not supported; watch the event API instead",
    "notify_priority_changes": "priority changes are events on vigil's API",
}

VIP_VALUE_OPTIONS = {"brd", "broadcast", "dev", "scope", "label", "peer", "preferred_lft"}
VIP_VALUE_OPTIONS |= {"track_group"}
VIP_FLAGS = {"home", "-nodad", "nodad", "mngtmpaddr", "noprefixroute", "autojoin", "no_track"}
VIP_FLAGS |= {"use_vmac"}
ROUTE_VALUE_OPTIONS = {"src", "via", "gw", "or", "dev", "scope", "table", "metric", "to"}
ROUTE_VALUE_OPTIONS |= {
    "protocol",
    "proto",
    "mtu",
    "advmss",
    "realms",
    "tos",
    "preference",
    "pref",
    "nexthop",
    "weight",
    "onlink",
    "track_group",
}
ROUTE_TYPES = {"blackhole", "unreachable", "prohibit", "throw", "unicast"}
