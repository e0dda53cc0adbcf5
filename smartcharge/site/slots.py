"""The sending slots a dispatcher's rounds share: at most `n` stations' requests at once, a freed
slot going to the request waiting longest at the most urgent level.

Two levels: `NOW` (what the site draws under: decreases, increases) and `LATER` (the fail-safe
defaults that follow a lowered limit where a plan or an idle share is in force above them: they
change nothing drawn before the plans' common end). With one FIFO queue each station sent its plan
and then its defaults in one slot, and a DR event's last stations' plans waited behind ~1 000
default requests at 1 000 connectors (issue 10).

A LATER request waits with a ticket (`queue`) its round may give up on: a newer round leaves
the older one's defaults not yet sent to its own comparison (`dispatch_round.py`)."""

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
        ticket = self.queue(level)
        try:
            await ticket
        except asyncio.CancelledError:
            self.withdraw(ticket, level)
            raise

    def queue(self, level: int = NOW) -> asyncio.Future:
        """A ticket: a future whose result is True once a slot is the caller's (at once when
        one is free and nobody waits). The caller may give up on it before then - another
        party setting it False (a round overtaken, dispatch_round.py) - and then must
        `withdraw` it."""
        ticket = asyncio.get_running_loop().create_future()
        if self._free > 0 and not any(self._waiting):
            self._free -= 1
            ticket.set_result(True)
        else:
            self._waiting[level].append(ticket)
        return ticket

    def withdraw(self, ticket: asyncio.Future, level: int) -> None:
        """The caller gives up waiting on `ticket` (cancelled, or set False): out of the queue,
        or - handed a slot meanwhile - the slot passes on (never lost)."""
        if ticket.done() and not ticket.cancelled() and ticket.result() is True:
            self.release()
            return
        try:
            self._waiting[level].remove(ticket)
        except ValueError:
            pass   # a release passed over it already (cancelled or set False: no slot)

    def release(self) -> None:
        for waiting in self._waiting:
            while waiting:
                ticket = waiting.popleft()
                if not ticket.done():
                    ticket.set_result(True)   # the slot passes on: never free in between
                    return
        self._free += 1

    async def __aenter__(self) -> None:
        await self.acquire(NOW)

    async def __aexit__(self, *exc) -> None:
        self.release()


__all__ = ["LATER", "NOW", "SendingSlots"]
