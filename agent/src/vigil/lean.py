"""Import only the parts of pyroute2 and aiohttp that vigild uses.

``import pyroute2.anything`` first runs ``pyroute2/__init__.py``, which imports every
socket class the library has (IPDB, NDB, conntrack, nftables, wireless, plan9, ...);
``from aiohttp import web`` first runs ``aiohttp/__init__.py``, which imports the whole
HTTP client and builds two TLS contexts from the system's CA bundle; pyroute2's rtnl
socket imports ``unittest.mock`` (for its mock mode), which first runs
``unittest/__init__.py`` (the whole test runner); ``prometheus_client/__init__.py``
imports its HTTP, WSGI and push-gateway clients (vigild writes the metrics text itself,
vigil.promtext). vigild uses none of that: together about 9.5 MB of resident memory and
much of the imports' time, which under the IPVS VM's emulated CPU is many seconds of
vigild's start.

:func:`lean_packages` puts a bare package module for each in ``sys.modules`` instead, so
``pyroute2.netlink.generic.ipvs``, ``aiohttp.web`` or ``unittest.mock`` load just what
they import themselves. Nothing else changes: the first access to a name the package itself defines
(``pyroute2.IPRoute``, ``from aiohttp import ClientSession``, ``__all__``) runs the real
``__init__`` into the same module, so code that wants the whole library (tests, users'
scripts) gets it. Submodules (``from pyroute2 import config``) import as usual.

:func:`lazy_modules` does the same for single modules that are imported but never used:
pyroute2's rtnl socket imports every traffic-control plugin (22 qdisc and classifier
modules, and the actions and matches they import) for ``IPRoute.tc()``, which vigild
never calls. Each is put in ``sys.modules`` unexecuted and runs on first use.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = [
    "LAZY",
    "LEAN",
    "lazy_modules",
    "lean_package",
    "lean_packages",
    "no_system_mime_types",
]

#: the packages made lean, and whether their own submodules need ``__version__`` early
LEAN: dict[str, bool] = {
    "pyroute2": False,
    "aiohttp": True,
    "unittest": False,
    "prometheus_client": False,
}

#: modules made lazy: pyroute2's traffic-control plugins (``pyroute2.netlink.rtnl.tcmsg``
#: imports each of them by name and only keeps a reference in its ``plugins`` table)
LAZY_PARENT = "pyroute2.netlink.rtnl.tcmsg"
LAZY: tuple[str, ...] = (
    *(f"cls_{n}" for n in ("basic", "flow", "fw", "matchall", "u32")),
    *(
        f"sched_{n}"
        for n in (
            "bpf", "cake", "choke", "clsact", "codel", "drr", "fq_codel", "hfsc", "htb",
            "ingress", "netem", "pfifo", "pfifo_fast", "plug", "sfq", "tbf", "template",
        )
    ),
)  # fmt: skip

_VERSION = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.M)


def lean_package(name: str, *, version: bool = False) -> bool:
    """Install the bare package ``name`` unless it is imported already or absent (or its
    ``__version__``, when ``version``, cannot be read); True if installed."""
    if name in sys.modules:
        return False
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return False
    module = importlib.util.module_from_spec(spec)
    if version:
        try:
            found = _VERSION.search(Path(spec.origin or "").read_text())
        except OSError:
            found = None
        if found is None:
            return False
        module.__version__ = found.group(1)  # type: ignore[attr-defined]
    state = {"full": False}

    def __getattr__(attr: str) -> Any:
        if attr.startswith("__") and attr not in ("__all__", "__version__"):
            raise AttributeError(attr)
        if not attr.startswith("_"):
            try:
                sub = importlib.util.find_spec(f"{name}.{attr}")
            except (ImportError, ValueError):
                sub = None
            if sub is not None:
                return importlib.import_module(f"{name}.{attr}")
        if state["full"]:
            raise AttributeError(f"module {name!r} has no attribute {attr!r}")
        state["full"] = True
        assert spec.loader is not None
        spec.loader.exec_module(module)  # the real __init__, into this module
        return getattr(module, attr)

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[name] = module
    return True


def lean_packages() -> list[str]:
    """:func:`lean_package` for every package in :data:`LEAN`; the ones installed."""
    return [name for name, version in LEAN.items() if lean_package(name, version=version)]


def no_system_mime_types() -> bool:
    """aiohttp's file responses build a ``mimetypes.MimeTypes`` when ``aiohttp.web`` is
    imported, which reads the system's type tables (``/etc/mime.types``: about 0.4 MB of
    dictionaries in vigild). vigild never serves files or guesses a type (every answer
    says its own), so its process reads none: Python's built-in table stays. True if set
    (not when something read them already)."""
    import mimetypes

    if mimetypes.inited:
        return False
    mimetypes.knownfiles = []
    return True


def lazy_modules(parent: str = LAZY_PARENT, names: tuple[str, ...] = LAZY) -> list[str]:
    """Put each ``parent.name`` in ``sys.modules`` unexecuted; its code runs on the first
    access to one of its names. ``parent`` is found but not imported (its own import is
    what imports these). Nothing is done if ``parent`` is imported already or cannot be
    found; the modules installed are returned."""
    if parent in sys.modules:
        return []
    grand = parent.rpartition(".")[0]
    try:
        importlib.import_module(grand)  # the packages above it (vigild imports them anyway)
        spec = importlib.util.find_spec(parent)
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    done = []
    for name in names:
        full = f"{parent}.{name}"
        if full in sys.modules:
            continue
        sub = importlib.machinery.PathFinder.find_spec(full, spec.submodule_search_locations)
        if sub is None or sub.loader is None:
            continue
        sys.modules[full] = _unexecuted(sub)
        done.append(full)
    return done


def _unexecuted(spec: importlib.machinery.ModuleSpec) -> ModuleType:
    module = importlib.util.module_from_spec(spec)
    state = {"ran": False}

    def __getattr__(attr: str) -> Any:
        if attr.startswith("__") or state["ran"]:
            raise AttributeError(f"module {spec.name!r} has no attribute {attr!r}")
        state["ran"] = True
        del module.__getattr__
        assert spec.loader is not None
        spec.loader.exec_module(module)
        return getattr(module, attr)

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    return module
