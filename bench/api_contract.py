"""API contract testing: schemathesis against a real vigild over its Unix socket.

    python -m bench.api_contract [--examples 300] [--seconds 900] [--seed 1] [--json FILE]

A lab pair (n1 priority 150, n2 priority 100, VRRPv3 IPv4 + IPv6 at 0.1 s, so control
actions find a peer and finish); the agent under test is n1. The OpenAPI document is the
one n1 *serves* (``/v1/openapi.json``, core + subsystems' paths), loaded with
``schemathesis.openapi.from_dict``. For every operation, hypothesis drives schemathesis'
case strategies (``APIOperation.as_strategy``): positive cases (valid by the schema) and
negative ones (invalid by the schema), and, for paths with ``{name}``, cases against the
agent's real instances as well as made-up names.

How schemathesis reaches a Unix socket: it sends through ``requests``, and
``Case.call(session=...)`` takes any ``requests.Session``; :class:`UnixAdapter` is a
``requests`` transport adapter whose urllib3 pool connects to an AF_UNIX path, mounted on
``http://vigild/``. (schemathesis 4 has ASGI/WSGI transports, but vigild's API is aiohttp
on a Unix socket: neither fits, and a TCP proxy would hide SO_PEERCRED.)

Every response is checked by schemathesis' checks: ``not_a_server_error`` (no 5xx),
``status_code_conformance``, ``content_type_conformance``,
``response_headers_conformance`` and ``response_schema_conformance`` (the schema's
promises), and ``negative_data_rejection`` (invalid input gets a 4xx). Goals: 0 server
errors, 0 schema violations. The agent must still be alive and healthy at the end.

``tests/integration/test_api_contract.py`` runs a bounded version of this in ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hypothesis
import hypothesis.errors
import requests
import schemathesis
import urllib3
from requests.adapters import HTTPAdapter
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

__all__ = [
    "BASE_URL",
    "ContractResult",
    "UnixAdapter",
    "lab_pair",
    "main",
    "run_contract",
    "unix_session",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results"
BASE_URL = "http://vigild"

#: which checks count as what in the result
SERVER_ERROR_CHECKS = {"not_a_server_error"}
SCHEMA_CHECKS = {
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
NEGATIVE_CHECKS = [*CHECKS, negative_data_rejection]

#: 5xx answers that are the agent's documented, correct answer, not a server error: the
#: status is in the operation's responses and the body says which case it is. Counted
#: apart (``documented_5xx``); every other check still runs on them.
#: - 503 from an IPVS action on a host whose kernel has no IPVS (this one; the VM has it):
#:   nothing was changed, and the error says IPVS is not available;
#: - 504 from a verified action whose effect was not observed within the caller's timeout
#:   (hypothesis picks timeouts down to 5e-324 s): the body has what was ``observed``.
DOCUMENTED_5XX = {
    503: ("ipvs_unavailable", "IPVS is not available"),
    504: ("not_observed_within_timeout", '"observed"'),
}


# ---------------------------------------------------------------------- the Unix transport


class _UnixConnection(urllib3.connection.HTTPConnection):
    """An HTTP/1.1 connection whose socket is an AF_UNIX one at ``socket_path``."""

    def __init__(self, *args: Any, socket_path: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.socket_path = socket_path

    def _new_conn(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if isinstance(self.timeout, int | float):
            sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            raise urllib3.exceptions.NewConnectionError(
                self, f"cannot connect to {self.socket_path}: {exc}"
            ) from exc
        return sock


class _UnixPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _UnixConnection  # type: ignore[assignment]


class UnixAdapter(HTTPAdapter):
    """A ``requests`` adapter that sends every request to one Unix socket."""

    def __init__(self, socket_path: str | os.PathLike[str], *, connections: int = 4) -> None:
        super().__init__()
        self.socket_path = str(socket_path)
        self._pool = _UnixPool("localhost", maxsize=connections, socket_path=self.socket_path)

    def get_connection_with_tls_context(  # type: ignore[override]
        self, request: requests.PreparedRequest, verify: Any, proxies: Any = None, cert: Any = None
    ) -> urllib3.HTTPConnectionPool:
        return self._pool

    def get_connection(self, url: str, proxies: Any = None) -> urllib3.HTTPConnectionPool:  # type: ignore[override]
        return self._pool

    def close(self) -> None:
        self._pool.close()
        super().close()


def unix_session(socket_path: str | os.PathLike[str]) -> requests.Session:
    """A session whose ``http://vigild/...`` requests go to the agent's socket."""
    session = requests.Session()
    session.mount(f"{BASE_URL}/", UnixAdapter(socket_path))
    session.trust_env = False
    return session


