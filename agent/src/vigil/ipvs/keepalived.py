"""IPVS's part of ``vigilctl import-keepalived``: virtual_server(_group), real_server, checkers.

The frame (:mod:`vigil.keepalived.convert`) walks keepalived.conf and keeps the
bookkeeping; this part converts ``virtual_server_group`` and ``virtual_server`` blocks
(with their ``real_server`` blocks and every checker: HTTP_GET, SSL_GET, TCP_CHECK,
SMTP_CHECK, DNS_CHECK, MISC_CHECK, UDP_CHECK, PING_CHECK, FILE_CHECK, BFD_CHECK) into
``virtual_server_groups`` / ``virtual_servers``, and ``lvs_sync_daemon`` from
``global_defs`` into ``ipvs_sync_daemon``. Every keyword it cannot carry is reported with
the reason; keepalived's behaviours that the text hides (``ha_suspend`` follows whichever
instance holds the address; ``persistence_timeout`` alone means 360 s) are spelled out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from vigil.keepalived.convert import (
    BadValue,
    Converter,
    ImporterPart,
    boolean,
    integer,
    ordered,
    seconds,
)
from vigil.keepalived.keywords import EMAIL, UNKNOWN
from vigil.keepalived.parser import Statement

__all__ = ["IpvsImporter"]

SNMP = "vigil exports Prometheus metrics instead of SNMP"
SCHED_FLAG_WORDS = (
    "flag-1", "flag-2", "flag-3", "sh-port", "sh-fallback", "mh-port", "mh-fallback",
)  # fmt: skip
CHECKERS = {
    "TCP_CHECK": "tcp",
    "HTTP_GET": "http",
    "SSL_GET": "https",
    "DNS_CHECK": "dns",
    "UDP_CHECK": "udp",
    "PING_CHECK": "ping",
    "SMTP_CHECK": "smtp",
    "MISC_CHECK": "misc",
    "FILE_CHECK": "file",
    "BFD_CHECK": "bfd",
}
#: keywords every checker but MISC and FILE takes, with their converters
TIMING: dict[str, tuple[str, Callable[[str], Any]]] = {
    "delay_loop": ("delay_loop", seconds),
    "retry": ("retry", integer),
    "nb_get_retry": ("retry", integer),
    "delay_before_retry": ("delay_before_retry", seconds),
    "warmup": ("warmup", seconds),
}
CONNECT: dict[str, tuple[str, Callable[[str], Any]]] = {
    "connect_ip": ("connect_ip", str),
    "connect_port": ("connect_port", integer),
    "bindto": ("bindto", str),
    "bind_port": ("bind_port", integer),
    "bind_if": ("bind_if", str),
    "fwmark": ("fwmark", integer),
    "connect_timeout": ("connect_timeout", seconds),
}
GLOBAL_REASONS = {
    "lvs_flush": "vigil never flushes the whole table; it removes what it added (journal)",
    "lvs_flush_on_stop": "vigil removes its own services on stop, and nothing else",
    "lvs_timeouts": "set the IPVS timeouts with ipvsadm --set in the OS; vigil leaves them",
    "lvs_netlink_cmd_rcv_bufs": "vigil sizes its netlink buffers itself",
    "lvs_netlink_cmd_rcv_bufs_force": "vigil sizes its netlink buffers itself",
    "lvs_netlink_monitor_rcv_bufs": "vigil sizes its netlink buffers itself",
    "lvs_netlink_monitor_rcv_bufs_force": "vigil sizes its netlink buffers itself",
    "lvs_notify_fifo": "vigil streams events on its API instead of a FIFO",
    "lvs_notify_fifo_script": "vigil streams events on its API instead of a FIFO",
    "checker_process_name": "keepalived daemon setting with no vigil equivalent",
    "checker_priority": "keepalived daemon setting with no vigil equivalent",
    "checker_no_swap": "keepalived daemon setting with no vigil equivalent",
    "checker_cpu_affinity": "keepalived daemon setting with no vigil equivalent",
    "checker_rt_priority": "keepalived daemon setting with no vigil equivalent",
    "checker_rlimit_rttime": "keepalived daemon setting with no vigil equivalent",
    "checker_log_all_failures": "vigil logs every checker state change and keeps the last error",
    "rs_init_notifies": "vigil runs real server notify commands on changes only, not at start",
    "nftables_ipvs": "vigil programs one IPVS service per group member; no nftables",
}


#: readable key order of an imported virtual server and real server
VS_ORDER = (
    "name", "address", "port", "protocol", "fwmark", "family", "group", "scheduler",
    "scheduler_flags", "one_packet", "forwarding", "tunnel", "persistence", "delay_loop",
    "retry", "delay_before_retry", "warmup", "connect_timeout", "virtualhost", "alpha",
    "omega", "inhibit_on_failure", "ha_suspend", "quorum", "hysteresis", "quorum_up",
    "quorum_down", "sorry_server", "real_servers",
)  # fmt: skip
RS_ORDER = (
    "address", "port", "weight", "forwarding", "tunnel", "inhibit_on_failure",
    "upper_threshold", "lower_threshold", "notify_up", "notify_down", "checks",
)  # fmt: skip


class IpvsImporter(ImporterPart):
    """Converts keepalived's LVS blocks into IPVS's section of vigil.yml."""

    blocks = ("virtual_server", "SSL")
    late_blocks = ("virtual_server_group",)

    def __init__(self, conv: Converter) -> None:
        super().__init__(conv)
        self.servers: list[dict[str, Any]] = []
        self.server_stmts: list[Statement] = []
        self.groups: list[dict[str, Any]] = []
        self.sync: dict[str, Any] | None = None
        self._ha_suspend: list[tuple[int, Statement]] = []

    # -- frame hooks ---------------------------------------------------------------

    def block(self, stmt: Statement) -> None:
        if stmt.name == "virtual_server":
            self.virtual_server(stmt)
        elif stmt.name == "virtual_server_group":
            self.group(stmt)
        else:
            for s in self.conv._block(stmt):
                self.conv.unsupported(
                    s,
                    f"SSL {s.name}",
                    "vigil's https checks present no client certificate; to verify the "
                    "server's, set tls_verify and ca_file on the check",
                )

    def global_keyword(self, stmt: Statement, path: list[Any], g: dict[str, Any]) -> bool:
        name = stmt.name
        if name == "lvs_sync_daemon":
            self._sync_daemon(stmt)
        elif name in GLOBAL_REASONS:
            self.conv.unsupported(stmt, name, GLOBAL_REASONS[name])
        elif name.startswith(("lvs_", "checker_")):
            self.conv.unsupported(stmt, name, UNKNOWN)
        else:
            return False
        return True

    def after_blocks(self) -> None:
        self._resolve_ha_suspend()

    def finish(self, config: dict[str, Any]) -> None:
        if self.groups:
            config["virtual_server_groups"] = self.groups
        if self.servers:
            config["virtual_servers"] = [self._ordered(vs) for vs in self.servers]
        if self.sync is not None:
            config["ipvs_sync_daemon"] = self.sync

    @staticmethod
    def _ordered(vs: dict[str, Any]) -> dict[str, Any]:
        out = ordered(vs, VS_ORDER)
        out["real_servers"] = [ordered(rs, RS_ORDER) for rs in vs.get("real_servers", [])]
        return out

    # -- lvs_sync_daemon -----------------------------------------------------------

    def _sync_daemon(self, stmt: Statement) -> None:
        words = stmt.words
        if not words:
            self.conv.error(stmt, stmt.name, "needs an interface")
            return
        out: dict[str, Any] = {"interface": words[0]}
        path = ["ipvs_sync_daemon"]
        self.conv.origin(path, stmt)
        i = 1
        keys: dict[str, tuple[str, Callable[[str], Any]]] = {
            "id": ("syncid", integer),
            "maxlen": ("maxlen", integer),
            "port": ("port", integer),
            "ttl": ("ttl", integer),
            "group": ("group", str),
        }
        while i < len(words):
            word = words[i]
            if word == "inst" and i + 1 < len(words):
                out["instance"] = words[i + 1]
                i += 2
            elif word in keys and i + 1 < len(words):
                key, fn = keys[word]
                try:
                    out[key] = fn(words[i + 1])
                except BadValue as exc:
                    self.conv.error(stmt, f"lvs_sync_daemon {word}", str(exc))
                i += 2
            elif i == 1 and word not in keys:
                out["instance"] = word  # "inst" may be left out
                i += 1
            else:
                self.conv.unsupported(stmt.args[i], f"lvs_sync_daemon {word}", UNKNOWN)
                i += 1
        if "instance" in out:
            self.conv.note(
                stmt,
                f"lvs_sync_daemon: the sync daemon follows {out['instance']}: master daemon "
                "while it is MASTER, backup daemon otherwise (as keepalived does)",
            )
        self.sync = out

    # -- virtual_server_group ------------------------------------------------------

    def group(self, stmt: Statement) -> None:
        name = self.conv._named(stmt)
        if name is None:
            return
        path: list[Any] = ["virtual_server_groups", len(self.groups)]
        self.conv.origin(path, stmt)
        members: list[dict[str, Any]] = []
        for s in self.conv._block(stmt):
            words = [s.name, *s.words]
            mpath = [*path, "members", len(members)]
            if words[0] == "fwmark":
                try:
                    member: dict[str, Any] = {"fwmark": integer(words[1])}
                except (BadValue, IndexError):
                    self.conv.error(s, "fwmark", "needs a mark number")
                    continue
                if len(words) > 2:
                    if words[2] in ("inet", "inet6"):
                        member["family"] = 6 if words[2] == "inet6" else 4
                    else:
                        self.conv.unsupported(s.args[1], words[2], UNKNOWN)
                members.append(member)
                self.conv.origin(mpath, s)
                continue
            member = {"address": words[0]}
            if len(words) > 1:
                try:
                    member["port"] = integer(words[1])
                except BadValue as exc:
                    self.conv.error(s, words[0], str(exc))
                    continue
            if len(words) > 2:
                self.conv.unsupported(s.args[1], " ".join(words[2:]), "extra words ignored")
            members.append(member)
            self.conv.origin(mpath, s)
        self.groups.append({"name": name, "members": members})

    # -- virtual_server ------------------------------------------------------------

    def virtual_server(self, stmt: Statement) -> None:
        index = len(self.servers)
        path: list[Any] = ["virtual_servers", index]
        self.conv.origin(path, stmt)
        words = stmt.words
        vs: dict[str, Any] = {}
        if not words:
            self.conv.error(stmt, "virtual_server", "needs IP PORT, fwmark N or group NAME")
            return
        if words[0] == "fwmark" and len(words) > 1:
            self._set(stmt, path, vs, "fwmark", lambda: integer(words[1]))
        elif words[0] == "group" and len(words) > 1:
            vs["group"] = words[1]
        else:
            vs["address"] = words[0]
            if len(words) > 1:
                self._set(stmt, path, vs, "port", lambda: integer(words[1]))
            else:
                vs["port"] = 0  # every port: keepalived allows it for persistent services
        flags: list[str] = []
        real_servers: list[dict[str, Any]] = []
        sorry: dict[str, Any] = {}
        for s in self.conv._block(stmt):
            kw = s.name
            if kw in ("lb_algo", "lvs_sched"):
                self.conv.convert(s, path, vs, "scheduler", lambda x: self.conv._one_arg(x).lower())
            elif kw in ("lb_kind", "lvs_method"):
                self._method(s, path, vs)
            elif kw == "protocol":
                self.conv.convert(s, path, vs, "protocol", lambda x: self.conv._one_arg(x).lower())
            elif kw == "persistence_timeout":
                persistence = vs.setdefault("persistence", {})
                if s.words:
                    self.conv.convert(
                        s, [*path, "persistence"], persistence, "timeout",
                        lambda x: integer(self.conv._one_arg(x)),
                    )  # fmt: skip
                else:
                    persistence["timeout"] = 360
                    self.conv.note(s, "persistence_timeout without a value is 360 s")
            elif kw == "persistence_granularity":
                persistence = vs.setdefault("persistence", {})
                self.conv.convert(
                    s, [*path, "persistence"], persistence, "granularity", self._granularity
                )
            elif kw == "persistence_engine":
                persistence = vs.setdefault("persistence", {})
                self.conv.convert(
                    s, [*path, "persistence"], persistence, "engine", self.conv._one_arg
                )
            elif kw == "ip_family":
                fam = (s.words or [""])[0]
                if fam in ("inet", "inet6"):
                    vs["family"] = 6 if fam == "inet6" else 4
                    self.conv.origin([*path, "family"], s)
                else:
                    self.conv.error(s, kw, f"{fam!r} is not inet or inet6")
            elif kw in SCHED_FLAG_WORDS:
                flags.append(kw)
            elif kw == "ops":
                vs["one_packet"] = True
                self.conv.origin([*path, "one_packet"], s)
            elif kw in ("alpha", "omega", "inhibit_on_failure"):
                self.conv.convert(s, path, vs, kw, lambda x: boolean(x.words))
            elif kw == "ha_suspend":
                self._ha_suspend.append((index, s))
            elif kw in ("quorum", "hysteresis"):
                self.conv.convert(s, path, vs, kw, lambda x: integer(self.conv._one_arg(x)))
            elif kw in ("quorum_up", "quorum_down"):
                self.conv.uses_scripts = True
                self.conv.convert(s, path, vs, kw, self.conv._notify_command)
            elif kw == "sorry_server":
                self._sorry(s, path, sorry)
            elif kw == "sorry_server_inhibit":
                sorry["inhibit"] = True
            elif kw == "sorry_server_lvs_method":
                self._method(s, [*path, "sorry_server"], sorry)
            elif kw == "virtualhost":
                self.conv.convert(s, path, vs, kw, self.conv._one_arg)
            elif kw in TIMING or kw == "connect_timeout":
                key, fn = TIMING.get(kw) or CONNECT[kw]
                self.conv.convert(s, path, vs, key, lambda x, fn=fn: fn(self.conv._one_arg(x)))
            elif kw == "real_server":
                rs = self.real_server(s, [*path, "real_servers", len(real_servers)])
                if rs is not None:
                    real_servers.append(rs)
            elif kw == "smtp_alert":
                self.conv.unsupported(s, kw, EMAIL)
            elif kw == "snmp_name":
                self.conv.unsupported(s, kw, SNMP)
            else:
                self.conv.unsupported(s, kw, f"{UNKNOWN} (in virtual_server)")
        if flags:
            vs["scheduler_flags"] = flags
        if sorry:
            if "address" not in sorry:
                self.conv.unsupported(stmt, "sorry_server_*", "no sorry_server address; dropped")
            else:
                vs["sorry_server"] = sorry
        if vs.get("protocol") and vs.get("fwmark") is not None:
            vs.pop("protocol")  # a fwmark service has no protocol
        if vs.get("address") is not None and not vs.get("port") and "persistence" not in vs:
            self.conv.error(stmt, "virtual_server", "a port is needed unless it is persistent")
        if "scheduler" not in vs:
            vs["scheduler"] = "wlc"
            self.conv.note(stmt, "virtual_server without lb_algo: keepalived (and vigil) use wlc")
        if "forwarding" not in vs:
            vs["forwarding"] = "nat"  # keepalived's default, written out for clarity
        vs["real_servers"] = real_servers
        self.servers.append(vs)
        self.server_stmts.append(stmt)

    def _set(
        self, stmt: Statement, path: list[Any], out: dict[str, Any], key: str, fn: Any
    ) -> None:
        try:
            out[key] = fn()
        except BadValue as exc:
            self.conv.error(stmt, key, str(exc))
            return
        self.conv.origin([*path, key], stmt)

    def _granularity(self, stmt: Statement) -> Any:
        text = self.conv._one_arg(stmt)
        if text.isdigit():
            return int(text)
        try:
            mask = ipaddress.IPv4Address(text)
        except ValueError:
            raise BadValue(f"{text!r} is not a netmask or prefix length") from None
        return str(mask)

    def _method(self, stmt: Statement, path: list[Any], out: dict[str, Any]) -> None:
        words = [w.lower() for w in stmt.words]
        if not words:
            self.conv.error(stmt, stmt.name, "needs NAT, DR or TUN")
            return
        method = {"nat": "nat", "dr": "dr", "tun": "tun"}.get(words[0])
        if method is None:
            self.conv.error(stmt, stmt.name, f"{stmt.words[0]!r} is not NAT, DR or TUN")
            return
        out["forwarding"] = method
        self.conv.origin([*path, "forwarding"], stmt)
        rest = words[1:]
        if method != "tun":
            if rest:
                self.conv.unsupported(stmt.args[1], " ".join(rest), "extra words ignored")
            return
        tunnel: dict[str, Any] = {}
        i = 0
        while i < len(rest):
            word = rest[i]
            if word == "type" and i + 1 < len(rest):
                tunnel["type"] = rest[i + 1]
                i += 2
            elif word == "port" and i + 1 < len(rest):
                try:
                    tunnel["port"] = integer(rest[i + 1])
                except BadValue as exc:
                    self.conv.error(stmt, "port", str(exc))
                i += 2
            elif word in ("nocsum", "csum", "remcsum"):
                tunnel["checksum"] = word
                i += 1
            else:
                self.conv.unsupported(stmt, f"{stmt.name} {word}", UNKNOWN)
                i += 1
        if tunnel:
            out["tunnel"] = tunnel
            self.conv.origin([*path, "tunnel"], stmt)

    def _sorry(self, stmt: Statement, path: list[Any], sorry: dict[str, Any]) -> None:
        words = stmt.words
        if not words:
            self.conv.error(stmt, stmt.name, "needs an address")
            return
        sorry["address"] = words[0]
        if len(words) > 1:
            try:
                sorry["port"] = integer(words[1])
            except BadValue as exc:
                self.conv.error(stmt, stmt.name, str(exc))
        self.conv.origin([*path, "sorry_server"], stmt)

    def _resolve_ha_suspend(self) -> None:
        """keepalived suspends a virtual server's checks while its address is not on this
        host, i.e. while the VRRP instance with that VIP is not master: name the instance."""
        instances: list[dict[str, Any]] = []
        for part in self.conv.parts:
            found = getattr(part, "instances", None)
            if isinstance(found, list) and part is not self:
                instances.extend(i for i in found if isinstance(i, dict))
        for index, stmt in self._ha_suspend:
            vs = self.servers[index]
            address = vs.get("address")
            owner = None
            for inst in instances:
                for vip in inst.get("virtual_ipaddresses", []):
                    text = vip if isinstance(vip, str) else vip.get("address", "")
                    if address is not None and str(text).split("/")[0] == address:
                        owner = inst.get("name")
            if owner is None:
                self.conv.unsupported(
                    stmt,
                    "ha_suspend",
                    f"no VRRP instance here has {address or 'this service'} as a VIP; set "
                    "ha_suspend to the instance whose mastership should run the checks",
                )
                continue
            vs["ha_suspend"] = owner
            self.conv.origin(["virtual_servers", index, "ha_suspend"], stmt)
            self.conv.note(
                stmt, f"ha_suspend: checks run while {owner} (which holds {address}) is MASTER"
            )

    # -- real_server ---------------------------------------------------------------

    def real_server(self, stmt: Statement, path: list[Any]) -> dict[str, Any] | None:
        words = stmt.words
        if not words:
            self.conv.error(stmt, "real_server", "needs IP [PORT]")
            return None
        self.conv.origin(path, stmt)
        rs: dict[str, Any] = {"address": words[0]}
        if len(words) > 1:
            self._set(stmt, path, rs, "port", lambda: integer(words[1]))
        checks: list[dict[str, Any]] = []
        for s in self.conv._block(stmt):
            kw = s.name
            if kw == "weight":
                self.conv.convert(s, path, rs, "weight", lambda x: integer(self.conv._one_arg(x)))
            elif kw in ("lb_kind", "lvs_method"):
                self._method(s, path, rs)
            elif kw in ("notify_up", "notify_down"):
                self.conv.uses_scripts = True
                self.conv.convert(s, path, rs, kw, self.conv._notify_command)
            elif kw in ("uthreshold", "lthreshold"):
                key = "upper_threshold" if kw == "uthreshold" else "lower_threshold"
                self.conv.convert(s, path, rs, key, lambda x: integer(self.conv._one_arg(x)))
            elif kw in ("inhibit_on_failure", "alpha"):
                self.conv.convert(s, path, rs, kw, lambda x: boolean(x.words))
            elif kw in TIMING or kw == "connect_timeout":
                key, fn = TIMING.get(kw) or CONNECT[kw]
                self.conv.convert(s, path, rs, key, lambda x, fn=fn: fn(self.conv._one_arg(x)))
            elif kw == "virtualhost":
                self.conv.convert(s, path, rs, kw, self.conv._one_arg)
            elif kw in CHECKERS:
                check = self.checker(s, [*path, "checks", len(checks)])
                if check is not None:
                    checks.append(check)
            elif kw == "smtp_alert":
                self.conv.unsupported(s, kw, EMAIL)
            elif kw == "snmp_name":
                self.conv.unsupported(s, kw, SNMP)
            else:
                self.conv.unsupported(s, kw, f"{UNKNOWN} (in real_server)")
        if checks:
            rs["checks"] = checks
        return rs

    # -- checkers ------------------------------------------------------------------

    def checker(self, stmt: Statement, path: list[Any]) -> dict[str, Any] | None:
        kind = CHECKERS[stmt.name]
        check: dict[str, Any] = {"type": kind}
        self.conv.origin(path, stmt)
        urls: list[dict[str, Any]] = []
        for s in self.conv._block(stmt):
            kw = s.name
            if kw in TIMING and kind not in ("file", "bfd"):
                key, fn = TIMING[kw]
                self.conv.convert(s, path, check, key, lambda x, fn=fn: fn(self.conv._one_arg(x)))
            elif kw in CONNECT and kind not in ("misc", "file", "bfd"):
                key, fn = CONNECT[kw]
                if kind == "ping" and kw in ("connect_port", "bind_port"):
                    self.conv.unsupported(s, kw, "ICMP has no ports")
                    continue
                self.conv.convert(s, path, check, key, lambda x, fn=fn: fn(self.conv._one_arg(x)))
            elif kw == "alpha" and kind != "file":
                self.conv.convert(s, path, check, "alpha", lambda x: boolean(x.words))
            elif kw == "log_all_failures":
                self.conv.unsupported(s, kw, GLOBAL_REASONS["checker_log_all_failures"])
            elif kind in ("http", "https") and self._http_keyword(s, path, check, urls):
                pass
            elif kind == "bfd" and kw == "name":
                # the bfd_instance of that name becomes the session of that name
                self.conv.convert(s, path, check, "session", self.conv._one_arg)
            elif kind == "dns" and kw in ("type", "name"):
                key = "query_type" if kw == "type" else "query_name"
                self.conv.convert(s, path, check, key, self.conv._one_arg)
                if key == "query_type":
                    check[key] = str(check[key]).upper()
            elif kind == "smtp" and kw == "helo_name":
                self.conv.convert(s, path, check, kw, self.conv._one_arg)
            elif kind == "smtp" and kw == "host":
                self.conv.unsupported(
                    s, "host { }", "one SMTP_CHECK checks one server; use one check per host"
                )
            elif not self._kind_keyword(kind, s, path, check):
                self.conv.unsupported(s, kw, f"{UNKNOWN} (in {stmt.name})")
        if kind in ("http", "https"):
            if len(urls) == 1:
                check.update(urls[0])
            elif urls:
                check["urls"] = urls
        if kind == "misc" and "command" not in check:
            self.conv.error(stmt, stmt.name, "needs misc_path")
            return None
        if kind == "file" and "track_file" not in check:
            self.conv.error(stmt, stmt.name, "needs track_file")
            return None
        if kind == "bfd" and "session" not in check:
            self.conv.error(stmt, stmt.name, "needs name (a bfd_instance)")
            return None
        return check

    def _http_keyword(
        self, s: Statement, path: list[Any], check: dict[str, Any], urls: list[dict[str, Any]]
    ) -> bool:
        kw = s.name
        if kw == "url":
            urls.append(self._url(s, [*path, "urls", len(urls)]))
        elif kw == "http_protocol":
            self.conv.convert(s, path, check, kw, lambda x: self.conv._one_arg(x).upper())
        elif kw == "virtualhost":
            self.conv.convert(s, path, check, kw, self.conv._one_arg)
        elif kw == "enable_sni":
            check["enable_sni"] = True
            self.conv.origin([*path, "enable_sni"], s)
        elif kw == "fast_recovery":
            self.conv.note(s, "fast_recovery: vigil checks every URL in each run already")
        else:
            return False
        return True

    def _url(self, stmt: Statement, path: list[Any]) -> dict[str, Any]:
        url: dict[str, Any] = {}
        for s in self.conv._block(stmt):
            kw = s.name
            if kw in ("path", "digest", "virtualhost", "regex"):
                self.conv.convert(s, path, url, kw, self.conv._one_arg)
            elif kw == "status_code":
                if s.words:
                    url["status_codes"] = [int(w) if w.isdigit() else w for w in s.words]
                    self.conv.origin([*path, "status_codes"], s)
                else:
                    self.conv.error(s, kw, "needs a code or range")
            elif kw == "regex_no_match":
                url["regex_no_match"] = True
            elif kw in ("regex_options", "regex_stack", "regex_min_offset", "regex_max_offset"):
                self.conv.unsupported(
                    s, kw, "vigil matches with Python's re over the whole body it reads"
                )
            else:
                self.conv.unsupported(s, kw, f"{UNKNOWN} (in url)")
        return url

    def _kind_keyword(
        self, kind: str, s: Statement, path: list[Any], check: dict[str, Any]
    ) -> bool:
        """MISC, UDP and FILE keywords; False for one that is not the kind's."""
        if kind == "misc":
            return self._misc_keyword(s, path, check)
        if kind == "udp":
            return self._udp_keyword(s, path, check)
        if kind == "file":
            return self._file_keyword(s, path, check)
        return False

    def _misc_keyword(self, s: Statement, path: list[Any], check: dict[str, Any]) -> bool:
        kw = s.name
        if kw == "misc_path":
            self.conv.uses_scripts = True
            self.conv.convert(s, path, check, "command", self.conv._command)
        elif kw == "misc_timeout":
            self.conv.convert(s, path, check, "timeout", lambda x: seconds(self.conv._one_arg(x)))
        elif kw == "misc_dynamic":
            check["dynamic"] = True
            self.conv.origin([*path, "dynamic"], s)
        elif kw == "user":
            self.conv.convert(s, path, check, "user", self.conv._user)
        else:
            return False
        return True

    def _udp_keyword(self, s: Statement, path: list[Any], check: dict[str, Any]) -> bool:
        kw = s.name
        if kw == "payload":
            check["payload"] = " ".join(s.words)
            self.conv.origin([*path, "payload"], s)
        elif kw == "require_reply":
            check["require_reply"] = True
            if s.words:
                check["reply_pattern"] = " ".join(s.words)
            self.conv.origin([*path, "require_reply"], s)
        elif kw in ("min_reply_length", "max_reply_length"):
            self.conv.convert(s, path, check, kw, lambda x: integer(self.conv._one_arg(x)))
        else:
            return False
        return True

    def _file_keyword(self, s: Statement, path: list[Any], check: dict[str, Any]) -> bool:
        kw = s.name
        if kw == "track_file":
            self.conv.convert(s, path, check, "track_file", self.conv._one_arg)
        elif kw == "weight":
            words = s.words
            try:
                check["weight"] = integer(words[0])
            except (BadValue, IndexError):
                self.conv.error(s, kw, "needs a number")
                return True
            if len(words) > 1 and words[1] == "reverse":
                check["reverse"] = True
            self.conv.origin([*path, "weight"], s)
        elif kw == "dynamic":
            self.conv.note(
                s, "FILE_CHECK dynamic: a non-zero weight always moves the weight in vigil"
            )
        else:
            return False
        return True
