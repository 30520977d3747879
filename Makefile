# vigil — the three commands: `make setup`, `make demo`, `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
DEBS := iproute2 iputils-ping arping tcpdump procps psmisc kmod util-linux keepalived \
        frr bird2 nftables shellcheck debootstrap systemd-container openssh-client \
        dnsmasq-base openssl qemu-system-x86 busybox-static ipvsadm prometheus
SETUP_STAMP := $(VENV)/.stamp-setup
# The VM suite's bound (the guest's command; boot and shutdown add a minute): ~10-13 min on a
# quiet 2-core host, far more when other QEMU guests share it.
VM_TIMEOUT ?= 2400
# pytest-xdist workers for the unit and namespace tests: most of their time is spent waiting
# on protocol timers, so three share the 2-core machine (22 min in one process, 11.5 in
# three with the serial pass; all of make test 25 min). Work goes
# out a module at a time (a module's tests may share a converged pair of hosts); tests
# marked `serial` (a deadline or an outage measured on the wire) run alone afterwards.
# Every lab has its own name prefix, so workers never meet.
TEST_WORKERS ?= 3

.PHONY: setup debs vm-assets sync-client test-vm demo test test-unit test-integration test-hosts test-fleet test-vmhosts test-monitoring lint bench soak fuzz contract clean-lab help

help:
	@echo "make setup   install Debian packages and the .venv (idempotent)"
	@echo "make demo    run a two-node vigil lab in network namespaces and show it"
	@echo "make test    run every test suite (unit, namespace integration, collection)"

setup: debs $(SETUP_STAMP) vm-assets

debs:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	    | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	        --no-install-recommends $$missing >/dev/null; \
	else echo "Debian packages: all present"; fi

$(SETUP_STAMP): agent/pyproject.toml requirements-dev.txt
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e 'agent[test]' -r requirements-dev.txt
	touch $@

# The IPVS VM's kernel (Debian cloud kernel, extracted, never installed) and initramfs,
# cached in .lab/vm/ (see tests/lab/vm.py).
vm-assets: debs $(SETUP_STAMP)
	$(VPY) -m tests.lab.vm --setup

demo: setup
	$(VPY) -m tests.lab.demo

# Every suite: unit + namespace integration (incl. keepalived/FRR interop and the
# systemd-nspawn Ansible hosts), IPVS in one QEMU boot (tests/vm, never collected on the
# host), the collection's ansible-test sanity, units and integration targets, the alerting
# rules, and lint.
test: setup
	$(VPY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope --durations=30 \
	    -m "not fleet and not vmhosts and not serial" agent/tests tests/tools tests/integration
	$(VPY) -m pytest -q --durations=10 -m "serial and not fleet and not vmhosts" \
	    agent/tests tests/tools tests/integration
	$(MAKE) --no-print-directory test-monitoring
	$(VPY) -m tests.lab.vm --timeout $(VM_TIMEOUT) pytest -q -m vm tests/vm
	tests/ansible_test.sh sanity
	tests/ansible_test.sh units
	tests/ansible_test.sh integration
	$(MAKE) --no-print-directory lint


test-unit: setup
	$(VPY) -m pytest -q -m unit agent/tests tests/tools

test-integration: setup
	$(VPY) -m pytest -q -m "not vmhosts" tests/integration

# IPVS on a real kernel: one QEMU boot runs the whole VM suite inside (tests/vm/).
test-vm: setup
	$(VPY) -m tests.lab.vm --timeout $(VM_TIMEOUT) pytest -q -m vm tests/vm

# The shipped Prometheus alerting rules: syntax and promtool unit tests (Debian's
# prometheus package). The end-to-end check (a real Prometheus scraping a partitioned pair)
# is tests/integration/test_monitoring.py.
test-monitoring:
	promtool check rules monitoring/vigil-alerts.yml
	promtool test rules monitoring/vigil-alerts.test.yml

test-hosts: setup
	$(VPY) -m pytest -q -m "hosts and not fleet" tests/integration

# Issue 14 on VM hosts with their own kernel (IPVS): two QEMU TCG directors built by
# vigil.ha.site, drain, failover and the info modules under client load (one scenario,
# about an hour on two busy cores: boot 3.5 min, site 25 min; not in make test).
test-vmhosts: setup
	$(VPY) -m pytest -q -s -m vmhosts tests/integration/test_vmhosts_lb.py

# Six pairs with BFD on twelve systemd-nspawn hosts: site, rerun, rolling upgrade (about
# 11 minutes on two busy cores; VIGIL_FLEET_PAIRS=1..6 for fewer).
test-fleet: setup
	$(VPY) -m pytest -q tests/integration/test_ansible_fleet.py

# The chaos soak (not part of `make test`): a pair and a three-node group under seeded random
# injections for SOAK_MINUTES, invariants checked throughout (docs/reliability.md).
SOAK_MINUTES ?= 30
SOAK_SEED ?= 1
soak: setup
	SOAK_MINUTES=$(SOAK_MINUTES) $(VPY) -m bench.soak --seed $(SOAK_SEED)

# Fuzz at the socket (a million malformed VRRP packets, then a million BFD packets at live
# sessions) and the long API contract run.
fuzz: setup
	$(VPY) -m bench.fuzz_vrrp --count 1000000
	$(VPY) -m bench.fuzz_bfd --count 1000000 --rate 2000

contract: setup
	$(VPY) -m bench.api_contract --examples 300 --seconds 900

# Benchmarks side by side with keepalived (root; see docs/benchmarks.md for the full runs).
bench: setup
	$(VPY) -m bench.failover
	$(VPY) -m bench.cpu --instances 50 --seconds 60
	$(VPY) -m bench.handover
	$(VPY) -m bench.reload
	$(VPY) -m bench.ansible --rounds 3

lint:
	$(VENV)/bin/ruff check agent/src agent/tests tests bench plugins
	$(VENV)/bin/ruff format --check agent/src agent/tests tests bench plugins
	$(VENV)/bin/mypy --config-file agent/pyproject.toml agent/src

# The collection's stdlib API client is the agent's, after a license header (one source).
sync-client:
	{ printf '%s\n' '# Copyright (c) vigil developers' \
	    '# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)' \
	    '# SPDX-License-Identifier: GPL-3.0-or-later' ''; \
	  cat agent/src/vigil/client.py; } > plugins/module_utils/_api.py

clean-lab:
	$(VPY) -m tests.lab.cleanup
