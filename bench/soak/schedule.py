"""The seeded schedule of injections: the same seed and settings give the same steps.

A step names the group, the kind of injection and its parameters (the role of the target,
how long the fault lasts, a variant); which node plays the role is resolved when the step
runs (the master at that moment), with the step's own random generator, so a rerun with
the same seed makes the same choices given the same state.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bench.soak.model import GroupSpec

__all__ = ["Planner", "Step", "make_schedule"]


class Planner(Protocol):
    """What the schedule needs of an injection kind (see bench.soak.injections)."""

    kind: str
    weight: float

    def applies_to(self, group: GroupSpec) -> bool: ...

    def plan(self, rng: random.Random, group: GroupSpec) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Step:
    index: int
    at: float  # planned start, seconds after the injection phase began
    group: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def seed(self) -> str:
        return f"step:{self.index}:{self.kind}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "at": round(self.at, 3),
            "group": self.group,
            "kind": self.kind,
            "params": self.params,
        }


def make_schedule(
    seed: int,
    seconds: float,
    groups: Sequence[GroupSpec],
    kinds: Mapping[str, Planner],
    *,
    gap: tuple[float, float] = (2.0, 5.0),
    only: Sequence[str] = (),
) -> list[Step]:
    """Steps every ``gap`` seconds (uniform, start to start) for ``seconds``.

    Groups take turns (each gets time to settle while the other is hit); the kind is a
    weighted draw among the kinds that apply to the group (``only`` restricts them).
    Bounded: at most ``seconds / gap[0] + 1`` steps.
    """
    if seconds <= 0 or not groups or gap[0] <= 0 or gap[1] < gap[0]:
        raise ValueError("make_schedule: positive seconds and gaps, at least one group")
    rng = random.Random(f"soak:{seed}")
    steps: list[Step] = []
    t = 0.0
    limit = int(seconds / gap[0]) + 1
    for index in range(limit):
        t += rng.uniform(*gap)
        if t >= seconds:
            break
        group = groups[index % len(groups)]
        names = [k for k, p in kinds.items() if p.applies_to(group) and (not only or k in only)]
        if not names:
            continue
        kind = rng.choices(names, [kinds[k].weight for k in names])[0]
        params = kinds[kind].plan(random.Random(f"soak:{seed}:plan:{index}"), group)
        steps.append(Step(index, t, group.name, kind, params))
    return steps
