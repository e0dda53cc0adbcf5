"""The sending slots a dispatcher's rounds share: at most `n` stations' requests at once, a freed
slot going to the request waiting longest at the most urgent level.

Two levels: `NOW` (what the site draws under: decreases, increases) and `LATER` (the fail-safe
defaults that follow a lowered limit where a plan or an idle share is in force above them: they
change nothing drawn before the plans' common end). With one FIFO queue each station sent its plan
and then its defaults in one slot, and a DR event's last stations' plans waited behind ~1 000
default requests at 1 000 connectors (issue 10)."""

from __future__ import annotations

import asyncio
from collections import deque

NOW, LATER = 0, 1


class SendingSlots:
    def __init__(self, n: int) -> None:
        self._free = n
        self._waiting: tuple[deque[asyncio.Future], ...] = (deque(), deque())

    async def acquire(self, level: int = NOW) -> None:
        if self._free > 0 and not any(self._waiting):
            self._free -= 1
            return
        future = asyncio.get_running_loop().create_future()
        self._waiting[level].append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()   # handed a slot as it was cancelled: the next one's
            else:
                self._waiting[level].remove(future)
            raise

    def release(self) -> None:
        for waiting in self._waiting:
            while waiting:
                future = waiting.popleft()
                if not future.done():
                    future.set_result(None)   # the slot passes on: never free in between
                    return
        self._free += 1

    def at(self, level: int) -> "_Held":
        """`async with slots.at(LATER):` a slot at that level."""
        return _Held(self, level)

    async def __aenter__(self) -> None:
        await self.acquire(NOW)

    async def __aexit__(self, *exc) -> None:
        self.release()


class _Held:
    def __init__(self, slots: SendingSlots, level: int) -> None:
        self.slots, self.level = slots, level

    async def __aenter__(self) -> None:
        await self.slots.acquire(self.level)

    async def __aexit__(self, *exc) -> None:
        self.slots.release()


__all__ = ["LATER", "NOW", "SendingSlots"]
