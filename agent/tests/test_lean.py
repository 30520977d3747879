"""vigil.lean: vigild imports only the parts of pyroute2 and aiohttp it uses, and the
whole libraries stay usable. Each case runs in a fresh interpreter (sys.modules of this
test process already holds both libraries)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> str:
    res = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_the_agent_does_not_import_the_unused_parts() -> None:
    out = run(
        """
        import sys
        import vigil.daemon, vigil.api.app, vigil.ipvs.kernel, vigil.ipvs.runtime
        import vigil.vrrp.runtime, vigil.net.netlink
        import vigil.metrics, vigil.incremental, vigil.bfd.subsystem
        unused = ["pyroute2.ndb", "pyroute2.ipdb", "pyroute2.conntrack", "aiohttp.client",
                  "aiohttp.connector", "unittest.case", "unittest.runner",
                  "prometheus_client.exposition", "http.server", "wsgiref",
                  "pyroute2.netlink.rtnl.tcmsg.common_act", "pyroute2.netlink.rtnl.tcmsg.em_meta"]
        print(sorted(m for m in unused if m in sys.modules))
        print("pyroute2.netlink.generic.ipvs" in sys.modules, "aiohttp.web" in sys.modules)
        htb = sys.modules["pyroute2.netlink.rtnl.tcmsg.sched_htb"]
        print("options" in vars(htb))  # installed, not run
        import mimetypes
        print(mimetypes.knownfiles, "difflib" in sys.modules)
        """
    )
    assert out.split("\n")[:4] == ["[]", "True True", "False", "[] False"]


def test_a_lazy_module_runs_on_first_use() -> None:
    out = run(
        """
        import sys
        import vigil.daemon
        from pyroute2.netlink.rtnl.tcmsg import plugins, tcmsg
        htb = plugins["htb"]
        print("options" in vars(htb), htb.options.__name__, "options" in vars(htb))
        try:
            htb.no_such_name
        except AttributeError:
            print("AttributeError")
        from pyroute2.netlink.rtnl.tcmsg import cls_u32
        print(cls_u32.options.__name__)
        """
    )
    assert out.split("\n")[:3] == ["False options True", "AttributeError", "options"]


def test_the_whole_library_loads_on_first_use_of_a_package_name() -> None:
    out = run(
        """
        import vigil.daemon, sys
        import pyroute2, aiohttp
        from pyroute2 import config  # a submodule: no full load
        print("pyroute2.ndb" in sys.modules, "aiohttp.client" in sys.modules)
        from pyroute2 import IPRoute
        from aiohttp import ClientSession, web
        from prometheus_client import generate_latest, start_http_server
        print(IPRoute.__name__, ClientSession.__name__, "pyroute2.ndb" in sys.modules,
              generate_latest.__name__)
        print(bool(aiohttp.__version__), len(pyroute2.__all__) > 10)
        try:
            pyroute2.no_such_name
        except AttributeError:
            print("AttributeError")
        """
    )
    assert out.split("\n")[:4] == [
        "False False",
        "IPRoute ClientSession True generate_latest",
        "True True",
        "AttributeError",
    ]


def test_nothing_is_replaced_once_imported() -> None:
    out = run(
        """
        import sys, aiohttp, pyroute2, unittest
        full = sys.modules["aiohttp"], sys.modules["pyroute2"], sys.modules["unittest"]
        import vigil.daemon
        print(sys.modules["aiohttp"] is full[0], sys.modules["pyroute2"] is full[1],
              sys.modules["unittest"] is full[2])
        """
    )
    assert out.strip() == "True True True"


def test_importing_vigil_as_a_library_changes_nothing() -> None:
    """Only the agent process (vigil.daemon) makes the libraries lean: a script that
    imports vigil's client or config gets pyroute2 and aiohttp as they are."""
    out = run(
        """
        import sys
        import vigil, vigil.client, vigil.config
        import pyroute2, aiohttp
        print(hasattr(pyroute2, "__path__") and "pyroute2.ndb" in sys.modules,
              "aiohttp.client" in sys.modules)
        """
    )
    assert out.split("\n")[0] == "True True"
