"""A helper for tests that check work hands the event loop back: count the loop's turns."""

from __future__ import annotations

import asyncio
from typing import Any


class LoopTurns:
    """``async with LoopTurns() as turns: ...`` then ``turns.count``: how many times another
    task got the loop meanwhile (bounded by ``limit`` turns)."""

    def __init__(self, limit: int = 1_000_000) -> None:
        self.limit = limit
        self.count = 0
        self._stop = False
        self._task: asyncio.Task[None] | None = None

    async def _spin(self) -> None:
        for _ in range(self.limit):
            if self._stop:
                return
            self.count += 1
            await asyncio.sleep(0)

    async def __aenter__(self) -> LoopTurns:
        self._task = asyncio.create_task(self._spin())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._stop = True
        if self._task is not None:
            await self._task
