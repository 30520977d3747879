"""The shipped alerting rules against a real Prometheus scraping a real vigil pair.

Two vigild (n1 priority 150, n2 100, one VRRPv3 instance) serve GET /metrics over TCP
(``--metrics-listen``); Debian's Prometheus runs in a third namespace with the rules file
exactly as shipped (monitoring/vigil-alerts.yml), 1 s scrape and evaluation intervals and
the ``vigil_pair`` target label the rules expect. Partitioning the pair with nftables on the
switch (a bridge filter dropping every frame between n1's and n2's ports, as a broken link
between them would; scrapes from the monitoring namespace still pass) makes both MASTER;
the test waits, bounded, until Prometheus' /api/v1/alerts shows VigilSplitBrain firing for
that pair and instance, then heals the partition and waits until the alert is gone.
Every wait is on an observed condition (the agents' API, Prometheus' API).
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lab.capture import in_netns
from tests.lab.lab import Lab

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "monitoring" / "vigil-alerts.yml"
PROM_ADDR = "10.99.0.5:9090"
NODES = {"n1": ("10.99.0.11", 150), "n2": ("10.99.0.12", 100)}
VIP = "10.99.0.100"
PARTITION = "vigil_partition"

pytestmark = pytest.mark.integration


def node_config(name: str, priority: int) -> dict[str, Any]:
    return {
        "global": {"router_id": name},
        "vrrp_instances": [
            {
                "name": "VI_1",
                "interface": "eth0",
                "vrid": 61,
                "priority": priority,
                "version": 3,
                "advert_interval": 0.2,
                "virtual_ipaddresses": [f"{VIP}/24"],
            }
        ],
    }


def prometheus_config(rules: Path) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": "vigil",
                "static_configs": [
                    {
                        "targets": [f"{addr}:9650" for addr, _ in NODES.values()],
                        "labels": {"vigil_pair": "lab"},
                    }
                ],
            }
        ],
    }


def prom_get(lab: Lab, path: str) -> Any:
    """GET http://PROM_ADDR/path from inside the monitoring namespace, decoded JSON data."""

    def fetch() -> Any:
        with urllib.request.urlopen(f"http://{PROM_ADDR}{path}", timeout=5) as resp:
            return json.loads(resp.read())

    body = in_netns(lab.node("mon").ns, fetch)
    assert body.get("status") == "success", body
    return body["data"]


def split_brain_alerts(lab: Lab) -> list[dict[str, Any]]:
    return [
        a
        for a in prom_get(lab, "/api/v1/alerts")["alerts"]
        if a["labels"].get("alertname") == "VigilSplitBrain"
    ]


def states(agents: dict[str, Any]) -> dict[str, str]:
    out = {}
    for name, agent in agents.items():
        status, body = agent.client.get("/v1/vrrp/instances/VI_1")
        assert status == 200, body
        out[name] = body["state"]
    return out


def test_partition_fires_split_brain_alert(lab: Lab) -> None:
    prometheus = shutil.which("prometheus")
    assert prometheus, "Debian's prometheus package is missing: run `make setup`"
    lab.add_switch()
    for name, (addr, _) in NODES.items():
        lab.add_namespace(name)
        lab.connect(name, addrs=[f"{addr}/24"])
    lab.add_namespace("mon")
    lab.connect("mon", addrs=["10.99.0.5/24"])

    agents = {
        name: lab.start_vigild(
            name, node_config(name, prio), extra_args=["--metrics-listen", f"{addr}:9650"]
        )
        for name, (addr, prio) in NODES.items()
    }
    lab.wait_for(
        lambda: states(agents) == {"n1": "MASTER", "n2": "BACKUP"},
        timeout=20,
        what="n1 MASTER and n2 BACKUP",
    )

    promdir = lab.workdir / "prometheus"
    (promdir / "data").mkdir(parents=True)
    conf = promdir / "prometheus.yml"
    conf.write_text(yaml.safe_dump(prometheus_config(RULES), sort_keys=False))
    lab.spawn(
        "mon",
        [
            prometheus,
            f"--config.file={conf}",
            f"--storage.tsdb.path={promdir / 'data'}",
            f"--web.listen-address={PROM_ADDR}",
            "--storage.tsdb.retention.time=1h",
        ],
        name="prometheus",
    )

    def masters_seen() -> Any:
        try:
            result = prom_get(
                lab, '/api/v1/query?query=sum+by+(instance)(vigil_vrrp_state{state="MASTER"})'
            )["result"]
        except OSError:
            return None  # not listening yet
        return {r["metric"]["instance"]: r["value"][1] for r in result}

    # Both targets scraped, one master seen through Prometheus, and no split-brain alert.
    lab.wait_for(
        lambda: masters_seen() == {"10.99.0.11:9650": "1", "10.99.0.12:9650": "0"},
        timeout=60,
        interval=0.5,
        what="Prometheus to scrape both agents (n1 master, n2 backup)",
    )
    assert split_brain_alerts(lab) == []

    # Partition on the switch: no frame between n1's and n2's ports, either way; the
    # monitoring namespace still reaches both.
    lab.run(
        "sw",
        ["nft", "-f", "-"],
        input=(
            f"table bridge {PARTITION} {{\n"
            "  chain cut { type filter hook forward priority 0;\n"
            '    iifname "n1-eth0" oifname "n2-eth0" drop;\n'
            '    iifname "n2-eth0" oifname "n1-eth0" drop; }\n'
            "}\n"
        ),
    )
    lab.wait_for(
        lambda: states(agents) == {"n1": "MASTER", "n2": "MASTER"},
        timeout=15,
        what="both nodes MASTER after the partition",
    )
    firing = lab.wait_for(
        lambda: [a for a in split_brain_alerts(lab) if a["state"] == "firing"],
        timeout=90,
        interval=1.0,
        what="VigilSplitBrain firing in Prometheus",
    )
    assert len(firing) == 1, firing
    labels = firing[0]["labels"]
    assert labels["vigil_pair"] == "lab"
    assert labels["exported_instance"] == "VI_1"
    assert labels["severity"] == "critical"
    assert firing[0]["annotations"]["summary"] == "vigil pair lab: 2 masters for VI_1"
    # Still two masters while it fires: the alert is about what is true now.
    assert states(agents) == {"n1": "MASTER", "n2": "MASTER"}

    # Heal: n2 hears n1's higher priority and steps back; the alert goes away.
    lab.run("sw", ["nft", "delete", "table", "bridge", PARTITION])
    lab.wait_for(
        lambda: states(agents) == {"n1": "MASTER", "n2": "BACKUP"},
        timeout=15,
        what="n2 back to BACKUP after healing",
    )
    lab.wait_for(
        lambda: split_brain_alerts(lab) == [],
        timeout=60,
        interval=1.0,
        what="VigilSplitBrain to resolve",
    )