# ---------------------------------------------------------------------- the run


@dataclass
class Finding:
    operation: str
    check: str
    title: str
    status: int | None
    message: str
    reproduce: str
    mode: str

    def key(self) -> tuple[str, str, str, int | None]:
        return (self.operation, self.check, self.title, self.status)


@dataclass
class ContractResult:
    operations: list[str] = field(default_factory=list)
    cases: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    findings: list[Finding] = field(default_factory=list)
    transport_errors: Counter[str] = field(default_factory=Counter)
    out_of_time: int = 0
    no_cases: list[str] = field(default_factory=list)
    documented_5xx: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    elapsed_s: float = 0.0
    healthy_after: bool | None = None

    def count(self, checks: set[str]) -> int:
        return sum(1 for f in self.findings if f.check in checks)

    @property
    def server_errors(self) -> int:
        return self.count(SERVER_ERROR_CHECKS)

    @property
    def schema_violations(self) -> int:
        return self.count(SCHEMA_CHECKS)

    def unique(self) -> list[dict[str, Any]]:
        seen: dict[tuple[str, str, str, int | None], tuple[Finding, int]] = {}
        for f in self.findings:
            k = f.key()
            first, n = seen.get(k, (f, 0))
            seen[k] = (first, n + 1)
        return [
            {
                "operation": f.operation,
                "check": f.check,
                "title": f.title,
                "status": f.status,
                "count": n,
                "mode": f.mode,
                "message": f.message[:2000],
                "reproduce": f.reproduce,
            }
            for f, n in seen.values()
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "operations": self.operations,
            "cases": sum(self.cases.values()),
            "cases_by_operation": dict(self.cases),
            "statuses_by_operation": {
                op: {str(k): v for k, v in sorted(c.items())} for op, c in self.statuses.items()
            },
            "server_errors": self.server_errors,
            "schema_violations": self.schema_violations,
            "other_findings": len(self.findings) - self.server_errors - self.schema_violations,
            "findings": self.unique(),
            "transport_errors": dict(self.transport_errors),
            "documented_5xx": {op: dict(c) for op, c in self.documented_5xx.items()},
            "skipped_out_of_time": self.out_of_time,
            "nothing_to_generate": self.no_cases,
            "elapsed_s": round(self.elapsed_s, 1),
            "healthy_after": self.healthy_after,
            "ok": self.server_errors == 0
            and self.schema_violations == 0
            and not self.transport_errors
            and self.healthy_after is not False,
        }


def _checks_of(failure: Failure) -> str:
    names = getattr(failure, "checks", ()) or ()
    return names[0] if names else type(failure).__name__


