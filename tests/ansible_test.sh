#!/usr/bin/env bash
# Run ansible-test (sanity and units) for the vigil.ha collection on a host like CI's.
#
# ansible-test needs three things this repository does not give it as it is:
#  - a directory whose path ends in ansible_collections/vigil/ha (a symlink is refused):
#    the files git knows about (tracked, and new files not ignored) are copied
#    into a temporary tree (with tar) and ansible-test runs there;
#  - pip in the virtualenvs it makes for sanity (--venv): it bootstraps pip with a get-pip
#    script it downloads from ci-files.testing.ansible.com, which hosts here cannot reach.
#    It first looks in ~/.ansible/test/cache/get_pip_<version>.py, so a stand-in goes
#    there that bootstraps pip from the interpreter's own ensurepip and then installs what
#    ansible-test asked for (from the pip index configured on the host);
#  - a Python 3.11 interpreter: the project venv's.
#
# What sanity checks: the collection's Ansible content (plugins, roles, playbooks, meta, docs,
# tests/unit, tests/sanity). The agent's Python project that ships beside it (agent/, bench/,
# the pytest suites in tests/lab, tests/hosts, tests/vm and tests/integration/*.py) is
# Python 3.11 code with its own lint (ruff, mypy: make lint); it is left out with ansible-test's own
# --exclude, never with ignore entries (tests/sanity/ignore-*.txt stay empty).
# SANITY_SCOPE=all includes it too, to see where it stands.
#
# Integration: the targets in tests/integration/targets run with --local, on this host, each
# against real vigild agents it starts in network namespaces of its own (setup_vigild); they
# need root (or unprivileged user namespaces) and the agent's dependencies in $VENV.
#
# Usage: tests/ansible_test.sh [sanity|units|integration|all] [extra ansible-test arguments]
# Exit status: ansible-test's (the first failing one with "all").
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
PY=3.11
what=${1:-all}
shift || true

case "$what" in
    sanity|units|integration|all) ;;
    *) echo "usage: $0 [sanity|units|integration|all] [ansible-test args]" >&2; exit 2 ;;
esac

[ -x "$VENV/bin/ansible-test" ] || { echo "no $VENV/bin/ansible-test: run make setup" >&2; exit 2; }

# The get-pip stand-in, one per pip version ansible-test may ask for.
install_get_pip_standin() {
    local cache=$HOME/.ansible/test/cache
    local version
    version=$("$VENV/bin/python" - <<'EOF'
import re, pathlib, ansible_test
src = pathlib.Path(ansible_test.__file__).parent / "_internal/python_requirements.py"
print(re.search(r"pip='([0-9.]+)'", src.read_text()).group(1))
EOF
)
    mkdir -p "$cache"
    local target=$cache/get_pip_${version//./_}.py
    cat >"$target.tmp" <<'EOF'
"""Offline stand-in for get-pip.py, installed by vigil's tests/ansible_test.sh.

ansible-test runs this in a fresh virtualenv as `python get-pip.py [pip options] PACKAGES`.
Bootstrap pip from the interpreter's own ensurepip, then let that pip install the packages
(the pinned pip among them) from the index the host's pip is configured with.
"""
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.run([sys.executable, "-m", "ensurepip", "--upgrade"], check=True)
subprocess.run([sys.executable, "-m", "pip", "install", *args], check=True)
EOF
    mv "$target.tmp" "$target"
}

WORK=$(mktemp -d /tmp/vigil-ansible-test.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
DEST=$WORK/ansible_collections/vigil/ha
mkdir -p "$DEST"
# Only what git knows about, as ansible-test itself would see in a checkout.
# Files deleted in the work tree but still in the index are left out.
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf -) | tar -xf - -C "$DEST"
# A git repository in the copy, so ansible-test lists files with git as in a checkout
# (and ignores tests/output/ through .gitignore).
git -C "$DEST" init -q
git -C "$DEST" add -A
git -C "$DEST" -c user.name=ansible-test -c user.email=ansible-test@invalid \
    commit -qm snapshot --no-verify

export PATH=$VENV/bin:$PATH
export ANSIBLE_COLLECTIONS_PATH=$WORK
cd "$DEST"

rc=0
if [ "$what" = sanity ] || [ "$what" = all ]; then
    install_get_pip_standin
    excludes=()
    if [ "${SANITY_SCOPE:-collection}" != all ]; then
        for p in agent/ bench/ tests/lab/ tests/hosts/ tests/vm/ tests/__init__.py; do
            [ -e "$p" ] && excludes+=(--exclude "$p")
        done
        while IFS= read -r -d '' f; do
            excludes+=(--exclude "$f")
        done < <(git ls-files -z ':(glob)tests/integration/*.py')
    fi
    ansible-test sanity --venv --python "$PY" --color no "${excludes[@]}" "$@" || rc=$?
fi
if [ "$what" = units ] || [ "$what" = all ]; then
    ansible-test units --local --python "$PY" --color no "$@" || { s=$?; [ $rc -ne 0 ] || rc=$s; }
fi
if [ "$what" = integration ] || [ "$what" = all ]; then
    ansible-test integration --local --python "$PY" --color no "$@" \
        || { s=$?; [ $rc -ne 0 ] || rc=$s; }
fi
exit $rc
