"""Acknowledged obligations, stored before they are acknowledged: one write at a time, first
committed to the store, then applied to the controller's memory, so both always agree.

An obligation is a cap, a cap window, a demand-response event or a session's need. The API
answers 2xx only after `ObligationWriter.commit` returned; if the store cannot take the write,
`StoreUnavailable` is raised and memory is left as it was (the API answers 503).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from typing import TypeVar

from smartcharge.site.limits import DemandResponseEvent
from smartcharge.store import StoreClosed, StoreTx
from smartcharge.store_obligations import EventRow

log = logging.getLogger(__name__)
T = TypeVar("T")


class StoreUnavailable(Exception):
    """The store did not commit the obligation: nothing was stored, nothing changed."""


def event_row(event: DemandResponseEvent) -> EventRow:
    return EventRow(event.event_id, event.start, event.end, event.limit_w, event.reduction_w,
                    event.priority, event.cancelled, event.circuit_id)


def event_from_row(row: EventRow) -> DemandResponseEvent:
    return DemandResponseEvent(event_id=row.event_id, start=row.start, end=row.end,
                               limit_w=row.limit_w, reduction_w=row.reduction_w,
                               priority=row.priority, cancelled=row.cancelled,
                               circuit_id=row.circuit_id)


class ObligationWriter:
    """Orders writes (a lock) so that the check against memory, the commit and the change of
    memory of one request never interleave with another's."""

    def __init__(self, store_of: Callable[[], object]) -> None:
        self._store_of = store_of   # the store opens with the app, after this is made
        self._lock = asyncio.Lock()

    async def commit(self, check: Callable[[], None], work: Callable[[StoreTx], T],
                     apply: Callable[[T], None]) -> T:
        """check() (may raise, nothing written), then work(tx) committed, then apply(result).

        Shielded: a client that hangs up after the commit still gets its change applied, or
        memory and store would disagree."""
        async def ordered() -> T:
            async with self._lock:
                check()
                try:
                    result = await self._store_of().run(work)
                except (StoreClosed, sqlite3.Error, OSError) as exc:
                    log.error("obligation not stored (%s): answering 503", exc)
                    raise StoreUnavailable(str(exc)) from None
                apply(result)
                return result
        return await asyncio.shield(asyncio.ensure_future(ordered()))