def run_contract(
    socket_path: str | os.PathLike[str],
    *,
    examples: int = 25,
    seconds: float = 120.0,
    seed: int = 1,
    request_timeout: float = 10.0,
    stream_timeout: float = 1.0,
    known_params: Mapping[str, Mapping[str, str]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> ContractResult:
    """Run the contract test against the agent at ``socket_path`` and return the findings.

    Bounded: at most ``examples`` cases per operation and generation mode (and per set of
    fixed path parameters), at most ``seconds`` in all (cases generated after that are
    counted as out of time and not sent), every request under ``request_timeout``
    (``stream_timeout`` for the event stream, which never ends by itself).
    """
    session = unix_session(socket_path)
    result = ContractResult()
    t0 = time.monotonic()
    deadline = t0 + seconds
    try:
        doc = session.get(f"{BASE_URL}/v1/openapi.json", timeout=request_timeout).json()
        schema = schemathesis.openapi.from_dict(doc)
        schema.config.update(base_url=BASE_URL)
        operations = []
        for item in schema.get_all_operations():
            operations.append(item.ok())
        for op in operations:
            result.operations.append(op.label)
            fixed_sets: list[dict[str, Any] | None] = [None]
            fixed = fixed_parameters(op.path, known_params or {})
            if fixed:
                fixed_sets.append(fixed)
            for mode in (
                schemathesis.GenerationMode.POSITIVE,
                schemathesis.GenerationMode.NEGATIVE,
            ):
                for fixed in fixed_sets:
                    if time.monotonic() >= deadline:
                        break
                    if progress is not None:
                        where = "".join(f" {k}={v}" for k, v in (fixed or {}).items())
                        progress(f"{op.label} {mode.value}{where}")
                    _run_operation(
                        op,
                        mode,
                        fixed,
                        session,
                        result,
                        examples=examples,
                        seed=seed,
                        deadline=deadline,
                        timeout=stream_timeout if op.path == "/v1/events" else request_timeout,
                    )
        try:
            health = session.get(f"{BASE_URL}/v1/health", timeout=request_timeout)
            result.healthy_after = health.status_code == 200 and health.json().get("ready") is True
        except requests.RequestException:
            result.healthy_after = False
    finally:
        session.close()
        result.elapsed_s = time.monotonic() - t0
    return result


def fixed_parameters(path: str, known: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """The agent's real names for ``path``'s parameters: from the entry of ``known`` whose
    key is the longest prefix of ``path`` (``{"/v1/bfd/": {"name": "peer"}}``), only the
    parameters the path has, and only when it has all of them."""
    wanted = set(re.findall(r"{(\w+)}", path))
    if not wanted:
        return {}
    best = max((k for k in known if path.startswith(k)), key=len, default=None)
    if best is None:
        return {}
    chosen = {k: v for k, v in known[best].items() if k in wanted}
    return chosen if set(chosen) == wanted else {}


def documented_5xx(op: Any, status: int, text: str) -> str | None:
    """Which documented 5xx case this answer is (see DOCUMENTED_5XX), or None."""
    if status not in DOCUMENTED_5XX:
        return None
    responses = op.definition.raw.get("responses", {})
    if str(status) not in responses:
        return None
    why, marker = DOCUMENTED_5XX[status]
    return why if marker in text else None


def _run_operation(
    op: Any,
    mode: schemathesis.GenerationMode,
    fixed: dict[str, Any] | None,
    session: requests.Session,
    result: ContractResult,
    *,
    examples: int,
    seed: int,
    deadline: float,
    timeout: float,
) -> None:
    strategy = op.as_strategy(generation_mode=mode, path_parameters=fixed)
    checks = NEGATIVE_CHECKS if mode is schemathesis.GenerationMode.NEGATIVE else CHECKS

    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
        verbosity=hypothesis.Verbosity.quiet,
        print_blob=False,
    )
    @hypothesis.seed(seed)
    @hypothesis.given(case=strategy)
    def check(case: schemathesis.Case) -> None:
        if time.monotonic() >= deadline:
            result.out_of_time += 1
            return
        result.cases[op.label] += 1
        try:
            response = case.call(session=session, timeout=timeout)
        except requests.RequestException as exc:
            result.transport_errors[f"{op.label}: {type(exc).__name__}"] += 1
            return
        result.statuses[op.label][response.status_code] += 1
        why = documented_5xx(op, response.status_code, response.text)
        if why is not None:
            result.documented_5xx[op.label][why] += 1
        if why is not None:
            checks_now = [c for c in checks if c is not not_a_server_error]
        else:
            checks_now = checks
        try:
            case.validate_response(response, checks=checks_now)
        except FailureGroup as group:
            for failure in group.exceptions:
                result.findings.append(
                    Finding(
                        operation=op.label,
                        check=_checks_of(failure),
                        title=failure.title,
                        status=response.status_code,
                        message=failure.message,
                        reproduce=case.as_curl_command(),
                        mode=mode.value,
                    )
                )

    try:
        check()
    except hypothesis.errors.Unsatisfiable:
        # Nothing to generate in this mode (no parameters to make invalid, say).
        result.no_cases.append(f"{op.label} {mode.value}")


# ---------------------------------------------------------------------- command


#: the real server that answers (busybox httpd in ``srv``) and one where nothing listens
REAL_SERVERS = ("10.99.0.31", "10.99.0.32")


def lab_pair(lab: Any, www: Path | None = None) -> tuple[Any, dict[str, dict[str, str]]]:
    """n1 and n2 with VRRP (VI_4, VI_6), a BFD session between them (VI_4's fast peer
    detection) and an IPVS virtual server whose real servers live in ``srv`` (one answers
    HTTP, one refuses). This host's kernel has no IPVS: the IPVS endpoints answer with the
    kernel marked unavailable (their checks, quorum and views still run), as they do on any
    host without ip_vs; the kernel side is tested in the VM (tests/vm).

    Returns n1's handle and the agent's real names for path parameters, by path prefix."""
    lab.add_switch()
    lab.add_namespace("srv")
    lab.connect("srv", addrs=[f"{a}/24" for a in REAL_SERVERS])
    www = www or lab.node_dir("srv") / "www"
    www.mkdir(parents=True, exist_ok=True)
    (www / "index.html").write_text("srv\n")
    lab.spawn("srv", ["busybox", "httpd", "-f", "-p", f"{REAL_SERVERS[0]}:80", "-h", str(www)])
    agents = []
    addrs = {"n1": "10.99.0.11", "n2": "10.99.0.12"}
    for name, prio in (("n1", 150), ("n2", 100)):
        other = "n2" if name == "n1" else "n1"
        lab.add_namespace(name)
        last = addrs[name].rsplit(".", 1)[1]
        lab.connect(name, addrs=[f"{addrs[name]}/24", f"fd00:99::{last}/64"])
        config = {
            "global": {"router_id": name},
            "bfd": {"sessions": [
                {"name": "peer", "peer": addrs[other], "local": addrs[name],
                 "interface": "eth0", "min_tx": 0.1, "min_rx": 0.1, "multiplier": 3},
            ]},
            "vrrp_instances": [
                {"name": "VI_4", "interface": "eth0", "vrid": 51, "priority": prio,
                 "version": 3, "advert_interval": 0.1, "fast_takeover_bfd": "peer",
                 "virtual_ipaddresses": ["10.99.0.100/24"]},
                {"name": "VI_6", "interface": "eth0", "vrid": 52, "priority": prio,
                 "version": 3, "advert_interval": 0.1,
                 "virtual_ipaddresses": ["fd00:99::100/64"]},
            ],
            "virtual_servers": [
                {"name": "web", "address": "10.99.0.100", "port": 80, "scheduler": "rr",
                 "delay_loop": 1, "quorum": 1,
                 "real_servers": [
                     {"address": REAL_SERVERS[0], "checks": [{"type": "http", "path": "/"}]},
                     {"address": REAL_SERVERS[1], "checks": ["tcp"]},
                 ]},
            ],
        }  # fmt: skip
        agents.append(lab.start_vigild(name, config))
    lab.wait_address("n1", "10.99.0.100", timeout=10)
    known = {
        "/v1/vrrp/": {"name": "VI_4"},
        "/v1/bfd/": {"name": "peer"},
        "/v1/ipvs/": {"name": "web", "real_server": f"{REAL_SERVERS[0]}:80"},
    }
    return agents[0], known


def summary(result: dict[str, Any]) -> str:
    lines = [
        f"API contract: {result['cases']} cases over {len(result['operations'])} operations "
        f"in {result['elapsed_s']} s; server errors {result['server_errors']}, schema "
        f"violations {result['schema_violations']}, other findings {result['other_findings']}, "
        f"transport errors {sum(result['transport_errors'].values())}, "
        f"healthy after: {result['healthy_after']}"
    ]
    for op in result["operations"]:
        st = result["statuses_by_operation"].get(op, {})
        lines.append(f"  {op}: {result['cases_by_operation'].get(op, 0)} cases, statuses {st}")
    for op, why in result.get("documented_5xx", {}).items():
        lines.append(f"  documented 5xx (not server errors, see DOCUMENTED_5XX): {op}: {why}")
    for f in result["findings"]:
        lines.append(
            f"  FINDING {f['operation']} [{f['check']}] {f['title']} ({f['status']}) x{f['count']}"
        )
        lines.append("    " + f["reproduce"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(
        prog="python -m bench.api_contract", description=__doc__.split("\n")[0]
    )
    p.add_argument("--examples", type=int, default=300, help="cases per operation and mode")
    p.add_argument("--seconds", type=float, default=900.0, help="time box for the whole run")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--json", type=Path, help="result file (default bench/results/api-contract-DATE.json)"
    )
    p.add_argument("--workdir", type=Path, help="lab logs (default: a temporary directory)")
    args = p.parse_args(argv)  # fmt: skip
    if os.geteuid() != 0:
        print("bench.api_contract: needs root (namespaces)", file=sys.stderr)
        return 2
    import tempfile

    from tests.lab.lab import Lab

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="vigil-contract-"))
    with Lab(workdir / "lab") as lab:
        agent, known = lab_pair(lab)
        res = run_contract(
            agent.socket_path,
            examples=args.examples,
            seconds=args.seconds,
            seed=args.seed,
            known_params=known,
            progress=lambda text: print(f"  ... {text}", flush=True),
        )
        tracebacks = agent.log(tail=None).count("Traceback")
        alive = agent.process.alive()
    doc = {
        "tool": "bench.api_contract",
        "command": "python -m bench.api_contract " + " ".join(argv),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "schemathesis": schemathesis.__version__,
        "hypothesis": hypothesis.__version__,
        "examples": args.examples,
        "seed": args.seed,
        **res.to_dict(),
        "agent_alive": alive,
        "agent_tracebacks": tracebacks,
    }
    doc["ok"] = bool(doc["ok"] and alive)
    out = args.json or RESULTS / f"api-contract-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(summary(doc))
    print(f"result: {out}   lab logs: {workdir}")
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
