"""Load kernel modules and set sysctls to the values asked for; report what changed.

Run by the role on the host (its system python3, standard library only):

    python3 vigil_kernel_prep.py '{"modules": [...], "sysctls": {...}, "load": true}' [--check]

Prints one JSON object: ``changed`` (what was, or in check mode would be, done),
``skipped`` (sysctls of a subsystem the kernel does not have, e.g. net.ipv4.vs.* without
IPVS, when loading modules was not asked for) and ``errors`` (each a sentence naming the
module or key and the fix). Exits 1 when there are errors.
"""

import json
import os
import subprocess
import sys


def loaded_modules():
    names = set()
    try:
        with open("/proc/modules") as fh:
            names = {line.split()[0] for line in fh if line.strip()}
    except OSError:
        pass
    return names


def builtin(name):
    """True when /sys/module/NAME exists (loaded or built in)."""
    return os.path.isdir(os.path.join("/sys/module", name))


def main():
    spec = json.loads(sys.argv[1])
    check = "--check" in sys.argv[2:]
    out = {"changed": [], "skipped": [], "errors": []}
    if spec.get("load"):
        have = loaded_modules()
        missing = [m for m in spec.get("modules", []) if m not in have and not builtin(m)]
        if missing:
            out["changed"].append("load modules: " + " ".join(missing))
            if not check:
                res = subprocess.run(
                    ["modprobe", "-a", *missing], capture_output=True, text=True, check=False
                )
                if res.returncode != 0:
                    out["errors"].append(
                        "cannot load kernel module(s) %s: %s; IPVS needs a kernel with ip_vs "
                        "(CONFIG_IP_VS) and its modules installed, or set "
                        "vigil_ipvs_load_modules: false where they are built in"
                        % (" ".join(missing), (res.stderr or res.stdout).strip() or res.returncode)
                    )
    for key, value in sorted(spec.get("sysctls", {}).items()):
        path = "/proc/sys/" + key.replace(".", "/")
        want = str(value)
        try:
            with open(path) as fh:
                now = fh.read().strip()
        except FileNotFoundError:
            if key.startswith("net.ipv4.vs.") and (check or not spec.get("load")):
                out["skipped"].append(key)
            else:
                out["errors"].append(
                    "sysctl %s: this kernel does not have it (%s missing)" % (key, path)
                )
            continue
        except OSError as exc:
            out["errors"].append("sysctl %s: cannot read it: %s" % (key, exc))
            continue
        if now.split() == want.split():
            continue
        out["changed"].append("%s: %s -> %s" % (key, now, want))
        if not check:
            try:
                with open(path, "w") as fh:
                    fh.write(want)
            except OSError as exc:
                out["errors"].append("sysctl %s = %s: %s" % (key, want, exc))
    print(json.dumps(out))
    return 1 if out["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
