"""The VRRP state journal writes its changes together, and at once when asked to."""

from __future__ import annotations

import asyncio
import json
from ipaddress import ip_interface
from pathlib import Path

from vigil.vrrp.journal import WRITE_DELAY, Journal, JournalEntry


def entry(n: int) -> JournalEntry:
    e = JournalEntry()
    e.addresses.append(("eth0", ip_interface(f"10.99.{n // 250}.{n % 250 + 1}/16")))
    return e


def on_disk(journal: Journal) -> dict[str, object]:
    return dict(json.loads(journal.path.read_text())["entries"])


def test_without_an_event_loop_every_change_is_written_at_once(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.record("VI_1", entry(1))
    assert journal.writes == 1 and not journal.pending
    assert set(on_disk(journal)) == {"VI_1"}
    journal.forget("VI_1")
    assert on_disk(journal) == {}


def test_changes_in_a_loop_are_written_once_and_flush_writes_now(tmp_path: Path) -> None:
    async def scenario() -> None:
        journal = Journal(tmp_path)
        for n in range(50):
            journal.record(f"VI_{n}", entry(n))
        assert journal.writes == 0 and journal.pending
        assert not journal.path.exists()
        journal.flush()  # what the runtime does before it adds anything to the kernel
        assert journal.writes == 1 and not journal.pending
        assert len(on_disk(journal)) == 50
        journal.flush()
        assert journal.writes == 1  # nothing pending: nothing written

        for n in range(50):
            journal.forget(f"VI_{n}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20 * WRITE_DELAY + 5.0
        while journal.pending and loop.time() < deadline:
            await asyncio.sleep(WRITE_DELAY / 5)
        assert journal.writes == 2, "the 50 forgets were not written together by the timer"
        assert on_disk(journal) == {}

    asyncio.run(scenario())


def test_a_flush_cancels_the_pending_timer(tmp_path: Path) -> None:
    async def scenario() -> None:
        journal = Journal(tmp_path)
        journal.record("VI_1", entry(1))
        journal.flush()
        # Let the original delay pass: the cancelled timer must not write again.
        done = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(2 * WRITE_DELAY, done.set_result, None)
        await done
        assert journal.writes == 1

    asyncio.run(scenario())
