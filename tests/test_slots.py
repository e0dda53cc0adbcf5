"""The sending slots (site/slots.py): a waiter cancelled while it queues for a slot ends with
CancelledError whatever the turn's order, and never takes a slot with it."""

import asyncio

import pytest

from smartcharge.site.slots import LATER, NOW, SendingSlots


def test_a_waiter_cancelled_then_passed_over_by_a_release_in_the_same_turn():
    """Cancelled, then a release in the same turn skips its (cancelled) future and frees the
    slot: the waiter must end with CancelledError (it raised ValueError: its future was no
    longer queued), and the slot is free for the next one."""
    async def main():
        slots = SendingSlots(1)
        await slots.acquire()
        waiter = asyncio.ensure_future(slots.acquire(NOW))
        await asyncio.sleep(0)   # it queues
        waiter.cancel()
        slots.release()          # pops the cancelled future: the slot is free again
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert [len(w) for w in slots._waiting] == [0, 0]
        await asyncio.wait_for(slots.acquire(LATER), 1)   # the slot was not lost
    asyncio.run(main())


def test_a_slot_handed_to_a_waiter_cancelled_in_the_same_turn_passes_on():
    """A release hands the slot to the first waiter, which is cancelled before it runs: it
    ends with CancelledError and the slot goes to the next waiter (never lost, never free in
    between while someone waits)."""
    async def main():
        slots = SendingSlots(1)
        await slots.acquire()
        first = asyncio.ensure_future(slots.acquire(NOW))
        second = asyncio.ensure_future(slots.acquire(LATER))
        await asyncio.sleep(0)   # both queue
        slots.release()          # the slot is the first's
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        await asyncio.wait_for(second, 1)   # passed on
        assert slots._free == 0
        slots.release()
        assert slots._free == 1
    asyncio.run(main())
