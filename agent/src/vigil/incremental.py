"""Large API answers without holding the event loop: JSON and Prometheus text in slices.

A view of a thousand virtual servers with ten real servers each is ~10 MB of JSON; encoding
it in one call holds the loop (and every VRRP advert, BFD packet and check) for a good part
of a second. These helpers produce exactly the bytes of the one-shot calls
(``json.dumps(obj, separators=(",", ":"), default=str)``, the metrics text) but hand the
loop back every ``SLICE_S`` of work:

- :func:`dumps_async` descends into the outer levels of dicts and lists (where the bulk is)
  and encodes each inner value with the C encoder in one go;
- :class:`Slicer` is the clock: ``await slicer.tick()`` yields only when the slice is used
  up, so cheap loops stay cheap;
- :func:`exposition_async` formats the registry's metric families one by one, and a large
  family in chunks of samples.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client.metrics_core import Metric

from vigil.promtext import OM_SUFFIXES, exposition

__all__ = ["SLICE_S", "Slicer", "dumps_async", "exposition_async", "run_steps"]

#: the longest stretch of work between two yields to the loop
SLICE_S = 0.005
#: containers this deep (0 = the top) are encoded in one call
_DESCEND = 3
#: samples per chunk of a large metric family
_CHUNK = 250

_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode


class Slicer:
    """Yields to the loop once ``slice_s`` of work has passed since the last yield."""

    def __init__(self, slice_s: float = SLICE_S) -> None:
        self.slice_s = slice_s
        self.mark = time.monotonic()
        self.yields = 0

    async def tick(self) -> None:
        if time.monotonic() - self.mark >= self.slice_s:
            await asyncio.sleep(0)
            self.yields += 1
            self.mark = time.monotonic()


async def run_steps(steps: Iterable[Any], slicer: Slicer | None = None) -> None:
    """Drive a generator that does its work between ``yield``s, yielding to the loop."""
    slicer = slicer or Slicer()
    for _ in steps:
        await slicer.tick()


def _splittable(obj: Any) -> bool:
    if type(obj) is dict:
        return all(type(k) is str for k in obj)
    return type(obj) in (list, tuple)


async def _encode_parts(obj: Any, depth: int, out: list[str], slicer: Slicer) -> None:
    if depth >= _DESCEND or not _splittable(obj):
        out.append(_encode(obj))
        await slicer.tick()
        return
    if type(obj) is dict:
        out.append("{")
        for i, (key, value) in enumerate(obj.items()):
            out.append(("," if i else "") + _encode(key) + ":")
            await _encode_parts(value, depth + 1, out, slicer)
        out.append("}")
    else:
        out.append("[")
        for i, value in enumerate(obj):
            if i:
                out.append(",")
            await _encode_parts(value, depth + 1, out, slicer)
        out.append("]")


async def dumps_async(obj: Any, slicer: Slicer | None = None) -> str:
    """``json.dumps(obj, separators=(",", ":"), default=str)``, yielding between slices."""
    out: list[str] = []
    await _encode_parts(obj, 0, out, slicer or Slicer())
    return "".join(out)


def _chunkable(fam: Metric) -> bool:
    names = {fam.name + s for s in OM_SUFFIXES}
    return len(fam.samples) > _CHUNK and not any(s.name in names for s in fam.samples)


async def exposition_async(families: Iterable[Metric], slicer: Slicer | None = None) -> bytes:
    """:func:`vigil.promtext.exposition` of ``families``, in slices."""
    slicer = slicer or Slicer()
    out: list[bytes] = []
    for fam in families:
        if not _chunkable(fam):
            out.append(exposition([fam]))
            await slicer.tick()
            continue
        for start in range(0, len(fam.samples), _CHUNK):
            part = copy.copy(fam)
            part.samples = fam.samples[start : start + _CHUNK]
            text = exposition([part])
            if start:
                text = text.split(b"\n", 2)[2]  # the family's # HELP and # TYPE lines
            out.append(text)
            await slicer.tick()
    return b"".join(out)
