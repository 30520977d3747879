"""API contract testing, bounded: schemathesis against a real vigild over its Unix socket.

Every operation of the OpenAPI document vigild serves, positive and negative cases
(hypothesis-driven, seeded), 10 per operation and mode, at most 120 s: no 5xx, no response
that violates the schema, invalid input refused with a 4xx, and the agent healthy and
without a traceback afterwards. The longer run is ``python -m bench.api_contract`` (see
docs/reliability.md).
"""

from __future__ import annotations

from bench import api_contract
from tests.lab.lab import Lab


def test_api_contract_bounded(lab: Lab) -> None:
    agent, known = api_contract.lab_pair(lab)
    result = api_contract.run_contract(
        agent.socket_path, examples=10, seconds=120, seed=1, known_params=known
    )
    doc = result.to_dict()
    # Every operation the agent serves was tried.
    assert len(doc["operations"]) >= 15, doc["operations"]
    # BFD and IPVS are configured in the lab, so their endpoints are served and tried
    # (IPVS with the kernel marked unavailable: this host has none).
    for path in ("/v1/bfd/sessions/{name}", "/v1/ipvs/virtual_servers/{name}"):
        assert any(path in op for op in doc["operations"]), doc["operations"]
    assert all(doc["cases_by_operation"].get(op, 0) > 0 for op in doc["operations"]), doc
    assert doc["server_errors"] == 0, doc["findings"]
    assert doc["schema_violations"] == 0, doc["findings"]
    assert doc["findings"] == [], doc["findings"]
    assert doc["transport_errors"] == {}, doc["transport_errors"]
    assert doc["healthy_after"] is True
    assert agent.process.alive()
    assert "Traceback" not in agent.log(tail=None)
