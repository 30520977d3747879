"""The Prometheus text exposition format (0.0.4) of a registry's metric families.

``prometheus_client.generate_latest`` writes the same text, but it lives in
``prometheus_client.exposition``, which imports the library's HTTP, WSGI and push-gateway
clients (``http.server``, ``wsgiref``, ``urllib.request`` and with them the ``email``
package) when it is imported: about 2 MB of vigild's resident memory and a noticeable
part of its start under the IPVS VM's emulated CPU, for code vigild never runs (its
``/metrics`` is served by its own API). The metric classes and families still come from
``prometheus_client``'s own modules (``metrics``, ``metrics_core``, ``registry``).

The output is byte for byte what ``generate_latest`` (prometheus_client 0.20 and later,
default escaping) writes for the families vigild publishes; a unit test compares the two.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from prometheus_client.utils import floatToGoString

__all__ = ["CONTENT_TYPE", "OM_SUFFIXES", "exposition"]

#: The content type of the text format version written here.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LEGACY_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LEGACY_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_NOT_NAME = re.compile(r"[^a-zA-Z0-9_:]")
_NOT_LABEL = re.compile(r"[^a-zA-Z0-9_]")
#: Families whose text type differs from their OpenMetrics one; counters get ``_total``.
_TYPE = {"stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}
#: OpenMetrics-only samples, written as gauges of their own after the family.
OM_SUFFIXES = ("_created", "_gsum", "_gcount")


def _name(name: str) -> str:
    if _LEGACY_NAME.match(name):
        return name
    fixed = _NOT_NAME.sub("_", name)
    return "_" + fixed[1:] if fixed[:1].isdigit() else fixed


def _label(name: str) -> str:
    if _LEGACY_LABEL.match(name):
        return name
    fixed = _NOT_LABEL.sub("_", name)
    return "_" + fixed[1:] if fixed[:1].isdigit() else fixed


def _value(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _line(sample: Any) -> str:
    labels = ""
    if sample.labels:
        pairs = ",".join(f'{_label(k)}="{_value(v)}"' for k, v in sorted(sample.labels.items()))
        labels = "{" + pairs + "}"
    stamp = ""
    if sample.timestamp is not None:
        stamp = f" {int(float(sample.timestamp) * 1000):d}"
    return f"{_name(sample.name)}{labels} {floatToGoString(sample.value)}{stamp}\n"


def exposition(families: Iterable[Any]) -> bytes:
    """The text format of ``families`` (what a registry's ``collect()`` yields)."""
    out: list[str] = []
    for family in families:
        name, kind = family.name, family.type
        if kind == "counter":
            name += "_total"
        elif kind == "info":
            name, kind = name + "_info", "gauge"
        kind = _TYPE.get(kind, kind)
        doc = _help(family.documentation)
        out.append(f"# HELP {_name(name)} {doc}\n# TYPE {_name(name)} {kind}\n")
        extra: dict[str, list[str]] = {}
        for sample in family.samples:
            for suffix in OM_SUFFIXES:
                if sample.name == family.name + suffix:
                    extra.setdefault(suffix, []).append(_line(sample))
                    break
            else:
                out.append(_line(sample))
        for suffix, lines in sorted(extra.items()):
            own = _name(family.name + suffix)
            out.append(f"# HELP {own} {doc}\n# TYPE {own} gauge\n")
            out.extend(lines)
    return "".join(out).encode("utf-8")
